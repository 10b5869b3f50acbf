#!/usr/bin/env bash
# Debian packages the test suite runs for real. Installs only what is missing.
set -euo pipefail
# One at a time: scripts/test.sh installs from chains running side by side, and apt/dpkg
# refuse a second process rather than wait for the first.
exec 9>/tmp/chorus-system-packages.lock
flock 9
need=()
for pkg in "$@"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
