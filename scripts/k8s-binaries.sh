#!/usr/bin/env bash
# Builds the real Kubernetes control plane the tests run (kube-apiserver, the garbage
# collector's kube-controller-manager, kubectl), etcd and helm from the Go module proxy.
# Binaries are cached outside the clone, so only the first run compiles (~15 min on 2 cores).
# Prints the bin directory.
#
# k8s.io/kubernetes replaces its staging modules with local folders, which `go install`
# refuses; a wrapper module pins each one to its published v0.MINOR.PATCH tag instead
# (kubernetes/kubernetes#79384).
set -euo pipefail
K8S_VERSION="${K8S_VERSION:-v1.35.4}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
HELM_VERSION="${HELM_VERSION:-v3.21.4}"
cache="${CHORUS_CACHE:-$HOME/.cache/chorus}/k8s"
bin="$cache/bin-$K8S_VERSION-etcd$ETCD_VERSION-helm$HELM_VERSION"
export GOFLAGS="-mod=mod" GOTOOLCHAIN="${GOTOOLCHAIN:-auto}"

log() { echo "k8s-binaries: $*" >&2; }

build_kubernetes() {
  local mod="$cache/src/kubernetes-$K8S_VERSION" staging="v0.${K8S_VERSION#v1.}"
  mkdir -p "$mod"
  (
    cd "$mod"
    [ -f go.mod ] || go mod init chorus.local/k8sbin >/dev/null 2>&1
    # Every staging module named in k8s.io/kubernetes's go.mod, pinned to its tag.
    go mod download -json "k8s.io/kubernetes@$K8S_VERSION" >/dev/null
    gomod="$(go env GOMODCACHE)/cache/download/k8s.io/kubernetes/@v/$K8S_VERSION.mod"
    for m in $(sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "$gomod"); do
      go mod edit -replace="$m=$m@$staging"
    done
    go get "k8s.io/kubernetes@$K8S_VERSION" >&2
    local ldflags="-s -w"
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ldflags="$ldflags -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$(echo "$K8S_VERSION" | cut -d. -f2)"
    done
    go build -trimpath -ldflags "$ldflags" -o "$bin.tmp/" \
      k8s.io/kubernetes/cmd/kube-apiserver \
      k8s.io/kubernetes/cmd/kube-controller-manager \
      k8s.io/kubernetes/cmd/kubectl
  )
}

build_one() {  # build_one NAME MODULE@VERSION PACKAGE [LDFLAGS]
  local name="$1" modver="$2" pkg="$3" ldflags="${4:-}" mod="$cache/src/$1-${2#*@}"
  mkdir -p "$mod"
  (
    cd "$mod"
    [ -f go.mod ] || go mod init "chorus.local/$name" >/dev/null 2>&1
    go get "$modver" >&2
    go build -trimpath -ldflags "-s -w $ldflags" -o "$bin.tmp/$name" "$pkg"
  )
}

if [ ! -x "$bin/kube-apiserver" ] || [ ! -x "$bin/etcd" ] || [ ! -x "$bin/helm" ]; then
  log "building kubernetes $K8S_VERSION, etcd $ETCD_VERSION, helm $HELM_VERSION (cached in $cache)"
  rm -rf "$bin.tmp"; mkdir -p "$bin.tmp"
  build_kubernetes
  build_one etcd "go.etcd.io/etcd/server/v3@$ETCD_VERSION" go.etcd.io/etcd/server/v3
  build_one helm "helm.sh/helm/v3@$HELM_VERSION" helm.sh/helm/v3/cmd/helm \
    "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  rm -rf "$bin"; mv "$bin.tmp" "$bin"
fi
echo "$bin"
