#!/usr/bin/env python3
"""QEMU end-to-end test, mode "proxy-reset" (see migcase.py, FAULT_INJECTIONS): the
"feature off" regression test of channel re-establishment: both relays run
--reconnect-timeout 0, so "resume" is not negotiated, and when the fault proxy resets (RST)
every link connection (2 channels) mid-migration the source QEMU reports `failed` within
5 s, both sessions PeerUnreachable; then the next migration through the same relays and
proxy completes."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import migcase  # noqa: E402

migcase.main("proxy-reset")
