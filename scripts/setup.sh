#!/usr/bin/env bash
# Installs everything drydock and its test suite need on a fresh Debian 12 machine (as root):
# system packages from apt, npm dependencies, the compiled CLI, podman's config for this
# sandbox, and (with --test) the Debian cloud kernel and systemd rootfs the boot tests use.
# Idempotent and quick when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  # runtime and image tools drydock drives (python3: `drydock cp` does its tar work chrooted into the container;
  # golang-github-containers-common: the default seccomp profile, /usr/share/containers/seccomp.json)
  runc tini busybox-static python3 golang-github-containers-common zstd xz-utils bzip2 file ca-certificates curl iproute2 iptables kmod util-linux
  # ADD of git repositories (the client, and git daemon for its test)
  git
  # mkimage
  debootstrap
  # boot: squashfs, ISO, disk images, initramfs, emulator for the boot tests
  squashfs-tools xorriso isolinux syslinux syslinux-common syslinux-utils grub-pc-bin grub-common grub-efi-amd64-bin ovmf
  mtools cpio e2fsprogs btrfs-progs dosfstools fdisk qemu-system-x86 qemu-utils
  # boot: the sshd a booted image without its own gets (--ssh-key)
  dropbear-bin
  # boot: runc carried on the medium for --service containers, with its libraries (patchelf)
  patchelf
  # boot: an updatable disk's initramfs starts a deployment's own kernel with kexec
  kexec-tools
  # boot: bench/boot-layers.ts compares erofs with squashfs for an updatable disk's layer files
  erofs-utils
  # peers for interop tests and benchmarks
  skopeo podman buildah umoci docker-registry apache2-utils openssl uidmap fuse-overlayfs hyperfine openssh-client libarchive-tools
  # build: the snapshot's gzip CRC-32 through libdeflate (src/layer/crc32.ts; zlib's, 4x slower, without it)
  libdeflate0
  # build: the snapshot's SHA-256s on the thread pool through OpenSSL's libcrypto (src/util/sha256-pool.ts; node:crypto's on the main thread without it)
  libssl3
  # foreign fixtures: static binaries FROM scratch (gcc -static); unit files checked by systemd-analyze
  gcc libc6-dev systemd
  # hostile-tar fixtures (Python's tarfile writes what GNU tar refuses to)
  python3
  # the registry web UI's tests drive Debian's Chromium headless (puppeteer-core)
  chromium
  # the Docker Engine test/compat/ compares against (a private dockerd per test file; containerd comes with it)
  docker.io
  # the S3 driver's real object store: a one-node Ceph cluster with a RADOS Gateway (test/helpers/ceph.ts; no mgr needed)
  ceph-mon ceph-osd radosgw ceph-common
  # multi-platform builds: foreign RUN steps through qemu-user's binfmt_misc handlers (update-binfmts)
  qemu-user-static binfmt-support
)

# The multi-platform test downloads Debian's busybox-static:arm64 (apt-get download needs the
# arm64 package lists; nothing arm64 is installed).
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  dpkg --add-architecture arm64
  apt-get update -qq
fi

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Podman and buildah in this sandbox: rlimits cannot be raised and crun does not work.
conf=/etc/containers/containers.conf
if ! grep -qs 'default_ulimits *= *\[\]' "$conf" || ! grep -qs 'runtime *= *"runc"' "$conf"; then
  mkdir -p /etc/containers
  cat > "$conf" <<'CONF'
[containers]
default_ulimits = []

[engine]
runtime = "runc"
CONF
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
npm run --silent build

if [ "${1:-}" = "--test" ] && [ -x scripts/fetch-kernel.sh ]; then
  bash scripts/fetch-kernel.sh
fi
# The Debian systemd rootfs the systemd boot test boots (debootstrap, about 3 min, once).
if [ "${1:-}" = "--test" ] && [ -x scripts/fetch-systemd-rootfs.sh ]; then
  bash scripts/fetch-systemd-rootfs.sh > /dev/null
fi
