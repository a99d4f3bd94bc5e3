// Boot an image: `drydock iso` and `drydock disk`. The image is flattened from the store, turned
// into squashfs + a baked top layer + a drydock initramfs + the kernel, then laid out as a
// hybrid ISO or a partitioned disk.
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ContentStore } from '../store/content-store.js';
import { resolveImage } from '../store/images.js';
import { unpackImage } from '../layer/unpack.js';
import { UserError } from '../util/errors.js';
import { buildArtifacts, type BootArtifacts, type BootSource } from './artifacts.js';
import { bzImageVersion, resolveKernel } from './kernel.js';
import type { BootOptions } from './config.js';
import { writeDisk, writeIso, type DiskLayout } from './media.js';
import { grubUnsafeArgs, type Firmware } from './uefi.js';
import { prepareServiceBundles } from './services.js';
import { proxyEnv } from './toplayer.js';
import { buildOsTree } from './updatable.js';
import type { Deployment } from '../os/index.js';

export { loadBootConfigFile, mergeRaw, validateBootOptions, parseSize, parseMount } from './config.js';
export type { BootOptions, RawBootOptions, BootMount, InitMode, NetworkConfig } from './config.js';
export type { BootService, RestartPolicy } from './services.js';
export { resolveModules, loadModuleIndex, parseModulesDep, parseSoftdeps, BOOT_MODULES } from './modules.js';
export { resolveKernel, bzImageVersion } from './kernel.js';
export { buildArtifacts, bootLabel } from './artifacts.js';
export type { BootArtifacts, BootSource } from './artifacts.js';
export { chooseInit, buildTopLayer } from './toplayer.js';
export { writeIso, writeDisk, diskLayout } from './media.js';
export { grubConfig, FIRMWARES } from './uefi.js';
export { buildOsTree, RUNTIME_DIR } from './updatable.js';
export type { UpdatableOptions } from './updatable.js';
export { OS_STATE_AWK, OS_LIB, DEPLOYMENT_MENU } from './osstate.js';
export type { Firmware } from './uefi.js';

export interface BootBuildResult {
  output: string;
  kind: 'iso' | 'disk';
  /** Firmware the medium boots with. */
  firmware: Firmware;
  size: number;
  label: string;
  kernelVersion?: string;
  kernelOrigin: 'image' | 'user';
  init: BootArtifacts['init'];
  modules: number;
  cmdline: string;
  layout?: DiskLayout;
  seconds: number;
  /** Seconds per phase: unpack (image → rootfs dir), artifacts (squashfs, initramfs, top layer), layers (updatable disks), media (ISO/disk). */
  phases: { unpack?: number; artifacts: number; layers?: number; media: number };
  /** Updatable disks: the reference the machine updates from, its first deployment, the bundled Node runtime's size (when the image has no node). */
  updates?: { ref: string; deployment: Deployment; runtimeBytes?: number };
}

/** A private work dir, removed afterwards (even on failure or Ctrl-C). */
async function withWorkDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await fsp.mkdtemp(path.join(process.env.DRYDOCK_TMPDIR || os.tmpdir(), 'drydock-boot-'));
  const onSignal = (sig: NodeJS.Signals) => {
    void fsp.rm(dir, { recursive: true, force: true }).finally(() => process.kill(process.pid, sig));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    return await fn(dir);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    // Never let cleanup hide the error that got us here.
    await fsp.rm(dir, { recursive: true, force: true, maxRetries: 3 }).catch((e) => process.stderr.write(`warning: could not remove ${dir}: ${(e as Error).message}\n`));
  }
}

async function checkOutputDir(output: string): Promise<string> {
  const out = path.resolve(output);
  if (!(await fsp.stat(path.dirname(out)).catch(() => undefined))?.isDirectory()) {
    throw new UserError(`output directory ${path.dirname(out)} does not exist`);
  }
  return out;
}

/** Kernel arguments GRUB (UEFI) would alter are refused before any work is done. */
function checkFirmware(kind: 'iso' | 'disk', opts: BootOptions): void {
  const firmware = opts.firmware ?? (kind === 'iso' ? 'both' : 'bios');
  const unsafe = opts.kernelArgs !== undefined ? grubUnsafeArgs(opts.kernelArgs) : undefined;
  if (firmware !== 'bios' && unsafe) {
    throw new UserError(`--kernel-args ${JSON.stringify(opts.kernelArgs)}: ${unsafe}; drop the quotes (they only group words with spaces) or build a BIOS-only ${kind === 'iso' ? 'ISO' : 'disk'} with --firmware bios`);
  }
}

/** A bad --kernel fails before the image is unpacked. Modules may still come from the image. */
async function precheckKernel(opts: BootOptions): Promise<void> {
  const kernel = opts.kernel ?? process.env.DRYDOCK_KERNEL;
  if (!kernel) return;
  const st = await fsp.stat(kernel).catch(() => undefined);
  if (st?.isDirectory() || opts.modules) await resolveKernel('/nonexistent', opts);
  else if (st?.isFile() && !(await bzImageVersion(kernel))) throw new UserError(`${kernel} is not an x86 Linux kernel image (bzImage)`);
}

