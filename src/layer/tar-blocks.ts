// A directory's tar in fixed-size blocks, with file contents read straight into the block
// (one copy, from the page cache) instead of into a buffer per file that a batcher then copies
// again. The snapshot worker fills ParallelGzip-sized blocks this way and hashes and frames
// them without a stream in between (snapshot-worker-main.ts). Reads are synchronous: the
// worker thread has nothing else to do meanwhile, and the main thread never uses this.
import { closeSync, fstatSync, openSync, readSync, type promises as fsp } from 'node:fs';
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

/** Blocks whose compression is in flight on the thread pool, beyond the one being filled. */
const GZIP_IN_FLIGHT = Math.max(2, os.availableParallelism?.() ?? os.cpus().length) + 1;
/** Blocks in memory at most: filled, compressing or being written. */
const GZIP_BLOCKS = 2 * GZIP_IN_FLIGHT + 2;

/**
 * The gzip of `dir`'s tar as an overlay upper dir (createLayer's bytes) written to `writer`, with
 * no stream in between: the tar is read straight into GZIP_BLOCK-sized blocks (TarBlockReader),
 * each hashed into the diffID and handed to GzipBlocks (the very blocks ParallelGzip cuts, so
 * the same bytes as createLayer's), and the compressed pieces are hashed and written in order
 * while later blocks compress. A block is refilled once its pieces are written.
 */
export async function gzipTarFile(dir: string, writer: BlockFileWriter, onDiffID: (d: string) => void): Promise<{ digest: string; size: number }> {
  const reader = new TarBlockReader(tarPieces(dir, { overlayUpper: true }));
  // The probe on this thread: an async zlib call costs the calling thread more than the level-1
  // deflate of the 32 KiB of samples itself (measured in the worker: ~0.9 ms vs ~0.5 ms a block).
  const gzip = new GzipBlocks(undefined, true);
  const diff = createHash('sha256');
  const free: Buffer[] = [];
  let blocks = 0;
  const inFlight: { out: Promise<Buffer | Buffer[]>; block: Buffer }[] = [];
  const drainTo = async (limit: number) => {
    while (inFlight.length > limit) {
      const { out, block } = inFlight.shift()!;
      const pieces = await out;
      // The pieces are views of the block: it is refilled only once they are written.
      writer.write(Array.isArray(pieces) ? pieces : [pieces]).then(() => free.push(block), () => {});
    }
  };
  const take = async (): Promise<Buffer> => {
    if (!free.length && blocks >= GZIP_BLOCKS) await writer.oldestWritten();
    const block = free.pop();
    if (block) return block;
    blocks++;
    return Buffer.allocUnsafeSlow(GZIP_BLOCK);
  };
  try {
    void writer.write([GZIP_HEADER]);
    let block = await take();
    let filled = reader.fill(block);
    for (;;) {
      // One block ahead: the last block (the one with the final flag) must be known as such.
      const next = filled === GZIP_BLOCK ? await take() : undefined;
      const nextFilled = next ? reader.fill(next) : 0;
      const last = nextFilled === 0;
      const data = block.subarray(0, filled);
      diff.update(data);
      inFlight.push({ out: gzip.start(data, last), block });
      if (last) break;
      await drainTo(GZIP_IN_FLIGHT);
      // Stored blocks settle as microtasks: a turn of the event loop lets another job's message
      // in (a RUN step's small snapshot), which then runs between this one's blocks.
      await new Promise<void>((resolve) => setImmediate(resolve));
      block = next!;
      filled = nextFilled;
    }
    // The tar has ended: the upper dir is no longer read, and the step's cache key can use this.
    onDiffID(`sha256:${diff.digest('hex')}`);
    await drainTo(0);
    void writer.write([gzip.trailer()]);
    return await writer.end();
  } finally {
    reader.close();
    // A failure leaves compressions and writes in flight: they settle before the file is closed.
    await Promise.allSettled(inFlight.map((f) => f.out));
    await writer.settled();
  }
}

/**
 * The blob file of a gzip snapshot: pieces are hashed as they come and written at their offset
 * with one writev each, several in flight on the thread pool (positional writes need no order),
 * so the next block never waits for the previous one's write.
 */
export class BlockFileWriter {
  private readonly hash = createHash('sha256');
  private size = 0;
  private readonly writes: Promise<void>[] = [];
  private failed: unknown;

  constructor(private readonly fh: fsp.FileHandle) {}

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
    return w;
  }

  /** Resolves when the oldest write in flight has ended (at once when none is). */
  async oldestWritten(): Promise<void> {
    await this.writes[0]?.catch(() => {});
    if (this.failed) throw this.failed;
  }

  /** Waits for every write; the blob's digest and size (the file is not synced here). */
  async end(): Promise<{ digest: string; size: number }> {
    while (this.writes.length) await this.writes[0]!.catch(() => {});
    if (this.failed) throw this.failed;
    return { digest: `sha256:${this.hash.digest('hex')}`, size: this.size };
  }

  /** Resolves when no write is in flight (before the file is closed after a failure). */
  async settled(): Promise<void> {
    while (this.writes.length) await this.writes[0]!.catch(() => {});
  }
}

async function writeAll(fh: fsp.FileHandle, pieces: Buffer[], n: number, at: number): Promise<void> {
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
