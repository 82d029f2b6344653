#!/usr/bin/env python3
"""SCRAM-SHA-256 authentication and authorization between real relays.

TLS + SCRAM-SHA-256-PLUS works and carries a stream; a wrong password and an
unknown user fail in well under a second with the same AuthFailed answer; a
relay without a secret gets a clear error; peer-identity authorizes by SCRAM
user (or by certificate subject with --no-auth); a man in the middle that
terminates TLS with certificates the relays trust, and forwards the SCRAM
messages, is caught by channel binding; plaintext + SCRAM works; a peer
offering an absurd iteration count is refused at once.
"""
import hashlib
import os
import socket
import ssl
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))
import pki  # noqa: E402
import relay  # noqa: E402
from relay import check, write_private  # noqa: E402

PASSWORD = "correct horse battery staple"




def make_verifier(name, password):
    line = relay.make_verifier(name, password)
    check(line.startswith(name + ":SCRAM-SHA-256$4096:"),
          "--make-verifier prints a verifier line, no password")
    check(password not in line, "the verifier does not contain the password")
    return line


def fake_qemu(path):
    """A destination QEMU stand-in: accepts connections, hashes what comes."""
    ls = socket.socket(socket.AF_UNIX)
    ls.bind(path)
    ls.listen(8)
    got = []

    def run():
        while True:
            try:
                c, _ = ls.accept()
            except OSError:
                return
            h = hashlib.sha256()
            while True:
                b = c.recv(65536)
                if not b:
                    break
                h.update(b)
            got.append(h.hexdigest())
            c.shutdown(socket.SHUT_WR)
            c.close()
    threading.Thread(target=run, daemon=True).start()
    return ls, got


def carry(listen_path, data):
    s = socket.socket(socket.AF_UNIX)
    s.connect(listen_path)
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    while s.recv(65536):
        pass
    s.close()


def expect_error(fn, cls):
    t0 = time.monotonic()
    try:
        fn()
    except relay.RelayError as e:
        dt = time.monotonic() - t0
        check(e.cls == cls, "%s (%.3f s): %s" % (e.cls, dt, e.desc))
        return e, dt
    raise AssertionError("expected %s, got success" % cls)


class Mitm:
    """Terminates TLS from the source with a certificate the source trusts,
    opens its own TLS to the destination with a trusted client certificate,
    and copies bytes both ways, as an attacker holding such certificates
    could."""

    def __init__(self, mitm_dir, dst_addr):
        host, port = dst_addr.rsplit(":", 1)
        self.dst = (host, int(port))
        self.srv = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.srv.minimum_version = ssl.TLSVersion.TLSv1_3
        self.srv.load_cert_chain(os.path.join(mitm_dir, "server-cert.pem"),
                                 os.path.join(mitm_dir, "server-key.pem"))
        self.srv.load_verify_locations(os.path.join(mitm_dir, "ca-cert.pem"))
        self.srv.verify_mode = ssl.CERT_REQUIRED
        self.cli = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self.cli.minimum_version = ssl.TLSVersion.TLSv1_3
        self.cli.load_cert_chain(os.path.join(mitm_dir, "client-cert.pem"),
                                 os.path.join(mitm_dir, "client-key.pem"))
        self.cli.load_verify_locations(os.path.join(mitm_dir, "ca-cert.pem"))
        self.cli.check_hostname = False
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(8)
        self.addr = "127.0.0.1:%d" % self.ls.getsockname()[1]
        self.forwarded = 0
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            threading.Thread(target=self.handle, args=(c,),
                             daemon=True).start()

    def handle(self, c):
        try:
            a = self.srv.wrap_socket(c, server_side=True)
            b = self.cli.wrap_socket(socket.create_connection(self.dst))
        except (ssl.SSLError, OSError):
            c.close()
            return

        def pump(x, y):
            try:
                while True:
                    d = x.recv(65536)
                    if not d:
                        break
                    self.forwarded += len(d)
                    y.sendall(d)
            except OSError:
                pass
            for s in (x, y):
                try:
                    s.close()
                except OSError:
                    pass
        threading.Thread(target=pump, args=(a, b), daemon=True).start()
        pump(b, a)


