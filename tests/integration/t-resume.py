#!/usr/bin/env python3
"""t-resume.py - channel re-establishment ("resume") between two relays, without QEMU.

The source relay dials the destination relay through a fault proxy
(tests/tools/faultproxy.py, one per session, throttled so that a transfer lasts
a few seconds); a fake source QEMU streams tens of MiB both ways over three
connections through a 4-channel link (tests/integration/fakeqemu.py).  Once
10 MiB have reached the fake destination, a fault hits the link:

  reset-one      one proxied connection (channel 1..3) is reset (RST);
  reset-ch0      the connection of channel 0 (control frames) is reset: the
                 channel-stats of channel 0 count the reconnect;
  reset-all      every connection is reset, twice (a resume after a resume):
                 every channel counts two reconnects;
  outage         every connection is reset and for 2 s every new one is
                 refused: the source session reports "resuming" meanwhile and
                 its re-dials fail (the proxy refused some), then succeed;
  silent-cut     every byte is dropped for longer than --link-timeout: the
                 link timeout declares the channels dead, then they resume;
  short-cut      (TLS only) every byte is dropped for 2 s: what passes after
                 the cut follows a hole, which TLS rejects: a channel error;

and each time every stream must arrive byte-exact both ways (SHA-256), both
sessions end "completed" with the exact byte counts and 4 channels, both
negotiated "resume", neither is "resuming" at the end, and the source session
counts reconnects (once the link is whole again its count is the sum of its
channel-stats counts; once completed, channel-stats still lists every
channel, none up, and their bytes add up to the session's link-bytes,
re-established channels included).  Then:

  give-up        a cut longer than a short --reconnect-timeout (2000, with
                 --link-timeout 3000): both sessions report "resuming", then
                 fail PeerUnreachable "... not re-established" no sooner than
                 the grace period after that and within link-timeout +
                 reconnect-timeout + 4 s of the cut; the fake QEMUs' sockets
                 are closed;
  off-source,    --reconnect-timeout 0 on the source (then on the destination)
  off-dest       relay: "resume" is not negotiated, and a reset fails both
                 sessions PeerUnreachable within 5 s, without reconnects.

The main relays' fds are back at their baseline at the end.  TLS 1.3 with
SCRAM-SHA-256-PLUS unless MIGRELAY_TEST_PLAINTEXT=1 (then plaintext links).
Usage: t-resume.py [SCENARIO...] (default: all of them, in this order).
Environment: MIGRELAY_TEST_SEED, MIGRELAY_TEST_PROXY_VERBOSE=1.
"""

import os
import random
import re
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
sys.path.insert(0, HERE)
import relay                                            # noqa: E402
import fakeqemu                                         # noqa: E402
import faultproxy                                       # noqa: E402

MiB = 1 << 20
SEED = int(os.environ.get("MIGRELAY_TEST_SEED", "20240917"))
PLAINTEXT = os.environ.get("MIGRELAY_TEST_PLAINTEXT") == "1"
VERBOSE = os.environ.get("MIGRELAY_TEST_PROXY_VERBOSE") == "1"

CHANNELS = 4
THROTTLE = 4 * MiB          # proxy: bytes/s per connection and direction
INJECT_AT = 10 * MiB        # fault once this much reached the fake destination
MIN_LEFT = 8 * MiB          # ... and at least this much is still to come
LINK_TIMEOUT_MS = 3000      # every relay here (the daemon's minimum)
RECONNECT_MS = 10000        # the main pair's grace period
SHORT_RECONNECT_MS = 2000   # the give-up pair's
TICK_S = 1.0                # timers that run once a second
SLACK_S = 3.0               # two loaded cores, sanitizer builds
RECOVER_S = 20.0            # a resume must be over this soon after the fault ends
OFF_FAIL_WITHIN_S = 5.0     # without resume a reset fails the sessions this fast


def ensure(cond, msg):
    """AssertionError(msg) unless cond (relay.check() would log every poll)."""
    if not cond:
        raise AssertionError(msg)


_clients = {}


