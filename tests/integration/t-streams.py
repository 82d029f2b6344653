#!/usr/bin/env python3
"""t-streams.py - byte-exact relaying of many streams, without QEMU.

Two relays on loopback, source S and destination D.  Several sessions run
at once with different channel counts; in each, a fake source QEMU opens K
connections one after another to S's listen socket and a fake destination
QEMU accepts them from D.  Both write seeded random data (0 B to tens of
MiB source-to-destination, 0 to 2 MiB back) in writes of 1 B to 1 MiB,
half-close at random points and read to EOF.  Every stream must arrive
byte-exact (SHA-256 per direction per connection), both sessions must end
"completed" with exact byte and stream counts, and remove must free the
session (a second round reuses an id; no fd may leak across rounds).

Environment: MIGRELAY_TEST_SEED to change the seed, MIGRELAY_TEST_SCALE
(default 1.0) to scale the data sizes.
"""

import os
import random
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))
import relay                                            # noqa: E402
import fakeqemu                                         # noqa: E402

MiB = 1 << 20
SEED = int(os.environ.get("MIGRELAY_TEST_SEED", "20240601"))
SCALE = float(os.environ.get("MIGRELAY_TEST_SCALE", "1.0"))


def scaled(n):
    return max(1, int(n * SCALE))


