#!/usr/bin/env python3
"""Link handshake against peers written from migrelay-protocol(7) alone.

A fake destination relay checks what a real source relay sends (version
selection towards a newer peer, unknown features and items ignored,
required features, plaintext/secure mismatch), and a fake source relay
checks the real destination relay (greeting, session binding, PeerRejected
for unknown ids, tokens for extra channels, malformed input).
"""
import hashlib
import hmac
import os
import socket
import struct
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))
import relay  # noqa: E402
from relay import check  # noqa: E402

MAGIC = b"\x89MGRLY\r\n"
GREETING, HELLO, JOIN, WELCOME, REJECT = 1, 2, 3, 4, 5
ABORT = 0x14
T_VMIN, T_VMAX, T_VERSION, T_FEATURE, T_SESSION, T_CHANNELS = 1, 2, 3, 4, 5, 6
T_TOKEN, T_CHANNEL, T_ERRCLASS, T_ERRDESC, T_REQUIRE = 7, 8, 9, 10, 11
T_SOFTWARE, T_WINDOW = 12, 13


def frame(ftype, payload=b"", stream=0, seq=0, flags=0):
    return struct.pack(">BBHIQI", ftype, flags, 0, stream, seq,
                       len(payload)) + payload


def tlv(items):
    out = b""
    for tag, val in items:
        if isinstance(val, str):
            val = val.encode()
        out += struct.pack(">HH", tag, len(val)) + val
    return out


def u16(v):
    return struct.pack(">H", v)


def u32(v):
    return struct.pack(">I", v)


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        b = s.recv(n - len(buf))
        if not b:
            raise EOFError("peer closed after %d of %d bytes" % (len(buf), n))
        buf += b
    return buf


def read_frame(s):
    hdr = recv_exact(s, 20)
    ftype, flags, _, stream, seq, length = struct.unpack(">BBHIQI", hdr)
    return ftype, flags, stream, seq, recv_exact(s, length)


def parse_tlv(data):
    items = []
    i = 0
    while i < len(data):
        tag, length = struct.unpack(">HH", data[i:i + 4])
        items.append((tag, data[i + 4:i + 4 + length]))
        i += 4 + length
    assert i == len(data), "TLV list does not end on an item"
    return items


def get(items, tag, many=False):
    vals = [v for t, v in items if t == tag]
    return vals if many else (vals[0] if vals else None)


def join_proof(token, channel):
    """JOIN proof of a plaintext link (migrelay-protocol(7))."""
    return hmac.new(token, b"migrelay join" + u16(channel),
                    hashlib.sha256).digest()



class FakeDestination:
    """Listens like a destination relay and plays one scripted handshake."""

    def __init__(self, greeting_items, welcome=True):
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(4)
        self.addr = "127.0.0.1:%d" % self.ls.getsockname()[1]
        self.greeting_items = greeting_items
        self.welcome = welcome
        self.hello = None
        self.error = None
        self.conn = None
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        try:
            c, _ = self.ls.accept()
            self.conn = c
            c.settimeout(10)
            c.sendall(MAGIC + frame(GREETING, tlv(self.greeting_items)))
            check(recv_exact(c, 8) == MAGIC, "source relay sent the magic")
            ftype, _, _, _, payload = read_frame(c)
            if ftype != HELLO:
                return
            self.hello = parse_tlv(payload)
            if self.welcome:
                c.sendall(frame(WELCOME, tlv([
                    (T_TOKEN, b"\x42" * 32), (T_VERSION, u16(1)),
                    (T_CHANNELS, get(self.hello, T_CHANNELS)),
                    (0x7000, b"future item")])))
        except Exception as e:  # reported by the main thread
            self.error = e

    def close(self):
        if self.conn:
            self.conn.close()
        self.ls.close()


def base_greeting(vmin=1, vmax=1, features=("multichannel",
                                            "insecure-plaintext"),
                  require=("insecure-plaintext",), extra=()):
    items = [(T_VMIN, u16(vmin)), (T_VMAX, u16(vmax)),
             (T_WINDOW, u32(1 << 20)), (T_SOFTWARE, "fake 9.9")]
    items += [(T_FEATURE, f) for f in features]
    items += [(T_REQUIRE, f) for f in require]
    return items + list(extra)


