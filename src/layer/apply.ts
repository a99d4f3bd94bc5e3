// Layer extraction that refuses every escape. Entry names are normalised and checked before
// they touch the filesystem; every parent directory is walked with lstat so a symlink planted
// earlier in the same archive (or by a lower layer) is never followed; files are created with
// O_EXCL after unlinking, so writes never go through a symlink either. What the archive alone
// can show (names, links, whiteouts) is checked by LayerEntryRules, the same code import and
// load run before a layer is stored; sizes and the expanded-size cap by the header tap.
import {
  createWriteStream, promises as fsp, constants as fsc, mkdirSync, lchownSync, chmodSync, lutimesSync, utimesSync,
  openSync, writeSync, closeSync, fchownSync, fchmodSync, futimesSync,
} from 'node:fs';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import tar from 'tar-stream';
import { setAttribute, setAttributeSync } from '@napi-rs/xattr';
import { HashingTransform } from '../store/hashing-transform.js';
import { Digester } from '../image/digest.js';
import { STREAM_CHUNK, lstatSyncOrUndefined } from '../util/fs.js';
import { decompress, detectCompression, peekStream, type CompressionOption } from './compression.js';
import { LayerError } from './errors.js';
import { LayerEntryRules, refuse, type EntryHeader } from './entry-rules.js';
import { ExpansionBudget, countCompressed, layerLimits, type LayerLimits } from './limits.js';
import { TarHeaderTap } from './pax-tap.js';
import { tarEntries } from './tar-read.js';
import { describeTarError } from './validate.js';
import { span } from '../util/trace.js';

export { LayerError, describeTarError };
export { normalizeEntryPath, checkPaxSize, MAX_PATH_LENGTH, MAX_PAX_BYTES } from './entry-rules.js';
export type { EntryHeader } from './entry-rules.js';

const run = promisify(execFile);

export interface ApplyLayerOptions {
  compression?: CompressionOption;
  /**
   * Where a warning goes (default: stderr). Device nodes are kept as the layer has them, like
   * Docker; when mknod is not permitted (rootless, no CAP_MKNOD) they are skipped with one
   * warning per layer, like containers/storage, because the runtime's own /dev covers them.
   */
  warn?: (message: string) => void;
  /** Caps on the uncompressed size (default: layerLimits(), from DRYDOCK_MAX_LAYER_SIZE/RATIO). */
  limits?: Partial<LayerLimits>;
  /**
   * 'apply' (default): OCI whiteouts delete what lower layers put in `targetDir`.
   * 'overlay': write overlayfs whiteouts instead (0/0 char device, opaque xattr), so the
   * unpacked layer can serve as an overlay lower dir.
   */
  whiteouts?: 'apply' | 'overlay';
  /** Set owners from the archive (default: when running as root). */
  preserveOwners?: boolean;
  /**
   * A layer whose tar is at most this many bytes is read whole and extracted from memory
   * (default IN_MEMORY_TAR); 0 streams every layer through tar-stream. Tests set it to run the
   * same archives down both paths.
   */
  inMemoryLimit?: number;
}

/**
 * Uncompressed tars up to this size are read whole, then extracted without tar-stream: its
 * streams, callbacks and promises cost more per entry than a small file's syscalls (a tree of
 * 200 small files: ~30 ms of a cold process's extraction, against ~6 ms of syscalls).
 */
export const IN_MEMORY_TAR = 4 * 1024 * 1024;

export interface ApplyLayerResult {
  entries: number;
  /** Uncompressed bytes read (the tar stream). */
  bytes: number;
  /** Digest of the uncompressed stream: compare with the config's rootfs.diff_ids. */
  diffID: string;
}

/**
 * Makes sure every parent of `rel` is a real directory inside `root`, creating missing ones.
 * A symlink (or any non-directory) in the way is refused, never followed. `known` caches
 * directories already checked in this layer (callers forget paths they replace), so a deep
 * tree costs one lstat per directory instead of one per directory per entry. Metadata calls
 * are synchronous: one fast syscall each, where a libuv round trip made small files slow.
 */
