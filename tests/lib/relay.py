"""relay.py - test library for migrelay integration and QEMU tests (stdlib only).

Starts migrelayd instances on loopback, speaks the control protocol
(interface.md: one JSON object per line, QMP-shaped) and collects events.

    import relay
    with relay.TempDir() as d:
        src = relay.Relay(d, "src"); src.start()
        dst = relay.Relay(d, "dst"); dst.start()
        dst.cmd("session-incoming", id="vm1", qemu="unix:" + d.join("q.sock"))
        src.cmd("session-outgoing", id="vm1", peer=dst.peer_addr(),
                listen="unix:" + d.join("l.sock"), channels=4)
        ...
        src.wait_state("vm1", "completed")

Every control request opens a fresh connection (greeting, request, reply),
so Relay.cmd() may be called from several threads at once.  Exit status 77
(relay.skip) means a prerequisite is missing, as Automake expects.
"""

import atexit
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

__all__ = [
    "SKIP", "FINAL_STATES", "skip", "log", "srcdir", "builddir", "binary",
    "free_port", "test_timeout", "RelayError", "ControlClient", "Relay",
    "check", "write_private", "make_verifier",
    "TempDir",
]

SKIP = 77
FINAL_STATES = ("completed", "failed", "cancelled")

_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(os.path.dirname(_HERE))      # tests/lib -> top
_T0 = time.monotonic()

# Every Relay ever created, so that leftovers are killed at exit and
# TempDir can show their logs.
_relays = []
_relays_lock = threading.Lock()


def skip(reason):
    """Report a missing prerequisite and exit 77 (Automake's SKIP)."""
    print("SKIP: %s" % reason, flush=True)
    sys.exit(SKIP)


def log(fmt, *args):
    """Print a progress line with the seconds since the test started."""
    msg = fmt % args if args else fmt
    print("[%7.3f] %s" % (time.monotonic() - _T0, msg), flush=True)


def check(cond, what):
    """Assert cond; log "ok: what" when it holds (the scenario's trace)."""
    if not cond:
        raise AssertionError(what)
    log("ok: %s", what)


def write_private(path, text):
    """Write a secret file readable by its owner only; returns path."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)
    return path


def make_verifier(name, password):
    """The SCRAM verifier line `migrelayd --make-verifier name` prints."""
    out = subprocess.run([binary("migrelayd"), "--make-verifier", name],
                         input=password.encode(), capture_output=True,
                         check=True)
    return out.stdout.decode().strip()


def srcdir():
    """The top source directory (env top_srcdir, else the repository)."""
    return os.path.abspath(os.environ.get("top_srcdir") or _ROOT)


def builddir():
    """The top build directory (env top_builddir, else the repository)."""
    return os.path.abspath(os.environ.get("top_builddir") or _ROOT)


def binary(name):
    """Path of a built program in builddir(); skip() when it is missing."""
    path = os.path.join(builddir(), name)
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        skip("%s is not built (%s)" % (name, path))
    return path


def free_port(host="127.0.0.1"):
    """A TCP port that nothing listens on right now (racy, as all are)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def test_timeout(seconds):
    """Fail the test (TimeoutError in the main thread) after `seconds`."""
    def _expired(signum, frame):
        raise TimeoutError("test took longer than %d s" % seconds)
    signal.signal(signal.SIGALRM, _expired)
    signal.alarm(int(seconds))


class RelayError(Exception):
    """An error reply: .cls is the error class, .desc the description."""

    def __init__(self, cls, desc):
        super().__init__("%s: %s" % (cls, desc))
        self.cls = cls
        self.desc = desc


