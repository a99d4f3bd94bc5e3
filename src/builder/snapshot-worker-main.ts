// The build's snapshot worker thread (started by snapshot-worker.ts): a step's upper dir tarred
// (as createLayer writes it), hashed into the diffID, compressed, hashed again and written to a
// temp file of the store, fsynced. All of it is CPU off the main thread, so the main thread is
// free for the steps that run on the snapshot meanwhile. gzip (the default) is split over two
// threads: this one reads the tar straight into 1 MiB blocks and hashes the diffID and the CRC
// (tar-blocks.ts), and a second worker of this same file (role 'gzip', started by the first when
// the main thread says a large COPY is coming, else gzip runs here alone) compresses, hashes and writes the blocks it is sent (the two SHA-256 passes, ~25 ms each for
// 40 MiB, then run side by side). The store renames the file into blobs/
// (ContentStore.adoptTempBlob). scripts/bundle-cli.mjs bundles this entry as
// dist/cli/snapshot-worker-main.cjs; the per-file build runs dist/src/builder/snapshot-worker-main.js.
import { promises as fsp } from 'node:fs';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { parentPort, workerData, Worker, type MessagePort } from 'node:worker_threads';
import { createHash } from 'node:crypto';
import { tarDirectory } from '../layer/create.js';
import { compressor } from '../layer/compression.js';
import { GZIP_BLOCK } from '../layer/parallel-gzip.js';
import { preloadCrc32 } from '../layer/crc32.js';
import { GZIP_BLOCKS, GzipFileSink, tarIntoBlocks, type BlockSink } from '../layer/tar-blocks.js';
import { BlobFileWriter } from '../store/blob-file-writer.js';
import { STREAM_CHUNK } from '../util/fs.js';
import { UserError } from '../util/errors.js';
import type { SnapshotJob, SnapshotReply, SnapshotRequest } from './snapshot-worker.js';

/** What the tar thread tells the gzip thread, per job. */
type GzipRequest =
  | { id: number; type: 'start'; file: string }
  | { id: number; type: 'block'; buffer: ArrayBuffer; length: number; last: boolean }
  | { id: number; type: 'end' }
  | { id: number; type: 'abort' };

/** The gzip thread's answers: a block to refill, the written blob, or why not (the file is gone then). */
type GzipReply =
  | { id: number; type: 'free'; buffer: ArrayBuffer }
  | { id: number; type: 'done'; digest: string; size: number }
  | { id: number; type: 'aborted' }
  | { id: number; type: 'error'; message: string; code?: string; user: boolean; stack?: string };

const port = parentPort;
if (!port) throw new Error('snapshot-worker-main runs as a worker thread (src/builder/snapshot-worker.ts starts it)');

function serveSnapshots(port: MessagePort): void {
  // Started when the main thread says a large layer is coming (a COPY of several MiB of the
  // context): for the few small snapshots of other builds, its start would cost more than it saves.
  let gzip: GzipThread | undefined;
  port.on('message', (m: SnapshotRequest) => {
    if (m.type === 'start-gzip-thread') gzip ??= new GzipThread();
    else void snapshot(port, gzip, m);
  });
  port.postMessage({ id: 0, type: 'ready' } satisfies SnapshotReply);
}

async function snapshot(port: MessagePort, gzip: GzipThread | undefined, job: SnapshotJob): Promise<void> {
  const reply = (r: SnapshotReply) => port.postMessage(r);
  const onDiffID = (diffID: string) => reply({ id: job.id, type: 'diffID', diffID });
  try {
    const blob = job.compression === 'gzip' && gzip?.usable() ? await gzip.snapshot(job, onDiffID) : await snapshotHere(job, onDiffID);
    reply({ id: job.id, type: 'blob', ...blob });
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    reply({ id: job.id, type: 'error', message: err.message ?? String(e), code: err.code, user: e instanceof UserError, stack: err.stack });
  }
}

