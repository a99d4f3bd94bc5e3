// A directory's tar in fixed-size blocks, with file contents read straight into the block
// (one copy, from the page cache) instead of into a buffer per file that a batcher then copies
// again. The snapshot worker fills ParallelGzip-sized blocks this way and hashes and frames
// them without a stream in between (snapshot-worker-main.ts), and so does the main thread for a
// large layer on a machine of fewer than 4 CPUs (gzipSnapshotIntoFile). Reads are synchronous,
// a block at a time: tarIntoBlocks lets the event loop in after each.
import { closeSync, fstatSync, openSync, readSync, promises as fsp } from 'node:fs';
import os from 'node:os';
import { changedSize, tarPieces, unreadable, type TarPiece } from './create.js';
import { GzipBlocks, GZIP_BLOCK, GZIP_HEADER } from './parallel-gzip.js';
import { createPooledSha256 } from '../util/sha256-pool.js';

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
  // Off this thread (sha256-pool.ts): this thread fills the next block meanwhile. A block goes to
  // the sink only once it is hashed: the sink may hand it to another thread or refill it.
  const diff = createPooledSha256();
  let handed: Promise<void> = Promise.resolve();
  // A failed hash stops the loop at once: its block never reaches the sink, whose take() would
  // otherwise wait for that block forever once every block is out.
  let stop!: (e: unknown) => void;
  const stopped = new Promise<never>((_, reject) => { stop = reject; });
  stopped.catch(() => {});
  try {
    for (;;) {
      const block = await Promise.race([sink.take(), stopped]);
      const filled = reader.fill(block);
      // The last block (the one with the final flag) must be known as such when it is handed on.
      const last = filled < block.length || reader.atEnd();
      const hashed = diff.update(block.subarray(0, filled));
      // The CRC-32 is the sink's (GzipBlocks): this thread also reads every byte and hashes it,
      // the gzip side only hashes what it writes (its probe is ~40 us a block for noise).
      handed = Promise.all([handed, hashed]).then(() => sink.put(block, filled, last));
      handed.catch(stop);
      if (last) {
        await handed;
        return await diff.digest();
      }
      // Stored blocks settle as microtasks: a turn of the event loop lets another job's message
      // in (a RUN step's small snapshot), which then runs between this one's blocks.
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  } finally {
    await handed.catch(() => {});
    await diff.close();
    reader.close();
  }
}

/**
 * The blocks of a tar gzipped into a file: each handed to GzipBlocks (the very blocks
 * ParallelGzip cuts, so createLayer's bytes), the output hashed and written in order while later
 * blocks compress. A block is free again once it is deflated or copied out as stored blocks:
 * kept for take(), or given to `release` (the gzip thread sends it back to the thread that
 * fills them).
 */
export class GzipFileSink implements BlockSink {
  // The probe on this thread: an async zlib call costs the calling thread more than the level-1
  // deflate of the 32 KiB of samples itself (measured in the worker: ~0.9 ms vs ~0.5 ms a block).
  private readonly gzip = new GzipBlocks(undefined, true);
  private readonly writer: BlockFileWriter;
  private readonly free: Buffer[] = [];
  private blocks = 0;
  /** Buffers for stored blocks laid out contiguously (see put), reused: a fresh MiB is page faults. */
  private readonly spareOut: Buffer[] = [];
  /** Those being written; while GZIP_BLOCKS are, a block copied into one is held, not freed. */
  private outs = 0;
  private readonly held: Buffer[] = [];
  /** The blocks' outputs, written strictly in order. */
  private ordered: Promise<void> = Promise.resolve();
  private failed: unknown;
  private wake: (() => void)[] = [];

