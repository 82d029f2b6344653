"""benchlib.py - shared parts of the migrelay benchmarks (bench/b*.py), stdlib only.

What it provides:
  * the build directory (env top_builddir, default /tmp/bb) and the C helper
    bench/tools/mrbench.c compiled into BUILD/bench-tools/;
  * CPU accounting: utime+stime from /proc/PID/stat, the whole machine from
    /proc/stat, and the CPU of this benchmark's own process tree, so the
    background load (the neighbours') can be told apart from ours;
  * the pre-flight gate of docs/benchmarks.md: machine description, and under
    0.25 cores of background load for 5 s before anything starts;
  * PSS from /proc/PID/smaps_rollup;
  * the variants' plumbing: relay pairs (plaintext, TLS with the tests' PKI and
    SCRAM), a stunnel pair, a splice forwarder pair;
  * statistics, markdown tables, raw JSON under bench/results/.
"""

import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results")
DEFAULT_BUILDDIR = "/tmp/bb"
os.environ.setdefault("top_builddir", DEFAULT_BUILDDIR)
os.environ.setdefault("top_srcdir", ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))

import relay as R  # noqa: E402
import qemu as Q   # noqa: E402

GiB = 1 << 30
CLK_TCK = os.sysconf("SC_CLK_TCK")
BG_LIMIT = 0.25          # cores of background load allowed (performance.md, section 4)


def log(fmt, *args):
    R.log(fmt, *args)


def builddir():
    return R.builddir()


# --- the C helper ---------------------------------------------------------------------------

def mrbench():
    """Path of the compiled helper (rebuilt when the source is newer)."""
    src = os.path.join(HERE, "tools", "mrbench.c")
    outdir = os.path.join(builddir(), "bench-tools")
    out = os.path.join(outdir, "mrbench")
    if not os.path.exists(out) or os.path.getmtime(out) < os.path.getmtime(src):
        os.makedirs(outdir, exist_ok=True)
        cc = os.environ.get("CC", "cc")
        subprocess.run([cc, "-O2", "-Wall", "-pthread", "-o", out, src], check=True)
    return out


class Helper:
    """One mrbench process; listeners' "PORT n" line is read into .port."""

    def __init__(self, *args, listener=False):
        self.argv = [mrbench()] + [str(a) for a in args]
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        self.port = None
        if listener:
            line = self.proc.stdout.readline().decode()
            if not line.startswith("PORT "):
                self.proc.wait()
                raise RuntimeError("%s: no PORT line: %r %s" % (
                    " ".join(self.argv), line, self.proc.stderr.read().decode()))
            self.port = int(line.split()[1])

    @property
    def pid(self):
        return self.proc.pid

    def result(self, timeout=120):
        """Wait for the exit; the JSON line it printed."""
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RuntimeError("%s: no result within %s s" % (" ".join(self.argv), timeout))
        if self.proc.returncode != 0:
            raise RuntimeError("%s: exit %s: %s" % (" ".join(self.argv),
                                                   self.proc.returncode, err.decode()))
        lines = [l for l in out.decode().splitlines() if l.startswith("{")]
        return json.loads(lines[-1]) if lines else {}

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for f in (self.proc.stdout, self.proc.stderr):
            if f:
                f.close()


# --- CPU and memory accounting ----------------------------------------------------------------

def _stat_fields(pid):
    with open("/proc/%d/stat" % pid) as f:
        data = f.read()
    return data[data.rindex(")") + 2:].split()     # fields[0] is field 3 (state)


def proc_cpu(pid, children=False):
    """utime+stime (+cutime+cstime) of a process, all threads, in seconds."""
    try:
        f = _stat_fields(pid)
    except (OSError, ValueError):
        return 0.0
    t = int(f[11]) + int(f[12])
    if children:
        t += int(f[13]) + int(f[14])
    return t / CLK_TCK


def cpu_of(pids):
    return sum(proc_cpu(p) for p in pids)


def system_cpu():
    """/proc/stat totals in seconds: user nice system idle iowait irq softirq steal."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    names = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
    return dict(zip(names, [x / CLK_TCK for x in v]))


def own_tree_cpu():
    """CPU seconds of this process, its reaped children and every live descendant
    (with their reaped children): the benchmark's own share of the machine."""
    me = os.getpid()
    parent = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                parent[int(d)] = int(_stat_fields(int(d))[1])
            except (OSError, ValueError, IndexError):
                pass
    total = 0.0
    for pid in parent:
        p, depth = pid, 0
        while p and p != me and depth < 64:
            p = parent.get(p, 0)
            depth += 1
        if p == me:
            total += proc_cpu(pid, children=True)
    return total


