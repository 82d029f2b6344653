"""QEMU harness for the migrelay end-to-end tests (Python 3 standard library only).

What it provides:
  * build_guest(): assemble tests/guest/bootblock.S into a 512-byte boot image and patch
    the top of the dirtied memory window into it (see tests/guest/README);
  * Qemu: one qemu-system-x86_64 process running that guest (TCG unless /dev/kvm works),
    with a QMP client, migration helpers, pmemsave and serial-output helpers;
  * check_memory(): the end-to-end memory check (whole-page, both QEMUs);
  * serial_grows(): "the guest still runs";
  * the migration settings used by every test, in one place (*_PARAMS below).

Environment:
  QEMU            QEMU binary (default qemu-system-x86_64 from PATH)
  MIGRELAY_ACCEL  force an accelerator ("tcg" or "kvm"); default: kvm if /dev/kvm exists
                  and boots the test guest (probed once per process), else tcg
  MIGRELAY_MACHINE  machine type (default "pc")
"""

import atexit
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

MiB = 1024 * 1024
PAGE_SIZE = 4096
MEM_START = 1 * MiB            # the guest dirties [MEM_START, top of RAM)
TOP_OFFSET = 0x1F8             # image offset of the little-endian 32-bit top-of-window word
TOP_DEFAULT = 128 * MiB        # value assembled into the image (checked before patching)

# --- Migration settings, one place for all tests -------------------------------------------
# The guest dirties every page of its RAM several hundred times a second, so precopy can only
# converge when the switchover may take long enough to send the whole RAM once.  Under TCG on
# the 2-core CI machines a 128 MiB guest moves in well under a second, so 2 s of allowed
# downtime converges after one or two passes with a lot of margin.
DOWNTIME_LIMIT_MS = 2000
FAST_BANDWIDTH = 10 * 1000 * 1000 * 1000     # 10 GB/s: effectively unlimited
SLOW_BANDWIDTH = 20 * 1000 * 1000            # 20 MB/s: a 128 MiB pass takes ~6.7 s
FAST_PARAMS = {"downtime-limit": DOWNTIME_LIMIT_MS, "max-bandwidth": FAST_BANDWIDTH}
# Postcopy tests: precopy must NOT converge on its own before the test has asked for
# postcopy (with 2 s it could switch over after the first pass, ~0.1 s), so the allowed
# downtime is tiny; the guest dirties all RAM between two passes, so precopy never ends.
POSTCOPY_PARAMS = {"downtime-limit": 1, "max-bandwidth": FAST_BANDWIDTH}
# Postcopy with the destination guest running during postcopy: the background push is
# throttled so that most pages reach the destination through its page requests (the
# return path) rather than through the bulk stream.
POSTCOPY_RUN_PARAMS = dict(POSTCOPY_PARAMS, **{"max-postcopy-bandwidth": 32 * 1000 * 1000})
# Failure tests that need QEMU to write at full speed when the failure hits (the relays'
# write paths, not only their read paths, see it): unlimited bandwidth, and a downtime
# limit so small that precopy never converges on its own.
BUSY_PARAMS = {"downtime-limit": 1, "max-bandwidth": FAST_BANDWIDTH}
# Failure tests: slow enough that "mid-migration" lasts several seconds, and a downtime
# limit small enough that QEMU never switches over before the failure is injected.
SLOW_PARAMS = {"downtime-limit": 300, "max-bandwidth": SLOW_BANDWIDTH}

FINAL_STATES = ("completed", "failed", "cancelled")


class Skip(Exception):
    """The test cannot run here (missing tool, QEMU cannot start...)."""


class QMPError(Exception):
    def __init__(self, cls, desc, command=None):
        super().__init__("%s: %s%s" % (cls, desc, " (command %s)" % command if command else ""))
        self.cls = cls
        self.desc = desc
        self.command = command


class MigrationError(Exception):
    pass


def skip(reason):
    """Exit with automake's SKIP status."""
    print("SKIP: %s" % reason, flush=True)
    sys.exit(77)


