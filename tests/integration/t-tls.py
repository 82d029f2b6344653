#!/usr/bin/env python3
"""t-tls.py - the TLS test matrix (issue 3, reliability-tests.md §4).

A throw-away PKI (tests/lib/pki.py) and two long-lived good relays: GS
(connecting side) and GD (accepting side), both with server and client
certificates and a CRL.  Every case runs a link on loopback (dialling
127.0.0.1) between a good relay and a relay or OpenSSL tool with one thing
wrong, while a fake destination QEMU (a unix listening socket) waits
behind the accepting relay.

Valid pair: random bytes both ways through a stream arrive byte-exact
(SHA-256), the session features include "tls", and the relay link, seen
through a recording TCP proxy, is TLS (no payload in clear).

Failure cases: untrusted CA (server certificate; client certificate),
expired server / client certificate, not yet valid server / client
certificate, SAN mismatch while the CN matches, wrong EKU (server
certificate for clientAuth only; client certificate for serverAuth only),
no client certificate (raw `openssl s_client`; a relay without
client-cert.pem), TLS 1.2-only peer (`openssl s_server -tls1_2` as the
accepting relay; `openssl s_client -tls1_2` against GD), plaintext vs TLS
in both directions, revoked client certificate (ca-crl.pem).  For each:
session-outgoing fails with class TLSFailed and a description naming the
reason, the accepting side logs a warning naming the reason, the fake
destination QEMU receives no connection, the destination session is still
"waiting", query-daemon answers, both relays are back to their file
descriptor counts, nothing listens at the source's listen URI, and a
following correct session completes.

Startup refusals: no credentials and no --insecure-plaintext; --tls-dir
with --insecure-plaintext; a world-readable key; a broken certificate; a
missing ca-cert.pem; a key that does not match; a broken CRL; an empty
tls-dir.  Each exits 1 with a message naming the problem, before opening
the control socket.

All cases run even when one fails; the failures are listed at the end.
"""

import hashlib
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))
import relay                                            # noqa: E402
import pki                                              # noqa: E402

HOST = "127.0.0.1"
DAY = pki.DAY
MAGIC = b"\x89MGRLY\r\n"
FAIL_FAST_S = 5          # a TLS failure must not wait for a timeout

failures = []
_auth_args = None


def auth_args():
    """["--no-auth"] when migrelayd has SCRAM (this test is about TLS: the
    accepting relays rely on client certificates alone)."""
    global _auth_args
    if _auth_args is None:
        p = subprocess.run([relay.binary("migrelayd"), "--help"],
                           capture_output=True, timeout=10)
        _auth_args = ["--no-auth"] if b"--no-auth" in p.stdout + p.stderr \
            else []
    return list(_auth_args)


class CaseFailed(AssertionError):
    pass


def check(cond, msg):
    if not cond:
        raise CaseFailed(msg)


def expect(cond, msg):
    """A check whose failure does not stop the case: the remaining checks
    (accepting side, leftovers, follow-up session) still run."""
    if not cond:
        relay.log("  problem: %s", msg)
        soft_problems.append(msg)


soft_problems = []


def run_case(name, fn, *args):
    relay.log("=== %s", name)
    t0 = time.monotonic()
    del soft_problems[:]
    try:
        fn(*args)
    except (AssertionError, relay.RelayError, OSError, RuntimeError,
            EOFError, ValueError, subprocess.SubprocessError) as e:
        soft_problems.append(str(e))
    if soft_problems:
        for p in soft_problems:
            failures.append("%s: %s" % (name, p))
        relay.log("FAIL %s: %s", name, "; ".join(soft_problems))
        return
    relay.log("ok %s (%.2f s)", name, time.monotonic() - t0)


# ----------------------------------------------------------------------
# Fake QEMUs and helpers

