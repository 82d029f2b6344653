#!/usr/bin/env python3
"""QEMU end-to-end test, mode "corrupt-frame" (see migcase.py, FAULT_INJECTIONS):
plaintext link; the fault proxy flips the type byte of one DATA frame header mid-
migration: the destination relay must fail the session with a protocol error, source QEMU
`failed` within 5 s; the next migration completes."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import migcase  # noqa: E402

migcase.main("corrupt-frame")
