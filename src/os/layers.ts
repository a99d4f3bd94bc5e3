// One image layer → os/layers/<diffid>.squashfs or .erofs, the form the initramfs stacks as an
// overlayfs lower. The blob (gzip, zstd or plain tar) is unpacked by drydock's own layer code with overlay
// whiteouts (`.wh.x` → char device 0:0, `.wh..wh..opq` → trusted.overlay.opaque=y), both digests
// are checked while it streams, and only a verified file gets its final name (temp, fsync,
// rename, fsync dir): a file named by a diffID is always that layer, whole.
import { promises as fsp } from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { applyLayer } from '../layer/apply.js';
import { HashingTransform } from '../store/hashing-transform.js';
import { layerCompression } from '../image/media-types.js';
import type { Descriptor } from '../image/types.js';
import { mksquashfs } from '../boot/artifacts.js';
import { runTool } from '../boot/exec.js';
import { fsyncDir, tempName } from '../util/fs.js';
import { UserError } from '../util/errors.js';
import { diffHex, LEGACY_LAYER_FORMAT, type LayerFormat, type OsLayout } from './layout.js';
import type { CompressionOption } from '../layer/compression.js';

export interface ConvertedLayer {
  diffID: string;
  /** Compressed bytes read from `blob`. */
  bytes: number;
  /** Size of the layer file written. */
  size: number;
}

/**
 * An erofs image of `dir` (erofs-utils 1.5 has no tar input, so from the unpacked tree). lz4hc,
 * the compressor the boot measurement used; per-file mtimes kept, as mksquashfs keeps them.
 * Device nodes and trusted.* xattrs (the overlay whiteouts) are kept by mkfs.erofs run as root.
 */
export async function mkfsErofs(dir: string, out: string): Promise<void> {
  const args = ['--quiet', '-zlz4hc', '--preserve-mtime'];
  // SOURCE_DATE_EPOCH: the filesystem's build time, as mksquashfs reads it itself.
  const epoch = process.env.SOURCE_DATE_EPOCH;
  if (epoch && /^\d+$/.test(epoch)) args.push(`-T${epoch}`);
  await runTool('mkfs.erofs', [...args, out, dir]);
}

/** Writes the layer file of `format` for the unpacked tree `dir`. */
export async function packLayer(dir: string, out: string, format: LayerFormat): Promise<void> {
  if (format === 'erofs') await mkfsErofs(dir, out);
  else await mksquashfs(dir, out, 'zstd');
}

async function fsyncFile(file: string): Promise<void> {
  const fh = await fsp.open(file, 'r');
  try { await fh.sync(); } finally { await fh.close(); }
}

export interface SquashLayerOptions {
  /** os/layers: where <diffid-hex>.<format> goes. */
  dir: string;
  /** squashfs (the default) or erofs. */
  format?: LayerFormat;
  /** Scratch space for the unpacked tree, on a filesystem that keeps devices and trusted.* xattrs. */
  work: string;
  compression?: CompressionOption;
  /** The diffID the image config names; a layer that uncompresses to another is refused. */
  expectDiffID?: string;
  /** The manifest's descriptor: the compressed stream must have its digest and size. */
  blob?: Descriptor;
}

export interface SquashedLayer {
  file: string;
  diffID: string;
  /** Uncompressed bytes (the tar). */
  bytes: number;
  /** Compressed bytes read from the stream. */
  compressedBytes: number;
}

/**
 * The one conversion both the disk builder and `drydock os upgrade` use: unpack with overlay
 * whiteouts, check, mksquashfs or mkfs.erofs to a temp name, fsync, rename, fsync the directory.
 * A file that already exists under the layer's name is kept (it is that layer: names are diffIDs).
 */
export async function squashLayer(stream: Readable, opts: SquashLayerOptions): Promise<SquashedLayer> {
  await fsp.mkdir(opts.work, { recursive: true });
  await fsp.mkdir(opts.dir, { recursive: true });
  const tree = path.join(opts.work, `layer-${randomBytes(6).toString('hex')}`);
  const hasher = new HashingTransform('sha256', opts.blob?.size);
  stream.on('error', (e) => hasher.destroy(e));
  // The tar reader may stop listening at the archive's end while bytes still arrive, and then
  // never settles when an oversize blob errors the hasher: the hasher's error ends the wait.
  const hasherFailed = new Promise<never>((_, reject) => hasher.once('error', reject));
  hasherFailed.catch(() => {});
  let tmp: string | undefined;
  try {
    const r = await Promise.race([
      applyLayer(tree, stream.pipe(hasher), { compression: opts.compression ?? 'auto', whiteouts: 'overlay', preserveOwners: true }),
      hasherFailed,
    ]);
    if (hasher.errored) throw hasher.errored;
    const got = hasher.digester.digest();
    if (opts.blob && (got !== opts.blob.digest || hasher.digester.size !== opts.blob.size)) {
      throw new UserError(`layer ${opts.blob.digest}: downloaded ${hasher.digester.size} bytes hashing to ${got}; the manifest says ${opts.blob.size} bytes`);
    }
    if (opts.expectDiffID && r.diffID !== opts.expectDiffID) {
      throw new UserError(`layer ${opts.blob?.digest ?? ''}${opts.blob ? ' ' : ''}uncompresses to ${r.diffID}, but the image config expects ${opts.expectDiffID}`);
    }
    const format = opts.format ?? LEGACY_LAYER_FORMAT;
    const file = path.join(opts.dir, `${diffHex(r.diffID)}.${format}`);
    const result = { file, diffID: r.diffID, bytes: r.bytes, compressedBytes: hasher.digester.size };
    if (await fsp.stat(file).then((st) => st.isFile(), () => false)) return result;
    tmp = tempName(file);
    await packLayer(tree, tmp, format);
    await fsyncFile(tmp);
    await fsp.rename(tmp, file);
    tmp = undefined;
    await fsyncDir(opts.dir);
    return result;
  } finally {
    stream.destroy();
    if (tmp) await fsp.rm(tmp, { force: true });
    await fsp.rm(tree, { recursive: true, force: true });
  }
}

/**
 * Converts the layer `desc` (read from `blob`) into layout.layerPath(diffID, format). `diffID` is what
 * the image config says the layer uncompresses to; a blob that hashes otherwise is refused and
 * nothing is written. Unpacks into os/tmp, on the data partition itself, which keeps device
 * nodes and trusted.* xattrs (a tmpfs in a user namespace would not).
 */
export async function convertLayer(layout: OsLayout, desc: Descriptor, blob: Readable, diffID: string,
  format: LayerFormat = LEGACY_LAYER_FORMAT): Promise<ConvertedLayer> {
  const compression = layerCompression(desc.mediaType);
  const r = await squashLayer(blob, {
    dir: layout.layersDir, work: layout.tmpDir, format, compression: compression === 'none' ? 'auto' : compression, expectDiffID: diffID, blob: desc,
  });
  return { diffID, bytes: r.compressedBytes, size: (await fsp.stat(r.file)).size };
}
