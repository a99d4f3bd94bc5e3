// Crash-safe file writes: temp file in the same directory, fsync, rename, fsync the directory.
// A reader therefore sees either the old file or the complete new one, never a torn write.
import { promises as fsp, constants, readFileSync, lstatSync, statSync, type Stats, type WriteStream } from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';

export function tempName(target: string): string {
  return path.join(path.dirname(target), `.tmp-${path.basename(target)}-${process.pid}-${randomBytes(6).toString('hex')}`);
}

export async function fsyncDir(dir: string): Promise<void> {
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

export async function writeFileAtomic(target: string, data: string | Uint8Array, mode = 0o644): Promise<void> {
  await fsp.mkdir(path.dirname(target), { recursive: true });
  const tmp = tempName(target);
  const fh = await fsp.open(tmp, 'wx', mode);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } catch (e) {
    await fh.close().catch(() => {});
    await fsp.rm(tmp, { force: true });
    throw e;
  }
  await fh.close();
  try {
    await fsp.rename(tmp, target);
  } catch (e) {
    await fsp.rm(tmp, { force: true });
    throw e;
  }
  await fsyncDir(path.dirname(target));
}

export async function writeJsonAtomic(target: string, value: unknown): Promise<void> {
  await writeFileAtomic(target, JSON.stringify(value, null, 2) + '\n');
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
