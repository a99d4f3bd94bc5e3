// COPY/ADD into a mounted rootfs. Destinations are resolved inside the rootfs with chroot
// semantics (src/runtime resolveInRoot), so a symlink in the image can never redirect a write to
// the host; existing entries are unlinked before files are created, so no write goes through a
// symlink either. ADD's local archives go through the foundation's checked extractor.
import {
  promises as fsp, lstatSync, copyFile, copyFileSync, lchownSync, chmodSync, utimesSync, mkdirSync, rmSync, symlinkSync, readlinkSync, openSync, fstatSync, readFileSync, closeSync,
  constants as fsConstants,
} from 'node:fs';
import { Readable } from 'node:stream';
import path from 'node:path';
import { gunzipSync, constants as zlibConstants } from 'node:zlib';
import { mkdirInRootSync, resolveInRoot, resolveInRootSync } from '../runtime/rootfs-path.js';
import { decompress, detectCompression, isExternallyDecompressed, openWithExternalDecompressor, peekStream } from '../layer/compression.js';
import { UserError } from '../util/errors.js';
import { lstatSyncOrUndefined, statSyncOrUndefined } from '../util/fs.js';
import { span, traced } from '../util/trace.js';
import type { SourceEntry, SourceTree } from './context.js';
import type { PatternMatcher } from '../dockerfile/index.js';

export interface CopyOptions {
  uid: number;
  gid: number;
  /** --chmod: mode for files and directories copied. */
  chmod?: number;
  /** ADD: extract local tar archives instead of copying them. */
  extractArchives?: boolean;
  /** isArchive of source files, started before the rootfs was mounted, by host path. */
  archiveChecks?: Map<string, Promise<boolean>>;
  instruction: string;
  /** --parents: keep each source's path (relative to the context) under the destination. */
  parents?: boolean;
  /**
   * --exclude patterns (.dockerignore syntax), matched against paths relative to each source:
   * a directory source's entries below it, a file source's base name.
   */
  exclude?: PatternMatcher;
  /**
   * The step's overlay, when this copy is all the step writes: a directory tree copied, or an
   * archive extracted, into a directory no lower layer has is written straight into the upper
   * dir (overlayfs's create path costs more per file than ext4's, and nothing reads the merged
   * view afterwards).
   */
  overlay?: { upper: string; lowers: string[] };
  /**
   * Told of every source entry a directory or file copy makes (its lstat), before it is made:
   * the step starts the snapshot worker once the copy is large (workerStarterForCopy).
   */
  onEntry?: (stat: { isFile(): boolean; size: number }) => void;
}

/**
 * Copies `entries` to `dest` (absolute, in the image). Docker's rules: a directory source
 * copies its contents; several sources need a destination ending in "/"; a destination that is
 * an existing directory receives the source by its base name.
 */
