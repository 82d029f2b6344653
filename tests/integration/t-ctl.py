#!/usr/bin/env python3
"""t-ctl.py - the migrelayctl command-line client against two relays.

Exit status and the one "migrelayctl: CLASS: description" stderr line for
misuse, connection failures and daemon errors; info, incoming, outgoing,
status (table and --json), cancel and remove; watch on a pipe (plain
lines, exit 0 for a completed session, exit 1 for a cancelled one) and on
a pseudo-terminal (one line rewritten with \\r and clear-to-EOL).
"""

import json
import os
import pty
import re
import select
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))
import relay                                            # noqa: E402
import fakeqemu                                         # noqa: E402

MiB = 1 << 20
CTL = None
failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)
        print("FAIL: " + msg, file=sys.stderr, flush=True)
    return cond


def ctl(*args, env=None, timeout=60):
    e = dict(os.environ)
    e.pop("MIGRELAY_CONTROL", None)
    if env:
        e.update(env)
    p = subprocess.run([CTL] + list(args), stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, env=e,
                       timeout=timeout)
    relay.log("migrelayctl %s -> %d%s", " ".join(args), p.returncode,
              (" | " + p.stderr.strip()) if p.stderr else "")
    return p.returncode, p.stdout, p.stderr


def expect_ok(*args, **kw):
    rc, out, err = ctl(*args, **kw)
    check(rc == 0 and err == "", "migrelayctl %s: rc %d, stderr %r" % (
        " ".join(args), rc, err))
    return out


def expect_fail(cls, *args, **kw):
    rc, out, err = ctl(*args, **kw)
    check(rc == 1, "migrelayctl %s: rc %d, want 1" % (" ".join(args), rc))
    check(err.count("\n") == 1 and err.endswith("\n") and
          err.startswith("migrelayctl: %s: " % cls) and
          len(err) > len("migrelayctl: %s: \n" % cls),
          "migrelayctl %s: stderr %r, want one line 'migrelayctl: %s: ...'"
          % (" ".join(args), err, cls))
    return out, err


def t_misuse(d):
    relay.log("misuse")
    nosock = d.join("nothing-here.sock")
    expect_fail("InvalidArgument")
    expect_fail("InvalidArgument", "frobnicate")
    expect_fail("InvalidArgument", "--bogus", "info")
    expect_fail("InvalidArgument", "-s")
    for args in (["info", "extra"],
                 ["incoming"], ["incoming", "vm1"],
                 ["incoming", "a b", "unix:/x"],
                 ["incoming", "x" * 65, "unix:/x"],
                 ["incoming", "vm1", "unix:/x", "--peer-identity"],
                 ["incoming", "vm1", "unix:/x", "--channels", "2"],
                 ["outgoing", "vm1", "127.0.0.1:1"],
                 ["outgoing", "vm1", "127.0.0.1:1", "unix:/x", "--channels",
                  "0"],
                 ["outgoing", "vm1", "127.0.0.1:1", "unix:/x", "--channels",
                  "65"],
                 ["outgoing", "vm1", "127.0.0.1:1", "unix:/x",
                  "--channels=4x"],
                 ["status", "vm1", "vm2"], ["status", "--json=yes"],
                 ["status", "bad/id"],
                 ["watch"], ["watch", "a", "b"], ["cancel"],
                 ["remove", "a:b"]):
        # Misuse is reported before connecting: the socket does not exist.
        expect_fail("InvalidArgument", "-s", nosock, *args)
    out = expect_ok("-h")
    check("usage:" in out and "outgoing" in out, "-h output %r" % out)


def t_connect_errors(d, S):
    relay.log("connection errors and socket selection")
    path = d.join("nothing-here.sock")
    _, err = expect_fail("GenericError", "-s", path, "info")
    check(err == "migrelayctl: GenericError: cannot connect to %s: "
          "No such file or directory\n" % path, "stderr %r" % err)
    expect_fail("GenericError", "info", env={"MIGRELAY_CONTROL": path})
    # -s wins over the environment.
    expect_ok("-s", S.control_path, "info", env={"MIGRELAY_CONTROL": path})
    expect_ok("info", env={"MIGRELAY_CONTROL": S.control_path})
    out = expect_ok("--control", S.control_path, "info")
    qd = S.cmd("query-daemon")
    check(qd["version"] in out and qd["listen"][0] in out and
          re.search(r"^sessions:\s*0$", out, re.M),
          "info output %r (query-daemon %s)" % (out, qd))


