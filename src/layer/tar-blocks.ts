// A directory's tar in fixed-size blocks, with file contents read straight into the block
// (one copy, from the page cache) instead of into a buffer per file that a batcher then copies
// again. The snapshot worker fills ParallelGzip-sized blocks this way and hashes and frames
// them without a stream in between (snapshot-worker-main.ts), and so does the main thread for a
// large layer on a machine of fewer than 4 CPUs (gzipSnapshotIntoFile). Reads are synchronous,
// a block at a time: tarIntoBlocks lets the event loop in after each.
import { closeSync, fstatSync, openSync, readSync, promises as fsp } from 'node:fs';
import { createHash } from 'node:crypto';
import os from 'node:os';
import { changedSize, tarPieces, unreadable, type TarPiece } from './create.js';
import { GzipBlocks, GZIP_BLOCK, GZIP_HEADER } from './parallel-gzip.js';

export class TarBlockReader {
  /** The piece being copied: bytes from `at`, or an open file with `left` of its bytes to read. */
  private bytes: Buffer | undefined;
  private at = 0;
  private file: { path: string; fd: number; size: number; left: number } | undefined;
  private done = false;

  constructor(private readonly pieces: Iterator<TarPiece>) {}

  /**
   * Fills `block` from the start with the tar's next bytes and returns how many: block.length,
   * or fewer only once the tar has ended (0 after that). A file whose size is not its header's
   * fails with the same error tarDirectory gives.
   */
  fill(block: Buffer): number {
    let filled = 0;
    try {
      while (filled < block.length) {
        if (this.bytes) {
          const n = this.bytes.copy(block, filled, this.at);
          filled += n;
          this.at += n;
          if (this.at === this.bytes.length) this.bytes = undefined;
        } else if (this.file) {
          filled += this.readFile(block, filled);
        } else if (!this.next()) {
          break;
        }
      }
    } catch (e) {
      this.close();
      throw e;
    }
    return filled;
  }

  /** Whether the tar has no bytes left (every piece is non-empty, so one look ahead tells). */
  atEnd(): boolean {
    if (this.bytes || this.file) return false;
    try {
      return !this.next();
    } catch (e) {
      this.close();
      throw e;
    }
  }

  /** Closes the file being read, if any (fill does so itself when it fails). */
  close(): void {
    if (this.file) closeSync(this.file.fd);
    this.file = undefined;
  }

  private next(): boolean {
    if (this.done) return false;
    const r = this.pieces.next();
    if (r.done) { this.done = true; return false; }
    const piece = r.value;
    if (Buffer.isBuffer(piece)) {
      this.bytes = piece;
      this.at = 0;
      return true;
    }
    let fd: number;
    try { fd = openSync(piece.file, 'r'); } catch (e) { throw unreadable(piece.file, e); }
    this.file = { path: piece.file, fd, size: piece.size, left: piece.size };
    // A file that grew since the walk's lstat is refused as tarDirectory refuses it (its header
    // says the old size); one that shrank is caught by the short read below.
    let now: number;
    try { now = fstatSync(fd).size; } catch (e) { throw unreadable(piece.file, e); }
    if (now > piece.size) throw changedSize(piece.file, piece.size, now);
    return true;
  }

  /** Reads the current file's next bytes into block at `offset`; closes the file at its end. */
  private readFile(block: Buffer, offset: number): number {
    const f = this.file!;
    const want = Math.min(f.left, block.length - offset);
    let n: number;
    try { n = readSync(f.fd, block, offset, want, f.size - f.left); } catch (e) { throw unreadable(f.path, e); }
    if (n === 0) throw changedSize(f.path, f.size, f.size - f.left);
    f.left -= n;
    if (f.left === 0) this.close();
    return n;
  }
}

/**
 * Blocks in memory at most per snapshot (being filled, compressing or being written): enough to
 * keep the thread pool's deflates busy (4 threads unless UV_THREADPOOL_SIZE says otherwise), and
 * no more on a machine with many cores: 12 MiB at most.
 */
export const GZIP_BLOCKS = 2 * Math.min(4, Math.max(2, os.availableParallelism?.() ?? os.cpus().length)) + 4;

/**
 * Where tarIntoBlocks hands the tar: GzipFileSink on the same thread, or the snapshot worker's
 * gzip thread (snapshot-worker-main.ts), which runs a GzipFileSink over the blocks it is sent.
 */
export interface BlockSink {
  /** A GZIP_BLOCK-byte buffer to fill: one the sink is done with, or a new one (waits while GZIP_BLOCKS are out). */
  take(): Promise<Buffer>;
  /**
   * The tar's next `length` bytes are at the start of `block`, which the sink owns from now on.
   */
  put(block: Buffer, length: number, last: boolean): void;
}

