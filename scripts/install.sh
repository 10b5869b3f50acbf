#!/usr/bin/env bash
# Installs Chorus into a cached virtualenv (idempotent: a second run only checks).
#   scripts/install.sh            runtime only
#   scripts/install.sh dev        plus what the tests need (Python extras + Debian packages)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${CHORUS_VENV:-$HOME/.cache/chorus/venv}"
extras="${1:-}"

if ! command -v uv >/dev/null 2>&1 && [ ! -x "$HOME/.local/bin/uv" ]; then
  python3 -m pip install --quiet --user "uv==0.13.9" 2>/dev/null || python3 -m pip install --quiet "uv==0.13.9"
fi
uv_bin="$(command -v uv || echo "$HOME/.local/bin/uv")"

[ -x "$venv/bin/python" ] || "$uv_bin" venv --quiet -p python3.11 "$venv"

spec="$root"
[ -n "$extras" ] && spec="$root[$extras]"
VIRTUAL_ENV="$venv" "$uv_bin" pip install --quiet -e "$spec"

if [[ ",$extras," == *",dev,"* ]]; then
  # openssl: the test control plane's service-account signing key
  "$root/scripts/system-packages.sh" openssl
fi
echo "$venv"
