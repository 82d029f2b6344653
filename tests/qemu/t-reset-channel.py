#!/usr/bin/env python3
"""QEMU end-to-end test, mode "reset-channel" (see migcase.py, RESUME_FAULTS): precopy
with return path through a fault proxy and a 4-channel link; once 24 MiB of RAM have moved
the proxy resets (RST) the connection of channel 0 (the channel of the control frames):
the source relay re-dials it, the relays resend what was not acknowledged, the migration
completes with RAM identical, and the source session counts a reconnect on channel 0."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import migcase  # noqa: E402

migcase.main("reset-channel")
