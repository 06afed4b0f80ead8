#!/bin/sh
# Installs Debian's Chromium, which the GraphiQL browser test drives, when it is missing.
# Without root or apt-get it only says so: that test then skips with the same reason.
set -eu
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "note: /usr/bin/chromium is missing and apt-get cannot run here;" \
    "the GraphiQL browser test will skip (install Debian's chromium package to run it)" >&2
  exit 0
fi
echo "installing Debian's chromium (for the GraphiQL browser test)" >&2
apt-get -o DPkg::Lock::Timeout=600 update -qq
DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
  --no-install-recommends chromium >/dev/null
