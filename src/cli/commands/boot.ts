// `drydock iso` and `drydock disk`: boot an image as a machine. Thin: flags, the YAML config
// merge and output here; the work in src/boot (imported lazily).
import { Command, Option } from 'commander';
import { collect, formatSize, printJson } from '../output.js';
import type { BootBuildResult } from '../../boot/index.js';
import { DEFAULT_LAYER_FORMAT } from '../../os/layout.js';

interface BootFlags {
  output: string;
  config?: string;
  quiet?: boolean;
  format?: string;
  json?: boolean;
  [k: string]: unknown;
}

/** commander camelCase attribute → the shared kebab-case key of flags and YAML. */
const FLAG_KEYS: Record<string, string> = {
  timezone: 'timezone', proxy: 'proxy', noProxy: 'no-proxy', motd: 'motd', startupScript: 'startup-script',
  hostname: 'hostname', sshKey: 'ssh-key', kernelArgs: 'kernel-args', mount: 'mount', network: 'network', service: 'service', topLayer: 'top-layer',
  init: 'init', kernel: 'kernel', modules: 'modules', compression: 'compression', size: 'size', firmware: 'firmware',
  updatesFrom: 'updates-from', insecureRegistry: 'insecure-registry', authfile: 'authfile', bootTries: 'boot-tries', bootDeadline: 'boot-deadline',
  layerFormat: 'layer-format',
};

function addBootOptions(cmd: Command): Command {
  // "--no-proxy" would be read by commander as the negation of --proxy; it is a value here.
  const noProxy = new Option('--no-proxy <hosts>', 'comma-separated hosts that bypass the proxy (no_proxy)');
  noProxy.negate = false;
  return cmd
    .requiredOption('-o, --output <file>', 'file to write')
    .option('--config <file>', 'YAML file with the same keys as these flags (flags win; ssh-key and mount add up)')
    .option('--kernel <vmlinuz|dir>', 'kernel to boot when the image has none (a file, or a dir with vmlinuz + modules/); default $DRYDOCK_KERNEL')
    .option('--modules <dir>', "the kernel's lib/modules/<version> tree")
    .option('--timezone <zone>', 'IANA timezone for /etc/localtime and /etc/timezone (e.g. Asia/Shanghai)')
    .option('--proxy <url>', 'HTTP(S) proxy, written to /etc/profile.d/proxy.sh and /etc/environment and given to the service')
    .addOption(noProxy)
    .option('--motd <text|file>', 'message of the day (/etc/motd, shown on the console at boot)')
    .option('--startup-script <file>', 'script run as root at every boot, before the service')
    .option('--hostname <name>', 'host name (/etc/hostname, /etc/hosts)')
    .option('--ssh-key <key|file>', "public key for root's authorized_keys (repeatable)", collect)
    .option('--kernel-args <args>', 'extra kernel command line, e.g. "persist=LABEL=data toplayer=LABEL=machine toplayer_path=/etc-files"')
    .option('--mount <LABEL:/path>', 'at boot, mount the filesystem with this label, or a host folder shared as 9p:TAG:/path or virtiofs:TAG:/path (repeatable)', collect)
    .option('--service <IMAGE[=NAME]>', 'run IMAGE from the local store as a container (runc, host network, restart always) in the booted machine; repeatable', collect)
    .option('--network <mode>', 'wired NICs at boot: dhcp (default, every NIC), none, or static=ADDR/PREFIX,gw=GW,dns=DNS; the kernel argument ip= overrides it')
    .option('--top-layer <dir>', 'directory copied over the image (per-machine files: fstab, passwd, xorg.conf, …)')
    .addOption(new Option('--init <mode>', "what runs as PID 1: the image's own init, or drydock's service supervisor").choices(['auto', 'image', 'drydock']))
    .addOption(new Option('--compression <alg>', 'squashfs compression (default zstd)').choices(['zstd', 'xz', 'gzip', 'lz4']))
    .option('-q, --quiet', 'print only the output path')
    .option('--json', 'print the result as JSON');
}

