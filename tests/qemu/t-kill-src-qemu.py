#!/usr/bin/env python3
"""QEMU end-to-end test, mode "kill-src-qemu" (see migcase.py, FAULT_INJECTIONS):
the source QEMU is SIGKILLed mid-migration: there is no source guest any more, so both
relay sessions must fail within 5 s and release their fds; the destination guest never
starts; then a fresh VM migrates through the same relays."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import migcase  # noqa: E402

migcase.main("kill-src-qemu")
