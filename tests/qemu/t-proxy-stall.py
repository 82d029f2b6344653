#!/usr/bin/env python3
"""QEMU end-to-end test, mode "proxy-stall" (see migcase.py, FAULT_INJECTIONS):
a fault proxy (tests/tools/faultproxy.py) between the relays stops forwarding mid-
migration with every socket left open, new ones included (2 channels): with --link-timeout
3000 --reconnect-timeout 3000 on both relays the channels are declared dead and the re-dials
never get through, so the source QEMU must report `failed` within 3 + 3 + 1 + 2 s, both
sessions PeerUnreachable/Timeout; then the link is healed and the next migration completes."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import migcase  # noqa: E402

migcase.main("proxy-stall")
