// gc racing live pushes, with grace period 0 so only the sweep protocol protects anything: in
// each round an image's manifest is deleted (its blobs become garbage, written long before the
// gc starts), then a gc starts while a client brings the same blobs back: re-uploads them, mounts
// them into another repository, or only PUTs the manifest again (what a client does after a HEAD
// said the blobs exist). Afterwards every manifest that got 201 must have all its blobs, with the
// right digest. Runs in-process (gcRegistry next to startRegistry) and online (`drydock registry
// gc` next to a `drydock serve` child on the same root).
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promises as fsp, writeFileSync } from 'node:fs';
import path from 'node:path';
import { runCli, tempDir } from '../helpers/env.js';
import { FilesystemDriver, gcRegistry, startRegistry } from '../../src/registry/index.js';
import { http, pushBlob, serveProcess, sha256 } from './util.js';

const MANIFEST_TYPE = 'application/vnd.oci.image.manifest.v1+json';

interface Image { config: Buffer; layer: Buffer; manifest: Buffer; digest: string }
interface Accepted { repo: string; image: Image; how: string }

function makeImage(): Image {
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] }, nonce: randomBytes(8).toString('hex') }));
  const layer = randomBytes(20_000);
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: MANIFEST_TYPE,
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(config), size: config.length },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: sha256(layer), size: layer.length }],
  }));
  return { config, layer, manifest, digest: sha256(manifest) };
}

async function putManifest(base: string, repo: string, image: Image): Promise<number> {
  return (await http(`${base}/v2/${repo}/manifests/v1`, { method: 'PUT', body: image.manifest, headers: { 'Content-Type': MANIFEST_TYPE } })).status;
}

/** Pushes an image, then deletes its manifest: its blobs are now unreferenced and older than the gc about to start. */
async function garbageImage(base: string, repo: string): Promise<Image> {
  const image = makeImage();
  await pushBlob(base, repo, image.config);
  await pushBlob(base, repo, image.layer);
  assert.equal(await putManifest(base, repo, image), 201);
  assert.equal((await http(`${base}/v2/${repo}/manifests/${image.digest}`, { method: 'DELETE' })).status, 202);
  return image;
}

/** Ways a client brings the garbage back while gc runs; each returns the manifests that got 201. */
const comebacks: { name: string; run: (base: string, repo: string, image: Image) => Promise<Accepted[]> }[] = [
  {
    name: 're-push',
    run: async (base, repo, image) => {
      await pushBlob(base, repo, image.config);
      await pushBlob(base, repo, image.layer);
      return (await putManifest(base, repo, image)) === 201 ? [{ repo, image, how: 're-push' }] : [];
    },
  },
  {
    name: 'mount',
    run: async (base, repo, image) => {
      const to = `${repo}-mounted`;
      for (const blob of [image.config, image.layer]) {
        const r = await http(`${base}/v2/${to}/blobs/uploads/?mount=${sha256(blob)}&from=${repo}`, { method: 'POST' });
        if (r.status === 202) {
          // not mountable (gc got there first): upload it, as clients do
          const loc = new URL(r.headers.get('location')!, base);
          loc.searchParams.set('digest', sha256(blob));
          assert.equal((await http(loc.toString(), { method: 'PUT', body: blob })).status, 201);
        } else {
          assert.equal(r.status, 201, r.body.toString());
        }
      }
      return (await putManifest(base, to, image)) === 201 ? [{ repo: to, image, how: 'mount' }] : [];
    },
  },
  {
    name: 'manifest PUT only',
    run: async (base, repo, image) => ((await putManifest(base, repo, image)) === 201 ? [{ repo, image, how: 'manifest PUT only' }] : []),
  },
];

