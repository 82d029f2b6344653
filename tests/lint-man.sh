#!/bin/sh
# mandoc -Tlint must have nothing to say about our man pages.
set -eu
src=${top_srcdir:-$(dirname "$0")/..}
command -v mandoc >/dev/null 2>&1 || { echo "SKIP: mandoc not installed"; exit 77; }
status=0
for m in "$src"/man/*.[0-9]; do
	out=$(mandoc -Tlint -W warning "$m" 2>&1 || true)
	if [ -n "$out" ]; then
		echo "$out"
		status=1
	else
		echo "ok: $m"
	fi
done
exit $status
