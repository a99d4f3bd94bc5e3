// Crash-safe file writes: temp file in the same directory, fsync, rename, fsync the directory.
// A reader therefore sees either the old file or the complete new one, never a torn write.
import { promises as fsp, constants, readFileSync, lstatSync, statSync, type Stats, type WriteStream } from 'node:fs';
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
export function fsyncDir(dir: string): Promise<void> {
  const running = dirSyncs.get(dir);
  if (!running) return startDirSync(dir);
  return running.next ??= running.done.then(() => startDirSync(dir));
}

/** The directory fsync running for each directory, and the one queued behind it. */
const dirSyncs = new Map<string, { done: Promise<void>; next?: Promise<void> }>();

function startDirSync(dir: string): Promise<void> {
  const state: { done: Promise<void>; next?: Promise<void> } = { done: undefined! };
  // Runs before `next`'s own continuation (registered on `done` later), which replaces the entry.
  state.done = fsyncDirNow(dir).then(() => { if (dirSyncs.get(dir) === state && !state.next) dirSyncs.delete(dir); });
  dirSyncs.set(dir, state);
  return state.done;
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
export async function writeFileAtomic(target: string, data: string | Uint8Array, mode = 0o644, opts: { durable?: boolean } = {}): Promise<void> {
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
export async function stageFileAtomic(target: string, data: string | Uint8Array, mode = 0o644, opts: { durable?: boolean } = {}): Promise<StagedFile> {
  const durable = opts.durable ?? true;
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

export async function writeJsonAtomic(target: string, value: unknown, opts: { durable?: boolean } = {}): Promise<void> {
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
