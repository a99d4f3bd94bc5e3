// Layer creation: walk a directory in sorted order and stream a deterministic tar through the
// diffID hasher and the compressor straight into the content store. Digest (compressed) and
// diffID (uncompressed) come out of the same single pass; no layer is ever held in memory.
import { createReadStream, lstatSync, readdirSync, readlinkSync, readFileSync, statSync, type Stats } from 'node:fs';
import { Readable, pipeline } from 'node:stream';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { listAttributesSync, getAttributeSync } from '@napi-rs/xattr';
import type { ContentStore } from '../store/content-store.js';
import { HashingTransform } from '../store/hashing-transform.js';
import { ociLayerMediaType, type Compression } from '../image/media-types.js';
import { STREAM_CHUNK } from '../util/fs.js';
import { UserError } from '../util/errors.js';
import { compressor } from './compression.js';
import { encodeHeader, paddingFor, END_OF_ARCHIVE, type TarHeader } from './tar-writer.js';

export interface LayerInfo {
  /** Digest of the stored (compressed) blob. */
  digest: string;
  /** Size of the stored blob in bytes. */
  size: number;
  /** Digest of the uncompressed tar (config rootfs.diff_ids). */
  diffID: string;
  mediaType: string;
  uncompressedSize: number;
  /** True when the blob was new to the store (see WrittenBlob.created). */
  created?: boolean;
}

export interface CreateLayerOptions {
  compression?: Compression;
  /** gzip 1-9 or zstd 1-19; defaults are gzip's 6 and zstd's 3. */
  compressionLevel?: number;
  /** Clamp every mtime to this (seconds), for reproducible layers (SOURCE_DATE_EPOCH). */
  sourceDateEpoch?: number;
  /** The dir is an overlayfs upper dir: turn overlay whiteouts into OCI whiteouts. */
  overlayUpper?: boolean;
}

export const WHITEOUT_PREFIX = '.wh.';
/** Files up to this size are read in one call; larger ones stream in STREAM_CHUNK pieces. */
const SMALL_FILE = 256 * 1024;
export const OPAQUE_WHITEOUT = '.wh..wh..opq';
const OVERLAY_OPAQUE_XATTRS = ['trusted.overlay.opaque', 'user.overlay.opaque'];
/** xattrs that describe the host, not the image: overlay bookkeeping and SELinux labels. */
function skipXattr(name: string): boolean {
  return name.startsWith('trusted.overlay.') || name.startsWith('user.overlay.') || name === 'security.selinux';
}

/** Collects small buffers into >= 1 MiB chunks so hashing and zlib see few, large writes. */
class ChunkBatcher {
  private parts: Buffer[] = [];
  private length = 0;
  push(b: Buffer): Buffer | undefined {
    this.parts.push(b);
    this.length += b.length;
    return this.length >= STREAM_CHUNK ? this.take() : undefined;
  }
  take(): Buffer | undefined {
    if (this.length === 0) return undefined;
    const out = this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts, this.length);
    this.parts = [];
    this.length = 0;
    return out;
  }
}

// Metadata calls are synchronous on purpose: each is one fast syscall, and an async round trip
// through the libuv pool per lstat/listxattr made small-file trees several times slower.
function readXattrs(file: string): Map<string, Buffer> | undefined {
  let names: string[];
  try { names = listAttributesSync(file); } catch { return undefined; }
  if (names.length === 0) return undefined;
  const out = new Map<string, Buffer>();
  for (const name of names) {
    if (skipXattr(name)) continue;
    let value: Buffer | null = null;
    try { value = getAttributeSync(file, name); } catch { /* vanished or not permitted */ }
    if (value) out.set(name, value);
  }
  return out.size ? out : undefined;
}

function isOverlayOpaque(dir: string): boolean {
  for (const name of OVERLAY_OPAQUE_XATTRS) {
    try {
      if (getAttributeSync(dir, name)?.toString() === 'y') return true;
    } catch { /* not set */ }
  }
  return false;
}