def query(r, sid):
    """r.session(sid) over one kept control connection per relay (the sessions are
    polled every 20-50 ms: a connection each time would flood the relays' logs)."""
    c = _clients.get(r.control_path)
    if c is None:
        c = _clients[r.control_path] = relay.ControlClient(r.control_path)
    try:
        return c.call("query-sessions", {"id": sid})[0]
    except (OSError, EOFError, ValueError):
        c.close()
        del _clients[r.control_path]
        raise


def forget(r):
    c = _clients.pop(r.control_path, None)
    if c is not None:
        c.close()


def wait_final(r, sid, timeout):
    """Poll until the session is in a final state; (object, monotonic time)."""
    deadline = time.monotonic() + timeout
    while True:
        se = query(r, sid)
        if se.get("state") in relay.FINAL_STATES:
            return se, time.monotonic()
        ensure(time.monotonic() < deadline, "%s: session %s not final after %.0f s: %s"
               % (r.name, sid, timeout, fmt(se)))
        time.sleep(0.05)


def dump_logs(d, lines=80):
    """The relays' log tails without the control-socket chatter."""
    for name in sorted(os.listdir(d.path)):
        if not name.endswith(".log"):
            continue
        try:
            with open(d.join(name), "rb") as f:
                text = f.read().decode("utf-8", "replace").splitlines()
        except OSError:
            continue
        keep = [ln for ln in text if "control:" not in ln][-lines:]
        print("----- %s without control lines, last %d -----\n%s" % (
            name, len(keep), "\n".join(keep)), file=sys.stderr, flush=True)


def make_plans(rng):
    """Three connections, tens of MiB each way (40 MiB s->d, 24 MiB d->s)."""
    sizes = ((24 * MiB, 8 * MiB), (12 * MiB, 12 * MiB), (4 * MiB, 4 * MiB))
    return [fakeqemu.Plan(s2d, d2s, "concurrent", seed=rng.getrandbits(32))
            for s2d, d2s in sizes]


def credentials(d):
    """Relay keyword arguments for the source and destination roles."""
    if PLAINTEXT:
        return {"src": dict(extra_args=[]), "dst": dict(extra_args=[])}
    import pki
    pki.require_openssl()
    dirs = pki.make_relay_dirs(d.join("pki"), names=("src", "dst"))
    password = "resume-%d-%d" % (os.getpid(), int(time.time()))
    users = relay.write_private(d.join("users"),
                                relay.make_verifier("src", password) + "\n")
    secret = relay.write_private(d.join("secret"), "src:%s\n" % password)
    return {"src": dict(tls_dir=dirs["src"], extra_args=["--auth-secret", secret]),
            "dst": dict(tls_dir=dirs["dst"], extra_args=["--auth-users", users])}


def start_relay(d, creds, role, name, *args):
    kw = dict(creds[role])
    kw["extra_args"] = kw["extra_args"] + ["--link-timeout", str(LINK_TIMEOUT_MS)] + \
        list(args)
    r = d.relay(name, listen=None if role == "src" else "127.0.0.1:0", **kw)
    r.start()
    return r


def fmt(se):
    return ("%s %s, channels %s, features %s, bytes %s, reconnects %s, resuming %s, "
            "channel reconnects %s%s" % (
                se.get("role"), se.get("state"), se.get("channels"),
                ",".join(se.get("features", [])), se.get("bytes"), se.get("reconnects"),
                se.get("resuming"),
                [c.get("reconnects") for c in se.get("channel-stats", [])],
                ", error %s" % se["error"] if "error" in se else ""))


def channel_reconnects(se):
    """{channel index: reconnects} from the session's channel-stats."""
    return {c.get("index"): c.get("reconnects") for c in se.get("channel-stats", [])}


