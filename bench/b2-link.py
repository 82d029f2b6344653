#!/usr/bin/env python3
"""B2: link throughput of a synthetic stream at 1, 2, 4 channels (issue #6).

    top_builddir=/tmp/bb python3 bench/b2-link.py [--seconds 4] [--reps 5]

A C source (bench/tools/mrbench.c) writes incompressible 256 KiB buffers for
--seconds over N TCP connections into each path; a C sink reads them.  Paths,
all started once and run interleaved (rotated order each repetition):

  direct          source -> sink
  fwd-pair        source -> splice forwarder -> splice forwarder -> sink
  stunnel-pair    source -> stunnel client -> TLS 1.3 -> stunnel server -> sink
  relay-plain     source -> migrelayd -> N plaintext channels -> migrelayd -> sink
  relay-tls       the same with TLS 1.3 + SCRAM (the tests' secure_relay_config)
  relay-*-1s      one connection striped over N channels (N > 1)
  relay-*-t0      with --threads0: relays started with --data-threads 0 (channel
                  I/O on the main thread), against the default (data threads)

N connections for every path except *-1s (for the relays: N QEMU-like
connections in one session of N channels, as multifd uses it).  Throughput is
bytes at the sink over first byte to last EOF; relay CPU is utime+stime of
both relay (or forwarder/stunnel) processes over the transfer, per GiB.
Writes bench/results/b2-link.{json,md,png}.
"""

import argparse
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402

PLAIN_CPU_TARGET = 0.4       # CPU-s/GiB, relay pair, plaintext, uncapped
TLS_CPU_TARGET = 2.0         # CPU-s/GiB, relay pair, TLS
TLS_VS_STUNNEL_TARGET = 1.5
VARIANTS = ["direct", "fwd-pair", "stunnel-pair", "relay-plain", "relay-tls",
            "relay-plain-1s", "relay-tls-1s", "relay-plain-t0", "relay-tls-t0"]
STYLE = {"direct": "lc rgb '#000000' dt 1", "fwd-pair": "lc rgb '#2ca02c' dt 1",
         "stunnel-pair": "lc rgb '#9467bd' dt 1", "relay-plain": "lc rgb '#1f77b4' dt 1",
         "relay-tls": "lc rgb '#d62728' dt 1", "relay-plain-1s": "lc rgb '#1f77b4' dt 2",
         "relay-tls-1s": "lc rgb '#d62728' dt 2", "relay-plain-t0": "lc rgb '#17becf' dt 3",
         "relay-tls-t0": "lc rgb '#ff7f0e' dt 3"}


class Bench:
    def __init__(self, args):
        self.args = args
        self.d = B.scratch("mrb2-")
        self.paths = {}

    def setup(self):
        self.paths = B.start_paths(self.d, threads0=self.args.threads0)

    def teardown(self):
        B.stop_paths(self.paths)

    def variants(self):
        return [x for x in VARIANTS if x.replace("-1s", "") in self.paths or x == "direct"]

    def run_one(self, variant, n):
        base = variant.replace("-1s", "")
        streams = 1 if variant.endswith("-1s") else n
        path = self.paths.get(base)
        sid = None
        if variant == "direct":
            sink = B.Helper("sink", "127.0.0.1:0", streams, listener=True)
            entry, pids = sink.port, []
        elif base in ("fwd-pair", "stunnel-pair"):
            sink = B.Helper("sink", "127.0.0.1:%d" % path.target, streams, listener=True)
            entry, pids = path.entry, path.pids
        else:
            sink = B.Helper("sink", "127.0.0.1:0", streams, listener=True)
            sid, uri = path.open("tcp:127.0.0.1:%d" % sink.port, channels=n)
            entry, pids = int(uri.rsplit(":", 1)[1]), path.pids
        try:
            c0, s0 = B.cpu_of(pids), B.system_cpu()
            src = B.Helper("source", "127.0.0.1:%d" % entry, streams, self.args.seconds)
            sres = src.result(timeout=self.args.seconds + 60)
            kres = sink.result(timeout=60)
            if sid is not None:
                se = path.close(sid)
                if se["bytes"]["source-to-destination"] != kres["bytes"]:
                    raise RuntimeError("relay counted %s bytes, sink %s" % (
                        se["bytes"], kres["bytes"]))
            c1, s1 = B.cpu_of(pids), B.system_cpu()
        finally:
            sink.kill()
        if sres["bytes"] != kres["bytes"]:
            raise RuntimeError("%s: sent %d, received %d" % (variant, sres["bytes"],
                                                             kres["bytes"]))
        gib = kres["bytes"] / B.GiB
        wall = kres["t_last"] - kres["t_first"]
        sysc = sum(s1[k] - s0[k] for k in ("user", "nice", "system", "irq", "softirq"))
        return {"bytes": kres["bytes"], "seconds": round(wall, 4),
                "gbps": round(kres["bytes"] * 8 / wall / 1e9, 3),
                "relay_cpu": round(c1 - c0, 3),
                "relay_cpu_per_gib": round((c1 - c0) / gib, 4) if pids else None,
                "system_cpu_per_gib": round(sysc / gib, 4),
                "endpoints_cpu": round(sres["cpu"] + kres["cpu"], 3)}

    def run(self):
        runs = []
        variants = self.variants()
        for rep in range(self.args.reps):
            for n in self.args.channels:
                for v in B.rotate(variants, rep + n):
                    if v.endswith("-1s") and n == 1:
                        continue
                    res, load, attempts = B.measured(lambda: self.run_one(v, n))
                    res.update(variant=v, channels=n, rep=rep, load=load,
                               attempts=len(attempts))
                    runs.append(res)
                    if "error" in res:
                        continue
                    B.log("rep %d  %-15s ch=%d  %6.2f Gbit/s  relay %s CPU-s/GiB  bg %.2f",
                          rep, v, n, res["gbps"], res["relay_cpu_per_gib"],
                          load["bg_cores"])
        return runs


