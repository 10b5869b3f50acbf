#!/usr/bin/env bash
# Installs Chorus into a cached virtualenv from the committed lock, uv.lock (idempotent: a
# second run only checks). Nothing is resolved here: a lock that no longer matches
# pyproject.toml is refused; refresh it on purpose with scripts/update-lock.sh.
#   scripts/install.sh                       runtime only
#   scripts/install.sh dev,cloud,samples     plus those extras (dev also installs Debian packages)
# Prints the venv's path on its last line.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${CHORUS_VENV:-$HOME/.cache/chorus/venv}"
extras="${1:-}"

args=()
for extra in ${extras//,/ }; do args+=(--extra "$extra"); done
"$root/scripts/locked-sync.sh" "$venv" "${args[@]}"

if [[ ",$extras," == *",dev,"* ]]; then
  # openssl: the test control plane's service-account signing key
  "$root/scripts/system-packages.sh" openssl
fi
echo "$venv"
