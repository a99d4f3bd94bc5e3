// What every boot medium carries, built once into a staging dir: the kernel, the initramfs,
// the image as rootfs.squashfs and the baked top layer as top.squashfs. The ISO and disk
// builders only differ in how they lay these out and which boot loader loads them.
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, promises as fsp } from 'node:fs';
import path from 'node:path';
import type { ContainerConfig } from '../image/types.js';
import { DEFAULT_BUSYBOX } from '../mkimage/busybox-rootfs.js';
import { UserError } from '../util/errors.js';
import type { BootOptions, SquashfsCompression } from './config.js';
import { entriesFromDir, writeGzipCpio, type CpioEntry } from './cpio.js';
import { runTool } from './exec.js';
import { resolveKernel, type KernelSource } from './kernel.js';
import { BOOT_MODULES, buildModulesTree, EXTRA_MODULES, installModules, loadModuleIndex, REQUIRED_MODULES, resolveModules } from './modules.js';
import { INITRAMFS_INIT } from './scripts.js';
import { OS_FILES, OS_LIB, OS_STATE_AWK } from './osstate.js';
import { buildTopLayer, type InitChoice } from './toplayer.js';
import { sharedLibraries } from './sshd.js';

export interface BootSource {
  /** The image's flattened root filesystem. */
  rootfs: string;
  config: ContainerConfig;
  /** Stable identity of the image (manifest digest); seeds the boot label. */
  id: string;
  /** Bundles of the --service containers (dir/NAME/{rootfs,config.json,service.conf}), prepared from the store. */
  servicesDir?: string;
  /**
   * An updatable disk: no rootfs.squashfs (the layers are converted one by one) and the top
   * layer stays a directory (os/top), left at BootArtifacts.topDir.
   */
  updatable?: boolean;
}

export interface BootArtifacts {
  dir: string;
  vmlinuz: string;
  initrd: string;
  /** Absent on an updatable disk (one squashfs per layer instead). */
  rootfsSquashfs?: string;
  topSquashfs?: string;
  /** An updatable disk's top layer directory (becomes os/top). */
  topDir?: string;
  /** The kernel's whole module tree, mounted at /lib/modules/<version> in the system. */
  modulesSquashfs: string;
  /** Filesystem label of the boot medium the initramfs looks for. */
  label: string;
  kernel: KernelSource;
  init: InitChoice;
  modules: string[];
  /** The kernel command line the boot loader passes. */
  cmdline: string;
  /** /etc/drydock/boot.conf of the initramfs (an updatable disk keeps a copy as os/boot.conf). */
  bootConf: string;
  /** sha256 hex of the kernel file (an updatable disk's initramfs compares deployments' kernels with it). */
  kernelSha256: string;
}

/** SOURCE_DATE_EPOCH (reproducible builds), if set and valid. */
export function sourceDateEpoch(): number | undefined {
  const v = process.env.SOURCE_DATE_EPOCH;
  return v && /^\d+$/.test(v) ? Number(v) : undefined;
}

/**
 * "DD" + 8 hex digits from the image and options: fits ISO9660 (32), FAT (11) and ext4 (16)
 * labels, is stable for reproducible builds, and differs between images so two drydock media
 * attached to one machine do not confuse the initramfs.
 */
export function bootLabel(source: BootSource, opts: BootOptions): string {
  const h = createHash('sha256').update(source.id).update(JSON.stringify({ ...opts, size: undefined, format: undefined, firmware: undefined })).digest('hex');
  return `DD${h.slice(0, 8).toUpperCase()}`;
}

export async function mksquashfs(dir: string, out: string, compression: SquashfsCompression, opts: { allRoot?: boolean } = {}): Promise<void> {
  const args = [dir, out, '-noappend', '-no-progress', '-quiet', '-comp', compression, '-b', '1M'];
  // zstd level 3: mksquashfs's default 15 is ~18x slower for ~7% smaller output.
  if (compression === 'zstd') args.push('-Xcompression-level', '3');
  if (compression === 'xz') args.push('-Xbcj', 'x86');
  if (opts.allRoot) args.push('-all-root');
  // SOURCE_DATE_EPOCH, when set, is read by mksquashfs itself (file and filesystem times) and
  // it refuses -mkfs-time/-all-time beside it.
  await runTool('mksquashfs', args);
}

export function kernelCmdline(label: string, init: InitChoice, opts: BootOptions): string {
  // The last console= becomes /dev/console: serial, so headless VMs and CI see the boot.
  return ['console=tty0', 'console=ttyS0,115200', `drydock.label=${label}`, `drydock.init=${init.path}`, opts.kernelArgs ?? '']
    .filter(Boolean).join(' ');
}

