#!/usr/bin/env python3
"""t-control.py - the control socket protocol (interface.md), without QEMU.

Greeting shape, id echo, pipelining, malformed input (error reply, the
connection stays usable), unknown commands, argument validation, session
id rules, Exists/NotFound/GenericError cases, PeerUnreachable and
PeerRejected from session-outgoing, oversized input (closes that client
only), SESSION_STATE events, cancel of waiting and ready sessions, and no
fd leak from many clients.
"""

import os
import socket
import stat
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))
import relay                                            # noqa: E402
from relay import ControlClient, RelayError             # noqa: E402

failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)
        print("FAIL: " + msg, file=sys.stderr, flush=True)
    return cond


def expect_error(r, cls, name, timeout=30, **args):
    """Run a command that must fail with error class cls (str or tuple)."""
    classes = (cls,) if isinstance(cls, str) else tuple(cls)
    try:
        ret = r.cmd(name, timeout=timeout, **args)
    except RelayError as e:
        check(e.cls in classes, "%s %s: error %s, want %s" % (
            name, args, e, "|".join(classes)))
        check(isinstance(e.desc, str) and e.desc != "",
              "%s %s: empty error description" % (name, args))
        return e
    check(False, "%s %s: succeeded (%s), want %s" % (
        name, args, ret, "|".join(classes)))
    return None


def expect_closed(c, timeout=5):
    """True when the daemon closes c within timeout (error lines allowed)."""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            line = c.recv_line(max(0.01, deadline - time.monotonic()))
            if line is None:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False
    return False


def listen_is_closed(uri):
    """True when nothing accepts on a unix: URI any more."""
    path = uri[len("unix:"):]
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(2)
        s.connect(path)
        return False
    except OSError:
        return True
    finally:
        s.close()


def t_greeting(S):
    relay.log("greeting and query-daemon")
    with ControlClient(S.control_path) as c:
        g = c.greeting
        check(isinstance(g, dict) and list(g) == ["migrelay"],
              "greeting has keys %s" % list(g))
        m = g.get("migrelay", {})
        v = m.get("version", {})
        check(all(isinstance(v.get(k), int) and v.get(k) >= 0
                  for k in ("major", "minor", "micro")),
              "greeting version %s" % v)
        check(isinstance(m.get("capabilities"), list),
              "greeting capabilities %s" % m.get("capabilities"))
        d = c.call("query-daemon")
        check(d.get("version") == "%s.%s.%s" % (
            v.get("major"), v.get("minor"), v.get("micro")),
            "query-daemon version %s vs greeting %s" % (d.get("version"), v))
        check(isinstance(d.get("listen"), list) and len(d["listen"]) == 1
              and d["listen"][0].startswith("127.0.0.1:") and
              int(d["listen"][0].rsplit(":", 1)[1]) > 0,
              "query-daemon listen %s" % d.get("listen"))
        check(isinstance(d.get("features"), list) and
              all(isinstance(f, str) for f in d["features"]),
              "query-daemon features %s" % d.get("features"))
        check(d.get("sessions") == 0, "query-daemon sessions %s" %
              d.get("sessions"))
        check(c.call("query-sessions") == [], "query-sessions not []")


def t_ids_and_pipelining(S):
    relay.log("id echo and pipelining")
    with ControlClient(S.control_path) as c:
        for rid in ("abc", 0, -5, 12345678901, {"a": [1, None, "x"]}, [1],
                    None, 1.5):
            r = c.execute("query-daemon", id=rid) if rid is not None else \
                None
            if rid is None:
                c.send({"execute": "query-daemon"})
                r = c.recv()
                while "event" in r:
                    r = c.recv()
                check("return" in r and r.get("id") is None,
                      "request without id: reply %s" % r)
                continue
            check("return" in r and r.get("id") == rid,
                  "id %r: reply %s" % (rid, r))
        # Three requests in one write: three replies, in order.
        c.send_raw(b"".join(b'{"execute": "query-sessions", "id": %d}\n' % i
                            for i in (101, 102, 103)))
        got = []
        while len(got) < 3:
            r = c.recv()
            if "event" not in r:
                got.append(r.get("id"))
        check(got == [101, 102, 103], "pipelined replies in order %s" % got)


