// `drydock copy` across every transport, checked by skopeo where it reads the result, plus the
// progress renderers (TTY bars, plain lines) and transport-name parsing.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { Writable } from 'node:stream';
import { ContentStore, resolveImage } from '../../src/store/index.js';
import * as client from '../../src/client/index.js';
import { requireTool, runCli, tempDir } from '../helpers/env.js';
import { startDistribution, type DistributionRegistry } from '../helpers/docker-registry.js';
import { buildImage, storeImage, type TestImage } from './fixtures.js';

describe('transport names', () => {
  const cases: [string, unknown][] = [
    ['docker://localhost:5000/a/b:1', { transport: 'docker', ref: { registry: 'localhost:5000', repository: 'a/b', tag: '1', digest: undefined } }],
    ['oci:/tmp/layout:v1', { transport: 'oci', path: '/tmp/layout', tag: 'v1' }],
    ['oci:./layout', { transport: 'oci', path: './layout' }],
    ['oci-archive:/x/img.tar:latest', { transport: 'oci-archive', path: '/x/img.tar', tag: 'latest' }],
    ['docker-archive:/x/img.tar:busybox:1', { transport: 'docker-archive', path: '/x/img.tar', tag: 'busybox:1' }],
    ['store:busybox', { transport: 'store', name: 'busybox' }],
    ['localhost:5000/app:1', { transport: 'store', name: 'localhost:5000/app:1' }],
  ];
  for (const [input, want] of cases) it(input, () => assert.deepEqual(client.parseImageLocation(input), want));
  it('rejects unknown URL-style transports', () => assert.throws(() => client.parseImageLocation('ftp://x/y'), /unknown transport/));
  it('rejects a bad docker reference', () => assert.throws(() => client.parseImageLocation('docker://UPPER/case'), /invalid reference/));
});

describe('copy across transports', () => {
  let reg: DistributionRegistry;
  let root: string;
  let img: TestImage;
  let work: string;

  before(async () => {
    reg = await startDistribution();
    root = tempDir();
    work = tempDir();
    img = await buildImage([400_000, 100_000]);
    await storeImage(await ContentStore.open(root), img, 'app:1');
  });
  after(async () => { await reg.stop(); });

  it('store -> oci dir -> registry -> oci-archive -> docker-archive -> store keeps the image', async () => {
    requireTool('skopeo');
    const layout = path.join(work, 'layout');
    const steps: [string, string][] = [
      ['app:1', `oci:${layout}:v1`],
      [`oci:${layout}:v1`, `docker://${reg.host}/team/app:1`],
      [`docker://${reg.host}/team/app:1`, `oci-archive:${path.join(work, 'img.tar')}:v1`],
      [`oci-archive:${path.join(work, 'img.tar')}:v1`, `docker-archive:${path.join(work, 'docker.tar')}:team/app:1`],
      [`docker-archive:${path.join(work, 'docker.tar')}`, 'store:back/app:1'],
    ];
    for (const [src, dest] of steps) {
      const r = await runCli(['copy', '--format', 'json', src, dest], { root });
      assert.equal(r.code, 0, `${src} -> ${dest}: ${r.stderr}`);
      const out = JSON.parse(r.stdout);
      assert.match(out.digest, /^sha256:[0-9a-f]{64}$/);
    }
    const inspect = JSON.parse(execFileSync('skopeo', ['inspect', `oci:${layout}:v1`], { encoding: 'utf8' }));
    assert.equal(inspect.Digest, img.descriptor.digest, 'skopeo reads the OCI layout drydock wrote');
    const back = await resolveImage(await ContentStore.open(root), 'back/app:1');
    assert.equal(back.configDigest, img.config.descriptor.digest, 'same image config after the round trip');
    assert.deepEqual(back.manifest.layers.map((l) => l.digest), img.layers.map((l) => l.descriptor.digest));
  });

  it('copy prints the digest and size on its final line', async () => {
    const r = await runCli(['copy', '--progress=plain', 'app:1', `docker://${reg.host}/team/final:1`], { root });
    assert.equal(r.code, 0, r.stderr);
    const last = r.stdout.trim().split('\n').at(-1)!;
    assert.match(last, new RegExp(`^Copied ${img.descriptor.digest} \\(manifest ${img.descriptor.size} bytes, .* transferred, \\d+ blobs skipped\\)$`));
  });

  it('pullImage (the builder\'s FROM) uses the local copy, or pulls what is missing', async () => {
    const store = await ContentStore.open(root);
    // docker.io is unreachable here: a local hit must not touch the network.
    const local = await client.pullImage(store, 'app:1');
    assert.equal(local.configDigest, img.config.descriptor.digest);
    const fresh = await ContentStore.open(tempDir());
    await client.push(store, 'app:1', `${reg.host}/team/from:1`);
    const pulled = await client.pullImage(fresh, `${reg.host}/team/from:1`);
    assert.equal(pulled.manifestDescriptor.digest, img.descriptor.digest);
    assert.deepEqual(pulled.names, [`${reg.host}/team/from:1`]);
    const byDigest = await client.pullImage(await ContentStore.open(tempDir()), `${reg.host}/team/from@${img.descriptor.digest}`);
    assert.equal(byDigest.configDigest, img.config.descriptor.digest);
  });

  it('a missing source image is a clear error', async () => {
    const r = await runCli(['copy', 'nope:1', `oci:${path.join(work, 'x')}`], { root });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /Error: image "nope:1" not found in the store/);
  });
});