def log(msg):
    print("[%8.3f] %s" % (time.monotonic() - _T0, msg), flush=True)


_T0 = time.monotonic()


def srcdir():
    d = os.environ.get("top_srcdir")
    if d:
        return d
    return os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def fmt_bytes(n):
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return "%.1f %s" % (n, unit) if unit != "B" else "%d B" % n
        n /= 1024
    return "%.1f GiB" % n


# --- The guest image ------------------------------------------------------------------------

def build_guest(workdir, top=TOP_DEFAULT, source=None):
    """Assemble the boot sector into workdir; return the image path.

    top: exclusive end of the dirtied window (4 KiB aligned, above 1 MiB, below 3 GiB).
    Raises Skip if the GNU assembler or linker is missing.
    """
    if top % PAGE_SIZE or top <= MEM_START + PAGE_SIZE or top > 3 * 1024 * MiB:
        raise ValueError("bad top of memory window 0x%x" % top)
    source = source or os.path.join(srcdir(), "tests", "guest", "bootblock.S")
    for tool in ("as", "ld"):
        if shutil.which(tool) is None:
            raise Skip("'%s' (GNU binutils) not found; needed to build the test guest" % tool)
    obj = os.path.join(workdir, "bootblock.o")
    img = os.path.join(workdir, "bootblock.img")
    for argv in (["as", "--32", "-o", obj, source],
                 ["ld", "-m", "elf_i386", "-Ttext", "0x7c00", "--oformat", "binary",
                  "-e", "_start", "-o", img, obj]):
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           universal_newlines=True)
        if p.returncode != 0:
            if "unrecognized emulation" in p.stdout or "unrecognised emulation" in p.stdout:
                raise Skip("linker cannot produce i386 code: %s" % p.stdout.strip())
            raise RuntimeError("%s failed:\n%s" % (" ".join(argv), p.stdout))
    with open(img, "rb") as f:
        data = bytearray(f.read())
    if len(data) != 512 or data[510:512] != b"\x55\xaa":
        raise RuntimeError("%s: not a 512-byte boot sector (%d bytes)" % (img, len(data)))
    if int.from_bytes(data[TOP_OFFSET:TOP_OFFSET + 4], "little") != TOP_DEFAULT:
        raise RuntimeError("%s: top-of-RAM word not found at offset 0x%x" % (img, TOP_OFFSET))
    data[TOP_OFFSET:TOP_OFFSET + 4] = top.to_bytes(4, "little")
    with open(img, "wb") as f:
        f.write(data)
    return img


# --- Accelerator ---------------------------------------------------------------------------

_accel = None


def accel_args():
    """The -accel options every QEMU of this process uses (decided once, see select_accel)."""
    return ["-accel", _accel or os.environ.get("MIGRELAY_ACCEL") or "tcg"]


def select_accel(workdir, image):
    """Decide the accelerator once per process: KVM only if /dev/kvm exists and really
    runs the test guest (a short probe boot), else TCG.  MIGRELAY_ACCEL overrides."""
    global _accel
    if _accel is not None:
        return _accel
    forced = os.environ.get("MIGRELAY_ACCEL")
    if forced:
        _accel = forced
        return _accel
    _accel = "tcg"
    try:
        fd = os.open("/dev/kvm", os.O_RDWR)
        os.close(fd)
    except OSError:
        return _accel
    ok, why = probe_accel(workdir, image, "kvm")
    if ok:
        _accel = "kvm"
    else:
        log("/dev/kvm is there but unusable for the test guest (%s): using TCG" % why)
    return _accel