def t_malformed(S):
    relay.log("malformed input keeps the connection usable")
    bad = [b"{not json", b"[1, 2]", b"42", b'"text"', b"{}",
           b'{"execute": 5}', b'{"arguments": {}}', b'{"execute": null}',
           b'{"execute": "query-daemon"} trailing',
           b'{"execute": "query-daemon", "bogus": 1}',
           b'\xff\xfe\x00garbage', b'{"execute": "query-daemon"',
           b'{"execute": "query-daemon", "arguments": [1]}']
    with ControlClient(S.control_path) as c:
        for line in bad:
            c.send_raw(line + b"\n")
            try:
                r = c.recv()
                while "event" in r:
                    r = c.recv()
            except (EOFError, OSError, ValueError) as e:
                check(False, "malformed %r: no error reply (%r)" % (line, e))
                return
            check(isinstance(r.get("error"), dict) and
                  isinstance(r["error"].get("class"), str) and
                  isinstance(r["error"].get("desc"), str),
                  "malformed %r: reply %s" % (line, r))
        # An empty line is no request: it may get an error reply or none.
        c.send_raw(b"\n" + b'{"execute": "query-daemon", "id": "after"}\n')
        while True:
            r = c.recv()
            if r.get("id") == "after":
                check("return" in r, "after empty line: %s" % r)
                break
        check(isinstance(c.call("query-daemon"), dict),
              "query-daemon after malformed input")


def t_unknown_and_arguments(S, d):
    relay.log("unknown commands and argument validation")
    expect_error(S, "GenericError", "no-such-command")
    expect_error(S, "GenericError", "Query-Daemon")
    q = "unix:" + d.join("val-q.sock")
    lst = "unix:" + d.join("val-l.sock")
    peer = "127.0.0.1:%d" % relay.free_port()
    cases = [
        ("session-incoming", {}),
        ("session-incoming", {"id": "v1"}),
        ("session-incoming", {"qemu": q}),
        ("session-incoming", {"id": "v1", "qemu": 5}),
        ("session-incoming", {"id": 5, "qemu": q}),
        ("session-incoming", {"id": "v1", "qemu": "bogus:/x"}),
        ("session-incoming", {"id": "v1", "qemu": "unix:"}),
        ("session-incoming", {"id": "v1", "qemu": "tcp:127.0.0.1"}),
        ("session-incoming", {"id": "v1", "qemu": "tcp:127.0.0.1:99999"}),
        ("session-incoming", {"id": "v1", "qemu": q, "unknown-arg": 1}),
        ("session-incoming", {"id": "v1", "qemu": q, "peer-identity": 7}),
        ("session-outgoing", {"id": "v2", "listen": lst}),
        ("session-outgoing", {"id": "v2", "peer": peer}),
        ("session-outgoing", {"peer": peer, "listen": lst}),
        ("session-outgoing", {"id": "v2", "peer": "nonsense", "listen": lst}),
        ("session-outgoing", {"id": "v2", "peer": "127.0.0.1:99999",
                              "listen": lst}),
        ("session-outgoing", {"id": "v2", "peer": peer, "listen": "x:y"}),
        ("session-outgoing", {"id": "v2", "peer": peer, "listen": lst,
                              "channels": 0}),
        ("session-outgoing", {"id": "v2", "peer": peer, "listen": lst,
                              "channels": 65}),
        ("session-outgoing", {"id": "v2", "peer": peer, "listen": lst,
                              "channels": -1}),
        ("session-outgoing", {"id": "v2", "peer": peer, "listen": lst,
                              "channels": "4"}),
        ("session-outgoing", {"id": "v2", "peer": peer, "listen": lst,
                              "channels": 1.5}),
        ("query-sessions", {"id": 5}),
        ("session-cancel", {}),
        ("session-remove", {}),
        ("query-daemon", {"unexpected": True}),
    ]
    with ControlClient(S.control_path) as c:
        for name, args in cases:
            r = c.execute(name, args)
            check(r.get("error", {}).get("class") == "InvalidArgument",
                  "%s %s: reply %s, want InvalidArgument" % (name, args, r))
        r = c.execute("session-incoming", [1])
        check(r.get("error", {}).get("class") in ("InvalidArgument",
                                                  "GenericError"),
              "arguments not an object: reply %s" % r)

        relay.log("session id rules")
        for sid in ("", "a b", "x" * 65, "\u00fc", "a/b", "../x", "a\n",
                    "a:b", "*"):
            r = c.execute("session-incoming", {"id": sid, "qemu": q})
            check(r.get("error", {}).get("class") == "InvalidArgument",
                  "session id %r: reply %s, want InvalidArgument" % (sid, r))
            r = c.execute("session-outgoing", {"id": sid, "peer": peer,
                                               "listen": lst})
            check(r.get("error", {}).get("class") == "InvalidArgument",
                  "outgoing session id %r: reply %s, want InvalidArgument"
                  % (sid, r))
        check(c.call("query-daemon").get("sessions") == 0,
              "rejected requests left sessions behind: %s" %
              c.call("query-sessions"))
    for sid in ("x" * 64, "A-z_0.9", "-", "."):
        try:
            s = S.cmd("session-incoming", id=sid,
                      qemu="unix:" + d.join("ok.sock"))
            check(s.get("id") == sid and s.get("state") == "waiting",
                  "session-incoming %r returned %s" % (sid, s))
            check(S.cmd("session-cancel", id=sid) == {},
                  "session-cancel %r" % sid)
            S.wait_state(sid, "cancelled", timeout=10)
            check(S.cmd("session-remove", id=sid) == {},
                  "session-remove %r" % sid)
        except (RelayError, AssertionError) as e:
            check(False, "valid session id %r: %s" % (sid, e))


