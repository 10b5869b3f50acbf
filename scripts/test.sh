#!/usr/bin/env bash
# Installs everything the tests need (idempotent, cached) and runs the whole suite.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$("$root/scripts/install.sh" dev,cloud,samples | tail -n 1)"
# The cloning engines' replicas run in their own environments (docs/engines.md).
for engine in xtts styletts2; do
  "$root/scripts/engine-env.sh" "$engine" >/dev/null
done
cd "$root"
export RAY_AUTH_MODE=disabled
exec "$venv/bin/python" -m pytest "$@"
