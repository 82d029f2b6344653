"""Shared driver of the QEMU end-to-end tests (tests/qemu/t-*.py are thin wrappers).

One test = one migration of the test guest (tests/guest) between two QEMUs on this host,
through two migrelayd relays (or, with --direct, straight from QEMU to QEMU, which checks
the harness, the guest and the mode settings without the relays):

  destination QEMU   -incoming defer -S, migrate-incoming unix:<dir>/dst-qemu.sock
  relay D            session-incoming id=vm1 qemu=unix:<dir>/dst-qemu.sock
  relay S            session-outgoing id=vm1 peer=<D> listen=unix:<dir>/src-relay.sock
  source QEMU        migrate unix:<dir>/src-relay.sock

Success modes check: source `completed`, destination `completed`, both relay sessions
`completed`, RAM of source and destination byte-identical over the guest's window and
following the guest's pattern (tests/guest/README), and the destination guest runs after
`cont`.  Failure modes inject a failure mid-migration and check that the source QEMU
reports `failed` quickly and its guest still runs.

Fault modes (FAULT_INJECTIONS, Case.run_fault) go further: QEMUs killed or stopped, and
link faults made by tests/tools/faultproxy.py between the relays (stall, reset, corrupted
bytes) or by dropping every packet of a network namespace holding the destination relay.
Each measures the time from the fault to the source's `failed`, checks the error class and
description of both relay sessions, the destination guest never starting, the relays' fds
(and, for a stopped destination QEMU, their memory and the source's backpressure), then
migrates the same VM again through the same relays with a new session id.

Resume modes (RESUME_FAULTS, "resume_fault" in MODES) break the link between the relays
mid-migration in a way the relays must recover from by re-establishing channels
(--reconnect-timeout, link feature "resume"): the migration must complete with all the
checks of a success mode, and the source session must count reconnects.

Usage: t-<mode>.py [--direct] [--keep]   (exit 0 pass, 1 fail, 77 skip)
"""

import atexit
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))

import qemu as Q  # noqa: E402

SID = "vm1"
TEST_BUDGET_S = 120         # every test file is bounded by this (SIGALRM)
CONVERGE_PATIENCE_S = 12    # precopy not done by then: start raising downtime-limit
CONVERGE_STEP_S = 4         # ... doubling it this often
MAX_DOWNTIME_LIMIT_MS = 30000
MEM_MIB = 128
POSTCOPY_AFTER = 16 * Q.MiB  # start postcopy once this much RAM has been sent
INJECT_AFTER = 16 * Q.MiB    # failure tests: inject once this much RAM has been sent
INJECT_AFTER_BUSY = 4 * Q.MiB  # the same at full speed (a 128 MiB pass takes ~0.1 s)
FAIL_WITHIN_S = 5.0          # failure tests: source must report `failed` this fast

# Failure injections: what is done, and the final state each relay's session must reach
# ("failed" also requires an error object; None: that relay is dead; "ended": any final
# state except "completed").
INJECTIONS = {
    "cancel": ("session-cancel on the source relay", {"S": "cancelled", "D": "ended"}),
    "cancel-dst": ("session-cancel on the destination relay",
                   {"S": "failed", "D": "cancelled"}),
    "kill-dst-relay": ("SIGKILL the destination relay", {"S": "failed", "D": None}),
    "kill-src-relay": ("SIGKILL the source relay", {"S": None, "D": "failed"}),
    "kill-dst-relay-busy": ("SIGKILL the destination relay while QEMU sends at full speed",
                            {"S": "failed", "D": None}),
    # A live but hung peer: only the relays' progress timeouts can turn this into a
    # failure (QEMU itself waits forever).
    "stall-dst-relay": ("SIGSTOP the destination relay", {"S": "failed", "D": None}),
}
STALL_PROGRESS_TIMEOUT_MS = 3000    # relays' --progress-timeout in the stall test
# Lost channels are re-established for --reconnect-timeout (default 30 s) before a session
# fails: modes whose link breaks for good give the relays a short grace period, so the
# failure comes after link timeout (a silent link) + grace + check period + slack.
SHORT_RECONNECT_MS = 3000
_SHORT_RECONNECT_ARGS = ["--reconnect-timeout", str(SHORT_RECONNECT_MS)]
STALL_LINK_TIMEOUT_MS = 3000
# SIGSTOP: the progress timeout fails the session, or the link timeout (no heartbeat)
# declares the channels dead first, and then the re-dials (TCP connects, TLS never
# answers) fail after the grace period
STALL_FAIL_WITHIN_S = max(STALL_PROGRESS_TIMEOUT_MS,
                          STALL_LINK_TIMEOUT_MS + SHORT_RECONNECT_MS) / 1000.0 + 2.0 + 1.0
# the source relay is gone: the destination relay waits out the grace period (no earlier),
# then fails PeerUnreachable (check period, slack)
KILL_SRC_DST_FINAL_S = (SHORT_RECONNECT_MS / 1000.0 - 0.5, SHORT_RECONNECT_MS / 1000.0 + 3.0)

# Capabilities and parameters set on BOTH QEMUs, per mode; "relay_channels" is the
# session-outgoing `channels` argument.
MODES = {
    "precopy": dict(caps={}),
    "return-path": dict(caps={"return-path": True}),
    "multifd": dict(caps={"multifd": True}, params={"multifd-channels": 4}),
    "postcopy": dict(caps={"postcopy-ram": True}, postcopy=True),
    "postcopy-preempt": dict(caps={"postcopy-ram": True, "postcopy-preempt": True},
                             postcopy=True),
    # postcopy with the destination guest running during postcopy (page requests)
    "postcopy-run": dict(caps={"postcopy-ram": True}, postcopy=True, run_dst=True),
    "postcopy-preempt-run": dict(caps={"postcopy-ram": True, "postcopy-preempt": True},
                                 postcopy=True, run_dst=True),
    "channels-2": dict(caps={"return-path": True}, relay_channels=2),
    "channels-8": dict(caps={"return-path": True}, relay_channels=8),
    # TLS 1.3 between the relays (mutual certificates from a throw-away PKI)
    "tls": dict(caps={"return-path": True}, relay_channels=2, tls=True),
    # the same over plaintext links (--insecure-plaintext on both relays)
    "plaintext": dict(caps={"return-path": True}, relay_channels=2, tls=False),
    "plaintext-multifd": dict(caps={"multifd": True, "return-path": True},
                              params={"multifd-channels": 4}, relay_channels=4,
                              tls=False),
    "tls-multifd": dict(caps={"multifd": True, "return-path": True},
                        params={"multifd-channels": 4}, relay_channels=4, tls=True),
    # failure injection
    "cancel": dict(caps={"return-path": True}, inject="cancel"),
    "cancel-dst": dict(caps={"return-path": True}, inject="cancel-dst"),
    "kill-dst-relay": dict(caps={"return-path": True}, inject="kill-dst-relay"),
    "kill-src-relay": dict(caps={"return-path": True}, inject="kill-src-relay",
                           relay_args=_SHORT_RECONNECT_ARGS,
                           dst_final=(("PeerUnreachable",), r"not re-established",
                                      KILL_SRC_DST_FINAL_S)),
    "kill-dst-relay-busy": dict(caps={"return-path": True}, inject="kill-dst-relay-busy",
                                busy=True),
    "stall-dst-relay": dict(caps={"return-path": True}, inject="stall-dst-relay",
                            fail_within=STALL_FAIL_WITHIN_S,
                            relay_args=["--progress-timeout",
                                        str(STALL_PROGRESS_TIMEOUT_MS),
                                        "--link-timeout", str(STALL_LINK_TIMEOUT_MS)]
                            + _SHORT_RECONNECT_ARGS),
}

# --- Fault injection around and between the relays (issue 5: graceful failure) ----------
# These modes run Case.run_fault(): the fault is injected mid-migration, then the test
# asserts that the source QEMU reports `failed` within the mode's budget (measured from the
# fault), that its guest keeps running, that the destination guest never starts, that both
# relay sessions end in the expected final state with an error class and description
# (FAULT_EXPECT), and that the relays' file descriptors are back at their baseline.  Then
# (unless retry=False) the same VM migrates again through the same relays, with a new
# session id and a fresh destination QEMU, and must complete with identical RAM.
# The relays re-establish lost channels for --reconnect-timeout: the faults that break the
# link for good fail the session only after that grace period (short ones here), and
# proxy-reset runs with the feature off (--reconnect-timeout 0) to keep the no-resume
# failure path tested.
FAULT_TIMEOUT_MS = 3000      # --link-timeout / --progress-timeout in the timeout modes
FAULT_TICK_S = 1.0           # the relays check link and progress timeouts once a second
FAULT_SLACK_S = 2.0          # scheduling on two loaded cores, QEMU noticing the close
TIMEOUT_FAIL_WITHIN_S = FAULT_TIMEOUT_MS / 1000.0 + FAULT_TICK_S + FAULT_SLACK_S
# a silent link: link timeout, then the grace period for re-establishing the channels
RESUME_FAIL_WITHIN_S = TIMEOUT_FAIL_WITHIN_S + SHORT_RECONNECT_MS / 1000.0
# ... and not before the grace period alone is over (the link timeout runs from the last
# byte received, which on a channel carrying only heartbeats that way may be a second or
# two before the fault, so the grace period is all that is certain)
RESUME_FAIL_AFTER_S = SHORT_RECONNECT_MS / 1000.0
# a stopped destination QEMU: data still moves until the socket buffers in front of it are
# full, and only then does the progress clock start
FILL_S = 1.0
RETRY_SID = "vm1-retry"
RSS_BUDGET_KIB = 64 * 1024   # a relay may grow this much over its baseline under a fault
BACKPRESSURE_SETTLE_S = 1.0  # stop-dst-qemu: after this, the source must be held back
BACKPRESSURE_MAX_GROWTH = 1 * Q.MiB   # ... its `transferred` may grow this much at most
CORRUPT_AHEAD = 64 * 1024    # corrupt the byte this far ahead of what the proxy has read
FDS_SETTLE_S = 5.0           # relay fds must be back at their baseline this soon
DRAIN_MS = 2000              # --drain-timeout of drain-src-relay

FAULT_INJECTIONS = {
    "kill-dst-qemu": ("SIGKILL the destination QEMU", {"S": "failed", "D": "failed"}),
    "kill-src-qemu": ("SIGKILL the source QEMU", {"S": "failed", "D": "failed"}),
    "proxy-stall": ("stall the link in the fault proxy (sockets open, nothing forwarded, "
                    "new connections too)", {"S": "failed", "D": "failed"}),
    "proxy-reset": ("reset (RST) every link connection in the fault proxy (resume off)",
                    {"S": "failed", "D": "failed"}),
    "cut-long": ("cut the link in the fault proxy (every byte dropped, new connections "
                 "refused) until the source QEMU has failed", {"S": "failed", "D": "failed"}),
    "corrupt-frame": ("flip the type byte of one DATA frame header on the plaintext link",
                      {"S": "failed", "D": "failed"}),
    "stop-dst-qemu": ("SIGSTOP the destination QEMU (it stops reading)",
                      {"S": "failed", "D": "failed"}),
    "netns-unreachable": ("drop every packet of the destination relay's network namespace",
                          {"S": "failed", "D": "failed"}),
    # systemd's stop: the relay exits once its drain period is over, so only the
    # destination's session is left to look at
    "drain-src-relay": ("SIGTERM the source relay (stop with a drain period of %d ms)"
                        % 2000, {"S": None, "D": "failed"}),
}
INJECTIONS.update(FAULT_INJECTIONS)

