#!/usr/bin/env bash
# Builds the Debian root filesystem with systemd as its init that the systemd boot test
# (test/boot/systemd-init.test.ts) boots: what a user gets from
#   debootstrap --variant=minbase --include=systemd-sysv bookworm
# (no Recommends), slimmed like a container base, with the units that only slow a TCG boot
# masked. Idempotent: re-running with a populated cache does nothing. Prints the cache dir.
#
#   scripts/fetch-systemd-rootfs.sh [CACHE_DIR]   default: $DRYDOCK_SYSTEMD_ROOTFS_CACHE or test/.cache/systemd-rootfs
#
# Result: CACHE_DIR/rootfs.tar (GNU tar, numeric owners) and CACHE_DIR/packages (dpkg -l names).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
cache="${1:-${DRYDOCK_SYSTEMD_ROOTFS_CACHE:-$here/test/.cache/systemd-rootfs}}"
suite=bookworm
mirror="${DRYDOCK_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
if [[ -s "$cache/rootfs.tar" && -s "$cache/packages" ]]; then
  echo "$cache"
  exit 0
fi
command -v debootstrap > /dev/null || { echo "fetch-systemd-rootfs: debootstrap is missing (apt-get install debootstrap)" >&2; exit 1; }
work="$(mktemp -d "${TMPDIR:-/tmp}/drydock-systemd-rootfs.XXXXXX")"
cleanup() {
  # debootstrap mounts proc and sys in the target; a failure can leave them mounted.
  for m in proc sys dev/pts dev; do umount -l "$work/root/$m" 2> /dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
debootstrap --variant=minbase --include=systemd-sysv "$suite" "$work/root" "$mirror" >&2
r="$work/root"
# Units that cost a TCG boot time and do nothing for a test machine: timers of apt and
# e2fsprogs and util-linux, the first-boot prompt, and kmod-static-nodes (minbase has no kmod
# binary: it would only fail). Masked = linked to /dev/null.
for u in kmod-static-nodes.service apt-daily.timer apt-daily-upgrade.timer apt-daily.service apt-daily-upgrade.service e2scrub_all.timer \
    e2scrub_reap.service fstrim.timer systemd-firstboot.service systemd-timesyncd.service; do
  ln -sfn /dev/null "$r/etc/systemd/system/$u"
done
# Every machine gets its own machine-id at its first boot (systemd makes one when the file is empty).
: > "$r/etc/machine-id"
rm -f "$r/var/lib/dbus/machine-id"
# Slim like a container base: no apt lists, caches, logs, docs, man pages or locales.
rm -rf "$r"/var/lib/apt/lists/* "$r"/var/cache/apt/*.bin "$r"/var/cache/apt/archives/*.deb "$r"/var/log/*.log \
  "$r"/var/log/apt/* "$r"/usr/share/doc/* "$r"/usr/share/man/* "$r"/usr/share/info/* "$r"/debootstrap
find "$r/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} + 2> /dev/null || true
rm -f "$r/etc/hostname" "$r/etc/resolv.conf"
chroot "$r" dpkg-query -W -f '${Package}\n' > "$work/packages"
mkdir -p "$(dirname "$cache")"
stage="$cache.tmp.$$"
rm -rf "$stage"
mkdir -p "$stage"
tar --sort=name --numeric-owner --xattrs --xattrs-include='*' -C "$r" -cf "$stage/rootfs.tar" .
mv "$work/packages" "$stage/packages"
rm -rf "$cache"
mv "$stage" "$cache"
echo "$cache"
