#!/bin/sh
# The benchmark (bench/README.md): `make bench`, or bench/run.sh directly.
# Builds the sink, installs stunnel4 if missing, then runs bench/run.py, which prints
# the table and writes bench/results.md, and bench/concurrency.py (32 and 256 sessions,
# bench/results-concurrency.md). `bench/run.sh concurrency` runs only the latter.
# Environment overrides: see bench/run.py and bench/concurrency.py.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
if ! command -v stunnel4 >/dev/null 2>&1 && ! command -v stunnel >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends stunnel4
fi
[ "$(id -u)" -eq 0 ] || { echo "bench: needs root (Postfix runs as a private instance)"; exit 1; }
export SINK_BIN="${SINK_BIN:-$("$here/build.sh" /tmp/starttls-bench-bin)}"
export PROXY_BIN="${PROXY_BIN:-$root/build/starttls-proxy}"
export BENCH_COMMAND="${BENCH_COMMAND:-make bench}"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
export PYTHONDONTWRITEBYTECODE=1
if [ "${1:-}" = concurrency ]; then
  shift
  exec /usr/bin/python3 "$here/concurrency.py" "$@"
fi
[ $# -eq 0 ] || exec /usr/bin/python3 "$here/run.py" "$@"
# make bench: the main table, then the concurrency rows (CONCURRENCY=0 skips them).
rc=0
/usr/bin/python3 "$here/run.py" || rc=$?
if [ "${CONCURRENCY:-1}" != 0 ]; then
  /usr/bin/python3 "$here/concurrency.py" || rc=$?
fi
exit "$rc"
