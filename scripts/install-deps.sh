#!/bin/sh
# Installs the Debian 12 packages needed to build, run and test starttls-proxy, only
# when some are missing. Runs apt-get as root (or through sudo).
set -eu
# pflogsumm: test_pflogsumm.py reads the proxy's log with the real one.
# libidn12 libgnutls-dane0 libwrap0 m4: what the Exim and Sendmail recipe tests need
# besides the MTA packages themselves, which conflict with postfix and are only
# extracted with dpkg-deb (libraries of exim4 and sendmail; m4 builds sendmail.cf).
# python3-yaml reads the shipped Prometheus rules in test_monitoring.py; promtool is
# extracted the same way from the prometheus package (so no Prometheus server is set
# up), which is why that package is not listed here.
# libopendkim-dev signs mailed TLS reports; python3-dkim (python3-nacl for ed25519) is
# the independent verifier of those signatures in the integration tests.
PKGS="build-essential cmake pkg-config libssl-dev libuv1-dev libc-ares-dev
libyaml-dev libcurl4-openssl-dev libsqlite3-dev zlib1g-dev openssl ca-certificates
python3 python3-dnslib python3-aiosmtpd swaks libnet-ssleay-perl libio-socket-ssl-perl postfix clang clang-format
groff-base man-db libclang-rt-14-dev libidn12 libgnutls-dane0 libwrap0 m4 libhiredis-dev redis-server
python3-yaml libopendkim-dev python3-dkim python3-nacl pflogsumm"
# shellcheck disable=SC2086 # one word per package
exec "$(dirname "$0")/apt-install-missing.sh" $PKGS
