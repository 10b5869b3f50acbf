#!/usr/bin/env bash
# Builds the OpenTelemetry Collector the tracing tests send spans to: a small wrapper module
# (scripts/otelcol/main.go: the OTLP receiver and the debug exporter, both core components)
# compiled from the Go module proxy. Cached outside the clone, so only the first run
# compiles (~1 min on 2 cores). Prints the binary's path.
#
# Every module version and checksum is pinned by the committed scripts/otelcol/go.mod and
# go.sum and built with -mod=readonly, like scripts/k8s-binaries.sh; every collector module
# sits at one release (core v0.165.0 / v1.71.0). To move to another release:
#   OTELCOL_VERSION=v0.166.0 OTELCOL_STABLE_VERSION=v1.72.0 scripts/otelcol-binary.sh --relock
# (rewrites go.mod/go.sum; commit them).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mod="$root/scripts/otelcol"
cache="${CHORUS_CACHE:-$HOME/.cache/chorus}/otelcol"
export GOTOOLCHAIN="${GOTOOLCHAIN:-auto}"

log() { echo "otelcol-binary: $*" >&2; }

relock() {
  local version="${OTELCOL_VERSION:?}" stable="${OTELCOL_STABLE_VERSION:?}" tmp
  tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' RETURN
  cp "$mod/main.go" "$tmp/"
  (
    cd "$tmp"
    go mod init chorus.local/otelcol >/dev/null 2>&1
    go get "go.opentelemetry.io/collector/otelcol@$version" \
      "go.opentelemetry.io/collector/service@$version" \
      "go.opentelemetry.io/collector/receiver/otlpreceiver@$version" \
      "go.opentelemetry.io/collector/exporter/debugexporter@$version" \
      "go.opentelemetry.io/collector/confmap/provider/fileprovider@$stable"
    go mod tidy
    go build -o /dev/null .
  )
  cp "$tmp/go.mod" "$tmp/go.sum" "$mod/"
  log "relocked scripts/otelcol/go.{mod,sum}: collector $version / $stable"
}

if [ "${1:-}" = "--relock" ]; then relock; exit 0; fi

# One cached build per pinned set: the file name is the hash of the committed pins and source.
pins="$(cat "$mod/go.mod" "$mod/go.sum" "$mod/main.go" | sha256sum | cut -c1-16)"
bin="$cache/otelcol-$pins"
if [ ! -x "$bin" ]; then
  log "building the pinned collector (scripts/otelcol/; cached in $cache)"
  mkdir -p "$cache"
  (cd "$mod" && GOFLAGS=-mod=readonly go build -trimpath -ldflags "-s -w" -o "$bin.tmp" .)
  mv "$bin.tmp" "$bin"
fi
echo "$bin"