/**
 * Reads `dir`'s tar as an overlay upper dir (createLayer's bytes) straight into GZIP_BLOCK-sized
 * blocks (TarBlockReader), hashes each into the diffID and hands it to `sink`; resolves to the
 * diffID when the tar has ended (the dir is no longer read then).
 */
export async function tarIntoBlocks(dir: string, sink: BlockSink): Promise<string> {
  const reader = new TarBlockReader(tarPieces(dir, { overlayUpper: true }));
  const diff = createHash('sha256');
  try {
    for (;;) {
      const block = await sink.take();
      const filled = reader.fill(block);
      // The last block (the one with the final flag) must be known as such when it is handed on.
      const last = filled < block.length || reader.atEnd();
      const data = block.subarray(0, filled);
      diff.update(data);
      // The CRC-32 is the sink's (GzipBlocks): this thread also reads every byte and hashes it,
      // the gzip side only hashes what it writes (its probe is ~40 us a block for noise).
      sink.put(block, filled, last);
      if (last) return `sha256:${diff.digest('hex')}`;
      // Stored blocks settle as microtasks: a turn of the event loop lets another job's message
      // in (a RUN step's small snapshot), which then runs between this one's blocks.
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  } finally {
    reader.close();
  }
}

/**
 * The blocks of a tar gzipped into a file: each handed to GzipBlocks (the very blocks
 * ParallelGzip cuts, so createLayer's bytes), the pieces hashed and written in order while later
 * blocks compress. A block is free again once its pieces are written: kept for take(), or given
 * to `release` (the gzip thread sends it back to the thread that fills them).
 */
export class GzipFileSink implements BlockSink {
  // The probe on this thread: an async zlib call costs the calling thread more than the level-1
  // deflate of the 32 KiB of samples itself (measured in the worker: ~0.9 ms vs ~0.5 ms a block).
  private readonly gzip = new GzipBlocks(undefined, true);
  private readonly writer: BlockFileWriter;
  private readonly free: Buffer[] = [];
  private blocks = 0;
  /** The blocks' outputs, written strictly in order. */
  private ordered: Promise<void> = Promise.resolve();
  private failed: unknown;
  private wake: (() => void)[] = [];

  /**
   * `release`: where free blocks go instead of this sink's take(); `onFail`: told of the first
   * failure at once (a put() has no result to carry it; finish() rejects with it as well).
   */
  constructor(fh: Pick<fsp.FileHandle, 'writev' | 'write' | 'datasync'>, private readonly opts: { release?: (block: Buffer) => void; onFail?: (e: unknown) => void; earlySync?: number } = {}) {
    this.writer = new BlockFileWriter(fh, opts.earlySync);
    this.writer.write([GZIP_HEADER]).catch(() => {});
  }

  async take(): Promise<Buffer> {
    for (;;) {
      if (this.failed) throw this.failed;
      const block = this.free.pop();
      if (block) return block;
      if (this.blocks < GZIP_BLOCKS) { this.blocks++; return Buffer.allocUnsafeSlow(GZIP_BLOCK); }
      await new Promise<void>((resolve) => this.wake.push(resolve));
    }
  }

  put(block: Buffer, length: number, last: boolean): void {
    const out = this.gzip.start(block.subarray(0, length), last);
    this.ordered = this.ordered.then(async () => {
      const pieces = await out;
      // The pieces are views of the block: it is free only once they are written.
      const written = this.writer.write(Array.isArray(pieces) ? pieces : [pieces]);
      written.then(() => this.freed(block), (e: unknown) => this.fail(e));
    });
    this.ordered.catch((e: unknown) => this.fail(e));
  }

  /** After the last put: the trailer, every write, and the blob's digest and size (not synced). */
  async finish(): Promise<{ digest: string; size: number }> {
    await this.ordered;
    if (this.failed) throw this.failed;
    this.writer.write([this.gzip.trailer()]).catch(() => {});
    return this.writer.end();
  }

  /** Resolves when no compression or write is in flight (before the file is closed after a failure). */
  async settled(): Promise<void> {
    await this.ordered.catch(() => {});
    await this.writer.settled();
  }

  private freed(block: Buffer): void {
    if (this.opts.release) this.opts.release(block);
    else this.free.push(block);
    for (const w of this.wake.splice(0)) w();
  }

  private fail(e: unknown): void {
    if (this.failed === undefined) this.opts.onFail?.(e);
    this.failed ??= e;
    for (const w of this.wake.splice(0)) w();
  }
}

/**
 * The blob file of a gzip snapshot: pieces are hashed as they come and written at their offset
 * with one writev each, several in flight on the thread pool (positional writes need no order),
 * so the next block never waits for the previous one's write.
 */
/**
 * Written bytes after which a snapshot's file is datasynced while the rest still compresses: the
 * final fsync then waits for the tail only (measured on the 40 MB layer: the time from the tar's
 * end to the blob 45-89 ms -> 27-60 ms under load 7-8).
 */
export const EARLY_SYNC_BYTES = 8 << 20;

export class BlockFileWriter {
  private readonly hash = createHash('sha256');
  private size = 0;
  private readonly writes: Promise<void>[] = [];
  private failed: unknown;

  constructor(private readonly fh: Pick<fsp.FileHandle, 'writev' | 'write' | 'datasync'>, private readonly earlySync = EARLY_SYNC_BYTES) {}

  /** Hashes `pieces` and starts their write; the promise is its end (end() reports a failure too). */
  write(pieces: Buffer[]): Promise<void> {
    if (this.failed) {
      const refused = Promise.reject(this.failed);
      refused.catch(() => {});
      return refused;
    }
    for (const b of pieces) this.hash.update(b);
    const n = pieces.reduce((sum, b) => sum + b.length, 0);
    const at = this.size;
    this.size += n;
    const w = writeAll(this.fh, pieces, n, at).finally(() => { this.writes.splice(this.writes.indexOf(w), 1); });
    w.catch((e: unknown) => { this.failed ??= e; });
    this.writes.push(w);
    if (this.size - this.syncedTo >= this.earlySync && !this.syncing) {
      // What is written so far goes to the disk while the rest compresses: the caller's final
      // fsync then has only the tail to wait for. A failure here is the final fsync's to report.
      const upTo = this.size;
      this.syncing = Promise.all(this.writes).then(() => this.fh.datasync()).then(() => { this.syncedTo = upTo; }, () => {}).finally(() => { this.syncing = undefined; });
    }
    return w;
  }

  private syncedTo = 0;
  private syncing: Promise<void> | undefined;

  /** Resolves when the oldest write in flight has ended (at once when none is). */
  async oldestWritten(): Promise<void> {
    await this.writes[0]?.catch(() => {});
    if (this.failed) throw this.failed;
  }

  /** Waits for every write; the blob's digest and size (the file is not synced here). */
  async end(): Promise<{ digest: string; size: number }> {
    while (this.writes.length) await this.writes[0]!.catch(() => {});
    await this.syncing;
    if (this.failed) throw this.failed;
    return { digest: `sha256:${this.hash.digest('hex')}`, size: this.size };
  }

  /** Resolves when no write is in flight (before the file is closed after a failure). */
  async settled(): Promise<void> {
    while (this.writes.length) await this.writes[0]!.catch(() => {});
    await this.syncing;
  }
}

async function writeAll(fh: Pick<fsp.FileHandle, 'writev' | 'write'>, pieces: Buffer[], n: number, at: number): Promise<void> {
  const { bytesWritten } = await fh.writev(pieces, at);
  // A disk that fills up takes what fits and reports the count: the rest is written again, which
  // then fails with the reason (ENOSPC, EDQUOT) instead of a bare short count.
  let done = bytesWritten;
  if (done === n) return;
  const rest = Buffer.concat(pieces, n);
  while (done < n) {
    const { bytesWritten: more } = await fh.write(rest, done, n - done, at + done);
    if (more === 0) throw new Error(`short write: ${done} of ${n} bytes`);
    done += more;
  }
}

/**
 * `dir`'s gzip snapshot on this thread into the new file `file` (the store's temp file): its
 * tar through tarIntoBlocks into a GzipFileSink, `onDiffID` told as soon as the tar has ended,
 * then the blob's digest and size once the file is written and fsynced. On a failure the file
 * is removed (after the writes in flight have settled) and the promise rejects.
 */
export async function gzipSnapshotIntoFile(dir: string, file: string, onDiffID: (diffID: string) => void): Promise<{ digest: string; size: number }> {
  let fh: fsp.FileHandle | undefined;
  let sink: GzipFileSink | undefined;
  try {
    fh = await fsp.open(file, 'wx');
    sink = new GzipFileSink(fh);
    onDiffID(await tarIntoBlocks(dir, sink));
    const blob = await sink.finish();
    await fh.sync();
    await fh.close();
    fh = undefined;
    return blob;
  } catch (e) {
    await sink?.settled();
    await fh?.close().catch(() => {});
    await fsp.rm(file, { force: true }).catch(() => {});
    throw e;
  }
}
