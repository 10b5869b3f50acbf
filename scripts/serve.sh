#!/usr/bin/env bash
# Installs Chorus (idempotent, cached) and runs the embedded default: `chorus serve "$@"`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$("$root/scripts/install.sh" samples | tail -n 1)"
exec "$venv/bin/chorus" serve "$@"
