// The snapshot worker thread (src/builder/snapshot-worker.ts): a step's upper dir tarred, hashed
// and compressed off the main thread must give the very bytes the in-thread path (createLayer,
// which compressSnapshot and SOURCE_DATE_EPOCH builds use) gives; its failures reject the step
// with the file's name and leave no temp file in the store; and a build closes it, so a CLI
// build (bundled or per-file) exits as soon as its image is written.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { promises as fsp, lstatSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { builderFixture, type Fixture } from './helpers.js';
import { snapshotLayerInBlocks, snapshotLayerInMemory, snapshotLayerInThread, snapshotLayerInWorker } from '../../src/builder/rootfs.js';
import { snapshotWorkerRunning, closeSnapshotWorker, worthTheWorker, snapshotPlace, prestartSnapshotWorker, holdsLargeLayer, workerStarterForCopy, workerPays } from '../../src/builder/snapshot-worker.js';
import { createLayer } from '../../src/layer/create.js';
import { ContentStore } from '../../src/store/index.js';
import { CLI_MAIN, PROJECT_ROOT, requireTool, tempDir } from '../helpers/env.js';

let fx: Fixture;
before(async () => { fx = await builderFixture('snapshot-worker'); });

/**
 * An overlay upper dir as GNU tar unpacks it from a PAX archive that Python's tarfile wrote: a
 * whiteout (0/0 character device), an opaque dir (trusted.overlay.opaque), a hardlink pair, a
 * symlink, a FIFO, a setuid file owned by 1000:1000, a user xattr, and a 3 MiB file (past the
 * one-read limit, so it streams).
 */
function foreignUpperDir(): string {
  requireTool('python3');
  const work = tempDir('drydock-snapworker-fixture-');
  const archive = path.join(work, 'upper.tar');
  execFileSync('python3', ['-c', `
import io, sys, tarfile
def entry(name, type, **kw):
    t = tarfile.TarInfo(name); t.type = type; t.mtime = 1600000000; t.mode = kw.pop('mode', 0o644)
    for k, v in kw.items(): setattr(t, k, v)
    return t
with tarfile.open(sys.argv[1], 'w', format=tarfile.PAX_FORMAT) as tar:
    tar.addfile(entry('etc', tarfile.DIRTYPE, mode=0o755))
    data = b'root:x:0:0::/root:/bin/sh\\n'
    tar.addfile(entry('etc/passwd', tarfile.REGTYPE, size=len(data), pax_headers={'SCHILY.xattr.user.origin': 'python'}), io.BytesIO(data))
    tar.addfile(entry('etc/passwd-hard', tarfile.LNKTYPE, linkname='etc/passwd'))
    tar.addfile(entry('etc/motd', tarfile.SYMTYPE, linkname='passwd', mode=0o777))
    tar.addfile(entry('etc/gone', tarfile.CHRTYPE, devmajor=0, devminor=0, mode=0))
    tar.addfile(entry('var', tarfile.DIRTYPE, mode=0o755, pax_headers={'SCHILY.xattr.trusted.overlay.opaque': 'y'}))
    tar.addfile(entry('var/fifo', tarfile.FIFOTYPE, mode=0o600))
    tool = b'#!/bin/sh\\necho tool\\n'
    tar.addfile(entry('var/tool', tarfile.REGTYPE, size=len(tool), mode=0o4755, uid=1000, gid=1000), io.BytesIO(tool))
    big = bytes((i * 7919 // 13) & 0xff for i in range(3 << 20))
    tar.addfile(entry('var/big.bin', tarfile.REGTYPE, size=len(big)), io.BytesIO(big))
`, archive]);
  const upper = path.join(work, 'upper');
  execFileSync('mkdir', [upper]);
  execFileSync('tar', ['--xattrs', '--xattrs-include=*', '--same-owner', '-xpf', archive, '-C', upper]);
  return upper;
}

/** The store's temp files: a snapshot that failed or was adopted leaves none. */
function tempFiles(store: ContentStore): string[] {
  return readdirSync(store.tmpDir).filter((f) => f.startsWith('ingest-'));
}

test('with its gzip thread (asked for by a large COPY), the worker gives the same blob, and a missing tree still fails cleanly', async () => {
  const upper = foreignUpperDir();
  const alone = await (await snapshotLayerInWorker(fx.store, upper, 'gzip')).blob;
  const threads = () => readdirSync('/proc/self/task').length;
  const before = threads();
  prestartSnapshotWorker({ gzipThread: true });
  const split = await snapshotLayerInWorker(fx.store, upper, 'gzip');
  assert.deepEqual(await split.blob, alone);
  assert.ok(threads() > before, `the gzip thread runs (${before} -> ${threads()} threads)`);
  const layer = await createLayer(fx.store, { dir: upper }, { overlayUpper: true, compression: 'gzip' });
  assert.deepEqual(await split.blob, { digest: layer.digest, size: layer.size, mediaType: layer.mediaType, diffID: layer.diffID });
  const gone = snapshotLayerInWorker(fx.store, path.join(upper, 'no-such-dir'), 'gzip');
  await assert.rejects(gone, /is not a directory/);
  assert.deepEqual(tempFiles(fx.store), []);
  await closeSnapshotWorker();
});

