// A deployment's own kernel (docs/boot.md, "Kernel upgrades"): when the image of a new deployment
// brings /boot/vmlinuz-<version> with /lib/modules/<version>, `drydock os upgrade` writes that
// kernel, the drydock initramfs with its boot modules, and its whole module tree as squashfs to
// os/kernels/<sha>.{vmlinuz,initrd,modules.squashfs}, and the deployment names them. The disk's
// initramfs (the boot partition's, never rewritten) starts them with kexec. Each file appears
// complete (temp, fsync, rename) before the deployment file, which appears before state.json
// names it: a kill at any point boots what booted before.
import { existsSync, promises as fsp } from 'node:fs';
import path from 'node:path';
import { bootConfForKernel, buildInitramfs, mksquashfs, sha256File } from '../boot/artifacts.js';
import { runTool } from '../boot/exec.js';
import { kernelFromRootfs } from '../boot/kernel.js';
import { buildModulesTree, REQUIRED_MODULES } from '../boot/modules.js';
import { DEFAULT_BUSYBOX } from '../mkimage/busybox-rootfs.js';
import { createOwnedTempDir, sweepOrphans } from '../runtime/orphans.js';
import { fsyncDir } from '../util/fs.js';
import { diffHex, type DeploymentKernel, type OsLayout, type OsState } from './layout.js';

export type KernelEvent =
  | { type: 'kernel'; status: 'none' }
  | { type: 'kernel'; status: 'disk' | 'exists' | 'staging' | 'done'; version: string }
  | { type: 'kernel'; status: 'ignored'; version: string; reason: string };

/** The file of a layer whatever its format (.squashfs, .erofs). */
async function layerFile(layout: OsLayout, diffID: string): Promise<string> {
  const hex = diffHex(diffID);
  const name = (await fsp.readdir(layout.layersDir)).find((n) => n.startsWith(`${hex}.`) && !n.endsWith('.tmp'));
  if (!name) throw new Error(`layer ${diffID} has no file in ${layout.layersDir}`);
  return path.join(layout.layersDir, name);
}

/** Writes `target` through `make(tmp)` unless it exists: temp name, fsync, rename. */
async function writeOnce(target: string, make: (tmp: string) => Promise<unknown>): Promise<void> {
  if ((await fsp.stat(target).catch(() => undefined))?.isFile()) return;
  const tmp = path.join(path.dirname(target), `.${path.basename(target)}.${process.pid}.tmp`);
  try {
    await make(tmp);
    const fh = await fsp.open(tmp, 'r+');
    try { await fh.sync(); } finally { await fh.close(); }
    await fsp.rename(tmp, target);
  } catch (e) {
    await fsp.rm(tmp, { force: true });
    throw e;
  }
}

/**
 * Looks for a kernel in the deployment's merged layers (an overlay of the layer files, so a later
 * layer's whiteout hides an earlier kernel) and stages it. Returns undefined when the image has no
 * kernel, or brings the kernel the disk boots anyway (state.diskKernel).
 */
