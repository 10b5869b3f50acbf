#!/usr/bin/env bash
# Installs everything the tests need (idempotent, cached) and runs the whole suite.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$("$root/scripts/install.sh" --exact dev,cloud,samples,kubernetes | tail -n 1)"
# The cloning engines' replicas run in their own environments (docs/engines.md).
for engine in xtts styletts2; do
  "$root/scripts/engine-env.sh" "$engine" >/dev/null
done
# The container tests' tools (Debian's podman, buildah, runc, mmdebstrap) and their settings,
# in a subshell, so the suite's own environment stays as it is (the tests read the settings
# again). The images are built (into the storage tests/containers uses, with the arguments it
# uses, so its own build finds every layer cached) while the Go binaries below build: the one
# is mostly copying and hashing, the other compiling, and from empty caches each takes many
# minutes. A failed build here is only reported: the container tests build again and fail there.
images_log="$(mktemp)"
(
  . "$root/scripts/containers-env.sh"
  base="$("$root/scripts/debian-base-image.sh" | tail -n 1)"
  "$root/scripts/build-images.sh" --base "$base" >/dev/null
) >"$images_log" 2>&1 &
images=$!
# The control plane the Kubernetes tests run, and the node of tests/cluster (kubelet,
# containerd, KubeRay's operator, CoreDNS): built once from the Go module proxy, cached.
"$root/scripts/k8s-binaries.sh" >/dev/null
"$root/scripts/cluster-binaries.sh" >/dev/null
# The OpenTelemetry Collector the tracing tests export to: built the same way, cached.
"$root/scripts/otelcol-binary.sh" >/dev/null
# SeaweedFS, the S3-compatible server the sample-storage tests talk to: built the same way, cached.
"$root/scripts/seaweedfs-binary.sh" >/dev/null
wait "$images" || { echo "building the images failed (the container tests will say why):" >&2; tail -n 20 "$images_log" >&2; }
rm -f "$images_log"
cd "$root"
export RAY_AUTH_MODE=disabled
exec "$venv/bin/python" -m pytest "$@"
