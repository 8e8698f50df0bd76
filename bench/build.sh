#!/bin/sh
# Builds the benchmark's STARTTLS sink: bench/build.sh [OUTDIR] (default /tmp/starttls-bench-bin).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-/tmp/starttls-bench-bin}
mkdir -p "$out"
cc -O2 -g -Wall -Wextra -std=c11 -o "$out/sink" "$here/sink.c" $(pkg-config --cflags --libs openssl)
echo "$out/sink"