function ensureParents(root: string, rel: string, entryName: string, known: Set<string>, create = true): string | undefined {
  // `rel` is normalised (no empty, "." or ".." parts), so joining is concatenating.
  const base = root.endsWith('/') ? root : `${root}/`;
  for (let end = rel.indexOf('/'); end >= 0; end = rel.indexOf('/', end + 1)) {
    const relDir = rel.slice(0, end);
    if (known.has(relDir)) continue;
    const current = base + relDir;
    const st = lstatSyncOrUndefined(current);
    if (!st) {
      if (!create) return undefined;
      mkdirSync(current, { mode: 0o755 });
    } else if (st.isSymbolicLink()) {
      throw refuse.parentSymlink(entryName, relDir);
    } else if (!st.isDirectory()) {
      throw refuse.parentNotDirectory(entryName, relDir);
    }
    known.add(relDir);
  }
  return base + rel;
}

/** Drops `rel` and everything below it from a set or map of paths (the checked-directories cache, the directory times). */
function forget(known: Set<string> | Map<string, unknown>, rel: string): void {
  known.delete(rel);
  const prefix = `${rel}/`;
  for (const d of known.keys()) if (d.startsWith(prefix)) known.delete(d);
}

/** The longest stretch of synchronous entry handling before the unpack yields to the event loop. */
const YIELD_AFTER_MS = 5;

/** Files up to this size are collected and written in one call instead of streamed. */
const SMALL_FILE = 256 * 1024;
const CREATE_FLAGS = fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW;

/** Creates `abs` for writing, never through anything; undefined when something is there already. */
function createExclusive(abs: string): number | undefined {
  try {
    return openSync(abs, CREATE_FLAGS, 0o600);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return undefined;
    throw e;
  }
}

/** The entry's xattrs, raw bytes from the PAX tap, so binary values (security.capability) survive. */
function setXattrs(abs: string, h: EntryHeader): void {
  if (!h.rawXattrs) return;
  for (const [name, value] of h.rawXattrs) {
    // Non-root cannot set trusted.*/security.*; a missing xattr is better than a failed unpack.
    try {
      setAttributeSync(abs, name, value);
    } catch (e) {
      if (process.getuid?.() === 0 && !/not supported/i.test(String(e))) throw new LayerError(`entry "${h.name}": cannot set xattr ${name}: ${(e as Error).message}`);
    }
  }
}

/** Lets an entry's data go unread. */
function skip(body: Readable | Buffer): void {
  if (!Buffer.isBuffer(body)) body.resume();
}

/** Removes whatever is at `abs` (file, symlink or tree) without following symlinks. */
async function removeExisting(abs: string): Promise<void> {
  await fsp.rm(abs, { recursive: true, force: true });
}

/** mknod(1)'s complaint when the caller lacks CAP_MKNOD (or is in a user namespace). */
const NOT_PERMITTED = /Operation not permitted/;

async function mknod(abs: string, type: 'c' | 'b' | 'p', major = 0, minor = 0): Promise<void> {
  const args = type === 'p' ? [abs, 'p'] : [abs, type, String(major), String(minor)];
  try {
    await run('mknod', args);
  } catch (e) {
    throw new LayerError(`cannot create ${type === 'p' ? 'fifo' : 'device node'} ${abs}: ${((e as { stderr?: string }).stderr || (e as Error).message).trim()}`);
  }
}

/** Names the device nodes a layer had to skip, once per layer. */
function skippedDevicesWarning(names: string[]): string {
  const shown = names.slice(0, 5).join(', ') + (names.length > 5 ? `, … (${names.length - 5} more)` : '');
  return `WARNING: skipped ${names.length} device node${names.length === 1 ? '' : 's'} of the layer (mknod is not permitted here; the container's /dev provides devices): ${shown}`;
}

