#!/bin/sh
# Build the Debian package from a copy of the source tree and check it:
#
#   tests/deb/t-deb.sh [--install] [--boot] [--keep]
#
#  1. copy the tree (git: tracked and untracked-but-not-ignored files, so
#     uncommitted work is packaged and no build directory comes along) into
#     a temporary directory;
#  2. dpkg-buildpackage -us -uc -b there (runs the package's own tests, see
#     debian/rules; DEB_BUILD_OPTIONS=nocheck skips them);
#  3. lintian on the result: any error (E:) fails, warnings are shown;
#  4. the .deb holds the daemon, client, man pages, units, sysusers.d and
#     tmpfiles.d entries and /etc/migrelay/migrelayd.conf as a conffile;
#  5. with --install (root only; meant for throw-away CI machines): dpkg -i,
#     check the installed files, the system user, the runtime directory,
#     "migrelayd --version", --check-config and the installed units (verify
#     and security, no systemd as PID 1 needed), then dpkg --purge;
#  6. with --boot (implies --install): boot systemd in a throw-away container
#     (systemd-nspawn --volatile=yes: tmpfs root, the host's /usr read-only,
#     private network) and run the units for real: sysusers/tmpfiles at
#     boot, socket activation of both sockets by name, the sandbox in force,
#     Type=notify status, TLS+SCRAM streams through the service as the
#     destination and as the source (secret from a LoadCredential=
#     credential, QEMU socket made in /run/migrelay/qemu), reload with a good
#     and a broken file, a stop that drains a running session, reactivation
#     through the socket after the stop.  That stage is skipped, with the
#     reason, where such a container cannot boot.
#
# As root on Debian, missing tools and build dependencies are installed with
# apt-get.  Slow (a full package build): not part of "make check".
# Exit: 0 pass, 1 fail, 77 skipped (not Debian, tools missing and not root).
set -u

install=0 keep=0 boot=0
for a in "$@"; do
	case $a in
	--install) install=1 ;;
	--boot) install=1 boot=1 ;;
	--keep) keep=1 ;;
	*) echo "usage: $0 [--install] [--boot] [--keep]" >&2; exit 2 ;;
	esac
done

top=$(cd "$(dirname "$0")/../.." && pwd)
fail=0
bad() { echo "FAIL: $*"; fail=1; }
skip() { echo "SKIP: $*"; exit 77; }
step() { echo "== $*"; }

[ -f "$top/debian/control" ] || { echo "ERROR: $top/debian/control missing"; exit 99; }
command -v dpkg >/dev/null 2>&1 || skip "not a Debian system (no dpkg)"

# Tools and build dependencies.
tools="dpkg-dev debhelper lintian devscripts fakeroot"
missing=""
for p in $tools; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
	    missing="$missing $p"
done
if [ "$(id -u)" -eq 0 ]; then
	export DEBIAN_FRONTEND=noninteractive
	if [ -n "$missing" ] ||
	    ! (cd "$top" && dpkg-checkbuilddeps) >/dev/null 2>&1; then
		step "installing packaging tools and build dependencies"
		apt-get update -q || exit 99
		# shellcheck disable=SC2086
		[ -z "$missing" ] || apt-get install -y -q \
		    --no-install-recommends $missing || exit 99
		(cd "$top" && apt-get build-dep -y -q ./) || exit 99
	fi
else
	[ -z "$missing" ] || skip "missing:$missing (run as root to install)"
	(cd "$top" && dpkg-checkbuilddeps) ||
	    skip "build dependencies missing (run as root to install)"
fi

