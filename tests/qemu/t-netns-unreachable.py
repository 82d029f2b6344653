#!/usr/bin/env python3
"""QEMU end-to-end test, mode "netns-unreachable" (see migcase.py, FAULT_INJECTIONS):
the destination relay runs in a network namespace joined by a veth pair; mid-migration nft
(or iptables) inside the namespace drops every packet of its veth: with --link-timeout
3000 --reconnect-timeout 3000 the channels are declared dead and the re-dials get no answer,
so the source QEMU reports `failed` within 3 + 3 + 1 + 2 s, both sessions
PeerUnreachable/Timeout; the rules are removed and the next migration completes. Skips
(77) without root, namespaces, veth or a packet filter. The namespace is always removed."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import migcase  # noqa: E402

migcase.main("netns-unreachable")
