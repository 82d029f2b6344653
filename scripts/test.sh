#!/bin/sh
# Build migrelay and run its whole test suite (unit, integration and the
# real-QEMU end-to-end tests) on a fresh Debian 12 machine.
#
#   scripts/test.sh            as root: installs what is missing with apt-get
#   BUILD=dir scripts/test.sh  build directory (default: build/test)
set -eu

cd "$(dirname "$0")/.."
top=$(pwd)

pkgs="autoconf automake libtool pkg-config make gcc libc6-dev binutils
libevent-dev libjson-c-dev libsystemd-dev libssl-dev check mandoc qemu-system-x86
openssl clang libclang-rt-14-dev nftables
python3"
missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
	    missing="$missing $p"
done
if [ -n "$missing" ]; then
	if [ "$(id -u)" -eq 0 ]; then
		echo "== installing:$missing"
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -q
		# shellcheck disable=SC2086
		apt-get install -y -q --no-install-recommends $missing
	else
		echo "missing packages; run as root or install them first:" >&2
		echo "  sudo apt-get install -y$missing" >&2
		exit 1
	fi
fi

build=${BUILD:-$top/build/test}
[ -x "$top/configure" ] || "$top/autogen.sh"

# Print the log of every test that did not pass, and a summary.
report() {
	for log in $(find . -name '*.log' -path '*tests/*'); do
		trs=${log%.log}.trs
		[ -f "$trs" ] || continue
		if grep -qE '^:test-result: (FAIL|ERROR|XPASS)' "$trs"; then
			echo "======== $log"
			# the test's own trace first (relay logs follow it and
			# would push it out of a plain tail)
			echo "---- test trace (last 40 lines):"
			grep -E '^(\[ *[0-9.]+\] |FAIL|SKIP|ok |not ok|===|Traceback|[A-Za-z]*Error)' \
			    "$log" | tail -n 40 || true
			echo "---- tail of the log:"
			tail -n 120 "$log"
		fi
	done
	grep -h '^:test-result:' $(find . -name '*.trs' -path '*tests/*') |
	    sort | uniq -c
	for trs in $(find . -name '*.trs' -path '*tests/*'); do
		if grep -q '^:test-result: SKIP' "$trs"; then
			echo "skipped: ${trs%.trs}: $(grep -m1 'SKIP' \
			    "${trs%.trs}.log" || true)"
		fi
	done
}

status=0

echo "== 1. build with -Werror and run the test suite"
mkdir -p "$build"
cd "$build"
"$top/configure" --enable-werror ${CONFIGURE_FLAGS:-}
make -j2
make -j2 check || status=1
report

echo "== 2. make distcheck (tarball builds and passes its tests)"
make -j2 distcheck DISTCHECK_CONFIGURE_FLAGS=--enable-werror || status=1

echo "== 3. AddressSanitizer + UndefinedBehaviorSanitizer build, same suite"
san=$build-sanitizers
sanlogs=$san/sanitizer-logs
rm -rf "$sanlogs"
mkdir -p "$san" "$sanlogs"
cd "$san"
"$top/configure" --enable-werror --enable-sanitizers ${CONFIGURE_FLAGS:-}
make -j2
# One test at a time, and the QEMU tests over plaintext links: instrumented
# relays are several times slower, and two TCG guests per test already share
# the two cores (TLS under the sanitizers is covered by the integration tests).
ASAN_OPTIONS="log_path=$sanlogs/asan:detect_leaks=1:fast_unwind_on_malloc=0" \
UBSAN_OPTIONS="log_path=$sanlogs/ubsan:print_stacktrace=1" \
CK_DEFAULT_TIMEOUT=120 MIGRELAY_TEST_PLAINTEXT=1 \
    make -j1 check || status=1
report
if [ -n "$(ls -A "$sanlogs")" ]; then
	echo "== sanitizer reports:"
	cat "$sanlogs"/*
	status=1
fi

echo "== 4. libFuzzer harnesses (clang, ASan+UBSan): make fuzz-smoke"
fuzz=$build-fuzz
mkdir -p "$fuzz"
cd "$fuzz"
CC=clang "$top/configure" --enable-werror --enable-fuzzing ${CONFIGURE_FLAGS:-}
make -j2
make fuzz-smoke || status=1

echo "== 5. Debian package: build, lintian, install, units under systemd"
rc=0; "$top/tests/deb/t-deb.sh" --boot || rc=$?
case $rc in 0) ;; 77) echo "== package test skipped" ;; *) status=1 ;; esac

[ $status -eq 0 ] && echo "== all test runs passed" || echo "== FAILED"
exit $status
