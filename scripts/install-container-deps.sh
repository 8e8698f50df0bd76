#!/bin/sh
# Installs the Debian 12 packages `make test-container` needs (tests/container/run.sh),
# only when some are missing; `make test` does not need them. Runs apt-get as root (or
# through sudo). The test runs podman as root with host networking and the kernel's
# overlayfs, so no rootless helpers (uidmap, slirp4netns, fuse-overlayfs).
set -eu
PKGS="podman runc debootstrap debian-archive-keyring python3 python3-dnslib openssl"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "installing:$missing"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends $missing
