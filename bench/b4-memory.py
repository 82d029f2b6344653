#!/usr/bin/env python3
"""B4: memory per session, idle, under load, and after the session ends (issue #6).

    top_builddir=/tmp/bb python3 bench/b4-memory.py [--seconds 3] [--reps 3]

PSS (/proc/PID/smaps_rollup) summed over the two processes of each pair:
  baseline  before the run (no session); every path first carries one
            warm-up session (not counted), so that one-time initialisation
            (shared-library pages touched, OpenSSL's method caches) is in the
            baseline rather than counted as a session's leftovers
  idle      K sessions of --channels channels, each with --streams connected
            but silent connections (sampled after IDLE/2 of the IDLE seconds)
  load      the same connections writing for --seconds (sampled every 0.1 s:
            peak and median)
  after     1 s after every session completed and was removed
for K = 1 and 4 concurrent sessions, the relays (plaintext, TLS) and the
references (stunnel pair and splice forwarder pair carrying the same
K x streams connections), interleaved.  Per session = (value - baseline) / K.
Writes bench/results/b4-memory.{json,md}.
"""

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402

MIB = 1024.0
ACTIVE_TARGET_MIB = 64.0     # per active session
AFTER_TOLERANCE_MIB = 1.0    # "back to baseline": within this of the run's baseline
IDLE_S = 1.0


class Bench:
    def __init__(self, args):
        self.args = args
        self.d = B.scratch("mrb4-")
        self.paths = {}

    def setup(self):
        self.paths = B.start_paths(self.d)
        self.fresh = {v: self.pss(v) for v in self.paths}
        for v in self.variants():
            r = self.run_one(v, 1)
            B.log("warm-up %-13s fresh %.1f MiB, after one session %.1f MiB", v,
                  self.fresh[v] / MIB, r["after_kib"] / MIB)

    def teardown(self):
        B.stop_paths(self.paths)

    def variants(self):
        return [v for v in ("relay-plain", "relay-tls", "stunnel-pair", "fwd-pair")
                if v in self.paths]

    def pss(self, v):
        return sum(B.pss_kib(p) for p in self.paths[v].pids)

    def run_one(self, v, k):
        a = self.args
        path = self.paths[v]
        base = self.pss(v)
        sinks, sources, sids = [], [], []
        try:
            if v.startswith("relay"):
                for i in range(k):
                    sink = B.Helper("sink", "127.0.0.1:0", a.streams, listener=True)
                    sinks.append(sink)
                    sid, uri = path.open("tcp:127.0.0.1:%d" % sink.port, channels=a.channels)
                    sids.append(sid)
                    sources.append(B.Helper("source", uri[4:], a.streams, a.seconds, IDLE_S))
            else:
                port = self.paths[v].target
                sinks.append(B.Helper("sink", "127.0.0.1:%d" % port, a.streams * k,
                                      listener=True))
                for i in range(k):
                    sources.append(B.Helper("source", "127.0.0.1:%d" % path.entry, a.streams,
                                            a.seconds, IDLE_S))
            t0 = time.monotonic()
            time.sleep(IDLE_S / 2)
            idle = self.pss(v)
            while time.monotonic() < t0 + IDLE_S + 0.1:
                time.sleep(0.02)
            samples = []
            while any(s.proc.poll() is None for s in sources):
                samples.append(self.pss(v))
                time.sleep(0.1)
            byts = sum(s.result()["bytes"] for s in sources)
            for s in sinks:
                s.result()
            for sid in sids:
                path.close(sid, remove=True)
            time.sleep(1.0)
            after = self.pss(v)
        finally:
            for s in sinks + sources:
                s.kill()
        return {"baseline_kib": base, "idle_kib": idle, "load_max_kib": max(samples),
                "load_median_kib": statistics.median(samples), "after_kib": after,
                "samples": len(samples), "bytes": byts, "k": k,
                "per_process_after": {str(p): B.pss_kib(p) for p in path.pids}}

    def run(self):
        runs = []
        for rep in range(self.args.reps):
            for k in self.args.sessions:
                for v in B.rotate(self.variants(), rep):
                    res, load, attempts = B.measured(lambda: self.run_one(v, k))
                    res.update(variant=v, rep=rep, load=load, attempts=len(attempts))
                    runs.append(res)
                    if "error" in res:
                        continue
                    B.log("rep %d  %-13s K=%d  base %.1f idle %.1f load max %.1f after %.1f "
                          "MiB  bg %.2f", rep, v, k, res["baseline_kib"] / MIB,
                          res["idle_kib"] / MIB, res["load_max_kib"] / MIB,
                          res["after_kib"] / MIB, load["bg_cores"])
        return runs