# Per fault and relay: (error classes allowed or None for any, regular expression the error
# description must match or None).  The relay that sees the fault first reports it in its
# own words; the other one reports the peer's ABORT ("peer relay ended the session: ...")
# or, when the link is gone, the link loss.
_LINK_LOST = r"lost|silent|reset|closed|timed out|timeout|unreachable"
_NOT_RESUMED = r"not re-established"
FAULT_EXPECT = {
    "kill-dst-qemu": {"D": (None, r"(?i)qemu|connection|writing|reading"), "S": (None, None)},
    "kill-src-qemu": {"S": (None, r"(?i)qemu|connection|writing|reading|stream"),
                      "D": (None, None)},
    # silent channels are dead after the link timeout; the re-dials never get through
    "proxy-stall": {"S": (("PeerUnreachable", "Timeout"),
                          r"(?i)silent|timeout|timed out|" + _NOT_RESUMED),
                    "D": (("PeerUnreachable", "Timeout"),
                          r"(?i)silent|timeout|timed out|" + _NOT_RESUMED)},
    "proxy-reset": {"S": (("PeerUnreachable",), r"(?i)" + _LINK_LOST),
                    "D": (("PeerUnreachable",), r"(?i)" + _LINK_LOST)},
    "cut-long": {"S": (("PeerUnreachable",), _NOT_RESUMED),
                 "D": (("PeerUnreachable",), _NOT_RESUMED)},
    "corrupt-frame": {"D": (None, r"(?i)protocol error"), "S": (None, None)},
    # whichever relay's progress timeout fires, the source's error names it
    "stop-dst-qemu": {"S": (None, r"(?i)progress"), "D": (None, None)},
    # the peer relay's ABORT, not a lost link (the relay flushes it before it exits)
    "drain-src-relay": {"D": (None, r"shutting down")},
    "netns-unreachable": {"S": (("PeerUnreachable", "Timeout"),
                                r"(?i)" + _LINK_LOST + "|" + _NOT_RESUMED),
                          "D": (("PeerUnreachable", "Timeout"),
                                r"(?i)" + _LINK_LOST + "|" + _NOT_RESUMED)},
}

_LINK_TIMEOUT_ARGS = ["--link-timeout", str(FAULT_TIMEOUT_MS)]
_PROGRESS_TIMEOUT_ARGS = ["--progress-timeout", str(FAULT_TIMEOUT_MS)]
MODES.update({
    # QEMU sends in bursts (max-bandwidth): the kill usually falls between two, when the
    # destination QEMU has read every byte written to it.  What the relays then see, the
    # destination QEMU closing its connection after 8 return-path bytes (PONG) and then
    # the source closing its own, differs from the end of a successful return-path
    # migration only in the missing SHUT message.
    "kill-dst-qemu": dict(caps={"return-path": True}, inject="kill-dst-qemu"),
    # at full speed: the destination relay is writing when its QEMU dies
    "kill-dst-qemu-busy": dict(caps={"return-path": True}, inject="kill-dst-qemu",
                               busy=True),
    # no source guest afterwards: the relay sessions must fail within FAIL_WITHIN_S and
    # release their fds; the retry migrates a fresh VM through the same relays
    "kill-src-qemu": dict(caps={"return-path": True}, inject="kill-src-qemu"),
    # The re-dials reach the destination relay through the stalled proxy, which passes
    # nothing on, not even their close: the destination relay holds them until its
    # handshake timeout, made short so that its fds are back within FDS_SETTLE_S.
    "proxy-stall": dict(caps={"return-path": True}, inject="proxy-stall", proxy=True,
                        relay_channels=2,
                        relay_args=_LINK_TIMEOUT_ARGS + _SHORT_RECONNECT_ARGS
                        + ["--handshake-timeout", "2000"],
                        fail_within=RESUME_FAIL_WITHIN_S),
    # the feature off on both relays: a reset fails the session at once, as before
    "proxy-reset": dict(caps={"return-path": True}, inject="proxy-reset", proxy=True,
                        relay_channels=2, relay_args=["--reconnect-timeout", "0"],
                        features_absent=("resume",)),
    # a silent link, longer than link timeout + grace period: both sessions give up
    "cut-long": dict(caps={"return-path": True}, inject="cut-long", proxy=True,
                     relay_channels=4, relay_args=_LINK_TIMEOUT_ARGS + _SHORT_RECONNECT_ARGS,
                     fail_within=RESUME_FAIL_WITHIN_S, fail_after=RESUME_FAIL_AFTER_S,
                     relays_within=True, features=("resume",)),
    "corrupt-frame": dict(caps={"return-path": True}, inject="corrupt-frame", proxy=True,
                          tls=False),
    # full speed, so data keeps coming while the destination QEMU reads nothing
    "stop-dst-qemu": dict(caps={"return-path": True}, inject="stop-dst-qemu", busy=True,
                          relay_args=_PROGRESS_TIMEOUT_ARGS,
                          fail_within=TIMEOUT_FAIL_WITHIN_S + FILL_S, sample=True),
    # SIGTERM mid-migration with a drain period shorter than the migration: new sessions
    # are refused at once, the running one fails cleanly when the period is over (source
    # guest running), and the relay exits 0; no retry (the source relay is gone)
    "drain-src-relay": dict(caps={"return-path": True}, inject="drain-src-relay",
                            relay_args=["--drain-timeout", str(DRAIN_MS)],
                            fail_after=DRAIN_MS / 1000.0 - 0.5,
                            fail_within=DRAIN_MS / 1000.0 + FAULT_TICK_S + FAULT_SLACK_S,
                            retry=False),
    # the same stop with the default drain period (60 s): the migration completes
    "drain-complete": dict(caps={"return-path": True}, drain_during=True),
    "netns-unreachable": dict(caps={"return-path": True}, inject="netns-unreachable",
                              netns=True, relay_channels=2,
                              relay_args=_LINK_TIMEOUT_ARGS + _SHORT_RECONNECT_ARGS,
                              fail_within=RESUME_FAIL_WITHIN_S),
})

# --- Channel re-establishment ("resume") ------------------------------------------------
# Success modes with a fault between the relays: the migration runs slowly (RESUME_PARAMS)
# so that it is still going when the fault hits, after RESUME_FAULT_AFTER bytes of RAM (in
# postcopy: RESUME_POSTCOPY_FAULT_AFTER bytes after the switch to postcopy); once the source
# relay reports the link whole again, QEMU may go at full speed.  Then every check of a
# success mode, and the source session must count reconnects (the sum of its channels').
RESUME_FAULT_AFTER = 24 * Q.MiB
RESUME_POSTCOPY_FAULT_AFTER = 8 * Q.MiB
RESUME_PARAMS = {"downtime-limit": Q.DOWNTIME_LIMIT_MS, "max-bandwidth": Q.SLOW_BANDWIDTH}
RESUME_POSTCOPY_PARAMS = dict(Q.POSTCOPY_PARAMS, **{"max-postcopy-bandwidth":
                                                    Q.SLOW_BANDWIDTH})
RESUME_RECOVER_S = 30.0      # the link must be whole again this soon after the fault
RESUME_CUT_S = 3.0
RESUME_FAULTS = {
    "reset": "reset (RST) the fault proxy's connection of relay channel %(conn)d",
    "reset-all": "reset (RST) every connection in the fault proxy",
    # A silent cut would leave a hole in each connection's byte stream once it ends, which
    # is a protocol error on a plaintext link; an outage that kills the connections is
    # what the relays must ride out whatever the link's security.
    "cut": "cut the link for %(cut_s).0f s in the fault proxy: every connection reset, "
           "every new one refused (the source relay's re-dials fail until it ends)",
    "corrupt-tls": "flip one byte of the TLS link stream (channel 0, source -> destination): "
                   "TLS rejects the record, a channel error",
    "corrupt-payload": "flip one byte of guest page content in a DATA frame on the plaintext "
                       "link (channel 0, source -> destination): the frame fails its "
                       "CRC-32C check, a channel error",
}
# QEMU's own postcopy recovery through the relays: the link is cut for longer than the
# relays' grace period during postcopy, the relays fail the session and close QEMU's
# sockets, both QEMUs pause (postcopy-paused; the guest's memory is split between them);
# then, the link healed, a new session pair carries migrate-recover / migrate resume=true
# (the recovery connection starts with a command, not the file magic) to completion.
RECOVER_SID = "vm1-recover"
MODES.update({
    "postcopy-recover": dict(caps={"postcopy-ram": True}, postcopy=True, proxy=True,
                             relay_channels=2, recover=True,
                             relay_args=["--link-timeout", "3000",
                                         "--reconnect-timeout", "3000"]),
})

MODES.update({
    "reset-channel": dict(caps={"return-path": True}, proxy=True, relay_channels=4,
                          resume_fault="reset", conn=0),
    "reset-all-channels": dict(caps={"return-path": True}, proxy=True, relay_channels=4,
                               resume_fault="reset-all"),
    "cut-short": dict(caps={"return-path": True}, proxy=True, relay_channels=4,
                      resume_fault="cut", cut_s=RESUME_CUT_S),
    "postcopy-cut-short": dict(caps={"postcopy-ram": True}, postcopy=True, proxy=True,
                               relay_channels=4, resume_fault="cut", cut_s=RESUME_CUT_S),
    # a damaged TLS record is a channel error: the channel is re-established
    "corrupt-tls": dict(caps={"return-path": True}, proxy=True, tls=True,
                        resume_fault="corrupt-tls"),
    # the same on a plaintext link, where the frames carry a CRC-32C ("crc32c"); the source
    # guest is paused, so every page is sent once: only the replay of the damaged frame
    # can bring the destination's RAM to what the source has
    "corrupt-payload": dict(caps={"return-path": True}, proxy=True, tls=False,
                            src_paused=True, resume_fault="corrupt-payload",
                            features=("crc32c",)),
})


