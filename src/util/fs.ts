// Crash-safe file writes: temp file in the same directory, fsync, rename, fsync the directory.
// A reader therefore sees either the old file or the complete new one, never a torn write.
import { promises as fsp, constants, readFileSync, lstatSync, statSync, openSync, writeSync, closeSync, renameSync, mkdirSync, rmSync, fsync as fsyncFdCallback, type Stats, type WriteStream } from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';

export function tempName(target: string): string {
  return path.join(path.dirname(target), `.tmp-${path.basename(target)}-${process.pid}-${randomBytes(6).toString('hex')}`);
}

/**
 * fsyncs `dir`, so that the entries renamed into it before the call are durable. Callers of one
 * process share the fsyncs of a directory: one that is running may have begun before the
 * caller's rename, so the caller waits for the next, which everybody who comes meanwhile shares
 * (an image's config, manifest and layer, renamed into blobs/sha256/ at once, cost one or two
 * directory fsyncs, not three).
 */
export function fsyncDir(dir: string, opts: InlineOption = {}): Promise<void> {
  const running = dirSyncs.get(dir);
  if (!running) return startDirSync(dir, opts);
  return running.next ??= running.done.then(() => startDirSync(dir, opts));
}

/**
 * `inline`: the open, write, rename and close of a small file, and the open and close of its
 * directory, run on the main thread (microseconds each on a local disk), and only the fsyncs on
 * the thread pool: through fs.promises each call is a round trip that, on a loaded host, waits
 * for a CPU twice. For the store's small files (index.json, roots, configs, manifests, cache
 * entries), written in a row on a build's critical path.
 */
export interface InlineOption { inline?: boolean }

/** fsync(2) of a descriptor on the thread pool. */
export function fsyncFd(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fsyncFdCallback(fd, (e) => (e ? reject(e) : resolve())));
}

/** The directory fsync running for each directory, and the one queued behind it. */
const dirSyncs = new Map<string, { done: Promise<void>; next?: Promise<void> }>();

function startDirSync(dir: string, opts: InlineOption): Promise<void> {
  const state: { done: Promise<void>; next?: Promise<void> } = { done: undefined! };
  // Runs before `next`'s own continuation (registered on `done` later), which replaces the entry.
  state.done = (opts.inline ? fsyncDirInline(dir) : fsyncDirNow(dir)).then(() => { if (dirSyncs.get(dir) === state && !state.next) dirSyncs.delete(dir); });
  dirSyncs.set(dir, state);
  return state.done;
}

