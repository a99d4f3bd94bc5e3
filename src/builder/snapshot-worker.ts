// A large build step's snapshot (tar, diffID hash, compression, the blob's hash) runs in one
// worker thread per process (snapshot-worker-main.ts) on a machine of 4 or more CPUs: the
// stream pipeline it replaced spent 185-310 ms of the main thread's CPU on a 40 MB COPY and held
// up every fs.promises call of the RUN steps that ran on the snapshot meanwhile (docs/builder.md,
// "The 40 MB cold build's critical path"). With fewer CPUs the main thread runs the worker's
// block path itself (~100 ms for 40 MB, a 1 MiB block a turn): there the worker's start costs
// more than it frees (workerPays). Small trees never go to the worker (snapshotPlace).
// The worker starts with the first snapshot that needs it, is unref'd while idle (it never keeps
// a process alive), and is closed when the last build of the process ends (index.ts's build()).
import { lstatSync, readdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Worker } from 'node:worker_threads';
import type { Compression } from '../image/media-types.js';
import type { ContentStore, WrittenBlob } from '../store/content-store.js';
import { UserError } from '../util/errors.js';
import { span } from '../util/trace.js';

/** What the main thread asks: tar `dir` (an overlay upper dir) into the new temp file `file`. */
export interface SnapshotJob {
  type: 'snapshot';
  id: number;
  dir: string;
  file: string;
  compression: Compression;
}

/** What the main thread sends the worker: a job, or the word that a large layer is coming. */
export type SnapshotRequest = SnapshotJob | { type: 'start-gzip-thread' };

/** The worker's answers to a job: the diffID when the tar ends, then the blob or an error. */
export type SnapshotReply =
  | { id: number; type: 'ready' }
  | { id: number; type: 'diffID'; diffID: string }
  | { id: number; type: 'blob'; digest: string; size: number }
  | { id: number; type: 'error'; message: string; code?: string; user: boolean; stack?: string };

interface PendingJob {
  diffID(d: string): void;
  blob(b: { digest: string; size: number }): void;
  fail(e: Error): void;
}

let worker: Worker | undefined;
let nextId = 1;
const pending = new Map<number, PendingJob>();
/** closeSnapshotWorker calls waiting for the jobs in flight to settle. */
const idleWaiters: (() => void)[] = [];
/** Builds running in this process (index.ts): the worker is closed when the last one ends. */
let builds = 0;

/** The worker's entry beside this module's code: dist/cli/*.cjs for the bundles, dist/src/builder/*.js per file. */
function workerEntry(): string {
  const here = fileURLToPath(import.meta.url);
  return path.join(path.dirname(here), `snapshot-worker-main${path.extname(here)}`);
}

async function startedWorker(): Promise<Worker> {
  if (worker) return worker;
  const { Worker } = await import('node:worker_threads');
  if (worker) return worker;
  const endStart = span('snapshot-worker.start');
  const w = new Worker(workerEntry());
  worker = w;
  w.on('message', (r: SnapshotReply) => {
    if (r.type === 'ready') { endStart(); return; }
    const job = pending.get(r.id);
    if (!job) return;
    if (r.type === 'diffID') { job.diffID(r.diffID); return; }
    settle(r.id);
    if (r.type === 'blob') job.blob(r);
    else job.fail(replyError(r));
  });
  // An uncaught error in the worker (or its exit) ends it: the jobs it had fail, and the next
  // snapshot starts a new one. Their temp files are in the store's tmp/, which gc sweeps.
  const lost = (e: Error) => {
    if (worker === w) { worker = undefined; gzipThreadAsked = false; }
    for (const [id, job] of [...pending]) { settle(id); job.fail(e); }
  };
  w.on('error', (e) => lost(new Error(`the snapshot worker failed: ${e.message}`, { cause: e })));
  w.on('exit', (code) => lost(new Error(`the snapshot worker exited (code ${code}) before the snapshot was written`)));
  w.unref();
  return w;
}

function settle(id: number): void {
  pending.delete(id);
  if (pending.size > 0) return;
  worker?.unref();
  for (const resolve of idleWaiters.splice(0)) resolve();
}

function replyError(r: Extract<SnapshotReply, { type: 'error' }>): Error {
  const e: Error & { code?: string } = r.user ? new UserError(r.message) : new Error(r.message);
  if (r.code) e.code = r.code;
  if (r.stack) e.stack = r.stack;
  return e;
}

