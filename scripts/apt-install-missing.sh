#!/bin/sh
# usage: apt-install-missing.sh PACKAGE...
# Installs, with apt-get (as root, or through sudo), those of the Debian packages named
# that are not installed yet; does nothing when all are. Shared by install-deps.sh and
# install-container-deps.sh.
set -eu
missing=""
for p in "$@"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "installing:$missing"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
# postfix is a test fixture (a real sending MTA run from a private directory): keep
# the package from configuring a system mail service.
echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
$SUDO apt-get update -q
# shellcheck disable=SC2086 # one word per package
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends $missing