class FakeDst:
    """A destination QEMU: a unix listening socket that counts connections.

    Each accepted connection is served: the bytes in `reply` are written
    while the incoming bytes are read to EOF (SHA-256 kept).
    """

    def __init__(self, path, reply=b""):
        self.path = path
        self.uri = "unix:" + path
        self.reply = reply
        self.accepted = 0
        self.received = []          # (length, sha256) per connection
        self.errors = []
        self.done = threading.Event()
        if os.path.exists(path):
            os.unlink(path)
        self.lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.lsock.bind(path)
        self.lsock.listen(8)
        self.lsock.settimeout(0.1)
        self._stop = False
        self._thread = threading.Thread(target=self._loop, daemon=True,
                                        name="fakedst")
        self._thread.start()

    def _loop(self):
        while not self._stop:
            try:
                s, _ = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._serve, args=(s,),
                             daemon=True).start()

    def _serve(self, s):
        try:
            s.settimeout(30)
            w = threading.Thread(target=_send_all, args=(s, self.reply),
                                 daemon=True)
            w.start()
            self.received.append(_read_all(s))
            w.join(30)
        except OSError as e:
            self.errors.append(repr(e))
        finally:
            s.close()
            self.done.set()

    def close(self):
        self._stop = True
        self._thread.join(2)
        self.lsock.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass


def _send_all(s, data):
    try:
        mv = memoryview(data)
        for off in range(0, len(data), 65536):
            s.sendall(mv[off:off + 65536])
        s.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def _read_all(s):
    h = hashlib.sha256()
    n = 0
    while True:
        b = s.recv(65536)
        if not b:
            return n, h.hexdigest()
        h.update(b)
        n += len(b)


def digest(data):
    return len(data), hashlib.sha256(data).hexdigest()


def fake_source(listen_path, data):
    """Connect to the source relay, send data, read to EOF; returns
    (length, sha256) of what came back."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30)
    try:
        s.connect(listen_path)
        w = threading.Thread(target=_send_all, args=(s, data), daemon=True)
        w.start()
        got = _read_all(s)
        w.join(30)
        return got
    finally:
        s.close()


class Proxy:
    """A TCP forwarder that records what passes in each direction."""

    def __init__(self, target):
        self.target = target
        self.lsock = socket.socket()
        self.lsock.bind((HOST, 0))
        self.lsock.listen(16)
        self.port = self.lsock.getsockname()[1]
        self.c2s = []
        self.s2c = []
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self):
        while True:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            try:
                u = socket.create_connection(self.target, timeout=10)
            except OSError:
                c.close()
                continue
            u.settimeout(None)
            a, b = bytearray(), bytearray()
            self.c2s.append(a)
            self.s2c.append(b)
            for src, dst, rec in ((c, u, a), (u, c, b)):
                threading.Thread(target=self._pump, args=(src, dst, rec),
                                 daemon=True).start()

    @staticmethod
    def _pump(src, dst, rec):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    dst.shutdown(socket.SHUT_WR)
                    return
                if len(rec) < 32 << 20:
                    rec += data
                dst.sendall(data)
        except OSError:
            try:
                dst.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self):
        self.lsock.close()


def settled_fds(r):
    """The fd count once transient control connections are gone."""
    time.sleep(0.05)
    last = r.fd_count()
    for _ in range(20):
        time.sleep(0.05)
        n = r.fd_count()
        if n == last:
            return n
        last = n
    return last


class LogMark:
    """Lines a relay logs from now on."""

    def __init__(self, r):
        self.r = r
        self.off = os.path.getsize(r.log_path)

    def text(self):
        with open(self.r.log_path, "rb") as f:
            f.seek(self.off)
            return f.read().decode("utf-8", "replace")

    def wait_warning(self, patterns, timeout=5):
        """A warning line matching every regex in patterns (case
        insensitive); returns it, or raises with the new log text."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.text().splitlines():
                if not re.search(r"(warning: |^<4>)", line):
                    continue
                if all(re.search(p, line, re.I) for p in patterns):
                    return line
            if time.monotonic() > deadline:
                raise CaseFailed("%s logged no warning matching %s; new "
                                 "log lines:\n%s" % (
                                     self.r.name, patterns,
                                     _indent(self.text()[-3000:])))
            time.sleep(0.05)


def _indent(text):
    return "\n".join("    " + line for line in text.splitlines())


def not_listening(uri):
    """True when nothing accepts connections at a unix: URI."""
    path = uri[len("unix:"):]
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(2)
    try:
        s.connect(path)
    except OSError:
        return True
    finally:
        s.close()
    return False