async function assertIntact(base: string, accepted: Accepted[]): Promise<void> {
  for (const { repo, image, how } of accepted) {
    const m = await http(`${base}/v2/${repo}/manifests/${image.digest}`);
    assert.equal(m.status, 200, `${how}: manifest ${repo}@${image.digest} got 201 but is gone`);
    for (const blob of [image.config, image.layer]) {
      const g = await http(`${base}/v2/${repo}/blobs/${sha256(blob)}`);
      assert.equal(g.status, 200, `${how}: ${repo}@${image.digest} got 201, but its blob ${sha256(blob)} is gone`);
      assert.equal(sha256(g.body), sha256(blob));
    }
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('gc racing pushes (in-process)', () => {
  test('30 rounds of delete, gc with grace 0 and a concurrent re-push / mount / manifest PUT: every 201 manifest keeps its blobs', async () => {
    const root = tempDir('drydock-gc-races-');
    const reg = await startRegistry({ root, config: { storage: { cache: { ttl: '0s' } } } as never });
    const driver = new FilesystemDriver(root);
    let swept = 0;
    let restored = 0;
    const accepted: Accepted[] = [];
    try {
      for (let i = 0; i < 30; i++) {
        const c = comebacks[i % comebacks.length]!;
        const repo = `races/r${i}`;
        const image = await garbageImage(reg.url, repo);
        const doomed = await pushBlob(reg.url, repo, randomBytes(500)); // garbage nobody brings back
        await sleep(10); // past the filesystem's coarse timestamp tick: all of this is older than the gc
        const [gc, got] = await Promise.all([
          gcRegistry(driver, { gracePeriodMs: 0 }),
          (async () => { await sleep((i * 7) % 23); return c.run(reg.url, repo, image); })(),
        ]);
        accepted.push(...got);
        await assertIntact(reg.url, got);
        if (gc.blobsDeleted.includes(doomed)) swept++;
        restored += gc.blobsRestored;
      }
    } finally {
      await reg.close();
    }
    assert.ok(swept >= 25, `gc swept the untouched garbage in only ${swept} of 30 rounds`);
    assert.ok(accepted.length >= 10, `only ${accepted.length} manifests were accepted`);
    // After everything settled, once more (a later gc must not take what the earlier left).
    const again = await startRegistry({ root, config: { storage: { cache: { ttl: '0s' } } } as never });
    try {
      await gcRegistry(driver, { gracePeriodMs: 0 });
      await assertIntact(again.url, accepted);
    } finally {
      await again.close();
    }
    process.stdout.write(`# in-process: ${accepted.length} manifests accepted, ${restored} blobs put back by the sweep\n`);
  });

  test('a link written while gc removes its emptied directory is written (the race CI hit: ENOENT from mkdir, a 500 to the push)', async () => {
    // gc's deleteEmptyDir of a layer link directory beside a push's putContent of a link into
    // it: the directory can go between the write's mkdir and its temp file. 400 rounds, each
    // with two rmdirs (two gc passes) at a different moment of the write; every write must land.
    const root = tempDir('drydock-gc-rmdir-race-');
    const driver = new FilesystemDriver(root);
    let failed = 0;
    for (let i = 0; i < 400; i++) {
      const dir = `/docker/registry/v2/repositories/r/_layers/sha256/${sha256(Buffer.from(String(i))).slice(7)}`;
      const removals = (async () => {
        for (let k = 0; k < i % 6; k++) await new Promise<void>((r) => setImmediate(r));
        await driver.deleteEmptyDir(dir);
        await driver.deleteEmptyDir(dir);
      })();
      const put = driver.putContent(`${dir}/link`, `sha256:${i}`).catch((e: Error) => { if (!failed++) process.stdout.write(`# first failure: ${e.message}\n`); });
      await Promise.all([removals, put]);
      if (!failed) assert.equal(await fsp.readFile(path.join(root, dir, 'link'), 'utf8'), `sha256:${i}`);
    }
    assert.equal(failed, 0, `${failed} of 400 link writes failed`);
  });

  test('a link a push writes while gc holds the old one aside is kept: gc removes only what it held', async () => {
    const root = tempDir('drydock-gc-fresh-link-');
    const reg = await startRegistry({ root, config: { storage: { cache: { ttl: '0s' } } } as never });
    const image = await garbageImage(reg.url, 'fresh/a');
    await reg.close();
    await sleep(10);
    const layerLink = `/docker/registry/v2/repositories/fresh/a/_layers/sha256/${sha256(image.layer).slice('sha256:'.length)}/link`;
    let relinked = false;
    // The moment the CI run once hit by chance: gc has moved the link aside and found no data,
    // and a client re-pushing the layer writes its link into the same folder right then.
    class RelinkingDriver extends FilesystemDriver {
      override async move(source: string, dest: string): Promise<void> {
        await super.move(source, dest);
        if (source === layerLink && dest.includes('/_drydock/gc/')) {
          await this.putContent(layerLink, sha256(image.layer), { sync: false });
          relinked = true;
        }
      }
    }
    const res = await gcRegistry(new RelinkingDriver(root), { gracePeriodMs: 0 });
    assert.ok(relinked, 'the gc never held the layer link aside');
    assert.ok(res.blobsDeleted.includes(sha256(image.layer)));
    assert.equal((await fsp.readFile(path.join(root, layerLink))).toString(), sha256(image.layer), "the push's fresh link was removed");
    // and a swept blob's link that nothing re-linked is gone with its folder (gc used to put the
    // held link back when the run ended: a link to a blob that no longer exists)
    const configDir = path.join(root, `/docker/registry/v2/repositories/fresh/a/_layers/sha256/${sha256(image.config).slice('sha256:'.length)}`);
    await assert.rejects(fsp.stat(configDir), { code: 'ENOENT' });
  });

  test('a blob re-linked after its last manifest was deleted survives the grace period check (link time, not data time)', async () => {
    const root = tempDir('drydock-gc-relink-');
    const reg = await startRegistry({ root, config: { storage: { cache: { ttl: '0s' } } } as never });
    const driver = new FilesystemDriver(root);
    try {
      const image = await garbageImage(reg.url, 'relink/a');
      await sleep(2100);
      // mounted into another repository and re-uploaded, both after the data was written: within the grace period
      assert.equal((await http(`${reg.url}/v2/relink/b/blobs/uploads/?mount=${sha256(image.layer)}&from=relink/a`, { method: 'POST' })).status, 201);
      await pushBlob(reg.url, 'relink/c', image.config);
      const res = await gcRegistry(driver, { gracePeriodMs: 2000 });
      assert.ok(!res.blobsDeleted.includes(sha256(image.layer)), 'mounted blob swept');
      assert.ok(!res.blobsDeleted.includes(sha256(image.config)), 're-uploaded blob swept');
      assert.equal((await http(`${reg.url}/v2/relink/b/blobs/${sha256(image.layer)}`)).status, 200);
      assert.equal((await http(`${reg.url}/v2/relink/c/blobs/${sha256(image.config)}`)).status, 200);
    } finally {
      await reg.close();
    }
  });
});

describe('gc killed mid-sweep', () => {
  test('a blob a dead gc run held aside is put back by the next run', async () => {
    const root = tempDir('drydock-gc-killed-');
    const reg = await startRegistry({ root, config: { storage: { cache: { ttl: '0s' } } } as never });
    try {
      const image = makeImage();
      await pushBlob(reg.url, 'killed/app', image.config);
      await pushBlob(reg.url, 'killed/app', image.layer);
      assert.equal(await putManifest(reg.url, 'killed/app', image), 201);
      // What a gc run leaves when it is killed between holding a blob and deciding about it.
      const hex = sha256(image.layer).slice('sha256:'.length);
      const held = path.join(root, 'docker/registry/v2/_drydock/gc/0b5e4c8e-dead-4e11-9c3a-5d1f00000000/blobs');
      await fsp.mkdir(held, { recursive: true });
      await fsp.rename(path.join(root, 'docker/registry/v2/blobs/sha256', hex.slice(0, 2), hex, 'data'), path.join(held, `sha256-${hex}`));
      assert.equal((await http(`${reg.url}/v2/killed/app/blobs/${sha256(image.layer)}`)).status, 404);
      const res = await gcRegistry(new FilesystemDriver(root), { gracePeriodMs: 0 });
      assert.deepEqual(res.blobsDeleted, []);
      await assertIntact(reg.url, [{ repo: 'killed/app', image, how: 'held by a dead gc' }]);
      assert.deepEqual(await fsp.readdir(path.join(root, 'docker/registry/v2/_drydock/gc/0b5e4c8e-dead-4e11-9c3a-5d1f00000000/blobs')), []);
    } finally {
      await reg.close();
    }
  });
});

describe('gc racing pushes (drydock registry gc next to drydock serve)', () => {
  const children = new Set<ChildProcess>();
  after(() => { for (const c of children) c.kill('SIGKILL'); });

  async function serve(root: string): Promise<string> {
    const config = path.join(tempDir('drydock-gc-races-config-'), 'config.yml');
    writeFileSync(config, `version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: ${root}\n  delete:\n    enabled: true\n  cache:\n    ttl: 0s\n`);
    return (await serveProcess(['--config', config, '--no-access-log'], children)).url;
  }

  test('drydock registry gc keeps what a running server mounted or re-uploaded within the grace period', async () => {
    const root = tempDir('drydock-gc-relink-online-');
    const base = await serve(root);
    const image = await garbageImage(base, 'relink/a');
    // The data becomes older than the grace period; the links written next stay younger, even
    // with the CLI's start-up time (seconds on a loaded machine) in between.
    await sleep(8500);
    assert.equal((await http(`${base}/v2/relink/b/blobs/uploads/?mount=${sha256(image.layer)}&from=relink/a`, { method: 'POST' })).status, 201);
    await pushBlob(base, 'relink/c', image.config);
    const gc = await runCli(['registry', 'gc', '--root', root, '--grace-period', '8s', '--format', 'json']);
    assert.equal(gc.code, 0, gc.stderr);
    assert.deepEqual((JSON.parse(gc.stdout) as { blobsDeleted: string[] }).blobsDeleted, [image.digest]);
    assert.equal((await http(`${base}/v2/relink/b/blobs/${sha256(image.layer)}`)).status, 200, 'mounted blob swept');
    assert.equal((await http(`${base}/v2/relink/c/blobs/${sha256(image.config)}`)).status, 200, 're-uploaded blob swept');
  });

  test('15 rounds against a separate server process: every 201 manifest keeps its blobs', async () => {
    const root = tempDir('drydock-gc-races-online-');
    const base = await serve(root);
    const accepted: Accepted[] = [];
    let swept = 0;
    for (let i = 0; i < 15; i++) {
      const c = comebacks[i % comebacks.length]!;
      const repo = `online/r${i}`;
      const image = await garbageImage(base, repo);
      const doomed = await pushBlob(base, repo, randomBytes(500));
      // The CLI needs a few hundred ms to start: spread the comeback over that and the sweep.
      const [gc, got] = await Promise.all([
        runCli(['registry', 'gc', '--root', root, '--grace-period', '0s', '--format', 'json']),
        (async () => { await sleep(300 + ((i * 97) % 900)); return c.run(base, repo, image); })(),
      ]);
      assert.equal(gc.code, 0, gc.stderr);
      if ((JSON.parse(gc.stdout) as { blobsDeleted: string[] }).blobsDeleted.includes(doomed)) swept++;
      accepted.push(...got);
      await assertIntact(base, got);
    }
    assert.ok(swept >= 12, `gc swept the untouched garbage in only ${swept} of 15 rounds`);
    assert.ok(accepted.length >= 5, `only ${accepted.length} manifests were accepted`);
    await assertIntact(base, accepted);
  });
});