/**
 * The tar of a layer held in memory (`input`, compressed as `compression` says), when it is
 * gzip or plain and expands to at most `limit` bytes; undefined when it must be streamed.
 * gunzip stops at one byte past the limit, so a bomb costs no more than a tar that fits.
 */
function tarInMemory(input: Buffer, compression: CompressionOption, limit: number): Buffer | undefined {
  const c = compression === 'auto' ? detectCompression(input.subarray(0, 6)) : compression;
  if (c === 'none') return input.length <= limit ? input : undefined;
  if (c !== 'gzip' || limit <= 0) return undefined;
  try {
    return gunzipSync(input, { maxOutputLength: limit + 1, chunkSize: STREAM_CHUNK });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') return undefined;
    throw e;
  }
}

/**
 * Extracts one layer into `targetDir`, applying OCI whiteouts. See ApplyLayerOptions. `input` is
 * the layer as a stream, or as bytes in memory (what ADD reads of a small archive).
 */
export async function applyLayer(targetDir: string, input: Readable | Buffer, opts: ApplyLayerOptions = {}): Promise<ApplyLayerResult> {
  const root = path.resolve(targetDir);
  mkdirSync(root, { recursive: true });
  const budget = new ExpansionBudget({ ...layerLimits(), ...opts.limits });
  // The same rules import and load checked; what they cannot see (lower layers) is lstat-checked here.
  const rules = new LayerEntryRules('unknown');
  const preserveOwners = opts.preserveOwners ?? process.getuid?.() === 0;
  const whiteoutMode = opts.whiteouts ?? 'apply';
  /** Paths this layer wrote: an opaque marker only clears what lower layers left. */
  const touched = new Set<string>();
  const known = new Set<string>();
  /**
   * Directory times, set last (creating children changes them), by path in insertion order. A
   * directory the layer then replaces or whites out is dropped with everything under it: its
   * path may be a symlink by then, which utimes would follow out of the root.
   */
  const dirTimes = new Map<string, { abs: string; mtime: Date }>();
  const forgetPath = (rel: string) => { forget(known, rel); forget(dirTimes, rel); };
  let entries = 0;
  const skippedDevices: string[] = [];

  const applyMetadata = async (abs: string, h: EntryHeader, isLink: boolean) => {
    if (preserveOwners) {
      try { lchownSync(abs, h.uid ?? 0, h.gid ?? 0); } catch (e) { if (process.getuid?.() === 0) throw e; }
    }
    if (!isLink) {
      chmodSync(abs, (h.mode ?? 0o644) & 0o7777);
      setXattrs(abs, h);
    }
    const mtime = h.mtime ?? new Date(0);
    if (h.type !== 'directory') {
      try { lutimesSync(abs, mtime, mtime); } catch { /* symlink times are best effort */ }
    }
  };

  /** Writes `data` and the entry's metadata through `fd` (no path lookups), then closes it. */
  const writeOpened = (fd: number, abs: string, h: EntryHeader, data: Buffer) => {
    try {
      for (let off = 0; off < data.length;) off += writeSync(fd, data, off, data.length - off);
      if (preserveOwners) {
        try { fchownSync(fd, h.uid ?? 0, h.gid ?? 0); } catch (e) { if (process.getuid?.() === 0) throw e; }
      }
      // After the chown, which clears set-user-ID and set-group-ID bits.
      fchmodSync(fd, (h.mode ?? 0o644) & 0o7777);
      setXattrs(abs, h);
      const mtime = h.mtime ?? new Date(0);
      futimesSync(fd, mtime, mtime);
    } finally {
      closeSync(fd);
    }
  };

  /**
   * A regular file held in memory, where nothing is in its way (the usual case), on this turn
   * of the event loop: created O_EXCL|O_NOFOLLOW (never written through anything; no lstat
   * before, the create says whether something is there), its metadata set on the descriptor.
   * False when something is there: writeFileEntry replaces it.
   */
  const writeNewFile = (abs: string, h: EntryHeader, data: Buffer): boolean => {
    const fd = createExclusive(abs);
    if (fd === undefined) return false;
    writeOpened(fd, abs, h, data);
    return true;
  };

  /** A regular file: one held in memory (all of an in-memory tar's, a streamed tar's small ones) as writeNewFile does, else streamed to disk. */
  const writeFileEntry = async (abs: string, rel: string, h: EntryHeader, body: Readable | Buffer) => {
    // Sizes were checked by the header tap: an integer within the layer's cap.
    const size = h.size ?? 0;
    let data: Buffer | undefined;
    if (Buffer.isBuffer(body)) data = body;
    else if (size <= SMALL_FILE) {
      const chunks: Buffer[] = [];
      for await (const c of body) chunks.push(c as Buffer);
      data = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
    }
    if (data) {
      if (writeNewFile(abs, h, data)) return;
      forgetPath(rel);
      await removeExisting(abs);
      writeOpened(openSync(abs, CREATE_FLAGS, 0o600), abs, h, data);
      return;
    }
    if (lstatSyncOrUndefined(abs)) {
      forgetPath(rel);
      await removeExisting(abs);
    }
    const out = createWriteStream(abs, { flags: CREATE_FLAGS as unknown as string, mode: 0o600, highWaterMark: STREAM_CHUNK });
    await pipeline(body as Readable, out);
    await applyMetadata(abs, h, false);
  };

  /** Removes everything under `dirRel` this layer did not write (opaque directory). */
  const clearLower = async (dirRel: string) => {
    const abs = dirRel ? path.join(root, dirRel) : root;
    const names = await fsp.readdir(abs).catch(() => [] as string[]);
    for (const name of names) {
      const rel = dirRel ? `${dirRel}/${name}` : name;
      if (!touched.has(rel)) { await removeExisting(path.join(abs, name)); forgetPath(rel); continue; }
      const st = await fsp.lstat(path.join(abs, name));
      if (st.isDirectory()) await clearLower(rel);
    }
  };

  /**
   * `body` is the entry's data: a stream (tar-stream's) or, from the in-memory path, the bytes.
   * Returns a promise only when the entry needs one: a new file from memory (most of a tree of
   * small files) is written on this turn, without a promise and a microtask per entry.
   */
  const handleEntry = (h: EntryHeader, body: Readable | Buffer): Promise<void> | undefined => {
    entries++;
    const checked = rules.check(h);
    const rel = checked.rel;
    if (rel === '') { skip(body); return undefined; } // "./": the root keeps its own metadata
    if (checked.whiteout) return applyWhiteout(h, rel, checked.whiteout.victim, body);
    const abs = ensureParents(root, rel, h.name, known)!;
    for (let i = rel.indexOf('/'); i >= 0; i = rel.indexOf('/', i + 1)) touched.add(rel.slice(0, i));
    touched.add(rel);
    if (h.type === 'file' || h.type === 'contiguous-file') {
      if (Buffer.isBuffer(body) && writeNewFile(abs, h, body)) return undefined;
      return writeFileEntry(abs, rel, h, body);
    }
    return applyOther(h, rel, abs, body, checked.linkTarget);
  };

  /** A whiteout: deletes `victim` in its directory, or ("") makes the directory opaque. */
  const applyWhiteout = async (h: EntryHeader, rel: string, victim: string, body: Readable | Buffer) => {
    const dirRel = rel.lastIndexOf('/') < 0 ? '' : rel.slice(0, rel.lastIndexOf('/'));
    skip(body);
    // Applying a whiteout under a directory that does not exist deletes nothing: do not create it.
    const abs = ensureParents(root, rel, h.name, known, whiteoutMode === 'overlay');
    if (!abs) return;
    const dirAbs = path.dirname(abs);
    if (!victim) {
      if (whiteoutMode === 'overlay') {
        await setAttribute(dirAbs, 'trusted.overlay.opaque', 'y').catch((e) => {
          throw new LayerError(`entry "${h.name}": cannot mark ${dirRel || '/'} opaque: ${(e as Error).message}`);
        });
      } else {
        await clearLower(dirRel);
      }
      return;
    }
    const victimAbs = path.join(dirAbs, victim);
    await removeExisting(victimAbs);
    forgetPath(dirRel ? `${dirRel}/${victim}` : victim);
    if (whiteoutMode === 'overlay') await mknod(victimAbs, 'c', 0, 0);
  };

  /** Directories, symlinks, hard links, devices and fifos. */
  const applyOther = async (h: EntryHeader, rel: string, abs: string, body: Readable | Buffer, linkTarget: string | undefined) => {
    const existing = lstatSyncOrUndefined(abs);
    // Whatever replaces an existing path may no longer be the directory the cache remembers.
    if (existing && !(h.type === 'directory' && existing.isDirectory())) forgetPath(rel);
    switch (h.type) {
      case 'directory': {
        skip(body);
        if (existing && !existing.isDirectory()) await removeExisting(abs);
        if (!existing || !existing.isDirectory()) mkdirSync(abs, { mode: 0o700 });
        known.add(rel);
        await applyMetadata(abs, h, false);
        // The directory's last entry sets its time, as in Docker's unpack.
        dirTimes.set(rel, { abs, mtime: h.mtime ?? new Date(0) });
        return;
      }
      case 'symlink': {
        skip(body);
        const target = h.linkname!;
        // The target is stored verbatim and resolved inside the container's root at run time;
        // extraction never follows it (parents are lstat-checked, files opened O_NOFOLLOW).
        if (existing) await removeExisting(abs);
        await fsp.symlink(target, abs);
        await applyMetadata(abs, h, true);
        return;
      }
      case 'link': {
        skip(body);
        const linkname = h.linkname ?? '';
        const targetRel = linkTarget!;
        const targetAbs = ensureParents(root, targetRel, h.name, known, false);
        if (!targetAbs) throw refuse.linkTargetMissing(h.name, linkname);
        const tst = lstatSyncOrUndefined(targetAbs);
        if (!tst) throw refuse.linkTargetMissing(h.name, linkname);
        if (tst.isDirectory()) throw refuse.linkTargetDirectory(h.name, linkname);
        if (targetAbs === abs) return;
        if (existing) await removeExisting(abs);
        await fsp.link(targetAbs, abs);
        return;
      }
      case 'character-device':
      case 'block-device': {
        skip(body);
        if (existing) await removeExisting(abs);
        try {
          await mknod(abs, h.type === 'character-device' ? 'c' : 'b', h.devmajor ?? 0, h.devminor ?? 0);
        } catch (e) {
          if (!NOT_PERMITTED.test((e as Error).message)) throw e;
          skippedDevices.push(rel);
          return;
        }
        await applyMetadata(abs, h, false);
        return;
      }
      case 'fifo': {
        skip(body);
        if (existing) await removeExisting(abs);
        await mknod(abs, 'p');
        await applyMetadata(abs, h, false);
        return;
      }
      default: // LayerEntryRules refused every other type
        skip(body);
        throw new LayerError(`entry "${h.name}": unsupported tar entry type "${h.type}"`);
    }
  };

  /**
   * Entries are handled in one go, each with synchronous syscalls: give the event loop back now
   * and then, or whatever runs beside the unpack (another build stage starting its RUN, a
   * snapshot being written) waits for the whole archive.
   */
  let ran = performance.now();
  const due = () => performance.now() - ran > YIELD_AFTER_MS;
  const yieldNow = async () => {
    await new Promise((resolve) => setImmediate(resolve));
    ran = performance.now();
  };

  const tap = new TarHeaderTap(budget);
  let index = 0;

  /** The in-memory path: the tap and the hash see the whole tar, then its entries are handled. */
  const applyInMemory = async (tarBytes: Buffer): Promise<Digester> => {
    // The tap refuses bad sizes and enforces the cap before any entry is written.
    tap.feed(tarBytes);
    const digester = new Digester('sha256');
    digester.update(tarBytes);
    for (const { header, data } of tarEntries(tarBytes)) {
      header.rawXattrs = tap.entries[index++];
      const pending = handleEntry(header, data);
      if (pending) await pending;
      if (due()) await yieldNow();
    }
    return digester;
  };

  /** The streaming path: tar-stream, fed through the tap, one entry stream at a time. */
  const applyStream = async (stream: Readable): Promise<Digester> => {
    const diffHasher = new HashingTransform('sha256');
    const extract = tar.extract();
    const consumer = new Writable({
      highWaterMark: STREAM_CHUNK,
      write(chunk: Buffer, _enc, cb) {
        // The tap refuses bad sizes and enforces the cap before tar-stream sees the bytes.
        try { tap.feed(chunk); } catch (e) { cb(e as Error); return; }
        if (extract.write(chunk)) cb(); else extract.once('drain', () => cb(null));
      },
      final(cb) { (extract as unknown as { end(): void }).end(); cb(); },
    });
    let current: Readable | undefined;
    // tar-stream reports a truncated archive on the extractor, not on the entry being read.
    const extractFailed = new Promise<never>((_resolve, reject) => extract.on('error', (e: Error) => { current?.destroy(e); reject(e); }));
    extractFailed.catch(() => {});
    const done = (async () => {
      for await (const entry of extract) {
        current = entry as unknown as Readable;
        const header = entry.header as EntryHeader;
        header.rawXattrs = tap.entries[index++];
        await handleEntry(header, current);
        if (due()) await yieldNow();
      }
    })();
    try {
      await Promise.race([Promise.all([pipeline(stream, diffHasher, consumer), done]), extractFailed]);
    } catch (e) {
      extract.destroy();
      throw e;
    }
    return diffHasher.digester;
  };

  const inMemoryLimit = opts.inMemoryLimit ?? IN_MEMORY_TAR;
  const compression = opts.compression ?? 'auto';
  let digester: Digester;
  let compressedStream: Readable | undefined;
  try {
    const endRead = span('apply.read');
    let head: Buffer | undefined;
    let whole: Readable | undefined;
    if (Buffer.isBuffer(input)) {
      budget.compressed(input.length);
      head = tarInMemory(input, compression, inMemoryLimit);
      if (!head) whole = (await decompress(compressedStream = Readable.from([input]), compression)).stream;
    } else {
      const { stream } = await decompress(countCompressed(compressedStream = input, budget), compression);
      // One byte past the limit tells a tar that fits from one that does not.
      if (inMemoryLimit > 0) ({ head, stream: whole } = await peekStream(stream, inMemoryLimit + 1));
      else whole = stream;
    }
    endRead();
    const endEntries = span('apply.entries');
    digester = head && head.length <= inMemoryLimit ? await applyInMemory(head) : await applyStream(whole!);
    endEntries();
  } catch (e) {
    compressedStream?.destroy();
    throw describeTarError(e);
  }
  // Directory times last: creating their children would have changed them.
  for (const { abs, mtime } of [...dirTimes.values()].reverse()) {
    try { utimesSync(abs, mtime, mtime); } catch { /* best effort, as before */ }
    if (due()) await yieldNow();
  }
  if (skippedDevices.length) (opts.warn ?? ((m: string) => process.stderr.write(`${m}\n`)))(skippedDevicesWarning(skippedDevices));
  return { entries, bytes: digester.size, diffID: digester.digest() };
}