def probe_accel(workdir, image, accel, timeout=10.0):
    """Boot the test guest once with -accel ACCEL; (True, "") if it prints a 'B'."""
    d = os.path.join(workdir, "probe-" + accel)
    os.makedirs(d, exist_ok=True)
    serial = os.path.join(d, "serial.log")
    argv = [qemu_binary(), "-M", os.environ.get("MIGRELAY_MACHINE", "pc"), "-m", "16M",
            "-nodefaults", "-no-user-config", "-display", "none", "-accel", accel,
            "-serial", "file:" + serial,
            "-drive", "file=%s,format=raw,if=ide,snapshot=on" % image]
    try:
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
    except OSError as e:
        return False, str(e)
    why = "no guest output within %.0f s" % timeout
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if p.poll() is not None:
                why = "QEMU exited: %s" % p.stdout.read().decode("utf-8", "replace").strip()
                break
            try:
                with open(serial, "rb") as f:
                    if b"B" in f.read():
                        return True, ""
            except OSError:
                pass
            time.sleep(0.05)
    finally:
        if p.poll() is None:
            p.kill()
        p.wait()
        p.stdout.close()
        shutil.rmtree(d, ignore_errors=True)
    return False, why


def qemu_binary():
    return os.environ.get("QEMU", "qemu-system-x86_64")


# --- QMP ------------------------------------------------------------------------------------

class QMP:
    """Minimal synchronous QMP client; events are queued while waiting for replies."""

    def __init__(self, path, timeout=15.0, proc=None):
        self.path = path
        self.events = []
        self._buf = b""
        self._id = 0
        deadline = time.monotonic() + timeout
        while True:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(path)
                break
            except OSError as e:
                s.close()
                if proc is not None and proc.poll() is not None:
                    raise RuntimeError("QEMU exited (status %s) before its QMP socket "
                                       "was reachable" % proc.returncode)
                if time.monotonic() >= deadline:
                    raise RuntimeError("cannot connect to QMP socket %s: %s" % (path, e))
                time.sleep(0.05)
        self.sock = s
        greeting = self._read(deadline)
        if "QMP" not in greeting:
            raise RuntimeError("unexpected QMP greeting %r" % greeting)
        self.version = greeting["QMP"].get("version", {}).get("qemu", {})
        self.execute("qmp_capabilities", timeout=max(1.0, deadline - time.monotonic()))

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def _read(self, deadline):
        """Return the next message (reply or event) or raise TimeoutError."""
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("QMP %s: no message in time" % self.path)
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                raise TimeoutError("QMP %s: no message in time" % self.path)
            if not chunk:
                raise ConnectionError("QMP %s: connection closed" % self.path)
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        line = line.strip()
        if not line:
            return self._read(deadline)
        return json.loads(line.decode("utf-8"))

    def execute(self, name, arguments=None, timeout=30.0):
        self._id += 1
        req = {"execute": name, "id": self._id}
        if arguments:
            req["arguments"] = arguments
        self.sock.sendall(json.dumps(req).encode() + b"\n")
        deadline = time.monotonic() + timeout
        while True:
            try:
                msg = self._read(deadline)
            except TimeoutError:
                raise TimeoutError("QMP %s: no reply to %s within %.1f s"
                                   % (self.path, name, timeout))
            if "event" in msg:
                self.events.append(msg)
                continue
            if msg.get("id") != self._id:
                continue
            if "error" in msg:
                raise QMPError(msg["error"].get("class"), msg["error"].get("desc"), name)
            return msg.get("return")

    def cmd(self, name, timeout=30.0, **kw):
        """execute() with keyword arguments; '_' in names becomes '-'."""
        return self.execute(name, {k.replace("_", "-"): v for k, v in kw.items()}, timeout)

    def pump(self):
        """Collect events that have already arrived, without blocking."""
        self.sock.setblocking(False)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    break
                self._buf += chunk
        except (BlockingIOError, InterruptedError):
            pass
        finally:
            self.sock.setblocking(True)
        while b"\n" in self._buf:
            msg = self._read(time.monotonic() + 1)
            if "event" in msg:
                self.events.append(msg)

    def wait_event(self, name, timeout=30.0, match=None):
        """Return (and consume) the first event NAME (optionally with match(data) true)."""
        deadline = time.monotonic() + timeout
        while True:
            for i, ev in enumerate(self.events):
                if ev["event"] == name and (match is None or match(ev.get("data", {}))):
                    return self.events.pop(i)
            try:
                msg = self._read(deadline)
            except TimeoutError:
                raise TimeoutError("QMP %s: no event %s within %.1f s" % (self.path, name, timeout))
            if "event" in msg:
                self.events.append(msg)


