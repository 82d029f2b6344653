#!/usr/bin/env python3
"""QEMU end-to-end test, mode "corrupt-payload" (see migcase.py, RESUME_FAULTS):
plaintext link (frames with a CRC-32C, feature "crc32c"), source guest paused (each page is
sent once, so nothing overwrites a damaged page later); the fault proxy flips one byte of
guest page content inside a DATA frame: the frame fails its CRC check, the channel is
re-established and the frame sent again, and the migration completes with the RAM of both
QEMUs identical; the source session counts a reconnect."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import migcase  # noqa: E402

migcase.main("corrupt-payload")
