"""fakeqemu.py - fake source and destination QEMUs for relay tests.

A migration is described by a list of Plan objects, one per QEMU
connection, known to both fakes.  FakeSource connects to the source
relay's listen socket, one connection after another; FakeDestination
listens where the destination relay connects, and maps the i-th accepted
connection to the i-th plan (the relay preserves connection order).

Each endpoint writes seeded random data in random-sized writes, shuts its
write direction down when it is done (SHUT_WR), reads to EOF and closes.
Plan.mode decides how writing and reading interleave:

  concurrent  both sides write and read at the same time, and shut down
              after a random delay;
  src-first   the source writes all and shuts down, then reads; the
              destination reads to EOF before it writes (request/response);
  mixed       the source writes a small first part, reads to EOF, then
              writes the rest; the destination writes everything first
              (its leg exists once the first part arrived), then reads.

Like QEMU's main channel, the source's first connection does not send its
EOF before all connections are connected: a relay cannot tell the last
connection of a session from a late one, and may call a session complete
once every connection it has seen is closed.

Endpoints record length and SHA-256 of what they sent and received, so a
test compares src.results[i].sent with dst.results[i].received and the
reverse.  No mode can deadlock on a relay that carries both directions
independently and opens a destination leg once the first bytes or the
EOF of its stream arrived.
"""

import hashlib
import os
import random
import socket
import threading
import time

MODES = ("concurrent", "src-first", "mixed")
MAX_WRITE = 1 << 20
MIXED_FIRST_MAX = 16 * 1024


class Plan:
    def __init__(self, s2d, d2s, mode="concurrent", seed=0, slow_reader=False,
                 throttle=0.0, tiny_writes=False):
        if mode == "mixed" and s2d == 0:
            mode = "concurrent"
        self.s2d = s2d              # bytes the source writes
        self.d2s = d2s              # bytes the destination writes
        self.mode = mode
        self.seed = seed
        self.slow_reader = slow_reader
        self.throttle = throttle    # seconds to sleep between writes
        self.tiny_writes = tiny_writes  # writes of 1 to 64 bytes

    def __repr__(self):
        return "Plan(s2d=%d, d2s=%d, mode=%s%s%s)" % (
            self.s2d, self.d2s, self.mode,
            ", slow" if self.slow_reader else "",
            ", tiny" if self.tiny_writes else "")


class Digest:
    def __init__(self):
        self.n = 0
        self.h = hashlib.sha256()

    def update(self, data):
        self.n += len(data)
        self.h.update(data)

    def value(self):
        return (self.n, self.h.hexdigest())


class Result:
    def __init__(self, index):
        self.index = index
        self.sent = None            # (length, sha256 hex) when done
        self.received = None
        self.error = None
        self.done = threading.Event()

    def __repr__(self):
        return "Result(%d, sent=%s, received=%s, error=%s)" % (
            self.index, self.sent, self.received, self.error)


def random_plans(rng, count, max_s2d, max_d2s, first_s2d=None):
    """count plans with sizes spread from 0 bytes to the maxima."""
    plans = []
    for i in range(count):
        if i == 0 and first_s2d is not None:
            s2d = first_s2d
        else:
            s2d = _size(rng, max_s2d)
        plans.append(Plan(s2d, _size(rng, max_d2s), rng.choice(MODES),
                          seed=rng.getrandbits(32)))
    return plans


def _size(rng, maximum):
    r = rng.random()
    if r < 0.1:
        return 0
    if r < 0.2:
        return rng.randint(1, 16)
    if r < 0.5:
        return rng.randint(1, min(maximum, 256 * 1024))
    return rng.randint(1, maximum)