class LoadMeter:
    """Wall time, machine CPU and our own tree's CPU over an interval:
    background cores = (user+nice+system of the machine - ours) / wall.
    Interrupt time is left out (loopback traffic of our own lands there); steal
    (the hypervisor's neighbours) is reported on its own."""

    def __init__(self):
        self.t0 = time.monotonic()
        self.s0 = system_cpu()
        self.o0 = own_tree_cpu()

    def stop(self):
        wall = time.monotonic() - self.t0
        s1 = system_cpu()
        o1 = own_tree_cpu()
        d = {k: s1[k] - self.s0[k] for k in s1}
        busy = d["user"] + d["nice"] + d["system"]
        own = o1 - self.o0
        return {"wall": round(wall, 3),
                "busy_cores": round(busy / wall, 3),
                "own_cores": round(own / wall, 3),
                "bg_cores": round(max(0.0, busy - own) / wall, 3),
                "irq_cores": round((d["irq"] + d["softirq"]) / wall, 3),
                "steal_cores": round(d["steal"] / wall, 3)}


def pss_kib(pid):
    """Proportional set size of a process in KiB (smaps_rollup)."""
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


# --- pre-flight ---------------------------------------------------------------------------

def _cmd_out(argv):
    try:
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=20)
        return p.stdout.decode("utf-8", "replace").strip()
    except (OSError, subprocess.TimeoutExpired) as e:
        return "(%s)" % e


def machine():
    """What the results were measured on."""
    lscpu = {}
    for line in _cmd_out(["lscpu"]).splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            lscpu[k.strip()] = v.strip()
    mem = _cmd_out(["sh", "-c", "grep MemTotal /proc/meminfo"])
    git = _cmd_out(["git", "-C", ROOT, "describe", "--always", "--dirty"])
    branch = _cmd_out(["git", "-C", ROOT, "rev-parse", "--abbrev-ref", "HEAD"])
    head_time = _cmd_out(["git", "-C", ROOT, "log", "-1", "--format=%ct"])
    daemon = R.binary("migrelayd")
    built = os.path.getmtime(daemon)
    stale = head_time.isdigit() and int(head_time) > built
    return {
        "cpu": "%s, %s CPUs (%s threads/core), %s" % (
            lscpu.get("Model name"), lscpu.get("CPU(s)"), lscpu.get("Thread(s) per core"),
            lscpu.get("Hypervisor vendor", "hypervisor" if "hypervisor" in
                      lscpu.get("Flags", "") else "bare metal")),
        "memory": mem.split(":", 1)[-1].strip(),
        "kernel": platform.release(),
        "openssl": _cmd_out(["openssl", "version"]),
        "libevent": _cmd_out(["pkg-config", "--modversion", "libevent"]),
        "qemu": _cmd_out([Q.qemu_binary(), "--version"]).splitlines()[0]
        if shutil.which(Q.qemu_binary()) else None,
        "kvm": os.path.exists("/dev/kvm"),
        "stunnel": next((l for l in _cmd_out(["stunnel", "-version"]).splitlines()
                         if l.startswith("stunnel ")), None)
        if shutil.which("stunnel") else None,
        "migrelayd": _cmd_out([daemon, "--version"]),
        "source": "%s (%s)" % (git, branch),
        "migrelayd_built": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(built)),
        "build_older_than_head": bool(stale),
        "builddir": builddir(),
        "python": platform.python_version(),
    }


def preflight(wait_s=None):
    """Sample the machine for 5 s until background load < BG_LIMIT (at most wait_s,
    env BENCH_WAIT_IDLE, default 900 s); returns the record (with every sample)."""
    if wait_s is None:
        wait_s = float(os.environ.get("BENCH_WAIT_IDLE", "900"))
    samples = []
    deadline = time.monotonic() + wait_s
    while True:
        m = LoadMeter()
        time.sleep(5)
        s = m.stop()
        samples.append(s)
        log("pre-flight: background %.2f cores (steal %.2f)", s["bg_cores"],
            s["steal_cores"])
        if s["bg_cores"] < BG_LIMIT:
            break
        if time.monotonic() > deadline:
            log("pre-flight: machine still busy after %.0f s: going on, results flagged",
                wait_s)
            break
        time.sleep(10)
    return {"bg_cores": samples[-1]["bg_cores"], "ok": samples[-1]["bg_cores"] < BG_LIMIT,
            "samples": samples, "machine": machine()}


# --- variants' plumbing --------------------------------------------------------------------

