#!/usr/bin/env bash
# Fetches a Debian kernel (vmlinuz + modules) for drydock's boot tests and benchmarks.
# Idempotent: re-running with a populated cache does nothing. Prints the cache dir on stdout.
#
#   scripts/fetch-kernel.sh [CACHE_DIR]            the cloud kernel (linux-image-cloud-amd64): small,
#                                                  virtio only (default: $DRYDOCK_KERNEL_CACHE or test/.cache/kernel)
#   scripts/fetch-kernel.sh --generic [CACHE_DIR]  the generic kernel (linux-image-amd64): also e1000,
#                                                  9p and real hardware (default: $DRYDOCK_GENERIC_KERNEL_CACHE
#                                                  or test/.cache/kernel-generic)
#   scripts/fetch-kernel.sh --other [CACHE_DIR]    a cloud kernel of another version than the current one (the
#                                                  kernel-upgrade test boots both; default: $DRYDOCK_KERNEL2_CACHE
#                                                  or test/.cache/kernel-other)
#
# Result: CACHE_DIR/vmlinuz and CACHE_DIR/modules (= lib/modules/<version>), CACHE_DIR/version.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
meta=linux-image-cloud-amd64
if [[ "${1:-}" == --generic ]]; then
  shift
  meta=linux-image-amd64
  cache="${1:-${DRYDOCK_GENERIC_KERNEL_CACHE:-$here/test/.cache/kernel-generic}}"
elif [[ "${1:-}" == --other ]]; then
  shift
  meta=other
  cache="${1:-${DRYDOCK_KERNEL2_CACHE:-$here/test/.cache/kernel-other}}"
else
  cache="${1:-${DRYDOCK_KERNEL_CACHE:-$here/test/.cache/kernel}}"
fi
if [[ -s "$cache/vmlinuz" && -f "$cache/modules/modules.dep" && -s "$cache/version" ]]; then
  echo "$cache"
  exit 0
fi
# The unversioned metapackage names the current kernel; resolve it so we fetch a real package.
current() { apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-/ {print $2; exit}'; }
if [[ "$meta" == other ]]; then
  # The newest versioned cloud kernel that is not the current one (still in the archive's lists).
  [[ -n "$(current)" ]] || apt-get update -qq >&2
  cur="$(current)"
  pkg="$(apt-cache pkgnames linux-image- | grep -E '^linux-image-[0-9.]+-[0-9]+-cloud-amd64-unsigned$' \
    | grep -vx "${cur%-unsigned}-unsigned" | sort -V | tail -n 1)"
  [[ -n "$pkg" ]] || { echo "fetch-kernel: no cloud kernel other than $cur in the package lists" >&2; exit 1; }
else
  pkg="$(apt-cache depends "$meta" 2>/dev/null | awk '/Depends: linux-image-/ {print $2; exit}')"
fi
if [[ -z "$pkg" ]]; then
  apt-get update -qq >&2
  pkg="$(apt-cache depends "$meta" | awk '/Depends: linux-image-/ {print $2; exit}')"
fi
[[ -n "$pkg" ]] || { echo "fetch-kernel: cannot resolve $meta" >&2; exit 1; }
work="$(mktemp -d "${TMPDIR:-/tmp}/drydock-kernel.XXXXXX")"
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get download -q "$pkg" >&2)
deb="$(ls "$work"/*.deb | head -n1)"
dpkg-deb -x "$deb" "$work/root"
kver="$(ls "$work/root/lib/modules" | head -n1)"
[[ -n "$kver" && -f "$work/root/boot/vmlinuz-$kver" ]] || { echo "fetch-kernel: $deb has no vmlinuz" >&2; exit 1; }
# Debian ships modules.dep only via depmod in postinst; generate it here.
depmod -b "$work/root" "$kver"
mkdir -p "$(dirname "$cache")"
stage="$cache.tmp.$$"
rm -rf "$stage"
mkdir -p "$stage"
mv "$work/root/boot/vmlinuz-$kver" "$stage/vmlinuz"
mv "$work/root/lib/modules/$kver" "$stage/modules"
echo "$kver" > "$stage/version"
rm -rf "$cache"
mv "$stage" "$cache"
echo "$cache"
