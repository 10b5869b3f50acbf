#!/usr/bin/env bash
# Installs Chorus into a cached virtualenv from the committed lock, uv.lock (idempotent: a
# second run only checks). Nothing is resolved here: a lock that no longer matches
# pyproject.toml is refused; refresh it on purpose with scripts/update-lock.sh.
#   scripts/install.sh                       runtime only
#   scripts/install.sh dev,cloud,samples     plus those extras (dev also installs Debian packages)
#   scripts/install.sh --exact EXTRAS        and remove every package outside them (scripts/test.sh)
# Without --exact it only adds: `scripts/serve.sh` run inside the test venv (the README test)
# must not remove the test tools from under the running suite. Either way every package is
# at the lock's version. Prints the venv's path on its last line.
# The venv is this checkout's own, .venv beside this script's folder (CHORUS_VENV overrides):
# it installs the checkout's code editable, so two checkouts on one machine never import each
# other's. uv's cache is shared, and it hard-links from it, so a second checkout costs little.
# The `samples` extra brings `sample-models` along: the sample checks' ONNX files are exported
# from them into the venv (chorus.samples.model_export; again only when those packages change).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${CHORUS_VENV:-$root/.venv}"
sync=(--inexact)
if [ "${1:-}" = "--exact" ]; then sync=(); shift; fi
extras="${1:-}"

if [[ ",$extras," == *",samples,"* && ",$extras," != *",sample-models,"* ]]; then
  extras="$extras,sample-models"
fi
args=("${sync[@]}")
for extra in ${extras//,/ }; do args+=(--extra "$extra"); done
"$root/scripts/locked-sync.sh" "$venv" "${args[@]}"
if [[ ",$extras," == *",sample-models,"* ]]; then
  "$venv/bin/python" -m chorus.samples.model_export "$venv/share/chorus/sample-models" >/dev/null
fi

if [[ ",$extras," == *",dev,"* ]]; then
  # openssl: the test control plane's service-account signing key; redis-server: the shared
  # rate limits and budgets are tested against a real Redis; chromium + its driver: the
  # dashboard's browser tests (fonts-liberation, so its screenshots have readable text)
  "$root/scripts/system-packages.sh" openssl redis-server chromium chromium-driver fonts-liberation
fi
echo "$venv"