/** The snapshot on this thread alone: zstd and uncompressed ones, and gzip when the gzip thread is gone. */
async function snapshotHere(job: SnapshotJob, onDiffID: (d: string) => void): Promise<{ digest: string; size: number }> {
  let fh: fsp.FileHandle | undefined;
  let settled: () => Promise<void> = async () => {};
  try {
    fh = await fsp.open(job.file, 'wx');
    let blob: { digest: string; size: number };
    if (job.compression === 'gzip') {
      const sink = new GzipFileSink(fh);
      settled = () => sink.settled();
      onDiffID(await tarIntoBlocks(job.dir, sink));
      blob = await sink.finish();
    } else {
      const writer = new BlobFileWriter(fh, 'sha256');
      settled = () => writer.settled();
      await streamSnapshot(job, writer, onDiffID);
      blob = { digest: writer.digester.digest(), size: writer.digester.size };
    }
    await fh.sync();
    await fh.close();
    fh = undefined;
    return blob;
  } catch (e) {
    await settled();
    await fh?.close().catch(() => {});
    await fsp.rm(job.file, { force: true }).catch(() => {});
    throw e;
  }
}

/** zstd and uncompressed snapshots: the tar stream through the hasher and the compressor. */
async function streamSnapshot(job: SnapshotJob, writer: BlobFileWriter, onDiffID: (d: string) => void): Promise<void> {
  const hash = createHash('sha256');
  const diffHasher = new Transform({
    highWaterMark: STREAM_CHUNK,
    transform(chunk: Buffer, _enc, cb) { hash.update(chunk); cb(null, chunk); },
    // The tar has ended: the upper dir is no longer read, and the step's cache key can use this.
    flush(cb) { onDiffID(`sha256:${hash.digest('hex')}`); cb(); },
  });
  const tar = Readable.from(tarDirectory(job.dir, { overlayUpper: true }), { objectMode: false, highWaterMark: STREAM_CHUNK });
  await pipeline(tar, diffHasher, compressor(job.compression), writer);
}

/** A gzip job as the tar thread sees it: blocks out, their buffers back, then the blob. */
interface RemoteJob {
  free: Buffer[];
  /** Buffers at the gzip thread or being filled here. */
  out: number;
  wake: (() => void)[];
  failed?: Error;
  done(r: Extract<GzipReply, { type: 'done' | 'aborted' | 'error' }>): void;
}

/**
 * The gzip thread, from the tar thread's side: started when the large COPY that will need it
 * starts, so its start-up overlaps the copy. If it fails, the jobs it had fail, and later gzip
 * snapshots run on this thread alone (snapshotHere).
 */
class GzipThread {
  private readonly worker: Worker;
  private lost: Error | undefined;
  private readonly jobs = new Map<number, RemoteJob>();

  constructor() {
    this.worker = new Worker(fileURLToPath(import.meta.url), { workerData: { role: 'gzip' } });
    this.worker.on('message', (r: GzipReply) => this.onReply(r));
    const lose = (e: Error) => {
      this.lost ??= e;
      for (const [id, job] of [...this.jobs]) { this.jobs.delete(id); job.failed ??= e; job.done({ id, type: 'error', message: e.message, user: false }); for (const w of job.wake.splice(0)) w(); }
    };
    this.worker.on('error', (e) => lose(new Error(`the snapshot worker's gzip thread failed: ${e.message}`, { cause: e })));
    this.worker.on('exit', (code) => lose(new Error(`the snapshot worker's gzip thread exited (code ${code})`)));
    // The tar thread's own jobs keep the process's reference (snapshot-worker.ts): not this one.
    this.worker.unref();
  }

  usable(): boolean {
    return this.lost === undefined;
  }

  async snapshot(job: SnapshotJob, onDiffID: (d: string) => void): Promise<{ digest: string; size: number }> {
    const ended = new Promise<Extract<GzipReply, { type: 'done' | 'aborted' | 'error' }>>((resolve) => {
      this.jobs.set(job.id, { free: [], out: 0, wake: [], done: resolve });
    });
    const remote = this.jobs.get(job.id)!;
    const post = (m: GzipRequest, transfer: ArrayBuffer[] = []) => this.worker.postMessage(m, transfer);
    post({ id: job.id, type: 'start', file: job.file });
    const sink: BlockSink = {
      take: async () => {
        for (;;) {
          if (remote.failed) throw remote.failed;
          const block = remote.free.pop();
          if (block) { remote.out++; return block; }
          if (remote.out < GZIP_BLOCKS) { remote.out++; return Buffer.allocUnsafeSlow(GZIP_BLOCK); }
          await new Promise<void>((resolve) => remote.wake.push(resolve));
        }
      },
      put: (block, length, last) => {
        // allocUnsafeSlow: the block is its whole ArrayBuffer, which moves to the gzip thread.
        post({ id: job.id, type: 'block', buffer: block.buffer as ArrayBuffer, length, last }, [block.buffer as ArrayBuffer]);
      },
    };
    let diffID: string;
    try {
      diffID = await tarIntoBlocks(job.dir, sink);
    } catch (e) {
      // The gzip thread removes the temp file; the reply waits for that, as snapshotHere's does.
      if (!remote.failed) post({ id: job.id, type: 'abort' });
      await ended;
      throw e;
    }
    onDiffID(diffID);
    post({ id: job.id, type: 'end' });
    const r = await ended;
    if (r.type === 'done') return { digest: r.digest, size: r.size };
    throw remote.failed ?? new Error('the snapshot was aborted');
  }