class _Endpoint:
    def __init__(self, sock, plan, role, result, deadline, hold=None):
        self.sock = sock
        self.hold = hold            # Event to wait for before SHUT_WR
        self.plan = plan
        self.role = role            # "src" or "dst"
        self.result = result
        self.deadline = deadline
        self.size = plan.s2d if role == "src" else plan.d2s
        base = "%d-%s" % (plan.seed, role)
        self.wrng = random.Random(base + "-w")
        self.rrng = random.Random(base + "-r")
        self.sent = Digest()
        self.received = Digest()

    def _timeout(self):
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("%s endpoint %d past its deadline" % (
                self.role, self.result.index))
        return left

    def write(self, upto):
        while self.sent.n < upto:
            if self.plan.tiny_writes:
                n = min(upto - self.sent.n, self.wrng.randint(1, 64))
            else:
                n = min(upto - self.sent.n,
                        int(2 ** self.wrng.uniform(0, 20)), MAX_WRITE)
            data = self.wrng.randbytes(n)
            self.sock.settimeout(self._timeout())
            self.sock.sendall(data)
            self.sent.update(data)
            if self.plan.throttle:
                time.sleep(self.plan.throttle)

    def shutdown(self, delay=False):
        if delay:
            time.sleep(self.wrng.choice((0, 0, 0.001, 0.01, 0.05)))
        if self.hold is not None and \
                not self.hold.wait(max(0, self.deadline - time.monotonic())):
            raise TimeoutError("not all connections connected in time")
        self.sock.shutdown(socket.SHUT_WR)

    def read_eof(self):
        slow = self.plan.slow_reader and self.role == "dst"
        reads = 0
        while True:
            n = self.rrng.randint(1, 65536) if slow else MAX_WRITE
            self.sock.settimeout(self._timeout())
            data = self.sock.recv(n)
            if not data:
                return
            self.received.update(data)
            reads += 1
            if slow and reads % 16 == 0:
                time.sleep(0.002)

    def run(self):
        try:
            self._run()
            self.result.sent = self.sent.value()
            self.result.received = self.received.value()
        except Exception as e:
            self.result.error = "%s endpoint %d: %r" % (
                self.role, self.result.index, e)
            self.result.sent = self.sent.value()
            self.result.received = self.received.value()
        finally:
            self.sock.close()
            self.result.done.set()

    def _run(self):
        mode, src = self.plan.mode, self.role == "src"
        if mode == "concurrent":
            err = []

            def writer():
                try:
                    self.write(self.size)
                    self.shutdown(delay=True)
                except Exception as e:
                    err.append(e)
            t = threading.Thread(target=writer, daemon=True)
            t.start()
            self.read_eof()
            t.join(max(0.1, self.deadline - time.monotonic()))
            if t.is_alive():
                raise TimeoutError("writer still busy after EOF")
            if err:
                raise err[0]
        elif mode == "src-first":
            if src:
                self.write(self.size)
                self.shutdown()
                self.read_eof()
            else:
                self.read_eof()
                self.write(self.size)
                self.shutdown()
        elif mode == "mixed":
            if src:
                first = min(self.size,
                            self.wrng.randint(1, MIXED_FIRST_MAX))
                self.write(first)
                self.read_eof()
                self.write(self.size)
                self.shutdown()
            else:
                self.write(self.size)
                self.shutdown()
                self.read_eof()
        else:
            raise ValueError("unknown mode %r" % mode)


def _parse_uri(uri):
    """("unix", path) or ("tcp", (host, port)) from a QEMU-style URI."""
    if uri.startswith("unix:"):
        return socket.AF_UNIX, uri[len("unix:"):]
    if uri.startswith("tcp:"):
        host, port = uri[len("tcp:"):].rsplit(":", 1)
        if host.startswith("["):
            return socket.AF_INET6, (host[1:-1], int(port))
        return socket.AF_INET, (host, int(port))
    raise ValueError("unsupported URI %r" % uri)


class _Side:
    def __init__(self, plans, timeout):
        self.plans = plans
        self.results = [Result(i) for i in range(len(plans))]
        self.deadline = time.monotonic() + timeout
        self.threads = []
        self.errors = []

    def _spawn(self, sock, index, role, hold=None):
        ep = _Endpoint(sock, self.plans[index], role, self.results[index],
                       self.deadline, hold)
        t = threading.Thread(target=ep.run, name="%s-%d" % (role, index),
                             daemon=True)
        self.threads.append(t)
        t.start()

    def join(self, timeout=None):
        """Wait for every endpoint; returns a list of error strings."""
        end = self.deadline if timeout is None else \
            time.monotonic() + timeout
        errors = list(self.errors)
        for r in self.results:
            if not r.done.wait(max(0, end - time.monotonic())):
                errors.append("connection %d not finished" % r.index)
            elif r.error:
                errors.append(r.error)
        return errors

    def totals(self):
        sent = sum(r.sent[0] for r in self.results if r.sent)
        received = sum(r.received[0] for r in self.results if r.received)
        return sent, received


