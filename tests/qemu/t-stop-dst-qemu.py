#!/usr/bin/env python3
"""QEMU end-to-end test, mode "stop-dst-qemu" (see migcase.py, FAULT_INJECTIONS):
the destination QEMU is SIGSTOPped (it stops reading) while the source sends at full
speed: with --progress-timeout 3000 the source QEMU reports `failed` within 3 + 1 + 1 + 2
s (progress timeout, check period, buffers filling, slack) and the source session's error
names the progress timeout; while the QEMU is stopped each relay's RSS stays within 64 MiB
of its baseline and the source QEMU is held back (its transferred bytes stop growing); the
next migration completes."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import migcase  # noqa: E402

migcase.main("stop-dst-qemu")