/** Builds from a rootfs directory (the library entry point; the CLI goes through buildFromStore). */
export async function buildBootMedium(kind: 'iso' | 'disk', source: BootSource, opts: BootOptions, output: string): Promise<BootBuildResult> {
  const started = Date.now();
  const out = await checkOutputDir(output);
  checkFirmware(kind, opts);
  return withWorkDir(async (work) => {
    const stage = path.join(work, 'stage');
    await fsp.mkdir(stage);
    const a = await buildArtifacts(source, opts, stage);
    const artifactsDone = Date.now();
    let layout: DiskLayout | undefined;
    if (kind === 'iso') await writeIso(a, out, { firmware: opts.firmware });
    else layout = await writeDisk(a, out, { size: opts.size, format: opts.format, firmware: opts.firmware });
    const phases = { artifacts: (artifactsDone - started) / 1000, media: (Date.now() - artifactsDone) / 1000 };
    return {
      output: out, kind, firmware: opts.firmware ?? (kind === 'iso' ? 'both' : 'bios'), size: (await fsp.stat(out)).size, label: a.label, kernelVersion: a.kernel.version,
      kernelOrigin: a.kernel.origin, init: a.init, modules: a.modules.length, cmdline: a.cmdline, layout,
      seconds: (Date.now() - started) / 1000, phases,
    };
  });
}

/** An updatable disk: the artifacts without the flattened squashfs, then one file per layer. */
async function buildUpdatableDisk(store: ContentStore, image: string, source: BootSource, opts: BootOptions, ref: string, output: string, work: string): Promise<BootBuildResult> {
  const started = Date.now();
  const out = await checkOutputDir(output);
  const stage = path.join(work, 'stage');
  await fsp.mkdir(stage);
  const a = await buildArtifacts(source, opts, stage);
  const artifactsDone = Date.now();
  const data = path.join(work, 'data');
  await fsp.mkdir(data);
  const { deployment, runtime } = await buildOsTree(store, image, source.rootfs, a.topDir!, {
    ref, insecureRegistries: opts.insecureRegistries, authfile: opts.authfile, bootTries: opts.bootTries, bootDeadline: opts.bootDeadline,
    layerFormat: opts.layerFormat,
  }, data, { sha256: a.kernelSha256, version: a.kernel.version, bootConf: a.bootConf });
  const layersDone = Date.now();
  const layout = await writeDisk(a, out, { size: opts.size, format: opts.format, firmware: opts.firmware, osTree: data });
  return {
    output: out, kind: 'disk', firmware: opts.firmware ?? 'bios', size: (await fsp.stat(out)).size, label: a.label, kernelVersion: a.kernel.version,
    kernelOrigin: a.kernel.origin, init: a.init, modules: a.modules.length, cmdline: a.cmdline, layout,
    seconds: (Date.now() - started) / 1000,
    phases: { artifacts: (artifactsDone - started) / 1000, layers: (layersDone - artifactsDone) / 1000, media: (Date.now() - layersDone) / 1000 },
    updates: { ref, deployment, runtimeBytes: runtime?.bytes },
  };
}

/** Resolves IMAGE in the store, flattens it, and builds the medium. */
export async function buildFromStore(store: ContentStore, image: string, kind: 'iso' | 'disk', opts: BootOptions, output: string): Promise<BootBuildResult> {
  const img = await resolveImage(store, image, { os: 'linux', architecture: 'amd64' });
  if (img.config.architecture && img.config.architecture !== 'amd64') {
    throw new UserError(`${image} is a ${img.config.architecture} image; drydock ${kind} boots x86-64 (amd64) images`);
  }
  await checkOutputDir(output);
  checkFirmware(kind, opts);
  await precheckKernel(opts);
  if (kind === 'iso' && opts.updatesFrom !== undefined) throw new UserError('--updates-from makes an updatable disk; use drydock disk');
  return withWorkDir(async (work) => {
    const rootfs = path.join(work, 'rootfs');
    await fsp.mkdir(rootfs, { mode: 0o755 });
    const started = Date.now();
    await unpackImage(store, img, rootfs);
    const unpack = (Date.now() - started) / 1000;
    const config = img.config.config ?? {};
    let servicesDir: string | undefined;
    if (opts.services.length) {
      servicesDir = path.join(work, 'services');
      await prepareServiceBundles(store, opts.services, servicesDir, proxyEnv(opts));
    }
    if (opts.updatesFrom !== undefined) {
      // The machine pulls the name it was made from unless told otherwise; a bare ID has none.
      const ref = opts.updatesFrom || img.names[0];
      if (!ref) throw new UserError(`${image} has no name to update from; pass --updates-from REF`);
      const r = await buildUpdatableDisk(store, image, { rootfs, config, id: img.manifestDescriptor.digest, servicesDir, updatable: true }, opts, ref, output, work);
      return { ...r, seconds: r.seconds + unpack, phases: { unpack, ...r.phases } };
    }
    const r = await buildBootMedium(kind, { rootfs, config, id: img.manifestDescriptor.digest, servicesDir }, opts, output);
    return { ...r, seconds: r.seconds + unpack, phases: { unpack, ...r.phases } };
  });
}
