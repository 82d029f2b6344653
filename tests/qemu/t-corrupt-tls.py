#!/usr/bin/env python3
"""QEMU end-to-end test, mode "corrupt-tls" (see migcase.py, FAULT_INJECTIONS):
the fault proxy flips one byte of the TLS link stream (source to destination) mid-
migration: TLS must catch it (the destination relay's error names the TLS failure), source
QEMU `failed` within 5 s, guest running; the next migration completes."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import migcase  # noqa: E402

migcase.main("corrupt-tls")
