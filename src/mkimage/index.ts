// Base images from scratch: a static busybox, a debootstrap tree, or a prepared rootfs. Each
// variant lays out (or finds) a root filesystem in a scratch dir that is removed on every exit
// path, applies the common options (timezone), then imports it (import.ts: one deterministic
// layer, the config with --change instructions applied, the tags).
import { createWriteStream, promises as fsp } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import path from 'node:path';
import { ContentStore } from '../store/content-store.js';
import { UserError } from '../util/errors.js';
import type { Platform } from '../image/types.js';
import { buildBusyboxRootfs, DEFAULT_BUSYBOX } from './busybox-rootfs.js';
import { runDebootstrap, slimDebianRootfs, pinShadowDates, DEFAULT_SUITE, DEFAULT_VARIANT, type DebootstrapOptions } from './debootstrap.js';
import { hostAptSources, debianMirrorFrom, debianSecurityMirrorFrom, FALLBACK_MIRROR } from './mirror.js';
import { writeAptSources, securityMirrorFor } from './apt-sources.js';
import { countPackages, scanRootfsTarball, type PackageCount } from './packages.js';
import { withScratchDir } from './scratch.js';
import { setTimezone } from './timezone.js';
import { importPreparedRootfs, platformForDebianArch, extractTarball, DEFAULT_PATH_ENV, type ImportedImage } from './import.js';

const run = promisify(execFile);

export { buildBusyboxRootfs, busyboxApplets, DEFAULT_BUSYBOX } from './busybox-rootfs.js';
export { debootstrapArgs, runDebootstrap, slimDebianRootfs, pinShadowDates, packageList } from './debootstrap.js';
export { hostDebianMirror, hostAptSources, debianMirrorFrom, debianSecurityMirrorFrom, parseDeb822Sources, parseOneLineSources, FALLBACK_MIRROR } from './mirror.js';
export { aptSourcesFor, writeAptSources, securityMirrorFor } from './apt-sources.js';
export { countPackages, countDpkgStatus, countApkInstalled, scanRootfsTarball, type PackageCount, type TarballScan } from './packages.js';
export { importPreparedRootfs, platformForDebianArch, openRootfsTarball, DEFAULT_PATH_ENV } from './import.js';
export { withScratchDir, removeScratch, mountsUnder } from './scratch.js';
export { setTimezone, validateTimezone } from './timezone.js';

export interface MkimageCommonOptions {
  /** Names to tag ("busybox:latest"); the first is the image's primary name. */
  tags: string[];
  /** Dockerfile instructions applied to the config, like `docker import --change`. */
  changes?: string[];
  timezone?: string;
  /** Seconds since the epoch for file times, `created` and history: same inputs, same digest. */
  sourceDateEpoch?: number;
  /** Store root (default $DRYDOCK_ROOT). */
  root?: string;
  onProgress?: (line: string) => void;
}

export interface MkimageResult {
  /** Image ID: the config digest, as `docker images` shows it. */
  id: string;
  manifestDigest: string;
  tags: string[];
  /** Uncompressed size of the layer (what `docker images` calls SIZE). */
  size: number;
  compressedSize: number;
  packages?: PackageCount;
  busybox?: { version: string; applets: number };
  /** The debootstrap mirror used (debian only). */
  mirror?: string;
  seconds: number;
}

async function busyboxVersion(busybox: string): Promise<string> {
  const { stdout } = await run(busybox, ['--help']).catch((e: { stdout?: string }) => ({ stdout: e.stdout ?? '' }));
  return /BusyBox v(\S+)/.exec(stdout)?.[1] ?? 'unknown';
}

/** `drydock mkimage busybox`: the default base image, built offline from busybox-static. */
export async function mkimageBusybox(opts: MkimageCommonOptions & { busybox?: string }): Promise<MkimageResult> {
  const started = Date.now();
  const busybox = opts.busybox ?? DEFAULT_BUSYBOX;
  const store = await ContentStore.open(opts.root);
  return withScratchDir(store.tmpDir, 'mkimage-busybox-', async (scratch) => {
    const rootfs = path.join(scratch.dir, 'rootfs');
    await fsp.mkdir(rootfs, { mode: 0o755 });
    const { applets } = await buildBusyboxRootfs(rootfs, { busybox });
    if (opts.timezone) await setTimezone(rootfs, opts.timezone);
    const version = await busyboxVersion(busybox);
    const imported = await importPreparedRootfs(store, rootfs, {
      ...opts,
      baseChanges: [`ENV ${DEFAULT_PATH_ENV}`, 'CMD ["sh"]'],
      createdBy: `drydock mkimage busybox (BusyBox v${version})`,
    });
    return { ...imported, busybox: { version, applets }, seconds: (Date.now() - started) / 1000 };
  });
}

export interface MkimageDebianOptions extends MkimageCommonOptions, Omit<DebootstrapOptions, 'mirror' | 'onProgress'> {
  mirror?: string;
}

