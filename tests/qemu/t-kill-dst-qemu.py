#!/usr/bin/env python3
"""QEMU end-to-end test, mode "kill-dst-qemu" (see migcase.py, FAULT_INJECTIONS):
the destination QEMU is SIGKILLed mid-migration while the source sends in bursts (max-
bandwidth 20 MB/s): source QEMU `failed` within 5 s, its guest running, both relay
sessions `failed` with an error, relay fds back to baseline, then a new migration (new
session id, fresh destination QEMU) through the same relays completes with identical RAM."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import migcase  # noqa: E402

migcase.main("kill-dst-qemu")
