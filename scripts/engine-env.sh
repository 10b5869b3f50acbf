#!/usr/bin/env bash
# Creates or updates the virtualenv that one engine's Serve replicas run in (idempotent:
# a second run only checks). Engines whose libraries cannot share an environment with
# the rest of Chorus (coqui-tts and styletts2 pin conflicting versions) get their own:
#
#   scripts/engine-env.sh xtts        ->  ~/.cache/chorus/venv-xtts
#   scripts/engine-env.sh styletts2   ->  ~/.cache/chorus/venv-styletts2
#
# Each holds Ray Serve (same Ray and Python as the driver), this repo installed
# editable with the engine's extra from pyproject.toml. The engine's deployment points
# its replicas' runtime_env `py_executable` at the venv's python (see docs/engines.md).
# Prints the interpreter path on its last line.
#   CHORUS_ENGINE_ENVS   parent directory of the venvs (default ~/.cache/chorus)
#   CHORUS_PYTHON        interpreter uv builds the venv from (default python3.11)
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
venv="${CHORUS_ENGINE_ENVS:-$HOME/.cache/chorus}/venv-$name"

if ! command -v uv >/dev/null 2>&1 && [ ! -x "$HOME/.local/bin/uv" ]; then
  python3 -m pip install --quiet --user "uv==0.13.9" 2>/dev/null || python3 -m pip install --quiet "uv==0.13.9"
fi
uv_bin="$(command -v uv || echo "$HOME/.local/bin/uv")"

[ -x "$venv/bin/python" ] || "$uv_bin" venv --quiet -p "${CHORUS_PYTHON:-python3.11}" "$venv"
# Packages whose declared requirements cannot be met next to Chorus's pins: installed
# without their dependencies, which the engine's extra lists instead (styletts2 0.1.6 caps
# soundfile, librosa, langchain/numpy and huggingface-hub far below what runs fine).
case "$name" in
  styletts2) no_deps=("styletts2==0.1.6") ;;
  *) no_deps=() ;;
esac
override="$(mktemp)"
trap 'rm -f "$override"' EXIT
for pkg in "${no_deps[@]}"; do
  echo "${pkg%%[=<>]*} ; sys_platform == 'never'" >> "$override"
done
VIRTUAL_ENV="$venv" "$uv_bin" pip install --quiet --override "$override" "ray[serve]==2.60.0" -e "$root[$name]"
if [ ${#no_deps[@]} -gt 0 ]; then
  VIRTUAL_ENV="$venv" "$uv_bin" pip install --quiet --no-deps "${no_deps[@]}"
fi
echo "$venv/bin/python"
