#!/bin/sh
# make test-container: builds the Dockerfile's image with podman and runs
# relay_test.py against it (a relay over STARTTLS to a loopback MX, a non-root process,
# SIGTERM draining). Needs root, podman, runc and debootstrap
# (scripts/install-container-deps.sh) and Debian's mirror; no image registry.
#
# The base image is made here: debootstrap --variant=minbase bookworm from the mirror
# apt uses, imported into podman. Cached in $SP_CONTAINER_CACHE
# (/var/cache/starttls-proxy-test), with podman's own storage:
#   rootfs-KEY.tar           the base rootfs; KEY: suite, variant, mirror, architecture;
#                            made again after $SP_ROOTFS_MAX_DAYS days (30)
#   podman/                  podman's storage, used by this test only: the base image
#                            and the Dockerfile's build-deps and runtime-deps stages,
#                            tagged by a hash of the Dockerfile and the base, so a changed
#                            Dockerfile rebuilds from the first changed step
# The image under test, its containers and dangling build layers are removed on exit,
# success or not. Concurrent runs wait for each other (flock on the cache).
set -eu

REPO=$(cd "$(dirname "$0")/../.." && pwd)
CACHE=${SP_CONTAINER_CACHE:-/var/cache/starttls-proxy-test}
MAX_DAYS=${SP_ROOTFS_MAX_DAYS:-30}
SUITE=bookworm
RUNDIR=/run/starttls-proxy-test
LABEL=starttls-proxy-test
T0=$(date +%s)

say() { echo "test-container [$(($(date +%s) - T0))s]: $*"; }
fail() {
  echo "test-container: FAIL: $*" >&2
  exit 1
}

# ---- preconditions ------------------------------------------------------------------
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 ||
    fail "run as root: debootstrap and rootful podman need it (no sudo found)"
  exec sudo SP_CONTAINER_CACHE="$CACHE" SP_ROOTFS_MAX_DAYS="$MAX_DAYS" \
    SP_DEBIAN_MIRROR="${SP_DEBIAN_MIRROR:-}" SP_DEBIAN_SECURITY="${SP_DEBIAN_SECURITY:-}" \
    sh "$0" "$@"
fi
for c in podman runc debootstrap flock; do
  command -v "$c" >/dev/null 2>&1 ||
    fail "$c not found: scripts/install-container-deps.sh installs what this test needs"
done
/usr/bin/python3 -c 'import dnslib' 2>/dev/null ||
  fail "Debian's python3 with python3-dnslib not found: scripts/install-container-deps.sh"

mkdir -p "$CACHE" "$RUNDIR"
exec 9>"$CACHE/lock"
if ! flock -n 9; then
  say "another test-container run holds $CACHE/lock: waiting"
  flock -w 3600 9 || fail "$CACHE/lock still held after an hour"
fi

WORK=$(mktemp -d /tmp/sp-container.XXXXXX)
IMAGE=localhost/starttls-proxy-test:run-$$

