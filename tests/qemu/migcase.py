"""Shared driver of the QEMU end-to-end tests (tests/qemu/t-*.py are thin wrappers).

One test = one migration of the test guest (tests/guest) between two QEMUs on this host,
through two migrelayd relays (or, with --direct, straight from QEMU to QEMU, which checks
the harness, the guest and the mode settings without the relays):

  destination QEMU   -incoming defer -S, migrate-incoming unix:<dir>/dst-qemu.sock
  relay D            session-incoming id=vm1 qemu=unix:<dir>/dst-qemu.sock
  relay S            session-outgoing id=vm1 peer=<D> listen=unix:<dir>/src-relay.sock
  source QEMU        migrate unix:<dir>/src-relay.sock

Success modes check: source `completed`, destination `completed`, both relay sessions
`completed`, RAM of source and destination byte-identical over the guest's window and
following the guest's pattern (tests/guest/README), and the destination guest runs after
`cont`.  Failure modes inject a failure mid-migration and check that the source QEMU
reports `failed` quickly and its guest still runs.

Usage: t-<mode>.py [--direct] [--keep]   (exit 0 pass, 1 fail, 77 skip)
"""

import os
import shutil
import signal
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

import qemu as Q  # noqa: E402

SID = "vm1"
TEST_BUDGET_S = 120         # every test file is bounded by this (SIGALRM)
MEM_MIB = 128
POSTCOPY_AFTER = 16 * Q.MiB  # start postcopy once this much RAM has been sent
INJECT_AFTER = 16 * Q.MiB    # failure tests: inject once this much RAM has been sent
INJECT_AFTER_BUSY = 4 * Q.MiB  # the same at full speed (a 128 MiB pass takes ~0.1 s)
FAIL_WITHIN_S = 5.0          # failure tests: source must report `failed` this fast

# Failure injections: what is done, and the final state each relay's session must reach
# ("failed" also requires an error object; None: that relay is dead; "ended": any final
# state except "completed").
INJECTIONS = {
    "cancel": ("session-cancel on the source relay", {"S": "cancelled", "D": "ended"}),
    "cancel-dst": ("session-cancel on the destination relay",
                   {"S": "failed", "D": "cancelled"}),
    "kill-dst-relay": ("SIGKILL the destination relay", {"S": "failed", "D": None}),
    "kill-src-relay": ("SIGKILL the source relay", {"S": None, "D": "failed"}),
    "kill-dst-relay-busy": ("SIGKILL the destination relay while QEMU sends at full speed",
                            {"S": "failed", "D": None}),
    # A live but hung peer: only the relays' progress timeouts can turn this into a
    # failure (QEMU itself waits forever).
    "stall-dst-relay": ("SIGSTOP the destination relay", {"S": "failed", "D": None}),
}
STALL_PROGRESS_TIMEOUT_MS = 3000    # relays' --progress-timeout in the stall test
STALL_FAIL_WITHIN_S = STALL_PROGRESS_TIMEOUT_MS / 1000.0 + 2.0 + 1.0  # + check period

