#!/usr/bin/env python3
"""migrelay demo: migrate a live, memory-dirtying QEMU guest directly and through relays.

1. baseline: a fresh QEMU pair migrates directly over a unix socket;
2. a fresh QEMU pair migrates through two migrelayd relays (source relay -> TCP link ->
   destination relay), with QEMU's return path on;
and for both: live progress, then the memory check of tests/guest/README (source and
destination RAM byte-identical, guest pattern intact) and "the destination guest runs".
Prints a summary with the ratio relayed/direct.  Exit status 0 only if both migrations
completed and both memory checks passed.

Usage: scripts/demo.py [--builddir DIR] [--mem MIB] [--channels N] [--tls]
                       [--workdir DIR] [--skip-direct] [--keep-dumps]
Runs as an ordinary user; needs qemu-system-x86_64, as, ld and a built migrelayd.
"""

import argparse
import os
import shutil
import sys
import tempfile
import time

TOP = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.join(TOP, "tests", "lib"))

import qemu as Q  # noqa: E402

SID = "demo"
CAPS = {"return-path": True, "events": True}
TTY = sys.stdout.isatty()


def out(msg=""):
    print(msg, flush=True)


def status_line(msg):
    """One line, rewritten in place on a terminal, printed once a second otherwise."""
    if TTY:
        sys.stdout.write("\r\033[K" + msg[:max(20, shutil.get_terminal_size().columns - 1)])
        sys.stdout.flush()
    else:
        print(msg, flush=True)


