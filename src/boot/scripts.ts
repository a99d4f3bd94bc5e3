// The two shell programs of the boot flow, both run by busybox-static so they work whatever
// the image contains:
//  - INITRAMFS_INIT (/init in the initramfs): load modules, find the boot medium by label,
//    stack top layer + image squashfs under a tmpfs (or persist=) upper with overlayfs, copy a
//    per-machine top layer from a labelled disk, mount data volumes, switch_root.
//  - DRYDOCK_INIT (/.drydock/init in the image): PID 1 for images without their own init; runs
//    the startup script, then supervises ENTRYPOINT/CMD, restarting it with backoff.

/** Single-quotes a value for POSIX sh. */
export function shQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

export const INITRAMFS_INIT = `#!/bin/busybox sh
# drydock initramfs init. Kernel arguments it reads:
#   persist=LABEL=x            labelled ext4/btrfs fs used as the writable layer (default tmpfs)
#   toplayer=LABEL=x toplayer_path=dir   copy dir from that fs over the system at every boot
#   drydock.label=L drydock.init=PATH   set by the boot loader config drydock writes
#   drydock.debug (trace)  drydock.shell (shell before switch_root)  rootdelay=SECONDS
/bin/busybox mkdir -p /bin /sbin /usr/bin /usr/sbin /proc /sys /dev /run /newroot
/bin/busybox --install -s
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
# /run is a tmpfs that moves into the system: the medium, image, writable layer and persist disk
# stay visible under /run/drydock, so shutdown can remount them read-only.
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
. /etc/drydock/boot.conf

log() { echo "drydock: $*"; }
rescue() {
  log "$*"
  log "dropping to a rescue shell (exit to retry switch_root)"
  setsid cttyhack sh
}

WAIT=30
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    persist=*) PERSIST="\${arg#persist=}" ;;
    toplayer=*) TOPLAYER="\${arg#toplayer=}" ;;
    toplayer_path=*) TOPLAYER_PATH="\${arg#toplayer_path=}" ;;
    drydock.label=*) DRYDOCK_LABEL="\${arg#drydock.label=}" ;;
    drydock.init=*) DRYDOCK_INIT="\${arg#drydock.init=}" ;;
    drydock.debug) set -x ;;
    drydock.shell) BREAK=1 ;;
    rootdelay=*) WAIT="\${arg#rootdelay=}" ;;
  esac
done

load_modules() {
  while read -r m; do
    out="$(insmod "/lib/modules/$m" 2>&1)" || case "$out" in *"File exists"*) ;; *) log "insmod $m: $out" ;; esac
  done < "$1"
}
load_modules /etc/drydock/modules
# btrfs, vfat, nls: only for the extra disks (persist=, toplayer=, --mount).
[ -n "$PERSIST$TOPLAYER$DRYDOCK_MOUNTS" ] && load_modules /etc/drydock/modules.extra

# LABEL=x, UUID=x or /dev/x (a bare word means a label), waiting for slow devices to appear.
find_dev() {
  spec="$1"; tries=$(( \${2:-10} * 10 ))
  case "$spec" in LABEL=*|UUID=*|/dev/*) ;; *) spec="LABEL=$spec" ;; esac
  while [ "$tries" -gt 0 ]; do
    case "$spec" in
      /dev/*) [ -b "$spec" ] && { echo "$spec"; return 0; } ;;
      *) d="$(findfs "$spec" 2>/dev/null)" && [ -n "$d" ] && { echo "$d"; return 0; } ;;
    esac
    usleep 100000
    tries=$((tries - 1))
  done
  return 1
}

R=/run/drydock
mkdir -p $R/medium $R/image $R/top $R/rw $R/toplayer
until medium="$(find_dev "LABEL=$DRYDOCK_LABEL" "$WAIT")"; do rescue "boot medium LABEL=$DRYDOCK_LABEL not found"; done
until mount -o ro "$medium" $R/medium; do rescue "cannot mount $medium"; done
until mount -t squashfs -o loop,ro $R/medium/drydock/rootfs.squashfs $R/image; do rescue "cannot mount the image squashfs"; done
until mount -t squashfs -o loop,ro $R/medium/drydock/top.squashfs $R/top; do rescue "cannot mount the top layer squashfs"; done

if [ -n "$PERSIST" ]; then
  if dev="$(find_dev "$PERSIST" 10)" && mount -o rw "$dev" $R/rw; then
    log "writable layer: $PERSIST ($dev), changes persist"
  else
    log "persist=$PERSIST: not found or not mountable; using tmpfs, changes will be lost"
    PERSIST=
  fi
fi
[ -n "$PERSIST" ] || mount -t tmpfs -o mode=0755 tmpfs $R/rw
mkdir -p $R/rw/drydock/upper $R/rw/drydock/work
until mount -t overlay overlay -o lowerdir=$R/top:$R/image,upperdir=$R/rw/drydock/upper,workdir=$R/rw/drydock/work /newroot; do
  rescue "cannot mount the overlay root"
done

if [ -n "$TOPLAYER" ]; then
  if dev="$(find_dev "$TOPLAYER" 10)" && mount -o ro "$dev" $R/toplayer; then
    src="$R/toplayer/\${TOPLAYER_PATH#/}"
    if [ -d "$src" ]; then
      cp -a "$src/." /newroot/ && log "top layer: copied $TOPLAYER:/\${TOPLAYER_PATH#/} over the system"
    else
      log "top layer: $TOPLAYER has no directory /\${TOPLAYER_PATH#/}"
    fi
    umount $R/toplayer
  else
    log "toplayer=$TOPLAYER: not found or not mountable"
  fi
fi

for m in $DRYDOCK_MOUNTS; do
  label="\${m%%:*}"; target="\${m#*:}"
  if dev="$(find_dev "LABEL=$label" 10)" && mkdir -p "/newroot$target" && mount "$dev" "/newroot$target"; then
    log "mounted LABEL=$label on $target"
  else
    log "mount LABEL=$label on $target failed; continuing without it"
  fi
done

[ -s /newroot/etc/hostname ] && hostname "$(head -n1 /newroot/etc/hostname)"
[ -n "$BREAK" ] && rescue "drydock.shell: the system is at /newroot"

for d in dev proc sys run; do mkdir -p /newroot/$d && mount --move /$d /newroot/$d; done
log "starting $DRYDOCK_INIT"
exec switch_root /newroot "$DRYDOCK_INIT"
`;

