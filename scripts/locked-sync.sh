#!/usr/bin/env bash
# Makes the virtualenv VENV what uv.lock says for the given extras (exactly, unless
# --inexact is passed on to uv sync):
#   scripts/locked-sync.sh VENV [--inexact] [--extra NAME ...]
# The main venv (scripts/install.sh) and each engine's venv (scripts/engine-env.sh) come from
# this one lock, so they share Ray, Python and every common package version.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$1"; shift
uv="$root/scripts/uv.sh"
python="${CHORUS_PYTHON:-python3.11}"
# Offline: a lock in sync is confirmed from the lock alone; any change to pyproject.toml's
# requirements would need a resolution, which --offline refuses.
if ! "$uv" lock --check --offline --project "$root" -p "$python" --quiet 2>/dev/null; then
  echo "$0: uv.lock is out of date with pyproject.toml (its requirements changed since the lock)." >&2
  echo "    Refresh it on purpose, then commit both: scripts/update-lock.sh" >&2
  exit 3
fi
# --compile-bytecode: every interpreter started from the venv (Ray's workers, each test's
# subprocess) would otherwise compile what it imports again whenever .pyc files are not
# written (PYTHONDONTWRITEBYTECODE, read-only images): ~1.5 s for the ingress's imports.
# Once per installed file; a sync with nothing new checks them in about a second.
UV_PROJECT_ENVIRONMENT="$venv" "$uv" sync --frozen --quiet --compile-bytecode --project "$root" -p "$python" "$@"
