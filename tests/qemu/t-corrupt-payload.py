#!/usr/bin/env python3
"""QEMU end-to-end test, mode "corrupt-payload" (see migcase.py, FAULT_INJECTIONS):
plaintext link, source guest paused (each page is sent once, so nothing overwrites a
damaged page later); the fault proxy flips one byte of guest page content inside a DATA
frame: the migration must fail (the source guest stays paused, and runs after cont) and
never complete with a corrupted guest (the RAM of both QEMUs is compared)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import migcase  # noqa: E402

migcase.main("corrupt-payload")
