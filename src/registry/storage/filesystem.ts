// The embedded default driver: a directory tree. putContent is temp+fsync+rename
// (writeFileAtomic), moves are rename(2), readers use 1 MiB chunks.
import { createReadStream, promises as fsp, type Dirent } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { STREAM_CHUNK, fsyncDir, tempName, writeFileAtomic } from '../../util/fs.js';
import { sendRange } from './send.js';
import { PathNotFoundError, type FileInfo, type FileWriter, type StorageDriver } from './driver.js';

export interface FilesystemDriverOptions {
  /**
   * fsync blob data before renames and directories after them (default true). false skips both:
   * still atomic against a crashed server, but the last writes may be lost on a power failure.
   * distribution 2.8's filesystem driver fsyncs every file it writes (its fileWriter's Commit and
   * Close) but never a directory, so a rename it acknowledged can be lost on a power cut.
   */
  fsync?: boolean;
}

/** Writes of one file tried before an ENOENT (its directory removed meanwhile by gc) is reported. */
const PUT_ATTEMPTS = 5;

export class FilesystemDriver implements StorageDriver {
  readonly name = 'filesystem';
  private readonly fsync: boolean;
  constructor(readonly rootDirectory: string, opts: FilesystemDriverOptions = {}) {
    this.fsync = opts.fsync ?? true;
  }

  private full(p: string): string {
    if (!p.startsWith('/') || p.split('/').includes('..')) throw new Error(`invalid storage path ${p}`);
    return path.join(this.rootDirectory, p);
  }

  async getContent(p: string): Promise<Buffer> {
    try {
      return await fsp.readFile(this.full(p));
    } catch (e) {
      throw mapError(e, p);
    }
  }

  async putContent(p: string, content: Buffer | string, opts: { sync?: boolean } = {}): Promise<void> {
    const full = this.full(p);
    // gc removes a layer link's directory once it has emptied it (deleteEmptyDir), and a push
    // that links the same blob meanwhile can find that directory gone between its mkdir and
    // its temp file or rename (ENOENT): it writes again, into a directory made anew. rmdir
    // only takes an empty directory, so a link already written is never lost this way.
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.putContentOnce(full, content, opts);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT' || attempt >= PUT_ATTEMPTS) throw e;
      }
    }
  }

  private async putContentOnce(full: string, content: Buffer | string, opts: { sync?: boolean }): Promise<void> {
    if (opts.sync !== false && this.fsync) return writeFileAtomic(full, content);
    await fsp.mkdir(path.dirname(full), { recursive: true });
    const tmp = tempName(full);
    await fsp.writeFile(tmp, content, { flag: 'wx' });
    try {
      await fsp.rename(tmp, full);
    } catch (e) {
      await fsp.rm(tmp, { force: true });
      throw e;
    }
  }

  async reader(p: string, offset = 0, end?: number): Promise<Readable> {
    const full = this.full(p);
    // Open first so a missing file is reported before any response headers go out.
    let fh: fsp.FileHandle;
    try {
      fh = await fsp.open(full, 'r');
    } catch (e) {
      throw mapError(e, p);
    }
    return createReadStream('', { fd: fh, start: offset, end, highWaterMark: STREAM_CHUNK, autoClose: true });
  }

  async sender(p: string, offset = 0, end?: number): Promise<(dest: Writable) => Promise<void>> {
    let fh: fsp.FileHandle;
    try {
      fh = await fsp.open(this.full(p), 'r');
    } catch (e) {
      throw mapError(e, p);
    }
    const last = end ?? (await fh.stat()).size - 1;
    return (dest) => sendRange(fh, offset, last, dest);
  }

  async writer(p: string, append: boolean): Promise<FileWriter> {
    const full = this.full(p);
    const flags = append ? 'a' : 'w';
    let fh: fsp.FileHandle;
    try {
      fh = await fsp.open(full, flags);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      await fsp.mkdir(path.dirname(full), { recursive: true });
      fh = await fsp.open(full, flags);
    }
    const size = append ? (await fh.stat()).size : 0;
    return new FsWriter(fh, full, size, this.fsync);
  }

  async stat(p: string): Promise<FileInfo> {
    try {
      const st = await fsp.stat(this.full(p));
      return { path: p, size: st.size, modTime: st.mtime, isDir: st.isDirectory() };
    } catch (e) {
      throw mapError(e, p);
    }
  }

  async list(p: string): Promise<string[]> {
    let entries: string[];
    try {
      entries = await fsp.readdir(this.full(p));
    } catch (e) {
      throw mapError(e, p);
    }
    const base = p.endsWith('/') ? p : `${p}/`;
    return entries.filter((n) => !n.startsWith('.tmp-')).sort().map((n) => base + n);
  }

  async move(source: string, dest: string): Promise<void> {
    const to = this.full(dest);
    await fsp.mkdir(path.dirname(to), { recursive: true });
    try {
      await fsp.rename(this.full(source), to);
    } catch (e) {
      throw mapError(e, source);
    }
    if (this.fsync) await fsyncDir(path.dirname(to));
  }

  async delete(p: string): Promise<void> {
    await fsp.rm(this.full(p), { recursive: true, force: true });
  }

  async deleteEmptyDir(p: string): Promise<void> {
    try {
      await fsp.rmdir(this.full(p));
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTEMPTY' || code === 'EEXIST') return;
      throw mapError(e, p);
    }
  }

  async touch(p: string): Promise<void> {
    const now = new Date();
    try {
      await fsp.utimes(this.full(p), now, now);
    } catch (e) {
      throw mapError(e, p);
    }
  }

  /**
   * O_EXCL creation of a file naming its holder (host and pid). A lock whose holder is a dead
   * process on this host (a server killed mid-request) is taken over; one held on another host
   * (a shared network filesystem) is left alone, and goes with its upload when uploads are purged.
   */
  async lockFile(p: string): Promise<(() => Promise<void>) | undefined> {
    const full = this.full(p);
    const me = `${os.hostname()} ${process.pid}`;
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        await fsp.writeFile(full, me, { flag: 'wx' });
        return async () => { await fsp.rm(full, { force: true }); };
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'ENOENT' || code === 'ENOTDIR') throw new PathNotFoundError(p);
        if (code !== 'EEXIST') throw e;
      }
      const holder = await fsp.readFile(full, 'utf8').catch(() => '');
      const [host, pid] = holder.split(' ');
      if (!pid) {
        // Created but not written yet by its holder, or left empty by a crash long ago.
        const st = await fsp.stat(full).catch(() => undefined);
        if (st && Date.now() - st.mtimeMs < 10_000) return undefined;
      } else if (host !== os.hostname() || processAlive(Number(pid))) {
        return undefined;
      }
      await fsp.rm(full, { force: true }); // its holder is gone (or it was never written out)
    }
    return undefined;
  }

  async walk(p: string, fn: (info: FileInfo) => Promise<void | 'skip'> | void | 'skip'): Promise<void> {
    let entries: Dirent[];
    try {
      entries = await fsp.readdir(this.full(p), { withFileTypes: true });
    } catch (e) {
      const err = mapError(e, p);
      if (err instanceof PathNotFoundError) return;
      throw err;
    }
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    const base = p.endsWith('/') ? p : `${p}/`;
    for (const ent of entries) {
      if (ent.name.startsWith('.tmp-')) continue;
      const child = base + ent.name;
      let info: FileInfo;
      try {
        info = await this.stat(child);
      } catch (e) {
        if (e instanceof PathNotFoundError) continue; // removed concurrently
        throw e;
      }
      const r = await fn(info);
      if (info.isDir && r !== 'skip') await this.walk(child, fn);
    }
  }
}

