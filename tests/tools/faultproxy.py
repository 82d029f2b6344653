#!/usr/bin/env python3
"""faultproxy.py - a small TCP impairment proxy for the migrelay tests (stdlib only).

The kernel of the CI machines has no netem, so network faults between two relays are made
in user space: the source relay dials the proxy, the proxy dials the destination relay, and
forwards every connection byte for byte in both directions, impaired on demand.

    import faultproxy
    p = faultproxy.FaultProxy(("127.0.0.1", dst_port)).start()   # listens on 127.0.0.1:0
    src.cmd("session-outgoing", id="vm1", peer=p.address, ...)    # "127.0.0.1:PORT"
    p.stall()            # ... and later p.clear() or p.stop()

Directions: "up" is client -> target (source relay -> destination relay), "down" the
reverse.  Connections are numbered from 0 in accept order (0 = a session's channel 0).
Every call is thread-safe and takes effect at once (the forwarding runs in one thread).

In-process API (FaultProxy):
  FaultProxy(target, listen=("127.0.0.1", 0), name="proxy", verbose=False)
  start() -> self          bind, listen, start the forwarding thread
  stop()                   close every socket and the listener, join the thread
  addr, address            the listening (host, port) and "host:port"
  set_delay(ms)            hold every chunk read for ms before forwarding it (0: off)
  set_throttle(bps)        forward at most bps bytes/s per connection and direction
                           (None or 0: unlimited)
  stall(conn=None)         stop forwarding (nothing read, nothing written) on conn or, with
                           None, on every connection including later ones; the sockets stay
                           open, so the kernels' buffers fill and both ends see silence
  resume(conn=None)        undo stall()
  reset(conn)              RST both sides of connection conn (SO_LINGER 0, close)
  reset_all()              the same for every open connection; returns how many
  cut(seconds=None, reset=False)
                           cut the link: every byte read from either side is dropped, and
                           new connections are refused (accepted and RST at once), for
                           `seconds` (None: until uncut()/clear()).  The open connections
                           stay open and silent (a network dropping every packet, but FIN
                           and RST still pass; whatever passes after the cut follows a hole
                           in the stream); with
                           reset=True they are reset (RST) as the cut begins instead (an
                           outage that kills connections: a firewall or NAT losing state);
                           returns how many were reset
  uncut()                  end a cut early
  corrupt(conn=None, offset=None, after=None, direction="up", xor=0xFF)
                           XOR the byte at absolute `offset` of that direction's stream of
                           conn (None: the oldest open connection) with xor; or, with
                           after=N, the byte N bytes after what has been read so far.
                           Returns the absolute offset; the byte is changed when it passes
  wait_corrupted(timeout)  -> the list of applied corruptions (dicts: conn, direction,
                           offset, old, new) once at least one was applied, else []
  set_tap(fn)              call fn(conn, direction, offset, data) for every chunk read
                           (offset: stream offset of data[0]), in the forwarding thread and
                           before corrupt(); fn returns None, or bytes of the same length to
                           forward instead (a test can follow a protocol's framing and
                           damage one field); set_tap(None) removes it
  clear()                  delay 0, no throttle, no stall, no cut, pending corruptions dropped
  connections()            [{"id", "open", "up", "down", "dropped", "stalled", "peer"}]
  stats()                  {"accepted", "refused", "open", "up", "down", "dropped", ...}
  wait_connections(n, timeout)  wait until n connections have been accepted

Control socket (start(control="PATH") or --control PATH): a Unix stream socket, one
command per line, one JSON reply per line ({"ok": true, ...} or {"error": "..."}):
  delay MS | throttle BPS | stall [CONN] | resume [CONN] | reset CONN|all
  cut [SECONDS|-] [reset] | uncut | corrupt CONN|- OFFSET [up|down] [XOR] | corrupt-after CONN|- N [up|down] [XOR]
  clear | status
e.g.  echo "cut 5" | socat - UNIX-CONNECT:/tmp/fp.sock

Command line:  faultproxy.py --target HOST:PORT [--listen HOST:PORT] [--control PATH] [-v]
prints "listening HOST:PORT" and forwards until SIGINT/SIGTERM.
"""

import argparse
import collections
import json
import os
import selectors
import signal
import socket
import struct
import sys
import threading
import time

