#!/usr/bin/env bash
# rootfs.sh ARCH OUT.tar: a minimal Debian bookworm root filesystem (minbase + python3-minimal, bash included, and
# Debian's Open MPI with mpi4py: the hybrid MPI model needs the cluster's Open MPI inside the image, and the local
# cluster runs Debian bookworm's openmpi-bin 4.1, so the same packages make the same Open MPI and PMIx)
# for ARCH (amd64, arm64), as a tar. Foreign architectures run their maintainer scripts under QEMU (binfmt).
# Writes OUT.tar.part and renames it on success, so a half-made tar is never taken for a finished one.
set -euo pipefail
arch=${1:?usage: rootfs.sh ARCH OUT.tar}
out=${2:?usage: rootfs.sh ARCH OUT.tar}
mirror=${HPCCI_DEBIAN_MIRROR:-http://deb.debian.org/debian}
security=${HPCCI_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
rm -f "$out.part"
# shellcheck disable=SC2016  # the hook's $1 is expanded by mmdebstrap
mmdebstrap --quiet --variant=minbase --architectures="$arch" --format=tar \
  --include=python3-minimal,python3-mpi4py \
  --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
  --aptopt='Acquire::Languages "none"' \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/info/*' \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-include=/usr/share/locale/locale.alias' \
  --customize-hook='rm -f "$1"/etc/hostname "$1"/etc/resolv.conf' \
  bookworm "$out.part" \
  "deb $mirror bookworm main" \
  "deb $mirror bookworm-updates main" \
  "deb $security bookworm-security main"
mv "$out.part" "$out"
