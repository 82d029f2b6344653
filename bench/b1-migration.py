#!/usr/bin/env python3
"""B1: real QEMU migration of a guest that dirties memory (issue #6).

    top_builddir=/tmp/bb python3 bench/b1-migration.py [--mem 1024] [--hot 32] [--reps 5]

The guest is bench/guest/dirtyguest.S (derived from tests/guest/bootblock.S):
it sets byte 0 of every 4 KiB page of its --mem MiB of RAM (so QEMU's first
pass sends all of it in full pages), then increments byte 0 of every page of
the first --hot MiB, pass after pass (thousands of passes a second under TCG):
a working set that is dirty again at every iteration.  Both QEMUs get
return-path and events, QEMU's default downtime-limit 300 ms
(--downtime-limit), no auto-converge; so precopy converges once an iteration
over the hot window fits the downtime limit at the measured bandwidth.
Paths, interleaved (rotated order every repetition):

  direct           migrate unix:<dst-qemu.sock>, max-bandwidth 10 GB/s
  relay-plain      through two relays, plaintext link of --channels channels
  relay-tls        the same, TLS 1.3 + SCRAM (tests' secure_relay_config)
  qemu-tls         direct with QEMU's own TLS (tls-creds-x509, mutual certs)
  direct-cap       direct, max-bandwidth 312.5 MB/s (2.5 GbE)
  relay-plain-cap  relay-plain, max-bandwidth 312.5 MB/s

Every run starts two fresh QEMUs; the relay pairs run through the whole
benchmark.  From the source's query-migrate after completion: total-time,
downtime, setup-time, ram transferred, mbps; throughput = transferred /
(total-time - setup-time).  Relay CPU: utime+stime of both relays over the
migration, per GiB of QEMU bytes carried.  If a run has not converged after
--patience s the downtime-limit is doubled every 4 s (as the tests do) and the
run is flagged.  Writes bench/results/b1-migration.{json,md}.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402

R, Q = B.R, B.Q
FAST = Q.FAST_BANDWIDTH          # 10 GB/s: effectively unlimited
CAP = 312500000                  # 312.5 MB/s = 2.5 Gbit/s
CAP_TT_TARGET = 1.05             # relay-plain-cap total time / direct-cap
CAP_DT_TARGET = 1.25             # relay-plain-cap downtime / direct-cap
HOT_OFFSET = 0x1f4               # bench/guest/dirtyguest.S: top of the hot window


class Bench:
    def __init__(self, args):
        self.args = args
        self.d = B.scratch("mrb1-")
        self.paths = {}
        self.n = 0

    def setup(self):
        a = self.args
        self.image = Q.build_guest(self.d, top=a.mem * Q.MiB,
                                   source=os.path.join(B.HERE, "guest", "dirtyguest.S"))
        with open(self.image, "r+b") as f:     # top of the hot window (HOT_OFFSET)
            f.seek(HOT_OFFSET)
            f.write((Q.MEM_START + a.hot * Q.MiB).to_bytes(4, "little"))
        Q.select_accel(self.d, self.image)
        self.paths = B.start_paths(self.d, references=False)
        import pki
        self.qpki = pki.make_relay_dirs(os.path.join(self.d, "qpki"))

    def teardown(self):
        B.stop_paths(self.paths)

    def variants(self):
        return ["direct", "relay-plain", "relay-tls", "qemu-tls", "direct-cap",
                "relay-plain-cap"]

    def run_one(self, v):
        a = self.args
        self.n += 1
        w = os.path.join(self.d, "r%d" % self.n)
        os.makedirs(w)
        base = v.replace("-cap", "")
        qtls = base == "qemu-tls"
        dx = sx = []
        if qtls:
            dx = ["-object", "tls-creds-x509,id=tls0,dir=%s,endpoint=server,verify-peer=on"
                  % self.qpki["dst"]]
            sx = ["-object", "tls-creds-x509,id=tls0,dir=%s,endpoint=client,verify-peer=on"
                  % self.qpki["src"]]
        dst = Q.Qemu(w, "dst", self.image, mem_mib=a.mem, incoming=True, extra_args=dx)
        src = Q.Qemu(w, "src", self.image, mem_mib=a.mem, extra_args=sx)
        pair = self.paths.get(base)
        sid = None
        try:
            src.start()
            dst.start(skip_on_failure=False)
            src.wait_serial(b"B", timeout=60)
            caps = {"events": True, "return-path": True}
            params = {"downtime-limit": a.downtime_limit,
                      "max-bandwidth": CAP if v.endswith("-cap") else FAST}
            for q in (src, dst):
                q.set_caps(caps)
                p = dict(params)
                if qtls:
                    p["tls-creds"] = "tls0"
                    if q is src:
                        p["tls-hostname"] = "localhost"
                q.set_params(p)
            dst_uri = "unix:%s/dst-qemu.sock" % w
            dst.migrate_incoming(dst_uri)
            uri = dst_uri
            pids = []
            if pair is not None:
                sid, uri = pair.open(dst_uri, a.channels,
                                     listen_uri="unix:%s/src-relay.sock" % w)
                pids = pair.pids
            c0, s0 = B.cpu_of(pids), B.system_cpu()
            qc0 = B.cpu_of([src.pid, dst.pid])
            t0 = time.monotonic()
            src.migrate(uri)
            dl, escalate, escalated = a.downtime_limit, t0 + a.patience, False
            while True:
                info = src.query_migrate()
                st = info.get("status")
                if st == "completed":
                    break
                if st in ("failed", "cancelled"):
                    raise RuntimeError("%s: migration %s: %s" % (v, st,
                                                                 info.get("error-desc")))
                now = time.monotonic()
                if st == "active" and now > escalate and dl < 30000:
                    dl = min(dl * 2, 30000)
                    src.set_params({"downtime-limit": dl})
                    escalate, escalated = now + 4, True
                    B.log("  %s not converged after %.0f s: downtime-limit %d ms", v,
                          now - t0, dl)
                if now - t0 > 180:
                    raise RuntimeError("%s: still %s after 180 s" % (v, st))
                time.sleep(0.05)
            wall = time.monotonic() - t0
            info = src.final_info()
            dst.wait_status("completed", timeout=60)
            carried = None
            if sid is not None:
                se = pair.close(sid)
                sid = None
                carried = se["bytes"]["source-to-destination"]
            c1, s1 = B.cpu_of(pids), B.system_cpu()
            qc1 = B.cpu_of([src.pid, dst.pid])
        finally:
            for q in (src, dst):
                try:
                    q.stop(timeout=5)
                except Exception:
                    q.kill()
            if sid is not None:
                try:
                    pair.S.cmd("session-cancel", id=sid)
                except Exception:
                    pass
        ram = info.get("ram", {})
        tt, dt, setup = info.get("total-time"), info.get("downtime"), info.get("setup-time", 0)
        xfer = ram.get("transferred", 0)
        gib = (carried or xfer) / B.GiB
        sysc = sum(s1[k] - s0[k] for k in ("user", "nice", "system", "irq", "softirq"))
        B.shutil.rmtree(w, ignore_errors=True)
        return {"total_ms": tt, "downtime_ms": dt, "setup_ms": setup,
                "transferred": xfer, "relay_bytes": carried,
                "mbps_qemu": ram.get("mbps"), "dirty_syncs": ram.get("dirty-sync-count"),
                "mb_per_s": round(xfer / ((tt - setup) / 1000.0) / 1e6, 1),
                "relay_cpu": round(c1 - c0, 3),
                "relay_cpu_per_gib": round((c1 - c0) / gib, 3) if pids else None,
                "qemu_cpu_per_gib": round((qc1 - qc0) / gib, 3),
                "system_cpu_per_gib": round(sysc / gib, 3),
                "wall_s": round(wall, 3), "escalated": escalated, "final_downtime_limit": dl}

    def run(self):
        runs = []
        for rep in range(self.args.reps):
            for v in B.rotate(self.variants(), rep):
                res, load, attempts = B.measured(lambda: self.run_one(v))
                res.update(variant=v, rep=rep, load=load, attempts=len(attempts))
                runs.append(res)
                if "error" in res:
                    continue
                B.log("rep %d  %-15s total %5d ms  downtime %5d ms  %6.1f MB/s  relay %s "
                      "CPU-s/GiB  bg %.2f%s", rep, v, res["total_ms"], res["downtime_ms"],
                      res["mb_per_s"], res["relay_cpu_per_gib"], load["bg_cores"],
                      "  (downtime-limit raised)" if res["escalated"] else "")
        return runs


def report(runs, variants):
    summ = {}
    for v in variants:
        rs = [r for r in B.ok_runs(runs) if r["variant"] == v]
        if rs:
            summ[v] = {k: B.stats([r[k] for r in rs]) for k in (
                "total_ms", "downtime_ms", "setup_ms", "mb_per_s", "relay_cpu_per_gib",
                "qemu_cpu_per_gib", "system_cpu_per_gib", "dirty_syncs")}
            summ[v]["bg_max"] = max(r["load"]["bg_cores"] for r in rs)
            summ[v]["escalated"] = sum(1 for r in rs if r["escalated"])
    rows = []
    for v in variants:
        s = summ.get(v)
        if s is None:
            continue
        d = summ.get("direct-cap" if v.endswith("-cap") else "direct") or {}
        rows.append([v, B.fmt_stat(s["total_ms"], "%.0f"), B.fmt_stat(s["downtime_ms"], "%.0f"),
                     B.fmt_stat(s["setup_ms"], "%.0f"), B.fmt_stat(s["mb_per_s"], "%.0f"),
                     B.ratio(s["total_ms"], d.get("total_ms")),
                     B.ratio(s["downtime_ms"], d.get("downtime_ms")),
                     B.fmt_stat(s["relay_cpu_per_gib"], "%.2f"),
                     B.fmt_stat(s["qemu_cpu_per_gib"], "%.2f"),
                     B.fmt_stat(s["dirty_syncs"], "%.0f"),
                     "%.2f" % s["bg_max"] + (" (%d raised)" % s["escalated"]
                                             if s["escalated"] else "")])
    text = ("B1, QEMU migration (ratios vs direct, *-cap vs direct-cap)\n\n" + B.md_table(
        ["variant", "total ms", "downtime ms", "setup ms", "MB/s", "total vs direct",
         "downtime vs direct", "relay CPU-s/GiB", "QEMUs CPU-s/GiB", "passes",
         "bg cores max"], rows))
    lines = []
    pc, dc = summ.get("relay-plain-cap"), summ.get("direct-cap")
    if pc and dc:
        r1 = pc["total_ms"]["median"] / dc["total_ms"]["median"]
        r2 = pc["downtime_ms"]["median"] / dc["downtime_ms"]["median"]
        lines.append("- 312.5 MB/s: relay-plain total time %.3f x direct (target <= %.2f): %s"
                     % (r1, CAP_TT_TARGET, "met" if r1 <= CAP_TT_TARGET else "MISSED"))
        lines.append("- 312.5 MB/s: relay-plain downtime %.3f x direct (target <= %.2f): %s"
                     % (r2, CAP_DT_TARGET, "met" if r2 <= CAP_DT_TARGET else "MISSED"))
    t, q, d = summ.get("relay-tls"), summ.get("qemu-tls"), summ.get("direct")
    if t and q and d:
        r1 = t["total_ms"]["median"] / d["total_ms"]["median"]
        r2 = q["total_ms"]["median"] / d["total_ms"]["median"]
        lines.append("- uncapped: relay-tls total time %.2f x direct, QEMU native TLS %.2f x "
                     "direct (performance.md goal: relay-tls <= qemu-tls): %s"
                     % (r1, r2, "met" if r1 <= r2 else "MISSED"))
    return summ, text + "\n\nTargets (medians):\n\n" + "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mem", type=int, default=1024, help="guest RAM, MiB")
    ap.add_argument("--hot", type=int, default=32, help="working set re-dirtied, MiB")
    ap.add_argument("--channels", type=int, default=2, help="relay session channels")
    ap.add_argument("--downtime-limit", type=int, default=300)
    ap.add_argument("--patience", type=float, default=20.0)
    ap.add_argument("--reps", type=int, default=B.reps_default())
    ap.add_argument("--variants", default=None, help="comma-separated subset")
    ap.add_argument("--name", default="b1-migration")
    args = ap.parse_args()
    pre = B.preflight()
    b = Bench(args)
    if args.variants:
        wanted = args.variants.split(",")
        b.variants = lambda: wanted
    try:
        b.setup()
        variants = b.variants()
        runs = b.run()
    finally:
        b.teardown()
    summ, text = report(runs, variants)
    print(text)
    B.save(args.name, {"benchmark": "B1", "argv": sys.argv, "args": vars(args),
                       "preflight": pre, "accel": Q.accel_args(), "runs": runs,
                       "summary": [dict(variant=k, **v) for k, v in sorted(summ.items())]},
           text)
    B.shutil.rmtree(b.d, ignore_errors=True)


if __name__ == "__main__":
    main()
