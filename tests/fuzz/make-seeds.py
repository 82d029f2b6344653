#!/usr/bin/env python3
"""Write the seed corpus of the libFuzzer harnesses in tests/fuzz.

    python3 tests/fuzz/make-seeds.py [--check] [CORPUS_DIR]

Every seed is built here from the wire formats (proto/proto.h, proto/scram.h,
migrelay-protocol(7)), so the corpus is reproducible and reviewable: a few
valid inputs per harness and the edge cases next to each limit.  CORPUS_DIR
defaults to tests/fuzz/corpus next to this script; files there that this
script does not write are removed.  The list of seed files in
tests/fuzz/include.am (for the tarball) is rewritten to match.

--check writes nothing and exits 1 if the corpus or that list differ from
what would be written.

The SCRAM seeds carry complete exchanges, so they depend on the fixed user,
password, salt, nonces and channel binding of tests/fuzz/fuzz_scram.c
(FUZZ_*): change both together.
"""

import base64
import hashlib
import hmac
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

# --- link protocol (proto/proto.h) -----------------------------------------

MAGIC = b"\x89MGRLY\r\n"
GREETING, HELLO, JOIN, WELCOME, REJECT, AUTH = 0x01, 0x02, 0x03, 0x04, 0x05, 0x06
OPEN, DATA, FIN, ACK, ABORT, CLOSE = 0x10, 0x11, 0x12, 0x13, 0x14, 0x15
(T_VERSION_MIN, T_VERSION_MAX, T_VERSION, T_FEATURE, T_SESSION, T_CHANNELS,
 T_TOKEN, T_CHANNEL, T_ERRCLASS, T_ERRDESC, T_REQUIRE, T_SOFTWARE,
 T_WINDOW, T_AUTH) = range(1, 15)
HS_AUTH_MAX = 1024
FRAME_MAX_PAYLOAD = 1024 * 1024
HS_MAX_PAYLOAD = 4096


def frame(ftype, payload=b"", flags=0, stream=0, seq=0, length=None,
          reserved=0):
    if length is None:
        length = len(payload)
    return struct.pack(">BBHIQI", ftype, flags, reserved, stream, seq,
                       length) + payload


def tlv(tag, value):
    if isinstance(value, str):
        value = value.encode()
    return struct.pack(">HH", tag, len(value)) + value


def u16(tag, v):
    return tlv(tag, struct.pack(">H", v))


def u32(tag, v):
    return tlv(tag, struct.pack(">I", v))


TOKEN = bytes(range(0x40, 0x60))

HS_GREETING = (u16(T_VERSION_MIN, 1) + u16(T_VERSION_MAX, 1) +
               tlv(T_FEATURE, "multichannel") +
               tlv(T_FEATURE, "insecure-plaintext") +
               tlv(T_SOFTWARE, "migrelay 0.1.0"))
HS_HELLO = (u16(T_VERSION, 1) + tlv(T_FEATURE, "multichannel") +
            tlv(T_SESSION, "mig-1") + u16(T_CHANNELS, 4) +
            tlv(T_TOKEN, TOKEN) + u32(T_WINDOW, 4 * 1024 * 1024) +
            tlv(T_REQUIRE, "multichannel"))
HS_JOIN = (u16(T_VERSION, 1) + tlv(T_SESSION, "mig-1") +
           tlv(T_TOKEN, TOKEN) + u16(T_CHANNEL, 3))
HS_WELCOME = (u16(T_VERSION, 1) + tlv(T_FEATURE, "multichannel") +
              u32(T_WINDOW, 512 * 1024) + tlv(T_SOFTWARE, "migrelay 0.1.0"))
HS_AUTH = tlv(T_AUTH, "n,,n=relay-a,r=fyko+d2lbbFgONRv9qkxdawL")
HS_REJECT = (tlv(T_ERRCLASS, "VersionMismatch") +
             tlv(T_ERRDESC, "no common protocol version (peer 2-3, us 1-1)"))


