// The build cache: editing a line reruns that step and the ones after it only; COPY keys on
// content, not mtimes; a fully cached rebuild does no filesystem work and gives the same image.
import { execFileSync } from 'node:child_process';
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { builderFixture, type Fixture } from './helpers.js';
import { gcStore } from '../../src/store/index.js';
import { runImage } from '../helpers/run-image.js';

let fx: Fixture;
before(async () => { fx = await builderFixture('cache'); });

const dockerfile = (late: string) => `FROM busybox
ENV STAGE=one
COPY app.txt /app/
RUN cat /app/app.txt > /app/copy.txt
RUN echo ${late} > /app/late.txt
CMD ["cat", "/app/late.txt"]
`;

/** Which steps ran (not cached), by their step number, excluding FROM. */
function reran(r: { steps: { step: number; cached: boolean }[] }): number[] {
  return r.steps.filter((s) => !s.cached).map((s) => s.step);
}

test('editing a late line reruns that step and later ones only', async () => {
  const dir = await fx.context({ 'app.txt': 'v1\n', Dockerfile: dockerfile('first') });
  const cold = await fx.build(dir, { tags: ['cached:1'] });
  assert.deepEqual(reran(cold), [2, 3, 4, 5, 6]);

  const again = await fx.build(dir, { tags: ['cached:1'] });
  assert.deepEqual(reran(again), [], 'nothing reruns');
  assert.equal(again.imageId, cold.imageId, 'a cached rebuild gives the same image ID');
  assert.equal((again.log.match(/---> Using cache/g) ?? []).length, 5);

  await fsp.writeFile(path.join(dir, 'Dockerfile'), dockerfile('second'));
  const edited = await fx.build(dir);
  assert.deepEqual(reran(edited), [5, 6], 'steps before the edit come from the cache');
  assert.deepEqual(edited.layers.slice(0, 3), cold.layers.slice(0, 3));
  assert.notDeepEqual(edited.layers[3], cold.layers[3]);
});

test('COPY keys on file content, not mtime; a content change invalidates from the COPY on', async () => {
  const dir = await fx.context({ 'app.txt': 'v1\n', Dockerfile: dockerfile('x') });
  await fx.build(dir);
  const future = new Date(Date.now() + 3600_000);
  await fsp.utimes(path.join(dir, 'app.txt'), future, future);
  assert.deepEqual(reran(await fx.build(dir)), [], 'touching a file does not bust the cache');
  await fsp.writeFile(path.join(dir, 'app.txt'), 'v2\n');
  assert.deepEqual(reran(await fx.build(dir)), [3, 4, 5, 6]);
  await fsp.chmod(path.join(dir, 'app.txt'), 0o600);
  assert.deepEqual(reran(await fx.build(dir)), [3, 4, 5, 6], 'a mode change is a content change');
});

const multiStage = (otherLine: string) => `FROM busybox AS src
COPY src.txt /out/src.txt
RUN cat /out/src.txt > /out/built.txt
FROM busybox AS other
RUN echo ${otherLine} > /other.txt
FROM busybox
COPY --from=src /out /app/
RUN cat /app/built.txt > /app/seen.txt
COPY --from=other /other.txt /app/
CMD ["cat", "/app/seen.txt", "/app/other.txt"]
`;

