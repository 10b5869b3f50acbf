#!/usr/bin/env bash
# Builds the real Kubernetes the tests run from the Go module proxy: the control plane
# (kube-apiserver, kube-controller-manager, kube-scheduler, kubectl), the node (kubelet,
# kube-proxy; tests/cluster), etcd and helm.
# Binaries are cached outside the clone, so only the first run compiles (~15 min on 2 cores).
# Prints the bin directory.
#
# Every module version and checksum is pinned by the go.mod/go.sum committed under
# scripts/k8s/<tool>/ and built with -mod=readonly: a build never resolves anything anew,
# and Go verifies every downloaded module against go.sum. To move to other versions:
#   K8S_VERSION=v1.35.5 ETCD_VERSION=... HELM_VERSION=... scripts/k8s-binaries.sh --relock
# (rewrites those go.mod/go.sum files; commit them).
#
# k8s.io/kubernetes replaces its staging modules with local folders, which `go install`
# refuses; its wrapper module pins each one to its published v0.MINOR.PATCH tag instead
# (kubernetes/kubernetes#79384).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mods="$root/scripts/k8s"
cache="${CHORUS_CACHE:-$HOME/.cache/chorus}/k8s"
export GOTOOLCHAIN="${GOTOOLCHAIN:-auto}"

log() { echo "k8s-binaries: $*" >&2; }
# The version of MODULE its wrapper module requires: pinned_version DIR MODULE
pinned_version() { sed -n "s#^\s*\(require \)\?$2 \(v[^ ]*\).*#\2#p" "$mods/$1/go.mod" | head -n 1; }

relock() {
  local k8s="${K8S_VERSION:?}" etcd="${ETCD_VERSION:?}" helm="${HELM_VERSION:?}" tmp
  tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' RETURN
  for name in kubernetes etcd helm; do mkdir -p "$tmp/$name"; (cd "$tmp/$name" && go mod init "chorus.local/$name" >/dev/null 2>&1); done
  (
    cd "$tmp/kubernetes"
    # Every staging module named in k8s.io/kubernetes's go.mod, pinned to its tag.
    go mod download -json "k8s.io/kubernetes@$k8s" >/dev/null
    local gomod staging="v0.${k8s#v1.}"
    gomod="$(go env GOMODCACHE)/cache/download/k8s.io/kubernetes/@v/$k8s.mod"
    for m in $(sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "$gomod"); do
      go mod edit -replace="$m=$m@$staging"
    done
    go get "k8s.io/kubernetes@$k8s"
  )
  (cd "$tmp/etcd" && go get "go.etcd.io/etcd/server/v3@$etcd")
  (cd "$tmp/helm" && go get "helm.sh/helm/v3@$helm")
  # Record the checksums of everything the builds below compile.
  GOFLAGS=-mod=mod build "$tmp" "$tmp/bin"
  for name in kubernetes etcd helm; do
    mkdir -p "$mods/$name"; cp "$tmp/$name/go.mod" "$tmp/$name/go.sum" "$mods/$name/"
  done
  log "relocked scripts/k8s/*/go.{mod,sum}: kubernetes $k8s, etcd $etcd, helm $helm"
}

build() {  # build MODULES-DIR OUT-DIR
  local src="$1" out="$2" k8s etcd helm
  k8s="$(pinned_version kubernetes k8s.io/kubernetes)"
  helm="$(pinned_version helm helm.sh/helm/v3)"
  local ldflags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags="$ldflags -X $pkg.gitVersion=$k8s -X $pkg.gitMajor=1 -X $pkg.gitMinor=$(echo "$k8s" | cut -d. -f2)"
  done
  (cd "$src/kubernetes" && go build -trimpath -ldflags "$ldflags" -o "$out/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kubectl \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy)
  (cd "$src/etcd" && go build -trimpath -ldflags "-s -w" -o "$out/etcd" go.etcd.io/etcd/server/v3)
  (cd "$src/helm" && go build -trimpath -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$helm" \
    -o "$out/helm" helm.sh/helm/v3/cmd/helm)
}

if [ "${1:-}" = "--relock" ]; then relock; exit 0; fi

# One cached build per pinned set: the directory name is the hash of the committed pins.
pins="$(cat "$mods"/*/go.mod "$mods"/*/go.sum | sha256sum | cut -c1-16)"
bin="$cache/bin-$(pinned_version kubernetes k8s.io/kubernetes)-$pins"
if [ ! -x "$bin/kube-apiserver" ] || [ ! -x "$bin/kubelet" ] || [ ! -x "$bin/etcd" ] || [ ! -x "$bin/helm" ]; then
  log "building the pinned kubernetes, etcd and helm (scripts/k8s/; cached in $cache)"
  rm -rf "$bin.tmp" "$bin.src"; mkdir -p "$bin.tmp"
  cp -r "$mods" "$bin.src"
  GOFLAGS=-mod=readonly build "$bin.src" "$bin.tmp"
  rm -rf "$bin" "$bin.src"; mv "$bin.tmp" "$bin"
fi
echo "$bin"