def hs_seeds():
    s = {}
    s["greeting"] = HS_GREETING
    s["hello"] = HS_HELLO
    s["join"] = HS_JOIN
    s["welcome"] = HS_WELCOME
    s["reject"] = HS_REJECT
    s["auth"] = HS_AUTH
    s["auth-1024"] = tlv(T_AUTH, "r=" + "a" * (HS_AUTH_MAX - 2))
    s["auth-1025"] = tlv(T_AUTH, "r=" + "a" * (HS_AUTH_MAX - 1))
    s["empty"] = b""
    s["unknown-tags"] = (tlv(0x7fff, b"\x00\x01\xff") + tlv(0, b"") +
                         u16(T_VERSION, 1) + tlv(0xffff, b"x" * 40))
    s["every-tag"] = (u16(T_VERSION_MIN, 1) + u16(T_VERSION_MAX, 7) +
                      u16(T_VERSION, 1) + tlv(T_FEATURE, "f") +
                      tlv(T_SESSION, "") + u16(T_CHANNELS, 64) +
                      tlv(T_TOKEN, b"\x00" * 32) + u16(T_CHANNEL, 0) +
                      tlv(T_ERRCLASS, "c" * 31) + tlv(T_ERRDESC, "d" * 256) +
                      tlv(T_REQUIRE, "r" * 64) + tlv(T_SOFTWARE, "s" * 63) +
                      u32(T_WINDOW, 0xffffffff))
    s["repeated"] = (u16(T_VERSION, 1) + u16(T_VERSION, 2) +
                     tlv(T_SESSION, "a") + tlv(T_SESSION, "bb"))
    s["repeated-shorter"] = (tlv(T_SESSION, "bb") + tlv(T_SESSION, "") +
                             tlv(T_ERRDESC, "long text") +
                             tlv(T_ERRDESC, "x"))
    s["features-32"] = b"".join(tlv(T_FEATURE, "feat%d" % i)
                                for i in range(32))
    s["features-33"] = b"".join(tlv(T_FEATURE, "feat%d" % i)
                                for i in range(33))
    s["feature-64"] = tlv(T_FEATURE, "f" * 64)
    s["feature-65"] = tlv(T_FEATURE, "f" * 65)
    s["feature-empty"] = tlv(T_FEATURE, "")
    s["session-65"] = tlv(T_SESSION, "s" * 65)
    s["string-ctrl"] = tlv(T_ERRDESC, b"line\nbreak")
    s["string-nul"] = tlv(T_SOFTWARE, b"migrelay\x000.1")
    s["string-high"] = tlv(T_ERRDESC, b"caf\xc3\xa9")
    s["u16-short"] = tlv(T_VERSION, b"\x01")
    s["u16-long"] = tlv(T_CHANNELS, b"\x00\x00\x01")
    s["window-short"] = tlv(T_WINDOW, b"\x00\x01")
    s["token-short"] = tlv(T_TOKEN, b"\x01" * 31)
    s["truncated-header"] = u16(T_VERSION, 1) + b"\x00\x05\x00"
    s["truncated-value"] = u16(T_VERSION, 1) + b"\x00\x05\x00\x10abc"
    s["max-length-item"] = tlv(0x1234, b"z" * 4092)
    # The first eight bytes also drive hs_select_version().
    s["versions-overlap"] = struct.pack(">HHHH", 1, 5, 3, 9)
    s["versions-disjoint"] = struct.pack(">HHHH", 1, 2, 3, 4)
    s["versions-zero"] = struct.pack(">HHHH", 0, 0, 0, 0)
    s["versions-inverted"] = struct.pack(">HHHH", 5, 1, 1, 5)
    s["versions-max"] = struct.pack(">HHHH", 1, 0xffff, 0xffff, 0xffff)
    return s