  /**
   * `release`: where free blocks go instead of this sink's take(); `onFail`: told of the first
   * failure at once (a put() has no result to carry it; finish() rejects with it as well).
   */
  constructor(fh: Pick<fsp.FileHandle, 'write' | 'datasync'>, private readonly opts: { release?: (block: Buffer) => void; onFail?: (e: unknown) => void; earlySync?: number } = {}) {
    this.writer = new BlockFileWriter(fh, opts.earlySync);
    this.writer.write(GZIP_HEADER).catch(() => {});
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
      if (!Array.isArray(pieces)) {
        // Deflate output is a buffer of its own: the block is free now.
        this.freed(block);
        this.writer.write(pieces).catch((e: unknown) => this.fail(e));
        return;
      }
      // Stored blocks are the block's bytes between 5-byte headers. One contiguous buffer (a
      // copy of ~0.1 ms a MiB) is one hash update on the writer's thread-pool hash instead of
      // ~34, and frees the block at once.
      const bytes = pieces.reduce((n, b) => n + b.length, 0);
      const contiguous = this.takeOut(bytes);
      let at = 0;
      for (const piece of pieces) at += piece.copy(contiguous, at);
      this.freed(block);
      this.writer.write(contiguous.subarray(0, bytes)).then(() => this.outWritten(contiguous), (e: unknown) => this.fail(e));
    });
    this.ordered.catch((e: unknown) => this.fail(e));
  }

  private takeOut(bytes: number): Buffer {
    this.outs++;
    const spare = this.spareOut.pop();
    if (spare && spare.length >= bytes) return spare;
    // A block's stored form: its bytes and a 5-byte header per 65535 of them.
    return Buffer.allocUnsafeSlow(Math.max(bytes, GZIP_BLOCK + 5 * Math.ceil(GZIP_BLOCK / 0xffff)));
  }

  /** After the last put: the trailer, every write, and the blob's digest and size (not synced). */
  async finish(): Promise<{ digest: string; size: number }> {
    await this.ordered;
    if (this.failed) throw this.failed;
    this.writer.write(this.gzip.trailer()).catch(() => {});
    return this.writer.end();
  }

  /** Resolves when no compression or write is in flight (before the file is closed after a failure). */
  async settled(): Promise<void> {
    await this.ordered.catch(() => {});
    await this.writer.settled();
  }

  private outWritten(out: Buffer): void {
    this.spareOut.push(out);
    this.outs--;
    const block = this.held.shift();
    if (block) this.freed(block);
  }

  private freed(block: Buffer): void {
    // The tar side waits for free blocks: holding them bounds the copies being written too.
    if (this.outs >= GZIP_BLOCKS) { this.held.push(block); return; }
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
 * Written bytes after which a snapshot's file is datasynced while the rest still compresses: the
 * final fsync then waits for the tail only (measured on the 40 MB layer: the time from the tar's
 * end to the blob 45-89 ms -> 27-60 ms under load 7-8).
 */
export const EARLY_SYNC_BYTES = 8 << 20;

/**
 * The blob file of a gzip snapshot: each buffer is hashed (in order, on the thread pool:
 * sha256-pool.ts) and written at its offset, several writes in flight on the thread pool
 * (positional writes need no order), so the next block never waits for the previous one's.
 */
export class BlockFileWriter {
  private readonly hash = createPooledSha256();
  private size = 0;
  private readonly writes: Promise<void>[] = [];
  private failed: unknown;
  private syncedTo = 0;
  private syncing: Promise<void> | undefined;

  constructor(private readonly fh: Pick<fsp.FileHandle, 'write' | 'datasync'>, private readonly earlySync = EARLY_SYNC_BYTES) {}

  /**
   * Starts hashing and writing `data`; the promise is the end of both (end() reports a failure
   * too). `data` must not change until then.
   */
  write(data: Buffer): Promise<void> {
    if (this.failed) {
      const refused = Promise.reject(this.failed);
      refused.catch(() => {});
      return refused;
    }
    const at = this.size;
    this.size += data.length;
    const w = Promise.all([this.hash.update(data), writeAll(this.fh, data, at)]).then(() => {}).finally(() => { this.writes.splice(this.writes.indexOf(w), 1); });
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

  /** Waits for every write; the blob's digest and size (the file is not synced here). */
  async end(): Promise<{ digest: string; size: number }> {
    await this.drained();
    if (this.failed) throw this.failed;
    return { digest: await this.hash.digest(), size: this.size };
  }

  /** Resolves when no write or hash is in flight, the hash freed (before the file is closed after a failure). */
  async settled(): Promise<void> {
    await this.drained();
    await this.hash.close();
  }

  private async drained(): Promise<void> {
    while (this.writes.length) await this.writes[0]!.catch(() => {});
    await this.syncing;
  }
}

async function writeAll(fh: Pick<fsp.FileHandle, 'write'>, data: Buffer, at: number): Promise<void> {
  // A disk that fills up takes what fits and reports the count: the rest is written again, which
  // then fails with the reason (ENOSPC, EDQUOT) instead of a bare short count.
  let done = 0;
  while (done < data.length) {
    const { bytesWritten } = await fh.write(data, done, data.length - done, at + done);
    if (bytesWritten === 0) throw new Error(`short write: ${done} of ${data.length} bytes`);
    done += bytesWritten;
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