export async function copyEntries(tree: SourceTree, entries: SourceEntry[], rootfs: string, dest: string, opts: CopyOptions): Promise<void> {
  const trailing = dest.endsWith('/');
  if (entries.length > 1 && !trailing) {
    throw new UserError(`${opts.instruction} failed: when using ${opts.instruction} with more than one source file, the destination must be a directory and end with a /`);
  }
  // The destination's checks and directories are made with synchronous calls: a few metadata
  // syscalls of microseconds each, where each round trip waited for a CPU beside the snapshot
  // worker's start.
  const destHost = resolveInRootSync(rootfs, dest);
  const destIsDir = trailing || (statSyncOrUndefined(destHost)?.isDirectory() ?? false);
  for (const e of entries) {
    if (opts.exclude?.matches(path.posix.basename(e.rel)) && !e.stat.isDirectory()) continue;
    if (e.stat.isDirectory()) {
      const base = opts.parents && e.rel !== '.' ? path.posix.join(dest, e.rel) : dest;
      mkdirInRootSync(rootfs, base, opts);
      const dirHost = resolveInRootSync(rootfs, base);
      if (opts.chmod !== undefined || base !== '/') setMetaSync(dirHost, e.stat, opts, false);
      // A directory no lower layer has is the upper dir's alone: its tree is written there, at
      // the path `base` resolved to (its symlinks are the merged view's, not the upper dir's).
      const upper = entries.length === 1 && opts.overlay && upperOnlyDir(rootfs, dirHost, opts.overlay) ? opts.overlay.upper : undefined;
      const root = upper ?? rootfs;
      const baseInRoot = upper ? `/${path.relative(rootfs, dirHost)}` : base;
      const endCopy = span(upper ? 'copy.tree-into-upper' : 'copy.tree');
      const files = new FileCopies();
      const parents: ParentCache = new Map();
      const resolvedParents = new Map<string, string>();
      let yieldAt = performance.now() + SYNC_SLICE_MS;
      try {
        for await (const child of tree.walk(e)) {
          const rel = path.posix.relative(e.rel === '.' ? '' : e.rel, child.rel);
          if (opts.exclude?.matches(rel)) continue;
          const inner = path.posix.join(baseInRoot, rel);
          opts.onEntry?.(child.stat);
          // A "!" re-included entry may sit below an excluded directory that was not copied.
          if (opts.exclude) await mkdirInRoot(root, path.posix.dirname(inner), opts);
          // Into the upper dir every entry is made on this thread but the data of large files:
          // the lstats, mkdirs and metadata calls each cost less than a thread-pool round trip
          // (four a file through copyOne made the 40 MB context 93 ms instead of 61), while a
          // large file's copy_file_range is page-cache memcpy that a second CPU takes half of
          // (COPY_ON_POOL_FROM: 320 files of 128 KiB in 70-80 ms instead of 99-105).
          if (upper) {
            const large = copyOneSync(root, child, inner, opts, resolvedParents);
            if (large) {
              // Started already: if an earlier copy failed, add() throws before taking this one.
              large.catch(() => {});
              await files.add(() => large);
            }
            if (performance.now() >= yieldAt) {
              await new Promise<void>((resolve) => setImmediate(resolve));
              yieldAt = performance.now() + SYNC_SLICE_MS;
            }
          } else if (child.stat.isFile()) await files.add(() => copyOne(root, child, inner, opts, parents));
          else await copyOne(root, child, inner, opts, parents);
        }
      } finally {
        await files.settle();
        endCopy();
      }
      files.throwFirst();
    } else if (opts.extractArchives && e.stat.isFile() && (await traced('add.is-archive', () => opts.archiveChecks?.get(e.hostPath) ?? isArchive(e.hostPath)))) {
      await mkdirInRoot(rootfs, dest, opts);
      const destHost = await resolveInRoot(rootfs, dest);
      const upper = entries.length === 1 && opts.overlay ? upperOnlyDir(rootfs, destHost, opts.overlay) : undefined;
      await traced(upper ? 'add.extract-into-upper' : 'add.extract', () => extractArchive(e.hostPath, upper ?? destHost));
    } else {
      const inner = opts.parents ? path.posix.join(dest, e.rel) : destIsDir ? path.posix.join(dest, path.posix.basename(e.rel)) : dest;
      opts.onEntry?.(e.stat);
      await mkdirInRoot(rootfs, path.posix.dirname(inner), opts);
      await copyOne(rootfs, e, inner, opts);
    }
  }
}

/**
 * Regular files of a directory source, copied a few at a time: each is a handful of syscalls
 * (resolve, lstat, copy_file_range, chown, chmod, utimes) that wait on the disk, and one at a
 * time a 40 MB tree of small files spends most of its time waiting. Directories and symlinks
 * are still made in walk order, so a file's directory exists before the file is started; every
 * target is distinct, so the copies do not race each other.
 */
class FileCopies {
  private static readonly LIMIT = 8;
  private readonly running = new Set<Promise<void>>();
  private error: unknown;

  async add(copy: () => Promise<void>): Promise<void> {
    if (this.error !== undefined) this.throwFirst();
    const p: Promise<void> = copy().catch((e) => { this.error ??= e; }).finally(() => { this.running.delete(p); });
    this.running.add(p);
    if (this.running.size >= FileCopies.LIMIT) await Promise.race(this.running);
  }

  async settle(): Promise<void> {
    await Promise.all(this.running);
  }

