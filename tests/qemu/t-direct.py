#!/usr/bin/env python3
"""QEMU end-to-end harness check without relays: return-path precopy QEMU -> QEMU.

If this fails, the guest, QEMU or the harness is broken, not migrelay.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import migcase  # noqa: E402

migcase.main("return-path", direct=True)
