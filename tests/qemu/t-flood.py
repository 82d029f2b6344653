#!/usr/bin/env python3
"""A handshake flood against the destination relay while a real QEMU
migration runs through it.

Hundreds of connections from another loopback address (127.0.0.2): silent
ones, ones that send garbage, ones that send the preface and stop, ones that
start a TLS handshake and stop.  The migration must complete with RAM
identical (the usual checks of migcase), every flood connection must be
closed by the relay within the handshake timeout (plus a margin), and the
relay's file descriptors and memory must come back to their baseline.
"""
import os
import random
import socket
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
import migcase  # noqa: E402
import qemu as Q  # noqa: E402

FLOOD = 400                 # connections
HANDSHAKE_TIMEOUT_MS = 1500
MARGIN_S = 3.0
RSS_SLACK_KIB = 8 * 1024


class FloodCase(migcase.Case):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.socks = []
        self.flood_t0 = None

    def start_relays(self):
        super().start_relays()
        # The destination relay with a short handshake timeout.
        self.D.stop()
        self.relays.remove(self.D)
        self.D = self.R.Relay(self.workdir, "dst2", tls_dir=self.D.tls_dir,
                              plaintext=self.D.plaintext,
                              extra_args=self.D.extra_args + [
                                  "--handshake-timeout",
                                  str(HANDSHAKE_TIMEOUT_MS)])
        self.relays.append(self.D)
        self.D.start()
        time.sleep(0.2)
        self.base_fds = self.D.fd_count()
        self.base_rss = self.D.rss_kib()
        Q.log("destination relay baseline: %d fds, %d KiB" % (
            self.base_fds, self.base_rss))

    def flood(self):
        host, port = self.D.peer_addr().rsplit(":", 1)
        rnd = random.Random(7)
        kinds = {"silent": 0, "garbage": 0, "preface": 0, "tls": 0,
                 "refused": 0}
        for i in range(FLOOD):
            s = socket.socket()
            s.bind(("127.0.0.2", 0))
            s.settimeout(5)
            try:
                s.connect((host, int(port)))
            except OSError:
                kinds["refused"] += 1
                s.close()
                continue
            kind = ("silent", "garbage", "preface", "tls")[i % 4]
            try:
                if kind == "garbage":
                    s.sendall(bytes(rnd.getrandbits(8) for _ in range(
                        rnd.randint(1, 3000))))
                elif kind == "preface":
                    s.sendall(b"\x89MGRLY\r\n" + b"\x02\x00\x00\x00")
                elif kind == "tls":
                    s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
            except OSError:
                pass
            kinds[kind] += 1
            self.socks.append(s)
        Q.log("flood: %d connections from 127.0.0.2 %s" % (FLOOD, kinds))

    def begin_migration(self, params):
        self.flood_t0 = time.monotonic()
        th = threading.Thread(target=self.flood, daemon=True)
        th.start()
        time.sleep(0.05)
        t0 = super().begin_migration(params)
        th.join(30)
        return t0

    def run_success(self):
        super().run_success()
        # Every flood connection must have been closed by the relay.
        deadline = self.flood_t0 + HANDSHAKE_TIMEOUT_MS / 1000.0 + MARGIN_S
        open_left = 0
        for s in self.socks:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                while s.recv(65536):
                    pass
            except socket.timeout:
                open_left += 1
            except OSError:
                pass
            s.close()
        migcase.check(open_left == 0, "%d flood connections still open %.1f s "
                      "after the flood started" % (open_left,
                                                   HANDSHAKE_TIMEOUT_MS / 1000.0 +
                                                   MARGIN_S))
        Q.log("all %d flood connections closed by the relay" % len(self.socks))
        self.D.cmd("session-remove", id=migcase.SID)
        time.sleep(0.3)
        fds, rss = self.D.fd_count(), self.D.rss_kib()
        Q.log("destination relay after: %d fds, %d KiB" % (fds, rss))
        migcase.check(fds == self.base_fds, "fds %d, baseline %d" % (
            fds, self.base_fds))
        if "ASAN_OPTIONS" in os.environ:
            # AddressSanitizer keeps freed memory in quarantine: RSS says
            # nothing about the relay's own bounds in that build.
            Q.log("RSS not checked under AddressSanitizer")
        else:
            migcase.check(rss <= self.base_rss + RSS_SLACK_KIB,
                          "RSS %d KiB, baseline %d KiB" % (rss, self.base_rss))
        log = open(self.D.log_path).read()
        migcase.check("too many pending handshakes" in log,
                      "the relay reported the flood")


if __name__ == "__main__":
    migcase.Case = FloodCase
    migcase.main("return-path")
