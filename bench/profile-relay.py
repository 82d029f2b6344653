#!/usr/bin/env python3
"""Where the relay pair's CPU goes: perf profile of a B2-style transfer.

    top_builddir=/tmp/bb python3 bench/profile-relay.py [--tls] [--channels 1] [--seconds 5]

Starts a relay pair (plaintext, or TLS with --tls), pushes the synthetic
stream of bench/b2-link.py through a session of --channels channels
(--channels connections) and records both relays with
`perf record -e cpu-clock -g` (software clock: this VM has no hardware PMU).
Prints and writes bench/results/profile-{plain,tls}-Nch.txt: the pair's CPU-s/GiB
and the top symbols (self time), also grouped by shared object.
A profiler costs CPU too: take throughput and CPU-s/GiB from b2-link.py.
"""

import argparse
import os
import shutil
import signal
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tls", action="store_true")
    ap.add_argument("--channels", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--top", type=int, default=40)
    args = ap.parse_args()
    if not shutil.which("perf"):
        B.R.skip("perf is not installed (apt-get install linux-perf)")
    name = "tls" if args.tls else "plain"
    d = B.scratch("mrbp-")
    pair = B.RelayPair(d, name, tls=args.tls).start()
    data = os.path.join(d, "perf.data")
    try:
        sink = B.Helper("sink", "127.0.0.1:0", args.channels, listener=True)
        sid, uri = pair.open("tcp:127.0.0.1:%d" % sink.port, channels=args.channels)
        perf = subprocess.Popen(["perf", "record", "-e", "cpu-clock", "-F", "1999", "-g",
                                 "-o", data, "-p", ",".join(str(p) for p in pair.pids)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import time
        time.sleep(1.0)
        c0 = B.cpu_of(pair.pids)
        src = B.Helper("source", uri[4:], args.channels, args.seconds)
        sres = src.result(timeout=args.seconds + 60)
        kres = sink.result()
        pair.close(sid)
        c1 = B.cpu_of(pair.pids)
        perf.send_signal(signal.SIGINT)
        perf.wait(30)
    finally:
        pair.stop()
    gib = kres["bytes"] / B.GiB
    head = ("relay-%s, %d channel(s): %.2f Gbit/s, pair %.3f CPU-s/GiB (under perf)\n"
            % (name, args.channels, kres["bytes"] * 8 / (kres["t_last"] - kres["t_first"]) / 1e9,
               (c1 - c0) / gib))
    out = [head]
    for sort in ("dso,sym", "dso"):
        p = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children",
                            "--sort", sort, "-g", "none", "--percent-limit", "0.5"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        lines = [l for l in p.stdout.decode("utf-8", "replace").splitlines()
                 if l.strip() and not l.startswith("#")]
        out.append("--- perf report --sort %s (self, both relays)\n%s\n" % (
            sort, "\n".join(lines[:args.top])))
    text = "\n".join(out)
    print(text)
    os.makedirs(B.RESULTS, exist_ok=True)
    path = os.path.join(B.RESULTS, "profile-%s-%dch.txt" % (name, args.channels))
    with open(path, "w") as f:
        f.write(text)
    B.log("wrote %s", path)
    shutil.rmtree(d, ignore_errors=True)
    return sres


if __name__ == "__main__":
    main()
