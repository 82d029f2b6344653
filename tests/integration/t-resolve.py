#!/usr/bin/env python3
"""t-resolve.py - peer relays given by name: lookups off the event loop.

The source relay S runs in a private mount namespace (unshare -m) whose
/etc/hosts names the destination "mr-dual" with ::1 first and 127.0.0.1
second, and whose /etc/resolv.conf points at 127.0.0.77:53, where this test
reads DNS queries and never answers them.  The destination relay D listens
on 127.0.0.1 only.  Checked:

- a session to mr-dual:PORT comes up (the refused ::1 attempt goes on to
  127.0.0.1) and carries a stream byte-exact, on 4 channels;
- while a lookup of a name only DNS could answer hangs (the query is seen
  at the silent server), the daemon answers control commands at once and
  a second session to mr-dual comes up and completes;
- the hanging lookup ends as PeerUnreachable naming the peer and the
  resolver's reason;
- a session cancelled and removed while its lookup still hangs leaves
  nothing behind: the late answer is dropped, the daemon keeps working;
- on S, a listen URI tcp:NAME:PORT likewise (one that resolves is where
  the fake source QEMU connects; one whose lookup hangs fails the
  session as InvalidArgument, S answering meanwhile);
- on D, a destination QEMU URI tcp:NAME:PORT is looked up the same way:
  mr-dual carries a stream (again past the refused ::1), a name whose
  lookup hangs leaves D
  answering and then fails its session, naming the URI and the reason.

Both relays run in the namespace (the same hosts and resolv.conf).

Skips (77) without root, unshare or mount namespaces.
"""

import os
import shutil
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))
import relay                                            # noqa: E402
import fakeqemu                                         # noqa: E402
from relay import check                                 # noqa: E402

DNS_ADDR = "127.0.0.77"
DNS_TIMEOUT = 3          # resolv.conf "options timeout:3 attempts:1"


class NsRelay(relay.Relay):
    """A relay whose /etc/hosts and /etc/resolv.conf are the test's."""

    def __init__(self, workdir, name, hosts, resolv, **kw):
        super().__init__(workdir, name, **kw)
        self.hosts, self.resolv = hosts, resolv

    def argv(self):
        script = ('mount --bind "$1" /etc/hosts && '
                  'mount --bind "$2" /etc/resolv.conf && shift 2 && '
                  'exec "$@"')
        return (["unshare", "-m", "--propagation", "private", "sh", "-c",
                 script, "sh", self.hosts, self.resolv] + super().argv())


