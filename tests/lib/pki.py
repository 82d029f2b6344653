"""pki.py - throw-away X.509 PKIs for migrelay tests and demos.

Python 3 standard library plus the `openssl` command-line tool (OpenSSL 3).
Builds a CA (EC P-256) and leaf certificates with a chosen subject CN,
subjectAltName list, extended key usage and validity window (also in the
past or in the future: certificates are issued with `openssl ca`, which
takes -startdate/-enddate where OpenSSL 3.0's `x509 -req` cannot), and
lays out a relay's --tls-dir in the QEMU/libvirt x509 layout:

    ca-cert.pem  server-cert.pem  server-key.pem
                 client-cert.pem  client-key.pem  [ca-crl.pem]

Private keys are written mode 0600.

Quick use (the README demo, the QEMU tests):

    import pki
    dirs = pki.make_relay_dirs("/tmp/x/pki", names=("src", "dst"),
                               hosts=("127.0.0.1", "localhost"))
    # dirs["src"], dirs["dst"]: give each relay --tls-dir DIR

Finer control (the TLS test matrix):

    ca = pki.CA("/tmp/x/ca")
    srv = ca.issue("dst-server", cn="127.0.0.1", san=["DNS:elsewhere"],
                   eku="server")
    old = ca.issue("old", cn="old", eku="client",
                   not_before=-10 * pki.DAY, not_after=-pki.DAY)
    ca.revoke(old)
    pki.relay_dir("/tmp/x/dst", ca, server=srv, client=None, crl=True)

Times (not_before, not_after) are seconds relative to now, or absolute
datetime objects.  Command line: `python3 pki.py BASE [NAME...]` makes a CA
and one tls-dir per NAME (default src dst) under BASE and prints them.
"""

import datetime
import os
import shutil
import subprocess
import sys

__all__ = ["DAY", "PKIError", "have_openssl", "require_openssl", "CA",
           "Cert", "relay_dir", "make_relay_dirs"]

DAY = 86400
EKUS = {
    "server": "serverAuth",
    "client": "clientAuth",
    "both": "serverAuth,clientAuth",
    None: None,
    "none": None,
}

_CA_CONF = """\
# Minimal `openssl ca` configuration written by pki.py.
[ ca ]
default_ca = test_ca

[ test_ca ]
dir = {dir}
database = $dir/index.txt
new_certs_dir = $dir/issued
serial = $dir/serial
crlnumber = $dir/crlnumber
certificate = $dir/ca-cert.pem
private_key = $dir/ca-key.pem
default_md = sha256
default_days = 365
default_crl_days = 30
policy = policy_any
unique_subject = no
copy_extensions = none
email_in_dn = no
preserve = no

[ policy_any ]
commonName = supplied
organizationName = optional
organizationalUnitName = optional

[ req ]
distinguished_name = req_dn
prompt = no
utf8 = yes

[ req_dn ]
CN = unused
"""


class PKIError(Exception):
    """An openssl command failed; the message holds its output."""


def _openssl():
    return os.environ.get("OPENSSL") or shutil.which("openssl")


def have_openssl():
    """True when an `openssl` binary (OpenSSL 3) is available."""
    exe = _openssl()
    if not exe:
        return False
    try:
        out = subprocess.run([exe, "version"], capture_output=True,
                             timeout=10, check=True).stdout.decode()
    except (OSError, subprocess.SubprocessError):
        return False
    parts = out.split()
    return len(parts) >= 2 and parts[0] == "OpenSSL" and \
        parts[1].split(".")[0].isdigit() and int(parts[1].split(".")[0]) >= 3


def require_openssl():
    """Skip the test (exit 77) when the openssl CLI is missing."""
    if have_openssl():
        return
    try:
        import relay
        relay.skip("the openssl command (OpenSSL 3) is not available")
    except ImportError:
        print("SKIP: the openssl command (OpenSSL 3) is not available",
              flush=True)
        sys.exit(77)


def run(args, input=None):
    """Run `openssl ARGS`; stdout as bytes, PKIError on failure."""
    exe = _openssl()
    if not exe:
        raise PKIError("openssl not found")
    p = subprocess.run([exe] + list(args), input=input, capture_output=True,
                       timeout=60)
    if p.returncode != 0:
        raise PKIError("openssl %s failed (status %d):\n%s%s" % (
            " ".join(args), p.returncode, p.stdout.decode(errors="replace"),
            p.stderr.decode(errors="replace")))
    return p.stdout


def _write_private(path, data):
    """Write data to path with mode 0600 from the start."""
    if os.path.exists(path):
        os.unlink(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)


def new_key(path):
    """A new EC P-256 private key in PEM (PKCS#8) at path, mode 0600."""
    _write_private(path, run(["genpkey", "-algorithm", "EC", "-pkeyopt",
                              "ec_paramgen_curve:P-256"]))
    return path


