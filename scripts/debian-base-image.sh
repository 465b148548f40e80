#!/usr/bin/env bash
# A container base image made from Debian packages (debootstrap), for building deploy/Dockerfile.*
# where no container registry is reachable but the Debian mirror is:
#   scripts/debian-base-image.sh            # -> localhost/debian-python:bookworm (python3 3.11 + venv)
#   LTXSERVE_IMAGE_TEST=1 LTXSERVE_IMAGE_BASE=localhost/debian-python:bookworm .venv/bin/pytest tests/scaleout/test_images.py
set -euo pipefail
TAG=${1:-localhost/debian-python:bookworm}
ROOTFS=$(mktemp -d)
trap 'rm -rf "$ROOTFS"' EXIT
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$ROOTFS" \
    http://deb.debian.org/debian
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin
# This machine's CA bundle: package indexes reached through a TLS-inspecting proxy verify in the
# build too (pip reads PIP_CERT).
cp /etc/ssl/certs/ca-certificates.crt "$ROOTFS"/etc/ssl/certs/ca-certificates.crt
# Storage driver: podman's default (native overlay on ext4/xfs); PODMAN_STORAGE_DRIVER=vfs where
# overlay mounts are refused (vfs copies the whole rootfs for every layer: GBs, slow).
tar -C "$ROOTFS" -c . | podman --storage-driver "${PODMAN_STORAGE_DRIVER:-overlay}" import --change 'CMD ["/bin/bash"]' \
    --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' - "$TAG"
echo "$TAG"