def fmt_session(se):
    """One line for a relay session object."""
    b = se.get("bytes", {})
    lb = se.get("link-bytes", {})
    s = ("%s %s: channels %s, streams %s, QEMU bytes s->d %d d->s %d, link sent %d "
         "received %d, %s ms, features %s"
         % (se.get("role"), se.get("state"), se.get("channels"), se.get("streams"),
            b.get("source-to-destination", -1), b.get("destination-to-source", -1),
            lb.get("sent", -1), lb.get("received", -1), se.get("duration-ms"),
            ",".join(se.get("features", []))))
    if se.get("reconnects"):
        s += ", reconnects %s (per channel %s)" % (
            se["reconnects"], [c.get("reconnects") for c in se.get("channel-stats", [])])
    if se.get("resuming"):
        s += ", RESUMING"
    if "error" in se:
        s += ", error %s" % (se["error"],)
    return s


class Failure(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Failure(msg)


# --- Fault-injection helpers ---------------------------------------------------------------

class NetNS:
    """A network namespace joined to this one by a veth pair, for the destination relay:
    host side HOST_ADDR/30 here, NS_ADDR/30 inside.  drop() makes the namespace's host
    vanish (every packet in and out of its veth is dropped, nft or iptables inside the
    namespace, so nothing of this host's own firewall is touched); heal() undoes it.
    create() raises Q.Skip when namespaces, veth or a packet filter are not available."""

    TABLE = "migrelay_fault"

    def __init__(self):
        pid = os.getpid()
        self.name = "mrft%d" % pid
        self.host_if = "mrh%d" % (pid % 10000000)
        self.ns_if = "mrn%d" % (pid % 10000000)
        x, y = (pid >> 6) & 0xff, (pid & 0x3f) * 4
        self.host_addr = "10.213.%d.%d" % (x, y + 1)
        self.ns_addr = "10.213.%d.%d" % (x, y + 2)
        self.created = False
        self.dropping = False
        self.tool = None

    def _run(self, argv, ns=False, input=None):
        if ns:
            argv = self.exec_prefix() + argv
        p = subprocess.run(argv, input=input, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, universal_newlines=True)
        return p.returncode, p.stdout.strip()

    def _must(self, argv, ns=False, input=None):
        rc, out = self._run(argv, ns=ns, input=input)
        if rc != 0:
            raise RuntimeError("%s: exit %d: %s" % (" ".join(argv), rc, out))
        return out

    def exec_prefix(self):
        return ["ip", "netns", "exec", self.name]

    def create(self):
        if shutil.which("ip") is None:
            raise Q.Skip("'ip' (iproute2) not found: no network namespace")
        if shutil.which("nft"):
            self.tool = "nft"
        elif shutil.which("iptables"):
            self.tool = "iptables"
        else:
            raise Q.Skip("neither nft nor iptables is installed (apt-get install nftables)")
        # namespaces left behind by test processes that were killed
        rc, out = self._run(["ip", "netns", "list"])
        for line in out.splitlines() if rc == 0 else []:
            name = (line.split() or [""])[0]
            if (name.startswith("mrft") and name[4:].isdigit()
                    and not os.path.exists("/proc/" + name[4:])):
                self._run(["ip", "netns", "del", name])
        rc, out = self._run(["ip", "netns", "add", self.name])
        if rc != 0:
            raise Q.Skip("network namespaces are not permitted here: %s" % out)
        self.created = True
        atexit.register(self.destroy)
        rc, out = self._run(["ip", "link", "add", self.host_if, "type", "veth", "peer",
                             "name", self.ns_if, "netns", self.name])
        if rc != 0:
            raise Q.Skip("cannot create a veth pair: %s" % out)
        self._must(["ip", "addr", "add", self.host_addr + "/30", "dev", self.host_if])
        self._must(["ip", "link", "set", self.host_if, "up"])
        self._must(["ip", "-n", self.name, "addr", "add", self.ns_addr + "/30",
                    "dev", self.ns_if])
        self._must(["ip", "-n", self.name, "link", "set", self.ns_if, "up"])
        self._must(["ip", "-n", self.name, "link", "set", "lo", "up"])
        # the packet filter must work in there before the test relies on it
        self.drop()
        self.heal()
        Q.log("network namespace %s: %s (%s) <-> %s (%s), packet filter %s"
              % (self.name, self.host_addr, self.host_if, self.ns_addr, self.ns_if,
                 self.tool))

    def drop(self):
        """Drop every packet in and out of the namespace's veth."""
        if self.tool == "nft":
            rules = ("table inet %s {\n"
                     " chain in { type filter hook input priority -300; policy accept;"
                     " iifname \"%s\" drop; }\n"
                     " chain out { type filter hook output priority -300; policy accept;"
                     " oifname \"%s\" drop; }\n}\n" % (self.TABLE, self.ns_if, self.ns_if))
            rc, out = self._run(["nft", "-f", "-"], ns=True, input=rules)
        else:
            rc, out = self._run(["iptables", "-I", "INPUT", "-i", self.ns_if, "-j", "DROP"],
                                ns=True)
            if rc == 0:
                rc, out = self._run(["iptables", "-I", "OUTPUT", "-o", self.ns_if,
                                     "-j", "DROP"], ns=True)
        if rc != 0:
            raise Q.Skip("%s cannot filter packets in a namespace here: %s"
                         % (self.tool, out))
        self.dropping = True

    def heal(self):
        if not self.dropping:
            return
        if self.tool == "nft":
            self._must(["nft", "delete", "table", "inet", self.TABLE], ns=True)
        else:
            self._must(["iptables", "-D", "INPUT", "-i", self.ns_if, "-j", "DROP"], ns=True)
            self._must(["iptables", "-D", "OUTPUT", "-o", self.ns_if, "-j", "DROP"], ns=True)
        self.dropping = False

    def destroy(self):
        """Remove the namespace (its veth end, and so the pair, goes with it)."""
        if not self.created:
            return
        self.created = False
        rc, out = self._run(["ip", "netns", "del", self.name])
        if rc != 0:
            Q.log("removing network namespace %s: %s" % (self.name, out))
        self._run(["ip", "link", "del", self.host_if])    # normally gone already


def ns_relay_class(R):
    """relay.Relay whose daemon runs inside a network namespace (argv prefix)."""
    class NsRelay(R.Relay):
        def __init__(self, *args, prefix=(), **kw):
            self.prefix = list(prefix)
            super().__init__(*args, **kw)

        def argv(self):
            return self.prefix + super().argv()
    return NsRelay


class FrameTap:
    """A fault-proxy tap that follows the plaintext link framing of connection 0, source
    to destination (8-byte magic, then frames of a 20-byte header: type, flags, reserved,
    stream, seq, len, and len bytes of payload; migrelay-protocol(7)) and, once armed,
    XORs one byte of the next DATA (0x11) frame: `field` "type" (header byte 0), or
    "payload": a byte of guest page content in the frame's payload.  Guest pages are zero
    but for byte 0 (tests/guest), and a QEMU page header (be64 address|flags) ends in a
    non-zero byte, so a byte with 8 zero bytes before it and 31 after it is page content."""

    MAGIC = 8
    HDR = 20
    DATA = 0x11
    ZEROS = b"\0" * 40

    def __init__(self, field="type", xor=0x40):
        self.field = field
        self.xor = xor
        self.next_hdr = self.MAGIC      # stream offset of the next frame header
        self.hdr = bytearray()          # the header being collected (may span reads)
        self.hdr_start = None
        self.payload = None             # (start, end, type) of the frame being passed
        self.armed = False
        self.done = None                # (offset, old, new, monotonic time)
        self.frames = 0

    def _flip(self, data, offset, at):
        buf = bytearray(data)
        old = buf[at - offset]
        buf[at - offset] ^= self.xor
        self.done = (at, old, buf[at - offset], time.monotonic())
        self.armed = False
        return bytes(buf)

    def __call__(self, conn, direction, offset, data):
        if conn != 0 or direction != "up" or self.done is not None:
            return None
        end = offset + len(data)
        pos = offset
        while pos < end:
            if self.payload is not None:
                pstart, pend, ptype = self.payload
                stop = min(end, pend)
                if self.armed and self.field == "payload" and ptype == self.DATA:
                    lo, hi = max(pos, pstart + 64), stop - 31
                    if hi > lo:
                        i = data.find(self.ZEROS, lo - 8 - offset, hi + 31 - offset)
                        if i >= 0:
                            return self._flip(data, offset, offset + i + 8)
                pos = stop
                if pos >= pend:
                    self.payload = None
                continue
            if pos < self.next_hdr:             # the magic
                pos = min(end, self.next_hdr)
                continue
            if not self.hdr:
                self.hdr_start = pos
            take = data[pos - offset:pos - offset + self.HDR - len(self.hdr)]
            self.hdr += take
            pos += len(take)
            if len(self.hdr) < self.HDR:
                break
            ftype = self.hdr[0]
            flen = int.from_bytes(self.hdr[16:20], "big")
            self.frames += 1
            if (self.armed and self.field == "type" and ftype == self.DATA
                    and self.hdr_start >= offset):
                return self._flip(data, offset, self.hdr_start)
            self.next_hdr = self.hdr_start + self.HDR + flen
            self.hdr = bytearray()
            if flen:
                self.payload = (self.hdr_start + self.HDR, self.next_hdr, ftype)
        return None


class FaultMixin:
    """Case methods of the fault modes (see FAULT_INJECTIONS)."""

    def cleanup_faults(self):
        if self.proxy is not None:
            try:
                self.proxy.stop()
            except Exception as e:
                Q.log("stopping the fault proxy: %s" % e)
            self.proxy = None
        if self.netns is not None:
            self.netns.destroy()
            self.netns = None

    def relay_baselines(self):
        """fds and RSS of every relay before the first session."""
        self.fd_base = {}
        self.rss_base = {}
        for r in self.relays:
            self.fd_base[r.name] = r.fd_count()
            self.rss_base[r.name] = r.rss_kib()
        Q.log("relay baselines: %s" % ", ".join(
            "%s %d fds, RSS %d KiB" % (r.name, self.fd_base[r.name], self.rss_base[r.name])
            for r in self.relays))

    def check_fds_released(self):
        """Every live relay is back at its baseline fd count (within FDS_SETTLE_S)."""
        for r in self.relays:
            if not r.is_running() or r.pid in self.stopped:
                continue
            deadline = time.monotonic() + FDS_SETTLE_S
            while True:
                n = r.fd_count()
                if n <= self.fd_base[r.name]:
                    break
                if time.monotonic() > deadline:
                    fds = []
                    for fd in sorted(os.listdir("/proc/%d/fd" % r.pid), key=int):
                        try:
                            fds.append("%s->%s" % (fd, os.readlink(
                                "/proc/%d/fd/%s" % (r.pid, fd))))
                        except OSError:
                            pass
                    raise Failure("relay %s holds %d fds %.0f s after the failure, %d "
                                  "before the session: %s" % (r.name, n, FDS_SETTLE_S,
                                                              self.fd_base[r.name],
                                                              " ".join(fds)))
                time.sleep(0.1)
            Q.log("relay %s: %d fds (baseline %d)" % (r.name, n, self.fd_base[r.name]))

    def check_dst_never_started(self):
        """The destination guest never ran: no RESUME event; if its QEMU is still
        alive, it is not running."""
        q = self.dst
        if q.alive() and q.qmp is not None:
            try:
                q.qmp.pump()
                st = q.run_state(timeout=5)
                check(st != "running", "destination guest is running (%s)" % st)
                Q.log("destination QEMU still alive, run state %s" % st)
            except (ConnectionError, OSError, TimeoutError) as e:
                Q.log("destination QEMU: %s" % e)
        else:
            Q.log("destination QEMU exited with %s"
                  % (q.proc.returncode if q.proc else None))
        resumes = [e for e in (q.qmp.events if q.qmp is not None else [])
                   if e["event"] == "RESUME"]
        check(not resumes, "destination QEMU sent RESUME: its guest started")

    def wait_relay_finals(self, t_fault, within):
        """Wait until both relay sessions are in a final state; {key: (session, seconds
        from the fault)}.  A relay that died is recorded as (None, None)."""
        finals = {}
        fault_wall = time.time() - (time.monotonic() - t_fault)
        for key, r in (("S", self.S), ("D", self.D)):
            if not r.is_running():
                finals[key] = (None, None)
                continue
            se = r.wait_state(self.sid, Q.FINAL_STATES,
                              timeout=max(1.0, t_fault + within - time.monotonic()) + 10)
            t_final = time.monotonic() - t_fault
            # the relay's SESSION_STATE event says when exactly (wall clock)
            ev = self._final_event(r, se.get("state"))
            if ev is not None:
                ts = ev.get("timestamp", {})
                t_final = ts.get("seconds", 0) + ts.get("microseconds", 0) / 1e6 - fault_wall
            finals[key] = (se, t_final)
            Q.log("%s relay session (final %.3f s after the fault): %s"
                  % (r.name, t_final, fmt_session(se)))
        return finals

    def _final_event(self, r, state, timeout=2.0):
        deadline = time.monotonic() + timeout
        while True:
            for ev in r.events():
                d = ev.get("data", {})
                if (ev.get("event") == "SESSION_STATE" and d.get("id") == self.sid
                        and d.get("state") == state):
                    return ev
            if time.monotonic() > deadline:
                return None
            time.sleep(0.02)

    def source_failed_at(self, t_fault, t_polled):
        """Seconds from the fault to the source QEMU's MIGRATION failed event (its QMP
        timestamp), else to when polling saw `failed`."""
        self.src.qmp.pump()
        fault_wall = time.time() - (time.monotonic() - t_fault)
        for ev in self.src.qmp.events:
            if ev["event"] == "MIGRATION" and ev.get("data", {}).get("status") == "failed":
                ts = ev["timestamp"]
                t = ts["seconds"] + ts["microseconds"] / 1e6 - fault_wall
                if 0 <= t <= t_polled + 0.5:
                    return t
        return t_polled

    def assert_relay_finals(self, inject, finals):
        """Both sessions end as FAULT_INJECTIONS says, with error class and description
        as FAULT_EXPECT says."""
        import re
        what, want = INJECTIONS[inject]
        expect = FAULT_EXPECT.get(inject, {})
        for key, r in (("S", self.S), ("D", self.D)):
            w = want[key]
            if w is None:
                continue
            se, _ = finals[key]
            check(se is not None, "%s relay died (status %s) after: %s"
                  % (r.name, r.proc.returncode, what))
            check(se.get("state") == w, "%s relay session ended %r, expected %r (%s)"
                  % (r.name, se.get("state"), w, what))
            if se.get("state") == "failed":
                err = se.get("error")
                check(isinstance(err, dict) and err.get("class") and err.get("desc"),
                      "%s relay: failed session has no error object: %r" % (r.name, err))
                classes, pattern = expect.get(key, (None, None))
                if classes is not None:
                    check(err["class"] in classes, "%s relay: error class %s, expected %s "
                          "(%s)" % (r.name, err["class"], "/".join(classes), err["desc"]))
                if pattern is not None:
                    check(re.search(pattern, err["desc"]), "%s relay: error description "
                          "%r does not match %r" % (r.name, err["desc"], pattern))

    def migrate_until_inject_point(self, params, inject_after, relays=None):
        """Start the migration and wait until inject_after bytes of RAM went;
        check that the relay sessions (all of them unless `relays`) are active."""
        t0 = self.begin_migration(params)
        next_line = 0
        while True:
            info = self.src.query_migrate()
            st = info.get("status")
            check(st not in Q.FINAL_STATES, "source migration %s before the failure was "
                  "injected: %s" % (st, info.get("error-desc", "")))
            now = time.monotonic()
            if now >= next_line:
                Q.log(self.progress_line(t0, info))
                next_line = now + 1.0
            if st == "active" and info.get("ram", {}).get("transferred", 0) >= inject_after:
                break
            check(now - t0 < 30, "migration did not get going in 30 s")
            time.sleep(0.05)
        Q.log(self.progress_line(t0, info))
        for r in () if self.direct else (relays or (self.S, self.D)):
            se = r.session(self.sid)
            check(se.get("state") == "active", "%s relay session %r mid-migration"
                  % (r.name, se.get("state")))
            self.check_features(r, se)
        return t0

    def check_features(self, r, se):
        """The link features the mode wants negotiated (features) or not (features_absent)."""
        have = se.get("features", [])
        for f in self.m.get("features", ()):
            check(f in have, "%s relay session features %s lack %r" % (r.name, have, f))
        for f in self.m.get("features_absent", ()):
            check(f not in have, "%s relay session features %s include %r (its relay_args "
                  "%s)" % (r.name, have, f, self.m.get("relay_args")))

    def inject_fault(self, inject):
        """Inject the fault; return the monotonic time at which it took effect."""
        if inject == "kill-dst-qemu":
            ti = time.monotonic()
            self.dst.kill()
        elif inject == "kill-src-qemu":
            ti = time.monotonic()
            self.src.kill()
        elif inject == "proxy-stall":
            ti = time.monotonic()
            self.proxy.stall()
        elif inject == "proxy-reset":
            ti = time.monotonic()
            n = self.proxy.reset_all()
            want = self.m.get("relay_channels", 1)
            check(n == want, "the proxy reset %d connections, the link has %d channels"
                  % (n, want))
        elif inject == "cut-long":
            ti = time.monotonic()
            self.proxy.cut()
        elif inject == "corrupt-frame":
            off, old, new, ti = self.fire_tap()
            Q.log("corrupted link byte %d (%s of a DATA frame) of channel 0: 0x%02x -> "
                  "0x%02x" % (off, self.tap.field, old, new))
        elif inject == "stop-dst-qemu":
            ti = time.monotonic()
            os.kill(self.dst.pid, signal.SIGSTOP)
            self.stopped.append(self.dst.pid)
        elif inject == "netns-unreachable":
            ti = time.monotonic()
            self.netns.drop()
        elif inject == "drain-src-relay":
            ti = time.monotonic()
            self.stop_relay_draining(self.S)
        else:
            raise Failure("unknown fault %r" % inject)
        return ti

    def fire_tap(self):
        """Arm the FrameTap and wait until it has damaged a DATA frame; its record
        (offset, old byte, new byte, monotonic time)."""
        self.tap.armed = True
        deadline = time.monotonic() + 10
        while self.tap.done is None:
            check(time.monotonic() < deadline, "no DATA frame went through the proxy "
                  "in 10 s")
            time.sleep(0.005)
        return self.tap.done

    def stop_relay_draining(self, r):
        """SIGTERM relay r; while it drains, a new session must be refused at once."""
        r.proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        try:
            se = r.cmd("session-outgoing", id="late", peer=self.peer_addr(),
                       listen="unix:" + os.path.join(self.workdir, "late.sock"))
            raise Failure("relay %s, draining, accepted a new session: %s"
                          % (r.name, fmt_session(se)))
        except self.R.RelayError as e:
            check(e.cls == "GenericError" and "shutting down" in e.desc,
                  "relay %s, draining, refused a new session with %s: %s"
                  % (r.name, e.cls, e.desc))
            Q.log("relay %s is draining: a new session was refused in %.3f s (%s)"
                  % (r.name, time.monotonic() - t0, e.desc))
        se = r.session(self.sid)
        check(se.get("state") == "active", "relay %s, draining, has the running session "
              "%s, expected it active until the migration ends" % (r.name, fmt_session(se)))

    def check_relay_exit(self, r, timeout):
        """A relay stopped by SIGTERM exits by itself, with status 0."""
        try:
            rc = r.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise Failure("relay %s still runs %.0f s after its migrations ended"
                          % (r.name, timeout))
        check(rc == 0, "relay %s exited with status %s after SIGTERM" % (r.name, rc))
        Q.log("relay %s exited with status 0" % r.name)

    def wait_source_failed(self, t_fault, within, sample=False):
        """Poll the source QEMU until `failed`; with sample, also record (t, transferred,
        RSS of each relay) about every 0.1 s.  Returns (info, samples)."""
        samples = []
        deadline = t_fault + within + 10
        while True:
            info = self.src.query_migrate()
            st = info.get("status")
            now = time.monotonic()
            if sample and st not in Q.FINAL_STATES:    # (a failed one reports no RAM)
                rss = {}
                for r in self.relays:
                    if r.is_running():
                        try:
                            rss[r.name] = r.rss_kib()
                        except OSError:
                            pass
                samples.append((now - t_fault, info.get("ram", {}).get("transferred", 0),
                                rss))
            if st == "failed":
                return info, samples
            if st in Q.FINAL_STATES:
                raise Failure("source migration %s after the fault, expected failed%s"
                              % (st, ": " + info["error-desc"] if "error-desc" in info
                                 else ""))
            if now > deadline:
                raise Failure("source migration still %r %.1f s after the fault"
                              % (st, now - t_fault))
            time.sleep(0.1 if sample else 0.05)

    def check_bounded(self, samples):
        """stop-dst-qemu: relays' RSS within budget, the source held back."""
        for r in self.relays:
            peak = max([s[2].get(r.name, 0) for s in samples] or [0])
            base = self.rss_base[r.name]
            Q.log("relay %s RSS: baseline %d KiB, peak %d KiB while the destination QEMU "
                  "was stopped (+%d KiB)" % (r.name, base, peak, peak - base))
            check(peak <= base + RSS_BUDGET_KIB, "relay %s grew to %d KiB RSS (baseline %d "
                  "KiB, budget +%d KiB)" % (r.name, peak, base, RSS_BUDGET_KIB))
        settled = [s for s in samples if s[0] >= BACKPRESSURE_SETTLE_S]
        check(len(settled) >= 5, "only %d samples more than %.1f s after the stop: the "
              "failure came too early to see backpressure" % (len(settled),
                                                           BACKPRESSURE_SETTLE_S))
        growth = settled[-1][1] - settled[0][1]
        Q.log("source QEMU transferred %s at the stop, %s at +%.1f s, %s at +%.1f s "
              "(growth %s over the last %.1f s)"
              % (Q.fmt_bytes(samples[0][1]), Q.fmt_bytes(settled[0][1]), settled[0][0],
                 Q.fmt_bytes(settled[-1][1]), settled[-1][0], Q.fmt_bytes(growth),
                 settled[-1][0] - settled[0][0]))
        check(growth <= BACKPRESSURE_MAX_GROWTH, "the source QEMU was not held back: it "
              "sent %s more between +%.1f s and +%.1f s after the destination QEMU stopped"
              % (Q.fmt_bytes(growth), settled[0][0], settled[-1][0]))

    def run_fault(self):
        inject = self.m["inject"]
        what, want = INJECTIONS[inject]
        busy = self.m.get("busy", False)
        within = self.m.get("fail_within", FAIL_WITHIN_S)
        if inject == "corrupt-frame":
            self.tap = FrameTap(field="type", xor=0x40)
            self.proxy.set_tap(self.tap)
        self.relay_baselines()
        t0 = self.migrate_until_inject_point(Q.BUSY_PARAMS if busy else Q.SLOW_PARAMS,
                                             INJECT_AFTER_BUSY if busy else INJECT_AFTER)
        Q.log("inject: %s" % what)
        ti = self.inject_fault(inject)
        self.timing("failure injected after", ti - t0)

        if inject == "kill-src-qemu":
            # no source guest any more: the relays must fail their sessions promptly
            finals = self.wait_relay_finals(ti, within)
            t_rel = max(t for _, t in finals.values() if t is not None)
            self.timing("relay sessions final after", t_rel)
            self.check_dst_never_started()
            self.check_fds_released()
            self.assert_relay_finals(inject, finals)
            check(t_rel <= within, "relay sessions took %.1f s (> %.0f s) to fail"
                  % (t_rel, within))
            return

        info, samples = self.wait_source_failed(ti, within, sample=self.m.get("sample"))
        t_fail = self.source_failed_at(ti, time.monotonic() - ti)
        if inject == "drain-src-relay":
            self.check_relay_exit(self.S, 10)
        self.timing("source QEMU failed after", t_fail)
        Q.log("source error-desc: %s" % info.get("error-desc"))
        Q.log("source migration states: %s" % " ".join(self.src.migration_events()))
        if inject == "cut-long":
            self.proxy.uncut()
            Q.log("link cut ended (the source QEMU has failed)")
        check(t_fail <= within, "source took %.1f s (> %.0f s) to report failed"
              % (t_fail, within))
        if "fail_after" in self.m:
            check(t_fail >= self.m["fail_after"], "source failed %.1f s after the fault, "
                  "before the grace period for re-establishing channels (%.1f s) was over"
                  % (t_fail, self.m["fail_after"]))
        if self.m.get("sample"):
            self.check_bounded(samples)
        ok, why = Q.guest_runs(self.src, timeout=5)
        check(ok, "source guest after the failure: %s" % why)
        Q.log("source guest: %s" % why)
        finals = self.wait_relay_finals(ti, within)
        self.timing("failure handled (inject -> relay final)",
                    max([t for _, t in finals.values() if t is not None] or [0]))
        if self.m.get("relays_within"):
            for key, (se, t) in finals.items():
                check(t is None or t <= within, "%s relay session final %.1f s after the "
                      "fault (> %.0f s)" % (key, t, within))
        if self.dst.pid in self.stopped:
            # let the destination QEMU see the closed connection now
            os.kill(self.dst.pid, signal.SIGCONT)
            self.stopped.remove(self.dst.pid)
            time.sleep(0.5)
        self.check_dst_never_started()
        self.check_fds_released()
        self.assert_relay_finals(inject, finals)

    def run_retry(self):
        """The next migration of the same VM, through the same relays (healed link), with a
        new session id and a fresh destination QEMU, must succeed."""
        Q.log("--- retry: migrate again through the same relays, session %s" % RETRY_SID)
        t0 = time.monotonic()
        if self.proxy is not None:
            self.proxy.clear()
        if self.netns is not None:
            self.netns.heal()
        old = self.dst
        if old.pid in self.stopped:
            os.kill(old.pid, signal.SIGCONT)
            self.stopped.remove(old.pid)
        old.stop(timeout=5)
        if not self.src.alive():
            # kill-src-qemu: that VM is gone; a fresh one goes through the same relays
            self.src = Q.Qemu(self.workdir, "src2", self.image, mem_mib=MEM_MIB)
            self.qemus.append(self.src)
            self.src.start(skip_on_failure=False)
            self.src.wait_serial(b"B", timeout=30)
        self.dst = Q.Qemu(self.workdir, "dst2", self.image, mem_mib=MEM_MIB, incoming=True)
        self.qemus.append(self.dst)
        self.dst.start(skip_on_failure=False)
        self.timing("retry: QEMU(s) started", time.monotonic() - t0)
        self.sid = RETRY_SID
        self.run_success()
        ids = sorted(se.get("id") for se in self.S.cmd("query-sessions"))
        check(SID in ids and RETRY_SID in ids, "source relay sessions %s" % ids)
        Q.log("retry completed through the same relays; sessions %s" % ", ".join(ids))


class Case(FaultMixin):
    def __init__(self, mode, direct=False, keep=False):
        self.mode = mode
        self.m = MODES[mode]
        # Relays run TLS 1.3 + SCRAM-SHA-256-PLUS unless the mode says
        # tls=False or MIGRELAY_TEST_PLAINTEXT=1 asks for plaintext links.
        self.secure = self.m.get("tls", os.environ.get(
            "MIGRELAY_TEST_PLAINTEXT") != "1")
        self.direct = direct
        self.keep = keep
        self.workdir = None
        self.qemus = []
        self.relays = []
        self.timings = []
        self.src = self.dst = None
        self.S = self.D = None
        self.stopped = []       # pids we sent SIGSTOP (SIGCONT before teardown)
        self.sid = SID          # relay session id (a retry after a failure uses another)
        self.proxy = None       # FaultProxy between the relays (fault modes)
        self.netns = None       # NetNS holding the destination relay (fault modes)
        self.image = None

    # --- bookkeeping

    def timing(self, what, seconds):
        self.timings.append((what, seconds))
        Q.log("%-32s %8.3f s" % (what, seconds))

    def setup_dir(self):
        base = os.environ.get("MIGRELAY_TEST_TMPDIR") or "/tmp"
        if len(base) > 60:      # unix socket paths must stay below 108 bytes
            base = "/tmp"
        self.workdir = tempfile.mkdtemp(prefix="mr-%s-" % self.mode, dir=base)
        Q.log("work directory %s" % self.workdir)

    def teardown(self, failed):
        """Stop everything; print logs and keep the directory on failure.

        Returns True if the test failed (a relay that crashed or ignored SIGTERM fails
        an otherwise passing test)."""
        for pid in self.stopped:
            try:
                os.kill(pid, signal.SIGCONT)
            except OSError:
                pass
        for q in self.qemus:
            try:
                q.stop(timeout=5)
            except Exception as e:
                Q.log("stopping %s: %s" % (q.name, e))
        for r in self.relays:
            try:
                r.stop()
            except Exception as e:
                Q.log("stopping relay %s: %s" % (getattr(r, "name", "?"), e))
            if r.exited_abnormally():
                print("FAIL: relay %s exited abnormally (status %s%s)"
                      % (r.name, r.proc.returncode,
                         ", SIGTERM ignored" if r.stop_timed_out else ""), flush=True)
                failed = True
        if failed:
            for q in self.qemus:
                print("----- %s (%s) -----\n%s" % (q.name, q.log_path, q.log_tail()))
            for r in self.relays:
                lp = getattr(r, "log_path", None)
                if lp and os.path.exists(lp):
                    with open(lp, "rb") as f:
                        data = f.read()[-20000:].decode("utf-8", "replace")
                    print("----- relay %s (%s), last 20000 bytes -----\n%s"
                          % (getattr(r, "name", "?"), lp, data))
        self.cleanup_faults()
        if self.workdir:
            if failed or self.keep:
                Q.log("kept %s" % self.workdir)
            else:
                shutil.rmtree(self.workdir, ignore_errors=True)
        return failed

    # --- setup

    def start_relays(self):
        try:
            import relay as R
        except ImportError as e:
            Q.skip("tests/lib/relay.py not available: %s" % e)
        self.R = R
        t0 = time.monotonic()
        tls = {"src": None, "dst": None}
        extra = {"src": [], "dst": []}
        dst_listen = "127.0.0.1:0"
        if self.m.get("netns"):
            # the destination relay lives in a network namespace of its own
            self.netns = NetNS()
            self.netns.create()
            dst_listen = "%s:0" % self.netns.ns_addr
            self.timing("network namespace %s made" % self.netns.name, time.monotonic() - t0)
            t0 = time.monotonic()
        if self.secure and self.netns is not None:
            tls, extra = Q.secure_relay_config(
                os.path.join(self.workdir, "pki"), R,
                ("127.0.0.1", "localhost", self.netns.ns_addr))
            self.timing("test PKI and SCRAM verifier made", time.monotonic() - t0)
            t0 = time.monotonic()
        elif self.secure:
            tls, extra = Q.secure_relay_config(os.path.join(self.workdir, "pki"), R)
            self.timing("test PKI and SCRAM verifier made", time.monotonic() - t0)
            t0 = time.monotonic()
        # The destination relay moves channel data on two data threads, the
        # source on its main thread ("auto" gives none on a 2-CPU machine):
        # every QEMU case runs both data planes.
        extra["dst"] = ["--data-threads", "2"] + extra["dst"]
        for k in extra:
            extra[k] = extra[k] + self.m.get("relay_args", [])
        if self.netns is not None:
            self.D = ns_relay_class(R)(self.workdir, "dst", tls_dir=tls["dst"],
                                       extra_args=extra["dst"], listen=dst_listen,
                                       prefix=self.netns.exec_prefix())
        else:
            self.D = R.Relay(self.workdir, "dst", tls_dir=tls["dst"], extra_args=extra["dst"])
        self.relays.append(self.D)
        # With authentication on, the source relay only dials out (--no-listen): a
        # listening relay would need verifiers of its own.
        self.S = R.Relay(self.workdir, "src", tls_dir=tls["src"], extra_args=extra["src"],
                         listen=None if self.secure else "127.0.0.1:0")
        self.relays.append(self.S)
        self.D.start()
        self.S.start()
        self.timing("relays started", time.monotonic() - t0)
        if self.m.get("proxy"):
            # the source relay dials the proxy, the proxy the destination relay
            import faultproxy
            self.proxy = faultproxy.FaultProxy(
                self.D.peer_addr(), name="link",
                verbose=os.environ.get("MIGRELAY_TEST_PROXY_VERBOSE") == "1").start()
            Q.log("fault proxy %s -> %s" % (self.proxy.address, self.D.peer_addr()))

    def peer_addr(self):
        """Where the source relay dials: the destination relay, or the fault proxy."""
        return self.proxy.address if self.proxy is not None else self.D.peer_addr()

    def start_qemus(self, image):
        t0 = time.monotonic()
        self.dst = Q.Qemu(self.workdir, "dst", image, mem_mib=MEM_MIB, incoming=True)
        self.qemus.append(self.dst)
        self.src = Q.Qemu(self.workdir, "src", image, mem_mib=MEM_MIB)
        self.qemus.append(self.src)
        self.src.start()                        # Skip if QEMU cannot run at all
        self.dst.start(skip_on_failure=False)   # the same QEMU: now a failure is real
        Q.log("QEMU %s, accelerator args %s, machine %s"
              % (".".join(str(self.src.qmp.version.get(k)) for k in ("major", "minor", "micro")),
                 " ".join(Q.accel_args()), self.src.machine))
        self.src.wait_serial(b"B", timeout=30)
        self.timing("QEMUs started, guest dirtying", time.monotonic() - t0)

    def configure_qemus(self, params):
        caps = {"events": True}      # MIGRATION events: the full state sequence
        caps.update(self.m.get("caps", {}))
        if not self.m.get("postcopy") and "auto-converge" not in caps:
            # The guest dirties all its RAM all the time: when the path is slow
            # (a loaded machine, sanitizer builds), let QEMU throttle the vCPU as
            # an operator would, so precopy still converges instead of timing out.
            caps["auto-converge"] = True
        for q in (self.src, self.dst):
            for c in caps:
                if not q.has_capability(c):
                    Q.skip("%s lacks the migration capability %r" % (q.name, c))
            try:
                q.set_caps(caps)
            except Q.QMPError as e:
                if "postcopy-ram" in caps and q is self.dst:
                    Q.skip("postcopy cannot be enabled on the destination (userfaultfd?): %s"
                           % e.desc)
                raise
            p = dict(params)
            p.update(self.m.get("params", {}))
            q.set_params(p)
        if self.m.get("run_dst") and self.dst.has_capability("postcopy-blocktime"):
            # The destination measures how long its vCPU waited for requested pages:
            # the round trip of page requests through the relays.
            self.dst.set_caps({"postcopy-blocktime": True})

    # --- progress

    def progress_line(self, t0, info):
        ram = info.get("ram", {})
        s = "t=%5.1fs src=%-16s sent=%9s remaining=%9s pass=%s" % (
            time.monotonic() - t0, info.get("status"), Q.fmt_bytes(ram.get("transferred", 0)),
            Q.fmt_bytes(ram.get("remaining", 0)), ram.get("dirty-sync-count", "-"))
        if self.S is not None:
            try:
                se = self.S.session(self.sid)
                b = se.get("bytes", {})
                s += " | relay %s s->d=%s d->s=%s" % (
                    se.get("state"), Q.fmt_bytes(b.get("source-to-destination", 0)),
                    Q.fmt_bytes(b.get("destination-to-source", 0)))
            except Exception as e:
                s += " | relay: %s" % e
        return s

    # --- the migration

    def begin_migration(self, params):
        """Common part: configure, open the path, send `migrate`; return t0."""
        d = self.workdir
        # a retry (new session id) gets sockets of its own
        sfx = "" if self.sid == SID else "-" + self.sid
        dst_uri = "unix:%s/dst-qemu%s.sock" % (d, sfx)
        self.configure_qemus(params)
        self.dst.migrate_incoming(dst_uri)
        if self.direct:
            uri = dst_uri
        else:
            t0 = time.monotonic()
            se = self.D.cmd("session-incoming", id=self.sid, qemu=dst_uri)
            check(se.get("state") == "waiting",
                  "destination session state %r after session-incoming" % se.get("state"))
            args = dict(id=self.sid, peer=self.peer_addr(),
                        listen="unix:%s/src-relay%s.sock" % (d, sfx))
            if "relay_channels" in self.m:
                args["channels"] = self.m["relay_channels"]
            se = self.S.cmd("session-outgoing", **args)
            check(se.get("state") == "ready",
                  "source session state %r after session-outgoing" % se.get("state"))
            if "relay_channels" in self.m:
                check(se.get("channels") == self.m["relay_channels"],
                      "session has %r channels, asked for %d"
                      % (se.get("channels"), self.m["relay_channels"]))
            self.timing("relay sessions ready", time.monotonic() - t0)
            uri = args["listen"]
        Q.log("source: migrate uri=%s" % uri)
        t0 = time.monotonic()
        self.src.migrate(uri)
        return t0

    # --- resume modes: a fault between the relays during a migration that must complete

    def resume_step(self, fault, st, info, now, postcopy_base):
        """Called on every poll of run_success: inject the mode's fault once the migration
        is far enough, then watch the source session until the link is whole again and
        let QEMU go at full speed."""
        f = self.fault
        ram = info.get("ram", {}).get("transferred", 0)
        if f["ti"] is None:
            if self.m.get("postcopy"):
                ready = (st == "postcopy-active" and postcopy_base is not None
                         and ram >= postcopy_base + RESUME_POSTCOPY_FAULT_AFTER)
            else:
                ready = st == "active" and ram >= RESUME_FAULT_AFTER
            if ready:
                f["state"] = st
                f["ti"] = self.inject_resume_fault(fault)
                self.timing("fault injected after", f["ti"] - f["t0"])
            return
        if f["recovered"] is not None:
            return
        se = self.S.session(self.sid)
        if se.get("resuming"):
            f["resuming_seen"] = True
        if (se.get("reconnects", 0) >= 1 and se.get("resuming") is False
                and now >= f["ti"] + self.m.get("cut_s", 0)):
            f["recovered"] = now
            f["recovered_se"] = se
            self.timing("link whole again after the fault", now - f["ti"])
            Q.log("source relay session: %s" % fmt_session(se))
            if self.m.get("postcopy"):
                self.src.set_params({"max-postcopy-bandwidth": 0})
            else:
                self.src.set_params({"max-bandwidth": Q.FAST_BANDWIDTH})
            Q.log("QEMU may go at full speed now")
        check(now - f["ti"] < RESUME_RECOVER_S, "the link was not whole again %.0f s after "
              "the fault: %s" % (RESUME_RECOVER_S, fmt_session(se)))

    def inject_resume_fault(self, fault):
        """Inject a resume mode's fault; return the monotonic time it took effect."""
        Q.log("inject: " + RESUME_FAULTS[fault] % self.m)
        want = self.m.get("relay_channels", 1)
        if fault == "reset":
            ti = time.monotonic()
            check(self.proxy.reset(self.m["conn"]), "proxy connection %d was not open"
                  % self.m["conn"])
        elif fault == "reset-all":
            ti = time.monotonic()
            n = self.proxy.reset_all()
            check(n == want, "the proxy reset %d connections, the link has %d channels"
                  % (n, want))
        elif fault == "cut":
            ti = time.monotonic()
            n = self.proxy.cut(self.m["cut_s"], reset=True)
            check(n == want, "the cut reset %d connections, the link has %d channels"
                  % (n, want))
        elif fault == "corrupt-tls":
            off = self.proxy.corrupt(conn=0, after=CORRUPT_AHEAD, direction="up", xor=0x5A)
            done = self.proxy.wait_corrupted(timeout=10)
            check(done, "the corrupted byte (offset %d) never went through the proxy" % off)
            ti = done[0]["time"]
            Q.log("corrupted link byte %(offset)d of channel %(conn)d %(direction)s: "
                  "0x%(old)02x -> 0x%(new)02x" % done[0])
        elif fault == "corrupt-payload":
            off, old, new, ti = self.fire_tap()
            Q.log("corrupted link byte %d (guest page content in a DATA frame) of channel "
                  "0: 0x%02x -> 0x%02x" % (off, old, new))
        else:
            raise Failure("unknown resume fault %r" % fault)
        return ti

    def check_resumed(self, fault, se, dse):
        """After a completed resume mode: the fault hit mid-migration and the source
        session re-established channels (its count is the sum of its channels')."""
        f = self.fault
        check(f["ti"] is not None, "the fault was never injected: the migration completed "
              "before it was far enough")
        Q.log("fault injected while the source was %s" % f["state"])
        for r, x in ((self.S, se), (self.D, dse)):
            for feat in ("resume",) + tuple(self.m.get("features", ())):
                check(feat in x.get("features", []), "%s relay session features %s lack "
                      "%s" % (r.name, x.get("features"), feat))
            check(x.get("resuming") is False, "%s relay session completed with resuming %r"
                  % (r.name, x.get("resuming")))
        n = se.get("reconnects", 0)
        check(n >= 1, "the source relay session counts %r reconnects after: %s"
              % (n, RESUME_FAULTS[fault] % self.m))
        # the per-channel counts of the active session when the link was whole again
        rse = f["recovered_se"]
        check(rse is not None and rse.get("state") == "active", "the source session was "
              "not seen active with its link whole again after the fault: %s"
              % (fmt_session(rse) if rse else None))
        per = [c.get("reconnects", 0) for c in rse.get("channel-stats", [])]
        Q.log("reconnects: source session %s (per channel %s when the link was whole "
              "again), destination session %s" % (n, per, dse.get("reconnects")))
        check(sum(per) == rse.get("reconnects") and
              len(per) == self.m.get("relay_channels", 1),
              "source session reconnects %s, but its channel-stats say %s"
              % (rse.get("reconnects"), per))
        if fault == "reset" and self.m["conn"] == 0:
            check(per[0] >= 1, "channel 0 was reset, its channel-stats count no reconnect: "
                  "%s" % per)
        if fault in ("reset-all", "cut"):
            check(all(x >= 1 for x in per), "every channel was reset, channel-stats "
                  "reconnects %s" % per)
        if fault == "cut":
            check(f["resuming_seen"], "the source session never reported resuming during "
                  "the %.0f s outage" % self.m["cut_s"])
            refused = self.proxy.stats()["refused"]
            check(refused >= 1, "the source relay did not re-dial during the outage (the "
                  "proxy refused %d connections)" % refused)
            Q.log("the proxy refused %d re-dials during the outage" % refused)

    def run_success(self):
        run_dst = self.m.get("run_dst", False)
        fault = None if self.direct else self.m.get("resume_fault")
        if run_dst:
            params = Q.POSTCOPY_RUN_PARAMS
        elif self.m.get("postcopy"):
            params = RESUME_POSTCOPY_PARAMS if fault else Q.POSTCOPY_PARAMS
        else:
            params = RESUME_PARAMS if fault or self.m.get("drain_during") else \
                Q.FAST_PARAMS
        if fault == "corrupt-payload":
            self.tap = FrameTap(field="payload", xor=0x5A)
            self.proxy.set_tap(self.tap)
        if self.m.get("src_paused"):
            self.src.execute("stop")
            Q.log("source guest paused: every page is sent once")
        t0 = self.begin_migration(params)
        self.fault = {"t0": t0, "ti": None, "recovered": None, "recovered_se": None,
                      "resuming_seen": False, "state": None}
        postcopy_base = None
        postcopy_started = None
        drain = self.m.get("drain_during") and not self.direct
        drained = None
        next_line = 0
        deadline = t0 + 75
        # A slow path (sanitizer build, TLS, a loaded machine) may never move the
        # guest's dirty RAM within 2 s of downtime, and auto-converge is slow to
        # bite under TCG: after a while allow a longer switchover, as an operator
        # would, doubling it every few seconds.  These tests check the relays'
        # byte stream, not QEMU's convergence.
        escalate_at = None if self.m.get("postcopy") else t0 + CONVERGE_PATIENCE_S
        downtime_ms = Q.DOWNTIME_LIMIT_MS
        while True:
            info = self.src.query_migrate()
            st = info.get("status")
            if st == "completed":
                break
            if (escalate_at is not None and st == "active"
                    and time.monotonic() >= escalate_at
                    and downtime_ms < MAX_DOWNTIME_LIMIT_MS):
                downtime_ms = min(downtime_ms * 2, MAX_DOWNTIME_LIMIT_MS)
                self.src.set_params({"downtime-limit": downtime_ms})
                Q.log("not converged after %.0f s: downtime-limit raised to %d ms"
                      % (time.monotonic() - t0, downtime_ms))
                escalate_at = time.monotonic() + CONVERGE_STEP_S
            if st in ("failed", "cancelled"):
                raise Failure("source migration %s: %s" % (st, info.get("error-desc", "")))
            now = time.monotonic()
            if (self.m.get("postcopy") and postcopy_started is None and st == "active"
                    and info.get("ram", {}).get("transferred", 0) >= POSTCOPY_AFTER):
                self.src.execute("migrate-start-postcopy")
                postcopy_started = now
                postcopy_base = info.get("ram", {}).get("transferred", 0)
                self.timing("postcopy requested after", now - t0)
                if run_dst:
                    # Still "inmigrate": cont makes QEMU start the guest at POSTCOPY_RUN.
                    self.dst.execute("cont")
                    Q.log("destination: cont (guest starts at the postcopy switchover)")
            if fault is not None:
                self.resume_step(fault, st, info, now, postcopy_base)
            if (drain and drained is None and st == "active"
                    and info.get("ram", {}).get("transferred", 0) >= INJECT_AFTER):
                Q.log("SIGTERM the source relay (drain-timeout: default, 60 s)")
                drained = now
                self.stop_relay_draining(self.S)
                # the session was seen active while draining: now let QEMU finish
                self.src.set_params({"max-bandwidth": Q.FAST_BANDWIDTH})
            if now >= next_line:
                Q.log(self.progress_line(t0, info))
                next_line = now + 1.0
            if now > deadline:
                raise Failure("source migration still %r after %.0f s" % (st, now - t0))
            if not self.dst.alive():
                raise Failure("destination QEMU exited (%s):\n%s"
                              % (self.dst.proc.returncode, self.dst.log_tail()))
            time.sleep(0.05)
        t_src = time.monotonic() - t0
        Q.log(self.progress_line(t0, info))
        info = self.src.final_info()
        self.timing("source completed", t_src)
        states = self.src.migration_events()
        Q.log("source migration states: %s" % " ".join(states))
        if self.m.get("postcopy"):
            check(postcopy_started is not None, "postcopy was never started (the migration "
                  "completed before %s were sent)" % Q.fmt_bytes(POSTCOPY_AFTER))
            check("postcopy-active" in states, "source never entered postcopy-active")
        dinfo = self.dst.wait_status("completed", timeout=30)
        self.timing("destination completed", time.monotonic() - t0)
        if "postcopy-blocktime" in dinfo:
            Q.log("destination vCPU blocked %s ms in total waiting for postcopy pages"
                  % dinfo["postcopy-blocktime"])
        ram = info.get("ram", {})
        Q.log("QEMU: total-time %s ms, downtime %s ms, setup %s ms, ram transferred %s, "
              "%s passes, %.0f Mbit/s, postcopy page requests %s"
              % (info.get("total-time"), info.get("downtime"), info.get("setup-time"),
                 Q.fmt_bytes(ram.get("transferred", 0)), ram.get("dirty-sync-count"),
                 ram.get("mbps", 0), ram.get("postcopy-requests")))
        if run_dst:
            check(ram.get("postcopy-requests", 0) > 0, "the running destination requested "
                  "no pages during postcopy")
        if drain:
            # the stopping relay exits once its last migration has ended: its session
            # is known from the SESSION_STATE events it sent before
            check(drained is not None, "the migration completed before the relay was "
                  "stopped")
            self.check_relay_exit(self.S, 10)
            states = [ev["data"].get("state") for ev in self.S.events()
                      if ev.get("event") == "SESSION_STATE"
                      and ev.get("data", {}).get("id") == self.sid]
            check(states and states[-1] == "completed", "the draining source relay's "
                  "session went through %s, expected it to end completed" % states)
            dse = self.D.wait_state(self.sid, Q.FINAL_STATES, timeout=30)
            check(dse.get("state") == "completed", "destination relay session ended %r: %s"
                  % (dse.get("state"), dse.get("error")))
            Q.log("source relay drained: session %s, relay exited %.1f s after SIGTERM; "
                  "destination relay session: %s" % (" -> ".join(states),
                                                      time.monotonic() - drained,
                                                      fmt_session(dse)))
        elif not self.direct:
            t1 = time.monotonic()
            for r, role in ((self.S, "source"), (self.D, "destination")):
                se = r.wait_state(self.sid, ("completed", "failed", "cancelled"), timeout=30)
                check(se.get("state") == "completed", "%s relay session ended %r: %s"
                      % (role, se.get("state"), se.get("error")))
                Q.log("%s relay session: %s" % (role, fmt_session(se)))
            self.timing("relay sessions completed", time.monotonic() - t1 + (t1 - t0))
            se = self.S.session(self.sid)
            dse = self.D.session(self.sid)
            check(se.get("bytes") == dse.get("bytes"), "relays disagree on the QEMU bytes "
                  "carried: source %s, destination %s" % (se.get("bytes"), dse.get("bytes")))
            if fault is not None:
                self.check_resumed(fault, se, dse)
            caps = self.m.get("caps", {})
            if caps.get("return-path") or caps.get("postcopy-ram"):
                check(se.get("bytes", {}).get("destination-to-source", 0) > 0,
                      "no return-path bytes went through the relays")
            if "relay_channels" in self.m:
                check(se.get("channels") == self.m["relay_channels"],
                      "completed session reports %r channels" % se.get("channels"))
            if self.secure:
                check("tls" in se.get("features", []) and
                      "insecure-plaintext" not in se.get("features", []),
                      "session features %s: not TLS" % se.get("features"))
            want_streams = 1 + self.m.get("params", {}).get("multifd-channels", 0)
            if caps.get("postcopy-preempt"):
                want_streams += 1       # QEMU 7.2 opens the preempt channel at the start
            check(se.get("streams") == want_streams, "source session carried %r QEMU "
                  "connections, expected %d" % (se.get("streams"), want_streams))
        sst, dst_st = self.src.run_state(), self.dst.run_state()
        Q.log("run states after migration: source %s, destination %s" % (sst, dst_st))
        check(sst == "postmigrate", "source run state %r after completion" % sst)
        if run_dst:
            check(dst_st == "running", "destination not running after postcopy (%r)" % dst_st)
            self.check_never_both_running()
            check(Q.serial_grows(self.dst.serial_path, 5), "destination guest makes no "
                  "progress after postcopy")
            # The destination guest ran on after the source stopped: the RAM contents
            # differ legitimately, so only the destination's own pattern is checked.
            self.dst.execute("stop")
            r = Q.dump_and_check(None, self.dst, self.workdir, keep=self.keep)
        else:
            check(dst_st != "running", "destination runs before cont (%r)" % dst_st)
            r = Q.dump_and_check(self.src, self.dst, self.workdir, keep=self.keep)
        self.timing("pmemsave", r.dump_seconds)
        self.timing("memory check", r.seconds)
        Q.log("memory check: " + r.summary())
        check(r.ok, "memory check " + r.summary())
        before = self.dst.serial_bytes()
        self.dst.execute("cont")
        ok, why = Q.guest_runs(self.dst, timeout=10)
        check(ok, "destination guest after cont: %s" % why)
        Q.log("destination guest runs after cont (serial %d -> %d bytes)"
              % (before, self.dst.serial_bytes()))
        check(self.src.alive(), "source QEMU died")
        self.timing("migration (migrate -> source completed)", t_src)

    def run_failure(self):
        inject = self.m["inject"]
        busy = self.m.get("busy", False)
        t0 = self.migrate_until_inject_point(
            Q.BUSY_PARAMS if busy else Q.SLOW_PARAMS,
            INJECT_AFTER_BUSY if busy else INJECT_AFTER, relays=(self.S,))
        ti = time.monotonic()
        what, want = INJECTIONS[inject]
        if self.direct:
            Q.log("inject (direct mode): SIGKILL destination QEMU")
            self.dst.kill()
        else:
            Q.log("inject: %s" % what)
            if inject == "cancel":
                self.S.cmd("session-cancel", id=self.sid)
            elif inject == "cancel-dst":
                self.D.cmd("session-cancel", id=self.sid)
            elif inject in ("kill-dst-relay", "kill-dst-relay-busy"):
                self.D.kill()
            elif inject == "kill-src-relay":
                self.S.kill()
            elif inject == "stall-dst-relay":
                os.kill(self.D.pid, signal.SIGSTOP)
                self.stopped.append(self.D.pid)
        self.timing("failure injected after", ti - t0)
        within = self.m.get("fail_within", FAIL_WITHIN_S)
        try:
            info = self.src.wait_status("failed", timeout=within + 10, poll=0.05)
        except Q.MigrationError as e:
            raise Failure(str(e))
        t_fail = time.monotonic() - ti
        self.timing("source QEMU failed after", t_fail)
        Q.log("source error-desc: %s" % info.get("error-desc"))
        Q.log("source migration states: %s" % " ".join(self.src.migration_events()))
        check(t_fail <= within, "source took %.1f s (> %.0f s) to report failed"
              % (t_fail, within))
        ok, why = Q.guest_runs(self.src, timeout=5)
        check(ok, "source guest after the failure: %s" % why)
        Q.log("source guest: %s" % why)
        if self.dst.alive():
            try:
                dst_st = self.dst.run_state(timeout=5)
                check(dst_st != "running", "destination guest is running too")
                Q.log("destination QEMU still alive, run state %s" % dst_st)
            except (ConnectionError, OSError):
                pass
        else:
            Q.log("destination QEMU exited with %s" % self.dst.proc.returncode)
        if not self.direct:
            for key, r in (("S", self.S), ("D", self.D)):
                w = want[key]
                if w is None:
                    continue
                check(r.is_running(), "%s relay died (status %s) after: %s"
                      % (r.name, r.proc.returncode, what))
                se = r.wait_state(self.sid, Q.FINAL_STATES, timeout=10)
                Q.log("%s relay session: %s" % (r.name, fmt_session(se)))
                if w == "ended":
                    check(se.get("state") != "completed", "%s relay session claims "
                          "completed after %s" % (r.name, what))
                else:
                    check(se.get("state") == w, "%s relay session ended %r, expected %r"
                          % (r.name, se.get("state"), w))
                if se.get("state") == "failed":
                    err = se.get("error")
                    check(isinstance(err, dict) and err.get("class") and err.get("desc"),
                          "%s relay: failed session has no error object: %r" % (r.name, err))
                if key == "D" and "dst_final" in self.m:
                    self.check_dst_final(r, se, ti)
            self.timing("failure handled (inject -> relay final)", time.monotonic() - ti)

    def check_dst_final(self, r, se, ti):
        """kill-src-relay: the destination relay cannot re-dial; it must wait out the grace
        period, then fail with the class and description the mode names."""
        import re
        classes, pattern, (lo, hi) = self.m["dst_final"]
        err = se.get("error") or {}
        check(se.get("state") == "failed" and err.get("class") in classes,
              "%s relay session %s %s, expected failed %s" % (r.name, se.get("state"), err,
                                                              "/".join(classes)))
        check(re.search(pattern, err.get("desc", "")), "%s relay: error description %r does "
              "not match %r" % (r.name, err.get("desc"), pattern))
        ev = self._final_event(r, "failed")
        check(ev is not None, "%s relay: no SESSION_STATE event for the failure" % r.name)
        ts = ev.get("timestamp", {})
        fault_wall = time.time() - (time.monotonic() - ti)
        t = ts.get("seconds", 0) + ts.get("microseconds", 0) / 1e6 - fault_wall
        self.timing("%s relay session failed after" % r.name, t)
        check(lo <= t <= hi, "%s relay session failed %.1f s after the fault, expected "
              "%.1f to %.1f s (the reconnect grace period)" % (r.name, t, lo, hi))

    def check_never_both_running(self):
        """The source's last STOP precedes the destination's first RESUME."""
        def ts(ev):
            return ev["timestamp"]["seconds"] + ev["timestamp"]["microseconds"] / 1e6
        self.src.qmp.pump()
        self.dst.qmp.pump()
        stops = [ts(e) for e in self.src.qmp.events if e["event"] == "STOP"]
        resumes = [ts(e) for e in self.dst.qmp.events if e["event"] == "RESUME"]
        check(stops, "no STOP event from the source")
        check(resumes, "no RESUME event from the destination")
        check(stops[-1] <= resumes[0], "destination resumed %.3f s before the source stopped"
              % (stops[-1] - resumes[0]))
        Q.log("source stopped %.3f s before the destination resumed"
              % (resumes[0] - stops[-1]))

    def diagnose(self):
        """After a failure: print what the QEMUs and relays say now."""
        for q in self.qemus:
            if not q.alive():
                Q.log("diagnosis: %s QEMU exited (%s)" % (q.name, q.proc.returncode))
                continue
            try:
                info = q.query_migrate(timeout=3)
                Q.log("diagnosis: %s QEMU migration %s%s, run state %s"
                      % (q.name, info.get("status"), " (%s)" % info["error-desc"]
                         if "error-desc" in info else "", q.run_state(timeout=3)))
            except Exception as e:
                Q.log("diagnosis: %s QEMU: %r" % (q.name, e))
        for r in self.relays:
            try:
                if r.pid in self.stopped:
                    Q.log("diagnosis: relay %s is SIGSTOPped" % r.name)
                elif r.is_running():
                    Q.log("diagnosis: relay %s: %s" % (r.name, fmt_session(r.session(self.sid))))
                else:
                    Q.log("diagnosis: relay %s exited (%s)" % (r.name, r.proc.returncode))
            except Exception as e:
                Q.log("diagnosis: relay %s: %r" % (r.name, e))

    def run(self):
        self.setup_dir()
        image = self.image = Q.build_guest(self.workdir, top=MEM_MIB * Q.MiB)
        if not self.direct:
            self.start_relays()
        self.start_qemus(image)
        if self.m.get("inject") in FAULT_INJECTIONS and not self.direct:
            self.run_fault()
            if self.m.get("retry", True):
                self.run_retry()
        elif "inject" in self.m:
            self.run_failure()
        elif self.m.get("recover") and not self.direct:
            self.run_recover()
        else:
            self.run_success()

    def run_recover(self):
        """postcopy-recover: see RECOVER_SID."""
        t0 = self.begin_migration(RESUME_POSTCOPY_PARAMS)
        base = None
        ti = None
        next_line = 0
        while True:
            info = self.src.query_migrate()
            st = info.get("status")
            ram = info.get("ram", {}).get("transferred", 0)
            now = time.monotonic()
            if now >= next_line:
                Q.log(self.progress_line(t0, info))
                next_line = now + 1.0
            check(st not in Q.FINAL_STATES, "source migration %s before the cut: %s"
                  % (st, info.get("error-desc", "")))
            if st == "active" and base is None and ram >= POSTCOPY_AFTER:
                self.src.execute("migrate-start-postcopy")
                base = ram
                Q.log("migrate-start-postcopy")
            # the destination must be in postcopy too (it enters it once it has read
            # the switch-over package, which may still be in the relays' buffers):
            # a destination still in precopy fails instead of pausing
            if (st == "postcopy-active" and base is not None and
                    ram >= base + RESUME_POSTCOPY_FAULT_AFTER and
                    self.dst.query_migrate().get("status") == "postcopy-active"):
                ti = time.monotonic()
                self.proxy.cut()
                Q.log("inject: cut the link (every byte dropped, new connections "
                      "refused) during postcopy, for longer than the relays' grace period")
                break
            check(now - t0 < 60, "postcopy-active not reached in 60 s")
            time.sleep(0.05)
        # both QEMUs pause; the relays give up on the link and close QEMU's sockets
        for q in (self.src, self.dst):
            info = q.wait_status(("postcopy-paused",), timeout=30)
        self.timing("both QEMUs postcopy-paused after the cut", time.monotonic() - ti)
        for r in (self.S, self.D):
            se = r.wait_state(self.sid, Q.FINAL_STATES, timeout=30)
            check(se.get("state") == "failed" and
                  se.get("error", {}).get("class") == "PeerUnreachable",
                  "%s relay session after the cut: %s" % (r.name, fmt_session(se)))
            Q.log("%s relay session: %s" % (r.name, fmt_session(se)))
        for q in (self.src, self.dst):
            st = q.run_state()
            check(st != "running" or q is self.dst, "%s run state %r while paused"
                  % (q.name, st))
        self.proxy.clear()
        Q.log("link healed; recovering through a new session pair %s" % RECOVER_SID)
        d = self.workdir
        dst_uri = "unix:%s/dst-recover.sock" % d
        src_uri = "unix:%s/src-recover.sock" % d
        t1 = time.monotonic()
        self.dst.execute("migrate-recover", {"uri": dst_uri})
        se = self.D.cmd("session-incoming", id=RECOVER_SID, qemu=dst_uri)
        check(se.get("state") == "waiting", "recovery session-incoming: %s" % se)
        se = self.S.cmd("session-outgoing", id=RECOVER_SID, peer=self.peer_addr(),
                        listen=src_uri, channels=self.m["relay_channels"])
        check(se.get("state") == "ready", "recovery session-outgoing: %s" % se)
        self.src.execute("migrate", {"uri": src_uri, "resume": True})
        info = self.src.wait_status(("completed",), timeout=60)
        self.timing("recovered: source completed after", time.monotonic() - t1)
        states = self.src.migration_events()
        Q.log("source migration states: %s" % " ".join(states))
        check("postcopy-recover" in states, "the source never went through "
              "postcopy-recover: %s" % states)
        self.dst.wait_status(("completed",), timeout=30)
        for r in (self.S, self.D):
            se = r.wait_state(RECOVER_SID, Q.FINAL_STATES, timeout=30)
            check(se.get("state") == "completed", "%s relay recovery session: %s"
                  % (r.name, fmt_session(se)))
            Q.log("%s relay recovery session: %s" % (r.name, fmt_session(se)))
        r = Q.dump_and_check(self.src, self.dst, self.workdir, keep=self.keep)
        Q.log("memory check: " + r.summary())
        check(r.ok, "memory check " + r.summary())
        self.dst.execute("cont")
        ok, why = Q.guest_runs(self.dst, timeout=10)
        check(ok, "destination guest after cont: %s" % why)
        Q.log("destination guest runs after cont")


def _alarm(signum, frame):
    raise TimeoutError("test exceeded its %d s budget" % TEST_BUDGET_S)


def _term(signum, frame):
    raise Failure("terminated by signal %d" % signum)


def main(mode, argv=None, direct=False):
    argv = sys.argv[1:] if argv is None else argv
    direct = direct or "--direct" in argv
    keep = "--keep" in argv
    print("=== QEMU migration test: mode %s, %s ===" % (mode, "direct QEMU->QEMU (no relay)"
                                                        if direct else "through two relays"),
          flush=True)
    signal.signal(signal.SIGALRM, _alarm)
    signal.signal(signal.SIGTERM, _term)     # clean up QEMUs and relays, keep the logs
    signal.alarm(TEST_BUDGET_S)
    case = Case(mode, direct=direct, keep=keep)
    t0 = time.monotonic()
    failed = True
    rc = 1
    reason = ""
    try:
        case.run()
        failed = False
        rc = 0
    except Q.Skip as e:
        failed = False
        rc = 77
        print("SKIP: %s" % e, flush=True)
    except SystemExit as e:
        failed = e.code not in (0, 77)
        rc = e.code
    except (Failure, Q.MigrationError) as e:
        reason = str(e)
        print("FAIL: %s" % e, flush=True)
        case.diagnose()
    except BaseException as e:
        traceback.print_exc()
        reason = "unexpected exception %r" % e
        print("FAIL: unexpected exception", flush=True)
        case.diagnose()
    finally:
        signal.alarm(0)
        if case.teardown(failed) and rc == 0:
            rc = 1
    print("=== mode %s: %s in %.1f s ===" % (mode, {0: "PASS", 77: "SKIP"}.get(rc, "FAIL"),
                                              time.monotonic() - t0), flush=True)
    if rc not in (0, 77) and reason:
        # repeated after the relay logs the teardown printed, so that the tail
        # of the test's log (all CI shows) says why it failed
        print("FAIL reason: %s" % reason.splitlines()[0], flush=True)
    for what, s in case.timings:
        print("  %-42s %8.3f s" % (what, s))
    sys.exit(rc)