/** sha256 hex of a file. */
export async function sha256File(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(file)) h.update(chunk as Buffer);
  return h.digest('hex');
}

/** Where kexec-tools installs kexec (Debian: /sbin/kexec). */
const KEXEC_PATHS = ['/sbin/kexec', '/usr/sbin/kexec'];

/**
 * kexec with its shared libraries and the dynamic loader, at the paths ldd names: an updatable
 * disk's initramfs starts a deployment's own kernel with it (docs/boot.md, "Kernel upgrades").
 */
async function kexecEntries(): Promise<CpioEntry[]> {
  const kexec = KEXEC_PATHS.find((p) => existsSync(p));
  if (!kexec) throw new UserError('an updatable disk needs kexec (its initramfs starts a deployment\'s own kernel with it): apt-get install kexec-tools');
  const entries: CpioEntry[] = [];
  const dirs = new Set<string>();
  const add = async (name: string, source: string) => {
    for (let d = path.posix.dirname(name); d !== '.' && !dirs.has(d); d = path.posix.dirname(d)) dirs.add(d);
    entries.push({ type: 'file', name, mode: 0o755, source, size: (await fsp.stat(source)).size });
  };
  await add('sbin/kexec', kexec);
  for (const lib of await sharedLibraries(kexec)) await add(lib.slice(1), await fsp.realpath(lib));
  return [...[...dirs].sort().map((name): CpioEntry => ({ type: 'dir', name })), ...entries];
}

/**
 * The drydock initramfs for `kernel`: busybox-static, /init, boot.conf and that kernel's boot
 * modules. `kexec` adds kexec-tools (the first stage of an updatable disk). Also what `drydock os
 * upgrade` builds for an image that brings its own kernel (src/os/kernel.ts).
 */
export async function buildInitramfs(target: string, kernel: KernelSource, work: string, bootConf: string, busybox: string,
  opts: { kexec?: boolean; required?: string[] } = {}): Promise<string[]> {
  const index = await loadModuleIndex(kernel.modulesDir);
  if (opts.required?.includes('erofs') && !index.modules.has('erofs') && !index.builtin.has('erofs')) {
    throw new UserError(`the kernel in ${index.dir} has no erofs (neither a module nor built in), which erofs layer files need; pass --layer-format squashfs`);
  }
  const core = resolveModules(index, BOOT_MODULES, opts.required);
  const coreNames = new Set(core.map((m) => m.name));
  const extra = resolveModules(index, EXTRA_MODULES, []).filter((m) => !coreNames.has(m.name));
  const modRoot = path.join(work, 'initramfs-modules');
  const list = await installModules(index, core, modRoot);
  const extraList = await installModules(index, extra, modRoot);
  const entries: CpioEntry[] = [
    ...['bin', 'sbin', 'usr', 'usr/bin', 'usr/sbin', 'proc', 'sys', 'dev', 'run', 'newroot', 'etc', 'etc/drydock', 'lib', 'tmp']
      .map((name): CpioEntry => ({ type: 'dir', name })),
    // The kernel opens /dev/console before devtmpfs is mounted; without it /init has no output.
    { type: 'char', name: 'dev/console', mode: 0o600, major: 5, minor: 1 },
    { type: 'char', name: 'dev/null', mode: 0o666, major: 1, minor: 3 },
    { type: 'file', name: 'bin/busybox', mode: 0o755, source: busybox, size: (await fsp.stat(busybox)).size },
    { type: 'data', name: 'init', mode: 0o755, data: Buffer.from(INITRAMFS_INIT) },
    { type: 'data', name: 'etc/drydock/boot.conf', data: Buffer.from(bootConf) },
    { type: 'data', name: 'etc/drydock/modules', data: Buffer.from(list.map((f) => `${f}\n`).join('')) },
    { type: 'data', name: 'etc/drydock/modules.extra', data: Buffer.from(extraList.map((f) => `${f}\n`).join('')) },
    { type: 'data', name: `etc/drydock/${OS_FILES.awk}`, data: Buffer.from(OS_STATE_AWK) },
    { type: 'data', name: `etc/drydock/${OS_FILES.lib}`, data: Buffer.from(OS_LIB) },
    ...(await entriesFromDir(modRoot)),
    ...(opts.kexec ? (await kexecEntries()).filter((e) => e.type !== 'dir' || !['sbin', 'lib', 'usr', 'usr/sbin'].includes(e.name)) : []),
  ];
  await writeGzipCpio(target, entries, sourceDateEpoch() ?? 0);
  await fsp.rm(modRoot, { recursive: true, force: true });
  return [...list, ...extraList];
}

