#!/usr/bin/env bash
# Creates or updates the virtualenv that one engine's Serve replicas run in, from uv.lock
# (idempotent: a second run only checks). Engines whose libraries cannot share an environment
# with the rest of Chorus (coqui-tts and styletts2 pin conflicting versions; the lock keeps
# each extra as its own fork) get their own:
#
#   scripts/engine-env.sh xtts        ->  .venv-xtts (in this checkout)
#   scripts/engine-env.sh styletts2   ->  .venv-styletts2
#   scripts/engine-env.sh xtts --no-editable   (further arguments go to uv sync; images)
#
# Each holds Chorus's runtime (so the same Ray and Python as the driver) plus the engine's
# extra, at the lock's versions. The engine's deployment points its replicas' runtime_env
# `py_executable` at the venv's python (see docs/engines.md). Prints the interpreter path on
# its last line.
#   CHORUS_ENGINE_ENVS   put the venv at $CHORUS_ENGINE_ENVS/venv-NAME instead (images: /opt/chorus)
#   CHORUS_PYTHON        interpreter the venv is built from (default python3.11)
set -euo pipefail
name="${1:-}"
if [[ ! "$name" =~ ^[a-z0-9][a-z0-9_-]*$ ]]; then
  echo "usage: $0 NAME   (NAME: an engine extra in pyproject.toml, e.g. xtts, styletts2)" >&2
  exit 2
fi
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if ! grep -Eq "^${name}[[:space:]]*=" "$root/pyproject.toml"; then
  echo "$0: pyproject.toml has no optional-dependencies extra named '$name'" >&2
  exit 2
fi
# Like the main venv, the checkout's own: it installs this checkout's code.
if [ -n "${CHORUS_ENGINE_ENVS:-}" ]; then venv="$CHORUS_ENGINE_ENVS/venv-$name"; else venv="$root/.venv-$name"; fi
"$root/scripts/locked-sync.sh" "$venv" --extra "$name" "${@:2}"
echo "$venv/bin/python"
