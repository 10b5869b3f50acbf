#!/usr/bin/env bash
# A local base image for the Containerfiles' `ARG BASE`, made from Debian's archive when no
# registry is reachable (the tests, CI): bookworm minbase plus python3, imported into podman
# as localhost/chorus-base:bookworm (idempotent: the rootfs tar is cached, the import done
# once). Debian bookworm's python3 is 3.11, the one Python Chorus supports and uv.lock covers.
# Prints the image name on its last line. Needs scripts/containers-env.sh sourced.
#   CHORUS_DEBIAN_MIRROR   archive to build from (default http://deb.debian.org/debian)
set -euo pipefail
image="localhost/chorus-base:bookworm"
tar="$CHORUS_CONTAINERS/debian-py-bookworm.tar"
if ! podman image exists "$image"; then
  if [ ! -s "$tar" ]; then
    # ca-certificates: pip/uv in the build verify TLS against it (or the host's bundle, given
    # as a build secret); docs, man pages and locales are left out (dpkg does not expand {a,b}).
    mmdebstrap --quiet --variant=minbase --format=tar \
      --include=python3,python3-venv,ca-certificates \
      --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
      --dpkgopt='path-exclude=/usr/share/locale/*' \
      bookworm "$tar.part" "${CHORUS_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
    mv "$tar.part" "$tar"
  fi
  podman import --quiet "$tar" "$image" >/dev/null
fi
echo "$image"