# Capabilities and parameters set on BOTH QEMUs, per mode; "relay_channels" is the
# session-outgoing `channels` argument.
MODES = {
    "precopy": dict(caps={}),
    "return-path": dict(caps={"return-path": True}),
    "multifd": dict(caps={"multifd": True}, params={"multifd-channels": 4}),
    "postcopy": dict(caps={"postcopy-ram": True}, postcopy=True),
    "postcopy-preempt": dict(caps={"postcopy-ram": True, "postcopy-preempt": True},
                             postcopy=True),
    # postcopy with the destination guest running during postcopy (page requests)
    "postcopy-run": dict(caps={"postcopy-ram": True}, postcopy=True, run_dst=True),
    "postcopy-preempt-run": dict(caps={"postcopy-ram": True, "postcopy-preempt": True},
                                 postcopy=True, run_dst=True),
    "channels-2": dict(caps={"return-path": True}, relay_channels=2),
    "channels-8": dict(caps={"return-path": True}, relay_channels=8),
    # TLS 1.3 between the relays (mutual certificates from a throw-away PKI)
    "tls": dict(caps={"return-path": True}, relay_channels=2, tls=True),
    # the same over plaintext links (--insecure-plaintext on both relays)
    "plaintext": dict(caps={"return-path": True}, relay_channels=2, tls=False),
    "plaintext-multifd": dict(caps={"multifd": True, "return-path": True},
                              params={"multifd-channels": 4}, relay_channels=4,
                              tls=False),
    "tls-multifd": dict(caps={"multifd": True, "return-path": True},
                        params={"multifd-channels": 4}, relay_channels=4, tls=True),
    # failure injection
    "cancel": dict(caps={"return-path": True}, inject="cancel"),
    "cancel-dst": dict(caps={"return-path": True}, inject="cancel-dst"),
    "kill-dst-relay": dict(caps={"return-path": True}, inject="kill-dst-relay"),
    "kill-src-relay": dict(caps={"return-path": True}, inject="kill-src-relay"),
    "kill-dst-relay-busy": dict(caps={"return-path": True}, inject="kill-dst-relay-busy",
                                busy=True),
    "stall-dst-relay": dict(caps={"return-path": True}, inject="stall-dst-relay",
                            fail_within=STALL_FAIL_WITHIN_S,
                            relay_args=["--progress-timeout",
                                        str(STALL_PROGRESS_TIMEOUT_MS)]),
}


def fmt_session(se):
    """One line for a relay session object."""
    b = se.get("bytes", {})
    lb = se.get("link-bytes", {})
    s = ("%s %s: channels %s, streams %s, QEMU bytes s->d %d d->s %d, link sent %d "
         "received %d, %s ms, features %s"
         % (se.get("role"), se.get("state"), se.get("channels"), se.get("streams"),
            b.get("source-to-destination", -1), b.get("destination-to-source", -1),
            lb.get("sent", -1), lb.get("received", -1), se.get("duration-ms"),
            ",".join(se.get("features", []))))
    if "error" in se:
        s += ", error %s" % (se["error"],)
    return s


