// The build's snapshot worker thread (started by snapshot-worker.ts): a step's upper dir tarred
// (as createLayer writes it), hashed into the diffID, compressed, hashed again and written to a
// temp file of the store, fsynced. All of it is CPU on this thread, so the main thread is free
// for the steps that run on the snapshot meanwhile. gzip (the default) takes tar-blocks.ts's
// path: the tar read straight into ParallelGzip's blocks, no stream in between, the same bytes.
// The store renames the file into blobs/
// (ContentStore.adoptTempBlob). scripts/bundle-cli.mjs bundles this entry as
// dist/cli/snapshot-worker-main.cjs; the per-file build runs dist/src/builder/snapshot-worker-main.js.
import { promises as fsp } from 'node:fs';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { parentPort } from 'node:worker_threads';
import { createHash } from 'node:crypto';
import { tarDirectory } from '../layer/create.js';
import { compressor } from '../layer/compression.js';
import { BlockFileWriter, gzipTarFile } from '../layer/tar-blocks.js';
import { BlobFileWriter } from '../store/blob-file-writer.js';
import { STREAM_CHUNK } from '../util/fs.js';
import { UserError } from '../util/errors.js';
import type { SnapshotJob, SnapshotReply } from './snapshot-worker.js';

const port = parentPort;
if (!port) throw new Error('snapshot-worker-main runs as a worker thread (src/builder/snapshot-worker.ts starts it)');

port.on('message', (job: SnapshotJob) => { void snapshot(job); });
port.postMessage({ id: 0, type: 'ready' } satisfies SnapshotReply);

async function snapshot(job: SnapshotJob): Promise<void> {
  const reply = (r: SnapshotReply) => port!.postMessage(r);
  let fh: fsp.FileHandle | undefined;
  let settled: () => Promise<void> = async () => {};
  try {
    fh = await fsp.open(job.file, 'wx');
    const onDiffID = (diffID: string) => reply({ id: job.id, type: 'diffID', diffID });
    let blob: { digest: string; size: number };
    if (job.compression === 'gzip') {
      const writer = new BlockFileWriter(fh);
      settled = () => writer.settled();
      blob = await gzipTarFile(job.dir, writer, onDiffID);
    } else {
      const writer = new BlobFileWriter(fh, 'sha256');
      settled = () => writer.settled();
      await streamSnapshot(job, writer, onDiffID);
      blob = { digest: writer.digester.digest(), size: writer.digester.size };
    }
    await fh.sync();
    await fh.close();
    fh = undefined;
    reply({ id: job.id, type: 'blob', ...blob });
  } catch (e) {
    await settled();
    await fh?.close().catch(() => {});
    await fsp.rm(job.file, { force: true }).catch(() => {});
    const err = e as NodeJS.ErrnoException;
    reply({ id: job.id, type: 'error', message: err.message ?? String(e), code: err.code, user: e instanceof UserError, stack: err.stack });
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