def _asn1_time(when):
    """`openssl ca` time (UTCTime or GeneralizedTime) from seconds-from-now
    or a datetime."""
    if isinstance(when, datetime.datetime):
        t = when.astimezone(datetime.timezone.utc) if when.tzinfo else when
    else:
        t = datetime.datetime.now(datetime.timezone.utc) + \
            datetime.timedelta(seconds=when)
    if 1950 <= t.year < 2050:
        return t.strftime("%y%m%d%H%M%SZ")
    return t.strftime("%Y%m%d%H%M%SZ")


def _subj_escape(value):
    return value.replace("\\", "\\\\").replace("/", "\\/").replace(
        "=", "\\=").replace("+", "\\+")


class Cert:
    """An issued certificate: .name, .cn, .cert and .key paths, .serial."""

    def __init__(self, name, cn, cert, key, serial, san, eku):
        self.name = name
        self.cn = cn
        self.cert = cert
        self.key = key
        self.serial = serial
        self.san = list(san)
        self.eku = eku

    def __repr__(self):
        return "<Cert %s CN=%s SAN=%s EKU=%s>" % (self.name, self.cn,
                                                 ",".join(self.san), self.eku)

    def text(self):
        """`openssl x509 -text` of the certificate (for debugging)."""
        return run(["x509", "-noout", "-text", "-in", self.cert]).decode()


class CA:
    """A certificate authority in directory `base` (created).

    The CA key is EC P-256, the certificate self-signed with basic
    constraints CA:TRUE, valid from a day ago for `days` days.  Leaves are
    issued into base/NAME-cert.pem and base/NAME-key.pem.
    """

    def __init__(self, base, cn="migrelay test CA", days=3650):
        self.dir = os.path.abspath(os.fspath(base))
        self.cn = cn
        os.makedirs(os.path.join(self.dir, "issued"), exist_ok=True)
        self.conf = os.path.join(self.dir, "ca.cnf")
        self.cert = os.path.join(self.dir, "ca-cert.pem")
        self.key = os.path.join(self.dir, "ca-key.pem")
        self.certs = {}
        with open(self.conf, "w") as f:
            f.write(_CA_CONF.format(dir=self.dir))
        for name, content in (("index.txt", ""), ("serial", "1000\n"),
                              ("crlnumber", "1000\n"),
                              ("index.txt.attr", "unique_subject = no\n")):
            with open(os.path.join(self.dir, name), "w") as f:
                f.write(content)
        new_key(self.key)
        ext = os.path.join(self.dir, "ca-ext.cnf")
        with open(ext, "w") as f:
            f.write("[ ca_ext ]\n"
                    "basicConstraints = critical, CA:TRUE\n"
                    "keyUsage = critical, keyCertSign, cRLSign\n"
                    "subjectKeyIdentifier = hash\n")
        csr = os.path.join(self.dir, "ca.csr")
        run(["req", "-new", "-config", self.conf, "-key", self.key,
             "-subj", "/CN=" + _subj_escape(cn), "-out", csr])
        # Self-signed through `openssl ca -selfsign` so that the start
        # date can lie in the past (not-yet-valid leaves are then the only
        # thing that is not yet valid).
        run(["ca", "-batch", "-config", self.conf, "-selfsign",
             "-keyfile", self.key, "-in", csr, "-out", self.cert, "-notext",
             "-startdate", _asn1_time(-DAY),
             "-enddate", _asn1_time(days * DAY),
             "-extfile", ext, "-extensions", "ca_ext"])

    def __repr__(self):
        return "<CA %s in %s>" % (self.cn, self.dir)

    def issue(self, name, cn=None, san=(), eku="server", not_before=-3600,
              not_after=30 * DAY, key=None):
        """Issue a leaf certificate; returns a Cert.

        name: file name stem (unique within this CA); cn: subject CN
        (default name); san: entries such as "IP:127.0.0.1",
        "DNS:localhost" (a bare IP address or name gets the right prefix;
        empty: no subjectAltName extension); eku: "server", "client",
        "both", or None/"none" for no extendedKeyUsage extension;
        not_before/not_after: seconds from now or datetimes; key: an
        existing key file to certify (default: a new key).
        """
        if eku not in EKUS:
            raise ValueError("eku must be one of %s" % list(EKUS))
        cn = name if cn is None else cn
        sans = [_san_entry(s) for s in san]
        keypath = os.path.join(self.dir, name + "-key.pem")
        certpath = os.path.join(self.dir, name + "-cert.pem")
        if key is None:
            new_key(keypath)
        else:
            _write_private(keypath, open(key, "rb").read())
        ext = os.path.join(self.dir, name + "-ext.cnf")
        lines = ["[ leaf ]",
                 "basicConstraints = critical, CA:FALSE",
                 "keyUsage = critical, digitalSignature",
                 "subjectKeyIdentifier = hash",
                 "authorityKeyIdentifier = keyid"]
        if EKUS[eku]:
            lines.append("extendedKeyUsage = " + EKUS[eku])
        if sans:
            lines.append("subjectAltName = " + ", ".join(sans))
        with open(ext, "w") as f:
            f.write("\n".join(lines) + "\n")
        csr = os.path.join(self.dir, name + ".csr")
        run(["req", "-new", "-config", self.conf, "-key", keypath,
             "-subj", "/CN=" + _subj_escape(cn), "-out", csr])
        run(["ca", "-batch", "-config", self.conf, "-in", csr,
             "-out", certpath, "-notext",
             "-startdate", _asn1_time(not_before),
             "-enddate", _asn1_time(not_after),
             "-extfile", ext, "-extensions", "leaf"])
        serial = run(["x509", "-noout", "-serial", "-in", certpath]
                     ).decode().strip().split("=", 1)[1]
        c = Cert(name, cn, certpath, keypath, serial, sans, eku)
        self.certs[name] = c
        return c

    def revoke(self, cert, reason="keyCompromise"):
        """Mark a Cert (or certificate path) revoked in the CA database."""
        path = cert.cert if isinstance(cert, Cert) else os.fspath(cert)
        run(["ca", "-batch", "-config", self.conf, "-revoke", path,
             "-crl_reason", reason])

    def write_crl(self, path, days=30):
        """Write a CRL (PEM) of every revoked certificate to path."""
        run(["ca", "-batch", "-config", self.conf, "-gencrl",
             "-crldays", str(days), "-out", os.fspath(path)])
        return path


