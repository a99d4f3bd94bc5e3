// The two shell programs of the boot flow, both run by busybox-static so they work whatever
// the image contains:
//  - INITRAMFS_INIT (/init in the initramfs): load modules, find the boot medium by label,
//    stack top layer + image squashfs under a tmpfs (or persist=) upper with overlayfs, copy a
//    per-machine top layer from a labelled disk, mount data volumes, switch_root.
//  - DRYDOCK_INIT (/.drydock/init in the image): PID 1 for images without their own init; brings
//    up the network (NETWORK_UP, UDHCPC_SCRIPT), starts sshd, runs the startup script, then
//    supervises ENTRYPOINT/CMD, restarting it with backoff.

/** Single-quotes a value for POSIX sh. */
export function shQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/**
 * NIC drivers from the hardware, not a fixed list: the modalias of every PCI network controller
 * (class 02) and virtio network device, resolved by modprobe through modules.alias. Shared by the
 * initramfs and the drydock init (hot-plugged or late devices get their driver there).
 */
const LOAD_NIC_DRIVERS = `load_nic_drivers() {
  set --
  for f in /sys/bus/pci/devices/*/modalias /sys/bus/virtio/devices/*/modalias; do
    [ -r "$f" ] || continue
    a="$(cat "$f")"
    case "$a" in pci:*bc02sc*|virtio:d00000001v*) set -- "$@" "$a" ;; esac
  done
  [ $# -gt 0 ] && modprobe -q -b -a "$@"
  return 0
}`;