export async function stageKernel(layout: OsLayout, layers: string[], state: OsState,
  emit: (e: KernelEvent) => void = () => {}): Promise<DeploymentKernel | undefined> {
  // The search loop-mounts layer files under an owned scratch dir (owner pid and start time, as a
  // build step's): an upgrade killed with SIGKILL cannot unmount them, so the next upgrade or
  // prune unmounts and removes the dirs whose owner is gone.
  await sweepOrphans(layout.scratchDir);
  const work = createOwnedTempDir(layout.scratchDir, `kernel-${process.pid}-`);
  const mounts: string[] = [];
  let unmounted = true;
  try {
    const lowers: string[] = [];
    for (const [i, diffID] of layers.entries()) {
      const mp = path.join(work, `layer${i}`);
      await fsp.mkdir(mp);
      await runTool('mount', ['-o', 'loop,ro', await layerFile(layout, diffID), mp]);
      mounts.push(mp);
      lowers.unshift(mp);
    }
    let root = lowers[0];
    if (lowers.length > 1) {
      root = path.join(work, 'root');
      await fsp.mkdir(root);
      await runTool('mount', ['-t', 'overlay', 'overlay', '-o', `ro,lowerdir=${lowers.join(':')}`, root]);
      mounts.push(root);
    }
    const found = root ? await kernelFromRootfs(root) : undefined;
    if (!found) { emit({ type: 'kernel', status: 'none' }); return undefined; }
    const version = found.version ?? 'unknown';
    const sha = await sha256File(found.vmlinuz);
    if (state.diskKernel?.sha256 === sha) { emit({ type: 'kernel', status: 'disk', version }); return undefined; }
    const bootConf = await fsp.readFile(layout.bootConfPath, 'utf8').catch(() => undefined);
    if (bootConf === undefined) {
      // A disk made before kernel upgrades: its initramfs cannot start another kernel.
      emit({ type: 'kernel', status: 'ignored', version, reason: `${layout.bootConfPath} is missing (a disk whose initramfs cannot start another kernel); the disk's kernel boots` });
      return undefined;
    }
    const rel = (ext: string) => `os/kernels/${sha}.${ext}`;
    const kernel: DeploymentKernel = { version, sha256: sha, vmlinuz: rel('vmlinuz'), initrd: rel('initrd'), modules: rel('modules.squashfs') };
    const abs = (p: string) => path.join(layout.root, p);
    if ([kernel.vmlinuz, kernel.initrd, kernel.modules!].every((p) => existsSync(abs(p)))) {
      emit({ type: 'kernel', status: 'exists', version });
      return kernel;
    }
    emit({ type: 'kernel', status: 'staging', version });
    await fsp.mkdir(layout.kernelsDir, { recursive: true });
    // The machine's busybox (the top layer's) goes into the initramfs, as on the disk's own.
    const topBusybox = path.join(layout.dir, 'top/.drydock/busybox');
    const busybox = existsSync(topBusybox) ? topBusybox : DEFAULT_BUSYBOX;
    await writeOnce(abs(kernel.vmlinuz), (tmp) => fsp.copyFile(found.vmlinuz, tmp));
    // A kernel that cannot mount this disk's layer files (erofs) is refused here, not at boot.
    const required = state.layerFormat === 'erofs' ? [...REQUIRED_MODULES, 'erofs'] : REQUIRED_MODULES;
    await writeOnce(abs(kernel.initrd), (tmp) => buildInitramfs(tmp, found, work, bootConfForKernel(bootConf, sha), busybox, { required }));
    await writeOnce(abs(kernel.modules!), async (tmp) => {
      const tree = await buildModulesTree(found.modulesDir, path.join(work, 'modules-tree'));
      await mksquashfs(tree, tmp, 'zstd', { allRoot: true });
    });
    await fsyncDir(layout.kernelsDir);
    emit({ type: 'kernel', status: 'done', version });
    return kernel;
  } finally {
    for (const m of mounts.reverse()) await runTool('umount', [m]).catch(() => { unmounted = false; });
    // Never recurse into a mount that is still there.
    if (unmounted) await fsp.rm(work, { recursive: true, force: true }).catch(() => {});
  }
}

/** Kernel files (os/kernels/*) that no kept deployment names, and leftovers of interrupted writes. */
export async function unusedKernelFiles(layout: OsLayout, kept: (DeploymentKernel | undefined)[]): Promise<string[]> {
  const used = new Set<string>();
  for (const k of kept) for (const p of [k?.vmlinuz, k?.initrd, k?.modules]) if (p) used.add(path.basename(p));
  const names = await fsp.readdir(layout.kernelsDir).catch(() => [] as string[]);
  return names.filter((n) => !used.has(n)).map((n) => path.join(layout.kernelsDir, n));
}
