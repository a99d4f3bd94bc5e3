// The last step of every mkimage variant: one layer from the prepared rootfs, a config with the
// variant's defaults and the user's --change instructions on top, and the tags. Built from the
// foundation's pieces (createLayer / importLayerStream, applyConfigChanges, writeImage) rather
// than importRootfs because mkimage controls the history entry: importRootfs records the source
// path, and a scratch dir's random name there would make SOURCE_DATE_EPOCH builds differ.
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import type { ContentStore } from '../store/content-store.js';
import { writeImage } from '../store/write-image.js';
import { applyConfigChanges } from '../builder/changes.js';
import { singleLayerConfig } from '../image/config.js';
import type { Platform } from '../image/types.js';
import { createLayer, type LayerInfo } from '../layer/create.js';
import { applyLayer } from '../layer/apply.js';
import { openWithExternalDecompressor } from '../layer/compression.js';
import { importLayerStream } from '../archive/import.js';
import { UserError } from '../util/errors.js';

export const DEFAULT_PATH_ENV = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export interface PreparedImportOptions {
  tags: string[];
  /** The variant's defaults (CMD ["sh"]), applied before the user's changes. */
  baseChanges: string[];
  changes?: string[];
  sourceDateEpoch?: number;
  /** History entry: what made the layer. Must not contain temp paths (reproducibility). */
  createdBy: string;
  /** Platform of the rootfs (default: the host's). */
  platform?: Platform;
}

/** Debian architecture names → OCI platform (architecture, variant). */
const DEBIAN_ARCH: Record<string, Omit<Platform, 'os'>> = {
  amd64: { architecture: 'amd64' },
  arm64: { architecture: 'arm64', variant: 'v8' },
  armhf: { architecture: 'arm', variant: 'v7' },
  armel: { architecture: 'arm', variant: 'v5' },
  i386: { architecture: '386' },
  ppc64el: { architecture: 'ppc64le' },
  s390x: { architecture: 's390x' },
  riscv64: { architecture: 'riscv64' },
  mips64el: { architecture: 'mips64le' },
};

export function platformForDebianArch(arch: string): Platform {
  const p = DEBIAN_ARCH[arch];
  if (!p) throw new UserError(`unknown Debian architecture "${arch}" (one of ${Object.keys(DEBIAN_ARCH).join(', ')})`);
  return { os: 'linux', ...p };
}

export interface ImportedImage {
  id: string;
  manifestDigest: string;
  tags: string[];
  size: number;
  compressedSize: number;
}

/** Imports a rootfs directory, or a tarball as it is (streamed, never unpacked). */
export async function importPreparedRootfs(store: ContentStore, source: string, opts: PreparedImportOptions): Promise<ImportedImage> {
  // Changes are checked before the (possibly long) layer write, so a typo fails fast.
  const containerConfig = applyConfigChanges(applyConfigChanges({}, opts.baseChanges), opts.changes ?? []);
  const st = await fsp.stat(source);
  const layer: LayerInfo = st.isDirectory()
    ? await createLayer(store, { dir: source }, { sourceDateEpoch: opts.sourceDateEpoch })
    : await importLayerStream(store, await openRootfsTarball(source));
  const config = singleLayerConfig({
    diffID: layer.diffID,
    config: containerConfig,
    platform: opts.platform,
    sourceDateEpoch: opts.sourceDateEpoch,
    history: { created_by: opts.createdBy },
  });
  const written = await writeImage(store, { config, layers: [layer], tag: opts.tags });
  return {
    id: written.configDigest,
    manifestDigest: written.manifestDigest,
    tags: written.names,
    size: layer.uncompressedSize,
    compressedSize: layer.size,
  };
}

/**
 * Opens a rootfs tarball for streaming. The layer code reads plain, gzip and zstd tars itself;
 * xz, which Debian's and Ubuntu's published rootfs tarballs use, and bzip2 are decompressed by
 * their binaries (Node has neither), so `mkimage rootfs foo.tar.xz` works like `docker import`.
 */
export const openRootfsTarball = openWithExternalDecompressor;

/** Unpacks a rootfs tarball (plain, gzip, zstd, xz) into `dir` with the layer extractor's safety checks. */
export async function extractTarball(tarball: string, dir: string): Promise<void> {
  await applyLayer(dir, await openRootfsTarball(tarball), { compression: 'auto' });
}