def t_exists_notfound(S, D, d):
    relay.log("Exists, NotFound, remove of a live session")
    q = "unix:" + d.join("dup-q.sock")
    S.cmd("session-incoming", id="dup", qemu=q)
    expect_error(S, "Exists", "session-incoming", id="dup", qemu=q)
    expect_error(S, "Exists", "session-outgoing", id="dup",
                 peer=D.peer_addr(), listen="unix:" + d.join("dup-l.sock"))
    expect_error(S, "GenericError", "session-remove", id="dup")
    check(S.session("dup").get("state") == "waiting",
          "dup changed state: %s" % S.session("dup"))
    for name in ("query-sessions", "session-cancel", "session-remove"):
        expect_error(S, "NotFound", name, id="nope")
    S.cmd("session-cancel", id="dup")
    S.wait_state("dup", "cancelled", timeout=10)
    S.cmd("session-remove", id="dup")


def t_peer_errors(S, D, d):
    relay.log("PeerUnreachable and PeerRejected")
    for sid, peer, cls in (
            ("unreach", "127.0.0.1:%d" % relay.free_port(),
             "PeerUnreachable"),
            ("rejected", D.peer_addr(), "PeerRejected")):
        lst = "unix:" + d.join(sid + "-l.sock")
        t0 = time.monotonic()
        expect_error(S, cls, "session-outgoing", timeout=60, id=sid,
                     peer=peer, listen=lst, channels=4)
        check(time.monotonic() - t0 < 20, "%s took %.1f s" % (
            cls, time.monotonic() - t0))
        check(listen_is_closed(lst), "%s: listen socket %s still accepts"
              % (sid, lst))
        # Either no session was left, or a failed one carrying the error.
        try:
            s = S.session(sid)
        except RelayError as e:
            check(e.cls == "NotFound", "query %s: %s" % (sid, e))
            continue
        check(s.get("state") == "failed" and
              s.get("error", {}).get("class") == cls,
              "%s left session %s" % (cls, s))
        S.cmd("session-remove", id=sid)
    # A peer whose name does not resolve (.invalid never does, RFC 6761)
    # says so, rather than borrowing an errno's text.
    lst = "unix:" + d.join("noname-l.sock")
    e = expect_error(S, "PeerUnreachable", "session-outgoing", timeout=60,
                     id="noname", peer="no-such-relay.invalid:4600",
                     listen=lst)
    check(e is not None and "does not resolve" in e.desc,
          "unresolvable peer: %s" % (e.desc if e else None))
    try:
        S.cmd("session-remove", id="noname")
    except RelayError:
        pass
    # D must not keep anything from the rejected attempt.
    check(D.cmd("query-daemon").get("sessions") == 0,
          "D has sessions after PeerRejected: %s" %
          D.cmd("query-sessions"))