def source_side(d, src):
    relay.log("== a real source relay against a fake, newer destination")
    fake = FakeDestination(base_greeting(
        vmin=1, vmax=5,
        features=("multichannel", "insecure-plaintext", "x-future-thing"),
        extra=[(0x7777, b"unknown item")]))
    sess = src.cmd("session-outgoing", id="a", peer=fake.addr,
                   listen="unix:" + d.join("a.sock"))
    fake.t.join(5)
    check(fake.error is None, "fake destination saw no error (%s)"
          % fake.error)
    hello = fake.hello
    check(get(hello, T_VERSION) == u16(1),
          "source selected version 1 from a 1-5 peer")
    check(get(hello, T_SESSION) == b"a", "HELLO names the session")
    check(get(hello, T_CHANNELS) == u16(1), "HELLO asks for 1 channel")
    feats = [f.decode() for f in get(hello, T_FEATURE, many=True)]
    check("x-future-thing" not in feats, "unknown feature ignored (%s)"
          % feats)
    check("insecure-plaintext" in feats, "plaintext mode announced")
    check(sess["state"] == "ready", "session-outgoing returned ready")
    check(sess["features"] == feats, "negotiated features reported")
    fake.close()
    st = src.wait_state("a", "failed", timeout=10)
    check(st["error"]["class"] == "PeerUnreachable",
          "peer closing the link fails the session: %s" % st["error"])

    cases = [
        ("b", base_greeting(vmin=2, vmax=5), "VersionMismatch",
         "no common version"),
        ("c", base_greeting(require=("insecure-plaintext", "x-must-have")),
         "VersionMismatch", "required feature missing"),
        ("e", base_greeting(features=("multichannel",), require=()),
         "TLSFailed", "peer is not in plaintext mode"),
    ]
    for sid, greeting, cls, what in cases:
        fake = FakeDestination(greeting, welcome=False)
        try:
            src.cmd("session-outgoing", id=sid, peer=fake.addr,
                    listen="unix:" + d.join(sid + ".sock"))
            raise AssertionError("session-outgoing %s succeeded" % sid)
        except relay.RelayError as e:
            check(e.cls == cls, "%s -> %s: %s" % (what, e.cls, e.desc))
            if sid == "c":
                check("x-must-have" in e.desc, "error names the feature")
        fake.close()
    # Multi-channel links need the feature.
    fake = FakeDestination(base_greeting(features=("insecure-plaintext",)),
                           welcome=False)
    try:
        src.cmd("session-outgoing", id="f", peer=fake.addr, channels=2,
                listen="unix:" + d.join("f.sock"))
        raise AssertionError("multi-channel link without the feature")
    except relay.RelayError as e:
        check(e.cls == "VersionMismatch", "no multichannel -> %s" % e.cls)
    fake.close()


def connect_dst(dst):
    host, port = dst.peer_addr().rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=10)
    check(recv_exact(s, 8) == MAGIC, "destination speaks first: magic")
    ftype, _, _, _, payload = read_frame(s)
    check(ftype == GREETING, "then GREETING")
    return s, parse_tlv(payload)


def hello(sid, version=1, channels=1, features=("multichannel",
                                               "insecure-plaintext"),
          require=(), extra=()):
    items = [(T_VERSION, u16(version)), (T_SESSION, sid),
             (T_CHANNELS, u16(channels)), (T_WINDOW, u32(1 << 20))]
    items += [(T_FEATURE, f) for f in features]
    items += [(T_REQUIRE, f) for f in require]
    return MAGIC + frame(HELLO, tlv(items + list(extra)))


def expect_reject(s, cls):
    ftype, _, _, _, payload = read_frame(s)
    items = parse_tlv(payload)
    got = (get(items, T_ERRCLASS) or b"").decode()
    check(ftype == REJECT and got == cls, "REJECT %s (%s)" % (
        got, (get(items, T_ERRDESC) or b"").decode()))
    check(s.recv(1) == b"", "then the channel is closed")