class FakeSource(_Side):
    """Connect len(plans) times to uri, in order, and run the plans.

    uri is "unix:PATH" or "tcp:HOST:PORT"; a bare path means unix.  gap is
    a pause after each connect, or a (min, max) range drawn per connection.
    """

    def __init__(self, uri, plans, timeout=90, gap=0.0, seed=0):
        super().__init__(plans, timeout)
        if ":" not in uri:
            uri = "unix:" + uri
        self.uri = uri
        self.family, self.addr = _parse_uri(uri)
        self.gap = gap
        self.rng = random.Random("%d-gaps" % seed)
        self.all_connected = threading.Event()
        self._thread = threading.Thread(target=self._connect_all,
                                        name="src-connect", daemon=True)

    def start(self):
        self._thread.start()
        return self

    def _connect_all(self):
        try:
            self._connect_loop()
        finally:
            self.all_connected.set()

    def _connect_loop(self):
        for i in range(len(self.plans)):
            s = socket.socket(self.family, socket.SOCK_STREAM)
            try:
                s.settimeout(10)
                s.connect(self.addr)
            except OSError as e:
                s.close()
                self.errors.append("src connect %d to %s: %r" % (
                    i, self.uri, e))
                for r in self.results[i:]:
                    r.error = "not connected"
                    r.done.set()
                return
            self._spawn(s, i, "src", self.all_connected if i == 0 else None)
            if isinstance(self.gap, tuple):
                time.sleep(self.rng.uniform(*self.gap))
            elif self.gap:
                time.sleep(self.gap)


class FakeDestination(_Side):
    """Listen on uri; the i-th accepted connection runs plans[i].

    uri is "unix:PATH" or "tcp:HOST:PORT" (port 0 picks one; .uri tells
    which); a bare path means unix.  Connections beyond len(plans) are
    counted in .extra and closed.
    """

    def __init__(self, uri, plans, timeout=90):
        super().__init__(plans, timeout)
        if ":" not in uri:
            uri = "unix:" + uri
        family, addr = _parse_uri(uri)
        self.path = addr if family == socket.AF_UNIX else None
        self.accepted = 0
        self.extra = 0
        self._stop = False
        if self.path is not None and os.path.exists(self.path):
            os.unlink(self.path)
        self.lsock = socket.socket(family, socket.SOCK_STREAM)
        if family != socket.AF_UNIX:
            self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(addr)
        self.lsock.listen(64)
        if family == socket.AF_UNIX:
            self.uri = uri
        else:
            host, port = self.lsock.getsockname()[:2]
            self.uri = "tcp:%s:%d" % ("[%s]" % host if ":" in host else host,
                                      port)
        self.lsock.settimeout(0.1)
        self._thread = threading.Thread(target=self._accept_loop,
                                        name="dst-accept", daemon=True)
        self._thread.start()

    def _accept_loop(self):
        while not self._stop:
            try:
                s, _ = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            s.setblocking(True)
            if self.accepted < len(self.plans):
                self._spawn(s, self.accepted, "dst")
                self.accepted += 1
            else:
                self.extra += 1
                s.close()

    def close(self):
        self._stop = True
        self._thread.join(2)
        self.lsock.close()
        if self.path is not None:
            try:
                os.unlink(self.path)
            except OSError:
                pass


def compare(src, dst):
    """Mismatches between a FakeSource and a FakeDestination, as strings."""
    problems = []
    for i, (a, b) in enumerate(zip(src.results, dst.results)):
        if a.sent != b.received:
            problems.append("connection %d source-to-destination: sent %s, "
                            "received %s (%r)" % (i, a.sent, b.received,
                                                  src.plans[i]))
        if b.sent != a.received:
            problems.append("connection %d destination-to-source: sent %s, "
                            "received %s (%r)" % (i, b.sent, a.received,
                                                  src.plans[i]))
    return problems
