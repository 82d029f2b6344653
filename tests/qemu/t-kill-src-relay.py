#!/usr/bin/env python3
"""QEMU end-to-end test, mode "kill-src-relay" (see migcase.py; --direct skips the relays):
the source relay is SIGKILLed mid-migration: the source QEMU fails at once, guest running;
the destination relay (--reconnect-timeout 3000) cannot re-dial, waits out the grace period
and fails PeerUnreachable "not re-established" 2.5 to 6 s after the kill."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import migcase  # noqa: E402

migcase.main("kill-src-relay")