/** A file of the tree that could not be read, or vanished while the tree was archived. */
export function unreadable(file: string, e: unknown): UserError {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return new UserError(`${file} vanished while it was being archived`, { cause: e });
  return new UserError(`cannot read ${file}: ${(e as Error).message}`, { cause: e });
}

/** Sorted by byte value so the order does not depend on locale or readdir order. */
function sortNames(names: string[]): string[] {
  return names.sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
}

/** A piece of a directory's tar: bytes as they are, or the `size` bytes of the regular file `file`. */
export type TarPiece = Buffer | { file: string; size: number };

/**
 * The tar of `root`'s contents (not the root itself) as pieces, in order: headers and padding as
 * bytes, file contents as references that the consumer reads (tarDirectory into buffers, the
 * snapshot worker straight into its blocks). Metadata is read as the walk reaches each entry.
 */
export function* tarPieces(root: string, opts: CreateLayerOptions = {}): Generator<TarPiece> {
  const clamp = (st: Stats) => {
    const t = Math.floor(st.mtimeMs / 1000);
    return opts.sourceDateEpoch !== undefined ? Math.min(t, opts.sourceDateEpoch) : t;
  };
  const hardlinks = new Map<string, string>();

  function* walk(dirAbs: string, dirRel: string): Generator<TarPiece> {
    let names: string[];
    try { names = readdirSync(dirAbs); } catch (e) { throw new UserError(`cannot read ${dirAbs}: ${(e as Error).message}`, { cause: e }); }
    for (const name of sortNames(names)) {
      const abs = path.join(dirAbs, name);
      const rel = dirRel ? `${dirRel}/${name}` : name;
      let st: Stats;
      try { st = lstatSync(abs); } catch (e) { throw unreadable(abs, e); }
      const base: Omit<TarHeader, 'type' | 'name'> = { mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, size: 0, mtime: clamp(st) };
      if (st.isDirectory()) {
        const xattrs = readXattrs(abs);
        yield encodeHeader({ ...base, name: `${rel}/`, type: 'directory', xattrs });
        if (opts.overlayUpper && isOverlayOpaque(abs)) {
          yield encodeHeader({ ...base, mode: 0, name: `${rel}/${OPAQUE_WHITEOUT}`, type: 'file' });
        }
        yield* walk(abs, rel);
      } else if (st.isFile()) {
        const key = `${st.dev}:${st.ino}`;
        const first = st.nlink > 1 ? hardlinks.get(key) : undefined;
        if (first !== undefined) {
          yield encodeHeader({ ...base, name: rel, type: 'link', linkname: first });
          continue;
        }
        if (st.nlink > 1) hardlinks.set(key, rel);
        const xattrs = readXattrs(abs);
        yield encodeHeader({ ...base, name: rel, type: 'file', size: st.size, xattrs });
        if (st.size > 0) yield { file: abs, size: st.size };
        const pad = paddingFor(st.size);
        if (pad) yield Buffer.alloc(pad);
      } else if (st.isSymbolicLink()) {
        let target: string;
        try { target = readlinkSync(abs); } catch (e) { throw unreadable(abs, e); }
        yield encodeHeader({ ...base, name: rel, type: 'symlink', linkname: target });
      } else if (st.isCharacterDevice() || st.isBlockDevice()) {
        const major = Math.floor(st.rdev / 256) & 0xfff;
        const minor = (st.rdev & 0xff) | ((st.rdev >> 12) & 0xfff00);
        if (opts.overlayUpper && st.isCharacterDevice() && st.rdev === 0) {
          // overlayfs records a deleted lower file as a 0/0 character device.
          yield encodeHeader({ ...base, mode: 0, name: dirRel ? `${dirRel}/${WHITEOUT_PREFIX}${name}` : `${WHITEOUT_PREFIX}${name}`, type: 'file' });
          continue;
        }
        yield encodeHeader({ ...base, name: rel, type: st.isCharacterDevice() ? 'character-device' : 'block-device', devmajor: major, devminor: minor });
      } else if (st.isFIFO()) {
        yield encodeHeader({ ...base, name: rel, type: 'fifo' });
      }
      // Sockets are skipped, as docker and buildah do: they cannot be recreated from a tar.
    }
  }

  let st: Stats | undefined;
  try { st = statSync(root); } catch { st = undefined; }
  if (!st?.isDirectory()) throw new UserError(`${root} is not a directory`);
  yield* walk(root, '');
  yield END_OF_ARCHIVE;
}