def _san_entry(s):
    if ":" in s and s.split(":", 1)[0] in ("IP", "DNS", "email", "URI",
                                           "RID", "dirName", "otherName"):
        return s
    import ipaddress
    try:
        ipaddress.ip_address(s)
        return "IP:" + s
    except ValueError:
        return "DNS:" + s


def _copy(src, dst, private):
    data = open(src, "rb").read()
    if private:
        _write_private(dst, data)
    else:
        if os.path.exists(dst):
            os.unlink(dst)
        with open(dst, "wb") as f:
            f.write(data)
        os.chmod(dst, 0o644)


def relay_dir(path, ca, server=None, client=None, crl=False, ca_cert=None):
    """Lay out a relay's --tls-dir at path (created); returns path.

    ca: the CA whose certificate goes into ca-cert.pem (ca_cert, a PEM
    file, overrides it, e.g. to trust a different CA than the one that
    issued the leaves); server/client: Cert objects for server-cert.pem +
    server-key.pem and client-cert.pem + client-key.pem (None: left out);
    crl: True writes ca-crl.pem from ca's revocations, a path copies that
    CRL file.
    """
    path = os.path.abspath(os.fspath(path))
    os.makedirs(path, exist_ok=True)
    os.chmod(path, 0o700)
    _copy(ca_cert or ca.cert, os.path.join(path, "ca-cert.pem"), False)
    for role, c in (("server", server), ("client", client)):
        if c is None:
            continue
        _copy(c.cert, os.path.join(path, role + "-cert.pem"), False)
        _copy(c.key, os.path.join(path, role + "-key.pem"), True)
    if crl is True:
        ca.write_crl(os.path.join(path, "ca-crl.pem"))
    elif crl:
        _copy(crl, os.path.join(path, "ca-crl.pem"), False)
    return path


def make_relay_dirs(base, names=("src", "dst"),
                    hosts=("127.0.0.1", "localhost"), ca=None, days=30):
    """A CA in base/ca and a tls-dir base/NAME for every name.

    Each relay gets a server certificate (CN=name, subjectAltName = hosts,
    EKU serverAuth) and a client certificate (CN=name, EKU clientAuth), so
    any relay can dial any other at one of `hosts`.  Returns {name: dir};
    the CA object is in the result's .ca attribute when needed:
    make_relay_dirs(...).ca.
    """
    base = os.path.abspath(os.fspath(base))
    os.makedirs(base, exist_ok=True)
    if ca is None:
        ca = CA(os.path.join(base, "ca"))
    dirs = _Dirs()
    dirs.ca = ca
    for n in names:
        srv = ca.issue(n + "-server", cn=n, san=list(hosts), eku="server",
                       not_after=days * DAY)
        cli = ca.issue(n + "-client", cn=n, eku="client",
                       not_after=days * DAY)
        dirs[n] = relay_dir(os.path.join(base, n), ca, server=srv,
                            client=cli)
    return dirs


class _Dirs(dict):
    """dict name -> tls-dir, with the CA in .ca."""
    ca = None


def main(argv):
    if len(argv) < 2 or argv[1] in ("-h", "--help"):
        print("usage: %s BASE [NAME...]   (CA in BASE/ca, tls-dirs "
              "BASE/NAME; default names src dst)" % argv[0], file=sys.stderr)
        return 2
    if not have_openssl():
        print("pki.py: the openssl command (OpenSSL 3) is not available",
              file=sys.stderr)
        return 1
    names = tuple(argv[2:]) or ("src", "dst")
    for n, d in make_relay_dirs(argv[1], names=names).items():
        print("%s %s" % (n, d))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
