#!/usr/bin/env bash
# Podman/buildah settings for machines like CI's and this one (sourced, not run):
#   . scripts/containers-env.sh
# Installs Debian's podman, buildah, runc, skopeo, catatonit and mmdebstrap when missing, and points
# podman at config files under a cache directory it owns (never /etc, never ~/.config):
#   - overlay storage under $CHORUS_CONTAINERS (default ~/.cache/chorus/containers), so
#     images and build layers survive between runs and a second build takes seconds;
#   - runc: crun fails here on hybrid cgroups ("cgroups in hybrid mode not supported");
#   - nofile/nproc 16384: podman's default ulimits exceed the hard limits of these machines
#     ("setrlimit ... operation not permitted");
#   - host networking, cgroupfs and file events: there is no systemd or CNI set-up to lean on.
# A developer's own podman set-up is left alone: scripts/build-images.sh does not source this.
_chorus_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# catatonit: podman run --init (a Python PID 1 ignores SIGTERM).
"$_chorus_root/scripts/system-packages.sh" podman buildah runc skopeo uidmap mmdebstrap catatonit
export CHORUS_CONTAINERS="${CHORUS_CONTAINERS:-${CHORUS_CACHE:-$HOME/.cache/chorus}/containers}"
mkdir -p "$CHORUS_CONTAINERS/conf" "$CHORUS_CONTAINERS/tmp"
cat > "$CHORUS_CONTAINERS/conf/storage.conf" <<CONF
[storage]
driver = "overlay"
graphroot = "$CHORUS_CONTAINERS/storage"
runroot = "$CHORUS_CONTAINERS/run"
CONF
cat > "$CHORUS_CONTAINERS/conf/containers.conf" <<CONF
[containers]
netns = "host"
default_ulimits = ["nofile=16384:16384", "nproc=16384:16384"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
export CONTAINERS_STORAGE_CONF="$CHORUS_CONTAINERS/conf/storage.conf"
export CONTAINERS_CONF="$CHORUS_CONTAINERS/conf/containers.conf"
# Build scratch space (layer tars, cache mounts) on the same disk as the storage, not /var/tmp.
export TMPDIR="$CHORUS_CONTAINERS/tmp"
unset _chorus_root
