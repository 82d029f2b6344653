#!/usr/bin/env python3
"""B3: round-trip latency of small messages on the return path (issue #6).

    top_builddir=/tmp/bb python3 bench/b3-latency.py [--count 20000] [--reps 5]

The destination side (bench/tools/mrbench.c pingsrv, in the place of the
destination QEMU) writes SIZE bytes, which travel the return path
(destination -> source), and waits until the source side (echocli, in the
place of the source QEMU, which connected first) has echoed them back over the
forward path: one round trip as a postcopy page request and its answer make.
COUNT round trips after WARMUP, TCP_NODELAY everywhere; p50 / p99 in µs.

Paths (started once, interleaved in rotated order): direct, fwd-pair (two
splice forwarders), stunnel-pair, relay-plain, relay-tls (sessions of
--channels channels, default 1); with --threads0 also relay-plain-t0 and
relay-tls-t0, relays started with --data-threads 0.  Writes bench/results/b3-latency.{json,md}.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402

TLS_ADDED_P50_TARGET = 60.0      # µs added by the TLS relay pair, p50


class Bench:
    def __init__(self, args):
        self.args = args
        self.d = B.scratch("mrb3-")
        self.paths = {}

    def setup(self):
        self.paths = B.start_paths(self.d, threads0=self.args.threads0)

    def teardown(self):
        B.stop_paths(self.paths)

    def variants(self):
        return ["direct"] + [v for v in ("fwd-pair", "stunnel-pair", "relay-plain",
                                         "relay-tls", "relay-plain-t0", "relay-tls-t0")
                             if v in self.paths]

    def run_one(self, variant, size):
        a = self.args
        path = self.paths.get(variant)
        sid = None
        port = getattr(path, "target", 0)
        srv = B.Helper("pingsrv", "127.0.0.1:%d" % port, size, a.count, a.warmup,
                       listener=True)
        try:
            if variant == "direct":
                entry = srv.port
            elif variant.startswith("relay"):
                sid, uri = path.open("tcp:127.0.0.1:%d" % srv.port, channels=a.channels)
                entry = int(uri.rsplit(":", 1)[1])
            else:
                entry = path.entry
            cli = B.Helper("echocli", "127.0.0.1:%d" % entry)
            res = srv.result(timeout=120)
            cli.result(timeout=30)
            if sid is not None:
                path.close(sid)
        finally:
            srv.kill()
        return res

    def run(self):
        runs = []
        variants = self.variants()
        for rep in range(self.args.reps):
            for size in self.args.sizes:
                for v in B.rotate(variants, rep):
                    res, load, attempts = B.measured(lambda: self.run_one(v, size))
                    res.update(variant=v, rep=rep, load=load, attempts=len(attempts))
                    runs.append(res)
                    if "error" in res:
                        continue
                    B.log("rep %d  %-13s %5d B  p50 %7.1f  p99 %7.1f µs  bg %.2f", rep, v,
                          size, res["p50"], res["p99"], load["bg_cores"])
        return runs


def report(runs, variants, sizes):
    summ = {}
    for r in B.ok_runs(runs):
        summ.setdefault((r["variant"], r["size"]), []).append(r)
    out, text, lines = {}, [], []
    for size in sizes:
        rows = []
        for v in variants:
            rs = summ.get((v, size))
            if not rs:
                continue
            s = {k: B.stats([r[k] for r in rs]) for k in ("p50", "p90", "p99", "mean")}
            s["bg_max"] = max(r["load"]["bg_cores"] for r in rs)
            out[(v, size)] = s
        d = out.get(("direct", size))
        if d is None:
            continue
        for v in variants:
            s = out.get((v, size))
            if s is None:
                continue
            add50 = s["p50"]["median"] - d["p50"]["median"]
            add99 = s["p99"]["median"] - d["p99"]["median"]
            s["added_p50"], s["added_p99"] = add50, add99
            rows.append([v, B.fmt_stat(s["p50"], "%.1f"), B.fmt_stat(s["p99"], "%.1f"),
                         "%+.1f" % add50, "%+.1f" % add99, B.ratio(s["p50"], d["p50"]),
                         "%.2f" % s["bg_max"]])
        text.append("B3, %d-byte messages, return path first (µs)\n\n" % size + B.md_table(
            ["variant", "RTT p50 (min-max)", "RTT p99 (min-max)", "added p50",
             "added p99", "p50 vs direct", "bg cores max"], rows))
        t = out.get(("relay-tls", size))
        if t:
            lines.append("- %d B: relay-tls adds %.1f µs p50 (target <= %.0f): %s" % (
                size, t["added_p50"], TLS_ADDED_P50_TARGET,
                "met" if t["added_p50"] <= TLS_ADDED_P50_TARGET else "MISSED"))
        p = out.get(("relay-plain", size))
        if p:
            lines.append("- %d B: relay-plain adds %.1f µs p50 (%.1f per hop; "
                         "performance.md goal <= 30 per hop), p99/p50 = %.2f" % (
                             size, p["added_p50"], p["added_p50"] / 2,
                             p["p99"]["median"] / p["p50"]["median"]))
    return out, "\n\n".join(text) + "\n\nTargets (medians):\n\n" + "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=20000)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--sizes", default="64,4096")
    ap.add_argument("--channels", type=int, default=1, help="relay session channels")
    ap.add_argument("--threads0", action="store_true",
                    help="also relay pairs with --data-threads 0 (relay-*-t0)")
    ap.add_argument("--reps", type=int, default=B.reps_default())
    ap.add_argument("--name", default="b3-latency")
    args = ap.parse_args()
    args.sizes = [int(x) for x in args.sizes.split(",")]
    pre = B.preflight()
    b = Bench(args)
    try:
        b.setup()
        variants = b.variants()
        runs = b.run()
    finally:
        b.teardown()
    summ, text = report(runs, variants, args.sizes)
    print(text)
    B.save(args.name, {"benchmark": "B3", "argv": sys.argv, "args": vars(args),
                       "preflight": pre, "runs": runs,
                       "summary": [dict(variant=k[0], size=k[1], **v)
                                   for k, v in sorted(summ.items())]}, text)
    B.shutil.rmtree(b.d, ignore_errors=True)


if __name__ == "__main__":
    main()