test('holdsLargeLayer: a COPY of 4 MiB or more of files asks for the gzip thread, small trees and many tiny files do not', async () => {
  const dir = tempDir('drydock-snapworker-large-');
  const entry = (p: string) => ({ hostPath: p, stat: lstatSync(p) });
  await fsp.mkdir(path.join(dir, 'tree/a/b'), { recursive: true });
  for (let i = 0; i < 5; i++) await fsp.writeFile(path.join(dir, `tree/a/b/f${i}`), Buffer.alloc(1 << 20));
  await fsp.writeFile(path.join(dir, 'big'), Buffer.alloc(4 << 20));
  await fsp.writeFile(path.join(dir, 'small'), 'x');
  await fsp.mkdir(path.join(dir, 'tiny'));
  for (let i = 0; i < 2100; i++) await fsp.writeFile(path.join(dir, `tiny/${i}`), Buffer.alloc(2048));
  assert.equal(holdsLargeLayer([entry(path.join(dir, 'tree'))]), true);
  assert.equal(holdsLargeLayer([entry(path.join(dir, 'big'))]), true);
  assert.equal(holdsLargeLayer([entry(path.join(dir, 'small'))]), false);
  assert.equal(holdsLargeLayer([entry(path.join(dir, 'tiny'))]), false, '2100 files of 2 KiB: the walk stops at 2000 entries');
  assert.equal(holdsLargeLayer([entry(path.join(dir, 'small')), entry(path.join(dir, 'tree/a'))]), true);
});

test('the worker\'s snapshot of a foreign tree has the diffID and blob digest of the in-thread path, gzip and zstd', async () => {
  const upper = foreignUpperDir();
  for (const compression of ['gzip', 'zstd'] as const) {
    const snap = await snapshotLayerInWorker(fx.store, upper, compression);
    const blob = await snap.blob;
    const layer = await createLayer(fx.store, { dir: upper }, { overlayUpper: true, compression });
    assert.equal(snap.diffID, layer.diffID, compression);
    assert.deepEqual(blob, { digest: layer.digest, size: layer.size, mediaType: layer.mediaType, diffID: layer.diffID }, compression);
    assert.ok(await fx.store.hasBlob(blob.digest));
    const inThread = await snapshotLayerInThread(fx.store, upper, compression);
    assert.deepEqual(await inThread.blob, blob, compression);
    if (compression === 'gzip') {
      // The worker's block path on this thread (a large tree with fewer than 4 CPUs).
      const inBlocks = await snapshotLayerInBlocks(fx.store, upper);
      assert.equal(inBlocks.diffID, layer.diffID);
      assert.deepEqual(await inBlocks.blob, blob);
    }
  }
  // In memory (a tiny tree's path, here the whole fixture): the same diffID and blob, gzip and none.
  for (const compression of ['gzip', 'none'] as const) {
    const layer = await createLayer(fx.store, { dir: upper }, { overlayUpper: true, compression });
    const inMemory = await snapshotLayerInMemory(fx.store, upper, compression);
    assert.equal(inMemory.diffID, layer.diffID, compression);
    assert.deepEqual(await inMemory.blob, { digest: layer.digest, size: layer.size, mediaType: layer.mediaType, diffID: layer.diffID }, compression);
  }
  // The blob is the tree's OCI form: the whiteout, the opaque marker and the hardlink are in it.
  const gz = await snapshotLayerInWorker(fx.store, upper, 'gzip');
  const listing = execFileSync('tar', ['-tvzf', fx.store.blobPath((await gz.blob).digest)], { encoding: 'utf8' });
  for (const re of [/^h.* etc\/passwd-hard link to etc\/passwd$/m, /^l.* etc\/motd -> passwd$/m, / etc\/\.wh\.gone$/m, / var\/\.wh\.\.wh\.\.opq$/m, /^p.* var\/fifo$/m, /^-rwsr-xr-x 1000\/1000 .* var\/tool$/m]) {
    assert.match(listing, re);
  }
  assert.deepEqual(tempFiles(fx.store), []);
});