class ControlClient:
    """One connection to a control socket.

    The constructor connects and reads the greeting (.greeting).  Low level:
    send_raw(), send(), recv().  High level: execute() returns the whole
    reply object, call() its "return" value or raises RelayError.  Events
    seen while waiting for replies are kept in .events.
    """

    def __init__(self, path, timeout=10):
        self.path = path
        self.timeout = timeout
        self.events = []
        self._buf = b""
        self._next_id = 1
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.sock.settimeout(timeout)
            self.sock.connect(path)
            self.greeting = self.recv()
        except BaseException:
            self.sock.close()
            raise

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def send_raw(self, data):
        """Send bytes as they are (no newline is added)."""
        self.sock.sendall(data)

    def send(self, obj):
        """Send one JSON object as a line."""
        self.send_raw(json.dumps(obj).encode() + b"\n")

    def recv_line(self, timeout=None):
        """The next line (bytes, without newline); None at EOF."""
        deadline = time.monotonic() + (self.timeout if timeout is None
                                       else timeout)
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("no line from %s" % self.path)
            self.sock.settimeout(left)
            data = self.sock.recv(65536)
            if not data:
                return None
            self._buf += data
        line, self._buf = self._buf.split(b"\n", 1)
        return line

    def recv(self, timeout=None):
        """The next line parsed as JSON; EOFError at EOF."""
        line = self.recv_line(timeout)
        if line is None:
            raise EOFError("%s closed the connection" % self.path)
        return json.loads(line)

    def execute(self, name, arguments=None, id=None, timeout=None):
        """Send a request and return the reply object (events skipped)."""
        if id is None:
            id = self._next_id
            self._next_id += 1
        req = {"execute": name, "id": id}
        if arguments is not None:
            req["arguments"] = arguments
        self.send(req)
        deadline = time.monotonic() + (self.timeout if timeout is None
                                       else timeout)
        while True:
            msg = self.recv(max(0.001, deadline - time.monotonic()))
            if "event" in msg:
                self.events.append(msg)
                continue
            if msg.get("id") == id:
                return msg

    def call(self, name, arguments=None, timeout=None):
        """The "return" value of a command, or RelayError."""
        reply = self.execute(name, arguments, timeout=timeout)
        if "error" in reply:
            err = reply["error"]
            raise RelayError(err.get("class"), err.get("desc"))
        return reply["return"]


def _args(arguments):
    """Python keyword arguments to control arguments (_ becomes -)."""
    return {k.replace("_", "-"): v for k, v in arguments.items()}


