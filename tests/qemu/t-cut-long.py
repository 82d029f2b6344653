#!/usr/bin/env python3
"""QEMU end-to-end test, mode "cut-long" (see migcase.py, FAULT_INJECTIONS): the fault
proxy drops every byte and refuses new connections mid-migration (4 channels) until the
source QEMU has failed; with --link-timeout 3000 --reconnect-timeout 3000 on both relays the
silent channels are declared dead and are not re-established in time: source QEMU `failed`
within 3 + 3 + 1 + 2 s of the cut (not before the 3 s grace period is over), guest
running, destination guest never started, both sessions PeerUnreachable "not
re-established" (within the same time); then the link is healed and the next migration
completes."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import migcase  # noqa: E402

migcase.main("cut-long")