class Failure(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Failure(msg)


class Case:
    def __init__(self, mode, direct=False, keep=False):
        self.mode = mode
        self.m = MODES[mode]
        # Relays run TLS 1.3 + SCRAM-SHA-256-PLUS unless the mode says
        # tls=False or MIGRELAY_TEST_PLAINTEXT=1 asks for plaintext links.
        self.secure = self.m.get("tls", os.environ.get(
            "MIGRELAY_TEST_PLAINTEXT") != "1")
        self.direct = direct
        self.keep = keep
        self.workdir = None
        self.qemus = []
        self.relays = []
        self.timings = []
        self.src = self.dst = None
        self.S = self.D = None
        self.stopped = []       # pids we sent SIGSTOP (SIGCONT before teardown)

    # --- bookkeeping

    def timing(self, what, seconds):
        self.timings.append((what, seconds))
        Q.log("%-32s %8.3f s" % (what, seconds))

    def setup_dir(self):
        base = os.environ.get("MIGRELAY_TEST_TMPDIR") or "/tmp"
        if len(base) > 60:      # unix socket paths must stay below 108 bytes
            base = "/tmp"
        self.workdir = tempfile.mkdtemp(prefix="mr-%s-" % self.mode, dir=base)
        Q.log("work directory %s" % self.workdir)

    def teardown(self, failed):
        """Stop everything; print logs and keep the directory on failure.

        Returns True if the test failed (a relay that crashed or ignored SIGTERM fails
        an otherwise passing test)."""
        for pid in self.stopped:
            try:
                os.kill(pid, signal.SIGCONT)
            except OSError:
                pass
        for q in self.qemus:
            try:
                q.stop(timeout=5)
            except Exception as e:
                Q.log("stopping %s: %s" % (q.name, e))
        for r in self.relays:
            try:
                r.stop()
            except Exception as e:
                Q.log("stopping relay %s: %s" % (getattr(r, "name", "?"), e))
            if r.exited_abnormally():
                print("FAIL: relay %s exited abnormally (status %s%s)"
                      % (r.name, r.proc.returncode,
                         ", SIGTERM ignored" if r.stop_timed_out else ""), flush=True)
                failed = True
        if failed:
            for q in self.qemus:
                print("----- %s (%s) -----\n%s" % (q.name, q.log_path, q.log_tail()))
            for r in self.relays:
                lp = getattr(r, "log_path", None)
                if lp and os.path.exists(lp):
                    with open(lp, "rb") as f:
                        data = f.read()[-20000:].decode("utf-8", "replace")
                    print("----- relay %s (%s), last 20000 bytes -----\n%s"
                          % (getattr(r, "name", "?"), lp, data))
        if self.workdir:
            if failed or self.keep:
                Q.log("kept %s" % self.workdir)
            else:
                shutil.rmtree(self.workdir, ignore_errors=True)
        return failed

    # --- setup

    def start_relays(self):
        try:
            import relay as R
        except ImportError as e:
            Q.skip("tests/lib/relay.py not available: %s" % e)
        self.R = R
        t0 = time.monotonic()
        tls = {"src": None, "dst": None}
        extra = {"src": [], "dst": []}
        if self.secure:
            tls, extra = Q.secure_relay_config(os.path.join(self.workdir, "pki"), R)
            self.timing("test PKI and SCRAM verifier made", time.monotonic() - t0)
            t0 = time.monotonic()
        for k in extra:
            extra[k] = extra[k] + self.m.get("relay_args", [])
        self.D = R.Relay(self.workdir, "dst", tls_dir=tls["dst"], extra_args=extra["dst"])
        self.relays.append(self.D)
        # With authentication on, the source relay only dials out (--no-listen): a
        # listening relay would need verifiers of its own.
        self.S = R.Relay(self.workdir, "src", tls_dir=tls["src"], extra_args=extra["src"],
                         listen=None if self.secure else "127.0.0.1:0")
        self.relays.append(self.S)
        self.D.start()
        self.S.start()
        self.timing("relays started", time.monotonic() - t0)

    def start_qemus(self, image):
        t0 = time.monotonic()
        self.dst = Q.Qemu(self.workdir, "dst", image, mem_mib=MEM_MIB, incoming=True)
        self.qemus.append(self.dst)
        self.src = Q.Qemu(self.workdir, "src", image, mem_mib=MEM_MIB)
        self.qemus.append(self.src)
        self.src.start()                        # Skip if QEMU cannot run at all
        self.dst.start(skip_on_failure=False)   # the same QEMU: now a failure is real
        Q.log("QEMU %s, accelerator args %s, machine %s"
              % (".".join(str(self.src.qmp.version.get(k)) for k in ("major", "minor", "micro")),
                 " ".join(Q.accel_args()), self.src.machine))
        self.src.wait_serial(b"B", timeout=30)
        self.timing("QEMUs started, guest dirtying", time.monotonic() - t0)

    def configure_qemus(self, params):
        caps = {"events": True}      # MIGRATION events: the full state sequence
        caps.update(self.m.get("caps", {}))
        for q in (self.src, self.dst):
            for c in caps:
                if not q.has_capability(c):
                    Q.skip("%s lacks the migration capability %r" % (q.name, c))
            try:
                q.set_caps(caps)
            except Q.QMPError as e:
                if "postcopy-ram" in caps and q is self.dst:
                    Q.skip("postcopy cannot be enabled on the destination (userfaultfd?): %s"
                           % e.desc)
                raise
            p = dict(params)
            p.update(self.m.get("params", {}))
            q.set_params(p)
        if self.m.get("run_dst") and self.dst.has_capability("postcopy-blocktime"):
            # The destination measures how long its vCPU waited for requested pages:
            # the round trip of page requests through the relays.
            self.dst.set_caps({"postcopy-blocktime": True})

    # --- progress

    def progress_line(self, t0, info):
        ram = info.get("ram", {})
        s = "t=%5.1fs src=%-16s sent=%9s remaining=%9s pass=%s" % (
            time.monotonic() - t0, info.get("status"), Q.fmt_bytes(ram.get("transferred", 0)),
            Q.fmt_bytes(ram.get("remaining", 0)), ram.get("dirty-sync-count", "-"))
        if self.S is not None:
            try:
                se = self.S.session(SID)
                b = se.get("bytes", {})
                s += " | relay %s s->d=%s d->s=%s" % (
                    se.get("state"), Q.fmt_bytes(b.get("source-to-destination", 0)),
                    Q.fmt_bytes(b.get("destination-to-source", 0)))
            except Exception as e:
                s += " | relay: %s" % e
        return s

    # --- the migration

    def begin_migration(self, params):
        """Common part: configure, open the path, send `migrate`; return t0."""
        d = self.workdir
        dst_uri = "unix:%s/dst-qemu.sock" % d
        self.configure_qemus(params)
        self.dst.migrate_incoming(dst_uri)
        if self.direct:
            uri = dst_uri
        else:
            t0 = time.monotonic()
            se = self.D.cmd("session-incoming", id=SID, qemu=dst_uri)
            check(se.get("state") == "waiting",
                  "destination session state %r after session-incoming" % se.get("state"))
            args = dict(id=SID, peer=self.D.peer_addr(), listen="unix:%s/src-relay.sock" % d)
            if "relay_channels" in self.m:
                args["channels"] = self.m["relay_channels"]
            se = self.S.cmd("session-outgoing", **args)
            check(se.get("state") == "ready",
                  "source session state %r after session-outgoing" % se.get("state"))
            if "relay_channels" in self.m:
                check(se.get("channels") == self.m["relay_channels"],
                      "session has %r channels, asked for %d"
                      % (se.get("channels"), self.m["relay_channels"]))
            self.timing("relay sessions ready", time.monotonic() - t0)
            uri = args["listen"]
        Q.log("source: migrate uri=%s" % uri)
        t0 = time.monotonic()
        self.src.migrate(uri)
        return t0

    def run_success(self):
        run_dst = self.m.get("run_dst", False)
        if run_dst:
            params = Q.POSTCOPY_RUN_PARAMS
        elif self.m.get("postcopy"):
            params = Q.POSTCOPY_PARAMS
        else:
            params = Q.FAST_PARAMS
        t0 = self.begin_migration(params)
        postcopy_started = None
        next_line = 0
        deadline = t0 + 75
        while True:
            info = self.src.query_migrate()
            st = info.get("status")
            if st == "completed":
                break
            if st in ("failed", "cancelled"):
                raise Failure("source migration %s: %s" % (st, info.get("error-desc", "")))
            now = time.monotonic()
            if (self.m.get("postcopy") and postcopy_started is None and st == "active"
                    and info.get("ram", {}).get("transferred", 0) >= POSTCOPY_AFTER):
                self.src.execute("migrate-start-postcopy")
                postcopy_started = now
                self.timing("postcopy requested after", now - t0)
                if run_dst:
                    # Still "inmigrate": cont makes QEMU start the guest at POSTCOPY_RUN.
                    self.dst.execute("cont")
                    Q.log("destination: cont (guest starts at the postcopy switchover)")
            if now >= next_line:
                Q.log(self.progress_line(t0, info))
                next_line = now + 1.0
            if now > deadline:
                raise Failure("source migration still %r after %.0f s" % (st, now - t0))
            if not self.dst.alive():
                raise Failure("destination QEMU exited (%s):\n%s"
                              % (self.dst.proc.returncode, self.dst.log_tail()))
            time.sleep(0.05)
        t_src = time.monotonic() - t0
        Q.log(self.progress_line(t0, info))
        info = self.src.final_info()
        self.timing("source completed", t_src)
        states = self.src.migration_events()
        Q.log("source migration states: %s" % " ".join(states))
        if self.m.get("postcopy"):
            check(postcopy_started is not None, "postcopy was never started (the migration "
                  "completed before %s were sent)" % Q.fmt_bytes(POSTCOPY_AFTER))
            check("postcopy-active" in states, "source never entered postcopy-active")
        dinfo = self.dst.wait_status("completed", timeout=30)
        self.timing("destination completed", time.monotonic() - t0)
        if "postcopy-blocktime" in dinfo:
            Q.log("destination vCPU blocked %s ms in total waiting for postcopy pages"
                  % dinfo["postcopy-blocktime"])
        ram = info.get("ram", {})
        Q.log("QEMU: total-time %s ms, downtime %s ms, setup %s ms, ram transferred %s, "
              "%s passes, %.0f Mbit/s, postcopy page requests %s"
              % (info.get("total-time"), info.get("downtime"), info.get("setup-time"),
                 Q.fmt_bytes(ram.get("transferred", 0)), ram.get("dirty-sync-count"),
                 ram.get("mbps", 0), ram.get("postcopy-requests")))
        if run_dst:
            check(ram.get("postcopy-requests", 0) > 0, "the running destination requested "
                  "no pages during postcopy")
        if not self.direct:
            t1 = time.monotonic()
            for r, role in ((self.S, "source"), (self.D, "destination")):
                se = r.wait_state(SID, ("completed", "failed", "cancelled"), timeout=30)
                check(se.get("state") == "completed", "%s relay session ended %r: %s"
                      % (role, se.get("state"), se.get("error")))
                Q.log("%s relay session: %s" % (role, fmt_session(se)))
            self.timing("relay sessions completed", time.monotonic() - t1 + (t1 - t0))
            se = self.S.session(SID)
            dse = self.D.session(SID)
            check(se.get("bytes") == dse.get("bytes"), "relays disagree on the QEMU bytes "
                  "carried: source %s, destination %s" % (se.get("bytes"), dse.get("bytes")))
            caps = self.m.get("caps", {})
            if caps.get("return-path") or caps.get("postcopy-ram"):
                check(se.get("bytes", {}).get("destination-to-source", 0) > 0,
                      "no return-path bytes went through the relays")
            if "relay_channels" in self.m:
                check(se.get("channels") == self.m["relay_channels"],
                      "completed session reports %r channels" % se.get("channels"))
            if self.secure:
                check("tls" in se.get("features", []) and
                      "insecure-plaintext" not in se.get("features", []),
                      "session features %s: not TLS" % se.get("features"))
            want_streams = 1 + self.m.get("params", {}).get("multifd-channels", 0)
            if caps.get("postcopy-preempt"):
                want_streams += 1       # QEMU 7.2 opens the preempt channel at the start
            check(se.get("streams") == want_streams, "source session carried %r QEMU "
                  "connections, expected %d" % (se.get("streams"), want_streams))
        sst, dst_st = self.src.run_state(), self.dst.run_state()
        Q.log("run states after migration: source %s, destination %s" % (sst, dst_st))
        check(sst == "postmigrate", "source run state %r after completion" % sst)
        if run_dst:
            check(dst_st == "running", "destination not running after postcopy (%r)" % dst_st)
            self.check_never_both_running()
            check(Q.serial_grows(self.dst.serial_path, 5), "destination guest makes no "
                  "progress after postcopy")
            # The destination guest ran on after the source stopped: the RAM contents
            # differ legitimately, so only the destination's own pattern is checked.
            self.dst.execute("stop")
            r = Q.dump_and_check(None, self.dst, self.workdir, keep=self.keep)
        else:
            check(dst_st != "running", "destination runs before cont (%r)" % dst_st)
            r = Q.dump_and_check(self.src, self.dst, self.workdir, keep=self.keep)
        self.timing("pmemsave", r.dump_seconds)
        self.timing("memory check", r.seconds)
        Q.log("memory check: " + r.summary())
        check(r.ok, "memory check " + r.summary())
        before = self.dst.serial_bytes()
        self.dst.execute("cont")
        ok, why = Q.guest_runs(self.dst, timeout=10)
        check(ok, "destination guest after cont: %s" % why)
        Q.log("destination guest runs after cont (serial %d -> %d bytes)"
              % (before, self.dst.serial_bytes()))
        check(self.src.alive(), "source QEMU died")
        self.timing("migration (migrate -> source completed)", t_src)

    def run_failure(self):
        inject = self.m["inject"]
        busy = self.m.get("busy", False)
        t0 = self.begin_migration(Q.BUSY_PARAMS if busy else Q.SLOW_PARAMS)
        inject_after = INJECT_AFTER_BUSY if busy else INJECT_AFTER
        next_line = 0
        while True:
            info = self.src.query_migrate()
            st = info.get("status")
            check(st not in Q.FINAL_STATES, "source migration %s before the failure was "
                  "injected: %s" % (st, info.get("error-desc", "")))
            now = time.monotonic()
            if now >= next_line:
                Q.log(self.progress_line(t0, info))
                next_line = now + 1.0
            if st == "active" and info.get("ram", {}).get("transferred", 0) >= inject_after:
                break
            check(now - t0 < 30, "migration did not get going in 30 s")
            time.sleep(0.05)
        Q.log(self.progress_line(t0, info))
        if not self.direct:
            se = self.S.session(SID)
            check(se.get("state") == "active", "source relay session %r mid-migration"
                  % se.get("state"))
        ti = time.monotonic()
        what, want = INJECTIONS[inject]
        if self.direct:
            Q.log("inject (direct mode): SIGKILL destination QEMU")
            self.dst.kill()
        else:
            Q.log("inject: %s" % what)
            if inject == "cancel":
                self.S.cmd("session-cancel", id=SID)
            elif inject == "cancel-dst":
                self.D.cmd("session-cancel", id=SID)
            elif inject in ("kill-dst-relay", "kill-dst-relay-busy"):
                self.D.kill()
            elif inject == "kill-src-relay":
                self.S.kill()
            elif inject == "stall-dst-relay":
                os.kill(self.D.pid, signal.SIGSTOP)
                self.stopped.append(self.D.pid)
        self.timing("failure injected after", ti - t0)
        within = self.m.get("fail_within", FAIL_WITHIN_S)
        try:
            info = self.src.wait_status("failed", timeout=within + 10, poll=0.05)
        except Q.MigrationError as e:
            raise Failure(str(e))
        t_fail = time.monotonic() - ti
        self.timing("source QEMU failed after", t_fail)
        Q.log("source error-desc: %s" % info.get("error-desc"))
        Q.log("source migration states: %s" % " ".join(self.src.migration_events()))
        check(t_fail <= within, "source took %.1f s (> %.0f s) to report failed"
              % (t_fail, within))
        ok, why = Q.guest_runs(self.src, timeout=5)
        check(ok, "source guest after the failure: %s" % why)
        Q.log("source guest: %s" % why)
        if self.dst.alive():
            try:
                dst_st = self.dst.run_state(timeout=5)
                check(dst_st != "running", "destination guest is running too")
                Q.log("destination QEMU still alive, run state %s" % dst_st)
            except (ConnectionError, OSError):
                pass
        else:
            Q.log("destination QEMU exited with %s" % self.dst.proc.returncode)
        if not self.direct:
            for key, r in (("S", self.S), ("D", self.D)):
                w = want[key]
                if w is None:
                    continue
                check(r.is_running(), "%s relay died (status %s) after: %s"
                      % (r.name, r.proc.returncode, what))
                se = r.wait_state(SID, Q.FINAL_STATES, timeout=10)
                Q.log("%s relay session: %s" % (r.name, fmt_session(se)))
                if w == "ended":
                    check(se.get("state") != "completed", "%s relay session claims "
                          "completed after %s" % (r.name, what))
                else:
                    check(se.get("state") == w, "%s relay session ended %r, expected %r"
                          % (r.name, se.get("state"), w))
                if se.get("state") == "failed":
                    err = se.get("error")
                    check(isinstance(err, dict) and err.get("class") and err.get("desc"),
                          "%s relay: failed session has no error object: %r" % (r.name, err))
            self.timing("failure handled (inject -> relay final)", time.monotonic() - ti)

    def check_never_both_running(self):
        """The source's last STOP precedes the destination's first RESUME."""
        def ts(ev):
            return ev["timestamp"]["seconds"] + ev["timestamp"]["microseconds"] / 1e6
        self.src.qmp.pump()
        self.dst.qmp.pump()
        stops = [ts(e) for e in self.src.qmp.events if e["event"] == "STOP"]
        resumes = [ts(e) for e in self.dst.qmp.events if e["event"] == "RESUME"]
        check(stops, "no STOP event from the source")
        check(resumes, "no RESUME event from the destination")
        check(stops[-1] <= resumes[0], "destination resumed %.3f s before the source stopped"
              % (stops[-1] - resumes[0]))
        Q.log("source stopped %.3f s before the destination resumed"
              % (resumes[0] - stops[-1]))

    def diagnose(self):
        """After a failure: print what the QEMUs and relays say now."""
        for q in self.qemus:
            if not q.alive():
                Q.log("diagnosis: %s QEMU exited (%s)" % (q.name, q.proc.returncode))
                continue
            try:
                info = q.query_migrate(timeout=3)
                Q.log("diagnosis: %s QEMU migration %s%s, run state %s"
                      % (q.name, info.get("status"), " (%s)" % info["error-desc"]
                         if "error-desc" in info else "", q.run_state(timeout=3)))
            except Exception as e:
                Q.log("diagnosis: %s QEMU: %r" % (q.name, e))
        for r in self.relays:
            try:
                if r.pid in self.stopped:
                    Q.log("diagnosis: relay %s is SIGSTOPped" % r.name)
                elif r.is_running():
                    Q.log("diagnosis: relay %s: %s" % (r.name, fmt_session(r.session(SID))))
                else:
                    Q.log("diagnosis: relay %s exited (%s)" % (r.name, r.proc.returncode))
            except Exception as e:
                Q.log("diagnosis: relay %s: %r" % (r.name, e))

    def run(self):
        self.setup_dir()
        image = Q.build_guest(self.workdir, top=MEM_MIB * Q.MiB)
        if not self.direct:
            self.start_relays()
        self.start_qemus(image)
        if "inject" in self.m:
            self.run_failure()
        else:
            self.run_success()


def _alarm(signum, frame):
    raise TimeoutError("test exceeded its %d s budget" % TEST_BUDGET_S)


def _term(signum, frame):
    raise Failure("terminated by signal %d" % signum)


def main(mode, argv=None, direct=False):
    argv = sys.argv[1:] if argv is None else argv
    direct = direct or "--direct" in argv
    keep = "--keep" in argv
    print("=== QEMU migration test: mode %s, %s ===" % (mode, "direct QEMU->QEMU (no relay)"
                                                        if direct else "through two relays"),
          flush=True)
    signal.signal(signal.SIGALRM, _alarm)
    signal.signal(signal.SIGTERM, _term)     # clean up QEMUs and relays, keep the logs
    signal.alarm(TEST_BUDGET_S)
    case = Case(mode, direct=direct, keep=keep)
    t0 = time.monotonic()
    failed = True
    rc = 1
    try:
        case.run()
        failed = False
        rc = 0
    except Q.Skip as e:
        failed = False
        rc = 77
        print("SKIP: %s" % e, flush=True)
    except SystemExit as e:
        failed = e.code not in (0, 77)
        rc = e.code
    except (Failure, Q.MigrationError) as e:
        print("FAIL: %s" % e, flush=True)
        case.diagnose()
    except BaseException:
        traceback.print_exc()
        print("FAIL: unexpected exception", flush=True)
        case.diagnose()
    finally:
        signal.alarm(0)
        if case.teardown(failed) and rc == 0:
            rc = 1
    print("=== mode %s: %s in %.1f s ===" % (mode, {0: "PASS", 77: "SKIP"}.get(rc, "FAIL"),
                                              time.monotonic() - t0), flush=True)
    for what, s in case.timings:
        print("  %-42s %8.3f s" % (what, s))
    sys.exit(rc)