export interface ServiceSpec {
  /** argv (ENTRYPOINT + CMD). */
  argv: string[];
  env: string[];
  workdir: string;
  uid?: number;
  gid?: number;
  /** An interactive shell (CMD ["sh"], or no command): run on the console as its terminal. */
  console?: boolean;
  /** How to run the startup script, if any: argv prefix ending in the script path. */
  startup?: string[];
}

/** /.drydock/service.conf: sourced by the drydock init and run-service; every value shell-quoted. */
export function serviceConf(spec: ServiceSpec): string {
  const lines = ['# generated by drydock from the image config'];
  for (const e of spec.env) {
    const i = e.indexOf('=');
    const k = i < 0 ? e : e.slice(0, i);
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k)) continue; // not expressible in sh; Docker would pass it, init shells cannot
    lines.push(`SVC_ENV_${k}=${shQuote(i < 0 ? '' : e.slice(i + 1))}`, `SVC_ENV_NAMES="$SVC_ENV_NAMES ${k}"`);
  }
  lines.push(`SVC_WORKDIR=${shQuote(spec.workdir || '/')}`);
  lines.push(`SVC_USER=${spec.uid === undefined ? "''" : shQuote(`${spec.uid}:${spec.gid ?? 0}`)}`);
  lines.push(`SVC_ARGC=${spec.argv.length}`);
  lines.push(`SVC_CONSOLE=${spec.console ? 1 : "''"}`);
  lines.push(`SVC_CMD() { exec ${spec.argv.map(shQuote).join(' ')}; }`);
  lines.push(spec.startup ? `STARTUP() { ${spec.startup.map(shQuote).join(' ')}; }` : 'STARTUP() { :; }');
  lines.push(`HAS_STARTUP=${spec.startup ? 1 : "''"}`);
  return lines.join('\n') + '\n';
}

