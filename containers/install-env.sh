#!/bin/sh
# Runs one install command inside an image build (a RUN step of containers/*.Containerfile):
#   /usr/src/chorus/containers/install-env.sh [--compiler] scripts/locked-sync.sh /opt/chorus/venv ...
# from the copy of the tree the Containerfile made (COPY, not a bind mount: buildah's layer
# cache does not look into mounted files, so a changed source would not rebuild).
# - The host's CA bundle, when the build was given it as the secret `hostca`, is what pip
#   (installing the pinned uv) and uv trust: builds work behind TLS-inspecting proxies, and
#   the bundle stays in /run/secrets, never in a layer.
# - A uv cache mounted at /run/uv-cache (scripts/build-images.sh mounts the host's) is used,
#   so a build installs what the host already downloaded; without one a throwaway cache is
#   used and removed, leaving nothing behind.
# --compiler: the lock has packages published only as source that need a C compiler
# (webrtcvad, which resemblyzer needs for the sample checks): gcc (and the Python headers, if
# the base lacks them) are installed from the base's Debian archive for this step and purged
# before it ends, so the layer keeps only what was built.
set -eu
compiler=""
if [ "${1:-}" = "--compiler" ]; then
  shift
  if ! command -v cc >/dev/null 2>&1; then
    compiler="gcc libc6-dev"
    python3.11 -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(sysconfig.get_paths()["include"] + "/Python.h"))' \
      || compiler="$compiler python3.11-dev"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $compiler >/dev/null
  fi
fi
if [ -s /run/secrets/hostca ]; then
  export PIP_CERT=/run/secrets/hostca SSL_CERT_FILE=/run/secrets/hostca
fi
scratch="$(mktemp -d)"
if [ -d /run/uv-cache ]; then export UV_CACHE_DIR=/run/uv-cache; else export UV_CACHE_DIR="$scratch/uv"; fi
# The mounted cache is another filesystem: uv copies instead of hard-linking, and says nothing.
export UV_LINK_MODE=copy UV_COMPILE_BYTECODE=1 UV_PYTHON_DOWNLOADS=never
export PIP_CACHE_DIR="$scratch/pip" CHORUS_CACHE="$scratch/tools" CHORUS_PYTHON=python3.11
cd "$(dirname "$0")/.."
"$@"
rm -rf "$scratch"
if [ -n "$compiler" ]; then
  DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq --autoremove $compiler >/dev/null
  apt-get clean
  rm -rf /var/lib/apt/lists/*
fi