# ----------------------------------------------------------------------
# The matrix

class Matrix:
    def __init__(self, d):
        self.d = d
        self.n = 0
        self.ca = pki.CA(d.join("ca"))
        self.other = pki.CA(d.join("other-ca"), cn="some other CA")
        ca, other = self.ca, self.other
        ip = ["IP:" + HOST, "DNS:localhost"]
        c = {}
        c["gs-server"] = ca.issue("gs-server", cn="gs", san=ip, eku="server")
        c["gs-client"] = ca.issue("gs-client", cn="gs", eku="client")
        c["gd-server"] = ca.issue("gd-server", cn="gd", san=ip, eku="server")
        c["gd-client"] = ca.issue("gd-client", cn="gd", eku="client")
        c["untrusted-server"] = other.issue("untrusted-server", cn=HOST,
                                            san=ip, eku="server")
        c["untrusted-client"] = other.issue("untrusted-client", cn="bs",
                                            eku="client")
        c["expired-server"] = ca.issue("expired-server", cn=HOST, san=ip,
                                       eku="server", not_before=-30 * DAY,
                                       not_after=-DAY)
        c["expired-client"] = ca.issue("expired-client", cn="bs",
                                       eku="client", not_before=-30 * DAY,
                                       not_after=-DAY)
        c["future-server"] = ca.issue("future-server", cn=HOST, san=ip,
                                      eku="server", not_before=DAY,
                                      not_after=30 * DAY)
        c["future-client"] = ca.issue("future-client", cn="bs",
                                      eku="client", not_before=DAY,
                                      not_after=30 * DAY)
        c["sanmismatch-server"] = ca.issue(
            "sanmismatch-server", cn=HOST, san=["DNS:elsewhere.invalid"],
            eku="server")
        c["eku-server"] = ca.issue("eku-server", cn=HOST, san=ip,
                                   eku="client")
        c["eku-client"] = ca.issue("eku-client", cn="bs", eku="server")
        c["revoked-client"] = ca.issue("revoked-client", cn="bs",
                                       eku="client")
        ca.revoke(c["revoked-client"])
        self.certs = c
        self.gs_dir = pki.relay_dir(d.join("tls-gs"), ca, c["gs-server"],
                                    c["gs-client"], crl=True)
        self.gd_dir = pki.relay_dir(d.join("tls-gd"), ca, c["gd-server"],
                                    c["gd-client"], crl=True)
        self.GS = relay.Relay(d, "GS", tls_dir=self.gs_dir,
                              extra_args=auth_args()).start()
        self.GD = relay.Relay(d, "GD", tls_dir=self.gd_dir,
                              extra_args=auth_args()).start()
        self.others = []

    def sid(self, tag):
        self.n += 1
        return "%s-%d" % (tag, self.n)

    def tls_dir(self, name, server=None, client=None, crl=False):
        return pki.relay_dir(self.d.join("tls-" + name), self.ca,
                             server and self.certs[server],
                             client and self.certs[client], crl=crl)

    def start(self, name, **kw):
        r = relay.Relay(self.d, name, extra_args=auth_args(), **kw).start()
        self.others.append(r)
        return r

    def stop(self, r):
        rc = r.stop()
        check(rc in (0, -15), "%s exited with status %s" % (r.name, rc))

    # -- the good path ------------------------------------------------

    def good_session(self, sid, S=None, D=None, dst=None, s2d=None,
                     d2s=None, peer=None, channels=2):
        """S -> D session sid carrying s2d/d2s bytes through one stream;
        returns the source session object at completion.  dst: a FakeDst
        already registered with D under sid (else one is made)."""
        S = S or self.GS
        D = D or self.GD
        s2d = os.urandom(200 * 1024 + 17) if s2d is None else s2d
        d2s = os.urandom(70 * 1024 + 5) if d2s is None else d2s
        own = dst is None
        if own:
            dst = FakeDst(self.d.join(sid + "-q.sock"), d2s)
            D.cmd("session-incoming", id=sid, qemu=dst.uri)
        else:
            dst.reply = d2s
        listen = "unix:" + self.d.join(sid + "-l.sock")
        try:
            s = S.cmd("session-outgoing", id=sid, peer=peer or
                      D.peer_addr(), listen=listen, channels=channels)
            check(s["state"] == "ready", "session-outgoing %s: %s" % (
                sid, s))
            back = fake_source(listen[len("unix:"):], s2d)
            check(dst.done.wait(30), "destination QEMU stream not done")
            check(dst.accepted == 1, "destination QEMU got %d connections"
                  % dst.accepted)
            check(dst.received == [digest(s2d)],
                  "source-to-destination bytes differ: sent %s, got %s" % (
                      digest(s2d), dst.received))
            check(back == digest(d2s),
                  "destination-to-source bytes differ: sent %s, got %s" % (
                      digest(d2s), back))
            out = {}
            for r in (S, D):
                o = r.wait_state(sid, "completed", timeout=20)
                check(o["bytes"] == {"source-to-destination": len(s2d),
                                     "destination-to-source": len(d2s)},
                      "%s %s: bytes %s" % (r.name, sid, o["bytes"]))
                check("tls" in o.get("features", []),
                      "%s %s: features %s lack tls" % (
                          r.name, sid, o.get("features")))
                out[r.name] = o
            for r in (S, D):
                r.cmd("session-remove", id=sid)
            return out[S.name]
        finally:
            dst.close()

    def case_valid_pair(self):
        sid = self.sid("valid")
        proxy = Proxy((HOST, int(self.GD.peer_addr().rsplit(":", 1)[1])))
        s2d = os.urandom(3 * 1024 * 1024 + 123)
        d2s = os.urandom(512 * 1024 + 7)
        try:
            o = self.good_session(sid, s2d=s2d, d2s=d2s,
                                  peer="%s:%d" % (HOST, proxy.port),
                                  channels=2)
        finally:
            proxy.close()
        relay.log("valid pair: features %s, link %s", o.get("features"),
                  o.get("link-bytes"))
        check(proxy.c2s, "nothing went through the proxy")
        for i, (a, b) in enumerate(zip(proxy.c2s, proxy.s2c)):
            check(bytes(a[:2]) == b"\x16\x03",
                  "link connection %d does not start with a TLS handshake "
                  "record: %r" % (i, bytes(a[:16])))
            check(MAGIC not in a and MAGIC not in b,
                  "the migrelay preface is visible on link connection %d"
                  % i)
        wire_c2s = b"".join(bytes(a) for a in proxy.c2s)
        wire_s2c = b"".join(bytes(b) for b in proxy.s2c)
        check(len(wire_c2s) >= len(s2d), "only %d link bytes for %d payload"
              " bytes" % (len(wire_c2s), len(s2d)))
        for off in range(0, len(s2d) - 64, len(s2d) // 16):
            check(s2d[off:off + 32] not in wire_c2s,
                  "payload visible in clear on the link at offset %d" % off)
        for off in range(0, len(d2s) - 64, len(d2s) // 8):
            check(d2s[off:off + 32] not in wire_s2c,
                  "payload visible in clear on the link (back) at %d" % off)

    # -- failure plumbing ----------------------------------------------

    def expect_failure(self, S, D, sid, src_patterns, dst_patterns,
                       src_class="TLSFailed", peer=None, dst_session=True):
        """S dials D (or peer); expects session-outgoing to fail.

        src_patterns: regexes the error description must match;
        dst_patterns: regexes of the warning D must log (None: D is not a
        migrelayd).  Then checks that no state is left behind and returns
        the FakeDst registered on D (with plans for a follow-up session).
        """
        dst = None
        if D is not None and dst_session:
            dst = FakeDst(self.d.join(sid + "-q.sock"))
            s = D.cmd("session-incoming", id=sid, qemu=dst.uri)
            check(s["state"] == "waiting", "session-incoming: %s" % s)
        fds_s = settled_fds(S)
        fds_d = settled_fds(D) if D is not None else None
        mark_d = LogMark(D) if D is not None else None
        listen = "unix:" + self.d.join(sid + "-l.sock")
        t0 = time.monotonic()
        err = None
        try:
            S.cmd("session-outgoing", id=sid, peer=peer or D.peer_addr(),
                  listen=listen, channels=2)
        except relay.RelayError as e:
            err = e
        took = time.monotonic() - t0
        check(err is not None, "session-outgoing %s succeeded, wanted %s"
              % (sid, src_class))
        relay.log("  source: %s (%.2f s)", err, took)
        expect(err.cls == src_class, "source error class %s, wanted %s: %s"
               % (err.cls, src_class, err.desc))
        for p in src_patterns:
            expect(re.search(p, err.desc, re.I),
                   "source error %r does not match /%s/" % (err.desc, p))
        check(took < FAIL_FAST_S, "session-outgoing took %.1f s to fail"
              % took)
        if dst_patterns is not None:
            line = mark_d.wait_warning(dst_patterns)
            relay.log("  accepting side: %s", line.strip())
        # The source: the failed session stays until removed, with the
        # same error; nothing listens for the source QEMU.
        o = S.session(sid)
        check(o["state"] == "failed" and o.get("error", {}).get("class")
              == err.cls, "source session after the failure: %s" % o)
        check(not_listening(listen), "something still listens at %s"
              % listen)
        S.cmd("session-remove", id=sid)
        # The accepting side: session untouched, daemon fine, fds back.
        if D is not None:
            if dst is not None:
                o = D.session(sid)
                check(o["state"] == "waiting", "destination session after "
                      "the failure: %s" % o)
            q = D.cmd("query-daemon")
            check(isinstance(q.get("sessions"), int), "query-daemon: %s" % q)
            n = D.wait_fd_count(fds_d)
            check(n <= fds_d, "%s has %d fds, %d before the failed link"
                  % (D.name, n, fds_d))
        n = S.wait_fd_count(fds_s)
        check(n <= fds_s, "%s has %d fds, %d before the failed link"
              % (S.name, n, fds_s))
        for r in (S, D):
            if r is not None:
                check(r.is_running(), "%s is not running" % r.name)
        if dst is not None:
            time.sleep(0.2)
            check(dst.accepted == 0, "the destination QEMU got %d "
                  "connection(s)" % dst.accepted)
        return dst

    def bad_source(self, tag, client, src_patterns, dst_patterns,
                   server=None):
        """A connecting relay with a bad client certificate -> GD."""
        sid = self.sid(tag)
        BS = self.start("bs-" + tag, listen=None,
                        tls_dir=self.tls_dir("bs-" + tag, server=server,
                                             client=client))
        dst = self.expect_failure(BS, self.GD, sid, src_patterns,
                                  dst_patterns)
        self.stop(BS)
        # GD's session is still waiting: a correct source takes it over.
        self.good_session(sid, dst=dst)

    def bad_dest(self, tag, server, src_patterns, dst_patterns):
        """GS -> an accepting relay with a bad server certificate."""
        sid = self.sid(tag)
        BD = self.start("bd-" + tag,
                        tls_dir=self.tls_dir("bd-" + tag, server=server))
        dst = self.expect_failure(self.GS, BD, sid, src_patterns,
                                  dst_patterns)
        BD.cmd("session-cancel", id=sid)
        self.stop(BD)
        dst.close()
        self.good_session(self.sid(tag + "-after"))

    # -- the cases -----------------------------------------------------

    # What the accepting side reports when the connecting relay rejects
    # its certificate: the TLS alert the connecting relay sent.
    def case_untrusted_server(self):
        self.bad_dest("untrusted-srv", "untrusted-server",
                      [r"certificate verification failed",
                       r"unable to get local issuer certificate"],
                      [r"TLS", r"unknown ca"])

    def case_untrusted_client(self):
        self.bad_source("untrusted-cli", "untrusted-client",
                        [r"TLS", r"unknown ca|certificate"],
                        [r"certificate verification failed",
                         r"unable to get local issuer certificate"])

    def case_expired_server(self):
        self.bad_dest("expired-srv", "expired-server",
                      [r"certificate verification failed",
                       r"certificate has expired"],
                      [r"TLS", r"certificate expired"])

    def case_expired_client(self):
        self.bad_source("expired-cli", "expired-client",
                        [r"TLS", r"certificate expired"],
                        [r"certificate verification failed",
                         r"certificate has expired"])

    def case_future_server(self):
        self.bad_dest("future-srv", "future-server",
                      [r"certificate verification failed",
                       r"certificate is not yet valid"],
                      [r"TLS", r"bad certificate|certificate"])

    def case_future_client(self):
        self.bad_source("future-cli", "future-client",
                        [r"TLS", r"bad certificate|certificate"],
                        [r"certificate verification failed",
                         r"certificate is not yet valid"])

    def case_san_mismatch(self):
        # CN=127.0.0.1 (what GS dials), SAN DNS:elsewhere.invalid only.
        self.bad_dest("san", "sanmismatch-server",
                      [r"certificate verification failed",
                       r"IP address mismatch"],
                      [r"TLS", r"certificate"])

    def case_eku_server(self):
        self.bad_dest("eku-srv", "eku-server",
                      [r"certificate verification failed",
                       r"unsuitable certificate purpose"],
                      [r"TLS", r"unsupported certificate"])

    def case_eku_client(self):
        self.bad_source("eku-cli", "eku-client",
                        [r"TLS", r"unsupported certificate"],
                        [r"certificate verification failed",
                         r"unsuitable certificate purpose"])

    def case_revoked_client(self):
        self.bad_source("revoked-cli", "revoked-client",
                        [r"TLS", r"certificate revoked"],
                        [r"certificate verification failed",
                         r"certificate revoked"])

    def case_no_client_cert_relay(self):
        # A tls-dir with a server certificate only: the relay can accept
        # links but must refuse to dial with a clear message.
        self.bad_source("nocert", None,
                        [r"client-cert\.pem"], None,
                        server="gs-server")

    def case_no_client_cert_raw(self):
        out = self.raw_client("nocert-raw", ["-tls1_3"],
                              [r"TLS", r"did not return a certificate"])
        check(re.search(r"certificate required", out, re.I),
              "openssl s_client output does not show the 'certificate "
              "required' alert:\n%s" % _indent(out[-2000:]))

    def case_tls12_client(self):
        out = self.raw_client("tls12-raw", ["-tls1_2"],
                              [r"TLS 1\.3"], client_cert=True)
        check(re.search(r"protocol version|alert", out, re.I),
              "openssl s_client -tls1_2 output shows no protocol alert:\n%s"
              % _indent(out[-2000:]))

    def raw_client(self, tag, opts, dst_patterns, client_cert=False):
        """openssl s_client against GD: refused, nothing leaks, GD fine."""
        sid = self.sid(tag)
        D = self.GD
        dst = FakeDst(self.d.join(sid + "-q.sock"))
        D.cmd("session-incoming", id=sid, qemu=dst.uri)
        fds = settled_fds(D)
        mark = LogMark(D)
        port = D.peer_addr().rsplit(":", 1)[1]
        argv = ["openssl", "s_client", "-connect", "%s:%s" % (HOST, port),
                "-CAfile", self.ca.cert, "-verify_return_error",
                "-verify_ip", HOST, "-ign_eof"] + opts
        if client_cert:
            c = self.certs["gs-client"]
            argv += ["-cert", c.cert, "-key", c.key]
        p = subprocess.run(argv, stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=15)
        out = p.stdout.decode("latin-1") + p.stderr.decode("latin-1")
        relay.log("  openssl s_client %s: status %d", " ".join(opts),
                  p.returncode)
        check(MAGIC.decode("latin-1") not in out and "MGRLY" not in out,
              "the relay greeted an unauthenticated client:\n%s" %
              _indent(out[-2000:]))
        line = mark.wait_warning(dst_patterns)
        relay.log("  accepting side: %s", line.strip())
        o = D.session(sid)
        check(o["state"] == "waiting", "session after the failure: %s" % o)
        D.cmd("query-daemon")
        n = D.wait_fd_count(fds)
        check(n <= fds, "GD has %d fds, %d before" % (n, fds))
        check(dst.accepted == 0, "the destination QEMU got a connection")
        self.good_session(sid, dst=dst)
        return out

    def case_tls12_server(self):
        # openssl s_server that only speaks TLS 1.2, as the accepting relay.
        sid = self.sid("tls12-srv")
        port = relay.free_port()
        c = self.certs["gd-server"]
        log_path = self.d.join("s_server-tls12.log")
        logf = open(log_path, "wb")
        p = subprocess.Popen(
            ["openssl", "s_server", "-accept", "%s:%d" % (HOST, port),
             "-tls1_2", "-cert", c.cert, "-key", c.key, "-CAfile",
             self.ca.cert, "-Verify", "1"],
            stdin=subprocess.PIPE, stdout=logf, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 10
            while b"ACCEPT" not in open(log_path, "rb").read():
                check(p.poll() is None and time.monotonic() < deadline,
                      "openssl s_server did not start")
                time.sleep(0.05)
            self.expect_failure(self.GS, None, sid, [r"TLS 1\.3"], None,
                                peer="%s:%d" % (HOST, port))
        finally:
            p.kill()
            p.wait()
            logf.close()
        out = open(log_path, "rb").read().decode("latin-1")
        relay.log("  s_server: %s", " | ".join(
            line for line in out.splitlines() if "error" in line.lower())
            [:300])
        self.good_session(self.sid("tls12-srv-after"))

    def case_plaintext_source(self):
        # A --insecure-plaintext relay dials GD (TLS).
        sid = self.sid("plain-src")
        PS = self.start("ps", listen=None)
        dst = self.expect_failure(
            PS, self.GD, sid,
            [r"TLS", r"insecure-plaintext"],
            [r"does not speak TLS", r"insecure-plaintext"])
        self.stop(PS)
        self.good_session(sid, dst=dst)

    def case_plaintext_dest(self):
        # GS (TLS) dials a --insecure-plaintext relay.
        sid = self.sid("plain-dst")
        PD = self.start("pd")
        dst = self.expect_failure(
            self.GS, PD, sid,
            [r"does not speak TLS", r"insecure-plaintext"],
            [r"speaks TLS", r"insecure-plaintext"])
        PD.cmd("session-cancel", id=sid)
        self.stop(PD)
        dst.close()
        self.good_session(self.sid("plain-dst-after"))

    def final_checks(self):
        for r in (self.GS, self.GD):
            q = r.cmd("query-daemon")
            check(q["sessions"] == 0, "%s: %d sessions left" % (
                r.name, q["sessions"]))
            check("tls" in q.get("features", []),
                  "%s: query-daemon features %s lack tls" % (
                      r.name, q.get("features")))


# ----------------------------------------------------------------------
# Startup refusals

def startup_refusals(d, m):
    ca, c = m.ca, m.certs
    base = d.join("startup")
    os.makedirs(base)

    def variant(name, mutate):
        path = pki.relay_dir(os.path.join(base, name), ca, c["gd-server"],
                             c["gd-client"], crl=True)
        mutate(path)
        return path

    def chmod(name, mode):
        return lambda p: os.chmod(os.path.join(p, name), mode)

    def write(name, data):
        def f(p):
            with open(os.path.join(p, name), "wb") as fh:
                fh.write(data)
        return f

    def remove(*names):
        def f(p):
            for n in names:
                os.unlink(os.path.join(p, n))
        return f

    def swap_key(p):
        shutil.copy(c["gs-server"].key, os.path.join(p, "server-key.pem"))
        os.chmod(os.path.join(p, "server-key.pem"), 0o600)

    broken_pem = (b"-----BEGIN CERTIFICATE-----\nMIIBbroken\n"
                  b"-----END CERTIFICATE-----\n")
    cases = [
        ("no credentials, no --insecure-plaintext", [],
         [r"no TLS credentials", r"--tls-dir", r"--insecure-plaintext"]),
        ("--tls-dir with --insecure-plaintext",
         ["--tls-dir", m.gd_dir, "--insecure-plaintext"],
         [r"--tls-dir", r"--insecure-plaintext"]),
        ("server key readable by others",
         ["--tls-dir", variant("rkey", chmod("server-key.pem", 0o644))],
         [r"server-key\.pem", r"readable by others"]),
        ("client key readable by others",
         ["--tls-dir", variant("rckey", chmod("client-key.pem", 0o604))],
         [r"client-key\.pem", r"readable by others"]),
        ("broken server certificate",
         ["--tls-dir", variant("bcert", write("server-cert.pem",
                                              broken_pem))],
         [r"server-cert\.pem"]),
        ("garbage client certificate",
         ["--tls-dir", variant("gcert", write("client-cert.pem",
                                              b"not a certificate\n"))],
         [r"client-cert\.pem"]),
        ("missing ca-cert.pem",
         ["--tls-dir", variant("noca", remove("ca-cert.pem"))],
         [r"ca-cert\.pem", r"missing"]),
        ("broken ca-cert.pem",
         ["--tls-dir", variant("bca", write("ca-cert.pem", broken_pem))],
         [r"ca-cert\.pem"]),
        ("missing server key",
         ["--tls-dir", variant("nokey", remove("server-key.pem"))],
         [r"server-key\.pem"]),
        ("key does not match the certificate",
         ["--tls-dir", variant("mism", swap_key)],
         [r"do not match|mismatch"]),
        ("broken ca-crl.pem",
         ["--tls-dir", variant("bcrl", write("ca-crl.pem",
                                             b"-----BEGIN X509 CRL-----\n"
                                             b"AAAA\n-----END X509 CRL"
                                             b"-----\n"))],
         [r"ca-crl\.pem"]),
        ("no certificate at all",
         ["--tls-dir", variant("empty", remove(
             "server-cert.pem", "server-key.pem", "client-cert.pem",
             "client-key.pem"))],
         [r"server-cert\.pem", r"client-cert\.pem"]),
        ("tls-dir does not exist",
         ["--tls-dir", os.path.join(base, "nonexistent")],
         [r"nonexistent"]),
    ]
    for i, (what, args, patterns) in enumerate(cases):
        def one(args=args, patterns=patterns, i=i):
            control = os.path.join(base, "c%d.sock" % i)
            argv = [relay.binary("migrelayd"), "--control", control,
                    "--listen", "127.0.0.1:0", "--log-level", "debug"] + \
                args + auth_args()
            try:
                p = subprocess.run(argv, stdin=subprocess.DEVNULL,
                                   capture_output=True, timeout=10)
            except subprocess.TimeoutExpired:
                raise CaseFailed("migrelayd %s did not exit within 10 s"
                                 % " ".join(args))
            err = p.stderr.decode(errors="replace")
            relay.log("  status %d: %s", p.returncode, err.strip()[:300])
            check(p.returncode == 1, "exit status %d, wanted 1; stderr: %s"
                  % (p.returncode, err))
            for pat in patterns:
                check(re.search(pat, err, re.I),
                      "stderr does not match /%s/: %r" % (pat, err))
            check(not os.path.exists(control),
                  "the control socket was created before the refusal")
        run_case("startup refusal: " + what, one)


def main():
    relay.test_timeout(115)
    pki.require_openssl()
    relay.binary("migrelayd")
    t0 = time.monotonic()
    with relay.TempDir(prefix="mr-tls-") as d:
        m = Matrix(d)
        relay.log("PKI and relays ready in %.1f s", time.monotonic() - t0)
        for name in ("valid_pair",
                     "untrusted_server", "untrusted_client",
                     "expired_server", "expired_client",
                     "future_server", "future_client",
                     "san_mismatch",
                     "eku_server", "eku_client",
                     "no_client_cert_raw", "no_client_cert_relay",
                     "tls12_server", "tls12_client",
                     "plaintext_source", "plaintext_dest",
                     "revoked_client"):
            run_case(name.replace("_", " "), getattr(m, "case_" + name))
        run_case("valid pair again at the end", m.case_valid_pair)
        run_case("no sessions left", m.final_checks)
        startup_refusals(d, m)
        relay.log("done in %.1f s", time.monotonic() - t0)
        if failures:
            print("\n%d case(s) failed:" % len(failures), file=sys.stderr)
            for f in failures:
                print("FAIL: " + f, file=sys.stderr)
            raise AssertionError("%d TLS case(s) failed" % len(failures))
    print("PASS: TLS matrix")


if __name__ == "__main__":
    main()