export const INITRAMFS_INIT = `#!/bin/busybox sh
# drydock initramfs init. Kernel arguments it reads:
#   persist=LABEL=x            labelled ext4/btrfs fs used as the writable layer (default tmpfs)
#   toplayer=LABEL=x toplayer_path=dir   copy dir from that fs over the system at every boot
#   drydock.label=L drydock.init=PATH   set by the boot loader config drydock writes
#   drydock.deployment=ID|default|rollback   updatable disks: boot that deployment (boot menu)
#   drydock.kexec=ID [drydock.try=DEADLINE]   set by the first stage when it kexecs into deployment
#                              ID's own kernel: boot ID (a try of the pending one with drydock.try)
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
# What the boot loader config says (drydock.init= below only differs when a person typed it).
BOOTCONF_INIT="$DRYDOCK_INIT"
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    persist=*) PERSIST="\${arg#persist=}" ;;
    toplayer=*) TOPLAYER="\${arg#toplayer=}" ;;
    toplayer_path=*) TOPLAYER_PATH="\${arg#toplayer_path=}" ;;
    drydock.label=*) DRYDOCK_LABEL="\${arg#drydock.label=}" ;;
    drydock.init=*) DRYDOCK_INIT="\${arg#drydock.init=}" ;;
    drydock.deployment=*) WANT_DEPLOYMENT="\${arg#drydock.deployment=}" ;;
    drydock.kexec=*) KEXEC_INTO="\${arg#drydock.kexec=}" ;;
    drydock.try=*) KEXEC_TRY="\${arg#drydock.try=}" ;;
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
${LOAD_NIC_DRIVERS}
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
mkdir -p $R/medium $R/image $R/top $R/rw $R/toplayer $R/modules
until medium="$(find_dev "LABEL=$DRYDOCK_LABEL" "$WAIT")"; do rescue "boot medium LABEL=$DRYDOCK_LABEL not found"; done
until mount -o ro "$medium" $R/medium; do rescue "cannot mount $medium"; done
# An updatable disk (os/state.json): its data partition is mounted read-write at /run/drydock/os
# and the deployment os/state.json picks is stacked from one file per layer, under os/top.
OS=
MEDIUM=$R/medium
if [ -f $R/medium/os/state.json ]; then
  OS=$R/os MEDIUM=$R/os
  mkdir -p $OS
  umount $R/medium
  until mount -o rw "$medium" $OS; do rescue "cannot mount $medium read-write"; done
  . /etc/drydock/os.sh
  if [ -n "$KEXEC_INTO" ]; then
    # The second stage: the disk's kernel already picked this deployment and counted the try.
    OS_DEPLOYMENT="$KEXEC_INTO" OS_PENDING="\${KEXEC_TRY:+1}" OS_DEADLINE="$KEXEC_TRY" OS_NOTE="in its own kernel $(uname -r)"
  else
    until os_select $OS "$WANT_DEPLOYMENT" "$(date -u +%Y-%m-%dT%H:%M:%SZ)"; do rescue "no deployment to boot in $OS/os/state.json"; done
  fi
  log "deployment $OS_DEPLOYMENT: $OS_NOTE"
  dep="$(os_flat $OS/os/deployments/$OS_DEPLOYMENT.json)"
  # A deployment whose image brings another kernel (kernel.sha256 is not this initramfs's):
  # start that kernel with its own initramfs (os/kernels/, written by drydock os upgrade before
  # state.json named the deployment). The boot partition is never rewritten.
  kfile="$(os_field "$dep" kernel.vmlinuz)"
  if [ -z "$KEXEC_INTO" ] && [ -n "$kfile" ] && [ "$(os_field "$dep" kernel.sha256)" != "$DRYDOCK_KERNEL_SHA" ]; then
    kinit="$(os_field "$dep" kernel.initrd)"
    args=
    for a in $(cat /proc/cmdline); do case "$a" in drydock.kexec=*|drydock.try=*) ;; *) args="$args $a" ;; esac; done
    args="\${args# } drydock.kexec=$OS_DEPLOYMENT\${OS_PENDING:+ drydock.try=\${OS_DEADLINE:-0}}"
    log "deployment $OS_DEPLOYMENT brings kernel $(os_field "$dep" kernel.version): starting it (kexec)"
    if [ -f "$OS/$kfile" ] && [ -f "$OS/$kinit" ] \
        && { kexec -l "$OS/$kfile" --initrd="$OS/$kinit" --command-line="$args" || kexec -s -l "$OS/$kfile" --initrd="$OS/$kinit" --command-line="$args"; }; then
      sync; umount $OS && kexec -e
      log "kexec -e failed"
      mount -o rw "$medium" $OS || rescue "cannot mount $medium read-write again"
    fi
    log "cannot start the kernel of deployment $OS_DEPLOYMENT; booting it with this one ($(uname -r))"
  fi
  n="$(os_field "$dep" layers.length)"
  LOWER= i=0
  while [ "$i" -lt "\${n:-0}" ]; do
    hex="$(os_field "$dep" layers.$i)"; hex="\${hex#sha256:}"
    mkdir -p $R/layers/$i
    # Each file by its name's ending: a disk may hold squashfs and erofs layers side by side.
    until l="$(os_layer $OS "$hex")" && mount -t "\${l##* }" -o loop,ro "\${l% *}" $R/layers/$i; do
      rescue "cannot mount layer $hex of deployment $OS_DEPLOYMENT (\${l:-no os/layers/$hex.squashfs or .erofs})"
    done
    LOWER="$R/layers/$i\${LOWER:+:$LOWER}"
    i=$((i + 1))
  done
  [ -n "$LOWER" ] || rescue "deployment $OS_DEPLOYMENT has no layers"
  LOWER="$OS/os/top:$LOWER"
  # What the system needs to know (the drydock init's watchdog and confirm step).
  { echo "OS_DEPLOYMENT='$OS_DEPLOYMENT'"; echo "OS_PENDING='$OS_PENDING'"; echo "OS_DEADLINE='$OS_DEADLINE'"; echo "OS_KERNEL='$(uname -r)'"; } > $R/os-boot.conf
else
  until mount -t squashfs -o loop,ro $R/medium/drydock/rootfs.squashfs $R/image; do rescue "cannot mount the image squashfs"; done
  until mount -t squashfs -o loop,ro $R/medium/drydock/top.squashfs $R/top; do rescue "cannot mount the top layer squashfs"; done
  LOWER=$R/top:$R/image
fi
# The kernel's whole module tree (modules.squashfs, made at build time with depmod's indexes):
# modprobe works here (NIC drivers, 9p, virtiofs) and in the system at /lib/modules/<version>.
KVER="$(uname -r)"
MODULES=
MODSQ=$MEDIUM/drydock/modules.squashfs
# In a deployment's own kernel, that kernel's module tree (os/kernels/<sha>.modules.squashfs).
if [ -n "$KEXEC_INTO" ] && [ -n "$OS" ]; then km="$(os_field "$dep" kernel.modules)"; [ -n "$km" ] && MODSQ="$OS/$km"; fi
if [ -f $MODSQ ] && mount -t squashfs -o loop,ro $MODSQ $R/modules \
    && mkdir -p /lib/modules/$KVER && mount --bind $R/modules /lib/modules/$KVER; then
  MODULES=1
  load_nic_drivers
else
  log "the medium has no kernel modules for $KVER; only the initramfs modules are loaded"
fi

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
until mount -t overlay overlay -o lowerdir=$LOWER,upperdir=$R/rw/drydock/upper,workdir=$R/rw/drydock/work /newroot; do
  rescue "cannot mount the overlay root"
done
if [ -n "$OS" ]; then
  # Persistent /var, and /etc's changes kept as an upper layer over whatever the deployment has.
  mkdir -p $OS/os/var $OS/os/etc $OS/os/.etc-work /newroot/var
  mount --bind $OS/os/var /newroot/var || log "cannot bind $OS/os/var on /var"
  if [ -d /newroot/etc ] && [ ! -L /newroot/etc ]; then
    mount -t overlay overlay -o lowerdir=/newroot/etc,upperdir=$OS/os/etc,workdir=$OS/os/.etc-work /newroot/etc || log "cannot keep /etc's changes in $OS/os/etc"
  fi
  # The service is the booted deployment's (its image config), not the one the disk was made
  # from: /.drydock/service.conf sources this after its own values.
  if os_service_conf $OS/os/deployments/$OS_DEPLOYMENT.json /newroot "$OS_DEPLOYMENT" > $R/os-service.conf.tmp; then
    mv -f $R/os-service.conf.tmp $R/os-service.conf
  else
    rm -f $R/os-service.conf.tmp; log "cannot read the image config of deployment $OS_DEPLOYMENT; the service is the disk's"
  fi
  # The init is the booted deployment's too: a v2 with its own init (systemd, busybox init) after
  # a CMD-style v1 boots that init, and a rollback the drydock init again (unless drydock.init=
  # was typed at the boot prompt). The top layer of an updatable disk carries both kinds' files.
  if [ "$DRYDOCK_INIT" != "$BOOTCONF_INIT" ]; then
    log "deployment $OS_DEPLOYMENT: init $DRYDOCK_INIT (drydock.init= on the kernel command line)"
  elif os_init $OS/os/deployments/$OS_DEPLOYMENT.json /newroot "\${DRYDOCK_INIT_MODE:-auto}"; then
    if [ "$OS_INIT" = /.drydock/init ] && [ ! -x /newroot/.drydock/init ]; then
      log "deployment $OS_DEPLOYMENT: this disk's top layer has no drydock init; starting $DRYDOCK_INIT"
    else
      DRYDOCK_INIT="$OS_INIT"
      log "deployment $OS_DEPLOYMENT: init $DRYDOCK_INIT ($OS_INIT_REASON)"
    fi
  else
    log "cannot read the image config of deployment $OS_DEPLOYMENT; starting the disk's init $DRYDOCK_INIT"
  fi
fi

# A try of a new deployment under the image's own init (systemd, OpenRC, sysvinit): nothing in
# the system supervises it, so the kernel does. softdog reboots DEADLINE s from now unless the
# confirm step (drydock-os-confirm, /.drydock/os-boot confirm) stops it with the magic close;
# the write below starts it and the close without "V" leaves it running. The drydock init has
# its own watchdog.
if [ -n "$OS_PENDING" ] && [ "\${OS_DEADLINE:-0}" -gt 0 ] && [ "\${DRYDOCK_INIT#/.drydock/}" = "$DRYDOCK_INIT" ]; then
  if modprobe -q softdog soft_margin="$OS_DEADLINE" 2>/dev/null && printf 1 > /dev/watchdog; then
    : > $R/os-softdog
    log "watchdog: the machine reboots in \${OS_DEADLINE}s unless deployment $OS_DEPLOYMENT reaches its default target"
  else
    log "watchdog: no softdog in this kernel; deployment $OS_DEPLOYMENT is not supervised"
  fi
fi

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

# TYPE:SOURCE:TARGET, TYPE label (a labelled disk), 9p or virtiofs (a host folder shared by tag).
for m in $DRYDOCK_MOUNTS; do
  type="\${m%%:*}"; rest="\${m#*:}"; src="\${rest%%:*}"; target="\${rest#*:}"
  case "$type" in
    label)
      if dev="$(find_dev "LABEL=$src" 10)" && mkdir -p "/newroot$target" && mount "$dev" "/newroot$target"; then
        log "mounted LABEL=$src on $target"
      else
        log "mount LABEL=$src on $target failed; continuing without it"
      fi ;;
    9p|virtiofs)
      if [ "$type" = 9p ]; then mods="9pnet_virtio 9p"; opts="-o trans=virtio,version=9p2000.L,msize=262144"; else mods=virtiofs; opts=; fi
      if ! modprobe -q -a $mods 2>/dev/null && ! grep -qw "$type" /proc/filesystems; then
        log "$type share $src: this kernel has no $type support; continuing without $target"
      elif mkdir -p "/newroot$target" && mount -t $type $opts "$src" "/newroot$target" 2>/dev/null; then
        log "mounted $type share $src on $target"
      else
        log "$type share $src not found (no $type device with that tag); continuing without $target"
      fi ;;
  esac
done

# /lib/modules/<version> in the system, resolved inside it (merged-/usr: /lib -> usr/lib).
if [ -n "$MODULES" ]; then
  moddir="$(chroot /newroot /.drydock/busybox sh -c "/.drydock/busybox mkdir -p /lib/modules/$KVER && /.drydock/busybox readlink -f /lib/modules/$KVER" 2>/dev/null)"
  if [ -n "$moddir" ] && mount --bind $R/modules "/newroot$moddir"; then :; else log "cannot mount the kernel modules on /lib/modules/$KVER"; fi
  umount /lib/modules/$KVER
fi

# busybox init runs only /etc/init.d/rcS: the startup script (an updatable disk's top layer has
# its call in /.drydock/startup.rc) and the confirm step go at the end of the booted deployment's
# own rcS (systemd, OpenRC and sysvinit get files of their own). The copy lives in /run and is
# bind-mounted over it: written into /etc, it would land in the machine's persistent /etc upper
# dir (os/etc) and hide every later deployment's rcS as a "machine change".
if [ -n "$OS" ] && [ "$DRYDOCK_INIT" != /.drydock/init ] && [ -f /newroot/etc/init.d/rcS ] && [ ! -d /newroot/etc/rc2.d ] \
    && [ ! -d /newroot/etc/runlevels ] && [ ! -e /newroot/lib/systemd/systemd ] && [ ! -e /newroot/usr/lib/systemd/systemd ] \
    && ! grep -q -e drydock-os-confirm -e /.drydock/startup /newroot/etc/init.d/rcS \
    && { [ -x /newroot/etc/init.d/drydock-os-confirm ] || [ -f /newroot/.drydock/startup.rc ]; }; then
  if { cat /newroot/etc/init.d/rcS; echo
       [ -f /newroot/.drydock/startup.rc ] && cat /newroot/.drydock/startup.rc
       [ -x /newroot/etc/init.d/drydock-os-confirm ] && echo '/etc/init.d/drydock-os-confirm start'; :; } > $R/os-rcS && chmod 755 $R/os-rcS \
      && mount --bind $R/os-rcS /newroot/etc/init.d/rcS; then :; else log "cannot add the startup script and confirm step to /etc/init.d/rcS"; fi
fi
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
  /**
   * Updatable disks: the file the initramfs writes with the booted deployment's service
   * (os_service_conf, src/boot/osstate.ts), sourced last so it replaces argv, env, user, workdir.
   */
  deploymentConf?: string;
  /** "K=V" the disk adds to the env (hostname, proxy): kept under a deployment's own env. */
  diskEnv?: string[];
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
  if (spec.deploymentConf) {
    // An updatable disk: the booted deployment's image decides the command, env, user and
    // workdir; the disk's own additions to the env (hostname, proxy) are kept for it here.
    for (const e of spec.diskEnv ?? []) {
      const i = e.indexOf('=');
      const k = e.slice(0, i);
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k)) continue;
      lines.push(`SVC_DISK_ENV_${k}=${shQuote(e.slice(i + 1))}`, `SVC_DISK_ENV_NAMES="$SVC_DISK_ENV_NAMES ${k}"`);
    }
    lines.push(`[ -f ${spec.deploymentConf} ] && . ${spec.deploymentConf}`);
  }
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
mkdir -p /sys/fs/cgroup && mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup 2>/dev/null
ip link set lo up 2>/dev/null
[ -s /etc/hostname ] && hostname "$(head -n1 /etc/hostname)"
. /.drydock/service.conf
${LOAD_NIC_DRIVERS}
[ -d "/lib/modules/$(uname -r)" ] && load_nic_drivers
/.drydock/network-up
[ -x /.drydock/sshd-up ] && /.drydock/sshd-up

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
# Updatable disks: a pending deployment must reach "service started" in time, or it is rebooted.
[ -x /.drydock/os-boot ] && /.drydock/os-boot watch &

if [ -n "$HAS_STARTUP" ]; then
  say "running the startup script"
  /.drydock/run-service startup < /dev/null 2>&1 | tee -a /var/log/drydock-startup.log > /dev/console
fi

# Containers at boot (--service), after the network and the startup script.
if [ -x /.drydock/drydock-service ]; then
  touch /etc/hosts /etc/resolv.conf; [ -s /etc/hostname ] || hostname > /etc/hostname
  for d in /var/lib/drydock/services/*; do
    [ -f "$d/config.json" ] && /.drydock/drydock-service start "\${d##*/}" > /dev/null
  done
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
  # "started" once it has run for a second; one that cannot even be executed is "failed".
  ( sleep 1; kill -0 $svc 2>/dev/null && say "service started (pid $svc)" && [ -x /.drydock/os-boot ] && /.drydock/os-boot confirm ) &
  wait $svc
  rc=$?
  svc=
  ran=$(( $(cut -d. -f1 /proc/uptime) - started ))
  if [ $ran -ge 30 ]; then delay=1; fi
  # The exec itself failed (no such command, a missing dynamic loader, not executable) when
  # run-service's shell says so as the last thing logged: the service never ran.
  failed=
  case "$rc" in 126|127)
    if [ -n "$SVC_CONSOLE" ]; then [ $ran -le 1 ] && failed=1
    else usleep 200000; tail -n 1 $LOG | grep -q '^/.drydock/run-service: exec: ' && failed=1; fi ;;
  esac
  if [ -n "$failed" ]; then
    say "service failed to start (status $rc: $( [ $rc = 127 ] && echo 'command or its loader not found' || echo 'not executable')); retrying in \${delay}s"
  else
    say "service exited with status $rc after \${ran}s; restarting in \${delay}s"
  fi
  sleep $delay & wait $!
  delay=$((delay * 2)); [ $delay -gt 30 ] && delay=30
done
`;