def frame_seeds():
    s = {}
    s["greeting"] = MAGIC + frame(GREETING, HS_GREETING)
    s["hello-stream"] = (
        MAGIC + frame(HELLO, HS_HELLO) +
        frame(OPEN, stream=1, flags=1) +
        frame(DATA, b"QEVM\x00\x00\x00\x03", stream=1, seq=0) +
        frame(DATA, b"x" * 100, stream=1, seq=8) +
        frame(FIN, stream=1, seq=108) +
        frame(ACK, stream=1, seq=108, flags=1) +
        frame(CLOSE))
    s["welcome-large-data"] = (
        MAGIC + frame(WELCOME, HS_WELCOME) +
        frame(DATA, bytes(i & 0xff for i in range(1500)), stream=7,
              seq=1 << 40) +
        frame(DATA, b"", stream=7, seq=(1 << 40) + 1500))
    s["auth-exchange"] = (
        MAGIC + frame(GREETING, HS_GREETING) + frame(AUTH, HS_AUTH) +
        frame(AUTH, tlv(T_AUTH, "r=fyko+d2lbbFgONRv9qkxdawL3rfc,s=QSXCR+Q6sek8bf92,i=4096")) +
        frame(WELCOME, HS_WELCOME) + frame(DATA, b"after auth", stream=1))
    s["auth-too-large"] = MAGIC + frame(AUTH, b"", length=HS_MAX_PAYLOAD + 1)
    s["ping"] = (MAGIC + frame(HELLO, HS_HELLO) + frame(0x81) +
                 frame(0x81, b"pong?") + frame(CLOSE))
    s["join-ack"] = (MAGIC + frame(JOIN, HS_JOIN) +
                     frame(ACK, stream=2, seq=123456))
    s["reject"] = MAGIC + frame(GREETING, HS_GREETING) + frame(REJECT,
                                                               HS_REJECT)
    s["abort"] = (MAGIC + frame(ABORT, tlv(T_ERRCLASS, "GenericError") +
                                tlv(T_ERRDESC, "cancelled by the user")))
    s["abort-bad-tlv"] = MAGIC + frame(ABORT, b"\x00\x0a\x01\x00short")
    s["ignorable"] = (MAGIC + frame(HELLO, HS_HELLO) +
                      frame(0x90, b"future extension", flags=0xff) +
                      frame(0xff, b"") + frame(CLOSE))
    s["ignorable-before-handshake"] = MAGIC + frame(0x81, b"x")
    s["unknown-type"] = MAGIC + frame(HELLO, HS_HELLO) + frame(0x42, b"?")
    s["reserved-bytes"] = MAGIC + frame(GREETING, HS_GREETING,
                                        reserved=0xbeef)
    s["too-large-data"] = (MAGIC + frame(WELCOME, HS_WELCOME) +
                           frame(DATA, b"abc", length=FRAME_MAX_PAYLOAD + 1))
    s["max-data-partial"] = (MAGIC + frame(WELCOME, HS_WELCOME) +
                             frame(DATA, b"partial", stream=1,
                                   length=FRAME_MAX_PAYLOAD))
    s["too-large-handshake"] = MAGIC + frame(GREETING, b"",
                                             length=HS_MAX_PAYLOAD + 1)
    s["max-handshake"] = MAGIC + frame(GREETING,
                                       tlv(0x4000, b"y" * (HS_MAX_PAYLOAD - 4)))
    s["data-before-handshake"] = MAGIC + frame(DATA, b"early", stream=1)
    s["bad-magic"] = b"GET / HTTP/1.1\r\nHost: relay\r\n\r\n"
    s["tls-client-hello"] = bytes.fromhex(
        "16030100c4010000c00303") + bytes(32) + b"\x00\x00\x02\x13\x01"
    s["magic-only"] = MAGIC
    s["short-magic"] = MAGIC[:5]
    s["truncated-header"] = MAGIC + frame(GREETING, HS_GREETING)[:13]
    s["truncated-payload"] = MAGIC + frame(GREETING, HS_GREETING)[:-3]
    s["empty"] = b""
    return s


