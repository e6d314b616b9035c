#!/usr/bin/env bash
# Makes the base image tests/e2e/test_image.py builds duro's Dockerfile on: the registry of python:3.11-slim is not
# reachable here, so a stand-in with the same Python (3.11) is made from Debian bookworm's packages (debootstrap)
# and imported into buildah's storage as localhost/duro-python-base:3.11. Installs buildah and debootstrap from
# Debian when missing. The root file system is cached as ~/.cache/duro-tools/duro-python-base-3.11.tar; skips
# when the image exists. The host's CA bundle and pip settings go in, so pip inside a build reaches PyPI as the
# host does.
set -euo pipefail
image=localhost/duro-python-base:3.11
cache="$HOME/.cache/duro-tools/duro-python-base-3.11.tar"
if ! command -v buildah >/dev/null 2>&1 || ! command -v podman >/dev/null 2>&1 || ! command -v debootstrap >/dev/null 2>&1; then
  echo "70-image-base: installing buildah, podman and debootstrap (Debian packages)"
  if ! { apt-get update -qq && apt-get install -y -qq buildah podman debootstrap >/dev/null; }; then
    echo "70-image-base: could not install buildah/podman/debootstrap; the image test will skip" >&2
    exit 0
  fi
fi
if buildah inspect --type image "$image" >/dev/null 2>&1; then
  echo "70-image-base: $image exists"
  exit 0
fi
started=$(date +%s)
if [ ! -s "$cache" ]; then
  rootfs=$(mktemp -d /tmp/duro-python-base.XXXXXX)
  trap 'rm -rf "$rootfs"' EXIT
  debootstrap --variant=minbase --include=python3,python3-pip,python3-venv,python-is-python3,ca-certificates \
    bookworm "$rootfs" http://deb.debian.org/debian >/dev/null
  rm -f "$rootfs"/usr/lib/python3*/EXTERNALLY-MANAGED   # the image's Python is its own, as in python:3.11-slim
  cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
  printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' > "$rootfs/etc/pip.conf"
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  mkdir -p "$(dirname "$cache")"
  tar -C "$rootfs" -cf "$cache.partial" . && mv "$cache.partial" "$cache"
fi
podman import --change 'CMD ["python3"]' "$cache" "$image" >/dev/null 2>&1
echo "70-image-base: made $image in $(( $(date +%s) - started ))s"