__all__ = ["FaultProxy", "parse_hostport"]

CHUNK = 65536                # bytes read per recv
MAX_PENDING = 4 * 1024 * 1024   # per direction: stop reading while this much waits
DIRECTIONS = ("up", "down")


def parse_hostport(s):
    """ "host:port" or "[v6]:port" -> (host, port)."""
    host, _, port = s.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def _rst_close(sock):
    """Close sock so that the peer gets a RST (SO_LINGER on, timeout 0)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class _Dir:
    """One direction of a proxied connection: read from src, written to dst."""

    def __init__(self, name):
        self.name = name
        self.pending = collections.deque()   # [release time, bytearray]
        self.pending_bytes = 0
        self.read = 0           # bytes read from src (stream offset of the next byte)
        self.written = 0        # bytes written to dst
        self.dropped = 0        # bytes read and discarded (cut)
        self.eof = False        # src sent FIN
        self.shut = False       # FIN passed on to dst
        self.next_send = 0.0    # throttle: earliest time of the next write
        self.corrupt = {}       # absolute offset -> xor


class _Conn:
    def __init__(self, cid, client, server, peer):
        self.id = cid
        self.client = client
        self.server = server
        self.peer = peer
        self.connected = False  # the connect() to the target completed
        self.closed = False
        self.stalled = False
        self.resetting = None   # (direction, socket, deadline): one end reset, flushing
        self.up = _Dir("up")
        self.down = _Dir("down")
        self.t_open = time.monotonic()

    def dirs(self):
        # (direction, read from, write to)
        return ((self.up, self.client, self.server), (self.down, self.server, self.client))

    def info(self):
        return {"id": self.id, "open": not self.closed, "up": self.up.read,
                "down": self.down.read, "dropped": self.up.dropped + self.down.dropped,
                "stalled": self.stalled, "peer": "%s:%s" % self.peer[:2]}


class FaultProxy:
    def __init__(self, target, listen=("127.0.0.1", 0), name="proxy", verbose=False):
        self.target = parse_hostport(target) if isinstance(target, str) else tuple(target)
        self.listen = parse_hostport(listen) if isinstance(listen, str) else tuple(listen)
        self.name = name
        self.verbose = verbose
        self._lock = threading.RLock()
        self._conns = []            # every connection ever accepted (index = id)
        self._sel = None
        self._lsock = None
        self._wake_r = self._wake_w = None
        self._thread = None
        self._running = False
        self._delay = 0.0
        self._rate = 0
        self._stall_all = False
        self._cut_until = None      # monotonic end of a cut, float('inf') for open-ended
        self._refused = 0
        self._applied = []          # corruptions applied
        self._applied_ev = threading.Condition(self._lock)
        self._ctl = None
        self._tap = None
        self.addr = None

    # ----- lifecycle

    @property
    def address(self):
        h, p = self.addr[:2]
        return "[%s]:%d" % (h, p) if ":" in h else "%s:%d" % (h, p)

    def start(self, control=None):
        fam = socket.AF_INET6 if ":" in self.listen[0] else socket.AF_INET
        ls = socket.socket(fam, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(self.listen)
        ls.listen(128)
        ls.setblocking(False)
        self._lsock = ls
        self.addr = ls.getsockname()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._sel = selectors.DefaultSelector()
        self._running = True
        self._thread = threading.Thread(target=self._loop, name="faultproxy-" + self.name,
                                        daemon=True)
        self._thread.start()
        if control:
            self._ctl = _ControlServer(self, control)
        self._log("listening on %s, forwarding to %s:%d" % ((self.address,) + self.target[:2]))
        return self

    def stop(self):
        if self._ctl is not None:
            self._ctl.close()
            self._ctl = None
        with self._lock:
            self._running = False
        self._wake()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        with self._lock:
            for c in self._conns:
                self._close_conn(c, rst=False)
            for s in (self._lsock, self._wake_r, self._wake_w):
                if s is not None:
                    try:
                        s.close()
                    except OSError:
                        pass
            if self._sel is not None:
                self._sel.close()
                self._sel = None

    def __enter__(self):
        return self.start() if self.addr is None else self

    def __exit__(self, *exc):
        self.stop()
        return False

    def _log(self, msg):
        if self.verbose:
            print("[faultproxy %s %.3f] %s" % (self.name, time.monotonic(), msg),
                  file=sys.stderr, flush=True)

    def _wake(self):
        try:
            self._wake_w.send(b"x")
        except (OSError, AttributeError):
            pass

    # ----- the API

    def set_delay(self, ms):
        with self._lock:
            self._delay = max(0.0, float(ms) / 1000.0)
        self._wake()

    def set_throttle(self, bytes_per_s):
        with self._lock:
            self._rate = int(bytes_per_s or 0)
        self._wake()

    def stall(self, conn=None):
        with self._lock:
            if conn is None:
                self._stall_all = True
            else:
                self._conns[conn].stalled = True
        self._log("stall %s" % ("all" if conn is None else conn))
        self._wake()

    def resume(self, conn=None):
        with self._lock:
            if conn is None:
                self._stall_all = False
                for c in self._conns:
                    c.stalled = False
            else:
                self._conns[conn].stalled = False
        self._wake()

    def reset(self, conn):
        with self._lock:
            c = self._conns[conn]
            if c.closed:
                return False
            self._log("reset connection %d" % conn)
            self._close_conn(c, rst=True)
        self._wake()
        return True

    def reset_all(self):
        n = 0
        with self._lock:
            for c in self._conns:
                if not c.closed:
                    self._close_conn(c, rst=True)
                    n += 1
        self._log("reset %d connections" % n)
        self._wake()
        return n

    def cut(self, seconds=None, reset=False):
        n = 0
        with self._lock:
            self._cut_until = (float("inf") if seconds is None
                               else time.monotonic() + float(seconds))
            for c in self._conns:
                for d, _, _ in c.dirs():
                    d.dropped += d.pending_bytes
                    d.pending.clear()
                    d.pending_bytes = 0
                if reset and not c.closed:
                    self._close_conn(c, rst=True)
                    n += 1
        self._log("cut for %s s%s" % (seconds, ", %d connections reset" % n if reset else ""))
        self._wake()
        return n

    def uncut(self):
        with self._lock:
            self._cut_until = None
        self._wake()

    def corrupt(self, conn=None, offset=None, after=None, direction="up", xor=0xFF):
        if direction not in DIRECTIONS:
            raise ValueError("direction must be 'up' or 'down'")
        if (offset is None) == (after is None):
            raise ValueError("give exactly one of offset and after")
        if not 0 < int(xor) < 256:
            raise ValueError("xor must be 1..255")
        with self._lock:
            if conn is None:
                live = [c for c in self._conns if not c.closed]
                if not live:
                    raise ValueError("no open connection to corrupt")
                c = live[0]
            else:
                c = self._conns[conn]
            d = c.up if direction == "up" else c.down
            off = d.read + int(after) if offset is None else int(offset)
            if off < d.read:
                raise ValueError("offset %d of connection %d %s already passed (%d read)"
                                 % (off, c.id, direction, d.read))
            d.corrupt[off] = int(xor)
            self._log("corrupt connection %d %s at offset %d (xor 0x%02x)"
                      % (c.id, direction, off, xor))
            return off

    def set_tap(self, fn):
        with self._lock:
            self._tap = fn

    def wait_corrupted(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        with self._lock:
            while not self._applied:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._applied_ev.wait(left)
            return list(self._applied)

    def clear(self):
        with self._lock:
            self._delay = 0.0
            self._rate = 0
            self._stall_all = False
            self._cut_until = None
            for c in self._conns:
                c.stalled = False
                c.up.corrupt.clear()
                c.down.corrupt.clear()
        self._wake()

    def connections(self):
        with self._lock:
            return [c.info() for c in self._conns]

    def stats(self):
        with self._lock:
            return {"accepted": len(self._conns), "refused": self._refused,
                    "open": sum(1 for c in self._conns if not c.closed),
                    "up": sum(c.up.read for c in self._conns),
                    "down": sum(c.down.read for c in self._conns),
                    "dropped": sum(c.up.dropped + c.down.dropped for c in self._conns),
                    "delay_ms": self._delay * 1000, "throttle": self._rate,
                    "stalled": self._stall_all, "cut": self._cut_until is not None,
                    "corruptions": list(self._applied)}

    def wait_connections(self, n, timeout=10.0):
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if len(self._conns) >= n:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError("%s: %d connections accepted, waited for %d"
                                   % (self.name, len(self._conns), n))
            time.sleep(0.02)

    # ----- the forwarding loop (all of it runs with self._lock held, except select())

    def _cutting(self, now):
        if self._cut_until is None:
            return False
        if now >= self._cut_until:
            self._cut_until = None
            self._log("cut ended")
            return False
        return True

    def _close_conn(self, c, rst):
        if c.closed:
            return
        c.closed = True
        for s in (c.client, c.server):
            if self._sel is not None:
                try:
                    self._sel.unregister(s)
                except (KeyError, ValueError, OSError):
                    pass
            if rst:
                _rst_close(s)
            else:
                try:
                    s.close()
                except OSError:
                    pass

    def _accept(self, now):
        while True:
            try:
                cs, peer = self._lsock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if self._cutting(now):
                self._refused += 1
                self._log("refused a connection from %s:%s (link cut)" % peer[:2])
                _rst_close(cs)
                continue
            cs.setblocking(False)
            cs.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            fam = socket.AF_INET6 if ":" in self.target[0] else socket.AF_INET
            ss = socket.socket(fam, socket.SOCK_STREAM)
            ss.setblocking(False)
            ss.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            c = _Conn(len(self._conns), cs, ss, peer)
            self._conns.append(c)
            err = ss.connect_ex(self.target)
            if err not in (0, 115, 11):     # EINPROGRESS, EAGAIN
                self._log("connection %d: connect to target failed: %s"
                          % (c.id, os.strerror(err)))
                self._close_conn(c, rst=True)
                continue
            c.connected = err == 0
            self._log("connection %d from %s:%s" % ((c.id,) + peer[:2]))

    def _on_read(self, c, d, src, dst, now, cutting):
        try:
            data = src.recv(CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            self._log("connection %d %s: read: %s" % (c.id, d.name, e))
            self._peer_reset(c, src, now)
            return
        if not data:
            d.eof = True
            self._log("connection %d %s: EOF after %d bytes" % (c.id, d.name, d.read))
            return
        n = len(data)
        start = d.read
        d.read += n
        if self._tap is not None:
            alt = self._tap(c.id, d.name, start, data)
            if alt is not None:
                if len(alt) != n:
                    raise ValueError("a tap must not change the length of the data")
                data = bytes(alt)
        if d.corrupt:
            buf = None
            for off in [o for o in d.corrupt if start <= o < start + n]:
                if buf is None:
                    buf = bytearray(data)
                x = d.corrupt.pop(off)
                old = buf[off - start]
                buf[off - start] ^= x
                rec = {"conn": c.id, "direction": d.name, "offset": off, "old": old,
                       "new": buf[off - start], "time": now}
                self._applied.append(rec)
                self._applied_ev.notify_all()
                self._log("connection %d %s: corrupted offset %d: 0x%02x -> 0x%02x"
                          % (c.id, d.name, off, old, buf[off - start]))
            if buf is not None:
                data = bytes(buf)
        if cutting:
            d.dropped += n
            return
        d.pending.append([now + self._delay, data])
        d.pending_bytes += n

    def _peer_reset(self, c, dead, now):
        """One end of c reset the connection (or failed): as on a real network, the
        other end still gets what was sent before the RST, then a RST of its own."""
        alive = c.server if dead is c.client else c.client
        toward_alive = c.up if alive is c.server else c.down
        toward_dead = c.down if toward_alive is c.up else c.up
        toward_dead.dropped += toward_dead.pending_bytes
        toward_dead.pending.clear()
        toward_dead.pending_bytes = 0
        try:
            self._sel.unregister(dead)
        except (KeyError, ValueError, OSError):
            pass
        _rst_close(dead)
        c.resetting = (toward_alive, alive, now + 2.0)
        self._log("connection %d: flushing %d bytes %s, then resetting"
                  % (c.id, toward_alive.pending_bytes, toward_alive.name))

    def _on_write(self, c, d, dst, now):
        while d.pending:
            t, data = d.pending[0]
            if t > now:
                return
            if self._rate and d.next_send > now:
                return
            chunk = data
            if self._rate:
                chunk = data[:max(1, min(len(data), self._rate // 20))]
            try:
                n = dst.send(chunk)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                self._log("connection %d %s: write: %s" % (c.id, d.name, e))
                if c.resetting is not None:
                    self._close_conn(c, rst=True)
                else:
                    self._peer_reset(c, dst, now)
                return
            d.written += n
            d.pending_bytes -= n
            if n == len(data):
                d.pending.popleft()
            else:
                d.pending[0][1] = data[n:]
            if self._rate:
                d.next_send = max(d.next_send, now) + float(n) / self._rate
            if n < len(chunk):
                return

    def _loop(self):
        sel = self._sel
        sel.register(self._lsock, selectors.EVENT_READ, ("listen", None))
        sel.register(self._wake_r, selectors.EVENT_READ, ("wake", None))
        registered = {}     # socket -> events
        while True:
            with self._lock:
                if not self._running:
                    return
                now = time.monotonic()
                cutting = self._cutting(now)
                timeout = 0.5
                if self._cut_until is not None and self._cut_until != float("inf"):
                    timeout = min(timeout, max(0.0, self._cut_until - now))
                want = {}
                for c in self._conns:
                    if c.closed:
                        continue
                    stalled = c.stalled or self._stall_all
                    if c.resetting is not None:
                        d, alive, deadline = c.resetting
                        due = bool(d.pending) and d.pending[0][0] <= now and \
                            (not self._rate or d.next_send <= now)
                        if due and not stalled and now < deadline:
                            self._on_write(c, d, alive, now)
                        if not c.closed and (not d.pending or now >= deadline):
                            self._close_conn(c, rst=True)
                        if c.closed:
                            continue
                        if not stalled:
                            want[alive] = selectors.EVENT_WRITE
                        timeout = min(timeout, 0.05)
                        continue
                    if not c.connected:
                        want[c.server] = selectors.EVENT_WRITE
                        continue
                    for d, src, dst in c.dirs():
                        if not stalled:
                            # pass on what is due
                            if d.pending and d.pending[0][0] <= now and \
                                    (not self._rate or d.next_send <= now):
                                self._on_write(c, d, dst, now)
                                if c.closed:
                                    break
                            if d.eof and not d.pending and not d.shut:
                                try:
                                    dst.shutdown(socket.SHUT_WR)
                                except OSError:
                                    pass
                                d.shut = True
                        ev = 0
                        if not stalled and not d.eof and d.pending_bytes < MAX_PENDING:
                            ev |= selectors.EVENT_READ
                        if not stalled and d.pending:
                            t = d.pending[0][0]
                            if self._rate:
                                t = max(t, d.next_send)
                            if t <= now:
                                ev |= selectors.EVENT_WRITE
                            else:
                                timeout = min(timeout, t - now)
                        # src is read for this direction, dst written
                        if ev & selectors.EVENT_READ:
                            want[src] = want.get(src, 0) | selectors.EVENT_READ
                        if ev & selectors.EVENT_WRITE:
                            want[dst] = want.get(dst, 0) | selectors.EVENT_WRITE
                    if c.closed:
                        want.pop(c.client, None)
                        want.pop(c.server, None)
                        continue
                    if c.up.shut and c.down.shut:
                        self._log("connection %d closed (up %d, down %d bytes)"
                                  % (c.id, c.up.written, c.down.written))
                        self._close_conn(c, rst=False)
                        want.pop(c.client, None)
                        want.pop(c.server, None)
                for s in list(registered):
                    if s not in want or s.fileno() < 0:
                        try:
                            sel.unregister(s)
                        except (KeyError, ValueError, OSError):
                            pass
                        del registered[s]
                for s, ev in want.items():
                    if registered.get(s) == ev:
                        continue
                    try:
                        if s in registered:
                            sel.modify(s, ev)
                        else:
                            sel.register(s, ev)
                        registered[s] = ev
                    except (KeyError, ValueError, OSError):
                        registered.pop(s, None)
                by_sock = {}
                for c in self._conns:
                    if not c.closed:
                        by_sock[c.client] = c
                        by_sock[c.server] = c
            try:
                ready = sel.select(timeout)
            except (OSError, ValueError):
                ready = []
            with self._lock:
                if not self._running:
                    return
                now = time.monotonic()
                cutting = self._cutting(now)
                for key, events in ready:
                    tag = key.data
                    if isinstance(tag, tuple) and tag[0] == "listen":
                        self._accept(now)
                        continue
                    if isinstance(tag, tuple) and tag[0] == "wake":
                        try:
                            while self._wake_r.recv(4096):
                                pass
                        except (BlockingIOError, InterruptedError, OSError):
                            pass
                        continue
                    s = key.fileobj
                    c = by_sock.get(s)
                    if c is None or c.closed:
                        continue
                    if not c.connected:
                        if s is c.server and events & selectors.EVENT_WRITE:
                            err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                            if err:
                                self._log("connection %d: connect to target: %s"
                                          % (c.id, os.strerror(err)))
                                self._close_conn(c, rst=True)
                            else:
                                c.connected = True
                        continue
                    stalled = c.stalled or self._stall_all
                    if stalled:
                        continue
                    if c.resetting is not None:
                        d, alive, _ = c.resetting
                        if s is alive and events & selectors.EVENT_WRITE:
                            self._on_write(c, d, alive, now)
                        continue
                    for d, src, dst in c.dirs():
                        if c.closed:
                            break
                        if s is src and events & selectors.EVENT_READ:
                            self._on_read(c, d, src, dst, now, cutting)
                        if c.closed:
                            break
                        if s is dst and events & selectors.EVENT_WRITE:
                            self._on_write(c, d, dst, now)


class _ControlServer:
    """The line-oriented control socket (see the module documentation)."""

    def __init__(self, proxy, path):
        self.proxy = proxy
        self.path = path
        if os.path.exists(path):
            os.unlink(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(8)
        self.thread = threading.Thread(target=self._serve, daemon=True,
                                       name="faultproxy-control")
        self.thread.start()

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass

    def _serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._client, args=(c,), daemon=True).start()

    def _client(self, c):
        f = c.makefile("rwb")
        try:
            for line in f:
                try:
                    reply = self.command(line.decode("utf-8", "replace").split())
                except (ValueError, IndexError, KeyError) as e:
                    reply = {"error": str(e) or e.__class__.__name__}
                f.write(json.dumps(reply).encode() + b"\n")
                f.flush()
        except OSError:
            pass
        finally:
            try:
                f.close()
                c.close()
            except OSError:
                pass

    def command(self, w):
        p = self.proxy
        if not w:
            raise ValueError("empty command")
        cmd, a = w[0], w[1:]

        def conn(x):
            return None if x in ("-", "all") else int(x)
        if cmd == "delay":
            p.set_delay(float(a[0]))
        elif cmd == "throttle":
            p.set_throttle(int(a[0]))
        elif cmd == "stall":
            p.stall(conn(a[0]) if a else None)
        elif cmd == "resume":
            p.resume(conn(a[0]) if a else None)
        elif cmd == "reset":
            if a[0] == "all":
                return {"ok": True, "reset": p.reset_all()}
            return {"ok": p.reset(int(a[0]))}
        elif cmd == "cut":
            secs = float(a[0]) if a and a[0] not in ("-", "reset") else None
            p.cut(secs, reset="reset" in a)
        elif cmd == "uncut":
            p.uncut()
        elif cmd in ("corrupt", "corrupt-after"):
            direction = a[2] if len(a) > 2 else "up"
            xor = int(a[3], 0) if len(a) > 3 else 0xFF
            kw = {"offset": int(a[1])} if cmd == "corrupt" else {"after": int(a[1])}
            return {"ok": True, "offset": p.corrupt(conn(a[0]), direction=direction,
                                                    xor=xor, **kw)}
        elif cmd == "clear":
            p.clear()
        elif cmd == "status":
            return {"ok": True, "stats": p.stats(), "connections": p.connections()}
        else:
            raise ValueError("unknown command %r" % cmd)
        return {"ok": True}


def main(argv=None):
    ap = argparse.ArgumentParser(description="TCP impairment proxy (see the source).")
    ap.add_argument("--target", required=True, help="HOST:PORT to forward to")
    ap.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT (default %(default)s)")
    ap.add_argument("--control", help="Unix socket for runtime commands")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    p = FaultProxy(args.target, listen=args.listen, verbose=args.verbose)
    p.start(control=args.control)
    print("listening %s" % p.address, flush=True)
    done = threading.Event()
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, lambda *_: done.set())
    while not done.wait(1.0):
        pass
    p.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