def fake_scram_destination(iterations):
    """A plaintext destination relay that demands SCRAM and then offers an
    iteration count; returns its address and a holder for the outcome."""
    magic = b"\x89MGRLY\r\n"
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(1)
    state = {}

    def tlv(items):
        return b"".join(struct.pack(">HH", t, len(v)) + v for t, v in items)

    def frame(t, p):
        return struct.pack(">BBHIQI", t, 0, 0, 0, 0, len(p)) + p

    def run():
        c, _ = ls.accept()
        c.settimeout(10)
        c.sendall(magic + frame(1, tlv([
            (1, b"\x00\x01"), (2, b"\x00\x01"), (13, struct.pack(">I", 1 << 20)),
            (4, b"multichannel"), (4, b"insecure-plaintext"),
            (4, b"scram-sha-256"), (11, b"insecure-plaintext"),
            (11, b"scram-sha-256")])))
        buf = b""
        while len(buf) < 28 or len(buf) < 28 + struct.unpack(
                ">I", buf[24:28])[0]:
            d = c.recv(65536)
            if not d:
                return
            buf += d
        payload = buf[28:]
        i, auth = 0, None
        while i < len(payload):
            t, ln = struct.unpack(">HH", payload[i:i + 4])
            if t == 14:
                auth = payload[i + 4:i + 4 + ln].decode()
            i += 4 + ln
        cnonce = auth.split("r=", 1)[1].split(",")[0]
        first = "r=%sSERVERNONCE,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=%d" % (
            cnonce, iterations)
        state["t0"] = time.monotonic()
        c.sendall(frame(6, tlv([(14, first.encode())])))
        try:
            state["reply"] = c.recv(65536)
        except OSError:
            state["reply"] = b""
        state["t1"] = time.monotonic()
        c.close()
    threading.Thread(target=run, daemon=True).start()
    return "127.0.0.1:%d" % ls.getsockname()[1], state