def start_transfer(d, sid, plans):
    dst = fakeqemu.FakeDestination(d.join(sid + "-dst.sock"), plans,
                                   timeout=60)
    return dst


def t_sessions(d, S, D):
    relay.log("incoming, outgoing, status, remove, errors")
    dst = start_transfer(d, "c1", [fakeqemu.Plan(3 * MiB + 17, 4096,
                                                 "concurrent", seed=1,
                                                 throttle=0.06),
                                   fakeqemu.Plan(100, 0, "src-first",
                                                 seed=2)])
    out = expect_ok("-s", D.control_path, "incoming", "c1",
                    "unix:" + d.join("c1-dst.sock"))
    check(out.count("\n") == 1 and "c1" in out and "waiting" in out,
          "incoming output %r" % out)
    out = expect_ok("-s", S.control_path, "outgoing", "c1", D.peer_addr(),
                    "unix:" + d.join("c1-src.sock"), "--channels", "3")
    check(out.count("\n") == 1 and "c1" in out and "ready" in out,
          "outgoing output %r" % out)
    check(S.session("c1").get("channels") in (1, 2, 3),
          "channels %s" % S.session("c1").get("channels"))

    out = expect_ok("-s", S.control_path, "status")
    lines = out.splitlines()
    check(len(lines) == 2 and lines[0].split()[:3] == ["ID", "ROLE", "STATE"]
          and lines[1].split()[:3] == ["c1", "source", "ready"],
          "status table %r" % out)
    out = expect_ok("-s", S.control_path, "status", "c1", "--json")
    try:
        got = json.loads(out)
        want = S.cmd("query-sessions", id="c1")
        for s in got + want:
            s.pop("duration-ms", None)
        check(got == want, "status --json %s, query-sessions %s" % (
            got, want))
    except ValueError as e:
        check(False, "status --json output %r: %s" % (out, e))
    out = expect_ok("-s", S.control_path, "status", "--json")
    check(isinstance(json.loads(out), list), "status --json %r" % out)

    expect_fail("NotFound", "-s", S.control_path, "status", "nope")
    expect_fail("NotFound", "-s", S.control_path, "watch", "nope")
    expect_fail("NotFound", "-s", S.control_path, "cancel", "nope")
    expect_fail("Exists", "-s", D.control_path, "incoming", "c1",
                "unix:" + d.join("c1-dst.sock"))
    expect_fail("GenericError", "-s", S.control_path, "remove", "c1")
    expect_fail("PeerUnreachable", "-s", S.control_path, "outgoing", "c9",
                "127.0.0.1:%d" % relay.free_port(),
                "unix:" + d.join("c9-src.sock"))
    expect_fail("PeerRejected", "-s", S.control_path, "outgoing", "c8",
                D.peer_addr(), "unix:" + d.join("c8-src.sock"))

    relay.log("watch on a pipe")
    watch = subprocess.Popen([CTL, "-s", S.control_path, "watch", "c1"],
                             stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    time.sleep(0.3)
    src = fakeqemu.FakeSource(d.join("c1-src.sock"), dst.plans,
                              timeout=60).start()
    errs = src.join() + dst.join()
    errs += fakeqemu.compare(src, dst)
    check(not errs, "c1 transfer: %s" % errs)
    try:
        out, err = watch.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        watch.kill()
        out, err = watch.communicate()
        check(False, "watch did not end: %r" % out)
    relay.log("watch output:\n%s", out.rstrip())
    lines = out.splitlines()
    check(watch.returncode == 0 and err == "",
          "watch c1: rc %d stderr %r" % (watch.returncode, err))
    check("\r" not in out and "\x1b" not in out,
          "watch on a pipe wrote terminal controls: %r" % out)
    check(len(lines) >= 3, "watch printed %d lines, want progress lines "
          "and a summary" % len(lines))
    check(lines and "completed" in lines[-1] and "MiB" in lines[-1],
          "watch summary %r" % (lines[-1] if lines else None))
    check(any("active" in x for x in lines),
          "no progress line shows state active: %r" % lines)
    dst.close()

    out = expect_ok("-s", S.control_path, "status")
    check(re.search(r"^c1\s+source\s+completed\s+\d+\s+2\s+3\.0 MiB\s+"
                    r"4\.0 KiB\s", out, re.M),
          "status after completion %r" % out)
    for r in (S, D):
        check(expect_ok("-s", r.control_path, "remove", "c1") == "",
              "remove printed something")
    expect_fail("NotFound", "-s", S.control_path, "status", "c1")


def t_watch_tty(d, S, D):
    relay.log("watch on a terminal")
    plans = [fakeqemu.Plan(2 * MiB, 1000, "concurrent", seed=3,
                           throttle=0.02)]
    dst = start_transfer(d, "c2", plans)
    D.cmd("session-incoming", id="c2", qemu="unix:" + d.join("c2-dst.sock"))
    S.cmd("session-outgoing", id="c2", peer=D.peer_addr(),
          listen="unix:" + d.join("c2-src.sock"), channels=2)
    master, slave = pty.openpty()
    watch = subprocess.Popen([CTL, "-s", S.control_path, "watch", "c2"],
                             stdin=subprocess.DEVNULL, stdout=slave,
                             stderr=subprocess.PIPE, text=True)
    os.close(slave)
    src = fakeqemu.FakeSource(d.join("c2-src.sock"), plans,
                              timeout=60).start()
    data = b""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        r, _, _ = select.select([master], [], [], 0.2)
        if r:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break           # EIO: the watcher exited
            if not chunk:
                break
            data += chunk
        elif watch.poll() is not None:
            break
    os.close(master)
    try:
        watch.wait(5)
    except subprocess.TimeoutExpired:
        watch.kill()
        watch.wait()
    err = watch.stderr.read()
    errs = src.join() + dst.join() + fakeqemu.compare(src, dst)
    check(not errs, "c2 transfer: %s" % errs)
    text = data.decode("utf-8", "replace")
    relay.log("watch tty output: %r", text[-300:])
    check(watch.returncode == 0 and err == "",
          "watch c2 on a tty: rc %s stderr %r" % (watch.returncode, err))
    check("\r" in text and "\x1b[K" in text,
          "watch on a tty: no \\r / clear-to-EOL: %r" % text[-300:])
    check("completed" in text.splitlines()[-1] if text.strip() else False,
          "watch on a tty: last line %r" % text[-200:])
    dst.close()
    for r in (S, D):
        r.cmd("session-remove", id="c2")


def t_cancel(d, S, D):
    relay.log("cancel, remove, watch of a cancelled session")
    out = expect_ok("-s", D.control_path, "incoming", "c3",
                    "unix:" + d.join("c3-dst.sock"), "--peer-identity",
                    "source-host")
    check("waiting" in out, "incoming c3 output %r" % out)
    check(expect_ok("-s", D.control_path, "cancel", "c3") == "",
          "cancel printed something")
    D.wait_state("c3", "cancelled", timeout=10)
    out, err = expect_fail("GenericError", "-s", D.control_path, "watch",
                           "c3")
    check("cancelled" in out, "watch of a cancelled session: %r" % out)
    check(expect_ok("-s", D.control_path, "remove", "c3") == "",
          "remove printed something")
    expect_fail("NotFound", "-s", D.control_path, "remove", "c3")


def main():
    global CTL
    relay.test_timeout(110)
    CTL = relay.binary("migrelayctl")
    with relay.TempDir(prefix="mr-ctl-") as d:
        t_misuse(d)
        S = d.relay("S")
        D = d.relay("D")
        S.start()
        D.start()
        for t in (lambda: t_connect_errors(d, S),
                  lambda: t_sessions(d, S, D),
                  lambda: t_watch_tty(d, S, D),
                  lambda: t_cancel(d, S, D)):
            try:
                t()
            except (relay.RelayError, AssertionError, OSError, ValueError,
                    subprocess.TimeoutExpired) as e:
                check(False, "%s: %r" % (t.__code__.co_names[0], e))
        if failures:
            raise AssertionError("%d check(s) failed" % len(failures))
    relay.log("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
