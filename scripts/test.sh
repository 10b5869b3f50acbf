#!/usr/bin/env bash
# Installs everything the tests need (idempotent, cached) and runs the whole suite.
# From empty caches the installs take many minutes, so three independent chains run side by
# side (each prints how long its steps took to stderr):
#   - the venvs: Chorus's own, then the cloning engines' (downloading and unpacking);
#   - the Go binaries: the control plane, the cluster node (kubelet, KubeRay's operator,
#     CoreDNS, kube-router), the OpenTelemetry Collector, SeaweedFS (compiling);
#   - the images, into the storage tests/containers uses, with the arguments it uses, so its
#     own build finds every layer cached (copying and hashing).
# A failed image build is only reported: the container tests build again and fail there.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
logs="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$logs"' EXIT

timed() {  # timed NAME COMMAND...: runs it, output to the chain's log, then its time to stderr
  local name="$1" start=$SECONDS; shift
  "$@"
  echo "setup: $name $((SECONDS - start)) s" >&2
}
binaries() {
  timed k8s-binaries "$root/scripts/k8s-binaries.sh"
  timed cluster-binaries "$root/scripts/cluster-binaries.sh"
  timed otelcol-binary "$root/scripts/otelcol-binary.sh"
  timed seaweedfs-binary "$root/scripts/seaweedfs-binary.sh"
}
images() {
  # In a subshell: the suite's own environment stays as it is (the tests read the settings again).
  . "$root/scripts/containers-env.sh"
  local base; base="$(timed debian-base "$root/scripts/debian-base-image.sh" | tail -n 1)"
  timed images "$root/scripts/build-images.sh" --base "$base"
}
finish() {  # finish PID NAME: waits for a chain; shows its log's end if it failed
  wait "$1" && return 0
  echo "$2 failed:" >&2; tail -n 30 "$logs/$2" >&2; return 1
}

binaries >"$logs/binaries" 2>&1 & binaries_pid=$!
( images ) >"$logs/images" 2>&1 & images_pid=$!
venv="$(timed venv "$root/scripts/install.sh" --exact dev,cloud,samples,kubernetes | tail -n 1)"
# The cloning engines' replicas run in their own environments (docs/engines.md).
for engine in xtts styletts2; do
  timed "venv-$engine" "$root/scripts/engine-env.sh" "$engine" >/dev/null
done
finish "$binaries_pid" binaries
finish "$images_pid" images || echo "(the container tests will say why)" >&2
grep -h '^setup: ' "$logs/binaries" "$logs/images" >&2 || true
rm -rf "$logs"
cd "$root"
export RAY_AUTH_MODE=disabled
exec "$venv/bin/python" -m pytest "$@"
