#!/bin/sh
# Installs the Debian 12 packages `make test-container` needs (tests/container/run.sh),
# only when some are missing; `make test` does not need them. Runs apt-get as root (or
# through sudo). The test runs podman as root with host networking and the kernel's
# overlayfs, so no rootless helpers (uidmap, slirp4netns, fuse-overlayfs).
set -eu
PKGS="podman runc debootstrap debian-archive-keyring python3 python3-dnslib openssl"
# shellcheck disable=SC2086 # one word per package
exec "$(dirname "$0")/apt-install-missing.sh" $PKGS
