#!/bin/sh
# Profiles the proxy under load: bench/profile.sh [one|persistent] [SIZE] [SECONDS]
# (default: persistent 1048576 10). perf record with DWARF call graphs, then top
# functions by self time, by library, inclusive, and syscalls per message (strace -c).
# Build the proxy with frame pointers and symbols for readable stacks, e.g.
#   cmake -S . -B /tmp/build-prof -DCMAKE_BUILD_TYPE=Release \
#     "-DCMAKE_C_FLAGS=-fno-omit-frame-pointer -g" && cmake --build /tmp/build-prof
#   PROXY_BIN=/tmp/build-prof/starttls-proxy bench/profile.sh
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
command -v perf >/dev/null 2>&1 || apt-get install -y -q --no-install-recommends linux-perf
command -v strace >/dev/null 2>&1 || apt-get install -y -q --no-install-recommends strace
export SINK_BIN="${SINK_BIN:-$("$here/build.sh" /tmp/starttls-bench-bin)}"
export PROXY_BIN="${PROXY_BIN:-$root/build/starttls-proxy}"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
export PYTHONDONTWRITEBYTECODE=1
exec /usr/bin/python3 "$here/run.py" profile "$@"