# --- control protocol -------------------------------------------------------

def ctl_seeds():
    s = {}
    s["query-daemon"] = b'{"execute":"query-daemon"}\n'
    s["incoming"] = (b'{"execute":"session-incoming","arguments":{"id":"mig-1",'
                     b'"qemu":"unix:/run/migrelay/mig-1.sock",'
                     b'"peer-identity":"CN=relay-a"},"id":1}\n')
    s["outgoing"] = (b'{"execute": "session-outgoing", "arguments": '
                     b'{"id": "mig-1", "peer": "[2001:db8::1]:4444", '
                     b'"listen": "tcp:127.0.0.1:0", "channels": 8}, '
                     b'"id": "req-7"}\r\n')
    s["session"] = (b'{"execute":"query-sessions"}\n'
                    b'{"execute":"query-sessions","arguments":{"id":"a"}}\n'
                    b'{"execute":"session-cancel","arguments":{"id":"a"},'
                    b'"id":{"n":[1,2,3]}}\n'
                    b'{"execute":"session-remove","arguments":{"id":"a"}}\n'
                    b'\n\r\n')
    s["reload"] = b'{"execute":"reload","id":"r1"}\n'
    s["unknown-command"] = (b'{"execute":"qmp_capabilities","arguments":'
                            b'{"enable":["oob"]},"id":null}\n')
    s["unknown-argument"] = (b'{"execute":"query-daemon","arguments":'
                             b'{"verbose":true},"id":2}\n')
    s["wrong-types"] = (b'{"execute":"session-outgoing","arguments":{"id":5,'
                        b'"peer":["x"],"listen":null,"channels":"4"}}\n'
                        b'{"execute":"session-outgoing","arguments":'
                        b'{"channels":1.5}}\n'
                        b'{"execute":"session-outgoing","arguments":'
                        b'{"channels":9223372036854775808}}\n'
                        b'{"execute":"session-outgoing","arguments":'
                        b'{"channels":-9223372036854775809}}\n')
    s["not-object"] = b'["execute","query-daemon"]\n42\n"str"\nnull\n'
    s["missing-execute"] = b'{"arguments":{},"id":3}\n{"execute":7,"id":4}\n'
    s["arguments-not-object"] = b'{"execute":"query-daemon","arguments":[],"id":5}\n'
    s["unexpected-member"] = b'{"execute":"query-daemon","control":1,"id":6}\n'
    s["bad-json"] = (b'{"execute":"query-daemon"\n'
                     b'{execute:query-daemon}\n'
                     b'{"execute":"query-daemon"} trailing\n'
                     b'{"execute":"query-daemon"}  \t\r\n'
                     b'{"execute":"query-daemon"}{"execute":"x"}\n'
                     b"{'execute':'query-daemon'}\n")
    s["deep-16"] = (b'{"execute":"x","arguments":{"a":' + b'[' * 14 +
                    b'1' + b']' * 14 + b'}}\n')
    s["deep-17"] = (b'{"execute":"x","arguments":{"a":' + b'[' * 15 +
                    b'1' + b']' * 15 + b'}}\n')
    s["escapes"] = (b'{"execute":"session-incoming","arguments":{"id":'
                    b'"a\\u0000b","qemu":"unix:/tmp/\\ud83d\\ude00",'
                    b'"peer-identity":"\\"\\\\\\/\\b\\f\\n\\r\\t"}}\n'
                    b'{"execute":"\\u00e9\\ud800"}\n')
    s["duplicate-keys"] = (b'{"execute":"query-daemon","execute":"session-remove",'
                           b'"arguments":{"id":"a","id":"b"}}\n')
    s["nul-in-line"] = b'{"execute":"query-daemon"}\x00garbage\n'
    s["no-newline"] = b'{"execute":"query-daemon","id":9}'
    return s


# --- configuration file -----------------------------------------------------