def wait_listening(port, timeout=10):
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError("nothing listens on port %d" % port)
            time.sleep(0.05)


class RelayPair:
    """Two migrelayd (source, destination) on loopback, plaintext or TLS 1.3 + SCRAM."""

    def __init__(self, workdir, name, tls, extra_args=()):
        self.name = name
        self.tls = tls
        self.dir = os.path.join(workdir, name)
        os.makedirs(self.dir)
        tls_dirs, extra = {"src": None, "dst": None}, {"src": [], "dst": []}
        if tls:
            tls_dirs, extra = Q.secure_relay_config(os.path.join(self.dir, "pki"), R)
        self.D = R.Relay(self.dir, "dst", tls_dir=tls_dirs["dst"],
                         extra_args=extra["dst"] + list(extra_args), log_level="info")
        self.S = R.Relay(self.dir, "src", tls_dir=tls_dirs["src"],
                         extra_args=extra["src"] + list(extra_args), log_level="info",
                         listen=None)
        self.n = 0

    def start(self):
        self.D.start()
        self.S.start()
        self.peer = self.D.peer_addr()
        return self

    @property
    def pids(self):
        return [self.S.pid, self.D.pid]

    def open(self, qemu_uri, channels, listen_uri=None):
        """A session pair; returns (sid, the URI the source connects to)."""
        self.n += 1
        sid = "b%d" % self.n
        if listen_uri is None:
            listen_uri = "tcp:127.0.0.1:%d" % R.free_port()
        self.D.cmd("session-incoming", id=sid, qemu=qemu_uri)
        se = self.S.cmd("session-outgoing", id=sid, peer=self.peer, listen=listen_uri,
                        channels=channels)
        if se.get("state") != "ready" or se.get("channels") != channels:
            raise RuntimeError("session-outgoing: %s" % se)
        return sid, listen_uri

    def close(self, sid, timeout=60, remove=True):
        """Wait until both sessions are final; return the source's session object."""
        out = {}
        for r in (self.S, self.D):
            se = r.wait_state(sid, R.FINAL_STATES, timeout=timeout)
            if se.get("state") != "completed":
                raise RuntimeError("%s %s session %s: %s" % (self.name, r.name, sid, se))
            out[r.name] = se
            if remove:
                r.cmd("session-remove", id=sid)
        return out["src"]

    def stop(self):
        for r in (self.S, self.D):
            r.stop()


class StunnelPair:
    """stunnel client -> stunnel server (TLS 1.3, mutual certificates from the tests'
    PKI, stunnel's default cipher choice) -> target port."""

    def __init__(self, workdir, target_port, name="stunnel"):
        self.dir = os.path.join(workdir, name)
        os.makedirs(self.dir)
        import pki
        dirs = pki.make_relay_dirs(os.path.join(self.dir, "pki"))
        self.target = target_port
        self.entry = R.free_port()
        self.mid = R.free_port()
        common = "foreground = yes\npid =\ndebug = 4\noutput = %s\n"
        confs = {
            "client": common % os.path.join(self.dir, "client.log") +
            "[b]\nclient = yes\naccept = 127.0.0.1:%d\nconnect = 127.0.0.1:%d\n"
            "cert = %s/client-cert.pem\nkey = %s/client-key.pem\nCAfile = %s/ca-cert.pem\n"
            "verifyChain = yes\ncheckHost = localhost\nsslVersionMin = TLSv1.3\n"
            % (self.entry, self.mid, dirs["src"], dirs["src"], dirs["src"]),
            "server": common % os.path.join(self.dir, "server.log") +
            "[b]\naccept = 127.0.0.1:%d\nconnect = 127.0.0.1:%d\n"
            "cert = %s/server-cert.pem\nkey = %s/server-key.pem\nCAfile = %s/ca-cert.pem\n"
            "verifyChain = yes\nsslVersionMin = TLSv1.3\n"
            % (self.mid, target_port, dirs["dst"], dirs["dst"], dirs["dst"]),
        }
        self.procs = []
        for n in ("server", "client"):
            path = os.path.join(self.dir, n + ".conf")
            with open(path, "w") as f:
                f.write(confs[n])
            self.procs.append(subprocess.Popen(["stunnel", path], stdin=subprocess.DEVNULL,
                                               stdout=subprocess.DEVNULL,
                                               stderr=subprocess.DEVNULL))
        wait_listening(self.mid)
        wait_listening(self.entry)

    @property
    def pids(self):
        return [p.pid for p in self.procs]

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