/** Shell functions shared by network-up and the udhcpc script: /run/drydock/network, resolv.conf. */
export const NETLIB = `# drydock network helpers (sourced)
export PATH=/.drydock/bin
R=/run/drydock
say() { echo "drydock: $*" > /dev/console; }
# record IFACE TEXT: one line per NIC in /run/drydock/network.
record() {
  mkdir -p $R
  { grep -v "^$1 " $R/network 2>/dev/null; echo "$*"; } > $R/network.tmp
  mv $R/network.tmp $R/network
}
# set_dns IFACE "SERVERS" [DOMAIN]: /etc/resolv.conf from every NIC's servers.
set_dns() {
  mkdir -p $R/resolv
  { [ -n "$3" ] && echo "search $3"; for s in $2; do echo "nameserver $s"; done; } > $R/resolv/$1
  { echo "# written by drydock from the network configuration"; cat $R/resolv/*; } > /etc/resolv.conf.drydock
  mv /etc/resolv.conf.drydock /etc/resolv.conf
}
`;

/** busybox udhcpc's event script: applies the lease (address, default route, DNS) and reports it. */
export const UDHCPC_SCRIPT = `#!/.drydock/busybox sh
. /.drydock/netlib.sh
[ -n "$mask" ] || eval "$(ipcalc -p "$ip" "\${subnet:-255.255.255.0}")" && mask="\${mask:-$PREFIX}"
gw="\${router%% *}"
case "$1" in
  deconfig)
    ip link set "$interface" up
    ip -4 addr flush dev "$interface" ;;
  bound|renew)
    if ! ip -4 addr show dev "$interface" | grep -q "inet $ip/$mask "; then
      ip -4 addr flush dev "$interface"
      ip addr add "$ip/$mask" dev "$interface"
    fi
    [ -n "$gw" ] && ip route replace default via "$gw" dev "$interface"
    [ -n "$dns" ] && set_dns "$interface" "$dns" "$domain"
    record "$interface" "$ip/$mask dhcp gateway=\${gw:-none} dns=$(echo $dns | tr ' ' ,)"
    [ "$1" = bound ] && say "network: $interface $ip/$mask (dhcp), gateway \${gw:-none}, dns \${dns:-none}" ;;
  leasefail)
    grep -q "^$interface " $R/network 2>/dev/null || record "$interface" "none dhcp no-lease-yet" ;;
esac
exit 0
`;