def config_seeds():
    s = {}
    s["full"] = (b"# migrelayd.conf\n"
                 b"control /run/migrelay/control.sock\n"
                 b"listen 0.0.0.0:4444\n"
                 b"listen = [::1]:4445   # loopback\n"
                 b"tls-dir /etc/pki/qemu\n"
                 b"log-level debug\n"
                 b"\n"
                 b"   \t\r\n")
    s["plaintext"] = (b"insecure-plaintext\n"
                      b"no-listen\n"
                      b"log-level=WARN\r\n"
                      b"control=/tmp/c.sock")
    s["errors"] = (b"unknown-option 1\n"
                   b"listen\n"
                   b"listen host\n"
                   b"listen [::1:80\n"
                   b"listen h:65536\n"
                   b"log-level loud\n"
                   b"tls-dir\n"
                   b"control\n"
                   b"=value\n"
                   b"listen = = h:1\n")
    s["listen-9"] = b"".join(b"listen 10.0.0.%d:%d\n" % (i, 4000 + i)
                             for i in range(9))
    s["control-too-long"] = b"control /" + b"c" * 107 + b"\ncontrol /" + \
        b"c" * 106 + b"\n"
    s["long-host"] = b"listen " + b"h" * 255 + b":1\nlisten " + \
        b"h" * 256 + b":1\nlisten [" + b"a" * 255 + b"]:65535\n"
    s["long-line"] = b"tls-dir /" + b"d" * 1100 + b"\nlog-level info\n"
    s["nul"] = b"log-level info\x00garbage\nlisten a:1\x00\n"
    s["auth"] = (b"auth-users /etc/migrelay/users\n"
                 b"auth-secret=/etc/migrelay/secret\n"
                 b"no-auth\n"
                 b"handshake-timeout 10000\n"
                 b"link-timeout 30000\n"
                 b"progress-timeout 600000\n")
    s["timeouts-bad"] = (b"handshake-timeout 99\n"
                         b"handshake-timeout 3600001\n"
                         b"link-timeout 2999\n"
                         b"progress-timeout 10s\n"
                         b"progress-timeout -1\n"
                         b"link-timeout 18446744073709551616\n"
                         b"handshake-timeout\n"
                         b"auth-users\n")
    s["comments"] = b"#listen a:1\nlisten b:2#c\n  # x\nno-listen #\n"
    return s


# --- URIs, addresses, session ids -------------------------------------------

def uri_seeds():
    s = {}
    vals = [
        "unix:/run/migrelay/qemu.sock", "unix:relative", "unix:",
        "unix:/a,b", "unix:/" + "p" * 106, "unix:/" + "p" * 107,
        "tcp:127.0.0.1:4444", "tcp:[::1]:4444", "tcp:[fe80::1%eth0]:0",
        "tcp:relay.example.org:65535", "tcp:h:65536", "tcp:h:",
        "tcp::80", "tcp:[]:80", "tcp:[::1]4444", "tcp:a:b:1",
        "tcp:[::1]:80,ipv6=on", "tcp:h:007", "tcp:h:+1", "tcp:h:123456",
        "tcp:" + "h" * 255 + ":1", "tcp:" + "h" * 256 + ":1",
        "tcp:[[x]:80", "tcp:x]:80", "rdma:h:1", "exec:cat",
        "0.0.0.0:4444", "[2001:db8::1]:4444", "host:", ":1", "[::1]",
        "mig-1", "a", "A.b_c-9", "s" * 64, "s" * 65, "bad id", "id/x",
        "",
    ]
    for i, v in enumerate(vals):
        tag = "".join(c if c.isalnum() or c in "._-" else "_" for c in v)
        s["%02d-%s" % (i, tag[:24])] = v.encode()
    s["nul"] = b"tcp:a:1\x00:2"
    return s


# --- SCRAM (proto/scram.h; constants of tests/fuzz/fuzz_scram.c) -------------

