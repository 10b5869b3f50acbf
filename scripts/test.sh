#!/usr/bin/env bash
# Installs everything the tests need (idempotent, cached) and runs the whole suite.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$("$root/scripts/install.sh" --exact dev,cloud,samples,kubernetes | tail -n 1)"
# The cloning engines' replicas run in their own environments (docs/engines.md).
for engine in xtts styletts2; do
  "$root/scripts/engine-env.sh" "$engine" >/dev/null
done
# The control plane the Kubernetes tests run: built once from the Go module proxy, cached.
"$root/scripts/k8s-binaries.sh" >/dev/null
# The OpenTelemetry Collector the tracing tests export to: built the same way, cached.
"$root/scripts/otelcol-binary.sh" >/dev/null
# SeaweedFS, the S3-compatible server the sample-storage tests talk to: built the same way, cached.
"$root/scripts/seaweedfs-binary.sh" >/dev/null
# The container tests' tools (Debian's podman, buildah, runc, mmdebstrap) and their settings;
# in a subshell, so the suite's own environment stays as it is (the tests read the settings
# again). The images themselves are built, once and cached, by tests/containers.
( . "$root/scripts/containers-env.sh" )
cd "$root"
export RAY_AUTH_MODE=disabled
exec "$venv/bin/python" -m pytest "$@"