test('without the worker a tree under 1 MiB of files is snapshotted in memory, up to 4 MiB on the main thread; 4 MiB or 2000 entries go to the worker', async () => {
  await closeSnapshotWorker();
  const dir = tempDir('drydock-snapworker-size-');
  await fsp.mkdir(path.join(dir, 'd'));
  await fsp.writeFile(path.join(dir, 'd', 'late'), 'changed\n');
  const tiny = tempDir('drydock-snapworker-tiny-');
  await fsp.cp(dir, tiny, { recursive: true });
  assert.equal(snapshotPlace(dir), 'memory');
  // An unpacked site of 300 pages, 700 KiB: in memory, the worker not started for it.
  const site = tempDir('drydock-snapworker-site-');
  for (let i = 0; i < 300; i++) await fsp.writeFile(path.join(site, `page${i}.html`), Buffer.alloc(2400, `<p>page ${i}</p>`));
  assert.equal(snapshotPlace(site), 'memory');
  await fsp.writeFile(path.join(dir, 'd', 'small'), Buffer.alloc(3 << 20));
  assert.equal(snapshotPlace(dir), 'thread');
  assert.equal(snapshotWorkerRunning(), false);
  // With the worker running, all but a tiny tree go there.
  await (await snapshotLayerInWorker(fx.store, tiny)).blob;
  assert.equal(snapshotWorkerRunning(), true);
  assert.equal(snapshotPlace(dir), 'worker');
  assert.equal(snapshotPlace(site), 'worker');
  assert.equal(snapshotPlace(tiny), 'memory');
  await closeSnapshotWorker();
  assert.equal(worthTheWorker(dir), false);
  await fsp.writeFile(path.join(dir, 'd', 'more'), Buffer.alloc(1 << 20));
  assert.equal(worthTheWorker(dir), true);
  assert.equal(snapshotPlace(dir), workerPays() ? 'worker' : 'blocks', 'the worker where it pays, else its block path on this thread');
  const many = tempDir('drydock-snapworker-many-');
  for (let i = 0; i < 2000; i++) await fsp.mkdir(path.join(many, `d${i}`));
  assert.equal(worthTheWorker(many), true);
  await fsp.rmdir(path.join(many, 'd0'));
  assert.equal(worthTheWorker(many), false);
});

test('workerStarterForCopy starts the worker once a copy reaches 4 MiB of files or 2000 entries, not for a smaller one', async () => {
  await closeSnapshotWorker();
  const file = (size: number) => ({ isFile: () => true, size });
  const dir = { isFile: () => false, size: 4096 };
  // The start is asynchronous (the worker_threads module's import first).
  const running = async () => { for (let i = 0; i < 50 && !snapshotWorkerRunning(); i++) await new Promise((r) => setTimeout(r, 10)); return snapshotWorkerRunning(); };
  // A snapshot in the worker answers once the worker has handled the messages before it (the gzip thread's start among them).
  const tiny = tempDir('drydock-snapworker-starter-');
  await fsp.writeFile(path.join(tiny, 'f'), 'x');
  const threadsOnceUp = async () => { await (await snapshotLayerInWorker(fx.store, tiny)).blob; return readdirSync('/proc/self/task').length; };
  const small = workerStarterForCopy();
  for (let i = 0; i < 1998; i++) small(file(2048));
  small(dir);
  assert.equal(await running(), false, '1998 files of 2 KiB and a directory: under both limits');
  small(file(2048));
  assert.equal(await running(), true, 'the 2000th entry');
  const withoutGzip = await threadsOnceUp();
  await closeSnapshotWorker();
  const large = workerStarterForCopy();
  for (let i = 0; i < 3; i++) large(file(1 << 20));
  assert.equal(await running(), false, '3 MiB of files');
  large(file(1 << 20));
  assert.equal(await running(), true, '4 MiB of files');
  // Its gzip thread too (the copy's step asks for the starter only where workerPays).
  const threads = await threadsOnceUp();
  assert.ok(threads > withoutGzip, `threads ${withoutGzip} -> ${threads}`);
  await closeSnapshotWorker();
});

test('an unreadable file fails the snapshot with its name, and no temp file is left in the store', async () => {
  const upper = foreignUpperDir();
  // A write-only sysfs attribute refuses reads even to root: bound over a file of the tree, it
  // is a regular file of 4096 bytes that cannot be read.
  const victim = path.join(upper, 'etc', 'passwd');
  execFileSync('mount', ['--bind', '/sys/bus/pci/rescan', victim]);
  try {
    const message = new RegExp(`^cannot read ${victim.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: EACCES: permission denied`);
    await assert.rejects(snapshotLayerInWorker(fx.store, upper), (e: Error) => { assert.match(e.message, message); return true; });
    // The worker removed its temp file before it answered.
    assert.deepEqual(tempFiles(fx.store), []);
    // On the main thread the same message; the store's write discards its temp file just after.
    await assert.rejects(snapshotLayerInThread(fx.store, upper), (e: Error) => { assert.match(e.message, message); return true; });
    // The block path on this thread removes its temp file before it rejects.
    await assert.rejects(snapshotLayerInBlocks(fx.store, upper), (e: Error) => { assert.match(e.message, message); return true; });
    assert.deepEqual(tempFiles(fx.store), []);
  } finally {
    execFileSync('umount', [victim]);
  }
  for (let i = 0; i < 100 && tempFiles(fx.store).length; i++) await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(tempFiles(fx.store), []);
});