describe('progress rendering', () => {
  function sink(isTTY: boolean): { out: NodeJS.WriteStream; text: () => string } {
    let text = '';
    const w = new Writable({ write(c, _e, cb) { text += c; cb(); } }) as unknown as NodeJS.WriteStream;
    (w as { isTTY?: boolean }).isTTY = isTTY;
    return { out: w, text: () => text };
  }
  const layer = { type: 'blob' as const, digest: `sha256:${'ab'.repeat(32)}`, size: 2_000_000, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip' };

  const bars: [number, number, RegExp][] = [
    [0, 100, /^\[ {50}\]  0B\/100B$/],
    [50, 100, /^\[={24}> {25}\]  50B\/100B$/],
    [100, 100, /^\[={50}\]  100B\/100B$/],
  ];
  for (const [cur, total, want] of bars) it(`bar ${cur}/${total}`, () => assert.match(client.progressBar(cur, total), want));

  it('TTY mode redraws layer lines in place, Docker style', () => {
    const s = sink(true);
    const r = client.createProgressReporter('auto', 'pull', s.out);
    r.onProgress({ ...layer, status: 'waiting' });
    r.onProgress({ ...layer, status: 'transferring', current: 1_000_000 });
    r.onProgress({ ...layer, status: 'done' });
    r.finish();
    assert.match(s.text(), /abababababab: Pulling fs layer/);
    assert.match(s.text(), /\x1b\[1A/, 'cursor moves up to redraw');
    assert.match(s.text(), /abababababab: Pull complete\n$/);
  });

  it('plain mode prints status changes only, no byte counts', () => {
    const s = sink(false);
    const r = client.createProgressReporter('auto', 'push', s.out);
    r.onProgress({ ...layer, status: 'waiting' });
    for (let i = 1; i <= 5; i++) r.onProgress({ ...layer, status: 'transferring', current: i * 100_000 });
    r.onProgress({ ...layer, status: 'done' });
    assert.equal(s.text(), 'abababababab: Preparing\nabababababab: Pushing\nabababababab: Pushed\n');
  });

  it('json mode writes one object per event', () => {
    const s = sink(false);
    const r = client.createProgressReporter('json', 'copy', s.out);
    r.onProgress({ ...layer, status: 'exists' });
    r.warn('mirror m failed');
    const lines = s.text().trim().split('\n').map((l) => JSON.parse(l));
    assert.equal(lines[0].status, 'exists');
    assert.equal(lines[1].type, 'warning');
  });
});
