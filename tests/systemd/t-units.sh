#!/bin/sh
# Audit of the generated systemd units (issue 4, reliability-tests.md §8):
#
#  1. systemd-analyze verify on migrelayd.service, migrelayd.socket and
#     migrelayd-relay.socket, with and without the RDMA drop-in, must print
#     nothing at all: verify exits 0 even when it ignores a broken line, so
#     any output is a failure.
#  2. systemd-analyze security --offline=true must rate the service at 2.5
#     or lower (--threshold is on a 0-100 scale: 25), also with the RDMA
#     drop-in.
#  3. The sysusers.d and tmpfiles.d entries are applied to a scratch root
#     with systemd-sysusers/systemd-tmpfiles --root and give the expected
#     user, group, directories and modes.
#
# The units run @sbindir@/migrelayd, which need not exist yet: the copies
# checked here point at the migrelayd just built.  Needs no systemd as PID 1
# and no root.  Skips (77) when systemd-analyze is missing or too old.
#
# Environment (set by make check): top_srcdir, top_builddir.
set -u

top_srcdir=${top_srcdir:-.}
top_builddir=${top_builddir:-.}
THRESHOLD=${MIGRELAY_SECURITY_THRESHOLD:-25}	# 2.5 on systemd's 0-10 scale

skip() { echo "SKIP: $*"; exit 77; }
fail=0
bad() { echo "FAIL: $*"; fail=1; }

command -v systemd-analyze >/dev/null 2>&1 ||
    skip "systemd-analyze not found (Debian: apt-get install systemd)"
systemd-analyze --version | head -n 1
systemd-analyze security --help 2>/dev/null | grep -q -- '--offline' ||
    skip "systemd-analyze has no 'security --offline' (systemd >= 250 needed)"

top_builddir=$(cd "$top_builddir" && pwd) || exit 99
top_srcdir=$(cd "$top_srcdir" && pwd) || exit 99
bin=$top_builddir/migrelayd
[ -x "$bin" ] || { echo "ERROR: $bin not built"; exit 99; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/t-units.XXXXXX") || exit 99
trap 'rm -rf "$tmp"' EXIT INT TERM

# Copies of the generated units with every .../migrelayd pointing at the
# built binary (ExecStartPre=, ExecStart=, ExecReload=).
mkdir -p "$tmp/base" "$tmp/rdma/migrelayd.service.d"
for u in migrelayd.service migrelayd.socket migrelayd-relay.socket; do
	src=$top_builddir/systemd/$u
	[ -f "$src" ] || { echo "ERROR: $src not generated"; exit 99; }
	if grep -n '@[A-Za-z_]*@' "$src"; then
		bad "$u: unsubstituted @variable@"
	fi
	sed -e "s|=\\(-\\{0,1\\}\\)/[^ ]*/migrelayd\\( \\)|=\\1$bin\\2|" \
	    -e "s|=\\(-\\{0,1\\}\\)/[^ ]*/migrelayd\$|=\\1$bin|" \
	    "$src" >"$tmp/base/$u"
	cp "$tmp/base/$u" "$tmp/rdma/$u"
done
cp "$top_srcdir/systemd/rdma.conf" "$tmp/rdma/migrelayd.service.d/rdma.conf"
grep -n '^Exec' "$tmp/base/migrelayd.service"
if grep '^Exec' "$tmp/base/migrelayd.service" | grep migrelayd |
    grep -v -F "$bin" >/dev/null; then
	bad "an Exec line still points at a migrelayd other than $bin"
fi

# Documentation=man:...: verify runs man(1) on every page.  Check them
# against the project's own pages when man-db can read a private MANPATH,
# otherwise leave that check out.
manopt=--man=no
if command -v man >/dev/null 2>&1; then
	for page in "$top_srcdir"/man/*.[1-8]; do
		[ -f "$page" ] || continue
		sec=${page##*.}
		mkdir -p "$tmp/man/man$sec"
		cp "$page" "$tmp/man/man$sec/"
	done
	if MANPATH=$tmp/man man -w 8 migrelayd >/dev/null 2>&1; then
		manopt=--man=yes
	fi
fi
[ "$manopt" = --man=no ] &&
    echo "note: Documentation= pages not checked (no man-db to read them)"

# 1. verify: any output at all is a failure.
check_verify() {
	label=$1; shift
	out=$(cd "$tmp" && MANPATH=$tmp/man SYSTEMD_LOG_COLOR=0 \
	    systemd-analyze verify "$manopt" "$@" 2>&1)
	rc=$?
	if [ $rc -ne 0 ] || [ -n "$out" ]; then
		printf '%s\n' "$out"
		bad "systemd-analyze verify ($label): exit $rc, output above"
	else
		echo "ok: systemd-analyze verify ($label): no output"
	fi
}
check_verify base "$tmp/base/migrelayd.service" \
    "$tmp/base/migrelayd.socket" "$tmp/base/migrelayd-relay.socket"
check_verify "with rdma.conf" "$tmp/rdma/migrelayd.service" \
    "$tmp/rdma/migrelayd.socket" "$tmp/rdma/migrelayd-relay.socket"

# 2. security: exposure at most THRESHOLD/10.
check_security() {
	label=$1 dir=$2
	out=$(cd "$dir" && SYSTEMD_LOG_COLOR=0 SYSTEMD_COLORS=0 \
	    systemd-analyze security --offline=true --no-pager \
	    --threshold="$THRESHOLD" "$dir/migrelayd.service" 2>&1)
	rc=$?
	level=$(printf '%s\n' "$out" |
	    sed -n 's/.*Overall exposure level for migrelayd.service: \([0-9.]*\).*/\1/p')
	if [ -z "$level" ]; then
		printf '%s\n' "$out"
		bad "systemd-analyze security ($label): no overall exposure level"
	elif [ $rc -ne 0 ]; then
		printf '%s\n' "$out" | grep '✗'
		bad "systemd-analyze security ($label): exposure $level above" \
		    "$(echo "$THRESHOLD" | sed 's/\(.\)$/.\1/')"
	else
		echo "ok: systemd-analyze security ($label): exposure $level"
		printf '%s\n' "$out" | grep '✗' | sed 's/^/    /'
	fi
	# The sandbox settings that matter most must be there as written.
	for want in 'User=/DynamicUser=' 'NoNewPrivileges=' \
	    'ProtectSystem=' 'PrivateTmp=' 'CapabilityBoundingSet=~CAP_SYS_ADMIN' \
	    'SystemCallFilter=~@privileged' 'MemoryDenyWriteExecute='; do
		printf '%s\n' "$out" | grep -F "✓ $want" >/dev/null ||
		    bad "systemd-analyze security ($label): $want not satisfied"
	done
}
check_security base "$tmp/base"
check_security "with rdma.conf" "$tmp/rdma"