test('COPY --from: a changed file in the source stage reruns the COPY and the steps after it; an unchanged one hits the cache', async () => {
  const dir = await fx.context({ 'src.txt': 'v1\n', Dockerfile: multiStage('one') });
  // Steps: 1 FROM, 2 COPY, 3 RUN (src); 4 FROM, 5 RUN (other); 6 FROM, 7 COPY --from=src, 8 RUN, 9 COPY --from=other, 10 CMD.
  const cold = await fx.build(dir, { tags: ['cached-from:1'] });
  assert.deepEqual(reran(cold), [2, 3, 5, 7, 8, 9, 10]);
  assert.equal((await runImage(fx.root, 'cached-from:1')).out, 'v1\none\n');

  const again = await fx.build(dir, { tags: ['cached-from:1'] });
  assert.deepEqual(reran(again), [], 'nothing reruns');
  assert.equal(again.imageId, cold.imageId);

  // Touched, same content: the source stage's key, and so the COPY --from's, are unchanged.
  const future = new Date(Date.now() + 3600_000);
  await fsp.utimes(path.join(dir, 'src.txt'), future, future);
  assert.deepEqual(reran(await fx.build(dir)), [], 'an mtime change reruns nothing');

  await fsp.writeFile(path.join(dir, 'src.txt'), 'v2\n');
  const changed = await fx.build(dir, { tags: ['cached-from:2'] });
  assert.deepEqual(reran(changed), [2, 3, 7, 8, 9, 10], 'the source stage, the COPY --from and every later step rerun; the other stage does not');
  assert.equal((await runImage(fx.root, 'cached-from:2')).out, 'v2\none\n');
  assert.deepEqual(changed.layers.slice(0, -3), cold.layers.slice(0, -3), 'the base layers are the same');

  // The other stage's line changed: only its RUN, its COPY --from and what follows rerun.
  await fsp.writeFile(path.join(dir, 'Dockerfile'), multiStage('two'));
  const other = await fx.build(dir, { tags: ['cached-from:3'] });
  assert.deepEqual(reran(other), [5, 9, 10]);
  assert.equal((await runImage(fx.root, 'cached-from:3')).out, 'v2\ntwo\n');
  assert.deepEqual(other.layers.slice(0, -1), changed.layers.slice(0, -1), 'the layers before the changed COPY --from are the cached ones');
});

test('the context hash cache (inode, size, mtime, ctime) sees a same-size edit whose mtime was put back', async () => {
  // Contents no other test uses: the COPY's key is its content's hash, shared across contexts.
  const dir = await fx.context({ 'app.txt': 'stat-1\n', Dockerfile: dockerfile('stat') });
  const file = path.join(dir, 'app.txt');
  await fx.build(dir);
  assert.deepEqual(reran(await fx.build(dir)), [], 'the second build takes the hash from the stat-keyed cache');
  const before = await fsp.stat(file, { bigint: true });
  // Same inode (written in place), same size, mtime restored to the nanosecond by GNU touch (a
  // Date has only milliseconds): only ctime and the bytes differ.
  const fh = await fsp.open(file, 'r+');
  try { await fh.write('stat-2\n', 0); } finally { await fh.close(); }
  const ns = before.mtimeNs;
  execFileSync('touch', ['-m', '-d', `@${ns / 1_000_000_000n}.${String(ns % 1_000_000_000n).padStart(9, '0')}`, file]);
  const after = await fsp.stat(file, { bigint: true });
  assert.equal(after.ino, before.ino);
  assert.equal(after.size, before.size);
  assert.equal(after.mtimeNs, before.mtimeNs);
  assert.deepEqual(reran(await fx.build(dir)), [3, 4, 5, 6], 'the content change is seen');
});

test('build args in effect are part of RUN keys; --no-cache reruns everything', async () => {
  const dir = await fx.context({ Dockerfile: 'FROM busybox\nARG V=1\nRUN echo $V > /v\nRUN echo constant > /c\n' });
  await fx.build(dir);
  assert.deepEqual(reran(await fx.build(dir, { buildArgs: { V: '1' } })), [], 'same value, same key');
  assert.deepEqual(reran(await fx.build(dir, { buildArgs: { V: '2' } })), [2, 3, 4]);
  assert.deepEqual(reran(await fx.build(dir, { noCache: true })), [2, 3, 4]);
});

test('a fully cached rebuild does no filesystem work: no mounts, no layers, no blobs', async () => {
  const dir = await fx.context({ 'app.txt': 'v1\n', Dockerfile: dockerfile('fast') });
  await fx.build(dir, { tags: ['fast'] });
  const builderDir = path.join(fx.root, 'builder');
  const layersBefore = (await fsp.readdir(path.join(fx.root, 'layers'))).length;
  const blobsBefore = (await fsp.readdir(path.join(fx.root, 'blobs/sha256'))).length;
  // Creating or removing a step work dir would change the builder dir's mtime.
  const builderMtime = (await fsp.stat(builderDir)).mtimeMs;
  // Its speed is measured in bench/build.ts, not asserted here (a loaded CI host would flake).
  const r = await fx.build(dir, { tags: ['fast'] });
  assert.deepEqual(reran(r), []);
  assert.equal((await fsp.stat(builderDir)).mtimeMs, builderMtime, 'no step work dir was created');
  assert.equal((await fsp.readdir(path.join(fx.root, 'layers'))).length, layersBefore, 'nothing was unpacked');
  assert.equal((await fsp.readdir(path.join(fx.root, 'blobs/sha256'))).length, blobsBefore, 'no new blobs');
});