/** boot.conf with DRYDOCK_KERNEL_SHA set to `sha` (a deployment's initramfs names its own kernel). */
export function bootConfForKernel(bootConf: string, sha: string): string {
  const lines = bootConf.split('\n').filter((l) => l && !l.startsWith('DRYDOCK_KERNEL_SHA='));
  return [...lines, `DRYDOCK_KERNEL_SHA='${sha}'`].join('\n') + '\n';
}

/** Builds kernel, initramfs and both squashfs images into `dir` (which must exist and be empty). */
export async function buildArtifacts(source: BootSource, opts: BootOptions, dir: string,
  tools: { busybox?: string; zoneinfo?: string } = {}): Promise<BootArtifacts> {
  const busybox = tools.busybox ?? DEFAULT_BUSYBOX;
  const rootfsStat = await fsp.stat(source.rootfs).catch(() => undefined);
  if (!rootfsStat?.isDirectory()) throw new UserError(`rootfs ${source.rootfs} is not a directory`);
  const kernel = await resolveKernel(source.rootfs, opts);
  const label = bootLabel(source, opts);
  const kernelSha256 = await sha256File(kernel.vmlinuz);

  const topDir = path.join(dir, 'top');
  const top = await buildTopLayer(topDir, source.rootfs, source.config, opts, { ...tools, servicesDir: source.servicesDir });
  let bootConf = [
    '# generated by drydock',
    `DRYDOCK_LABEL='${label}'`,
    `DRYDOCK_INIT='${top.init.path}'`,
    // An updatable disk's initramfs picks each deployment's init itself (os_init) in this mode.
    `DRYDOCK_INIT_MODE='${opts.init}'`,
    `DRYDOCK_MOUNTS='${opts.mounts.map((m) => `${m.type}:${m.label}:${m.path}`).join(' ')}'`,
  ].join('\n') + '\n';
  // An updatable disk's initramfs boots a deployment that brings another kernel through kexec.
  if (source.updatable) bootConf = bootConfForKernel(bootConf, kernelSha256);

  const media = path.join(dir, 'media');
  await fsp.mkdir(path.join(media, 'boot'), { recursive: true });
  await fsp.mkdir(path.join(media, 'drydock'), { recursive: true });
  const vmlinuz = path.join(media, 'boot/vmlinuz');
  const initrd = path.join(media, 'boot/initrd.img');
  const rootfsSquashfs = source.updatable ? undefined : path.join(media, 'drydock/rootfs.squashfs');
  const topSquashfs = source.updatable ? undefined : path.join(media, 'drydock/top.squashfs');
  const modulesSquashfs = path.join(media, 'drydock/modules.squashfs');
  await fsp.copyFile(kernel.vmlinuz, vmlinuz);
  // The image squashfs is the slow part; build the rest while it runs.
  // allSettled: on a failure the others must finish before the work dir is removed under them.
  const settled = await Promise.allSettled([
    // An updatable disk of erofs layers cannot boot a kernel without erofs: refused here, not at boot.
    buildInitramfs(initrd, kernel, dir, bootConf, busybox, {
      kexec: source.updatable, required: source.updatable && opts.layerFormat === 'erofs' ? [...REQUIRED_MODULES, 'erofs'] : REQUIRED_MODULES,
    }),
    rootfsSquashfs && mksquashfs(source.rootfs, rootfsSquashfs, opts.compression),
    topSquashfs && mksquashfs(topDir, topSquashfs, opts.compression),
    buildModulesTree(kernel.modulesDir, path.join(dir, 'modules-tree')).then((tree) => mksquashfs(tree, modulesSquashfs, opts.compression, { allRoot: true })),
  ]);
  for (const r of settled) if (r.status === 'rejected') throw r.reason;
  const modules = (settled[0] as PromiseFulfilledResult<string[]>).value;
  if (!source.updatable) await fsp.rm(topDir, { recursive: true, force: true });
  await fsp.rm(path.join(dir, 'modules-tree'), { recursive: true, force: true });
  return {
    dir: media, vmlinuz, initrd, rootfsSquashfs, topSquashfs, topDir: source.updatable ? topDir : undefined, modulesSquashfs, label, kernel, init: top.init, modules,
    cmdline: kernelCmdline(label, top.init, opts), bootConf, kernelSha256,
  };
}