/**
 * /.drydock/network-up: every wired NIC (a device behind it, Ethernet, not wireless) gets DHCP,
 * unless /.drydock/network.conf (--network) or the kernel's ip= argument says static or none.
 * ip=ADDR::GW:MASK:HOST:IFACE:off[:DNS0[:DNS1]] is the kernel's own format (nfsroot.rst).
 */
export const NETWORK_UP = `#!/.drydock/busybox sh
. /.drydock/netlib.sh
NET_MODE=dhcp NET_ADDR= NET_PREFIX= NET_GW= NET_DNS= NET_IFACE=
[ -f /.drydock/network.conf ] && . /.drydock/network.conf
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    ip=dhcp|ip=on|ip=any|ip=both) NET_MODE=dhcp ;;
    ip=off|ip=none) NET_MODE=none ;;
    ip=*)
      old="$IFS"; IFS=:; set -- \${arg#ip=}; IFS="$old"
      if [ -n "$1" ]; then
        NET_MODE=static NET_ADDR="$1" NET_GW="$3" NET_IFACE="$6" NET_DNS="$8 $9"
        NET_PREFIX=24; [ -n "$4" ] && eval "$(ipcalc -p "$1" "$4")" && NET_PREFIX="$PREFIX"
        [ -n "$5" ] && hostname "$5"
      else
        case "$7" in off|none) NET_MODE=none ;; *) NET_MODE=dhcp NET_IFACE="$6" ;; esac
      fi ;;
  esac
done
mkdir -p $R; : > $R/network
nics=
for d in /sys/class/net/*; do
  n="\${d##*/}"
  [ "$n" = lo ] || [ ! -e "$d/device" ] || [ -d "$d/wireless" ] || [ "$(cat "$d/type")" != 1 ] && continue
  [ -z "$NET_IFACE" ] || [ "$NET_IFACE" = "$n" ] || [ "$NET_MODE" != dhcp ] || continue
  nics="$nics $n"
done
if [ -z "$nics" ]; then say "network: no wired network interface found"; exit 0; fi
case "$NET_MODE" in
  none)
    say "network: none (interfaces left down:$nics)"
    for n in $nics; do record "$n" "none"; done ;;
  static)
    n="\${NET_IFACE:-\${nics# }}"; n="\${n%% *}"
    ip link set "$n" up
    ip addr add "$NET_ADDR/$NET_PREFIX" dev "$n"
    [ -n "$NET_GW" ] && ip route replace default via "$NET_GW" dev "$n"
    dns="$(echo $NET_DNS)"
    [ -n "$dns" ] && set_dns "$n" "$dns"
    record "$n" "$NET_ADDR/$NET_PREFIX static gateway=\${NET_GW:-none} dns=$(echo $dns | tr ' ' ,)"
    say "network: $n $NET_ADDR/$NET_PREFIX (static), gateway \${NET_GW:-none}, dns \${dns:-none}" ;;
  *)
    mkdir -p /var/log
    for n in $nics; do
      # Foreground until the first lease (then it stays as a daemon and renews), else background.
      udhcpc -i "$n" -s /.drydock/udhcpc.script -t 5 -T 1 -A 10 -b -p /run/udhcpc.$n.pid >> /var/log/drydock-network.log 2>&1 &
    done
    wait
    for n in $nics; do grep -q "^$n .* dhcp gateway" $R/network || say "network: $n has no DHCP lease yet; udhcpc keeps trying"; done ;;
esac
exit 0
`;