def main():
    relay.test_timeout(100)
    with relay.TempDir(prefix="mr-auth-") as d:
        dirs = pki.make_relay_dirs(d.join("pki"), names=("src", "dst",
                                                         "mitm"))
        users = write_private(d.join("users"), "# test users\n" +
                              make_verifier("src", PASSWORD) + "\n")
        good = write_private(d.join("good"), "src:%s\n" % PASSWORD)
        bad = write_private(d.join("bad"), "src:not the password\n")
        unknown = write_private(d.join("unknown"), "mallory:%s\n" % PASSWORD)

        dst = d.relay("dst", tls_dir=dirs["dst"],
                      extra_args=["--auth-users", users])
        src = d.relay("src", listen=None, tls_dir=dirs["src"],
                      extra_args=["--auth-secret", good])
        srcbad = d.relay("srcbad", listen=None, tls_dir=dirs["src"],
                         extra_args=["--auth-secret", bad])
        srcunk = d.relay("srcunk", listen=None, tls_dir=dirs["src"],
                         extra_args=["--auth-secret", unknown])
        srcnone = d.relay("srcnone", listen=None, tls_dir=dirs["src"])
        for r in (dst, src, srcbad, srcunk, srcnone):
            r.start()
        peer = dst.peer_addr()
        qsock, got = fake_qemu(d.join("q.sock"))

        relay.log("== TLS + SCRAM-SHA-256-PLUS")
        dst.cmd("session-incoming", id="a", qemu="unix:" + d.join("q.sock"),
                peer_identity="src")
        s = src.cmd("session-outgoing", id="a", peer=peer,
                    listen="unix:" + d.join("a.sock"), channels=3)
        check("scram-sha-256-plus" in s["features"] and "tls" in s["features"],
              "negotiated %s" % s["features"])
        data = os.urandom(3 << 20)
        carry(d.join("a.sock"), data)
        src.wait_state("a", "completed", timeout=20)
        dst.wait_state("a", "completed", timeout=20)
        check(got == [hashlib.sha256(data).hexdigest()],
              "stream carried byte-exact over TLS + SCRAM, 3 channels")

        relay.log("== wrong password, unknown user, no secret")
        dst.cmd("session-incoming", id="b", qemu="unix:" + d.join("q.sock"))
        e1, t1 = expect_error(lambda: srcbad.cmd(
            "session-outgoing", id="b", peer=peer,
            listen="unix:" + d.join("b1.sock")), "AuthFailed")
        e2, t2 = expect_error(lambda: srcunk.cmd(
            "session-outgoing", id="b", peer=peer,
            listen="unix:" + d.join("b2.sock")), "AuthFailed")
        check(t1 < 1.0 and t2 < 1.0, "both fail in under a second")
        check(e1.desc == e2.desc,
              "unknown user and wrong password look the same")
        e3, _ = expect_error(lambda: srcnone.cmd(
            "session-outgoing", id="b", peer=peer,
            listen="unix:" + d.join("b3.sock")), "AuthFailed")
        check("--auth-secret" in e3.desc, "the error says what to configure")
        check(dst.session("b")["state"] == "waiting",
              "failed authentication leaves the session waiting")
        check(got == [hashlib.sha256(data).hexdigest()],
              "no byte reached QEMU from a failed link")
        log = open(dst.log_path).read()
        check("wrong password" in log and "unknown user" in log,
              "the accepting relay logs the real reasons")

        relay.log("== authorization by peer identity")
        dst.cmd("session-incoming", id="c", qemu="unix:" + d.join("q.sock"),
                peer_identity="someone-else")
        e, _ = expect_error(lambda: src.cmd(
            "session-outgoing", id="c", peer=peer,
            listen="unix:" + d.join("c.sock")), "AuthFailed")
        check("someone-else" in e.desc and "src" in e.desc,
              "identity mismatch explained")
        check(dst.session("c")["state"] == "waiting", "session c untouched")

        relay.log("== a man in the middle with trusted certificates")
        mitm = Mitm(dirs["mitm"], peer)
        e, _ = expect_error(lambda: src.cmd(
            "session-outgoing", id="b", peer=mitm.addr,
            listen="unix:" + d.join("m.sock")), "AuthFailed")
        check(mitm.forwarded > 0, "the MITM did relay the handshake")
        check(dst.session("b")["state"] == "waiting",
              "channel binding refused the relayed authentication")
        mlog = [ln for ln in open(dst.log_path)
                if "authentication failed" in ln and "bind" in ln]
        check(mlog, "the accepting relay logs a channel-binding failure: %s"
              % (mlog[-1].strip() if mlog else None))

        relay.log("== certificates alone (--no-auth), identity = subject")
        dst2 = d.relay("dst2", tls_dir=dirs["dst"], extra_args=["--no-auth"])
        dst2.start()
        dst2.cmd("session-incoming", id="e", qemu="unix:" + d.join("q.sock"),
                 peer_identity="/CN=src")
        s = srcnone.cmd("session-outgoing", id="e", peer=dst2.peer_addr(),
                        listen="unix:" + d.join("e.sock"))
        check(s["state"] == "ready", "client certificate subject authorized")
        srcnone.cmd("session-cancel", id="e")
        dst2.cmd("session-incoming", id="f", qemu="unix:" + d.join("q.sock"),
                 peer_identity="/CN=dst")
        expect_error(lambda: srcnone.cmd(
            "session-outgoing", id="f", peer=dst2.peer_addr(),
            listen="unix:" + d.join("f.sock")), "AuthFailed")

        relay.log("== plaintext + SCRAM (no channel binding)")
        pd = d.relay("pd", extra_args=["--auth-users", users])
        ps = d.relay("ps", listen=None, extra_args=["--auth-secret", good])
        pb = d.relay("pb", listen=None, extra_args=["--auth-secret", bad])
        for r in (pd, ps, pb):
            r.start()
        pd.cmd("session-incoming", id="g", qemu="unix:" + d.join("q.sock"),
               peer_identity="src")
        expect_error(lambda: pb.cmd(
            "session-outgoing", id="g", peer=pd.peer_addr(),
            listen="unix:" + d.join("g1.sock")), "AuthFailed")
        s = ps.cmd("session-outgoing", id="g", peer=pd.peer_addr(),
                   listen="unix:" + d.join("g.sock"))
        check("scram-sha-256" in s["features"], "plaintext link authenticated")

        relay.log("== iteration count bounds")
        for iters in (100001, 4095):
            addr, st = fake_scram_destination(iters)
            e, dt = expect_error(lambda: ps.cmd(
                "session-outgoing", id="i%d" % iters, peer=addr,
                listen="unix:" + d.join("i%d.sock" % iters)), "AuthFailed")
            check("iteration" in e.desc and dt < 0.5,
                  "iterations %d refused at once" % iters)
        qsock.close()
    relay.log("PASS")


if __name__ == "__main__":
    main()