def report(runs, variants, sessions, fresh):
    summ, rows, lines = {}, [], []
    for v in variants:
        for k in sessions:
            rs = [r for r in B.ok_runs(runs) if r["variant"] == v and r["k"] == k]
            if not rs:
                continue
            s = {"baseline": B.stats([r["baseline_kib"] / MIB for r in rs]),
                 "idle_per_session": B.stats([(r["idle_kib"] - r["baseline_kib"]) / MIB / k
                                              for r in rs]),
                 "load_per_session": B.stats([(r["load_max_kib"] - r["baseline_kib"]) / MIB
                                              / k for r in rs]),
                 "load_total": B.stats([r["load_max_kib"] / MIB for r in rs]),
                 "after_minus_baseline": B.stats([(r["after_kib"] - r["baseline_kib"]) / MIB
                                                  for r in rs]),
                 "bg_max": max(r["load"]["bg_cores"] for r in rs)}
            summ[(v, k)] = s
            rows.append([v, k, B.fmt_stat(s["baseline"], "%.1f"),
                         B.fmt_stat(s["idle_per_session"], "%.2f"),
                         B.fmt_stat(s["load_per_session"], "%.1f"),
                         B.fmt_stat(s["load_total"], "%.1f"),
                         B.fmt_stat(s["after_minus_baseline"], "%+.2f"),
                         "%.2f" % s["bg_max"]])
            if v.startswith("relay"):
                lp = s["load_per_session"]["median"]
                am = s["after_minus_baseline"]["max"]
                lines.append("- %s, K=%d: %.1f MiB per active session (target <= %.0f): %s; "
                             "after the sessions %+.2f MiB vs baseline at most (<= %.0f): %s"
                             % (v, k, lp, ACTIVE_TARGET_MIB,
                                "met" if lp <= ACTIVE_TARGET_MIB else "MISSED", am,
                                AFTER_TOLERANCE_MIB,
                                "met" if am <= AFTER_TOLERANCE_MIB else "MISSED"))
        rs = [r for r in B.ok_runs(runs) if r["variant"] == v]
        if rs:
            lines.append("- %s: PSS at start %.1f MiB (before the warm-up session); before the "
                         "%d runs %.1f-%.1f, after them "
                         "%.1f-%.1f, after the last %.1f (a leak would grow run after run)" % (
                             v, fresh[v] / MIB, len(rs),
                             min(r["baseline_kib"] for r in rs) / MIB,
                             max(r["baseline_kib"] for r in rs) / MIB,
                             min(r["after_kib"] for r in rs) / MIB,
                             max(r["after_kib"] for r in rs) / MIB, rs[-1]["after_kib"] / MIB))
    text = ("B4, PSS of the pair (both processes), MiB\n\n" + B.md_table(
        ["variant", "K sessions", "baseline", "idle per session", "peak load per session",
         "peak load total", "after - baseline", "bg cores max"], rows) +
        "\n\nTargets (medians; after: worst repetition):\n\n" + "\n".join(lines))
    return summ, text


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--reps", type=int, default=B.reps_default(3))
    ap.add_argument("--sessions", default="1,4")
    ap.add_argument("--channels", type=int, default=4)
    ap.add_argument("--streams", type=int, default=4, help="connections per session")
    ap.add_argument("--name", default="b4-memory")
    ap.add_argument("--report-only", action="store_true",
                    help="redo the tables from results/NAME.json")
    args = ap.parse_args()
    args.sessions = [int(x) for x in args.sessions.split(",")]
    b = None
    if args.report_only:
        rec = B.load(args.name)
        pre, runs, fresh = rec["preflight"], rec["runs"], rec["fresh_kib"]
        sys.argv, args.sessions = rec["argv"], rec["args"]["sessions"]
        for k in ("seconds", "reps", "channels", "streams"):
            setattr(args, k, rec["args"][k])
        variants = [v for v in ("relay-plain", "relay-tls", "stunnel-pair", "fwd-pair")
                    if v in fresh]
    else:
        pre = B.preflight()
        b = Bench(args)
        try:
            b.setup()
            variants = b.variants()
            runs = b.run()
        finally:
            b.teardown()
        fresh = b.fresh
    summ, text = report(runs, variants, args.sessions, fresh)
    print(text)
    B.save(args.name, {"benchmark": "B4", "argv": sys.argv, "args": vars(args),
                       "preflight": pre, "runs": runs, "fresh_kib": fresh,
                       "summary": [dict(variant=k[0], k=k[1], **v)
                                   for k, v in sorted(summ.items())]}, text)
    if b is not None:
        B.shutil.rmtree(b.d, ignore_errors=True)


if __name__ == "__main__":
    main()