def cpu_seconds(pid):
    """utime + stime of a process, in seconds (None if unknown)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def rate(n_bytes, seconds):
    if seconds <= 0:
        return "-"
    return "%.0f MB/s" % (n_bytes / seconds / 1e6)


class Result:
    def __init__(self, name):
        self.name = name
        self.ok = False
        self.error = None
        self.wall = None           # migrate -> source completed, as seen by us
        self.info = {}             # source query-migrate at completion
        self.mem = None
        self.dst_runs = None
        self.relay = None          # source relay session object at the end
        self.relay_cpu = None      # CPU seconds of the (source, destination) relay

    @property
    def transferred(self):
        return self.info.get("ram", {}).get("transferred", 0)

    @property
    def throughput(self):
        t = self.info.get("total-time")
        return self.transferred / (t / 1000.0) if t else 0.0


def run_pair(args, workdir, image, res, relays=None):
    """Start a fresh QEMU pair, migrate (directly or through relays), check."""
    tag = "direct" if relays is None else "relayed"
    d = os.path.join(workdir, tag)
    os.makedirs(d, exist_ok=True)
    src = Q.Qemu(d, "src", image, mem_mib=args.mem)
    dst = Q.Qemu(d, "dst", image, mem_mib=args.mem, incoming=True)
    try:
        src.start()
        dst.start(skip_on_failure=False)
        src.wait_serial(b"B", timeout=60)
        out("[%s] QEMU pair up (%d MiB guest dirtying all its RAM, %s)"
            % (tag, args.mem, " ".join(Q.accel_args())))
        for q in (src, dst):
            q.set_caps(CAPS)
            q.set_params(Q.FAST_PARAMS)
        dst_uri = "unix:%s/dst-qemu.sock" % d
        dst.migrate_incoming(dst_uri)
        if relays is None:
            uri = dst_uri
        else:
            S, D = relays
            D.cmd("session-incoming", id=SID, qemu=dst_uri)
            uri = "unix:%s/src-relay.sock" % d
            se = S.cmd("session-outgoing", id=SID, peer=D.peer_addr(), listen=uri,
                       channels=args.channels)
            out("[%s] relay session %s: %s, %s channel(s), features %s"
                % (tag, SID, se.get("state"), se.get("channels"),
                   ",".join(se.get("features", [])) or "-"))
        cpu0 = [cpu_seconds(r.pid) for r in relays] if relays is not None else None
        t0 = time.monotonic()
        src.migrate(uri)
        last = (t0, 0)
        relay_txt = ""
        next_print = t0
        while True:
            info = src.query_migrate()
            st = info.get("status")
            now = time.monotonic()
            ram = info.get("ram", {})
            if relays is not None and (now - last[0] >= 0.5 or st in Q.FINAL_STATES):
                try:
                    se = relays[0].session(SID)
                    b = se.get("bytes", {}).get("source-to-destination", 0)
                    if se.get("state") in Q.FINAL_STATES or st in Q.FINAL_STATES:
                        r = "avg " + rate(b, now - t0)
                    else:
                        r = rate(b - last[1], now - last[0])
                    last = (now, b)
                    relay_txt = " | relay %s %s (%s), link %s" % (
                        se.get("state"), Q.fmt_bytes(b), r,
                        Q.fmt_bytes(se.get("link-bytes", {}).get("sent", 0)))
                except Exception as e:
                    relay_txt = " | relay: %s" % e
            if st in Q.FINAL_STATES:
                res.wall = now - t0
            if TTY or now >= next_print or st in Q.FINAL_STATES:
                status_line("[%s] %5.1fs %-10s sent %9s remaining %9s pass %s%s"
                            % (tag, now - t0, st, Q.fmt_bytes(ram.get("transferred", 0)),
                               Q.fmt_bytes(ram.get("remaining", 0)),
                               ram.get("dirty-sync-count", "-"), relay_txt))
                next_print = now + 1.0
            if st in Q.FINAL_STATES:
                break
            if now - t0 > args.timeout:
                raise RuntimeError("migration still %s after %d s" % (st, args.timeout))
            time.sleep(0.05)
        res.info = src.final_info() if st == "completed" else info
        if TTY:
            print(flush=True)
        if st != "completed":
            raise RuntimeError("source QEMU: migration %s: %s" % (st, info.get("error-desc")))
        dst.wait_status("completed", timeout=60)
        if relays is not None:
            for r in relays:
                se = r.wait_state(SID, Q.FINAL_STATES, timeout=30)
                if se.get("state") != "completed":
                    raise RuntimeError("relay %s: session %s: %s" % (r.name, se.get("state"),
                                                                      se.get("error")))
            res.relay = relays[0].session(SID)
            cpu1 = [cpu_seconds(r.pid) for r in relays]
            if None not in cpu0 + cpu1:
                res.relay_cpu = [b - a for a, b in zip(cpu0, cpu1)]
        out("[%s] completed in %.2f s; checking memory (%d MiB, both QEMUs) ..."
            % (tag, res.wall, args.mem - 1))
        res.mem = Q.dump_and_check(src, dst, d, keep=args.keep_dumps)
        out("[%s] memory check: %s" % (tag, res.mem.summary()))
        dst.execute("cont")
        ok, why = Q.guest_runs(dst, timeout=10)
        res.dst_runs = ok
        out("[%s] destination guest after cont: %s" % (tag, why))
        res.ok = res.mem.ok and ok
    except Q.Skip:
        raise
    except Exception as e:
        if TTY:
            print(flush=True)
        res.error = str(e)
        out("[%s] FAILED: %s" % (tag, e))
        for q in (src, dst):
            out("----- %s (%s) -----\n%s" % (q.name, q.log_path, q.log_tail(2000)))
    finally:
        src.stop(timeout=5)
        dst.stop(timeout=5)
        if relays is not None:
            for r in relays:
                try:
                    r.cmd("session-remove", id=SID)
                except Exception:
                    pass
    return res


def summary(results):
    out()
    out("=" * 78)
    fmt = "%-28s" + " %14s" * len(results)
    out(fmt % ("", *[r.name for r in results]))

    def row(label, fn):
        vals = []
        for r in results:
            try:
                vals.append(fn(r))
            except Exception:
                vals.append("-")
        out(fmt % (label, *vals))

    row("result", lambda r: "OK" if r.ok else "FAILED")
    row("wall time (migrate->done)", lambda r: "%.3f s" % r.wall)
    row("QEMU total-time", lambda r: "%d ms" % r.info["total-time"])
    row("QEMU downtime", lambda r: "%d ms" % r.info["downtime"])
    row("RAM bytes sent", lambda r: Q.fmt_bytes(r.transferred))
    row("passes (dirty syncs)", lambda r: str(r.info["ram"]["dirty-sync-count"]))
    row("throughput", lambda r: "%.0f MB/s" % (r.throughput / 1e6))
    row("QEMU payload via relay", lambda r: Q.fmt_bytes(
        r.relay["bytes"]["source-to-destination"]) if r.relay else "-")
    row("return path via relay", lambda r: Q.fmt_bytes(
        r.relay["bytes"]["destination-to-source"]) if r.relay else "-")
    row("relay link features", lambda r: ",".join(
        f for f in r.relay["features"] if f != "multichannel") if r.relay else "-")
    row("relay link bytes sent", lambda r: Q.fmt_bytes(
        r.relay["link-bytes"]["sent"]) if r.relay else "-")
    row("relay CPU src+dst", lambda r: "%.2f+%.2f s" % tuple(r.relay_cpu)
        if r.relay_cpu else "-")
    row("memory check", lambda r: ("OK" if r.mem.ok else "FAILED") if r.mem else "-")
    row("destination guest runs", lambda r: {True: "yes", False: "NO", None: "-"}[r.dst_runs])
    if len(results) == 2 and all(r.ok for r in results):
        d, r = results
        out("-" * 78)
        out("relayed / direct: wall time x%.2f, total-time x%.2f, throughput x%.2f, "
            "downtime %+d ms"
            % (r.wall / d.wall, r.info["total-time"] / max(1, d.info["total-time"]),
               r.throughput / max(1.0, d.throughput), r.info["downtime"] - d.info["downtime"]))
    out("=" * 78)
    for r in results:
        if r.mem and not r.mem.ok:
            out("%s memory check: %s" % (r.name, r.mem.summary()))
        if r.error:
            out("%s error: %s" % (r.name, r.error))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--builddir", default=os.environ.get("top_builddir") or
                    os.path.join(TOP, "build"))
    ap.add_argument("--mem", type=int, default=256, help="guest RAM in MiB (default 256)")
    ap.add_argument("--channels", type=int, default=2, help="relay link channels (default 2)")
    ap.add_argument("--workdir", help="where sockets, logs and dumps go (default: a new "
                    "directory under /tmp, kept)")
    ap.add_argument("--timeout", type=int, default=120, help="per-migration limit, seconds")
    ap.add_argument("--tls", action="store_true", default=True,
                    help="relays use TLS 1.3 with mutual certificates (a throw-away PKI) "
                    "and SCRAM-SHA-256 (the default; needs openssl)")
    ap.add_argument("--plaintext", dest="tls", action="store_false",
                    help="relays use --insecure-plaintext instead of TLS")
    ap.add_argument("--skip-direct", action="store_true", help="no direct baseline")
    ap.add_argument("--keep-dumps", action="store_true", help="keep the RAM dumps")
    args = ap.parse_args()
    if args.mem < 4 or args.mem > 3072:
        ap.error("--mem must be 4..3072 MiB")
    os.environ["top_builddir"] = os.path.abspath(args.builddir)
    os.environ.setdefault("top_srcdir", TOP)
    import relay as R

    if args.workdir:
        workdir = os.path.abspath(args.workdir)
        os.makedirs(workdir, exist_ok=True)
    else:
        workdir = tempfile.mkdtemp(prefix="migrelay-demo-")
    if len(workdir) > 70:
        sys.exit("demo: work directory path too long for unix sockets: %s" % workdir)
    out("migrelay demo: work directory %s (logs are kept there)" % workdir)
    out("QEMU migration parameters on both sides: %s; capabilities %s"
        % (", ".join("%s=%s" % kv for kv in sorted(Q.FAST_PARAMS.items())),
           ", ".join(k for k, v in sorted(CAPS.items()) if v)))
    try:
        image = Q.build_guest(workdir, top=args.mem * Q.MiB)
    except Q.Skip as e:
        sys.exit("demo: %s" % e)
    results = []
    try:
        if not args.skip_direct:
            out("--- 1. direct QEMU -> QEMU (baseline) ---")
            results.append(run_pair(args, workdir, image, Result("direct")))
        out("--- 2. QEMU -> migrelayd -> migrelayd -> QEMU (%d channel(s), return-path, %s) ---"
            % (args.channels, "TLS 1.3 + SCRAM" if args.tls else "plaintext link"))
        rd = os.path.join(workdir, "relays")
        os.makedirs(rd, exist_ok=True)
        tls, extra = {"src": None, "dst": None}, {"src": [], "dst": []}
        if args.tls:
            tls, extra = Q.secure_relay_config(os.path.join(rd, "pki"), R)
        S = R.Relay(rd, "src", log_level="info", tls_dir=tls["src"], extra_args=extra["src"],
                    listen=None if args.tls else "127.0.0.1:0")
        D = R.Relay(rd, "dst", log_level="info", tls_dir=tls["dst"], extra_args=extra["dst"])
        try:
            D.start()
            S.start()
            out("relays up: destination listens on %s (logs %s, %s)"
                % (D.peer_addr(), S.log_path, D.log_path))
            results.append(run_pair(args, workdir, image, Result("relayed"), relays=(S, D)))
        finally:
            S.stop()
            D.stop()
    except Q.Skip as e:
        sys.exit("demo: cannot run: %s" % e)
    summary(results)
    return 0 if results and all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
