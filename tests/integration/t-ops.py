#!/usr/bin/env python3
"""The daemon as a service: systemd notifications (READY, STATUS, WATCHDOG,
RELOADING, STOPPING) over a real NOTIFY_SOCKET, socket activation with
LISTEN_FDS/LISTEN_FDNAMES (the daemon creates no sockets of its own),
configuration errors named by file and line, --check-config, a reload of the
configuration file (good and broken), the Prometheus endpoint and the
counters in query-daemon, and SIGTERM refusing new sessions while draining.
"""
import atexit
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))
import relay  # noqa: E402
from relay import check  # noqa: E402



def reap(pid):
    """Kill and wait for a daemon still running at exit."""
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


def notifications(ns, seconds):
    out = []
    t0 = time.monotonic()
    ns.settimeout(0.2)
    while time.monotonic() - t0 < seconds:
        try:
            out.append(ns.recv(4096).decode())
        except socket.timeout:
            pass
    return out


def control(path, name, **args):
    c = relay.ControlClient(path)
    try:
        return c.call(name, {k.replace("_", "-"): v for k, v in args.items()}
                      or None)
    finally:
        c.close()


def main():
    relay.test_timeout(100)
    daemon = relay.binary("migrelayd")
    with relay.TempDir(prefix="mr-ops-") as d:
        relay.log("== configuration errors and --check-config")
        bad = d.join("bad.conf")
        with open(bad, "w") as f:
            f.write("# a comment\ninsecure-plaintext\nlog-level loud\n"
                    "listen nowhere\nfrobnicate 1\n")
        r = subprocess.run([daemon, "--config", bad, "--check-config"],
                           capture_output=True, text=True)
        check(r.returncode == 1 and "bad.conf:3: log-level" in r.stderr,
              "a bad value is reported with file:line: %s"
              % r.stderr.strip().splitlines()[0])
        good = d.join("good.conf")
        with open(good, "w") as f:
            f.write("insecure-plaintext\nlisten = 127.0.0.1:0\n"
                    "log-level info\nprogress-timeout 45000\n")
        r = subprocess.run([daemon, "--config", good, "--check-config",
                            "--log-level", "debug"],
                           capture_output=True, text=True)
        check(r.returncode == 0 and "progress-timeout 45000" in r.stdout
              and "log-level debug" in r.stdout,
              "--check-config prints the effective configuration, command "
              "line over file")

        relay.log("== notifications and socket activation")
        ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        ns.bind(d.join("notify"))
        ctl = socket.socket(socket.AF_UNIX)
        ctl_path = d.join("activated.sock")
        ctl.bind(ctl_path)
        os.chmod(ctl_path, 0o660)
        ctl.listen(16)
        lst = socket.socket()
        lst.bind(("127.0.0.1", 0))
        lst.listen(16)
        relay_port = lst.getsockname()[1]
        conf = d.join("svc.conf")
        with open(conf, "w") as f:
            f.write("insecure-plaintext\nlog-level info\n"
                    "metrics-listen 127.0.0.1:%d\n" % relay.free_port())
        metrics_addr = open(conf).read().split("metrics-listen ")[1].strip()
        log = open(d.join("svc.log"), "w")
        pid = os.fork()
        if pid == 0:
            os.dup2(ctl.fileno(), 3)
            os.dup2(lst.fileno(), 4)
            os.dup2(log.fileno(), 2)
            env = dict(os.environ, LISTEN_FDS="2", LISTEN_PID=str(os.getpid()),
                       LISTEN_FDNAMES="control:relay",
                       NOTIFY_SOCKET=d.join("notify"), WATCHDOG_USEC="600000")
            os.execve(daemon, [daemon, "--config", conf,
                               "--control", d.join("not-used.sock"),
                               "--drain-timeout", "20000"], env)
        # The forked daemon is ours to stop if the scenario fails early.
        atexit.register(reap, pid)
        msgs = notifications(ns, 1.5)
        check(msgs and msgs[0] == "READY=1", "READY=1 first: %s" % msgs[:3])
        check(any(m.startswith("STATUS=") for m in msgs), "STATUS= sent")
        check(sum(m == "WATCHDOG=1" for m in msgs) >= 3,
              "WATCHDOG=1 at half the 600 ms interval")
        check(not os.path.exists(d.join("not-used.sock")),
              "no control socket of its own")
        info = control(ctl_path, "query-daemon")
        check(info["listen"] == ["127.0.0.1:%d" % relay_port],
              "relay listener is the passed socket: %s" % info["listen"])
        check("stats" in info and "handshakes-accepted" in info["stats"],
              "query-daemon carries the counters")

        relay.log("== metrics")
        src = d.relay("src")
        src.start()
        # A destination QEMU that accepts and holds the connection.
        q = socket.socket(socket.AF_UNIX)
        q.bind(d.join("q.sock"))
        q.listen(4)
        control(ctl_path, "session-incoming", id="m1",
                qemu="unix:" + d.join("q.sock"))
        src.cmd("session-outgoing", id="m1", peer="127.0.0.1:%d" % relay_port,
                listen="unix:" + d.join("m1.sock"), channels=3)
        try:
            src.cmd("session-outgoing", id="m2",
                    peer="127.0.0.1:%d" % relay_port,
                    listen="unix:" + d.join("m2.sock"))
        except relay.RelayError:
            pass
        text = urllib.request.urlopen("http://%s/metrics" % metrics_addr,
                                      timeout=5).read().decode()
        check('migrelay_sessions{state="ready"} 1' in text,
              "metrics: sessions by state")
        check('migrelay_handshakes_total{result="accepted"} 3' in text and
              'migrelay_handshakes_total{result="rejected"} 1' in text,
              "metrics: handshakes accepted (3 channels) and rejected")
        check(text.count('migrelay_channel_bytes_total{session="m1"') == 6,
              "metrics: per-channel bytes of the 3 channels")
        s = src.session("m1")
        check(len(s["channel-stats"]) == 3 and
              all(c["up"] for c in s["channel-stats"]),
              "query-sessions: channel stats, 3 channels up")
        qemu_src = socket.socket(socket.AF_UNIX)
        qemu_src.connect(d.join("m1.sock"))
        qemu_src.sendall(b"QEVM migration stream")
        qemu_dst, _ = q.accept()
        check(qemu_dst.recv(100) == b"QEVM migration stream",
              "a stream is running")

        relay.log("== reload of the configuration file")
        with open(conf, "a") as f:
            f.write("link-timeout 12000\n")
        check(control(ctl_path, "reload") == {}, "reload of a good file")
        with open(conf, "a") as f:
            f.write("link-timeout seven\n")
        try:
            control(ctl_path, "reload")
            raise AssertionError("broken configuration accepted")
        except relay.RelayError as e:
            check("svc.conf:" in e.desc and "link-timeout" in e.desc,
                  "broken file refused, named by file:line: %s" % e.desc)
        os.kill(pid, signal.SIGHUP)
        msgs = notifications(ns, 1.0)
        check("RELOADING=1" in msgs and "READY=1" in msgs,
              "SIGHUP: RELOADING=1 then READY=1")
        check(src.session("m1")["state"] == "active",
              "the running session was not touched")

        relay.log("== SIGTERM: no new sessions, drain, STOPPING=1")
        check(src.session("m1")["state"] == "active", "the migration runs")
        os.kill(pid, signal.SIGTERM)
        msgs = notifications(ns, 0.5)
        check("STOPPING=1" in msgs, "STOPPING=1")
        try:
            control(ctl_path, "session-incoming", id="late",
                    qemu="unix:" + d.join("x.sock"))
            raise AssertionError("new session accepted while stopping")
        except relay.RelayError as e:
            check("shutting down" in e.desc, "new sessions refused: %s"
                  % e.desc)
        time.sleep(1.0)
        check(control(ctl_path, "query-sessions", id="m1")[0]["state"] ==
              "active", "the running migration is allowed to go on")
        # QEMU finishes: both sides close, the session completes.
        # (a "QEVM" stream's return path must end with QEMU's SHUT(0), or the
        # relays report the migration failed)
        shut = b"\x00\x01\x00\x04\x00\x00\x00\x00"
        qemu_src.shutdown(socket.SHUT_WR)
        qemu_dst.sendall(shut)
        qemu_dst.shutdown(socket.SHUT_WR)
        check(qemu_src.recv(100) == shut, "return path delivered")
        qemu_dst.close()
        qemu_src.close()
        st = src.wait_state("m1", "completed", timeout=10)
        check(st["state"] == "completed", "the migration completed during "
              "the drain")
        t0 = time.monotonic()
        _, status = os.waitpid(pid, 0)
        check(os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0 and
              time.monotonic() - t0 < 5,
              "exit status 0 once nothing runs, well before the drain limit")
        log.close()
    relay.log("PASS")


if __name__ == "__main__":
    main()
