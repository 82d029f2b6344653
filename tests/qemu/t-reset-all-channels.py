#!/usr/bin/env python3
"""QEMU end-to-end test, mode "reset-all-channels" (see migcase.py, RESUME_FAULTS):
precopy with return path through a fault proxy and a 4-channel link; once 24 MiB of RAM
have moved the proxy resets (RST) every connection: all four channels are re-established
and the migration completes with RAM identical; every channel counts a reconnect."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import migcase  # noqa: E402

migcase.main("reset-all-channels")
