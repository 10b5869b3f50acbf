#!/usr/bin/env bash
# Builds what the single-node test cluster (tests/cluster) runs beside the Kubernetes binaries
# of scripts/k8s-binaries.sh, all from pinned sources, cached outside the clone (and installs
# Debian's containerd, runc and CNI plugins when missing):
#   kuberay-operator   github.com/ray-project/kuberay/ray-operator (scripts/cluster/kuberay/)
#   kuberay-config/    that module's own manifests: CRDs, RBAC, the manager Deployment
#   coredns            the cluster DNS (scripts/cluster/coredns/: only the plugins it uses)
#   kube-router        its NetworkPolicy controller enforces the policies on the node
#                      (github.com/cloudnativelabs/kube-router/v2, scripts/cluster/kube-router/)
#   pause              the pod sandbox, compiled from build/pause of the pinned k8s.io/kubernetes
#   images/*.tar       OCI archives of the `pause` and `kuberay-operator` images (no registry is
#                      reachable here: the cluster imports them into containerd)
# Prints the output directory.
#
# Versions and checksums are pinned by the committed go.mod/go.sum under scripts/cluster/ and
# built with -mod=readonly. To move to other versions:
#   KUBERAY_VERSION=v1.5.0 COREDNS_VERSION=v1.14.2 KUBE_ROUTER_VERSION=v2.1.0 \
#     scripts/cluster-binaries.sh --relock
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mods="$root/scripts/cluster"
cache="${CHORUS_CACHE:-$HOME/.cache/chorus}/cluster"
export GOTOOLCHAIN="${GOTOOLCHAIN:-auto}"
# Static binaries: the images hold nothing but the one file.
export CGO_ENABLED=0

log() { echo "cluster-binaries: $*" >&2; }
pinned_version() { sed -n "s#^\s*\(require \)\?$2 \(v[^ ]*\).*#\2#p" "$1/go.mod" | head -n 1; }

relock() {
  local kuberay="${KUBERAY_VERSION:?}" coredns="${COREDNS_VERSION:?}" kube_router="${KUBE_ROUTER_VERSION:?}" tmp
  tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' RETURN
  mkdir -p "$tmp/kuberay" "$tmp/coredns" "$tmp/kube-router"; cp "$mods/coredns/main.go" "$tmp/coredns/"
  (
    cd "$tmp/kuberay" && go mod init chorus.local/kuberay >/dev/null 2>&1
    go get "github.com/ray-project/kuberay/ray-operator@$kuberay"
    # No source imports the operator (it is a main package): building it records its sums.
    GOFLAGS=-mod=mod go build -o /dev/null github.com/ray-project/kuberay/ray-operator
  )
  (cd "$tmp/coredns" && go mod init chorus.local/coredns >/dev/null 2>&1 \
    && go get "github.com/coredns/coredns@$coredns" && go mod tidy && go build -o /dev/null .)
  (
    cd "$tmp/kube-router" && go mod init chorus.local/kube-router >/dev/null 2>&1
    go get "github.com/cloudnativelabs/kube-router/v2@$kube_router"
    # Its network libraries at the versions KubeRay's pin uses: v2.1.0 requires ones with
    # known flaws (x/net's HTTP/2 CONTINUATION flood among them).
    go get golang.org/x/net@v0.43.0 google.golang.org/grpc@v1.72.2 google.golang.org/protobuf@v1.36.8
    GOFLAGS=-mod=mod go build -o /dev/null github.com/cloudnativelabs/kube-router/v2/cmd/kube-router
  )
  for name in kuberay coredns kube-router; do cp "$tmp/$name/go.mod" "$tmp/$name/go.sum" "$mods/$name/"; done
  log "relocked scripts/cluster/*/go.{mod,sum}: kuberay $kuberay, coredns $coredns, kube-router $kube_router"
}

if [ "${1:-}" = "--relock" ]; then relock; exit 0; fi