class SilentDns:
    """Reads DNS queries on DNS_ADDR:53 and never answers."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((DNS_ADDR, 53))
        self.sock.settimeout(0.2)
        self.names = []
        self.stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop:
            try:
                data, _ = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            self.names.append(self._qname(data))

    @staticmethod
    def _qname(data):
        labels, i = [], 12
        while i < len(data) and data[i] != 0:
            n = data[i]
            labels.append(data[i + 1:i + 1 + n].decode("ascii", "replace"))
            i += 1 + n
        return ".".join(labels)

    def close(self):
        self.stop = True
        self.thread.join(2)
        self.sock.close()


def prerequisites(d):
    if os.geteuid() != 0:
        relay.skip("needs root (mount namespace for a private /etc/hosts)")
    if shutil.which("unshare") is None:
        relay.skip("unshare (util-linux) is not installed")
    if not (os.path.exists("/etc/hosts") and
            os.path.exists("/etc/resolv.conf")):
        relay.skip("/etc/hosts or /etc/resolv.conf is missing")
    r = subprocess.run(["unshare", "-m", "--propagation", "private", "sh",
                        "-c", 'mount --bind "$1" /etc/hosts', "sh",
                        d.join("hosts")], capture_output=True, text=True)
    if r.returncode != 0:
        relay.skip("cannot bind-mount in a mount namespace: %s"
                   % r.stderr.strip())


def outgoing_in_background(d, S, sid, peer, listen=None):
    """session-outgoing in a thread (it answers only once the link is up
    or failed); returns the thread and a dict that gets "ok" or "err" and
    "secs"."""
    box = {}

    def run():
        t0 = time.monotonic()
        try:
            box["ok"] = S.cmd("session-outgoing", id=sid, peer=peer,
                              listen=listen or
                              "unix:" + d.join(sid + ".sock"),
                              timeout=30)
        except relay.RelayError as e:
            box["err"] = e
        box["secs"] = time.monotonic() - t0

    t = threading.Thread(target=run)
    t.start()
    return t, box


def wait_query(dns, name, since=0):
    """Wait until the silent DNS server has seen a query for name."""
    deadline = time.monotonic() + 5
    while name not in dns.names[since:]:
        if time.monotonic() > deadline:
            raise AssertionError("no DNS query for %s (seen %s)"
                                 % (name, dns.names))
        time.sleep(0.02)


def transfer(d, S, D, sid, host, port, channels, qemu_host=None,
             listen_host=None):
    """One session to host:port carrying one stream; checks byte-exact.
    With qemu_host, D reaches the fake destination QEMU at
    tcp:qemu_host:PORT, else on a unix socket; with listen_host, S listens
    for the fake source QEMU on tcp:listen_host:PORT (a name for
    127.0.0.1)."""
    plans = [fakeqemu.Plan(4 << 20, 64 << 10, seed=7)]
    if qemu_host is None:
        dst = fakeqemu.FakeDestination("unix:" + d.join(sid + "-dst.sock"),
                                       plans, timeout=60)
        qemu = dst.uri
    else:
        dst = fakeqemu.FakeDestination("tcp:127.0.0.1:0", plans, timeout=60)
        qemu = "tcp:%s:%s" % (qemu_host, dst.uri.rsplit(":", 1)[1])
    D.cmd("session-incoming", id=sid, qemu=qemu)
    listen = connect = "unix:" + d.join(sid + "-src.sock")
    if listen_host is not None:
        lport = relay.free_port()
        listen = "tcp:%s:%d" % (listen_host, lport)
        connect = "tcp:127.0.0.1:%d" % lport
    s = S.cmd("session-outgoing", id=sid, peer="%s:%s" % (host, port),
              listen=listen, channels=channels)
    check(s["state"] == "ready" and s.get("channels") == channels,
          "%s: session to %s:%s ready with %d channels" % (sid, host, port,
                                                           channels))
    src = fakeqemu.FakeSource(connect, plans, timeout=60).start()
    errs = src.join() + dst.join()
    errs += fakeqemu.compare(src, dst)
    check(not errs, "%s: stream byte-exact through the relays (%s)"
          % (sid, errs or "no problems"))
    for r in (S, D):
        r.wait_state(sid, "completed", timeout=30)
    dst.close()
    S.cmd("session-remove", id=sid)
    D.cmd("session-remove", id=sid)


def main():
    relay.test_timeout(120)
    with relay.TempDir(prefix="mr-resolve-") as d:
        with open(d.join("hosts"), "w") as f:
            f.write("127.0.0.1\tlocalhost mr-v4\n::1\tmr-dual\n"
                    "127.0.0.1\tmr-dual\n")
        with open(d.join("resolv.conf"), "w") as f:
            f.write("nameserver %s\noptions timeout:%d attempts:1\n"
                    % (DNS_ADDR, DNS_TIMEOUT))
        prerequisites(d)
        try:
            dns = SilentDns()
        except OSError as e:
            relay.skip("cannot bind %s:53 for the silent DNS server: %s"
                       % (DNS_ADDR, e))

        D = NsRelay(d, "dst", d.join("hosts"), d.join("resolv.conf"),
                    listen="127.0.0.1:0")
        D.start()
        port = D.peer_addr().rsplit(":", 1)[1]
        S = NsRelay(d, "src", d.join("hosts"), d.join("resolv.conf"),
                    listen=None)
        S.start()

        relay.log("== a name with a refused address first")
        transfer(d, S, D, "dual", "mr-dual", port, 4)
        with open(S.log_path, errors="replace") as f:
            text = f.read()
        check("looking up mr-dual" in text,
              "the name was looked up off the event loop")
        check("trying the next address" in text,
              "the refused ::1 attempt went on to 127.0.0.1")

        relay.log("== a lookup that hangs does not stop the daemon")
        D.cmd("session-incoming", id="slow",
              qemu="unix:" + d.join("slow-dst.sock"))
        t, answer = outgoing_in_background(d, S, "slow",
                                           "mr-nowhere.test:%s" % port)
        wait_query(dns, "mr-nowhere.test")
        relay.log("DNS queries seen: %s", sorted(set(dns.names)))
        worst = 0.0
        for _ in range(10):
            t0 = time.monotonic()
            S.cmd("query-daemon")
            worst = max(worst, time.monotonic() - t0)
        check(worst < 0.5, "query-daemon answers during the lookup "
              "(slowest of 10: %.3f s)" % worst)
        check(S.session("slow")["state"] == "connecting",
              "the looking-up session is 'connecting'")
        transfer(d, S, D, "during", "mr-dual", port, 2)
        check(t.is_alive(), "the lookup was still hanging meanwhile")
        t.join(30)
        err = answer.get("err")
        check(err is not None and err.cls == "PeerUnreachable" and
              "mr-nowhere.test" in err.desc,
              "the hanging lookup ends as PeerUnreachable after %.1f s: %s"
              % (answer.get("secs", -1), err and err.desc))
        S.cmd("session-remove", id="slow")
        D.cmd("session-cancel", id="slow")
        D.cmd("session-remove", id="slow")

        relay.log("== cancel and remove while the lookup hangs")
        n0 = len(dns.names)
        t, box = outgoing_in_background(d, S, "doomed",
                                        "mr-gone.test:%s" % port)
        wait_query(dns, "mr-gone.test", n0)
        S.cmd("session-cancel", id="doomed")
        t.join(10)
        check(box.get("err") is not None,
              "session-outgoing of the cancelled session got an error: %s"
              % (box.get("err") and box["err"].desc))
        S.cmd("session-remove", id="doomed")
        time.sleep(DNS_TIMEOUT + 1.5)       # the lookup thread answers late
        check(S.is_running() and S.cmd("query-daemon")["sessions"] == 0,
              "the late answer of a removed session's lookup is dropped")
        transfer(d, S, D, "after", "mr-dual", port, 1)

        relay.log("== the destination QEMU given by name")
        transfer(d, S, D, "qname", "mr-dual", port, 2, qemu_host="mr-dual")
        with open(D.log_path, errors="replace") as f:
            text = f.read()
        check("looking up mr-dual" in text and
              "trying the next address of tcp:mr-dual:" in text,
              "D looked the QEMU host up and went on from the refused ::1")
        n0 = len(dns.names)
        s = D.cmd("session-incoming", id="qslow",
                  qemu="tcp:mr-qemu-nowhere.test:4444")
        check(s["state"] == "waiting", "session-incoming answers at once "
              "while its QEMU host is looked up")
        wait_query(dns, "mr-qemu-nowhere.test", n0)
        t0 = time.monotonic()
        D.cmd("query-daemon")
        check(time.monotonic() - t0 < 0.5,
              "D answers control commands during the lookup")
        deadline = time.monotonic() + DNS_TIMEOUT + 10
        while D.session("qslow")["state"] != "failed" and \
                time.monotonic() < deadline:
            time.sleep(0.1)
        s = D.session("qslow")
        check(s["state"] == "failed" and "mr-qemu-nowhere.test" in
              s.get("error", {}).get("desc", ""),
              "a QEMU host that cannot be looked up fails the session: %s"
              % s.get("error"))
        D.cmd("session-remove", id="qslow")

        relay.log("== the source QEMU's listen address given by name")
        transfer(d, S, D, "lname", "mr-dual", port, 1, listen_host="mr-v4")
        D.cmd("session-incoming", id="lslow",
              qemu="unix:" + d.join("lslow-dst.sock"))
        n0 = len(dns.names)
        t, box = outgoing_in_background(
            d, S, "lslow", "mr-dual:%s" % port,
            listen="tcp:mr-listen-nowhere.test:%d" % relay.free_port())
        wait_query(dns, "mr-listen-nowhere.test", n0)
        t0 = time.monotonic()
        S.cmd("query-daemon")
        check(time.monotonic() - t0 < 0.5,
              "S answers control commands during the listen lookup")
        t.join(30)
        err = box.get("err")
        check(err is not None and err.cls == "InvalidArgument" and
              "mr-listen-nowhere.test" in err.desc,
              "a listen host that cannot be looked up fails the session: %s"
              % (err and err.desc))
        S.cmd("session-remove", id="lslow")
        D.cmd("session-cancel", id="lslow")
        D.cmd("session-remove", id="lslow")

        dns.close()
        S.stop()
        D.stop()
        check(not S.exited_abnormally() and not D.exited_abnormally(),
              "both relays exited cleanly")
    relay.log("PASS")


if __name__ == "__main__":
    main()