  throwFirst(): void {
    if (this.error !== undefined) throw this.error;
  }
}

/**
 * The upper dir's copy of `hostDir` (a directory of the mounted rootfs) when no lower layer has
 * that path: then the merged directory is the upper one alone, and writing into it directly is
 * what overlayfs would do. Undefined (use the merged view) otherwise.
 */
function upperOnlyDir(rootfs: string, hostDir: string, overlay: { upper: string; lowers: string[] }): string | undefined {
  const rel = path.relative(rootfs, hostDir);
  if (rel.startsWith('..') || path.isAbsolute(rel)) return undefined;
  // A parent that is a symlink in a lower resolves elsewhere and may report a path that exists:
  // that only sends the copy down the merged view.
  // ENOTDIR: the lower has a file where rel has a parent, so not the path; any other error
  // counts as present (the merged view is always right).
  const inLower = (l: string) => {
    try { return lstatSync(path.join(l, rel), { throwIfNoEntry: false }) !== undefined; } catch (e) { return (e as NodeJS.ErrnoException).code !== 'ENOTDIR'; }
  };
  if (overlay.lowers.some(inLower)) return undefined;
  const upper = path.join(overlay.upper, rel);
  return lstatSyncOrUndefined(upper)?.isDirectory() ? upper : undefined;
}

/** Creates a directory (and missing parents) inside the rootfs, owned by the COPY's owner. */
export async function mkdirInRoot(rootfs: string, inner: string, opts: { uid: number; gid: number }): Promise<void> {
  mkdirInRootSync(rootfs, inner, opts);
}

/**
 * A tree copy's resolved parent directories, by their path in the image: the files of one
 * directory share one resolution (an lstat per path component) instead of one each. Safe
 * because the walk reaches a directory before anything in it, and the copy replaces an entry
 * only when it reaches that entry: once a directory's first child is copied, nothing the copy
 * does later changes where that directory resolves.
 */
type ParentCache = Map<string, Promise<string>>;

/**
 * The longest the synchronous tree copy holds the event loop before it lets other work in: the
 * other stages' steps, progress output and signals wait no longer than this, whatever the tree.
 */
const SYNC_SLICE_MS = 10;

/**
 * Into the upper dir, files from this size are copied on the thread pool, FileCopies.LIMIT at
 * once: the copy is the kernel's memcpy into the page cache, and there a second CPU halves it.
 */
const COPY_ON_POOL_FROM = 64 * 1024;

/** Files up to this size are copied with synchronous calls (larger ones wait on the disk). */
const SMALL_FILE = 64 * 1024;

async function copyOne(rootfs: string, e: SourceEntry, inner: string, opts: CopyOptions, parents?: ParentCache): Promise<void> {
  const parentInner = path.posix.dirname(inner);
  let resolving = parents?.get(parentInner);
  if (!resolving) {
    resolving = resolveInRoot(rootfs, parentInner);
    parents?.set(parentInner, resolving);
  }
  const parentHost = await resolving;
  const target = path.join(parentHost, path.posix.basename(inner));
  // One lstat: synchronous, as the small files' copy below (a thread-pool round trip per file
  // waited for a CPU on a busy host, the larger part of a tree of small files' copy).
  const existing = lstatSyncOrUndefined(target);
  const st = e.stat;
  if (st.isDirectory()) {
    if (existing && !existing.isDirectory()) await fsp.rm(target, { force: true });
    if (!existing?.isDirectory()) await fsp.mkdir(target, { mode: 0o755 });
    await setMeta(target, st, opts, false);
    return;
  }
  if (existing) await fsp.rm(target, { recursive: existing.isDirectory(), force: true });
  if (st.isSymbolicLink()) {
    await fsp.symlink(await fsp.readlink(e.hostPath), target);
    await setMeta(target, st, opts, true);
  } else if (st.isFile() && st.size <= SMALL_FILE) {
    // A small file is a few syscalls of microseconds each: made on this thread, not as five
    // thread-pool round trips that each wait for a CPU on a busy host.
    copyFileSync(e.hostPath, target, fsConstants.COPYFILE_EXCL);
    setMetaSync(target, st, opts, false);
  } else if (st.isFile()) {
    // COPYFILE_EXCL: the target was just unlinked; refuse rather than follow anything new.
    await fsp.copyFile(e.hostPath, target, fsp.constants.COPYFILE_EXCL);
    await setMeta(target, st, opts, false);
  }
  // Sockets, fifos and devices in a build context are skipped, like Docker.
}