/** A tree with this much file data, or this many entries, is snapshotted in the worker. */
const WORKER_BYTES = 4 << 20;
const WORKER_ENTRIES = 2000;
/**
 * With the worker running, a tree with less file data and fewer entries than this is
 * snapshotted in memory (rootfs.ts snapshotLayerInMemory), the rest in the worker: its tar is a
 * few KiB, and deflating it here costs less than a message to the worker and back.
 */
const MEMORY_BYTES = 256 << 10;
const MEMORY_ENTRIES = 256;
/**
 * Without the worker, a tree below WORKER_BYTES and WORKER_ENTRIES is tarred on this thread
 * either way (streamed or in memory, the same synchronous walk): with less file data than this
 * it is tarred in memory, whose gzipSync costs at most ~15 ms here (level 6 on text), and a
 * larger one streams, its blocks deflated on the thread pool.
 */
const MEMORY_ALONE_BYTES = 1 << 20;

/**
 * Where a step's snapshot is taken: in memory, streamed on the main thread, in the worker, or
 * (a large tree with fewer than 4 CPUs) on the main thread through the worker's block path.
 */
export type SnapshotPlace = 'memory' | 'thread' | 'worker' | 'blocks';

/**
 * Where to snapshot `dir`. The worker repays its start (~30 ms of CPU idle, 45-60 ms beside a
 * cold build's other steps, on 2 cores) only for a tree of at least WORKER_BYTES of files or
 * WORKER_ENTRIES entries; the walk stops at either, so it costs at most that many lstat calls.
 * Smaller trees (a RUN's files, ADD's unpacked site of 200 pages) stay on this thread: in memory
 * below MEMORY_ALONE_BYTES, else streamed. Once the worker runs, every tree but a tiny one goes
 * there (and the walk stops at the memory limits).
 */
export function snapshotPlace(dir: string): SnapshotPlace {
  const running = worker !== undefined;
  const limit = running ? { bytes: MEMORY_BYTES, entries: MEMORY_ENTRIES } : { bytes: WORKER_BYTES, entries: WORKER_ENTRIES };
  const count = { bytes: 0, entries: 0 };
  // An unreadable tree goes to the worker, whose tar reports what it could not read.
  const large: SnapshotPlace = running || workerPays() ? 'worker' : 'blocks';
  try { if (countTree(dir, count, limit)) return large; } catch { return large; }
  return running || count.bytes < MEMORY_ALONE_BYTES ? 'memory' : 'thread';
}

/**
 * Adds the sizes of the files below `dir` and the number of entries to `count`, stopping (true)
 * as soon as either reaches its `limit`: at most that many lstat calls.
 */
function countTree(dir: string, count: { bytes: number; entries: number }, limit: { bytes: number; entries: number }): boolean {
  for (const name of readdirSync(dir)) {
    const st = lstatSync(path.join(dir, name));
    count.bytes += st.isFile() ? st.size : 0;
    if (++count.entries >= limit.entries || count.bytes >= limit.bytes) return true;
    if (st.isDirectory() && countTree(path.join(dir, name), count, limit)) return true;
  }
  return false;
}

/** Whether `dir` is large enough for the worker thread (snapshotPlace: there, or its block path here where the worker does not pay). */
export function worthTheWorker(dir: string): boolean {
  const place = snapshotPlace(dir);
  return place === 'worker' || place === 'blocks';
}

/**
 * Whether COPY sources (files and trees of the build context) hold WORKER_BYTES of file data:
 * the layer's snapshot then repays the worker and its second thread (where workerPays),
 * started with the step. The walk stops at WORKER_BYTES or WORKER_ENTRIES (many small files: a
 * few MiB at most; workerStarterForCopy starts the worker for them while they are copied).
 */
export function holdsLargeLayer(entries: { hostPath: string; stat: { isFile(): boolean; isDirectory(): boolean; size: number } }[]): boolean {
  const count = { bytes: 0, entries: 0 };
  const limit = { bytes: WORKER_BYTES, entries: WORKER_ENTRIES };
  try {
    for (const e of entries) {
      count.bytes += e.stat.isFile() ? e.stat.size : 0;
      if (count.bytes >= WORKER_BYTES) break;
      if (e.stat.isDirectory() && countTree(e.hostPath, count, limit)) break;
      if (count.entries >= WORKER_ENTRIES) break;
    }
  } catch { /* unreadable: the COPY reports it */ }
  return count.bytes >= WORKER_BYTES;
}

let gzipThreadAsked = false;

/**
 * Starts the worker now, if it is not running, so its start (tens of ms of thread and module
 * start-up) overlaps the step that will need it rather than delaying that step's snapshot.
 * `gzipThread` (a COPY of a large tree is coming): the worker starts its second thread too,
 * ~40 ms more CPU that only a layer of several MiB repays (snapshot-worker-main.ts).
 */