class FsWriter implements FileWriter {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private written: number;
  private closed = false;
  // One 1 MiB write may be in flight while the next MiB arrives from the socket, so network
  // receive and disk write overlap; memory stays bounded at two chunks per writer.
  private inflight: Promise<void> | undefined;
  private inflightBytes = 0;
  constructor(private readonly fh: fsp.FileHandle, private readonly full: string, private readonly openedSize: number, private readonly fsync: boolean) {
    this.written = openedSize;
  }

  get size(): number {
    return this.written + this.inflightBytes + this.pendingBytes;
  }

  // Coalesce socket-sized chunks (16-64 KiB) into >= 1 MiB writes.
  async write(chunk: Buffer): Promise<void> {
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    if (this.pendingBytes >= STREAM_CHUNK) {
      await this.drain();
      this.inflight = this.writeOut();
      this.inflight.catch(() => {}); // surfaced by the next drain()
    }
  }

  private async writeOut(): Promise<void> {
    const bufs = this.pending;
    const n = this.pendingBytes;
    this.pending = [];
    this.pendingBytes = 0;
    this.inflightBytes = n;
    let off = 0;
    while (off < n) {
      const { bytesWritten } = await this.fh.writev(off === 0 ? bufs : [Buffer.concat(bufs).subarray(off)]);
      off += bytesWritten;
    }
    this.inflightBytes = 0;
    this.written += n;
  }

  private async drain(): Promise<void> {
    const p = this.inflight;
    this.inflight = undefined;
    if (p) await p;
  }

  private async flush(): Promise<void> {
    await this.drain();
    if (this.pendingBytes > 0) await this.writeOut();
  }

  async commit(): Promise<void> {
    await this.flush();
    if (this.fsync) await this.fh.sync();
    await this.close();
  }

  async cancel(): Promise<void> {
    await this.close();
    await fsp.rm(this.full, { force: true });
  }

  async discard(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.pending = [];
    this.pendingBytes = 0;
    try {
      await this.drain().catch(() => {}); // its bytes are cut off below either way
      await this.fh.truncate(this.openedSize);
      this.written = this.openedSize;
    } finally {
      await this.fh.close();
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    try {
      await this.flush();
    } finally {
      this.closed = true;
      await this.fh.close();
    }
  }
}

function processAlive(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function mapError(e: unknown, p: string): Error {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ENOENT' || code === 'ENOTDIR') return new PathNotFoundError(p);
  return e as Error;
}