  private onReply(r: GzipReply): void {
    const job = this.jobs.get(r.id);
    if (!job) return;
    if (r.type === 'free') {
      job.out--;
      job.free.push(Buffer.from(r.buffer));
      for (const w of job.wake.splice(0)) w();
      return;
    }
    this.jobs.delete(r.id);
    if (r.type === 'error') {
      const e: Error & { code?: string } = r.user ? new UserError(r.message) : new Error(r.message);
      if (r.code) e.code = r.code;
      if (r.stack) e.stack = r.stack;
      job.failed ??= e;
    }
    for (const w of job.wake.splice(0)) w();
    job.done(r);
  }
}

/** The gzip thread: a GzipFileSink per job over the blocks the tar thread sends, in order. */
function serveGzip(port: MessagePort): void {
  const jobs = new Map<number, { sink: Promise<{ fh: fsp.FileHandle; sink: GzipFileSink }>; file: string; failed: boolean }>();
  const reply = (r: GzipReply, transfer: ArrayBuffer[] = []) => port.postMessage(r, transfer);
  /** Closes and removes the temp file after a failure or an abort. */
  const discard = async (id: number) => {
    const job = jobs.get(id);
    if (!job) return;
    jobs.delete(id);
    const opened = await job.sink.catch(() => undefined);
    await opened?.sink.settled();
    await opened?.fh.close().catch(() => {});
    await fsp.rm(job.file, { force: true }).catch(() => {});
  };
  const fail = async (id: number, e: unknown) => {
    const job = jobs.get(id);
    if (!job || job.failed) return;
    job.failed = true;
    await discard(id);
    const err = e as NodeJS.ErrnoException;
    reply({ id, type: 'error', message: err.message ?? String(e), code: err.code, user: e instanceof UserError, stack: err.stack });
  };
  port.on('message', (m: GzipRequest) => {
    if (m.type === 'start') {
      const sink = fsp.open(m.file, 'wx').then((fh) => ({
        fh,
        sink: new GzipFileSink(fh, {
          release: (block) => reply({ id: m.id, type: 'free', buffer: block.buffer as ArrayBuffer }, [block.buffer as ArrayBuffer]),
          // A failed write (ENOSPC) stops the tar thread now, not after the whole tar.
          onFail: (e) => { void fail(m.id, e); },
        }),
      }));
      jobs.set(m.id, { sink, file: m.file, failed: false });
      sink.catch((e: unknown) => fail(m.id, e));
      return;
    }
    const job = jobs.get(m.id);
    if (m.type === 'abort') {
      void (job && !job.failed ? discard(m.id) : Promise.resolve()).then(() => reply({ id: m.id, type: 'aborted' }));
      return;
    }
    if (!job || job.failed) return;
    if (m.type === 'block') {
      // Blocks arrive in order and are put in order: .then callbacks run in registration order.
      void job.sink.then(({ sink }) => sink.put(Buffer.from(m.buffer, 0, GZIP_BLOCK), m.length, m.last), () => {});
      return;
    }
    void job.sink.then(async ({ fh, sink }) => {
      const blob = await sink.finish();
      await fh.sync();
      await fh.close();
      jobs.delete(m.id);
      reply({ id: m.id, type: 'done', ...blob });
    }).catch((e: unknown) => fail(m.id, e));
  });
}

// Last: GzipThread (a class) exists only once its declaration has run. The gzip thread sums
// the CRC of every block: its library loads before the first one comes (crc32.ts).
if ((workerData as { role?: string } | undefined)?.role === 'gzip') { serveGzip(port); preloadCrc32(); }
else serveSnapshots(port);