def destination_side(d, dst):
    relay.log("== a fake source relay against a real destination")
    s, g = connect_dst(dst)
    check(get(g, T_VMIN) == u16(1) and get(g, T_VMAX) == u16(1),
          "GREETING offers versions 1-1")
    feats = [f.decode() for f in get(g, T_FEATURE, many=True)]
    check("multichannel" in feats and "insecure-plaintext" in feats,
          "GREETING features %s" % feats)
    check(b"insecure-plaintext" in get(g, T_REQUIRE, many=True),
          "GREETING requires plaintext mode")
    check(len(get(g, T_WINDOW)) == 4, "GREETING has a window")
    s.sendall(hello("nosuch"))
    expect_reject(s, "PeerRejected")

    dst.cmd("session-incoming", id="x", qemu="unix:" + d.join("xq.sock"))
    s, _ = connect_dst(dst)
    s.sendall(hello("x", version=7))
    expect_reject(s, "VersionMismatch")
    s, _ = connect_dst(dst)
    s.sendall(hello("x", require=("x-unknown-required",)))
    expect_reject(s, "VersionMismatch")
    s, _ = connect_dst(dst)
    s.sendall(hello("x", features=("multichannel",)))
    expect_reject(s, "TLSFailed")
    check(dst.session("x")["state"] == "waiting",
          "refused handshakes leave the session waiting")

    s0, _ = connect_dst(dst)
    s0.sendall(hello("x", channels=2, features=(
        "multichannel", "insecure-plaintext", "x-zzz"),
        extra=[(0x6666, b"ignored")]))
    ftype, _, _, _, payload = read_frame(s0)
    w = parse_tlv(payload)
    check(ftype == WELCOME, "HELLO for a waiting session -> WELCOME")
    token = get(w, T_TOKEN)
    check(token is not None and len(token) == 32, "WELCOME carries a token")
    check(get(w, T_VERSION) == u16(1) and get(w, T_CHANNELS) == u16(2),
          "WELCOME echoes version and channels")
    s, _ = connect_dst(dst)
    s.sendall(MAGIC + frame(JOIN, tlv([(T_TOKEN, b"\0" * 32),
                                       (T_SESSION, "x"),
                                       (T_CHANNEL, u16(1)),
                                       (T_FEATURE, "insecure-plaintext")])))
    expect_reject(s, "PeerRejected")
    s, _ = connect_dst(dst)
    s.sendall(MAGIC + frame(JOIN, tlv([(T_TOKEN, join_proof(token, 2)),
                                       (T_SESSION, "x"),
                                       (T_CHANNEL, u16(2)),
                                       (T_FEATURE, "insecure-plaintext")])))
    expect_reject(s, "PeerRejected")
    check(dst.session("x")["state"] == "waiting", "half a link is not ready")
    s1, _ = connect_dst(dst)
    s1.sendall(MAGIC + frame(JOIN, tlv([(T_TOKEN, join_proof(token, 1)),
                                        (T_SESSION, "x"),
                                        (T_CHANNEL, u16(1)),
                                        (T_FEATURE, "insecure-plaintext")])))
    ftype, _, _, _, payload = read_frame(s1)
    check(ftype == WELCOME and get(parse_tlv(payload), T_CHANNEL) == u16(1),
          "JOIN with the token -> WELCOME")
    st = dst.wait_state("x", "ready", timeout=5)
    check("x-zzz" not in st["features"], "unknown feature not negotiated")
    check(st["channels"] == 2, "2 channels up")
    s, _ = connect_dst(dst)
    s.sendall(hello("x"))
    expect_reject(s, "PeerRejected")
    # An ABORT from the source fails the destination session.
    s0.sendall(frame(ABORT, tlv([(T_ERRCLASS, "GenericError"),
                                 (T_ERRDESC, "source gave up")])))
    st = dst.wait_state("x", "failed", timeout=5)
    check("source gave up" in st["error"]["desc"],
          "ABORT fails the session with the peer's reason: %s"
          % st["error"]["desc"])
    s0.close()
    s1.close()

    relay.log("== malformed input closes only that connection")
    for name, data in [
            ("bad magic", b"GET / HTTP/1.0\r\n\r\n"),
            ("oversized frame", MAGIC + struct.pack(">BBHIQI", HELLO, 0, 0,
                                                    0, 0, 1 << 30)),
            ("unknown critical type", MAGIC + frame(0x33, b"x")),
            ("DATA before the handshake", MAGIC + frame(0x11, b"x", 1)),
            ("truncated TLV", MAGIC + frame(HELLO, b"\x00\x05\x00\x09ab"))]:
        s, _ = connect_dst(dst)
        s.sendall(data)
        try:
            while s.recv(4096):
                pass
            closed = True
        except ConnectionResetError:
            closed = True
        check(closed, "%s: connection closed" % name)
    check(dst.cmd("query-daemon")["sessions"] == 1, "daemon still answers")


def main():
    relay.test_timeout(60)
    with relay.TempDir(prefix="mr-hs-") as d:
        src = d.relay("src")
        dst = d.relay("dst")
        src.start()
        dst.start()
        source_side(d, src)
        destination_side(d, dst)
        check(src.is_running() and dst.is_running(), "both relays alive")
    relay.log("PASS")


if __name__ == "__main__":
    main()