/** `drydock mkimage debian`: debootstrap into a scratch dir, slim it, import it. */
export async function mkimageDebian(opts: MkimageDebianOptions): Promise<MkimageResult> {
  const started = Date.now();
  // Checked before anything is downloaded; the config must name the rootfs's real architecture.
  const platform = opts.arch ? platformForDebianArch(opts.arch) : undefined;
  const hostSources = await hostAptSources();
  const mirror = opts.mirror ?? debianMirrorFrom(hostSources) ?? FALLBACK_MIRROR;
  const suite = opts.suite ?? DEFAULT_SUITE;
  const store = await ContentStore.open(opts.root);
  return withScratchDir(store.tmpDir, 'mkimage-debian-', async (scratch) => {
    opts.onProgress?.(`debootstrap ${suite} (${opts.variant ?? DEFAULT_VARIANT}) from ${mirror}`);
    const rootfs = await runDebootstrap(scratch, { ...opts, suite, mirror, onProgress: opts.onProgress });
    await slimDebianRootfs(rootfs);
    if (opts.sourceDateEpoch !== undefined) await pinShadowDates(rootfs, opts.sourceDateEpoch);
    await writeAptSources(rootfs, {
      suite,
      mirror,
      components: (opts.components ?? []).flatMap((c) => c.split(',')).filter(Boolean),
      securityMirror: securityMirrorFor(mirror, debianSecurityMirrorFrom(hostSources)),
    });
    if (opts.timezone) await setTimezone(rootfs, opts.timezone);
    const packages = await countPackages(rootfs);
    const imported = await importPreparedRootfs(store, rootfs, {
      ...opts,
      baseChanges: [`ENV ${DEFAULT_PATH_ENV}`, 'CMD ["bash"]'],
      platform,
      createdBy: `drydock mkimage debian --suite ${suite} --variant ${opts.variant ?? DEFAULT_VARIANT}`
        + (opts.include?.length ? ` --include ${opts.include.join(',')}` : ''),
    });
    return { ...imported, packages, mirror, seconds: (Date.now() - started) / 1000 };
  });
}

/**
 * `drydock mkimage rootfs DIR|TARBALL|-`: imports what the user prepared. A tarball is streamed
 * straight into a layer (`-` is first spooled from stdin into the store's tmp, so the package
 * scan can read it too); a directory is never modified. Device nodes are kept as they are, like
 * `docker import`; only --timezone sends the rootfs through a scratch copy.
 */
export async function mkimageRootfs(source: string, opts: MkimageCommonOptions & { platform?: Platform; stdin?: NodeJS.ReadableStream }): Promise<MkimageResult> {
  const started = Date.now();
  if (!opts.tags.length) throw new UserError('mkimage rootfs needs a name (-t NAME[:TAG])');
  const store = await ContentStore.open(opts.root);
  if (source === '-') {
    return withScratchDir(store.tmpDir, 'mkimage-stdin-', async (scratch) => {
      const spooled = path.join(scratch.dir, 'rootfs.tar');
      await pipeline(opts.stdin ?? process.stdin, createWriteStream(spooled));
      return { ...(await importRootfsSource(store, spooled, '-', opts)), seconds: (Date.now() - started) / 1000 };
    });
  }
  return { ...(await importRootfsSource(store, source, path.basename(path.resolve(source)), opts)), seconds: (Date.now() - started) / 1000 };
}

async function importRootfsSource(store: ContentStore, source: string, label: string, opts: MkimageCommonOptions & { platform?: Platform }): Promise<Omit<MkimageResult, 'seconds'>> {
  const st = await fsp.stat(source).catch(() => undefined);
  if (!st) throw new UserError(`${source}: no such file or directory`);
  if (!st.isDirectory() && !st.isFile()) throw new UserError(`${source}: not a directory or a tarball`);
  const common = { ...opts, createdBy: `drydock mkimage rootfs ${label}`, baseChanges: [] };
  const finish = (imported: ImportedImage, packages: PackageCount | undefined) => ({ ...imported, ...(packages ? { packages } : {}) });

  if (st.isFile()) {
    const scan = await scanRootfsTarball(source);
    if (!opts.timezone) return finish(await importPreparedRootfs(store, source, common), scan.packages);
    return withScratchDir(store.tmpDir, 'mkimage-rootfs-', async (scratch) => {
      const rootfs = path.join(scratch.dir, 'rootfs');
      await fsp.mkdir(rootfs, { mode: 0o755 });
      await extractTarball(source, rootfs);
      await setTimezone(rootfs, opts.timezone!);
      return finish(await importPreparedRootfs(store, rootfs, common), scan.packages);
    });
  }
  const packages = await countPackages(source);
  if (!opts.timezone) return finish(await importPreparedRootfs(store, source, common), packages);
  return withScratchDir(store.tmpDir, 'mkimage-rootfs-', async (scratch) => {
    const rootfs = path.join(scratch.dir, 'rootfs');
    // --reflink=auto: a copy-on-write clone where the filesystem supports it.
    await run('cp', ['-a', '--reflink=auto', path.resolve(source), rootfs]);
    await setTimezone(rootfs, opts.timezone!);
    return finish(await importPreparedRootfs(store, rootfs, common), packages);
  });
}