/**
 * copyOne's steps for one entry of a tree, in the same order, as synchronous calls; `parents` as
 * copyOne's ParentCache, by the same argument. A file of COPY_ON_POOL_FROM bytes or more is copied on
 * the thread pool instead (its metadata set once the copy is done): the promise is that copy.
 */
function copyOneSync(rootfs: string, e: SourceEntry, inner: string, opts: CopyOptions, parents: Map<string, string>): Promise<void> | undefined {
  const parentInner = path.posix.dirname(inner);
  let parentHost = parents.get(parentInner);
  if (parentHost === undefined) {
    parentHost = resolveInRootSync(rootfs, parentInner);
    parents.set(parentInner, parentHost);
  }
  const target = path.join(parentHost, path.posix.basename(inner));
  const existing = lstatSyncOrUndefined(target);
  const st = e.stat;
  if (st.isDirectory()) {
    if (existing && !existing.isDirectory()) rmSync(target, { force: true });
    if (!existing?.isDirectory()) mkdirSync(target, { mode: 0o755 });
    setMetaSync(target, st, opts, false);
    return;
  }
  if (existing) rmSync(target, { recursive: existing.isDirectory(), force: true });
  if (st.isSymbolicLink()) {
    symlinkSync(readlinkSync(e.hostPath), target);
    setMetaSync(target, st, opts, true);
  } else if (st.isFile()) {
    // COPYFILE_EXCL: the target was just unlinked; refuse rather than follow anything new.
    if (st.size >= COPY_ON_POOL_FROM) {
      return new Promise<void>((resolve, reject) => {
        copyFile(e.hostPath, target, fsConstants.COPYFILE_EXCL, (err) => {
          if (err) return reject(err);
          try { setMetaSync(target, st, opts, false); resolve(); } catch (e2) { reject(e2); }
        });
      });
    }
    copyFileSync(e.hostPath, target, fsConstants.COPYFILE_EXCL);
    setMetaSync(target, st, opts, false);
  }
  // Sockets, fifos and devices in a build context are skipped, like Docker.
  return undefined;
}

function setMetaSync(target: string, st: { mode: number; mtime: Date; atime: Date }, opts: CopyOptions, isLink: boolean): void {
  lchownSync(target, opts.uid, opts.gid);
  if (isLink) return;
  chmodSync(target, opts.chmod ?? st.mode & 0o7777);
  utimesSync(target, st.atime, st.mtime);
}

async function setMeta(target: string, st: { mode: number; mtime: Date; atime: Date }, opts: CopyOptions, isLink: boolean): Promise<void> {
  await fsp.lchown(target, opts.uid, opts.gid);
  if (isLink) return;
  await fsp.chmod(target, opts.chmod ?? st.mode & 0o7777);
  await fsp.utimes(target, st.atime, st.mtime);
}

/** Writes a heredoc or downloaded file at `inner`. */
export async function writeFileInRoot(rootfs: string, inner: string, content: Readable | string, mode: number, opts: CopyOptions): Promise<void> {
  await mkdirInRoot(rootfs, path.posix.dirname(inner), opts);
  const target = path.join(await resolveInRoot(rootfs, path.posix.dirname(inner)), path.posix.basename(inner));
  const existing = await fsp.lstat(target).catch(() => undefined);
  if (existing?.isDirectory()) throw new UserError(`${opts.instruction} failed: destination ${inner} is a directory`);
  if (existing) await fsp.rm(target, { force: true });
  const fh = await fsp.open(target, 'wx', opts.chmod ?? mode);
  try {
    if (typeof content === 'string') await fh.writeFile(content);
    else for await (const chunk of content) await fh.write(chunk as Buffer);
  } finally {
    await fh.close();
  }
  await fsp.chown(target, opts.uid, opts.gid);
  await fsp.chmod(target, opts.chmod ?? mode);
}