class Run:
    """One session S -> proxy -> D with fake QEMUs on both ends."""

    def __init__(self, d, S, D, sid, plans):
        self.d, self.S, self.D, self.sid, self.plans = d, S, D, sid, plans
        self.s2d = sum(p.s2d for p in plans)
        self.d2s = sum(p.d2s for p in plans)
        self.recovered = None       # the active source session once recovered
        self.proxy = faultproxy.FaultProxy(D.peer_addr(), name=sid,
                                           verbose=VERBOSE).start()
        self.proxy.set_throttle(THROTTLE)
        self.dst = fakeqemu.FakeDestination("unix:" + d.join(sid + "-dst.sock"), plans,
                                            timeout=90)
        self.listen = "unix:" + d.join(sid + "-src.sock")
        se = D.cmd("session-incoming", id=sid, qemu=self.dst.uri)
        ensure(se["state"] == "waiting", "%s: D session-incoming: %s" % (sid, se["state"]))
        se = S.cmd("session-outgoing", id=sid, peer=self.proxy.address,
                   listen=self.listen, channels=CHANNELS)
        ensure(se["state"] == "ready" and se.get("channels") == CHANNELS,
               "%s: S session-outgoing ready with %d channels: %s" % (sid, CHANNELS, fmt(se)))
        self.src = fakeqemu.FakeSource(self.listen, plans, timeout=90, seed=SEED).start()
        relay.log("%s: %.0f MiB s->d, %.0f MiB d->s over %d connections, %d channels "
                  "through proxy %s", sid, self.s2d / MiB, self.d2s / MiB, len(plans),
                  CHANNELS, self.proxy.address)

    def delivered(self):
        """Bytes the destination relay has delivered to the fake destination."""
        return query(self.D, self.sid).get("bytes", {}).get("source-to-destination", 0)

    def wait_delivered(self, n, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            se = query(self.D, self.sid)
            got = se.get("bytes", {}).get("source-to-destination", 0)
            if got >= n:
                return got
            ensure(se.get("state") not in relay.FINAL_STATES,
                   "%s: D session ended before %d bytes: %s" % (self.sid, n, fmt(se)))
            ensure(time.monotonic() < deadline, "%s: only %d bytes delivered after %d s"
                   % (self.sid, got, timeout))
            time.sleep(0.02)

    def at_inject_point(self):
        """Wait until INJECT_AT bytes were delivered, mid-transfer, both sessions active."""
        got = self.wait_delivered(INJECT_AT)
        ensure(got <= self.s2d - MIN_LEFT, "%s: %d of %d bytes already delivered: the "
               "transfer is not mid-way" % (self.sid, got, self.s2d))
        for r in (self.S, self.D):
            se = query(r, self.sid)
            ensure(se.get("state") == "active", "%s: %s session %s at the fault"
                   % (self.sid, r.name, se.get("state")))
        relay.log("%s: %.1f MiB delivered, injecting", self.sid, got / MiB)
        return got

    def wait_recovered(self, reconnects, timeout=RECOVER_S):
        """Until the source session counts `reconnects` and is not resuming."""
        deadline = time.monotonic() + timeout
        while True:
            se = query(self.S, self.sid)
            if se.get("reconnects", 0) >= reconnects and se.get("resuming") is False:
                relay.log("%s: recovered: %s", self.sid, fmt(se))
                if se.get("state") == "active":
                    per = channel_reconnects(se)
                    ensure(sorted(per) == list(range(CHANNELS)) and
                           sum(per.values()) == se.get("reconnects"),
                           "%s: source session reconnects %s is not the sum of its "
                           "channel-stats %s" % (self.sid, se.get("reconnects"), per))
                    self.recovered = se
                return se
            ensure(se.get("state") not in ("failed", "cancelled"),
                   "%s: source session %s" % (self.sid, fmt(se)))
            if se.get("state") == "completed":
                return se
            ensure(time.monotonic() < deadline, "%s: not recovered %d s after the fault: "
                   "%s" % (self.sid, timeout, fmt(se)))
            time.sleep(0.05)

    def watch_resuming(self, seconds):
        """Poll both sessions for `seconds`; {relay name: first monotonic time
        with resuming true}."""
        seen = {}
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for r in (self.S, self.D):
                if r.name not in seen and query(r, self.sid).get("resuming") is True:
                    seen[r.name] = time.monotonic()
            time.sleep(0.05)
        return seen

    def finish_ok(self, min_reconnects=1):
        """Every stream byte-exact, both sessions completed; returns the source
        session object."""
        sid = self.sid
        problems = self.src.join() + self.dst.join()
        problems += fakeqemu.compare(self.src, self.dst)
        if problems:
            for r in (self.S, self.D):
                problems.append("%s: %s" % (r.name, fmt(query(r, sid))))
            raise AssertionError("%s: %s" % (sid, "; ".join(problems)))
        relay.log("%s: all %d streams byte-exact both ways (SHA-256)", sid,
                  len(self.plans))
        out = {}
        for r in (self.S, self.D):
            se = r.wait_state(sid, "completed", timeout=30)
            relay.log("%s: %s %s", sid, r.name, fmt(se))
            want = {"source-to-destination": self.s2d,
                    "destination-to-source": self.d2s}
            ensure(se.get("bytes") == want, "%s: %s bytes %s, want %s"
                   % (sid, r.name, se.get("bytes"), want))
            ensure(se.get("channels") == CHANNELS, "%s: %s completed with %s channels"
                   % (sid, r.name, se.get("channels")))
            ensure("resume" in se.get("features", []), "%s: %s features %s lack resume"
                   % (sid, r.name, se.get("features")))
            ensure(PLAINTEXT or "tls" in se.get("features", []), "%s: %s features %s: "
                   "not TLS" % (sid, r.name, se.get("features")))
            ensure(se.get("resuming") is False, "%s: %s completed session resuming %r"
                   % (sid, r.name, se.get("resuming")))
            ensure("error" not in se, "%s: %s completed with error %s"
                   % (sid, r.name, se.get("error")))
            out[r.name] = se
        se = out[self.S.name]
        # channel-stats of a final session: every channel index, none up, the
        # bytes of all its channels over the session (re-established included)
        cs = se.get("channel-stats", [])
        link = se.get("link-bytes", {})
        ensure(sorted(c.get("index") for c in cs) == list(range(CHANNELS)) and
               not any(c.get("up") for c in cs) and
               sum(c.get("reconnects", 0) for c in cs) == se.get("reconnects") and
               sum(c.get("sent", 0) for c in cs) == link.get("sent") and
               sum(c.get("received", 0) for c in cs) == link.get("received"),
               "%s: completed source session: channel-stats %s do not add up to "
               "link-bytes %s and reconnects %s" % (sid, cs, link, se.get("reconnects")))
        ensure(se.get("reconnects", 0) >= min_reconnects,
               "%s: source session reconnects %r, want >= %d" % (sid, se.get("reconnects"),
                                                                min_reconnects))
        ensure(self.recovered is not None, "%s: the active source session was never seen "
               "recovered" % sid)
        per = channel_reconnects(self.recovered)
        relay.log("ok: %s: completed, %d reconnects (per channel when recovered %s; "
                  "destination %s)", sid, se["reconnects"], per,
                  out[self.D.name].get("reconnects"))
        return per

    def close(self):
        self.proxy.stop()
        self.dst.close()
        for r in (self.S, self.D):
            if r.is_running():
                ensure(r.cmd("session-remove", id=self.sid) == {},
                       "%s: session-remove on %s" % (self.sid, r.name))


def scenario_reset(d, S, D, rng, sid, conn):
    run = Run(d, S, D, sid, make_plans(rng))
    run.at_inject_point()
    ensure(run.proxy.reset(conn), "%s: proxy connection %d was open" % (sid, conn))
    relay.log("%s: reset proxy connection %d", sid, conn)
    run.wait_recovered(1)
    per = run.finish_ok()
    if conn == 0:
        ensure(per.get(0, 0) >= 1, "%s: channel 0 was reset but its channel-stats count "
               "no reconnect: %s" % (sid, per))
    run.close()


def scenario_reset_all(d, S, D, rng):
    sid = "reset-all"
    run = Run(d, S, D, sid, make_plans(rng))
    run.at_inject_point()
    n = run.proxy.reset_all()
    ensure(n == CHANNELS, "%s: the proxy reset %d connections, the link has %d"
           % (sid, n, CHANNELS))
    run.wait_recovered(CHANNELS)
    got = run.wait_delivered(INJECT_AT + 8 * MiB)
    ensure(got <= run.s2d - 4 * MiB, "%s: transfer over before the second reset" % sid)
    n = run.proxy.reset_all()
    ensure(n == CHANNELS, "%s: the second time the proxy reset %d connections, the link "
           "has %d" % (sid, n, CHANNELS))
    relay.log("%s: reset all %d connections again at %.1f MiB", sid, n, got / MiB)
    run.wait_recovered(2 * CHANNELS)
    per = run.finish_ok(min_reconnects=2 * CHANNELS)
    ensure(all(per.get(i, 0) >= 2 for i in range(CHANNELS)),
           "%s: every channel was reset twice, channel-stats reconnects %s" % (sid, per))
    run.close()


def scenario_outage(d, S, D, rng):
    sid = "outage"
    run = Run(d, S, D, sid, make_plans(rng))
    run.at_inject_point()
    n = run.proxy.cut(2.0, reset=True)
    t_cut = time.monotonic()
    ensure(n == CHANNELS, "%s: the cut reset %d connections, the link has %d"
           % (sid, n, CHANNELS))
    relay.log("%s: link down for 2 s (connections reset, new ones refused)", sid)
    seen = run.watch_resuming(1.8)
    ensure(S.name in seen, "%s: the source session never reported resuming while the "
           "link was down" % sid)
    relay.log("ok: %s: resuming reported %.2f s after the cut (source), %s (destination)",
              sid, seen[S.name] - t_cut,
              "%.2f s" % (seen[D.name] - t_cut) if D.name in seen else "never")
    time.sleep(max(0, t_cut + 2.2 - time.monotonic()))
    refused = run.proxy.stats()["refused"]
    ensure(refused >= 1, "%s: the source relay did not re-dial while the link was down "
           "(the proxy refused %d connections)" % (sid, refused))
    relay.log("ok: %s: %d re-dials refused during the outage", sid, refused)
    run.wait_recovered(CHANNELS)
    run.finish_ok(min_reconnects=CHANNELS)
    run.close()


def scenario_silent_cut(d, S, D, rng, sid, seconds):
    """Every byte dropped for `seconds`, the connections left open."""
    run = Run(d, S, D, sid, make_plans(rng))
    run.at_inject_point()
    run.proxy.cut(seconds)
    t_cut = time.monotonic()
    relay.log("%s: every byte dropped for %.1f s (connections stay open)", sid, seconds)
    if seconds * 1000 > LINK_TIMEOUT_MS:
        seen = run.watch_resuming(seconds - 0.3)
        ensure(S.name in seen, "%s: the link was silent for %.1f s (link timeout %d ms): "
               "the source session never reported resuming" % (sid, seconds,
                                                                 LINK_TIMEOUT_MS))
        relay.log("ok: %s: resuming %.2f s after the cut began (link timeout)", sid,
                  seen[S.name] - t_cut)
    time.sleep(max(0, t_cut + seconds + 0.1 - time.monotonic()))
    run.wait_recovered(1)
    run.finish_ok()
    run.close()


def scenario_give_up(d, S, D, rng):
    """A cut longer than the grace period: both sessions fail."""
    sid = "give-up"
    run = Run(d, S, D, sid, make_plans(rng))
    run.at_inject_point()
    for r in (S, D):
        ensure("resume" in query(r, sid).get("features", []),
               "%s: %s features lack resume" % (sid, r.name))
    run.proxy.cut()
    t_cut = time.monotonic()
    relay.log("%s: link cut until both sessions fail (link timeout %d ms, reconnect "
              "timeout %d ms)", sid, LINK_TIMEOUT_MS, SHORT_RECONNECT_MS)
    within = (LINK_TIMEOUT_MS + SHORT_RECONNECT_MS) / 1000.0 + TICK_S + SLACK_S
    resuming, final = {}, {}
    deadline = t_cut + within + 10
    while len(final) < 2 and time.monotonic() < deadline:
        for r in (S, D):
            if r.name in final:
                continue
            se = query(r, sid)
            now = time.monotonic()
            if se.get("resuming") is True and r.name not in resuming:
                resuming[r.name] = now
                relay.log("%s: %s resuming %.2f s after the cut", sid, r.name, now - t_cut)
            if se.get("state") in relay.FINAL_STATES:
                final[r.name] = (se, now)
        time.sleep(0.05)
    run.proxy.uncut()
    for r in (S, D):
        ensure(r.name in final, "%s: %s session not final %.0f s after the cut: %s"
               % (sid, r.name, deadline - t_cut, fmt(query(r, sid))))
        se, t = final[r.name]
        relay.log("%s: %s %s, %.2f s after the cut", sid, r.name, fmt(se), t - t_cut)
        err = se.get("error") or {}
        ensure(se.get("state") == "failed", "%s: %s session %s, want failed"
               % (sid, r.name, se.get("state")))
        ensure(err.get("class") == "PeerUnreachable", "%s: %s error class %s, want "
               "PeerUnreachable (%s)" % (sid, r.name, err.get("class"), err.get("desc")))
        ensure(re.search(r"not re-established", err.get("desc", "")),
               "%s: %s error description %r does not say 'not re-established'"
               % (sid, r.name, err.get("desc")))
        ensure(t - t_cut <= within, "%s: %s failed %.1f s after the cut, allowed %.1f s "
               "(link timeout + reconnect timeout + %.0f s)" % (sid, r.name, t - t_cut,
                                                               within, TICK_S + SLACK_S))
        ensure(r.name in resuming, "%s: %s session never reported resuming before it "
               "failed" % (sid, r.name))
        grace = t - resuming[r.name]
        ensure(grace >= SHORT_RECONNECT_MS / 1000.0 - 0.3,
               "%s: %s failed %.2f s after it began resuming: the %d ms grace period was "
               "not given" % (sid, r.name, grace, SHORT_RECONNECT_MS))
    # The fake QEMUs' connections were closed: nobody waits for their deadline.
    t0 = time.monotonic()
    src_err = run.src.join(timeout=10)
    dst_err = run.dst.join(timeout=10)
    stuck = [e for e in src_err + dst_err if "not finished" in e]
    ensure(not stuck, "%s: fake QEMU connections still open after the sessions "
           "failed: %s" % (sid, stuck))
    relay.log("ok: %s: both sessions failed PeerUnreachable, fake QEMUs' connections "
              "closed (%.1f s)", sid, time.monotonic() - t0)
    run.close()


def scenario_off(d, S, D, rng, sid, off):
    """--reconnect-timeout 0 on relay `off`: no resume, a reset fails the session."""
    run = Run(d, S, D, sid, make_plans(rng))
    run.at_inject_point()
    for r in (S, D):
        se = query(r, sid)
        ensure("resume" not in se.get("features", []), "%s: %s features %s include "
               "resume although %s runs --reconnect-timeout 0"
               % (sid, r.name, se.get("features"), off.name))
    relay.log("ok: %s: resume not negotiated (features %s)", sid,
              ",".join(query(S, sid).get("features", [])))
    run.proxy.reset(1)
    t_reset = time.monotonic()
    for r in (S, D):
        se, t = wait_final(r, sid, OFF_FAIL_WITHIN_S + 10)
        t -= t_reset
        ensure(se.get("state") == "failed", "%s: without resume a reset must fail the "
               "session: %s %s" % (sid, r.name, fmt(se)))
        relay.log("%s: %s %s, %.2f s after the reset", sid, r.name, fmt(se), t)
        err = se.get("error") or {}
        ensure(err.get("class") == "PeerUnreachable", "%s: %s error class %s, want "
               "PeerUnreachable (%s)" % (sid, r.name, err.get("class"), err.get("desc")))
        ensure(t <= OFF_FAIL_WITHIN_S, "%s: %s failed %.1f s after the reset, allowed %.0f"
               % (sid, r.name, t, OFF_FAIL_WITHIN_S))
        ensure(se.get("reconnects", 0) == 0, "%s: %s counts %s reconnects without resume"
               % (sid, r.name, se.get("reconnects")))
    stuck = [e for e in run.src.join(timeout=10) + run.dst.join(timeout=10)
             if "not finished" in e]
    ensure(not stuck, "%s: fake QEMU connections still open: %s" % (sid, stuck))
    run.close()


SCENARIOS = ("reset-one", "reset-ch0", "reset-all", "outage", "silent-cut", "short-cut",
             "give-up", "off-source", "off-dest")


def run_scenarios(d, want):
    rng = random.Random(SEED)
    creds = credentials(d)
    rc = ["--reconnect-timeout", str(RECONNECT_MS)]
    S = start_relay(d, creds, "src", "S", *rc)
    D = start_relay(d, creds, "dst", "D", *rc)
    fds = (S.fd_count(), D.fd_count())

    def extra_pair(tag, src_args, dst_args):
        return (start_relay(d, creds, "src", "S" + tag, *src_args) if src_args else S,
                start_relay(d, creds, "dst", "D" + tag, *dst_args) if dst_args else D)

    for name in want:
        relay.log("== %s", name)
        if name == "reset-one":
            scenario_reset(d, S, D, rng, name, 2)
        elif name == "reset-ch0":
            scenario_reset(d, S, D, rng, name, 0)
        elif name == "reset-all":
            scenario_reset_all(d, S, D, rng)
        elif name == "outage":
            scenario_outage(d, S, D, rng)
        elif name == "silent-cut":
            scenario_silent_cut(d, S, D, rng, name, 5.5)
        elif name == "short-cut":
            if PLAINTEXT:
                relay.log("(TLS only: in plaintext a hole in the stream is a protocol "
                          "error, which fails the session)")
                continue
            scenario_silent_cut(d, S, D, rng, name, 2.0)
        elif name == "give-up":
            rs = ["--reconnect-timeout", str(SHORT_RECONNECT_MS)]
            pair = extra_pair("g", rs, rs)
            scenario_give_up(d, pair[0], pair[1], rng)
        elif name == "off-source":
            pair = extra_pair("0", ["--reconnect-timeout", "0"], None)
            scenario_off(d, pair[0], pair[1], rng, name, pair[0])
        elif name == "off-dest":
            pair = extra_pair("0", None, ["--reconnect-timeout", "0"])
            scenario_off(d, pair[0], pair[1], rng, name, pair[1])
        else:
            raise ValueError("unknown scenario %r (known: %s)" % (name, " ".join(SCENARIOS)))
        for r in pair if name in ("give-up", "off-source", "off-dest") else ():
            if r is not S and r is not D:
                forget(r)
                r.stop()

    forget(S)
    forget(D)
    after = (S.wait_fd_count(fds[0]), D.wait_fd_count(fds[1]))
    relay.log("fds S %d -> %d, D %d -> %d", fds[0], after[0], fds[1], after[1])
    ensure(after[0] <= fds[0] and after[1] <= fds[1],
           "fd leak: S %d -> %d, D %d -> %d" % (fds[0], after[0], fds[1], after[1]))
    for r in (S, D):
        n = r.cmd("query-daemon")["sessions"]
        ensure(n == 0, "%s: %d sessions left after remove" % (r.name, n))


def main(argv):
    """t-resume.py [SCENARIO...] (default: all, in order)"""
    relay.test_timeout(170)
    t0 = time.monotonic()
    relay.log("seed %d, %s links", SEED, "plaintext" if PLAINTEXT else "TLS + SCRAM")
    with relay.TempDir(prefix="mr-resume-") as d:
        try:
            run_scenarios(d, argv or SCENARIOS)
        except BaseException as e:
            if not isinstance(e, SystemExit):
                print("FAIL: %s" % e, file=sys.stderr, flush=True)
                dump_logs(d)
            raise
    relay.log("PASS in %.1f s", time.monotonic() - t0)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