test('a full disk fails the step that wrote the layer, names it, and leaves no temp file', async () => {
  // The store's tmp/ on a 1 MiB tmpfs: the COPY's 4 MiB of incompressible bytes do not fit.
  const root = path.join(tempDir('drydock-snapworker-enospc-'), 'store');
  const { busyboxImage } = await import('../helpers/images.js');
  await busyboxImage(root);
  const store = await ContentStore.open(root);
  const dir = await fx.context({ Dockerfile: 'FROM busybox\nCOPY big.bin /big.bin\nRUN echo after\n' });
  const { randomBytes } = await import('node:crypto');
  await fsp.writeFile(path.join(dir, 'big.bin'), randomBytes(4 << 20));
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', store.tmpDir]);
  try {
    const { build } = await import('../../src/builder/index.js');
    const { PassThrough } = await import('node:stream');
    const progress = new PassThrough().resume();
    await assert.rejects(build({ context: dir, store, progress, noCache: true, tags: ['full:1'] }),
      /step 2\/3 "COPY big\.bin \/big\.bin": writing the step's layer failed: ENOSPC: no space left on device/);
    assert.deepEqual(tempFiles(store), []);
  } finally {
    execFileSync('umount', [store.tmpDir]);
  }
  assert.equal(await store.resolveTag('docker.io/library/full:1'), undefined);
  assert.equal(snapshotWorkerRunning(), false, 'the failed build closed the worker');
});

test('a build closes the worker when it ends; the CLI, bundled and per-file, exits right after its image', async () => {
  // 4 MiB of context: the COPY's snapshot is the worker's.
  const dir = await fx.context({ Dockerfile: 'FROM busybox\nCOPY a.bin /a.bin\nRUN echo ran > /ran\n' });
  await fsp.writeFile(path.join(dir, 'a.bin'), Buffer.alloc(4 << 20, 'a'));
  await fx.build(dir, { noCache: true });
  assert.equal(snapshotWorkerRunning(), false);
  for (const [label, entry] of [['bundle', path.join(PROJECT_ROOT, 'bin/drydock.js')], ['per-file', CLI_MAIN]] as const) {
    const child = spawn(process.execPath, [entry, 'build', '-q', '--no-cache', dir], {
      env: { ...process.env, DRYDOCK_ROOT: fx.root, DRYDOCK_TRACE: '1' }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let printedAt = 0;
    child.stdout.on('data', (d) => { stdout += d; printedAt ||= performance.now(); });
    child.stderr.on('data', (d) => (stderr += d));
    const hung = setTimeout(() => child.kill('SIGKILL'), 60_000);
    const [code, signal] = await once(child, 'exit') as [number | null, string | null];
    const exitedAt = performance.now();
    clearTimeout(hung);
    assert.equal(signal, null, `${label}: the build did not exit within 60 s`);
    assert.equal(code, 0, `${label}: ${stderr}`);
    assert.match(stdout, /^sha256:[a-f0-9]{64}\n$/);
    // The snapshots ran in the worker (its start is traced) where it pays, else on the main
    // thread, and the process ended once the image ID was out: nothing (a worker still
    // referenced, a job never answered) held it.
    if (workerPays()) assert.match(stderr, /^trace snapshot-worker\.start /m, label);
    else assert.doesNotMatch(stderr, /snapshot-worker\.start/, label);
    assert.ok(exitedAt - printedAt < 2000, `${label} exited ${Math.round(exitedAt - printedAt)} ms after printing the image ID`);
  }
  // A small COPY (under 4 MiB and 2000 entries): the worker is never started.
  const small = await fx.context({ Dockerfile: 'FROM busybox\nCOPY a.txt /a.txt\nRUN echo ran > /ran\n', 'a.txt': 'a\n' });
  const r = spawn(process.execPath, [path.join(PROJECT_ROOT, 'bin/drydock.js'), 'build', '-q', '--no-cache', small], {
    env: { ...process.env, DRYDOCK_ROOT: fx.root, DRYDOCK_TRACE: '1' }, stdio: ['ignore', 'ignore', 'pipe'],
  });
  let trace = '';
  r.stderr.on('data', (d) => (trace += d));
  assert.equal((await once(r, 'exit'))[0], 0, trace);
  assert.match(trace, /^trace step\.tar\+hash /m);
  assert.doesNotMatch(trace, /snapshot-worker\.start/);
  assert.deepEqual(tempFiles(fx.store), []);
  await closeSnapshotWorker();
});
