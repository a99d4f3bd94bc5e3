// The file sink of ContentStore.ingestBlob, loaded by its first write (see hashing-transform.ts
// for why a stream class lives outside content-store.ts).
import type { promises as fsp } from 'node:fs';
import { Writable } from 'node:stream';
import { Digester, type DigestAlgorithm } from '../image/digest.js';
import { STREAM_CHUNK } from '../util/fs.js';
import { BlobVerificationError } from './errors.js';

/**
 * The sink of a blob write: hashes each chunk as it arrives and gathers chunks into writev calls
 * of at least STREAM_CHUNK bytes, one in flight while the next gathers. fs.WriteStream issues one
 * write per socket read (64 KiB) when the disk keeps up, each a thread-pool round trip.
 */
export class BlobFileWriter extends Writable {
  readonly digester: Digester;
  private batch: Buffer[] = [];
  private batchBytes = 0;
  private position = 0;
  private writing: Promise<void> = Promise.resolve();

  constructor(private readonly fh: fsp.FileHandle, algorithm: DigestAlgorithm, private readonly limit?: number) {
    super({ highWaterMark: STREAM_CHUNK });
    this.digester = new Digester(algorithm);
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (e?: Error | null) => void): void {
    this.digester.update(chunk);
    if (this.limit !== undefined && this.digester.size > this.limit) {
      cb(new BlobVerificationError(`blob is larger than the expected ${this.limit} bytes`));
      return;
    }
    this.batch.push(chunk);
    this.batchBytes += chunk.length;
    if (this.batchBytes < STREAM_CHUNK) { cb(); return; }
    this.writing.then(() => { if (!this.destroyed) this.flush(); cb(); }, cb);
  }

  /** A whole blob already in memory (manifests, configs): one hash, one write, no stream. */
  async writeWhole(buf: Buffer): Promise<void> {
    this.digester.update(buf);
    if (this.limit !== undefined && buf.length > this.limit) throw new BlobVerificationError(`blob is larger than the expected ${this.limit} bytes`);
    await this.fh.writeFile(buf);
  }

  override _final(cb: (e?: Error | null) => void): void {
    this.writing.then(() => { if (this.batchBytes > 0) this.flush(); return this.writing; }).then(() => cb(), cb);
  }

  /** Resolves when no write is in flight (before the file is closed after a failure). */
  settled(): Promise<void> {
    return this.writing.catch(() => {});
  }

  private flush(): void {
    const bufs = this.batch;
    const n = this.batchBytes;
    const at = this.position;
    this.batch = [];
    this.batchBytes = 0;
    this.position += n;
    this.writing = this.fh.writev(bufs, at).then(async ({ bytesWritten }) => {
      // A disk that fills up takes what fits and reports the count: the rest is written again,
      // which then fails with the reason (ENOSPC, EDQUOT) instead of a bare short count.
      let done = bytesWritten;
      if (done === n) return;
      const rest = Buffer.concat(bufs, n);
      while (done < n) {
        const { bytesWritten: more } = await this.fh.write(rest, done, n - done, at + done);
        if (more === 0) throw new Error(`short write: ${done} of ${n} bytes`);
        done += more;
      }
    });
    this.writing.catch(() => {}); // reported by the next _write or _final
  }
}