def is_state_event(ev, sid, state):
    return ev.get("event") == "SESSION_STATE" and \
        isinstance(ev.get("data"), dict) and \
        ev["data"].get("id") == sid and ev["data"].get("state") == state


def t_events_and_cancel(S, D, d):
    relay.log("SESSION_STATE events, cancel of waiting and ready sessions")
    watcher = ControlClient(D.control_path)
    D.cmd("session-incoming", id="ev1", qemu="unix:" + d.join("ev1-q.sock"))
    check(D.cmd("session-cancel", id="ev1") == {}, "session-cancel ev1")
    s = D.wait_state("ev1", "cancelled", timeout=10)
    check("error" not in s, "cancelled session has an error: %s" % s)
    try:
        ev = D.wait_event(lambda e: is_state_event(e, "ev1", "cancelled"),
                          timeout=5)
        check(set(ev) == {"event", "data", "timestamp"},
              "event keys %s" % sorted(ev))
        ts = ev.get("timestamp", {})
        check(isinstance(ts.get("seconds"), int) and
              abs(ts["seconds"] - time.time()) < 600 and
              isinstance(ts.get("microseconds"), int) and
              0 <= ts["microseconds"] < 1000000,
              "event timestamp %s" % ts)
    except AssertionError as e:
        check(False, str(e))
    # The same event on another, idle client connection.
    try:
        deadline = time.monotonic() + 5
        while True:
            ev = watcher.recv(max(0.01, deadline - time.monotonic()))
            if is_state_event(ev, "ev1", "cancelled"):
                break
    except (socket.timeout, EOFError) as e:
        check(False, "idle client got no SESSION_STATE event: %r" % e)
    watcher.close()
    D.cmd("session-remove", id="ev1")
    expect_error(D, "NotFound", "query-sessions", id="ev1")

    # Cancel a ready source session: its listen socket closes and the
    # destination side ends too.
    lst = "unix:" + d.join("ev2-l.sock")
    D.cmd("session-incoming", id="ev2", qemu="unix:" + d.join("ev2-q.sock"))
    s = S.cmd("session-outgoing", id="ev2", peer=D.peer_addr(), listen=lst,
              channels=2)
    check(s.get("state") == "ready", "session-outgoing ev2: %s" % s)
    try:
        D.wait_state("ev2", "ready", timeout=10)
    except AssertionError as e:
        check(False, str(e))
    # Only look: a connection would be a QEMU stream to relay.
    check(stat.S_ISSOCK(os.stat(lst[len("unix:"):]).st_mode),
          "ready session has no listen socket %s" % lst)
    check(S.cmd("session-cancel", id="ev2") == {}, "session-cancel ev2")
    try:
        S.wait_state("ev2", "cancelled", timeout=10)
        S.wait_event(lambda e: is_state_event(e, "ev2", "cancelled"),
                     timeout=5)
        s = D.wait_state("ev2", ("failed", "cancelled"), timeout=20)
        relay.log("D ev2 after S cancel: %s %s", s["state"], s.get("error"))
    except AssertionError as e:
        check(False, str(e))
    check(listen_is_closed(lst), "cancelled session still accepts on %s"
          % lst)
    for r in (S, D):
        try:
            r.cmd("session-remove", id="ev2")
        except RelayError as e:
            check(False, "%s remove ev2: %s" % (r.name, e))


def t_oversized(S):
    relay.log("oversized and deeply nested input")
    other = ControlClient(S.control_path)
    for what, data in (
            ("1.5 MiB line", b'{"execute": "' + b"a" * (3 << 19) + b'"}\n'),
            ("2 MiB without newline", b" " * (2 << 20))):
        c = ControlClient(S.control_path)
        try:
            c.sock.settimeout(10)
            c.send_raw(data)
        except OSError:
            pass
        check(expect_closed(c), "%s: connection not closed" % what)
        c.close()
        check(isinstance(other.call("query-daemon"), dict),
              "other client after %s" % what)
    deep = b'{"execute": "query-daemon", "arguments": {"a": ' + \
        b"[" * 5000 + b"]" * 5000 + b'}, "id": 1}\n'
    c = ControlClient(S.control_path)
    c.send_raw(deep)
    try:
        r = c.recv(5)
        check("error" in r, "deep nesting: reply %s" % r)
    except (EOFError, OSError):
        pass                    # closing the client is fine too
    c.close()
    # A client leaving in the middle of a line.
    c = ControlClient(S.control_path)
    c.send_raw(b'{"execute": "query-dae')
    c.close()
    check(isinstance(other.call("query-daemon"), dict),
          "other client after deep nesting")
    other.close()
    with ControlClient(S.control_path) as c:
        check(isinstance(c.call("query-daemon"), dict), "new client")