def summarize(runs, channels):
    summ = {}
    for r in B.ok_runs(runs):
        k = (r["variant"], r["channels"])
        summ.setdefault(k, []).append(r)
    out = {}
    for k, rs in summ.items():
        out[k] = {"gbps": B.stats([r["gbps"] for r in rs]),
                  "relay_cpu_per_gib": B.stats([r["relay_cpu_per_gib"] for r in rs]),
                  "system_cpu_per_gib": B.stats([r["system_cpu_per_gib"] for r in rs]),
                  "bg_max": max(r["load"]["bg_cores"] for r in rs),
                  "steal_max": max(r["load"]["steal_cores"] for r in rs)}
    return out


def tables(summ, channels, variants):
    text = []
    for n in channels:
        rows = []
        d = summ.get(("direct", n), {}).get("gbps")
        for v in variants:
            s = summ.get((v, n))
            if s is None:
                continue
            base = v.replace("-1s", "")
            if "tls" in base:
                ref = summ.get(("stunnel-pair", n), {}).get("gbps")
                refname = "stunnel"
            else:
                ref = summ.get(("fwd-pair", n), {}).get("gbps")
                refname = "fwd-pair"
            if v in ("direct", "fwd-pair", "stunnel-pair"):
                vs_ref = "-"
            else:
                vs_ref = "%s x %s" % (B.ratio(s["gbps"], ref), refname)
            rows.append([v, B.fmt_stat(s["gbps"]), B.fmt_stat(s["relay_cpu_per_gib"], "%.3f"),
                         B.fmt_stat(s["system_cpu_per_gib"], "%.2f"),
                         B.ratio(s["gbps"], d), vs_ref,
                         "%.2f / %.2f" % (s["bg_max"], s["steal_max"])])
        text.append("B2, %d channel%s (%d connection%s except *-1s: 1)\n\n" % (
            n, "s" if n > 1 else "", n, "s" if n > 1 else "") + B.md_table(
            ["variant", "Gbit/s median (min-max)", "pair CPU-s/GiB", "system CPU-s/GiB",
             "vs direct", "vs reference", "bg / steal cores max"], rows))
    return "\n\n".join(text)