# 3. sysusers.d and tmpfiles.d entries, applied to a scratch root.
sysusers=$top_builddir/systemd/sysusers.d/migrelay.conf
tmpfiles=$top_builddir/systemd/tmpfiles.d/migrelay.conf
if ! command -v systemd-sysusers >/dev/null 2>&1 ||
    ! command -v systemd-tmpfiles >/dev/null 2>&1; then
	echo "note: systemd-sysusers/systemd-tmpfiles missing: entries not checked"
else
	mkdir -p "$tmp/root/etc"
	out=$(systemd-sysusers --root="$tmp/root" "$sysusers" 2>&1)
	rc=$?
	printf '%s\n' "$out"
	if [ $rc -ne 0 ] ||
	    printf '%s\n' "$out" | grep -v '^Creating ' | grep -q .; then
		bad "systemd-sysusers: exit $rc or unexpected output"
	fi
	grep -q '^migrelay:x:[0-9]*:[0-9]*:[^:]*:[^:]*:/usr/sbin/nologin$' \
	    "$tmp/root/etc/passwd" || bad "sysusers: no system user migrelay"
	grep -q '^migrelay:x:' "$tmp/root/etc/group" ||
	    bad "sysusers: no group migrelay"
	if [ "$(id -u)" -ne 0 ]; then
		echo "note: not root: tmpfiles.d entries not applied (chown)"
	else
		out=$(systemd-tmpfiles --root="$tmp/root" --create \
		    "$tmpfiles" 2>&1)
		rc=$?
		if [ $rc -ne 0 ] || [ -n "$out" ]; then
			printf '%s\n' "$out"
			bad "systemd-tmpfiles --create: exit $rc or output"
		fi
		id=$(sed -n 's/^migrelay:x:\([0-9]*\):\([0-9]*\):.*/\1:\2/p' \
		    "$tmp/root/etc/passwd")
		for d in "run/migrelay 750" "run/migrelay/qemu 2770"; do
			# shellcheck disable=SC2086
			set -- $d
			got=$(stat -c '%a %u:%g' "$tmp/root/$1" 2>/dev/null)
			if [ "$got" = "$2 $id" ]; then
				echo "ok: /$1 $got"
			else
				bad "tmpfiles: /$1 is '$got', want '$2 $id'"
			fi
		done
	fi
fi

[ $fail -eq 0 ] && echo "PASS: units verify cleanly and score within" \
    "$(echo "$THRESHOLD" | sed 's/\(.\)$/.\1/')"
exit $fail
