#!/usr/bin/env python3
"""QEMU end-to-end test, mode "cut-short" (see migcase.py, RESUME_FAULTS): precopy with
return path through a fault proxy and a 4-channel link; once 24 MiB of RAM have moved the
link goes down for 3 s (every connection reset, every new one refused, so the source
relay's re-dials fail until it is back); with the default --reconnect-timeout the channels
are re-established and the migration completes with RAM identical."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import migcase  # noqa: E402

migcase.main("cut-short")