test('cache entries are gc roots: gc keeps their layers; a missing blob is a cache miss, not a broken image', async () => {
  const dir = await fx.context({ Dockerfile: 'FROM busybox\nRUN echo gc > /gc\n' });
  const first = await fx.build(dir); // untagged: only the cache keeps the layer alive
  await gcStore(fx.store, { graceMs: 0 });
  assert.ok(await fx.store.hasBlob(first.layers[1]!.digest), 'the cached layer survived gc');
  await fsp.rm(fx.store.blobPath(first.layers[1]!.digest));
  const again = await fx.build(dir);
  assert.deepEqual(reran(again), [2], 'the step reran because its blob was gone');
  assert.ok(await fx.store.hasBlob(again.layers[1]!.digest));
});

/** Every entry below `root`: type, mode, owner, size, content hash, link target, whiteout and opaque marks. */
async function treeListing(root: string): Promise<string[]> {
  const { createHash } = await import('node:crypto');
  const { getAttributeSync } = await import('@napi-rs/xattr');
  const out: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    for (const name of (await fsp.readdir(dir)).sort()) {
      const abs = path.join(dir, name);
      const rel = path.relative(root, abs);
      const st = await fsp.lstat(abs);
      const mode = (st.mode & 0o7777).toString(8);
      if (st.isDirectory()) {
        let opaque = '';
        try { opaque = getAttributeSync(abs, 'trusted.overlay.opaque')?.toString() ?? ''; } catch { /* none */ }
        out.push(`d ${rel} ${mode} ${st.uid}:${st.gid} opaque=${opaque}`);
        await walk(abs);
      } else if (st.isSymbolicLink()) {
        out.push(`l ${rel} -> ${await fsp.readlink(abs)}`);
      } else if (st.isCharacterDevice()) {
        out.push(`c ${rel} ${st.rdev}`);
      } else {
        const hash = createHash('sha256').update(await fsp.readFile(abs)).digest('hex').slice(0, 16);
        out.push(`f ${rel} ${mode} ${st.uid}:${st.gid} ${st.size} ${hash} links=${st.nlink}`);
      }
    }
  };
  await walk(root);
  return out;
}

test("a step's upper dir becomes its layer cache entry: the same tree as unpacking the blob, whiteouts included", async () => {
  const dir = await fx.context({
    'a.txt': 'a\n',
    Dockerfile: 'FROM busybox\nCOPY a.txt /srv/a.txt\n'
      + 'RUN rm /bin/ls && mkdir -p /srv/sub && echo b > /srv/sub/b && ln /srv/a.txt /srv/hard && chown 1:2 /srv/sub/b\n'
      + 'RUN rm -rf /srv && mkdir /srv && echo c > /srv/c\n',
  });
  const r = await fx.build(dir);
  const { unpackedLayerDir } = await import('../../src/runtime/index.js');
  const { applyLayer } = await import('../../src/layer/index.js');
  const built = r.layers.slice(-3);
  assert.equal(built.length, 3);
  for (const layer of built) {
    const cached = unpackedLayerDir(fx.store, layer.diffID);
    const fromBlob = path.join(fx.root, `check-${layer.diffID.slice(7, 19)}`);
    await applyLayer(fromBlob, fx.store.openBlob(layer.digest), { whiteouts: 'overlay' });
    assert.deepEqual(await treeListing(cached), await treeListing(fromBlob), `layer ${layer.diffID}`);
    await fsp.rm(fromBlob, { recursive: true, force: true });
  }
  // The tree really has the interesting parts: a whiteout for /bin/ls, an opaque /srv.
  const listings = await Promise.all(built.map((l) => treeListing(unpackedLayerDir(fx.store, l.diffID))));
  assert.ok(listings[1]!.includes('c bin/ls 0'), listings[1]!.join('\n'));
  assert.ok(listings[2]!.some((l) => l.startsWith('d srv ') && l.endsWith('opaque=y')), listings[2]!.join('\n'));
  // And the next build step ran on top of them: the image has /srv/c only.
  const { runImage } = await import('../helpers/run-image.js');
  const ran = await runImage(fx.root, r.imageId, { args: ['sh', '-c', 'ls /srv; ls /bin/ls 2>&1 || true'] });
  assert.match(ran.out, /^c\n.*No such file/s);
});