# The settings these machines need (runc, cgroupfs, no default ulimits), on a private
# storage and run directory so that nothing else's podman state is touched.
cat >"$WORK/containers.conf" <<'EOF'
[containers]
default_ulimits = []
[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
events_logger = "file"
EOF
export CONTAINERS_CONF="$WORK/containers.conf"
P="podman --root $CACHE/podman --runroot $RUNDIR/storage --tmpdir $RUNDIR/libpod
  --storage-driver overlay --runtime runc --cgroup-manager=cgroupfs"

cleanup() {
  rc=$?
  trap - EXIT INT TERM
  ids=$($P ps -aq --filter "label=$LABEL" 2>/dev/null || true)
  [ -z "$ids" ] || $P rm -f -v -t 0 $ids >/dev/null 2>&1 || echo "test-container: could not remove containers $ids" >&2
  $P rmi -f "$IMAGE" >/dev/null 2>&1 || true
  # The build stage's layers (sources, compiled tree) hang from nothing tagged: drop them.
  $P image prune -f >/dev/null 2>&1 || true
  rm -rf "$WORK"
  [ "$rc" -eq 0 ] && say "passed" || echo "test-container: FAILED (status $rc)" >&2
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if ! $P info >"$WORK/info.log" 2>&1; then
  cat "$WORK/info.log" >&2
  fail "podman info failed with --runtime runc --cgroup-manager=cgroupfs and containers.conf default_ulimits = [] (a damaged cache: rm -rf $CACHE)"
fi

# A run killed earlier (SIGKILL) may have left containers and its image; the store is
# this test's only and the lock is held, so all of them are stale.
stale=$($P ps -aq)
[ -z "$stale" ] || { say "removing containers left by an earlier run"; $P rm -f -v -t 0 $stale >/dev/null; }
stale=$($P images -q localhost/starttls-proxy-test)
[ -z "$stale" ] || { say "removing images left by an earlier run"; $P rmi -f $stale >/dev/null; }

# ---- the base rootfs, from the mirror apt uses ------------------------------------------
apt_uris() {
  { cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
      awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) { print $i; break } }'
    cat /etc/apt/sources.list.d/*.sources 2>/dev/null |
      awk '$1 == "URIs:" { for (i = 2; i <= NF; i++) print $i }'
  } | sed 's,/*$,,'
}
MIRROR=${SP_DEBIAN_MIRROR:-$(apt_uris | grep -E '/debian$' | head -n1)}
SECURITY=${SP_DEBIAN_SECURITY:-$(apt_uris | grep -E '/debian-security$' | head -n1)}
[ -n "$MIRROR" ] || fail "no Debian mirror (a URI ending in /debian) in /etc/apt/sources.list*: set SP_DEBIAN_MIRROR"
ARCH=$(dpkg --print-architecture)
KEY=$(printf '%s\n' "$SUITE" minbase "$MIRROR" "$SECURITY" "$ARCH" | sha256sum | cut -c1-12)
ROOTFS=$CACHE/rootfs-$KEY.tar
BASE=localhost/starttls-proxy-test-base:$KEY

if [ -f "$ROOTFS" ] && [ -n "$(find "$ROOTFS" -mtime +"$MAX_DAYS")" ]; then
  say "base rootfs older than $MAX_DAYS days: making it again"
  rm -f "$ROOTFS"
  $P rmi -f "$BASE" >/dev/null 2>&1 || true
fi
if [ ! -f "$ROOTFS" ]; then
  say "debootstrap --variant=minbase $SUITE from $MIRROR"
  if ! debootstrap --variant=minbase --arch="$ARCH" "$SUITE" "$WORK/rootfs" "$MIRROR" \
    >"$WORK/debootstrap.log" 2>&1; then
    tail -n 30 "$WORK/debootstrap.log" >&2
    fail "debootstrap from $MIRROR failed (log above)"
  fi
  {
    echo "deb $MIRROR $SUITE main"
    echo "deb $MIRROR $SUITE-updates main"
    [ -z "$SECURITY" ] || echo "deb $SECURITY $SUITE-security main"
  } >"$WORK/rootfs/etc/apt/sources.list"
  rm -rf "$WORK/rootfs/var/cache/apt/archives/"*.deb "$WORK/rootfs/var/lib/apt/lists/"*
  tar --numeric-owner -C "$WORK/rootfs" -cf "$WORK/rootfs.tar" .
  rm -rf "$WORK/rootfs"
  rm -f "$CACHE"/rootfs-*.tar
  mv "$WORK/rootfs.tar" "$ROOTFS"
  $P rmi -f "$BASE" >/dev/null 2>&1 || true
fi
if ! $P image exists "$BASE"; then
  say "importing the base rootfs as $BASE"
  $P import -q "$ROOTFS" "$BASE" >/dev/null || fail "podman import of $ROOTFS failed"
fi

# Checks that a container runs at all before a long build.
if ! $P run --rm --network host --label "$LABEL" "$BASE" true >"$WORK/smoke.log" 2>&1; then
  cat "$WORK/smoke.log" >&2
  fail "podman cannot run a container (settings: --runtime runc, --cgroup-manager=cgroupfs, default_ulimits = [], --network host)"
fi

# ---- the image ----------------------------------------------------------------------
# --format docker keeps HEALTHCHECK (OCI images have none); --network host for apt-get.
BUILD="$P build --format docker --pull=never --network host --layers
  --build-arg BASE_IMAGE=$BASE -f $REPO/Dockerfile"
DKEY=$( { cat "$REPO/Dockerfile"; echo "$KEY"; } | sha256sum | cut -c1-12)
for stage in build-deps runtime-deps; do
  tag=localhost/starttls-proxy-test-$stage:$DKEY
  say "building stage $stage ($tag)"
  $BUILD --target "$stage" -t "$tag" "$REPO" >"$WORK/build-$stage.log" 2>&1 || {
    tail -n 40 "$WORK/build-$stage.log" >&2
    fail "podman build --target $stage failed (log above)"
  }
  # Earlier Dockerfiles' stages: untag, their layers go with the prune at exit.
  for old in $($P images --format '{{.Repository}}:{{.Tag}}' "localhost/starttls-proxy-test-$stage"); do
    [ "$old" = "$tag" ] || $P rmi "$old" >/dev/null 2>&1 || true
  done
done
for old in $($P images --format '{{.Repository}}:{{.Tag}}' localhost/starttls-proxy-test-base); do
  [ "$old" = "$BASE" ] || $P rmi "$old" >/dev/null 2>&1 || true
done
say "building the image $IMAGE"
$BUILD -t "$IMAGE" "$REPO" >"$WORK/build.log" 2>&1 || {
  tail -n 60 "$WORK/build.log" >&2
  fail "podman build failed (log above)"
}

# ---- the test -----------------------------------------------------------------------
say "running tests/container/relay_test.py"
SP_PODMAN="$P" SP_IMAGE="$IMAGE" SP_LABEL="$LABEL" \
  /usr/bin/python3 "$REPO/tests/container/relay_test.py" ||
  fail "tests/container/relay_test.py failed (output above)"