/**
 * /.drydock/os-boot on updatable disks, run by the drydock init. \`watch\`: on a try of a pending
 * deployment, reboot when it has not reached "service started" by its deadline (the next boot
 * tries again or falls back). \`confirm\`: the service started; \`drydock os confirm\` (when a
 * Node runtime is on the medium) or the same state.json rewrite in sh makes it the default.
 */
export const OS_BOOT = `#!/.drydock/busybox sh
export PATH=/.drydock/bin:$PATH
say() { echo "drydock: $*" > /dev/console; }
log() { say "$*"; }
R=/run/drydock
[ -f $R/os-boot.conf ] || exit 0
. $R/os-boot.conf
OS_AWK=/.drydock/osstate.awk
. /.drydock/os.sh
case "$1" in
  watch)
    [ -n "$OS_PENDING" ] && [ "\${OS_DEADLINE:-0}" -gt 0 ] || exit 0
    up=$(cut -d. -f1 /proc/uptime)
    [ "$up" -lt "$OS_DEADLINE" ] && sleep $((OS_DEADLINE - up))
    [ -e $R/os-confirmed ] && exit 0
    say "deployment $OS_DEPLOYMENT did not reach service started within \${OS_DEADLINE}s; rebooting"
    reboot ;;
  confirm)
    [ -n "$OS_PENDING" ] && [ ! -e $R/os-confirmed ] || exit 0
    # The switch first, in sh (a second under TCG; node's start can take longer than a deadline).
    os_confirm $R/os || { say "deployment $OS_DEPLOYMENT reached service started but cannot be confirmed"; exit 1; }
    # Only now: the watchdog reboots unless this exists, and scripts may wait for it.
    : > $R/os-confirmed
    # The image's own init: the initramfs armed the kernel's softdog; the magic close stops it.
    if [ -e $R/os-softdog ]; then printf V > /dev/watchdog && rm -f $R/os-softdog || say "cannot stop the softdog watchdog: the machine reboots in \${OS_DEADLINE}s"; fi
    say "deployment $OS_DEPLOYMENT reached service started; it is now the default"
    # Then the cleanup (deployments beyond default and rollback, layers and kernels nothing names).
    if [ -x /.drydock/drydock/bin/drydock ]; then /.drydock/drydock/bin/drydock os confirm --root $R/os > /dev/null 2>&1 || say "drydock os confirm (cleanup) failed"; fi
    exit 0 ;;

esac
`;