async function fsyncDirInline(dir: string): Promise<void> {
  let fd: number | undefined;
  try {
    fd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY);
    await fsyncFd(fd);
  } catch {
    // As fsyncDirNow: some filesystems refuse fsync on directories.
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

async function fsyncDirNow(dir: string): Promise<void> {
  let fh: fsp.FileHandle | undefined;
  try {
    fh = await fsp.open(dir, constants.O_RDONLY | constants.O_DIRECTORY);
    await fh.sync();
  } catch {
    // Some filesystems refuse fsync on directories; the rename is still atomic there.
  } finally {
    await fh?.close();
  }
}

/**
 * Removes the temp file of a failed streamed write. pipeline() rejects as soon as the source
 * fails, possibly while the write stream is still opening its file; removing it before the stream
 * has closed would race with that open and leave the temp file behind.
 */
export async function discardStreamedFile(out: WriteStream, file: string): Promise<void> {
  if (!out.closed) {
    const closed = new Promise<void>((resolve) => out.once('close', () => resolve()));
    out.destroy();
    await closed;
  }
  await fsp.rm(file, { force: true });
}

/**
 * Replaces `target` atomically (temp file, rename). `durable` (the default) fsyncs the file
 * before the rename and the directory after it; without, a crash may leave the old file, the
 * new one, or an empty one: for caches whose readers treat a missing or unreadable file as a
 * miss and recreate it (the build cache, the context's hash cache).
 */
export async function writeFileAtomic(target: string, data: string | Uint8Array, mode = 0o644, opts: { durable?: boolean } & InlineOption = {}): Promise<void> {
  await (await stageFileAtomic(target, data, mode, opts)).commit();
}

/** A file written to its temp name (and fsynced), not yet renamed over its target. */
export interface StagedFile {
  /** Renames it in (and fsyncs the directory, when durable). */
  commit(): Promise<void>;
  /** Removes the temp file. */
  discard(): Promise<void>;
}

/**
 * writeFileAtomic's first half: the new content in a temp file beside `target`, fsynced when
 * durable. A caller that must not publish the file before something else is durable (index.json
 * before the manifest it names) stages it meanwhile, so the two fsyncs overlap.
 */
export async function stageFileAtomic(target: string, data: string | Uint8Array, mode = 0o644, opts: { durable?: boolean } & InlineOption = {}): Promise<StagedFile> {
  const durable = opts.durable ?? true;
  if (opts.inline) return stageFileInline(target, data, mode, durable);
  await fsp.mkdir(path.dirname(target), { recursive: true });
  const tmp = tempName(target);
  const fh = await fsp.open(tmp, 'wx', mode);
  try {
    await fh.writeFile(data);
    if (durable) await fh.sync();
  } catch (e) {
    await fh.close().catch(() => {});
    await fsp.rm(tmp, { force: true });
    throw e;
  }
  await fh.close();
  const discard = () => fsp.rm(tmp, { force: true });
  return {
    discard,
    async commit() {
      try {
        await fsp.rename(tmp, target);
      } catch (e) {
        await discard();
        throw e;
      }
      if (durable) await fsyncDir(path.dirname(target));
    },
  };
}

/** Writes all of `bytes` at the start of `fd` (writeSync may write less than it was given). */
export function writeAllSync(fd: number, bytes: Uint8Array): void {
  for (let at = 0; at < bytes.length;) at += writeSync(fd, bytes, at, bytes.length - at, at);
}

/** stageFileAtomic with `inline`: every call but the fsyncs on the main thread. */
async function stageFileInline(target: string, data: string | Uint8Array, mode: number, durable: boolean): Promise<StagedFile> {
  mkdirSync(path.dirname(target), { recursive: true });
  const tmp = tempName(target);
  const bytes = typeof data === 'string' ? Buffer.from(data) : data;
  const fd = openSync(tmp, 'wx', mode);
  try {
    for (let at = 0; at < bytes.length;) at += writeSync(fd, bytes, at, bytes.length - at, at);
    if (durable) await fsyncFd(fd);
  } catch (e) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw e;
  }
  closeSync(fd);
  const discard = async () => rmSync(tmp, { force: true });
  return {
    discard,
    async commit() {
      try {
        renameSync(tmp, target);
      } catch (e) {
        await discard();
        throw e;
      }
      if (durable) await fsyncDir(path.dirname(target), { inline: true });
    },
  };
}

export async function writeJsonAtomic(target: string, value: unknown, opts: { durable?: boolean } & InlineOption = {}): Promise<void> {
  await writeFileAtomic(target, JSON.stringify(value, null, 2) + '\n', 0o644, opts);
}

export async function readJson<T>(file: string): Promise<T> {
  return JSON.parse(await fsp.readFile(file, 'utf8')) as T;
}

export async function readJsonIfExists<T>(file: string): Promise<T | undefined> {
  try {
    return await readJson<T>(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}

/**
 * readJsonIfExists without fs.promises, for the few small files a quick CLI command reads
 * (`drydock images`, `ps`): loading fs/promises and starting libuv's thread pool cost more there.
 */
export function readJsonIfExistsSync<T>(file: string): T | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  return JSON.parse(text) as T;
}

export async function exists(p: string): Promise<boolean> {
  try { await fsp.lstat(p); return true; } catch { return false; }
}

/** Large chunks keep hashing and syscalls off the profile (the brief asks for >= 1 MiB). */
export const STREAM_CHUNK = 1 << 20;

/**
 * Atomic (rename) always; fsync only when `durable`: state that vanishes with its owner (a --rm
 * container's files, a bridge's address map under /run) skips the flushes.
 */
export async function writeJson(file: string, value: unknown, durable = true): Promise<void> {
  if (durable) return writeJsonAtomic(file, value);
  const tmp = tempName(file);
  await fsp.writeFile(tmp, JSON.stringify(value, null, 2) + '\n');
  await fsp.rename(tmp, file);
}

/**
 * lstat(2), synchronous; undefined for any failure (missing, a parent that is a file: ENOTDIR,
 * no permission). throwIfNoEntry: a missing path, the common case, costs no exception object.
 */
export function lstatSyncOrUndefined(p: string): Stats | undefined {
  try { return lstatSync(p, { throwIfNoEntry: false }); } catch { return undefined; }
}

/** stat(2) that follows links, synchronous; undefined for any failure (missing, a loop, no permission). */
export function statSyncOrUndefined(p: string): Stats | undefined {
  try { return statSync(p, { throwIfNoEntry: false }); } catch { return undefined; }
}