class FwdPair:
    """Two splice() forwarders (bench/tools/mrbench.c fwd) -> target port."""

    def __init__(self, target_port):
        self.target = target_port
        self.b = Helper("fwd", "127.0.0.1:0", "127.0.0.1:%d" % target_port, listener=True)
        self.a = Helper("fwd", "127.0.0.1:0", "127.0.0.1:%d" % self.b.port, listener=True)
        self.entry = self.a.port

    @property
    def pids(self):
        return [self.a.pid, self.b.pid]

    def stop(self):
        self.a.kill()
        self.b.kill()


def have_stunnel():
    return shutil.which("stunnel") is not None


def start_paths(workdir, references=True, threads0=False):
    """The paths every benchmark compares: the relay pairs (plaintext and TLS) and, with
    references, the plain forwarder pair and the stunnel pair (skipped, and said, when
    stunnel is missing), each forwarding to a free port of its own (`.target`).  With
    threads0, also relay-plain-t0 / relay-tls-t0: relay pairs started with
    --data-threads 0 (all channel I/O on the main thread).  Returns {name: path}."""
    paths = {"relay-plain": RelayPair(workdir, "plain", tls=False).start(),
             "relay-tls": RelayPair(workdir, "tls", tls=True).start()}
    if threads0:
        t0 = ["--data-threads", "0"]
        paths["relay-plain-t0"] = RelayPair(workdir, "plain-t0", tls=False,
                                            extra_args=t0).start()
        paths["relay-tls-t0"] = RelayPair(workdir, "tls-t0", tls=True, extra_args=t0).start()
    if references:
        paths["fwd-pair"] = FwdPair(R.free_port())
        if have_stunnel():
            paths["stunnel-pair"] = StunnelPair(workdir, R.free_port())
        else:
            log("stunnel not installed: stunnel-pair skipped")
    return paths


def stop_paths(paths):
    for p in paths.values():
        try:
            p.stop()
        except Exception as e:
            log("stopping: %r", e)


# --- statistics and output ------------------------------------------------------------------

def stats(values):
    v = [x for x in values if x is not None]
    if not v:
        return None
    return {"median": statistics.median(v), "min": min(v), "max": max(v), "n": len(v)}


def fmt_stat(s, fmt="%.2f"):
    if s is None:
        return "-"
    if s["n"] == 1 or s["min"] == s["max"]:
        return fmt % s["median"]
    return (fmt + " (" + fmt + "-" + fmt + ")") % (s["median"], s["min"], s["max"])


def ratio(a, b, fmt="%.2f"):
    if a is None or b is None or not b["median"]:
        return "-"
    return fmt % (a["median"] / b["median"])


def md_table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for r in rows:
        out.append("| " + " | ".join(str(c) for c in r) + " |")
    return "\n".join(out)


def rotate(seq, k):
    k %= len(seq)
    return list(seq[k:]) + list(seq[:k])


def save(name, record, text):
    """bench/results/NAME.json (raw) and NAME.md (the printed tables)."""
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, name + ".json"), "w") as f:
        json.dump(record, f, indent=1, sort_keys=True)
    with open(os.path.join(RESULTS, name + ".md"), "w") as f:
        f.write(text + "\n")
    log("wrote %s/%s.{json,md}", RESULTS, name)


def load(name):
    """The raw record bench/results/NAME.json (for --report-only)."""
    with open(os.path.join(RESULTS, name + ".json")) as f:
        return json.load(f)


def reps_default(n=5):
    return int(os.environ.get("BENCH_REPS", n))


def scratch(prefix):
    base = os.environ.get("MIGRELAY_TEST_TMPDIR") or "/tmp"
    return tempfile.mkdtemp(prefix=prefix, dir=base)


def measured(fn, redo=2):
    """Run fn() under a LoadMeter; redo (up to `redo` times) when the background
    load went over BG_LIMIT or fn() raised.  Returns (result, load, attempts);
    result is {"error": text} when every attempt raised."""
    attempts = []
    res = None
    for i in range(redo + 1):
        m = LoadMeter()
        try:
            res = fn()
        except Exception as e:
            res = {"error": "%s: %s" % (type(e).__name__, e)}
            log("  run failed: %s", res["error"])
        load = m.stop()
        attempts.append(load)
        if "error" in res:
            continue
        if load["bg_cores"] < BG_LIMIT:
            break
        log("  background %.2f cores during the run: %s", load["bg_cores"],
            "redo" if i < redo else "kept, flagged")
    return res, attempts[-1], attempts


def ok_runs(runs):
    """The runs that produced a result (failed ones stay in the JSON)."""
    return [r for r in runs if "error" not in r]
