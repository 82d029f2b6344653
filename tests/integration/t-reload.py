#!/usr/bin/env python3
"""Credential reloads, TLS key updates and the systemd credential.

reload (control command) and SIGHUP re-read the TLS directory and the SCRAM
files without touching a running session; a broken file is refused and the
old credentials stay in use.  Long channels rekey (TLS 1.3 KeyUpdate) and
keep carrying the stream byte for byte.  A connecting relay finds its secret
in $CREDENTIALS_DIRECTORY/migrelay-auth-secret.
"""
import hashlib
import os
import shutil
import signal
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))
import pki  # noqa: E402
import relay  # noqa: E402
from relay import check  # noqa: E402
from relay import write_private as private  # noqa: E402





class Sink:
    """A destination QEMU stand-in hashing each connection it accepts."""

    def __init__(self, path):
        self.ls = socket.socket(socket.AF_UNIX)
        self.ls.bind(path)
        self.ls.listen(16)
        self.hashes = []
        threading.Thread(target=self.run, daemon=True).start()

    def run(self):
        while True:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            threading.Thread(target=self.one, args=(c,), daemon=True).start()

    def one(self, c):
        h = hashlib.sha256()
        while True:
            b = c.recv(1 << 20)
            if not b:
                break
            h.update(b)
        self.hashes.append(h.hexdigest())
        c.shutdown(socket.SHUT_WR)
        c.close()


def session(d, src, dst, sid, sink_path, channels=2):
    dst.cmd("session-incoming", id=sid, qemu="unix:" + sink_path)
    return src.cmd("session-outgoing", id=sid, peer=dst.peer_addr(),
                   listen="unix:" + d.join(sid + ".sock"), channels=channels)


def send(path, data, pause=0.0, chunks=1):
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    step = len(data) // chunks or len(data)
    for i in range(0, len(data), step):
        s.sendall(data[i:i + step])
        time.sleep(pause)
    s.shutdown(socket.SHUT_WR)
    while s.recv(65536):
        pass
    s.close()


def main():
    relay.test_timeout(100)
    with relay.TempDir(prefix="mr-reload-") as d:
        dirs = pki.make_relay_dirs(d.join("pki"), names=("src", "dst"))
        users = private(d.join("users"),
                        relay.make_verifier("src", "pw-one") + "\n")
        secret = private(d.join("secret"), "src:pw-one\n")
        sink_path = d.join("sink.sock")
        sink = Sink(sink_path)
        dst = d.relay("dst", tls_dir=dirs["dst"],
                      extra_args=["--auth-users", users,
                                  "--tls-rekey-bytes", "1048576"])
        src = d.relay("src", listen=None, tls_dir=dirs["src"],
                      extra_args=["--auth-secret", secret,
                                  "--tls-rekey-bytes", "1048576"])
        dst.start()
        src.start()

        relay.log("== a long session keeps running across reloads")
        session(d, src, dst, "long", sink_path)
        long_data = os.urandom(24 << 20)
        t = threading.Thread(target=send, args=(d.join("long.sock"),
                                                long_data, 0.15, 24))
        t.start()
        time.sleep(0.5)

        ca = dirs.ca
        new_srv = ca.issue("dst-server-2", cn="dst", san=["127.0.0.1"],
                           eku="server")
        shutil.copy(new_srv.cert, os.path.join(dirs["dst"], "server-cert.pem"))
        shutil.copy(new_srv.key, os.path.join(dirs["dst"], "server-key.pem"))
        os.chmod(os.path.join(dirs["dst"], "server-key.pem"), 0o600)
        check(dst.cmd("reload") == {}, "reload with a rotated certificate")
        s = session(d, src, dst, "after-rotate", sink_path)
        check(s["state"] == "ready", "new links use the new certificate")
        src.cmd("session-cancel", id="after-rotate")

        good_cert = open(os.path.join(dirs["dst"], "server-cert.pem")).read()
        with open(os.path.join(dirs["dst"], "server-cert.pem"), "w") as f:
            f.write("-----BEGIN CERTIFICATE-----\ngarbage\n"
                    "-----END CERTIFICATE-----\n")
        try:
            dst.cmd("reload")
            raise AssertionError("reload accepted a broken certificate")
        except relay.RelayError as e:
            check("server-cert.pem" in e.desc and "old" in e.desc,
                  "broken certificate refused: %s" % e.desc)
        os.kill(dst.pid, signal.SIGHUP)
        time.sleep(0.3)
        check("reload failed, keeping the old credentials" in
              open(dst.log_path).read(), "SIGHUP with a broken file: logged")
        s = session(d, src, dst, "old-creds", sink_path)
        check(s["state"] == "ready", "the old credentials are still in use")
        src.cmd("session-cancel", id="old-creds")
        with open(os.path.join(dirs["dst"], "server-cert.pem"), "w") as f:
            f.write(good_cert)

        relay.log("== SCRAM users reload")
        with open(users, "a") as f:
            f.write(relay.make_verifier("second", "pw-two") + "\n")
        check(dst.cmd("reload") == {}, "reload with a new user")
        src2 = d.relay("src2", listen=None, tls_dir=dirs["src"],
                       extra_args=["--auth-secret",
                                   private(d.join("secret2"),
                                           "second:pw-two\n")])
        src2.start()
        check(session(d, src2, dst, "second", sink_path)["state"] == "ready",
              "the new user authenticates")
        src2.cmd("session-cancel", id="second")
        with open(users, "a") as f:
            f.write("broken:line\n")
        try:
            dst.cmd("reload")
            raise AssertionError("reload accepted a broken users file")
        except relay.RelayError as e:
            check("users:" in e.desc, "broken users file refused with "
                  "file:line: %s" % e.desc)
        check(session(d, src, dst, "still", sink_path)["state"] == "ready",
              "old users still accepted")
        src.cmd("session-cancel", id="still")

        t.join(60)
        st = src.wait_state("long", "completed", timeout=30)
        dst.wait_state("long", "completed", timeout=30)
        check(hashlib.sha256(long_data).hexdigest() in sink.hashes,
              "the long session completed byte-exact across the reloads")
        check(st["bytes"]["source-to-destination"] == len(long_data),
              "and counted every byte")
        rekeys = open(src.log_path).read().count("TLS key update after")
        check(rekeys >= 10, "%d TLS key updates on the long session" % rekeys)

        relay.log("== secret from the systemd credential directory")
        creds = d.join("creds")
        os.makedirs(creds)
        private(os.path.join(creds, "migrelay-auth-secret"), "src:pw-one\n")
        os.environ["CREDENTIALS_DIRECTORY"] = creds
        try:
            src3 = d.relay("src3", listen=None, tls_dir=dirs["src"])
            src3.start()
        finally:
            del os.environ["CREDENTIALS_DIRECTORY"]
        s = session(d, src3, dst, "cred", sink_path)
        check("scram-sha-256-plus" in s["features"],
              "authenticated with the systemd credential")
    relay.log("PASS")


if __name__ == "__main__":
    main()