# --- One QEMU --------------------------------------------------------------------------------

_live = []


def _cleanup_all():
    for q in list(_live):
        q.kill()


atexit.register(_cleanup_all)


def _die_with_parent():
    """preexec_fn: QEMU gets SIGKILL when the test process dies (prctl PR_SET_PDEATHSIG),
    so a killed test never leaves guests behind."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)      # 1 = PR_SET_PDEATHSIG
    except Exception:
        pass


class Qemu:
    """One QEMU process running the test guest.

    incoming=True starts it with "-incoming defer -S": it waits for migrate_incoming() and
    stays paused after the migration (so its RAM can be dumped before it runs).
    """

    def __init__(self, workdir, name, image, mem_mib=128, incoming=False, machine=None,
                 extra_args=()):
        self.workdir = workdir
        self.name = name
        self.image = image
        self.mem_mib = mem_mib
        self.incoming = incoming
        self.machine = machine or os.environ.get("MIGRELAY_MACHINE", "pc")
        self.extra_args = list(extra_args)
        self.qmp_path = os.path.join(workdir, "%s-qmp.sock" % name)
        self.serial_path = os.path.join(workdir, "%s-serial.log" % name)
        self.log_path = os.path.join(workdir, "%s-qemu.log" % name)
        self.proc = None
        self.qmp = None

    @property
    def top(self):
        return self.mem_mib * MiB

    def argv(self):
        # Every QEMU gets its own copy of the (never written) disk image: no image locking
        # between the source and the destination on the same host.
        disk = os.path.join(self.workdir, "%s-disk.img" % self.name)
        shutil.copyfile(self.image, disk)
        a = [qemu_binary(), "-name", self.name, "-M", self.machine, "-m", "%dM" % self.mem_mib,
             "-nodefaults", "-display", "none", "-no-user-config"]
        a += accel_args()
        a += ["-serial", "file:" + self.serial_path,
              "-drive", "file=%s,format=raw,if=ide" % disk,
              "-qmp", "unix:%s,server=on,wait=off" % self.qmp_path]
        if self.incoming:
            a += ["-incoming", "defer", "-S"]
        return a + self.extra_args

    def start(self, timeout=20.0, skip_on_failure=True):
        """Start QEMU and connect QMP.  If it does not come up, raise Skip ("QEMU cannot
        run here") when skip_on_failure, else RuntimeError."""
        binary = qemu_binary()
        if shutil.which(binary) is None:
            raise Skip("QEMU binary '%s' not found (install qemu-system-x86)" % binary)
        select_accel(self.workdir, self.image)
        for p in (self.qmp_path, self.serial_path):
            if os.path.exists(p):
                os.unlink(p)
        argv = self.argv()
        self.logf = open(self.log_path, "ab")
        self.logf.write(("+ %s\n" % " ".join(argv)).encode())
        self.logf.flush()
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.logf,
                                     stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        _live.append(self)
        try:
            self.qmp = QMP(self.qmp_path, timeout=timeout, proc=self.proc)
        except Exception as e:
            self.kill()
            msg = "%s; its output:\n%s" % (e, self.log_tail())
            if skip_on_failure:
                raise Skip("QEMU cannot run here: " + msg)
            raise RuntimeError("%s QEMU did not start: %s" % (self.name, msg))
        return self

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n=4000):
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-n:].decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self, timeout=10.0):
        """quit through QMP, then SIGKILL if needed."""
        if self.proc is None:
            return
        if self.alive() and self.qmp is not None:
            try:
                self.qmp.execute("quit", timeout=3)
            except Exception:
                pass
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        self.kill()

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        if self.qmp is not None:
            self.qmp.close()
            self.qmp = None
        if self in _live:
            _live.remove(self)
        if getattr(self, "logf", None):
            self.logf.close()
            self.logf = None

    # --- QMP helpers

    def execute(self, name, arguments=None, timeout=30.0):
        return self.qmp.execute(name, arguments, timeout)

    def cmd(self, name, timeout=30.0, **kw):
        return self.qmp.cmd(name, timeout, **kw)

    def has_capability(self, cap):
        caps = self.execute("query-migrate-capabilities")
        return any(c["capability"] == cap for c in caps)

    def set_caps(self, caps):
        if caps:
            self.execute("migrate-set-capabilities",
                         {"capabilities": [{"capability": k, "state": bool(v)}
                                           for k, v in caps.items()]})

    def set_params(self, params):
        if params:
            self.execute("migrate-set-parameters", dict(params))

    def migrate(self, uri):
        self.execute("migrate", {"uri": uri})

    def migrate_incoming(self, uri):
        self.execute("migrate-incoming", {"uri": uri})

    def migration_events(self):
        """Statuses of all MIGRATION events so far (needs the "events" capability)."""
        self.qmp.pump()
        return [ev["data"].get("status") for ev in self.qmp.events if ev["event"] == "MIGRATION"]

    def query_migrate(self, timeout=10.0):
        return self.execute("query-migrate", timeout=timeout)

    def final_info(self, timeout=2.0):
        """query-migrate after completion, once QEMU has filled in its statistics.

        QEMU 7.2 reports "completed" a moment before it computes total-time and
        downtime (they read 0 in that window), so poll until total-time is set."""
        deadline = time.monotonic() + timeout
        while True:
            info = self.query_migrate()
            if info.get("total-time", 0) > 0 or time.monotonic() >= deadline:
                return info
            time.sleep(0.02)

    def run_state(self, timeout=10.0):
        return self.execute("query-status", timeout=timeout)["status"]

    def wait_status(self, statuses, timeout=60.0, poll=0.1, progress=None):
        """Poll query-migrate until its status is one of STATUSES; return the info.

        A final state that is not wanted raises MigrationError (with QEMU's error-desc).
        progress(info) is called about once a second.
        """
        if isinstance(statuses, str):
            statuses = (statuses,)
        deadline = time.monotonic() + timeout
        next_progress = 0
        while True:
            info = self.query_migrate()
            st = info.get("status")
            if st in statuses:
                return info
            if st in FINAL_STATES:
                raise MigrationError("%s: migration %s, wanted %s%s"
                                     % (self.name, st, "/".join(statuses),
                                        ": " + info["error-desc"] if "error-desc" in info else ""))
            now = time.monotonic()
            if progress and now >= next_progress:
                progress(info)
                next_progress = now + 1.0
            if now >= deadline:
                raise MigrationError("%s: migration still %r after %.0f s, wanted %s"
                                     % (self.name, st, timeout, "/".join(statuses)))
            if not self.alive():
                raise MigrationError("%s: QEMU exited (%s)" % (self.name, self.proc.returncode))
            time.sleep(poll)

    def pmemsave(self, path, start=MEM_START, size=None, timeout=120.0):
        """Dump guest-physical memory [start, start+size) (default: the whole window)."""
        if size is None:
            size = self.top - start
        if os.path.exists(path):
            os.unlink(path)
        self.execute("pmemsave", {"val": start, "size": size, "filename": path}, timeout=timeout)
        if os.path.getsize(path) != size:
            raise RuntimeError("pmemsave wrote %d bytes, wanted %d" % (os.path.getsize(path), size))
        return path

    # --- serial output

    def serial_bytes(self):
        try:
            return os.path.getsize(self.serial_path)
        except OSError:
            return 0

    def wait_serial(self, text=b"B", timeout=30.0):
        """Wait until the serial output contains TEXT (the guest has finished a pass)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with open(self.serial_path, "rb") as f:
                    if text in f.read():
                        return
            except OSError:
                pass
            if not self.alive():
                raise RuntimeError("%s: QEMU exited before the guest printed %r:\n%s"
                                   % (self.name, text, self.log_tail()))
            if time.monotonic() >= deadline:
                raise RuntimeError("%s: guest printed no %r within %.0f s (serial: %d bytes)"
                                   % (self.name, text, timeout, self.serial_bytes()))
            time.sleep(0.05)


def serial_grows(path, timeout=5.0, min_growth=2):
    """True if the serial output file at PATH grows by MIN_GROWTH bytes within TIMEOUT."""
    def size():
        try:
            return os.path.getsize(path)
        except OSError:
            return 0
    start = size()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if size() >= start + min_growth:
            return True
        time.sleep(0.05)
    return size() >= start + min_growth


def guest_runs(q, timeout=5.0):
    """The guest of Qemu q runs: run state 'running' and its serial output grows."""
    st = q.run_state()
    if st != "running":
        return False, "run state %r" % st
    if not serial_grows(q.serial_path, timeout):
        return False, "serial output did not grow within %.0f s" % timeout
    return True, "running, serial output growing"


# --- Relays in their secure configuration ---------------------------------------------------

def secure_relay_config(directory, relay_module, hosts=("127.0.0.1", "localhost")):
    """TLS 1.3 with mutual certificates (a throw-away PKI from tests/lib/pki.py) plus
    SCRAM-SHA-256 authentication of the source relay ("src") by the destination ("dst").

    Returns (tls_dirs, extra_args), both {"src": ..., "dst": ...}, for
    relay.Relay(..., tls_dir=tls_dirs[name], extra_args=extra_args[name]); the source
    relay should run with listen=None (it only dials out); the destination's server
    certificate names `hosts`.  Skips (77) without openssl.
    """
    import pki
    pki.require_openssl()
    tls = pki.make_relay_dirs(directory, names=("src", "dst"), hosts=tuple(hosts))
    password = "migrelay-e2e-%d-%d" % (os.getpid(), int(time.time()))
    out = subprocess.run([relay_module.binary("migrelayd"), "--make-verifier", "src"],
                         input=password.encode(), stdout=subprocess.PIPE, check=True)
    files = {}
    for name, text in (("users", out.stdout.decode()), ("secret", "src:%s\n" % password)):
        files[name] = os.path.join(directory, name)
        fd = os.open(files[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
    return tls, {"dst": ["--auth-users", files["users"]],
                 "src": ["--auth-secret", files["secret"]]}


# --- Memory check ------------------------------------------------------------------------------

class MemCheck:
    def __init__(self):
        self.ok = False
        self.pages = 0
        self.identical = False
        self.diff_pages = []        # page indices where the dumps differ (first few)
        self.n_diff_pages = 0
        self.dirty_tail_pages = []  # pages with a non-zero byte in 1..4095 (first few)
        self.n_dirty_tail = 0
        self.edges = []             # (page index, previous byte 0, byte 0) where byte 0 changes
        self.value = None
        self.seconds = 0.0
        self.compared = True
        self.problems = []

    def summary(self):
        if self.ok:
            what = "%d pages %s" % (self.pages, "identical" if self.compared
                                    else "(destination only)")
            if self.edges:
                e = self.edges[0]
                return ("OK: %s; byte 0 = %d below page %d (0x%x), %d above"
                        % (what, e[1], e[0], MEM_START + e[0] * PAGE_SIZE, e[2]))
            return "OK: %s; byte 0 = %d everywhere" % (what, self.value)
        return "FAILED: " + "; ".join(self.problems)


def check_memory(src_dump, dst_dump, base=MEM_START, expect_size=None):
    """Compare two RAM dumps of the test guest and check the guest's memory pattern.

    Requirements: same size; byte-identical; in every 4 KiB page bytes 1..4095 are zero;
    byte 0 is the same in every page, or drops by exactly 1 (mod 256) at one page boundary
    (the incrementer was stopped in the middle of a pass).
    src_dump None: only the pattern of dst_dump is checked (the destination ran after the
    source stopped, e.g. postcopy with a running destination).
    """
    t0 = time.monotonic()
    r = MemCheck()
    dsize = os.path.getsize(dst_dump)
    ssize = os.path.getsize(src_dump) if src_dump is not None else dsize
    if ssize != dsize or ssize % PAGE_SIZE or (expect_size is not None and dsize != expect_size):
        r.problems.append("dump sizes differ or not page multiples: %d vs %d" % (ssize, dsize))
        return r
    r.pages = ssize // PAGE_SIZE
    r.compared = src_dump is not None
    chunk_pages = 1024
    zero_chunk = bytes(chunk_pages * PAGE_SIZE)
    byte0 = bytearray()
    with open(src_dump or dst_dump, "rb") as fs, open(dst_dump, "rb") as fd:
        page = 0
        while page < r.pages:
            a = fs.read(chunk_pages * PAGE_SIZE)
            b = fd.read(chunk_pages * PAGE_SIZE)
            n = len(b) // PAGE_SIZE
            if a != b:
                for i in range(n):
                    if a[i * PAGE_SIZE:(i + 1) * PAGE_SIZE] != b[i * PAGE_SIZE:(i + 1) * PAGE_SIZE]:
                        r.n_diff_pages += 1
                        if len(r.diff_pages) < 10:
                            r.diff_pages.append(page + i)
            byte0 += b[0::PAGE_SIZE]
            tails = bytearray(b)
            tails[0::PAGE_SIZE] = bytes(n)
            if tails != zero_chunk[:len(tails)]:
                for i in range(n):
                    if any(tails[i * PAGE_SIZE:(i + 1) * PAGE_SIZE]):
                        r.n_dirty_tail += 1
                        if len(r.dirty_tail_pages) < 10:
                            r.dirty_tail_pages.append(page + i)
            page += n
    r.identical = r.n_diff_pages == 0
    if not r.identical:
        r.problems.append("%d pages differ between source and destination, first at %s"
                          % (r.n_diff_pages, ", ".join("0x%x" % (base + p * PAGE_SIZE)
                                                       for p in r.diff_pages)))
    if r.n_dirty_tail:
        r.problems.append("%d pages have non-zero bytes at offsets 1..4095, first at %s"
                          % (r.n_dirty_tail, ", ".join("0x%x" % (base + p * PAGE_SIZE)
                                                       for p in r.dirty_tail_pages)))
    for i in range(1, len(byte0)):
        if byte0[i] != byte0[i - 1]:
            r.edges.append((i, byte0[i - 1], byte0[i]))
            if len(r.edges) > 10:
                break
    if byte0:
        r.value = byte0[0]
    if len(r.edges) > 1:
        r.problems.append("byte 0 changes at %s%d places: %s"
                          % ("more than " if len(r.edges) > 10 else "", min(len(r.edges), 10),
                             ", ".join("page 0x%x: %d->%d" % (base + p * PAGE_SIZE, x, y)
                                       for p, x, y in r.edges[:5])))
    elif len(r.edges) == 1:
        p, x, y = r.edges[0]
        if y != (x - 1) % 256:
            r.problems.append("byte 0 jumps from %d to %d at 0x%x (expected a drop by 1)"
                              % (x, y, base + p * PAGE_SIZE))
    r.ok = not r.problems
    r.seconds = time.monotonic() - t0
    return r


def dump_and_check(src, dst, workdir, keep=False):
    """pmemsave the window of both (stopped) QEMUs and run check_memory().

    src None: check the destination's pattern only."""
    t0 = time.monotonic()
    sp = src.pmemsave(os.path.join(workdir, "src-ram.bin")) if src is not None else None
    dp = dst.pmemsave(os.path.join(workdir, "dst-ram.bin"))
    t1 = time.monotonic()
    r = check_memory(sp, dp, expect_size=dst.top - MEM_START)
    r.dump_seconds = t1 - t0
    if r.ok and not keep:
        for p in (sp, dp):
            if p is not None:
                os.unlink(p)
    return r