class SessionRun:
    """One session: setup on both relays, fake QEMUs, checks."""

    def __init__(self, d, S, D, sid, channels, plans, transport="unix",
                 gap=0.0):
        self.d, self.S, self.D = d, S, D
        self.sid = sid
        self.channels = channels
        self.plans = plans
        self.transport = transport      # QEMU-facing sockets: unix or tcp
        self.gap = gap
        self.problems = []
        self.dst = None
        self.src = None
        self.listen = None

    def setup(self):
        sid = self.sid
        if self.transport == "tcp":
            dst_uri = "tcp:127.0.0.1:0"
            self.listen = "tcp:127.0.0.1:%d" % relay.free_port()
        else:
            dst_uri = "unix:" + self.d.join(sid + "-dst.sock")
            self.listen = "unix:" + self.d.join(sid + "-src.sock")
        self.dst = fakeqemu.FakeDestination(dst_uri, self.plans, timeout=100)
        s = self.D.cmd("session-incoming", id=sid, qemu=self.dst.uri)
        check(s["state"] == "waiting" and s["role"] == "destination",
              "D session-incoming %s returned %s" % (sid, s))
        s = self.S.cmd("session-outgoing", id=sid, peer=self.D.peer_addr(),
                       listen=self.listen, channels=self.channels)
        check(s["state"] == "ready" and s["role"] == "source",
              "S session-outgoing %s returned %s" % (sid, s))
        relay.log("%s: ready, %d channels, %s, %d streams planned, %.1f MiB "
                  "s->d, %.1f MiB d->s", sid, s.get("channels", -1),
                  self.transport, len(self.plans),
                  sum(p.s2d for p in self.plans) / MiB,
                  sum(p.d2s for p in self.plans) / MiB)

    def run(self):
        try:
            self._run()
        except Exception as e:
            self.problems.append("%s: %r" % (self.sid, e))

    def _run(self):
        sid = self.sid
        self.src = fakeqemu.FakeSource(self.listen, self.plans, timeout=100,
                                       gap=self.gap, seed=SEED).start()
        errs = self.src.join() + self.dst.join()
        self.problems += ["%s: %s" % (sid, e) for e in errs]
        self.problems += ["%s: %s" % (sid, p) for p in
                          fakeqemu.compare(self.src, self.dst)]
        if self.problems:
            # Say what the relays think happened.
            for r in (self.S, self.D):
                try:
                    s = r.session(sid)
                    self.problems.append("%s %s: %s %s" % (
                        r.name, sid, s.get("state"), s.get("error", "")))
                except (relay.RelayError, OSError) as e:
                    self.problems.append("%s %s: %r" % (r.name, sid, e))
            return
        relay.log("%s: all %d streams byte-exact", sid, len(self.plans))
        s2d = sum(p.s2d for p in self.plans)
        d2s = sum(p.d2s for p in self.plans)
        for r in (self.S, self.D):
            try:
                s = r.wait_state(sid, "completed", timeout=30)
            except AssertionError as e:
                self.problems.append(str(e))
                continue
            want = {"source-to-destination": s2d,
                    "destination-to-source": d2s}
            if s.get("bytes") != want:
                self.problems.append("%s %s: bytes %s, want %s" % (
                    r.name, sid, s.get("bytes"), want))
            if s.get("streams") != len(self.plans):
                self.problems.append("%s %s: streams %s, want %d" % (
                    r.name, sid, s.get("streams"), len(self.plans)))
            ch = s.get("channels")
            if not isinstance(ch, int) or not 1 <= ch <= self.channels:
                self.problems.append("%s %s: channels %s, asked for %d" % (
                    r.name, sid, ch, self.channels))
            if "error" in s:
                self.problems.append("%s %s: completed with error %s" % (
                    r.name, sid, s["error"]))
            relay.log("%s %s: completed in %s ms, link %s", r.name, sid,
                      s.get("duration-ms"), s.get("link-bytes"))
        if self.dst.extra:
            self.problems.append("%s: %d unexpected extra destination "
                                 "connections" % (sid, self.dst.extra))
        cs = self.S.session(sid).get("channels")
        cd = self.D.session(sid).get("channels")
        if cs != cd:
            self.problems.append("%s: channels differ: S %s, D %s" % (
                sid, cs, cd))
        self.dst.close()


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def run_round(d, S, D, specs):
    """specs: (sid, channels, plans, transport, gap) tuples, run at once."""
    runs = []
    for spec in specs:
        relay.log("%s: %d channels, %s: %s", spec[0], spec[1], spec[3],
                  spec[2])
        run = SessionRun(d, S, D, *spec)
        run.setup()
        runs.append(run)
    threads = [threading.Thread(target=r.run, name=r.sid) for r in runs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    problems = [p for r in runs for p in r.problems]
    if problems:
        for p in problems:
            print("FAIL: " + p, file=sys.stderr)
        raise AssertionError("%d problem(s) in round %s (seed %d)" % (
            len(problems), [s[0] for s in specs], SEED))

    # SESSION_STATE events for the final state reached both relays.
    for r in (S, D):
        for sid in (spec[0] for spec in specs):
            r.wait_event(lambda ev, sid=sid: ev.get("event") ==
                         "SESSION_STATE" and
                         ev.get("data", {}).get("id") == sid and
                         ev["data"].get("state") == "completed", timeout=5)

    for sid in (spec[0] for spec in specs):
        for r in (S, D):
            check(r.cmd("session-remove", id=sid) == {},
                  "session-remove %s did not return {}" % sid)
            try:
                r.session(sid)
                raise AssertionError("%s: %s still there after "
                                     "session-remove" % (r.name, sid))
            except relay.RelayError as e:
                check(e.cls == "NotFound", "%s: query of removed %s: %s" %
                      (r.name, sid, e))
    for r in (S, D):
        n = r.cmd("query-daemon")["sessions"]
        check(n == 0, "%s: %d sessions left after remove" % (r.name, n))


def main():
    relay.test_timeout(115)
    rng = random.Random(SEED)
    relay.log("seed %d, scale %.2f", SEED, SCALE)
    with relay.TempDir(prefix="mr-streams-") as d:
        # The source relay moves channel data on its main thread, the
        # destination on three data threads (more than this machine's
        # cores): both data planes, against each other.
        S = d.relay("S", extra_args=["--data-threads", "0"])
        D = d.relay("D", extra_args=["--data-threads", "3"])
        D.start()
        S.start()
        threads = (len(os.listdir("/proc/%d/task" % S.pid)),
                   len(os.listdir("/proc/%d/task" % D.pid)))
        check(threads == (1, 4), "threads S %d D %d, expected 1 and 4 "
              "(--data-threads 0 and 3)" % threads)

        # Round 1: four sessions at once, 1 to 64 channels, QEMU-facing
        # sockets unix and tcp; one slow consumer, one stream of tiny writes.
        plans = {
            "s1": fakeqemu.random_plans(rng, 3, scaled(24 * MiB),
                                        scaled(2 * MiB),
                                        first_s2d=scaled(24 * MiB)),
            "s4": fakeqemu.random_plans(rng, 6, scaled(16 * MiB),
                                        scaled(2 * MiB),
                                        first_s2d=scaled(32 * MiB)),
            "s16": fakeqemu.random_plans(rng, 12, scaled(8 * MiB),
                                         scaled(1 * MiB),
                                         first_s2d=scaled(16 * MiB)),
            "s64": fakeqemu.random_plans(rng, 4, scaled(8 * MiB),
                                         scaled(1 * MiB),
                                         first_s2d=scaled(8 * MiB)),
        }
        plans["s4"][1].slow_reader = True
        plans["s16"][5] = fakeqemu.Plan(48 * 1024, 8 * 1024, "concurrent",
                                        seed=rng.getrandbits(32),
                                        tiny_writes=True)
        run_round(d, S, D, [
            ("s1", 1, plans["s1"], "unix", 0.0),
            ("s4", 4, plans["s4"], "unix", (0.0, 0.05)),
            ("s16", 16, plans["s16"], "tcp", 0.0),
            ("s64", 64, plans["s64"], "tcp", (0.0, 0.02)),
        ])
        fds = (S.fd_count(), D.fd_count())
        relay.log("round 1 done; fds S %d D %d, rss S %d KiB D %d KiB",
                  fds[0], fds[1], S.rss_kib(), D.rss_kib())

        # Round 2: an id of round 1 again, a small session.
        run_round(d, S, D, [
            ("s4", 2, fakeqemu.random_plans(rng, 4, scaled(4 * MiB),
                                            scaled(512 * 1024)),
             "unix", 0.0)])

        # Round 3: many connections in a burst (order must hold), plus a
        # session whose source connects slowly, one stream at a time.
        run_round(d, S, D, [
            ("burst", 8, fakeqemu.random_plans(rng, 40, scaled(256 * 1024),
                                               scaled(64 * 1024)),
             "unix", 0.0),
            ("slow", 3, fakeqemu.random_plans(rng, 5, scaled(1 * MiB),
                                              scaled(64 * 1024)),
             "tcp", (0.1, 0.3))])
        after = (S.wait_fd_count(fds[0]), D.wait_fd_count(fds[1]))
        relay.log("rounds 2 and 3 done; fds S %d D %d, rss S %d KiB D %d "
                  "KiB", after[0], after[1], S.rss_kib(), D.rss_kib())
        check(after[0] <= fds[0] and after[1] <= fds[1],
              "fd leak: S %d -> %d, D %d -> %d" % (fds[0], after[0],
                                                   fds[1], after[1]))
    relay.log("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
