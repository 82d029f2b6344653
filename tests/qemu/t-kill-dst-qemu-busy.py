#!/usr/bin/env python3
"""QEMU end-to-end test, mode "kill-dst-qemu-busy" (see migcase.py, FAULT_INJECTIONS):
as kill-dst-qemu, but QEMU sends at full speed, so the destination relay is writing when
its QEMU dies."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import migcase  # noqa: E402

migcase.main("kill-dst-qemu-busy")
