#!/usr/bin/env bash
# Builds Chorus's three images from containers/*.Containerfile (chorus and chorus-gpu are two
# targets of chorus.Containerfile) with whatever is present:
# `docker build` when a Docker daemon answers, else podman, else buildah (no daemon needed).
#   scripts/build-images.sh [--registry REG] [--base IMAGE] [--oci-dir DIR] [--images LIST]
#                           [--uv-cache DIR | --no-uv-cache]
# Images: chorus (CPU: head and CPU worker group), chorus-gpu (plus the cloning engines'
# environments), chorus-operator; each tagged NAME:VERSION (pyproject's version) under the
# registry, by default ghcr.io/chorus-dev (the chart's default names).
#   --registry REG   name the images REG/NAME:VERSION and push them there
#   --base IMAGE     the Containerfiles' ARG BASE (default: their python:3.11-slim-bookworm)
#   --oci-dir DIR    also write DIR/NAME.tar, an OCI archive per image
#   --images LIST    comma-separated subset
#   --uv-cache DIR   uv cache mounted into the builds (podman/buildah; default: the host's, so
#                    a build installs what scripts/install.sh already downloaded)
#   CHORUS_BUILDER   docker | podman | buildah, to choose instead of detecting
# The host's CA bundle goes to pip and uv as the build secret `hostca` (a file in
# /run/secrets during the RUN steps only, never in a layer), so builds work behind
# TLS-inspecting proxies. Prints one line per image built: NAME REF.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
registry="" base="" oci_dir="" images="chorus,chorus-gpu,chorus-operator" uv_cache="default"
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --registry) registry="${2:?}"; shift 2 ;;
    --base) base="${2:?}"; shift 2 ;;
    --oci-dir) oci_dir="${2:?}"; shift 2 ;;
    --images) images="${2:?}"; shift 2 ;;
    --uv-cache) uv_cache="${2:?}"; shift 2 ;;
    --no-uv-cache) uv_cache=""; shift ;;
    -h|--help) usage ;;
    *) echo "$0: unknown argument $1" >&2; usage ;;
  esac
done

builder="${CHORUS_BUILDER:-}"
if [ -z "$builder" ]; then
  if command -v docker >/dev/null && docker info >/dev/null 2>&1; then builder=docker
  elif command -v podman >/dev/null; then builder=podman
  elif command -v buildah >/dev/null; then builder=buildah
  else echo "$0: none of docker (with a daemon), podman, buildah found" >&2; exit 3
  fi
fi

version="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/pyproject.toml" | head -n 1)"
revision="$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)"
prefix="${registry:-ghcr.io/chorus-dev}"
ca=""
for candidate in "${SSL_CERT_FILE:-}" /etc/ssl/certs/ca-certificates.crt /etc/pki/tls/certs/ca-bundle.crt; do
  if [ -n "$candidate" ] && [ -s "$candidate" ]; then ca="$candidate"; break; fi
done
if [ "$uv_cache" = default ]; then
  uv_cache="$("$root/scripts/uv.sh" cache dir 2>/dev/null || true)"
fi

build() {  # build NAME FILE [--target ... --build-arg ...]
  local name="$1" file="$2"; shift 2
  local args=(-f "$root/containers/$file.Containerfile" -t "$prefix/$name:$version"
    --build-arg "VERSION=$version" --build-arg "REVISION=$revision" "$@")
  [ -n "$ca" ] && args+=(--secret "id=hostca,src=$ca")
  case "$builder" in
    docker) DOCKER_BUILDKIT=1 docker build --quiet "${args[@]}" "$root" >/dev/null ;;
    podman|buildah)
      # docker format: OCI's image config has no HEALTHCHECK. The uv cache is a bind mount
      # during RUN steps only (docker build has no such option; BuildKit keeps its own layers).
      # --force-rm: a failed step's working container (gigabytes here) is removed too.
      args+=(--format docker --layers --force-rm)
      if [ -n "$uv_cache" ]; then mkdir -p "$uv_cache"; args+=(-v "$uv_cache:/run/uv-cache"); fi
      if [ "$builder" = podman ]; then podman build --quiet "${args[@]}" "$root" >/dev/null
      else buildah bud --quiet "${args[@]}" "$root" >/dev/null; fi ;;
  esac
}

# The sample models' export stage (torch: minutes to install), tagged on its own: the images
# only copy from it, so nothing else keeps its layers when the storage is pruned between builds.
build chorus-sample-models chorus --target sample-models ${base:+--build-arg "BASE=$base"}

for name in ${images//,/ }; do
  case "$name" in
    chorus|chorus-gpu) build "$name" chorus --target "$name" ${base:+--build-arg "BASE=$base"} ;;
    chorus-operator) build "$name" chorus-operator ${base:+--build-arg "BASE=$base"} ;;
    *) echo "$0: unknown image $name (chorus, chorus-gpu, chorus-operator)" >&2; exit 2 ;;
  esac
  ref="$prefix/$name:$version"
  if [ -n "$registry" ]; then
    if [ "$builder" = docker ]; then docker push --quiet "$ref" >/dev/null; else "$builder" push "$ref"; fi
  fi
  if [ -n "$oci_dir" ]; then
    mkdir -p "$oci_dir"; rm -f "$oci_dir/$name.tar"
    case "$builder" in
      docker) docker save -o "$oci_dir/$name.tar" "$ref" ;;  # Docker 25+ writes the OCI layout
      podman) podman save --quiet --format oci-archive -o "$oci_dir/$name.tar" "$ref" ;;
      buildah) buildah push --quiet "$ref" "oci-archive:$oci_dir/$name.tar:$ref" ;;
    esac
  fi
  echo "$name $ref"
done