function report(r: BootBuildResult, flags: BootFlags): void {
  const loader = r.kind === 'iso' ? 'isolinux' : 'syslinux';
  if (flags.json || flags.format === 'json') { printJson(r); return; }
  if (flags.quiet) { process.stdout.write(`${r.output}\n`); return; }
  process.stdout.write([
    `Wrote ${r.output} (${formatSize(r.size)}) in ${r.seconds.toFixed(1)}s`,
    `Kernel: ${r.kernelVersion ?? 'unknown'} (${r.kernelOrigin === 'image' ? 'from the image' : 'from --kernel'}), ${r.modules} modules in the initramfs`,
    `Init: ${r.init.path} (${r.init.reason})`,
    `Boot label: ${r.label}`,
    `Firmware: ${r.firmware === 'both' ? `BIOS (${loader}) and UEFI (GRUB)` : r.firmware === 'uefi' ? 'UEFI (GRUB)' : `BIOS (${loader})`}`,
    `Kernel command line: ${r.cmdline}`,
    ...(r.updates ? [`Updates from: ${r.updates.ref} (deployment ${r.updates.deployment.id}, ${r.updates.deployment.layers.length} layers; drydock os upgrade in the machine)`] : []),
  ].join('\n') + '\n');
}

async function action(kind: 'iso' | 'disk', image: string, flags: BootFlags): Promise<void> {
  const boot = await import('../../boot/index.js');
  const { ContentStore } = await import('../../store/index.js');
  const raw: Record<string, unknown> = {};
  for (const [attr, key] of Object.entries(FLAG_KEYS)) if (flags[attr] !== undefined) raw[key] = flags[attr];
  if (kind === 'disk') {
    // --format is the disk format here (as in the issue and qemu-img); a .qcow2 name implies it.
    if (flags.format !== undefined) raw.format = flags.format;
    else if (/\.qcow2$/i.test(flags.output)) raw.format = 'qcow2';
  }
  const fromFile = flags.config ? await boot.loadBootConfigFile(flags.config) : {};
  const opts = await boot.validateBootOptions(boot.mergeRaw(fromFile, raw));
  const store = await ContentStore.open();
  const progress = flags.quiet || flags.json || flags.format === 'json' ? undefined : (s: string) => process.stderr.write(`${s}\n`);
  progress?.(`Building ${kind === 'iso' ? 'ISO' : 'disk image'} from ${image}…`);
  report(await boot.buildFromStore(store, image, kind, opts, flags.output), flags);
}

