#!/usr/bin/env bash
# Runs the pinned uv (scripts/uv-requirements.txt, checked by hash), installing it once into
# its own cached environment. Every script that installs Python packages goes through here.
#   scripts/uv.sh sync --locked ...
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
pins="$root/scripts/uv-requirements.txt"
version="$(sed -n 's/^uv==\([0-9.]*\).*/\1/p' "$pins")"
tools="${CHORUS_CACHE:-$HOME/.cache/chorus}/uv-$version"
if [ ! -x "$tools/bin/uv" ]; then
  rm -rf "$tools"
  python3 -m venv "$tools"
  "$tools/bin/python" -m pip install --quiet --disable-pip-version-check --require-hashes -r "$pins"
fi
exec "$tools/bin/uv" "$@"