USER = "fuzzuser"
PASSWORD = "pencil"
SALT = b"fuzz-salt-16byte"
ITER = 4096
CNONCE = "fyko+d2lbbFgONRv9qkxdawL"
SNONCE = "3rfcNHYJY1ZVvWVs7j"
CBIND = bytes(range(32))
GS2_N = "n,,"
GS2_P = "p=tls-exporter,,"


def b64(b):
    return base64.b64encode(b).decode()


def hmac256(key, msg):
    return hmac.new(key, msg.encode() if isinstance(msg, str) else msg,
                    hashlib.sha256).digest()


def keys(password, salt=SALT, it=ITER):
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, it, 32)
    ck = hmac256(salted, "Client Key")
    return ck, hashlib.sha256(ck).digest(), hmac256(salted, "Server Key")


def xor(a, b):
    return bytes(x ^ y for x, y in zip(a, b))


def cbind_attr(gs2):
    data = gs2.encode() + (CBIND if gs2.startswith("p=") else b"")
    return "c=" + b64(data)


def server_exchange(gs2, user=USER, password=PASSWORD, ext="", bind=None,
                    final_ext=""):
    """Client messages for the server role (server nonce and salt fixed)."""
    bare = "n=%s,r=%s%s" % (user, CNONCE, ext)
    first = "r=%s%s,s=%s,i=%d" % (CNONCE, SNONCE, b64(SALT), ITER)
    wo = "%s,r=%s%s%s" % (bind or cbind_attr(gs2), CNONCE, SNONCE, final_ext)
    ck, stored, _ = keys(password)
    proof = xor(ck, hmac256(stored, bare + "," + first + "," + wo))
    return (gs2 + bare) + "\n" + wo + ",p=" + b64(proof)


def client_exchange(gs2, snonce="3rfcNHYJY1ZVvWVs7jSRV2", salt=SALT,
                    it=ITER, ext=""):
    """Server messages for the client role (client nonce fixed)."""
    bare = "n=%s,r=%s" % (USER, CNONCE)
    first = "r=%s%s,s=%s,i=%d%s" % (CNONCE, snonce, b64(salt), it, ext)
    wo = "%s,r=%s%s" % (cbind_attr(gs2), CNONCE, snonce)
    _, _, sk = keys(PASSWORD, salt, it)
    sig = hmac256(sk, bare + "," + first + "," + wo)
    return first + "\nv=" + b64(sig)


def verifier(user=USER, password=PASSWORD, salt=SALT, it=ITER):
    _, stored, sk = keys(password, salt, it)
    return "%s:SCRAM-SHA-256$%d:%s$%s:%s" % (user, it, b64(salt), b64(stored),
                                              b64(sk))


