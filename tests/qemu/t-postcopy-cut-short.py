#!/usr/bin/env python3
"""QEMU end-to-end test, mode "postcopy-cut-short" (see migcase.py, RESUME_FAULTS):
postcopy (migrate-start-postcopy after 16 MiB, background push limited to 20 MB/s) through a
fault proxy and a 4-channel link; 8 MiB into postcopy-active the link goes down for 3 s
(every connection reset, new ones refused): the channels are re-established, postcopy
completes, RAM identical."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import migcase  # noqa: E402

migcase.main("postcopy-cut-short")