/**
 * /.drydock/run-service [startup]: execs the service (or the startup script) with the image's
 * ENV only (like docker run), in WORKDIR, as USER. busybox nsenter without namespaces drops
 * supplementary groups and sets gid, then uid: the one busybox applet that takes numeric ids.
 */
export const RUN_SERVICE = `#!/.drydock/busybox sh
. /.drydock/service.conf
for k in $(/.drydock/bin/env | /.drydock/bin/sed -n 's/^\\([A-Za-z_][A-Za-z0-9_]*\\)=.*/\\1/p'); do unset "$k" 2>/dev/null; done
for k in $SVC_ENV_NAMES; do eval "export $k=\\"\\$SVC_ENV_$k\\""; done
if [ "$1" = startup ]; then cd / && STARTUP; exit; fi
cd "$SVC_WORKDIR" 2>/dev/null || { echo "drydock: WORKDIR $SVC_WORKDIR does not exist"; exit 126; }
if [ -n "$SVC_USER" ]; then
  exec /.drydock/bin/nsenter -F -G "\${SVC_USER#*:}" -S "\${SVC_USER%%:*}" /.drydock/bin/sh -c '. /.drydock/service.conf; SVC_CMD'
fi
SVC_CMD
`;

export const DRYDOCK_INIT = `#!/.drydock/busybox sh
# drydock init: PID 1 for images without an init of their own. Runs the startup script, then the
# image's ENTRYPOINT/CMD as a supervised service (restarted with backoff), output to the console
# and /var/log/drydock-service.log. Only uses /.drydock/busybox, so shell-less images work.
export PATH=/.drydock/bin
umask 022
say() { echo "drydock: $*" > /dev/console; }
[ -e /proc/self ] || mount -t proc proc /proc
[ -e /sys/kernel ] || mount -t sysfs sysfs /sys
[ -e /dev/null ] || mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm /run /tmp /var/log
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts 2>/dev/null
mount -t tmpfs -o mode=1777 tmpfs /dev/shm 2>/dev/null
ip link set lo up 2>/dev/null
[ -s /etc/hostname ] && hostname "$(head -n1 /etc/hostname)"
. /.drydock/service.conf

svc=
stop_all() {
  say "$1: stopping the service"
  trap '' TERM USR1 USR2
  [ -n "$svc" ] && kill -TERM "$svc" 2>/dev/null
  i=0; while [ -n "$svc" ] && kill -0 "$svc" 2>/dev/null && [ $i -lt 50 ]; do usleep 200000; i=$((i + 1)); done
  kill -KILL -1 2>/dev/null
  sync
  umount -a -r 2>/dev/null
  "$1" -f
}
# busybox poweroff/reboot/halt signal PID 1 with USR2/TERM/USR1.
trap 'stop_all poweroff' USR2
trap 'stop_all reboot' TERM
trap 'stop_all halt' USR1

[ -s /etc/motd ] && cat /etc/motd > /dev/console

if [ -n "$HAS_STARTUP" ]; then
  say "running the startup script"
  /.drydock/run-service startup < /dev/null 2>&1 | tee -a /var/log/drydock-startup.log > /dev/console
fi

LOG=/var/log/drydock-service.log
FIFO=/run/drydock-service.fifo
rm -f $FIFO; mkfifo $FIFO
delay=1
while :; do
  started=$(cut -d. -f1 /proc/uptime)
  if [ -n "$SVC_CONSOLE" ]; then
    # An interactive shell gets the console as its controlling terminal, like a getty.
    setsid cttyhack /.drydock/run-service &
  else
    tee -a $LOG < $FIFO > /dev/console &
    /.drydock/run-service < /dev/null > $FIFO 2>&1 &
  fi
  svc=$!
  say "service started (pid $svc)"
  wait $svc
  rc=$?
  svc=
  ran=$(( $(cut -d. -f1 /proc/uptime) - started ))
  if [ $ran -ge 30 ]; then delay=1; fi
  say "service exited with status $rc after \${ran}s; restarting in \${delay}s"
  sleep $delay & wait $!
  delay=$((delay * 2)); [ $delay -gt 30 ] && delay=30
done
`;