class Relay:
    """One migrelayd process with its control socket and log in workdir.

    listen: "HOST:PORT", a list of them (repeated --listen), or None for
    --no-listen.  tls_dir: start with --tls-dir DIR instead of
    --insecure-plaintext.  plaintext=False leaves out --insecure-plaintext
    (give --tls-dir in extra_args then).  The environment variable
    MIGRELAY_TEST_WRAPPER, e.g. "valgrind -q", is put in front of the
    command line (give start() a longer timeout then).
    """

    def __init__(self, workdir, name, listen="127.0.0.1:0", extra_args=(),
                 log_level="debug", plaintext=True, tls_dir=None):
        self.workdir = os.fspath(workdir)
        self.name = name
        self.listen = listen
        self.extra_args = list(extra_args)
        self.log_level = log_level
        self.plaintext = plaintext
        self.tls_dir = None if tls_dir is None else os.fspath(tls_dir)
        self.control_path = os.path.join(self.workdir, name + ".sock")
        self.log_path = os.path.join(self.workdir, name + ".log")
        self.proc = None
        self.pid = None
        self.killed = False         # kill() was called: any status is fine
        self.stop_timed_out = False  # stop() needed SIGKILL
        self._logf = None
        self._events = []
        self._events_lock = threading.Lock()
        self._ev_client = None
        self._ev_thread = None
        with _relays_lock:
            _relays.append(self)

    def __repr__(self):
        return "<Relay %s pid=%s>" % (self.name, self.pid)

    def argv(self):
        argv = [binary("migrelayd"), "--control", self.control_path]
        if self.listen is None:
            argv.append("--no-listen")
        elif isinstance(self.listen, str):
            argv += ["--listen", self.listen]
        else:
            for addr in self.listen:
                argv += ["--listen", addr]
        if self.tls_dir is not None:
            argv += ["--tls-dir", self.tls_dir]
        elif self.plaintext:
            argv.append("--insecure-plaintext")
        argv += ["--log-level", self.log_level]
        wrapper = shlex.split(os.environ.get("MIGRELAY_TEST_WRAPPER", ""))
        return wrapper + argv + self.extra_args

    def start(self, timeout=10):
        """Start the daemon and wait until query-daemon answers."""
        argv = self.argv()
        self._logf = open(self.log_path, "ab")
        self._logf.write(("### %s\n" % " ".join(argv)).encode())
        self._logf.flush()
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                     stdout=self._logf, stderr=self._logf,
                                     cwd=self.workdir)
        self.pid = self.proc.pid
        deadline = time.monotonic() + timeout
        while True:
            rc = self.proc.poll()
            if rc is not None:
                raise RuntimeError("%s exited with status %d during "
                                   "startup:\n%s" % (self.name, rc,
                                                     self.log_tail()))
            try:
                self.cmd("query-daemon", timeout=2)
                break
            except (OSError, EOFError, ValueError):
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError("%s: control socket %s not answering "
                                   "after %d s:\n%s" % (
                                       self.name, self.control_path,
                                       timeout, self.log_tail()))
            time.sleep(0.05)
        self._ev_client = ControlClient(self.control_path, timeout=timeout)
        self._ev_client.sock.settimeout(None)
        self._ev_thread = threading.Thread(target=self._event_loop,
                                           name="events-" + self.name,
                                           daemon=True)
        self._ev_thread.start()
        return self

    def _event_loop(self):
        c = self._ev_client
        try:
            while True:
                while b"\n" not in c._buf:
                    data = c.sock.recv(65536)
                    if not data:
                        return
                    c._buf += data
                line, c._buf = c._buf.split(b"\n", 1)
                try:
                    msg = json.loads(line)
                except ValueError:
                    continue
                if isinstance(msg, dict) and "event" in msg:
                    with self._events_lock:
                        self._events.append(msg)
        except OSError:
            return

    def events(self):
        """Events received so far on the event connection (a copy)."""
        with self._events_lock:
            return list(self._events)

    def wait_event(self, pred, timeout=10):
        """Wait for an event for which pred(event) is true; return it."""
        deadline = time.monotonic() + timeout
        while True:
            for ev in self.events():
                if pred(ev):
                    return ev
            if time.monotonic() > deadline:
                raise AssertionError("%s: no matching event within %s s; "
                                     "events: %s" % (self.name, timeout,
                                                     self.events()))
            time.sleep(0.02)

    def cmd(self, name, timeout=30, **arguments):
        """Execute a control command on a fresh connection.

        Keyword arguments become the command's arguments, with '_' mapped
        to '-' (peer_identity= is "peer-identity").  Returns the "return"
        value; raises RelayError for an error reply.
        """
        with ControlClient(self.control_path, timeout=timeout) as c:
            return c.call(name, _args(arguments) if arguments else None,
                          timeout=timeout)

    def peer_addr(self):
        """The first "HOST:PORT" this relay listens on (for --peer).

        A wildcard address is replaced by the loopback address of its family.
        """
        addr = self.cmd("query-daemon")["listen"][0]
        host, port = addr.rsplit(":", 1)
        if host == "0.0.0.0":
            host = "127.0.0.1"
        elif host in ("[::]", "::"):
            host = "[::1]"
        return "%s:%s" % (host, port)

    def session(self, sid):
        """The session object of sid (RelayError NotFound if unknown)."""
        return self.cmd("query-sessions", id=sid)[0]

    def wait_state(self, sid, states, timeout=60):
        """Poll until the state of sid is one of states; return the object.

        Raises AssertionError with the last object on timeout, or at once
        when the session reached a final state that is not wanted.
        """
        if isinstance(states, str):
            states = (states,)
        states = tuple(states)
        deadline = time.monotonic() + timeout
        last = None
        while True:
            last = self.session(sid)
            if last.get("state") in states:
                return last
            if last.get("state") in FINAL_STATES:
                raise AssertionError("%s: session %s ended %s, wanted %s: "
                                     "%s" % (self.name, sid, last["state"],
                                             "|".join(states), last))
            if time.monotonic() > deadline:
                raise AssertionError("%s: session %s not %s after %s s: %s"
                                     % (self.name, sid, "|".join(states),
                                        timeout, last))
            time.sleep(0.05)

    def is_running(self):
        return self.proc is not None and self.proc.poll() is None

    def _close_events(self):
        if self._ev_client is not None:
            try:
                self._ev_client.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._ev_client.close()
        if self._ev_thread is not None:
            self._ev_thread.join(5)
        self._ev_client = None
        self._ev_thread = None

    def stop(self, timeout=10):
        """SIGTERM, SIGKILL after timeout; returns the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.stop_timed_out = True
                self.proc.kill()
                self.proc.wait()
        self._close_events()
        if self._logf is not None:
            self._logf.close()
            self._logf = None
        return self.proc.returncode

    def kill(self):
        """SIGKILL and wait."""
        if self.proc is None:
            return
        self.killed = True
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._close_events()
        if self._logf is not None:
            self._logf.close()
            self._logf = None

    def fd_count(self):
        """Number of open file descriptors of the process."""
        return len(os.listdir("/proc/%d/fd" % self.pid))

    def wait_fd_count(self, want, timeout=5):
        """Wait until the process has at most want fds; the last count."""
        deadline = time.monotonic() + timeout
        while True:
            n = self.fd_count()
            if n <= want or time.monotonic() > deadline:
                return n
            time.sleep(0.05)

    def rss_kib(self):
        """Resident set size of the process in KiB."""
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def exited_abnormally(self):
        """True when the process ended other than by exit 0 or our SIGTERM
        (a crash, a sanitizer report, a hang on SIGTERM); kill() excuses."""
        if self.proc is None or self.proc.returncode is None or self.killed:
            return False
        return self.stop_timed_out or \
            self.proc.returncode not in (0, -signal.SIGTERM)

    def log_tail(self, lines=40):
        return _tail(self.log_path, lines)


def _tail(path, lines):
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 256 * 1024))
            data = f.read().decode("utf-8", "replace")
    except OSError as e:
        return "(%s)" % e
    return "\n".join(data.splitlines()[-lines:])


def _cleanup():
    with _relays_lock:
        relays = list(_relays)
    for r in relays:
        try:
            if r.is_running():
                r.kill()
        except Exception:
            pass


atexit.register(_cleanup)


class TempDir:
    """A scratch directory for one test, used as a context manager.

        with relay.TempDir() as d:     # d is path-like: os.path.join(d, "x")
            r = d.relay("src")         # Relay(d, "src"), stopped at exit

    On success the directory is removed (unless MIGRELAY_KEEP_TMP is set).
    On failure it is kept, and the tails of all *.log files in it (the
    relays' logs and whatever else the test wrote there) are printed.
    Relays with their workdir here are stopped at exit either way.
    """

    def __init__(self, prefix="mr-", log_lines=60):
        # Unix socket paths are limited to 107 bytes: keep the base short.
        base = os.environ.get("MIGRELAY_TEST_TMPDIR") or "/tmp"
        self.path = tempfile.mkdtemp(prefix=prefix, dir=base)
        self.log_lines = log_lines

    def __fspath__(self):
        return self.path

    def __str__(self):
        return self.path

    def join(self, *parts):
        return os.path.join(self.path, *parts)

    def relay(self, name, **kwargs):
        return Relay(self.path, name, **kwargs)

    def __enter__(self):
        return self

    def _relays_here(self):
        with _relays_lock:
            return [r for r in _relays if r.workdir == self.path]

    def __exit__(self, exc_type, exc, tb):
        failed = exc_type is not None and not (
            issubclass(exc_type, SystemExit) and exc.code in (0, None, SKIP))
        crashed = []
        for r in self._relays_here():
            try:
                r.stop()
            except Exception as e:
                print("stopping %s: %r" % (r.name, e), file=sys.stderr)
            if r.exited_abnormally():
                crashed.append(r)
        if crashed:
            print("FAIL: relay(s) exited abnormally: %s" % ", ".join(
                "%s (status %s%s)" % (r.name, r.proc.returncode,
                                      ", SIGTERM ignored" if
                                      r.stop_timed_out else "")
                for r in crashed), file=sys.stderr)
            failed = True
        if failed:
            self.dump_logs()
            print("test failed: keeping %s" % self.path, file=sys.stderr,
                  flush=True)
            if exc_type is None:
                sys.exit(1)
        elif os.environ.get("MIGRELAY_KEEP_TMP"):
            print("keeping %s" % self.path)
        else:
            shutil.rmtree(self.path, ignore_errors=True)
        return False

    def dump_logs(self):
        try:
            names = sorted(os.listdir(self.path))
        except OSError:
            return
        for n in names:
            if n.endswith(".log"):
                p = os.path.join(self.path, n)
                print("----- tail of %s -----\n%s\n-----" % (
                    p, _tail(p, self.log_lines)), file=sys.stderr,
                    flush=True)