export function prestartSnapshotWorker(opts: { gzipThread?: boolean } = {}): void {
  startedWorker().then((w) => {
    if (!opts.gzipThread || gzipThreadAsked) return;
    gzipThreadAsked = true;
    w.postMessage({ type: 'start-gzip-thread' } satisfies SnapshotRequest);
  }).catch(() => { /* the snapshot's own start reports it */ });
}

/**
 * Whether a large layer's snapshot goes to the worker and its gzip thread: on a machine with 4
 * or more CPUs. On 2, a cold build's RUNs and the main thread leave about one CPU to the
 * snapshot while it runs, so the threads gain little and their starts (~40 ms of CPU each,
 * beside the COPY's copy) cost more: the main thread takes the snapshot through the same block
 * path instead (rootfs.ts snapshotLayerInBlocks), between its other work. The 40 MB cold build
 * without the gzip thread, 4 x 15 rounds interleaved at load 3-4: wall -62 / -36 / -27 / -28 ms
 * paired, CPU -47 / -62 / -54 / -39; without the worker either, 2 x 15 at load 6: wall -17 /
 * -17, CPU -40 / -51.
 */
export function workerPays(): boolean {
  return (os.availableParallelism?.() ?? os.cpus().length) >= 4;
}

/**
 * For a copy whose size is not known before it runs (COPY --from another stage or image, a
 * context tree of many small files): told of each entry copied (its source's lstat), it starts
 * the worker once the files reach WORKER_BYTES (with its gzip thread) or the entries
 * WORKER_ENTRIES, the sizes at which snapshotPlace sends the layer there, so the start overlaps
 * the rest of the copy. A smaller copy never starts it.
 */
export function workerStarterForCopy(): (stat: { isFile(): boolean; size: number }) => void {
  let bytes = 0;
  let entries = 0;
  let started = false;
  return (stat) => {
    if (bytes >= WORKER_BYTES) return;
    bytes += stat.isFile() ? stat.size : 0;
    if (bytes >= WORKER_BYTES) { prestartSnapshotWorker({ gzipThread: true }); return; }
    if (!started && ++entries >= WORKER_ENTRIES) { started = true; prestartSnapshotWorker(); }
  };
}

/**
 * Snapshots `dir` in the worker: `diffID` resolves when the tar has ended (the dir is no longer
 * read), `blob` once the compressed blob is fsynced and renamed into the store. On any failure
 * both reject, and the temp file is gone (the worker removes it; a killed process leaves it to
 * gcStore's sweep of tmp/).
 */
export function snapshotInWorker(store: ContentStore, dir: string, compression: Compression): { diffID: Promise<string>; blob: Promise<WrittenBlob> } {
  const file = store.tempBlobPath();
  const id = nextId++;
  let diffIDDone!: (d: string) => void;
  let diffIDFailed!: (e: Error) => void;
  const diffID = new Promise<string>((resolve, reject) => { diffIDDone = resolve; diffIDFailed = reject; });
  const written = new Promise<{ digest: string; size: number }>((resolve, reject) => {
    pending.set(id, {
      diffID: diffIDDone,
      blob: resolve,
      fail: (e) => { diffIDFailed(e); reject(e); },
    });
  });
  const started = startedWorker().then((w) => {
    // Referenced while a job is in flight: the process waits for its reply.
    w.ref();
    w.postMessage({ type: 'snapshot', id, dir, file, compression } satisfies SnapshotRequest);
  });
  started.catch((e: Error) => { pending.get(id)?.fail(e); settle(id); });
  const blob = written.then((b) => store.adoptTempBlob(file, b));
  diffID.catch(() => {});
  blob.catch(() => {});
  return { diffID, blob };
}

/** Whether this process has a snapshot worker thread now (tests: a build closes it when it ends). */
export function snapshotWorkerRunning(): boolean {
  return worker !== undefined;
}

/** A build of this process starts: the worker stays (once started) until the last one ends. */
export function buildStarted(): void {
  builds++;
}

/** A build ended: with none left, the worker is closed once its jobs have settled. */
export async function buildEnded(): Promise<void> {
  builds--;
  if (builds > 0) return;
  await closeSnapshotWorker();
}

/** Closes the worker after the jobs in flight have settled (their temp files removed or adopted). */
export async function closeSnapshotWorker(): Promise<void> {
  while (pending.size > 0) await new Promise<void>((resolve) => idleWaiters.push(resolve));
  const w = worker;
  if (!w || builds > 0) return;
  worker = undefined;
  gzipThreadAsked = false;
  await w.terminate();
}