version=$(cd "$top" && dpkg-parsechangelog -S Version)
pkgver=$(sed -n 's/^AC_INIT(\[[^]]*\], *\[\([^]]*\)\].*/\1/p' "$top/configure.ac")
if [ "${version%%-*}" != "$pkgver" ]; then
	bad "debian/changelog is at $version, configure.ac at $pkgver:" \
	    "add a changelog entry (dch -v $pkgver)"
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/t-deb.XXXXXX") || exit 99
cleanup() {
	if [ $keep -eq 1 ]; then echo "kept: $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM
src=$tmp/migrelay-$pkgver
mkdir -p "$src"

step "copying the source tree to $src"
if git -C "$top" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	(cd "$top" && git ls-files -z -c -o --exclude-standard |
	    xargs -0 sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' sh |
	    tar --null -T - -cf -) | tar -C "$src" -xf - || exit 99
else
	(cd "$top" && tar --exclude=./build --exclude=./debian/build \
	    --exclude='./migrelay-*' -cf - .) | tar -C "$src" -xf - || exit 99
	[ ! -f "$src/config.status" ] ||
	    { echo "ERROR: $top is configured in place: make distclean"; exit 99; }
fi

step "dpkg-buildpackage -us -uc -b"
log=$tmp/build.log
if (cd "$src" && dpkg-buildpackage -us -uc -b) >"$log" 2>&1; then
	grep -E '^(# (TOTAL|PASS|SKIP|FAIL|ERROR)|package tests:|(PASS|SKIP|FAIL|ERROR): )' "$log"
	echo "built: $(cd "$tmp" && ls ./*.deb)"
else
	tail -n 150 "$log"
	echo "FAIL: dpkg-buildpackage (full log: $log)"
	keep=1
	exit 1
fi
deb=$(ls "$tmp"/migrelay_"$version"_*.deb 2>/dev/null | head -n 1)
changes=$(ls "$tmp"/migrelay_"$version"_*.changes 2>/dev/null | head -n 1)
[ -n "$deb" ] && [ -n "$changes" ] || { echo "ERROR: no .deb/.changes"; exit 1; }

step "lintian $(lintian --version | sed 's/^Lintian v//')"
lout=$(lintian --fail-on none --display-info --tag-display-limit 0 \
    "$changes" 2>&1)
printf '%s\n' "$lout"
for k in E W I P; do
	printf '%s: %s  ' "$k" "$(printf '%s\n' "$lout" | grep -c "^$k: ")"
done
echo
printf '%s\n' "$lout" | grep -q '^E: ' && bad "lintian reports errors (E:)"

step "package contents"
contents=$(dpkg-deb -c "$deb" | awk '{print $6}' | sed 's|^\./|/|')
unitdir=$(pkg-config --variable=systemdsystemunitdir systemd 2>/dev/null)
unitdir=${unitdir:-/usr/lib/systemd/system}
for f in /usr/sbin/migrelayd /usr/bin/migrelayctl \
    /etc/migrelay/migrelayd.conf \
    /usr/share/man/man8/migrelayd.8.gz /usr/share/man/man1/migrelayctl.1.gz \
    /usr/share/man/man5/migrelayd.conf.5.gz \
    /usr/share/man/man7/migrelay-protocol.7.gz \
    /usr/share/bash-completion/completions/migrelayctl \
    "$unitdir/migrelayd.service" "$unitdir/migrelayd.socket" \
    "$unitdir/migrelayd-relay.socket" \
    /usr/lib/sysusers.d/migrelay.conf /usr/lib/tmpfiles.d/migrelay.conf \
    /usr/share/doc/migrelay/rdma.conf; do
	printf '%s\n' "$contents" | grep -qx "$f" || bad "$f not in the package"
done
ctrl=$tmp/control
dpkg-deb -e "$deb" "$ctrl"
grep -qx /etc/migrelay/migrelayd.conf "$ctrl/conffiles" ||
    bad "/etc/migrelay/migrelayd.conf is not a conffile"
grep -q systemd-sysusers "$ctrl/postinst" ||
    bad "postinst does not create the system user (dh_installsysusers)"
grep -q systemd-tmpfiles "$ctrl/postinst" ||
    bad "postinst does not apply tmpfiles.d (dh_installtmpfiles)"
grep -q "deb-systemd-invoke stop.*migrelayd.service" "$ctrl/prerm" 2>/dev/null ||
    bad "prerm does not stop the service on removal"
if grep -q "restart" "$ctrl/postinst"; then
	bad "postinst restarts the relay on upgrade (fails migrations in flight)"
fi
dpkg-deb -f "$deb" Package Version Architecture Depends

# --boot: the installed package under a real systemd, in a container that
# shares nothing writable with this machine.  The script below runs inside.
boot_script() {
	cat <<'EOF'
#!/bin/sh
set -u
fail=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fail=1; }
state=$(timeout 90 systemctl is-system-running --wait 2>&1)
[ $? -ne 124 ] || state="$state (still starting after 90 s)"
echo "container booted: $state"
systemctl --failed --no-legend --plain | sed 's/^/    failed unit (not ours): /'
cd /tmp/boot

getent passwd migrelay >/dev/null && ok "sysusers.d made user migrelay" ||
    bad "no user migrelay after boot"
got=$(stat -c '%a %U:%G' /run/migrelay /run/migrelay/qemu 2>&1 | tr '\n' ' ')
[ "$got" = "750 migrelay:migrelay 2770 migrelay:migrelay " ] &&
    ok "tmpfiles.d: $got" || bad "runtime directories: $got"

# Credentials and configuration: the shipped file with a test PKI.
python3 pki.py /tmp/boot/pki src dst >/dev/null || { echo "FAIL: pki"; exit 1; }
mkdir -p /etc/migrelay/tls
cp pki/dst/* /etc/migrelay/tls/
chown -R root:migrelay /etc/migrelay/tls
chmod 750 /etc/migrelay/tls
chmod 640 /etc/migrelay/tls/*-key.pem
printf %s 'boot-test-password' | migrelayd --make-verifier src >/etc/migrelay/users
chown root:migrelay /etc/migrelay/users
chmod 640 /etc/migrelay/users
cp migrelayd.conf /etc/migrelay/migrelayd.conf
echo "drain-timeout 10000" >>/etc/migrelay/migrelayd.conf
printf 'tls-dir /tmp/boot/pki/src\nauth-secret /tmp/boot/src.secret\nno-listen\ncontrol /tmp/boot/src.sock\n' >src.conf
echo 'src:boot-test-password' >src.secret
chmod 600 src.secret

# Socket activation: both sockets, the service started by a client.
systemctl start migrelayd.socket migrelayd-relay.socket ||
    bad "socket units do not start"
[ "$(stat -c '%a %U:%G' /run/migrelay/control.sock 2>&1)" = "660 migrelay:migrelay" ] &&
    ok "control socket 0660 migrelay:migrelay" || bad "control socket: $(ls -l /run/migrelay)"
timeout 30 migrelayctl info >/dev/null || bad "migrelayctl info did not activate the service"
[ "$(systemctl is-active migrelayd.service)" = active ] &&
    ok "socket activation started migrelayd.service" ||
    bad "migrelayd.service is $(systemctl is-active migrelayd.service)"
n=$(journalctl -u migrelayd.service -o cat --no-pager | grep -c 'passed by systemd')
[ "$n" -eq 2 ] && ok "control and relay sockets passed by name" ||
    bad "'passed by systemd' logged $n times, want 2"
st=$(systemctl show -p StatusText --value migrelayd.service)
case $st in *active\ migration*) ok "STATUS=$st" ;; *) bad "StatusText '$st'" ;; esac
pid=$(systemctl show -p MainPID --value migrelayd.service)
ps=$(grep -E '^(Uid|CapEff|NoNewPrivs|Seccomp):' /proc/$pid/status | tr -s '\t\n' '  ')
uid=$(id -u migrelay)
case $ps in
"Uid: $uid $uid $uid $uid CapEff: 0000000000000000 NoNewPrivs: 1 Seccomp: 2 ")
	ok "sandbox in force: $ps" ;;
*)	bad "process credentials: $ps" ;;
esac

# A migration stream through the service (TLS 1.3 + SCRAM-SHA-256-PLUS).
migrelayd --config src.conf >src.log 2>&1 &
srcpid=$!
sleep 1
cat >dst.py <<'PY'
import os, socket, sys
os.umask(0o007)
s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(1)
c, _ = s.accept()
with open(sys.argv[2], "wb") as f:
    while True:
        b = c.recv(1 << 20)
        if not b:
            break
        f.write(b)
PY
cat >src.py <<'PY'
import socket, sys, time
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
data = open(sys.argv[2], "rb").read()
step = len(data) // int(sys.argv[3])
for i in range(0, len(data), step):
    s.sendall(data[i:i + step]); time.sleep(float(sys.argv[4]))
s.shutdown(socket.SHUT_WR)
while s.recv(65536):
    pass
PY
head -c 8000000 /dev/urandom >in.bin
timeout 60 python3 dst.py /run/migrelay/qemu/vm1.sock out1.bin &
dst=$!
sleep 0.3
migrelayctl incoming vm1 unix:/run/migrelay/qemu/vm1.sock --peer-identity src >/dev/null
timeout 30 migrelayctl -s src.sock outgoing vm1 127.0.0.1:4600 unix:/tmp/boot/vm1.sock --channels 4 >/dev/null
timeout 60 python3 src.py /tmp/boot/vm1.sock in.bin 1 0
wait $dst
cmp -s in.bin out1.bin && ok "8 MB carried through the service byte for byte" ||
    bad "stream through the service: $(migrelayctl status vm1 | tail -n 1)"

# Reload: a good file is taken, a broken one fails "systemctl reload".
systemctl reload migrelayd.service && ok "reload" || bad "reload of a good file"
cp /etc/migrelay/migrelayd.conf good.conf
echo "no-such-key 1" >>/etc/migrelay/migrelayd.conf
if systemctl reload migrelayd.service 2>/dev/null; then
	bad "reload of a broken file succeeded"
elif [ "$(systemctl is-active migrelayd.service)" = active ]; then
	ok "broken file: reload fails, the relay keeps running"
else
	bad "broken reload stopped the relay"
fi
cp good.conf /etc/migrelay/migrelayd.conf

# Stop while a migration runs: it drains, then the service exits 0.
timeout 60 python3 dst.py /run/migrelay/qemu/vm2.sock out2.bin &
dst=$!
sleep 0.3
migrelayctl incoming vm2 unix:/run/migrelay/qemu/vm2.sock --peer-identity src >/dev/null
timeout 30 migrelayctl -s src.sock outgoing vm2 127.0.0.1:4600 unix:/tmp/boot/vm2.sock >/dev/null
timeout 60 python3 src.py /tmp/boot/vm2.sock in.bin 20 0.15 &
src=$!
sleep 1
systemctl stop migrelayd.service 2>/dev/null
wait $src
wait $dst
cmp -s in.bin out2.bin && ok "stop drained a running migration" ||
    bad "drain: $(migrelayctl -s src.sock status vm2 | tail -n 1)"
r=$(systemctl show -p Result -p ExecMainStatus --value migrelayd.service | tr '\n' ' ')
[ "$r" = "success 0 " ] && ok "stopped cleanly" || bad "stop result: $r"
[ -S /run/migrelay/control.sock ] && ok "control socket kept across the stop" ||
    bad "/run/migrelay/control.sock gone after the stop"
timeout 30 migrelayctl info >/dev/null &&
    [ "$(systemctl is-active migrelayd.service)" = active ] &&
    ok "reactivated through the socket" || bad "no reactivation after the stop"
kill $srcpid

# The service as the source relay: its SCRAM secret from a systemd
# credential, its listen socket for QEMU made in /run/migrelay/qemu.
echo 'dst:boot-test-password' >/etc/migrelay/secret
chmod 600 /etc/migrelay/secret
mkdir -p /etc/systemd/system/migrelayd.service.d
printf '[Service]\nLoadCredential=migrelay-auth-secret:/etc/migrelay/secret\n' \
    >/etc/systemd/system/migrelayd.service.d/credential.conf
systemctl daemon-reload
systemctl restart migrelayd.service || bad "restart with a credential"
printf %s 'boot-test-password' | migrelayd --make-verifier dst >users2
chmod 600 users2
printf 'tls-dir /tmp/boot/pki/src\nauth-users /tmp/boot/users2\nlisten 127.0.0.1:4601\ncontrol /tmp/boot/dst2.sock\n' >dst2.conf
migrelayd --config dst2.conf >dst2.log 2>&1 &
dstpid=$!
sleep 1
timeout 60 python3 dst.py /tmp/boot/vm3-in.sock out3.bin &
dst=$!
sleep 0.3
migrelayctl -s dst2.sock incoming vm3 unix:/tmp/boot/vm3-in.sock --peer-identity dst >/dev/null ||
    { bad "destination relay for the service"; sed 's/^/    /' dst2.log; }
timeout 30 migrelayctl outgoing vm3 127.0.0.1:4601 unix:/run/migrelay/qemu/vm3.sock --channels 2 >/dev/null ||
    bad "outgoing session from the service relay"
m=$(stat -c '%a %U:%G' /run/migrelay/qemu/vm3.sock 2>&1)
[ "$m" = "770 migrelay:migrelay" ] && ok "QEMU-facing socket made by the service: $m" ||
    bad "QEMU-facing socket: $m"
timeout 60 python3 src.py /run/migrelay/qemu/vm3.sock in.bin 1 0
wait $dst
cmp -s in.bin out3.bin && ok "8 MB sent by the service relay (secret from the credential)" ||
    bad "stream from the service: $(migrelayctl status vm3 | tail -n 1)"
kill $dstpid
journalctl -u migrelayd.service -o cat --no-pager | grep -iE 'warn|error|denied' |
    sed 's/^/    journal: /'
[ $fail -eq 0 ] && echo "BOOT-CHECK PASS" || echo "BOOT-CHECK FAIL"
systemctl poweroff
EOF
}

boot_check() {
	step "boot: the units under systemd in a container"
	if ! command -v systemd-nspawn >/dev/null 2>&1; then
		apt-get install -y -q --no-install-recommends systemd-container \
		    >/dev/null 2>&1 || true
	fi
	if ! command -v systemd-nspawn >/dev/null 2>&1; then
		echo "boot check skipped: no systemd-nspawn"
		return
	fi
	bdir=$tmp/boot
	mkdir -p "$bdir"
	boot_script >"$bdir/check.sh"
	cp "$src/tests/lib/pki.py" "$src/etc/migrelayd.conf.example" "$bdir/"
	mv "$bdir/migrelayd.conf.example" "$bdir/migrelayd.conf"
	blog=$tmp/boot.log
	# Host networking stays out (private network), / is a tmpfs with the
	# host's /usr read-only; no first-boot prompts, and units that only
	# wait (for a network that a private one never gets) or are this
	# machine's own business stay masked.
	timeout 600 systemd-nspawn -q -D / --volatile=yes --private-network \
	    --register=no --keep-unit --machine="migrelay-t-deb-$$" \
	    --console=passive --bind="$bdir:/tmp/boot" --boot \
	    systemd.firstboot=off systemd.mask=postgresql.service \
	    systemd.mask=systemd-networkd-wait-online.service \
	    >"$blog" 2>&1 &
	npid=$!
	leader=""
	i=0
	while [ $i -lt 60 ] && [ -z "$leader" ]; do
		sleep 1
		i=$((i + 1))
		kill -0 $npid 2>/dev/null || break
		nspawn=$(pgrep -P $npid -x systemd-nspawn | head -n 1)
		[ -z "$nspawn" ] ||
		    leader=$(pgrep -P "$nspawn" -x systemd | head -n 1)
	done
	if [ -z "$leader" ]; then
		kill $npid 2>/dev/null
		wait $npid 2>/dev/null
		echo "boot check skipped: the container did not boot here:"
		sed 's/^/    /' "$blog"
		return
	fi
	out=$(timeout 400 nsenter -t "$leader" -a sh /tmp/boot/check.sh 2>&1)
	printf '%s\n' "$out"
	printf '%s\n' "$out" | grep -q '^BOOT-CHECK PASS$' ||
	    bad "the units do not work under systemd (see above)"
	i=0
	while kill -0 $npid 2>/dev/null && [ $i -lt 30 ]; do
		sleep 1
		i=$((i + 1))
	done
	kill $npid 2>/dev/null
	wait $npid 2>/dev/null
}

if [ $install -eq 1 ]; then
	if [ "$(id -u)" -ne 0 ]; then
		bad "--install needs root"
	elif dpkg-query -W -f='${Status}' migrelay 2>/dev/null |
	    grep -q "ok installed"; then
		bad "--install: migrelay is already installed here; not touching it"
	else
		step "dpkg -i $(basename "$deb")"
		if ! apt-get install -y -q --no-install-recommends "$deb"; then
			bad "the package does not install"
		else
			migrelayd --version || bad "migrelayd --version"
			migrelayctl --version || bad "migrelayctl --version"
			getent passwd migrelay >/dev/null ||
			    bad "no system user migrelay after install"
			got=$(stat -c '%a %U:%G' /run/migrelay 2>/dev/null)
			[ "$got" = "750 migrelay:migrelay" ] ||
			    bad "/run/migrelay is '$got'"
			dpkg-query -W -f='${Conffiles}\n' migrelay |
			    grep -q ' /etc/migrelay/migrelayd.conf ' ||
			    bad "migrelayd.conf not registered as conffile"
			# The shipped configuration names credentials that do not
			# exist yet: --check-config must say so, by file.
			out=$(migrelayd --check-config 2>&1)
			rc=$?
			printf '%s\n' "$out" | sed 's/^/    /'
			[ $rc -ne 0 ] ||
			    bad "--check-config accepted a configuration without credentials"
			for u in migrelayd.service migrelayd.socket \
			    migrelayd-relay.socket; do
				[ -f "$unitdir/$u" ] || bad "$unitdir/$u missing"
			done
			if command -v systemd-analyze >/dev/null 2>&1; then
				out=$(systemd-analyze verify \
				    "$unitdir/migrelayd.service" \
				    "$unitdir/migrelayd.socket" \
				    "$unitdir/migrelayd-relay.socket" 2>&1)
				if [ -n "$out" ]; then
					printf '%s\n' "$out"
					bad "verify of the installed units"
				else
					echo "ok: installed units verify cleanly"
				fi
				systemd-analyze security --offline=true \
				    --threshold=25 "$unitdir/migrelayd.service" |
				    tail -n 1 ||
				    bad "security of the installed service"
			fi
		fi
		[ $boot -eq 0 ] || boot_check
		step "dpkg --purge migrelay"
		dpkg --purge migrelay || bad "the package does not purge"
		for f in /usr/sbin/migrelayd /usr/bin/migrelayctl \
		    /etc/migrelay/migrelayd.conf "$unitdir/migrelayd.service"; do
			[ ! -e "$f" ] || bad "$f left after purge"
		done
	fi
fi

if [ $fail -eq 0 ]; then
	echo "PASS: $(basename "$deb") builds, lintian has no errors"
else
	echo "FAIL"
fi
exit $fail
