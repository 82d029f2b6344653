#!/usr/bin/env python3
"""QEMU end-to-end test, mode "drain-src-relay" (see migcase.py; --direct skips the relays)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import migcase  # noqa: E402

migcase.main("drain-src-relay")
