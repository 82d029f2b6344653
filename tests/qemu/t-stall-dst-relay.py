#!/usr/bin/env python3
"""QEMU end-to-end test, mode "stall-dst-relay" (see migcase.py): the destination relay
is SIGSTOPped mid-migration; the source relay's progress timeout (--progress-timeout
3000 on both relays) must fail the migration within P + 2 s (+1 s check period): source
QEMU `failed`, guest running, source relay session `failed` with an error.  After the
test the destination relay is continued and must shut down cleanly."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import migcase  # noqa: E402

migcase.main("stall-dst-relay")