def scram_seeds():
    s = {}
    first_n = GS2_N + "n=%s,r=%s" % (USER, CNONCE)
    s["server-ok"] = "s" + server_exchange(GS2_N)
    s["server-plus-ok"] = "S" + server_exchange(GS2_P)
    s["server-y-flag"] = "s" + server_exchange("y,,")
    s["server-downgrade"] = "S" + server_exchange(GS2_N)
    s["server-plus-no-tls"] = "s" + server_exchange(GS2_P)
    s["server-wrong-binding"] = "S" + server_exchange(
        GS2_P, bind="c=" + b64(GS2_P.encode() + bytes(32)))
    s["server-wrong-password"] = "s" + server_exchange(GS2_N,
                                                       password="pencil2")
    s["server-unknown-user"] = "s" + server_exchange(GS2_N, user="nobody")
    s["server-bad-verifier"] = "s" + server_exchange(GS2_N, user="badsalt")
    s["server-extensions"] = "s" + server_exchange(GS2_N, ext=",x=1,Y=2",
                                                   final_ext=",z=3")
    s["server-repeated-ext"] = "s" + server_exchange(GS2_N, ext=",x=1,x=2")
    s["server-reserved-ext"] = "s" + server_exchange(GS2_N, ext=",s=1")
    s["server-authzid"] = "sn,a=admin,n=%s,r=%s" % (USER, CNONCE)
    s["server-mext"] = "sn,,m=ext,n=%s,r=%s" % (USER, CNONCE)
    s["server-bad-cbtype"] = "Sp=tls-unique,,n=%s,r=%s" % (USER, CNONCE)
    s["server-bad-user"] = "sn,,n=a=b,r=%s" % CNONCE
    s["server-long-user"] = "sn,,n=%s,r=%s" % ("u" * 65, CNONCE)
    s["server-long-nonce"] = "sn,,n=%s,r=%s" % (USER, "N" * 129)
    s["server-first-only"] = "s" + first_n
    s["server-final-garbage"] = ("s" + first_n + "\nc=biws,r=%s%s,p=%s,x=1" %
                                 (CNONCE, SNONCE, b64(bytes(32))))
    s["server-final-bad-nonce"] = ("s" + first_n + "\nc=biws,r=%sX,p=%s" %
                                   (CNONCE, b64(bytes(32))))
    s["server-final-short-proof"] = ("s" + first_n + "\nc=biws,r=%s%s,p=%s" %
                                     (CNONCE, SNONCE, b64(bytes(31))))
    s["server-final-noncanonical-b64"] = ("s" + first_n +
                                          "\nc=bh==,r=%s%s,p=%s" %
                                          (CNONCE, SNONCE, b64(bytes(32))))
    s["server-ctrl-char"] = "sn,,n=%s,r=%s\t" % (USER, CNONCE)
    m = "n,,n=%s,r=%s,x=" % (USER, CNONCE)
    s["server-max-msg"] = "s" + m + "v" * (1024 - len(m))
    s["server-over-max-msg"] = "s" + m + "v" * (1025 - len(m))
    s["server-empty"] = "s"
    s["server-small-buffer"] = "s" + server_exchange(GS2_N) + "\n" + "b" * 40
    s["server-tiny-buffer"] = "S" + server_exchange(GS2_P) + "\n"
    s["client-ok"] = "c" + client_exchange(GS2_N)
    s["client-plus-ok"] = "C" + client_exchange(GS2_P)
    s["client-extension"] = "c" + client_exchange(GS2_N, ext=",k=v")
    s["client-server-error"] = ("c" + client_exchange(GS2_N).split("\n")[0] +
                                "\ne=invalid-proof")
    s["client-server-error-ext"] = ("c" + client_exchange(GS2_N).split("\n")[0]
                                    + "\ne=other-error,q=1")
    s["client-unknown-error"] = ("c" + client_exchange(GS2_N).split("\n")[0] +
                                 "\ne=something-else")
    s["client-wrong-signature"] = ("c" + client_exchange(GS2_N).split("\n")[0]
                                   + "\nv=" + b64(bytes(32)))
    s["client-iter-high"] = "cr=%sS,s=%s,i=100001" % (CNONCE, b64(SALT))
    s["client-iter-low"] = "cr=%sS,s=%s,i=4095" % (CNONCE, b64(SALT))
    s["client-iter-huge"] = "cr=%sS,s=%s,i=99999999999999999999" % (
        CNONCE, b64(SALT))
    s["client-iter-zero"] = "cr=%sS,s=%s,i=0" % (CNONCE, b64(SALT))
    s["client-nonce-not-extended"] = "cr=%s,s=%s,i=4096" % (CNONCE, b64(SALT))
    s["client-nonce-other"] = "cr=other%s,s=%s,i=4096" % (CNONCE, b64(SALT))
    s["client-salt-64"] = "cr=%sS,s=%s,i=4096" % (CNONCE, b64(b"s" * 64))
    s["client-salt-65"] = "cr=%sS,s=%s,i=4096" % (CNONCE, b64(b"s" * 65))
    s["client-salt-noncanonical"] = "cr=%sS,s=ab==,i=4096" % CNONCE
    s["client-salt-unpadded"] = "cr=%sS,s=abc,i=4096" % CNONCE
    s["client-mext"] = "cm=1,r=%sS,s=%s,i=4096" % (CNONCE, b64(SALT))
    s["client-empty"] = "c"
    s["client-small-buffer"] = "c" + client_exchange(GS2_N) + "\n" + "b" * 100
    s["verifier-ok"] = "v" + verifier() + "\n"
    s["verifier-salt-64"] = "v" + verifier(salt=b"\x01" * 64)
    s["verifier-iter-100000"] = "v" + verifier(user="a.b@c-d_e", it=100000)
    s["verifier-iter-low"] = "vu:SCRAM-SHA-256$4095:%s$%s:%s" % (
        b64(SALT), b64(bytes(32)), b64(bytes(32)))
    s["verifier-bad"] = "vu:SCRAM-SHA-1$4096:%s$%s:%s" % (
        b64(SALT), b64(bytes(32)), b64(bytes(32)))
    s["verifier-short-key"] = "vu:SCRAM-SHA-256$4096:%s$%s:%s" % (
        b64(SALT), b64(bytes(31)), b64(bytes(32)))
    s["verifier-trailing"] = "v" + verifier() + "\n\n"
    s["verifier-no-user"] = "v:SCRAM-SHA-256$4096:%s$%s:%s" % (
        b64(SALT), b64(bytes(32)), b64(bytes(32)))
    return {k: v.encode() for k, v in s.items()}


