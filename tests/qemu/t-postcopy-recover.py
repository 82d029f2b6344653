#!/usr/bin/env python3
"""QEMU end-to-end test, mode "postcopy-recover" (see migcase.py; --direct skips the relays)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import migcase  # noqa: E402

migcase.main("postcopy-recover")
