#!/usr/bin/env bash
# Builds SeaweedFS's `weed`, the S3-compatible server the sample-storage tests talk to
# (../shared/DESIGN.md: a real S3 server on loopback, not a mock), from the Go module proxy.
# Cached outside the clone, so only the first run compiles (a few minutes on 2 cores).
# Prints the binary's path.
#
# Every module version and checksum is pinned by the committed scripts/seaweedfs/go.mod and
# go.sum (a `tool` directive names the command) and built with -mod=readonly, like
# scripts/otelcol-binary.sh. SeaweedFS publishes no semver tags to the proxy, so a pin is a
# pseudo-version. Its own go.mod replaces go-bip39, and a dependency's replace directives do
# not apply to us, so ours repeats it. To move to another commit:
#   SEAWEEDFS_VERSION=v0.0.0-2026MMDDhhmmss-abcdef012345 scripts/seaweedfs-binary.sh --relock
# (rewrites go.mod/go.sum; commit them).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mod="$root/scripts/seaweedfs"
cache="${CHORUS_CACHE:-$HOME/.cache/chorus}/seaweedfs"
export GOTOOLCHAIN="${GOTOOLCHAIN:-auto}"

log() { echo "seaweedfs-binary: $*" >&2; }

relock() {
  local version="${SEAWEEDFS_VERSION:?}" tmp
  tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' RETURN
  (
    cd "$tmp"
    go mod init chorus.local/seaweedfs >/dev/null 2>&1
    go mod edit -replace github.com/tyler-smith/go-bip39=github.com/cosmos/go-bip39@v1.0.0
    go get -tool "github.com/seaweedfs/seaweedfs/weed@$version"
    go mod tidy
    go build -o /dev/null github.com/seaweedfs/seaweedfs/weed
  )
  cp "$tmp/go.mod" "$tmp/go.sum" "$mod/"
  log "relocked scripts/seaweedfs/go.{mod,sum}: seaweedfs $version"
}

if [ "${1:-}" = "--relock" ]; then relock; exit 0; fi

# One cached build per pinned set: the file name is the hash of the committed pins.
pins="$(cat "$mod/go.mod" "$mod/go.sum" | sha256sum | cut -c1-16)"
bin="$cache/weed-$pins"
if [ ! -x "$bin" ]; then
  log "building the pinned SeaweedFS (scripts/seaweedfs/; cached in $cache)"
  mkdir -p "$cache"
  (cd "$mod" && GOFLAGS=-mod=readonly go build -trimpath -ldflags "-s -w" -o "$bin.tmp" github.com/seaweedfs/seaweedfs/weed)
  mv "$bin.tmp" "$bin"
fi
echo "$bin"
