#!/usr/bin/env python3
"""QEMU end-to-end test, mode "stall-dst-relay" (see migcase.py): the destination relay
is SIGSTOPped mid-migration; with --progress-timeout 3000 --link-timeout 3000
--reconnect-timeout 3000 on both relays the source relay's progress timeout fails the
session, or its link timeout declares the channels dead and the re-dials (TLS never
answered) fail after the grace period: source QEMU `failed` within 3 + 3 + 2 + 1 s, guest
running, source relay session `failed` with an error.  After the test the destination
relay is continued and must shut down cleanly."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import migcase  # noqa: E402

migcase.main("stall-dst-relay")