def targets(summ, channels):
    lines = []
    for n in channels:
        tls = summ.get(("relay-tls", n))
        st = summ.get(("stunnel-pair", n))
        pl = summ.get(("relay-plain", n))
        if tls and st:
            r = tls["gbps"]["median"] / st["gbps"]["median"]
            lines.append("- %d ch: relay-tls / stunnel-pair = %.2f (target >= %.1f): %s" % (
                n, r, TLS_VS_STUNNEL_TARGET, "met" if r >= TLS_VS_STUNNEL_TARGET else "MISSED"))
        if tls:
            c = tls["relay_cpu_per_gib"]["median"]
            lines.append("- %d ch: relay-tls pair %.3f CPU-s/GiB (target <= %.1f): %s" % (
                n, c, TLS_CPU_TARGET, "met" if c <= TLS_CPU_TARGET else "MISSED"))
        if tls and st:
            lines.append("- %d ch: relay-tls pair CPU-s/GiB / stunnel pair's = %.2f "
                         "(performance.md: tuned OpenSSL pair / stunnel = 0.72)" % (
                             n, tls["relay_cpu_per_gib"]["median"]
                             / st["relay_cpu_per_gib"]["median"]))
        if pl:
            c = pl["relay_cpu_per_gib"]["median"]
            lines.append("- %d ch: relay-plain pair %.3f CPU-s/GiB (target <= %.1f): %s" % (
                n, c, PLAIN_CPU_TARGET, "met" if c <= PLAIN_CPU_TARGET else "MISSED"))
        fw = summ.get(("fwd-pair", n))
        if pl and fw:
            r = pl["relay_cpu_per_gib"]["median"] / fw["relay_cpu_per_gib"]["median"]
            lines.append("- %d ch: relay-plain pair CPU-s/GiB / splice pair's = %.2f "
                         "(performance.md B5 goal <= 2): %s" % (n, r, "met" if r <= 2
                                                                 else "MISSED"))
    return "Targets (medians):\n\n" + "\n".join(lines)


def plot(summ, channels, variants, png):
    if not B.shutil.which("gnuplot"):
        B.log("gnuplot not installed: no plot")
        return None
    dat = png[:-4] + ".dat"
    with open(dat, "w") as f:
        for v in variants:
            f.write("# %s\n" % v)
            for n in channels:
                s = summ.get((v, n))
                if s is None and v.endswith("-1s") and n == 1:
                    s = summ.get((v[:-3], n))     # one connection, one channel
                if s:
                    g = s["gbps"]
                    f.write("%d %.3f %.3f %.3f\n" % (n, g["median"], g["min"], g["max"]))
            f.write("\n\n")
    plots = ", ".join("'%s' index %d using 1:2:3:4 with yerrorlines lw 2 %s title '%s'"
                      % (dat, i, STYLE.get(v, ""), v) for i, v in enumerate(variants))
    script = ("set terminal pngcairo size 900,560 font ',11'\nset output '%s'\n"
              "set title 'B2: link throughput vs channels (median, min-max)'\n"
              "set xlabel 'channels (connections; *-1s: one connection)'\n"
              "set ylabel 'Gbit/s'\nset logscale x 2\nset xtics (1,2,4)\n"
              "set xrange [0.8:5]\nset yrange [0:*]\nset key outside right\nset grid\n"
              "plot %s\n" % (png, plots))
    p = subprocess.run(["gnuplot"], input=script.encode(), stderr=subprocess.PIPE)
    if p.returncode != 0:
        B.log("gnuplot failed: %s", p.stderr.decode())
        return None
    return png


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=4.0, help="per transfer")
    ap.add_argument("--reps", type=int, default=B.reps_default())
    ap.add_argument("--channels", default="1,2,4")
    ap.add_argument("--name", default="b2-link", help="results file name")
    ap.add_argument("--threads0", action="store_true",
                    help="also relay pairs with --data-threads 0 (relay-*-t0)")
    ap.add_argument("--report-only", action="store_true",
                    help="redo tables and plot from results/NAME.json")
    args = ap.parse_args()
    args.channels = [int(x) for x in args.channels.split(",")]
    b = None
    if args.report_only:
        rec = B.load(args.name)
        pre, runs, args.channels = rec["preflight"], rec["runs"], rec["args"]["channels"]
        variants = [v for v in VARIANTS if any(r["variant"] == v for r in runs)]
        sys.argv = rec["argv"]
        args.seconds, args.reps = rec["args"]["seconds"], rec["args"]["reps"]
    else:
        pre = B.preflight()
        b = Bench(args)
        try:
            b.setup()
            variants = b.variants()
            runs = b.run()
        finally:
            b.teardown()
    summ = summarize(runs, args.channels)
    text = "%s\n\n%s" % (tables(summ, args.channels, variants),
                         targets(summ, args.channels))
    print(text)
    png = plot(summ, args.channels, variants, os.path.join(B.RESULTS, args.name + ".png"))
    B.save(args.name, {"benchmark": "B2", "argv": sys.argv, "args": vars(args),
                       "preflight": pre, "runs": runs,
                       "summary": [dict(variant=k[0], channels=k[1], **v)
                                   for k, v in sorted(summ.items())],
                       "plot": png}, text)
    if b is not None:
        B.shutil.rmtree(b.d, ignore_errors=True)


if __name__ == "__main__":
    main()