export function register(program: Command, only?: string): void {
  // Only the command being run (its word, from main.ts), or every command (help, unknown words).
  const wants = (...names: string[]) => only === undefined || names.includes(only);
  if (wants('iso')) addBootOptions(
    program.command('iso')
      .argument('<image>', 'image name or ID in the local store')
      .description('Make a bootable hybrid ISO (BIOS and UEFI, CD or USB) that boots the image as a machine')
      .addOption(new Option('--firmware <firmware>', 'firmware the ISO boots with: bios (isolinux), uefi (GRUB) or both (default both)').choices(['bios', 'uefi', 'both']))
      .addOption(new Option('--format <format>', 'print the result as JSON (same as --json)').choices(['json'])),
  )
    .addHelpText('after', `
Boot flow: isolinux (BIOS) or GRUB (UEFI, EFI/BOOT/BOOTX64.EFI) loads the kernel and a drydock initramfs, which mounts the image (squashfs,
read-only) under a tmpfs writable layer with overlayfs, applies the top layer, and switches root.
Images with their own init (systemd, OpenRC) boot it; container images run their ENTRYPOINT/CMD
as a supervised service (restarted on exit; log in /var/log/drydock-service.log).

Kernel arguments understood at boot:
  persist=LABEL=x                      use that ext4/btrfs filesystem as the writable layer
  toplayer=LABEL=x toplayer_path=dir   copy dir from that disk over the system at every boot
  ip=ADDR::GW:MASK:HOST:IFACE:off[:DNS0]   static network config (the kernel's format; ip=dhcp, ip=off)

Examples:
  drydock iso busybox -o busybox.iso --kernel test/.cache/kernel
  drydock iso myapp:1.0 -o myapp.iso --timezone Asia/Shanghai --proxy http://proxy:3128 \\
      --no-proxy localhost,10.0.0.0/8 --motd 'Welcome to myapp' --startup-script start.sh
  drydock iso desktop:latest -o desk.iso --kernel-args 'toplayer=LABEL=machine toplayer_path=/files'
  drydock iso myapp:1.0 -o myapp.iso --config boot.yml
  qemu-system-x86_64 -m 512 -nographic -cdrom myapp.iso
  qemu-system-x86_64 -m 512 -nographic -bios /usr/share/ovmf/OVMF.fd -cdrom myapp.iso   # UEFI
  drydock iso myapp:1.0 -o myapp.iso --firmware bios      # BIOS only (no grub-efi-amd64-bin needed)`)
    .action((image: string, flags: BootFlags) => action('iso', image, flags));

  if (wants('disk')) addBootOptions(
    program.command('disk')
      .argument('<image>', 'image name or ID in the local store')
      .description('Make a bootable partitioned disk image (BIOS: MBR + syslinux; UEFI: GPT + ESP with GRUB) that boots the image as a machine')
      .addOption(new Option('--firmware <firmware>', 'firmware the disk boots with: bios (MBR, syslinux; the default), uefi (GPT, ESP with GRUB) or both (GPT, ESP with GRUB and syslinux)').choices(['bios', 'uefi', 'both']))
      .option('--size <size>', 'disk size, e.g. 2G (default: just large enough, plus 48 MiB of free space)')
      .addOption(new Option('--format <format>', 'disk image format (default raw; qcow2 when the output ends in .qcow2)').choices(['raw', 'qcow2']))
      .option('--updates-from [ref]', 'make an updatable disk: one file per layer (--layer-format), and the machine pulls updates of REF (as it reaches the registry, e.g. 10.0.2.2:5000/os:stable; default: the image\'s own name) with drydock os upgrade')
      .option('--insecure-registry <host:port>', 'registry the machine reaches over plain HTTP (repeatable; updatable disks)', collect)
      .option('--authfile <file>', 'registry credentials (docker config.json) the machine pulls with (updatable disks)')
      .option('--boot-tries <n>', 'boots a new deployment gets to reach "service started" before it is abandoned (default 3)')
      .option('--boot-deadline <seconds>', 'seconds after boot by which a new deployment must reach "service started", else the machine reboots (default 300; 0: no limit)')
      .addOption(new Option('--layer-format <format>', `filesystem of the layer files of an updatable disk; drydock os upgrade converts new layers the same way (default ${DEFAULT_LAYER_FORMAT})`).choices(['squashfs', 'erofs'])),
  )
    .addHelpText('after', `
Layout: partition 1 is FAT (syslinux, kernel, initramfs), partition 2 is ext4 holding the
image squashfs; the boot flow and options are those of "drydock iso". With --firmware uefi or
both the table is GPT and partition 1 is the EFI system partition (EFI/BOOT/BOOTX64.EFI).
--json prints the result as JSON (--format is the disk format here).

Examples:
  drydock disk busybox -o busybox.img --kernel test/.cache/kernel
  drydock disk myapp:1.0 -o myapp.qcow2 --format qcow2 --size 2G --hostname app1
  drydock disk myapp:1.0 -o myapp.img --firmware both     # GPT: boots on UEFI and BIOS
  qemu-system-x86_64 -m 512 -nographic -bios /usr/share/ovmf/OVMF.fd -drive file=myapp.img,format=raw
  qemu-system-x86_64 -m 512 -nographic -drive file=myapp.img,format=raw
  dd if=myapp.img of=/dev/sdX bs=4M conv=fsync   # bare metal
  drydock disk 10.0.2.2:5000/os/app:stable -o app.img --updates-from --insecure-registry 10.0.2.2:5000   # updatable`)
    .action((image: string, flags: BootFlags) => action('disk', image, flags));
}
