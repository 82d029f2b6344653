#!/usr/bin/env python3
"""QEMU end-to-end test, mode "corrupt-tls" (see migcase.py, RESUME_FAULTS): the fault
proxy flips one byte of the TLS link stream (channel 0, source to destination) mid-
migration: TLS rejects the record, which is a channel error: the channel is re-established,
the migration completes with RAM identical, and the source session counts a reconnect."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import migcase  # noqa: E402

migcase.main("corrupt-tls")