# What the node runs from Debian: the container runtime, the pods' network plugins, and the
# iptables and ipset tools kube-proxy and kube-router program the kernel with.
"$root/scripts/system-packages.sh" containerd runc containernetworking-plugins iptables ipset

k8s_mods="$root/scripts/k8s/kubernetes"
pins="$(cat "$mods"/*/go.mod "$mods"/*/go.sum "$mods/coredns/main.go" "$k8s_mods/go.mod" "$0" | sha256sum | cut -c1-16)"
out="$cache/bin-$(pinned_version "$mods/kuberay" github.com/ray-project/kuberay/ray-operator)-$pins"
if [ ! -f "$out/images/kuberay-operator.tar" ]; then
  log "building KubeRay's operator, CoreDNS, kube-router and pause (scripts/cluster/; cached in $cache)"
  rm -rf "$out.tmp"; mkdir -p "$out.tmp/images"
  export GOFLAGS=-mod=readonly
  kuberay="$(pinned_version "$mods/kuberay" github.com/ray-project/kuberay/ray-operator)"
  (cd "$mods/kuberay" && go build -trimpath -ldflags "-s -w" -o "$out.tmp/kuberay-operator" \
    github.com/ray-project/kuberay/ray-operator)
  src="$(cd "$mods/kuberay" && go mod download -json "github.com/ray-project/kuberay/ray-operator@$kuberay" \
    | sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p')"
  cp -r "$src/config" "$out.tmp/kuberay-config"; chmod -R u+w "$out.tmp/kuberay-config"
  (cd "$mods/coredns" && go build -trimpath -ldflags "-s -w" -o "$out.tmp/coredns" .)
  kube_router="$(pinned_version "$mods/kube-router" github.com/cloudnativelabs/kube-router/v2)"
  (cd "$mods/kube-router" && go build -trimpath -o "$out.tmp/kube-router" \
    -ldflags "-s -w -X github.com/cloudnativelabs/kube-router/v2/pkg/version.Version=$kube_router" \
    github.com/cloudnativelabs/kube-router/v2/cmd/kube-router)
  k8s="$(pinned_version "$k8s_mods" k8s.io/kubernetes)"
  k8s_src="$(cd "$k8s_mods" && go mod download -json "k8s.io/kubernetes@$k8s" | sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p')"
  pause_tag="$(sed -n 's/^TAG ?= //p' "$k8s_src/build/pause/Makefile")"
  # The flags of build/pause/Makefile.
  gcc -Os -Wall -Werror -static -DVERSION="v$pause_tag-$k8s" -o "$out.tmp/pause" "$k8s_src/build/pause/linux/pause.c"
  # One-file images, named as the cluster asks for them (imagePullPolicy never pulls them).
  (
    . "$root/scripts/containers-env.sh"
    image() {  # image NAME TAG BINARY ENTRYPOINT UID
      local c; c="$(buildah from scratch)"
      buildah copy --quiet "$c" "$out.tmp/$3" "$4" >/dev/null
      buildah config --entrypoint "[\"$4\"]" --user "$5:$5" "$c"
      buildah commit --quiet --rm "$c" "localhost/chorus-cluster/$1:$2" >/dev/null
      buildah push --quiet "localhost/chorus-cluster/$1:$2" "oci-archive:$out.tmp/images/$1.tar:localhost/chorus-cluster/$1:$2"
      buildah rmi "localhost/chorus-cluster/$1:$2" >/dev/null
    }
    image pause "$pause_tag" pause /pause 65535
    image kuberay-operator "$kuberay" kuberay-operator /manager 65532
  )
  printf 'pause=localhost/chorus-cluster/pause:%s\nkuberay-operator=localhost/chorus-cluster/kuberay-operator:%s\n' \
    "$pause_tag" "$kuberay" > "$out.tmp/images/names"
  rm -rf "$out"; mv "$out.tmp" "$out"
fi
echo "$out"