/** A file of the tar whose size is not the one its header gave. */
export function changedSize(file: string, size: number, read: number): UserError {
  return new UserError(`${file} changed size while it was being archived (${size} -> ${read} bytes)`);
}

/** Yields the uncompressed tar of `root`'s contents (not the root itself), in >= 1 MiB chunks. */
export async function* tarDirectory(root: string, opts: CreateLayerOptions = {}): AsyncGenerator<Buffer> {
  const batch = new ChunkBatcher();
  const emit = function* (b: Buffer) { const full = batch.push(b); if (full) yield full; };
  for (const piece of tarPieces(root, opts)) {
    if (Buffer.isBuffer(piece)) { yield* emit(piece); continue; }
    const { file, size } = piece;
    let written = 0;
    if (size <= SMALL_FILE) {
      let data: Buffer;
      try { data = readFileSync(file); } catch (e) { throw unreadable(file, e); }
      written = data.length;
      yield* emit(data);
    } else {
      try {
        for await (const chunk of createReadStream(file, { highWaterMark: STREAM_CHUNK, end: size - 1 })) {
          written += (chunk as Buffer).length;
          yield* emit(chunk as Buffer);
        }
      } catch (e) { throw unreadable(file, e); }
    }
    if (written !== size) throw changedSize(file, size, written);
  }
  const rest = batch.take();
  if (rest) yield rest;
}

/**
 * The diffID of the tar tarDirectory writes for `root`, and its size: nothing stored. With
 * `overlayUpper`, an overlay upper dir's (a build step's snapshot, a layer cache entry's).
 */
export async function tarDiffID(root: string, opts: CreateLayerOptions = {}): Promise<{ diffID: string; size: number }> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of tarDirectory(root, opts)) {
    hash.update(chunk);
    size += chunk.length;
  }
  return { diffID: `sha256:${hash.digest('hex')}`, size };
}

/**
 * Streams `source` (an uncompressed tar) through the diffID hasher and the compressor into
 * the store. Shared by createLayer and importers of existing tars.
 */
export async function storeLayerStream(store: ContentStore, tar: Readable, opts: { compression?: Compression; compressionLevel?: number } = {}): Promise<LayerInfo> {
  const compression = opts.compression ?? 'gzip';
  const diffHasher = new HashingTransform('sha256');
  const compressed = pipeline(tar, diffHasher, compressor(compression, { level: opts.compressionLevel }), () => {
    /* an error destroys the last stream, which fails writeBlob below */
  });
  const { digest, size, created } = await store.writeBlob(compressed as unknown as Readable);
  return {
    digest,
    size,
    created,
    diffID: diffHasher.digester.digest(),
    mediaType: ociLayerMediaType(compression),
    uncompressedSize: diffHasher.digester.size,
  };
}

/** Creates a layer blob from a directory's contents. */
export async function createLayer(store: ContentStore, source: { dir: string }, opts: CreateLayerOptions = {}): Promise<LayerInfo> {
  const tar = Readable.from(tarDirectory(path.resolve(source.dir), opts), { objectMode: false, highWaterMark: STREAM_CHUNK });
  return storeLayerStream(store, tar, opts);
}