def _connect_as(path, uid, gid, groups):
    """Connect to the control socket in a child with the given credentials;
    return "greeting", "closed" or an error string."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        out = "error"
        try:
            os.setgroups(groups)
            os.setgid(gid)
            os.setuid(uid)
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(5)
            s.connect(path)
            data = s.recv(4096)
            out = "greeting" if b"\"migrelay\"" in data else ("closed" if not data
                                                    else "other %r" % data[:40])
        except Exception as e:      # reported to the parent, not raised
            out = "error %r" % e
        os.write(w, out.encode())
        os._exit(0)
    os.close(w)
    chunks = []
    while True:
        b = os.read(r, 4096)
        if not b:
            break
        chunks.append(b)
    os.close(r)
    os.waitpid(pid, 0)
    return b"".join(chunks).decode()


def t_peer_credentials(S):
    relay.log("control clients: root, the daemon's user, or a member of its "
              "group (primary or supplementary); nobody else")
    if os.geteuid() != 0:
        relay.log("not root: cannot connect as other users, peer credential "
                  "checks not exercised here")
        return
    # A socket with looser permissions than the daemon makes (one passed in
    # by a service manager, say) must not let everyone in: open it to all,
    # so that only the daemon's own check decides.
    os.chmod(S.workdir, 0o711)
    os.chmod(S.control_path, 0o666)
    nobody = 65534
    egid = os.getegid()
    cases = [("uid 65534 without the daemon's group", nobody, nobody, [], "closed"),
             ("uid 65534 with the daemon's gid as primary group", nobody, egid, [],
              "greeting"),
             ("uid 65534 with the daemon's gid as a supplementary group", nobody,
              nobody, [nobody, egid], "greeting")]
    for what, uid, gid, groups, want in cases:
        got = _connect_as(S.control_path, uid, gid, groups)
        check(got == want, "%s: %s (want %s)" % (what, got, want))
    deadline = time.monotonic() + 5
    while ("refusing client" not in S.log_tail(400)
           and time.monotonic() < deadline):
        time.sleep(0.05)
    check("refusing client" in S.log_tail(400),
          "the refusal is logged with the client's pid, uid and gid")


def t_many_clients(S):
    relay.log("many clients, no fd leak")
    before = S.fd_count()
    clients = [ControlClient(S.control_path) for _ in range(50)]
    for c in clients:
        c.send({"execute": "query-daemon", "id": 1})
    for c in clients:
        r = c.recv()
        while "event" in r:
            r = c.recv()
        check("return" in r, "client reply %s" % r)
    for c in clients:
        c.close()
    deadline = time.monotonic() + 5
    while S.fd_count() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    check(S.fd_count() <= before, "fds %d -> %d after 50 clients" % (
        before, S.fd_count()))


def main():
    relay.test_timeout(110)
    with relay.TempDir(prefix="mr-ctl-") as d:
        S = d.relay("S")
        D = d.relay("D")
        S.start()
        D.start()
        for t in (lambda: t_greeting(S),
                  lambda: t_ids_and_pipelining(S),
                  lambda: t_malformed(S),
                  lambda: t_unknown_and_arguments(S, d),
                  lambda: t_exists_notfound(S, D, d),
                  lambda: t_peer_errors(S, D, d),
                  lambda: t_events_and_cancel(S, D, d),
                  lambda: t_oversized(S),
                  lambda: t_many_clients(S),
                  lambda: t_peer_credentials(S)):
            try:
                t()
            except (RelayError, AssertionError, OSError, EOFError,
                    ValueError) as e:
                check(False, "%s: %r" % (t.__code__.co_names[0], e))
            if not S.is_running() or not D.is_running():
                check(False, "a relay died")
                break
        if failures:
            raise AssertionError("%d check(s) failed" % len(failures))
    relay.log("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
