#!/usr/bin/env python3
"""Self-test of the end-to-end memory check (tests/lib/qemu.py check_memory), no QEMU.

Builds synthetic RAM dumps of the test guest's pattern and checks that good ones pass and
that every kind of damage is caught: a changed byte in a page tail, a source/destination
difference, a byte-0 step that is not -1, two steps, a truncated dump.
"""
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import qemu as Q  # noqa: E402

PAGES = 3000    # not a multiple of check_memory's chunk size


def dump(value, edge=None, low=None):
    """Pages below EDGE hold byte 0 = LOW (default value+1), the others VALUE."""
    b = bytearray(PAGES * Q.PAGE_SIZE)
    for p in range(PAGES):
        v = value
        if edge is not None and p < edge:
            v = (value + 1) % 256 if low is None else low
        b[p * Q.PAGE_SIZE] = v
    return b


def main():
    d = tempfile.mkdtemp(prefix="mr-memcheck-")
    fails = 0

    def case(name, src, dst, want_ok, want_text=None):
        nonlocal fails
        sp, dp = os.path.join(d, "s"), os.path.join(d, "d")
        with open(sp, "wb") as f:
            f.write(src)
        with open(dp, "wb") as f:
            f.write(dst)
        r = Q.check_memory(sp, dp)
        good = r.ok == want_ok and (want_text is None or want_text in r.summary())
        print("%s %-40s -> %s" % ("ok  " if good else "FAIL", name, r.summary()))
        if not good:
            fails += 1

    try:
        a = dump(7)
        case("uniform", a, a, True)
        a = dump(7, edge=1234)
        case("one edge 8->7", a, a, True, "below page 1234")
        a = dump(0, edge=PAGES - 1)
        case("one edge 1->0 near the top", a, a, True)
        a = dump(255, edge=1, low=0)
        case("wrap 0->255 after the first page", a, a, True)
        a = dump(7, edge=100, low=9)
        case("edge 9->7 (step of 2)", a, a, False, "jumps from 9 to 7")
        a = dump(7, edge=100, low=6)
        case("edge 6->7 (rising)", a, a, False, "jumps from 6 to 7")
        a = dump(7, edge=100)
        a[2000 * Q.PAGE_SIZE] = 3
        case("two edges", a, a, False, "changes at")
        a = dump(7, edge=500)
        b = bytearray(a)
        b[42 * Q.PAGE_SIZE + 1] = 0x5A
        case("tail byte corrupted on both", b, b, False, "non-zero bytes")
        case("tail byte corrupted on destination", a, b, False, "1 pages differ")
        b = bytearray(a)
        b[2999 * Q.PAGE_SIZE + 4095] = 1
        case("last byte of the dump corrupted", a, b, False, "1 pages differ")
        b = bytearray(a)
        b[600 * Q.PAGE_SIZE] ^= 0xff
        case("byte 0 differs", a, b, False, "differ")
        case("truncated destination", a, a[:-Q.PAGE_SIZE], False, "sizes differ")
        b = bytearray(a)
        b[7 * Q.PAGE_SIZE + 100] = 1
        for name, dst, ok in (("destination only, good", a, True),
                              ("destination only, tail corrupted", b, False)):
            dp = os.path.join(d, "d")
            with open(dp, "wb") as f:
                f.write(dst)
            r = Q.check_memory(None, dp)
            good = r.ok == ok
            print("%s %-40s -> %s" % ("ok  " if good else "FAIL", name, r.summary()))
            fails += 0 if good else 1
    finally:
        shutil.rmtree(d, ignore_errors=True)
    print("%d failures" % fails)
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
