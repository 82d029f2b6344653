#!/bin/sh
# migrelay demo for a fresh Debian 12 machine.
#
#   scripts/demo.sh [demo.py options]      e.g. scripts/demo.sh --mem 512 --channels 4 --plaintext
#
# 1. Checks the build and run dependencies; as root installs the missing ones with
#    apt-get, otherwise prints the apt-get command to run and exits 1.
# 2. Builds out of tree in ./build (autogen.sh if needed, configure, make -j2).
# 3. Runs scripts/demo.py: a live 256 MiB guest migrated directly (baseline), then
#    through two migrelayd relays; prints a summary; exit status non-zero if a migration
#    or a memory check fails.
set -eu

# Build: autotools, compiler, libraries (libssl-dev for the TLS transport).
# Run: QEMU, python3 for the harness, binutils (as, ld) for the test guest, openssl
# for the throw-away PKI of the TLS relays.
PACKAGES="autoconf automake libtool pkg-config make gcc libevent-dev libjson-c-dev
libsystemd-dev libssl-dev check mandoc qemu-system-x86 python3 binutils openssl"

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

missing=""
if command -v dpkg-query >/dev/null 2>&1; then
	for p in $PACKAGES; do
		if ! dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
			missing="$missing $p"
		fi
	done
else
	echo "demo: not a Debian system (no dpkg-query); assuming dependencies are installed" >&2
fi

if [ -n "$missing" ]; then
	if [ "$(id -u)" -eq 0 ]; then
		echo "demo: installing:$missing"
		export DEBIAN_FRONTEND=noninteractive
		apt-get update
		# shellcheck disable=SC2086
		apt-get install -y --no-install-recommends $missing
	else
		echo "demo: missing packages:$missing" >&2
		echo "demo: run this, then start the demo again:" >&2
		echo "sudo apt-get install -y --no-install-recommends$missing" >&2
		exit 1
	fi
fi

jobs=2
if [ -f "$top/config.status" ]; then
	echo "demo: the source tree is configured in place; run 'make distclean' there first" >&2
	echo "demo: (the demo builds out of tree in $top/build)" >&2
	exit 1
fi
if [ ! -x "$top/configure" ]; then
	echo "demo: ./autogen.sh"
	./autogen.sh
fi
mkdir -p build
if [ ! -f build/Makefile ]; then
	echo "demo: configuring in ./build"
	(cd build && ../configure)
fi
echo "demo: make -j$jobs in ./build"
make -C build -j"$jobs"

exec python3 "$top/scripts/demo.py" --builddir "$top/build" "$@"
