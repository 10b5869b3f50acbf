#!/usr/bin/env bash
# Regenerates every generated Kubernetes file from its source (tests fail when one is stale):
#   serve/personalities.py    -> manifests/crds/, charts/chorus/crds/   (the CRD)
#   serve/configs/cluster.yaml -> charts/chorus/files/serve-cluster.yaml (serveConfigV2's base)
#   charts/chorus             -> manifests/rayservice.yaml              (default values, keys from chorus-api-keys:
#                                                                        the RayService and its Ray pods' NetworkPolicy)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$("$root/scripts/install.sh" kubernetes | tail -n 1)"
bin="$("$root/scripts/k8s-binaries.sh")"
cd "$root"
"$venv/bin/python" -m voice_operator.crd
cp serve/configs/cluster.yaml charts/chorus/files/serve-cluster.yaml
header="$(sed '/^---$/,$d' manifests/rayservice.yaml)"
# With API keys from the Secret chorus-api-keys: the chart renders nothing without keys.
body="$("$bin/helm" template chorus charts/chorus --show-only templates/rayservice.yaml \
  --show-only templates/networkpolicies.yaml --set operator.networkPolicy.enabled=false \
  --set auth.existingSecret=chorus-api-keys)"
printf '%s\n%s\n' "$header" "$body" > manifests/rayservice.yaml