/** Opens a possibly compressed file as a plain stream (gzip, zstd, xz, bzip2). */
async function openDecompressed(file: string): Promise<Readable> {
  return (await decompress(await openWithExternalDecompressor(file))).stream;
}

/** Compressed bytes gunzipped for a small archive's first header: far more than it takes. */
const HEAD_PROBE = 4096;

/**
 * The start of a small archive's tar (at least its first header when it has one), read on this
 * thread; undefined when the stream path below must decide (large, zstd, or a gzip start that
 * expands past 1 MiB or yields no header).
 */
function smallArchiveHead(file: string): Buffer | undefined {
  const bytes = readSmallArchive(file);
  if (!bytes) return undefined;
  const compression = detectCompression(bytes.subarray(0, 6));
  if (compression === 'none') return bytes;
  if (compression !== 'gzip') return undefined;
  try {
    // Z_SYNC_FLUSH: a cut gzip stream yields what it holds instead of failing.
    const head = gunzipSync(bytes.subarray(0, HEAD_PROBE), { finishFlush: zlibConstants.Z_SYNC_FLUSH, maxOutputLength: 1024 * 1024 });
    return head.length >= 512 || bytes.length <= HEAD_PROBE ? head : undefined;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') return undefined;
    throw e;
  }
}

const isTarHead = (head: Buffer) => head.length >= 262 && head.subarray(257, 262).toString('latin1') === 'ustar';

/**
 * True for a (possibly compressed) tar archive: "ustar" magic at offset 257 of the tar stream.
 * A small gzip or plain archive is checked on this thread (the step's prepare starts this
 * beside the mount, and a file stream and gunzip through the thread pool waited for a CPU on a
 * busy host for longer than the mount took).
 */
export async function isArchive(file: string): Promise<boolean> {
  try {
    const head = smallArchiveHead(file);
    if (head) return isTarHead(head);
  } catch {
    return false;
  }
  let stream: Readable | undefined;
  try {
    stream = await openDecompressed(file);
    const { head } = await peekStream(stream, 512);
    return isTarHead(head);
  } catch {
    return false;
  } finally {
    stream?.destroy();
  }
}

let extractor: Promise<typeof import('../layer/apply.js')> | undefined;

/**
 * The extractor (tar-stream, the entry rules): ~15 ms of module loading that a RUN step, which
 * imports this module for mkdirInRoot, never uses; an ADD step loads it while its rootfs is
 * mounted (ops/copy.ts prepare), or here.
 */
export function loadExtractor(): Promise<typeof import('../layer/apply.js')> {
  extractor ??= import('../layer/apply.js');
  return extractor;
}

/**
 * Archives up to this size are read whole and handed to the extractor as bytes: it gunzips
 * them in one call and extracts from memory, where a stream costs a file open, reads and a
 * gunzip through the thread pool, each waiting for a CPU on a busy host.
 */
const SMALL_ARCHIVE = 1024 * 1024;

/** A small archive's bytes, when the extractor can take them as they are (gzip, zstd or plain). */
function readSmallArchive(file: string): Buffer | undefined {
  const fd = openSync(file, 'r');
  try {
    const { size } = fstatSync(fd);
    if (size > SMALL_ARCHIVE) return undefined;
    const bytes = readFileSync(fd);
    // xz and bzip2 go through their programs (openWithExternalDecompressor).
    return isExternallyDecompressed(bytes) ? undefined : bytes;
  } finally {
    closeSync(fd);
  }
}

async function extractArchive(file: string, destHost: string): Promise<void> {
  const { applyLayer } = await traced('add.load-extractor', loadExtractor);
  const small = readSmallArchive(file);
  try {
    await applyLayer(destHost, small ?? await openDecompressed(file), { compression: small ? 'auto' : 'none', whiteouts: 'apply' });
  } catch (e) {
    throw new UserError(`ADD failed: cannot extract ${path.basename(file)}: ${(e as Error).message}`, { cause: e });
  }
}