HARNESSES = {
    "config": config_seeds,
    "ctl_json": ctl_seeds,
    "frame": frame_seeds,
    "hs": hs_seeds,
    "scram": scram_seeds,
    "uri": uri_seeds,
}

AM_BEGIN = "# BEGIN seed corpus (written by tests/fuzz/make-seeds.py)\n"
AM_END = "# END seed corpus\n"


def am_block(names):
    lines = ["EXTRA_DIST += \\\n"]
    for i, n in enumerate(names):
        sep = " \\\n" if i < len(names) - 1 else "\n"
        lines.append("\ttests/fuzz/corpus/" + n + sep)
    return AM_BEGIN + "".join(lines) + AM_END


def main(argv):
    check = "--check" in argv
    args = [a for a in argv if a != "--check"]
    corpus = args[0] if args else os.path.join(HERE, "corpus")
    want = {}
    for h, fn in sorted(HARNESSES.items()):
        for name, data in fn().items():
            want[h + "/" + name] = data
    have = {}
    for h in HARNESSES:
        d = os.path.join(corpus, h)
        if os.path.isdir(d):
            for f in os.listdir(d):
                with open(os.path.join(d, f), "rb") as fp:
                    have[h + "/" + f] = fp.read()

    am = os.path.join(HERE, "include.am")
    with open(am) as fp:
        text = fp.read()
    if AM_BEGIN in text and AM_END in text:
        head, rest = text.split(AM_BEGIN, 1)
        tail = rest.split(AM_END, 1)[1]
    else:
        head, tail = text.rstrip("\n") + "\n\n", ""
    new_text = head + am_block(sorted(want)) + tail

    if check:
        bad = sorted(k for k in set(want) | set(have)
                     if want.get(k) != have.get(k))
        for k in bad:
            print("make-seeds: %s: %s" % (k, "differs" if k in want and
                  k in have else "missing" if k in want else "unexpected"))
        if new_text != text:
            print("make-seeds: the seed list in tests/fuzz/include.am is "
                  "out of date")
            bad.append("include.am")
        return 1 if bad else 0

    for k in sorted(set(have) - set(want)):
        os.unlink(os.path.join(corpus, k))
    for k, data in sorted(want.items()):
        path = os.path.join(corpus, k)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if have.get(k) != data:
            with open(path, "wb") as fp:
                fp.write(data)
    if new_text != text:
        with open(am, "w") as fp:
            fp.write(new_text)
    print("make-seeds: %d seeds for %d harnesses in %s" %
          (len(want), len(HARNESSES), corpus))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
