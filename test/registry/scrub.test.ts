// `drydock registry scrub` over real pushes: images pushed over HTTP (pushImage) and by skopeo,
// then damaged on disk the ways storage goes bad (flipped bytes, a lost blob, a truncated
// manifest), each case checking the report names the repository, tag, role and digest, and that
// the command exits 1; a clean registry reports nothing and exits 0. Once more on S3 (s3rver).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promises as fsp, writeFileSync } from 'node:fs';
import path from 'node:path';
import { requireTool, runCli, tempDir } from '../helpers/env.js';
import { busyboxImage } from '../helpers/images.js';
import { startS3Server, type S3Server } from '../helpers/s3.js';
import { S3Driver, MIN_CHUNK_SIZE } from '../../src/registry/storage/s3.js';
import { startRegistry, type ScrubProblem, type ScrubResult } from '../../src/registry/index.js';
import { parseDigest } from '../../src/image/digest.js';
import { paths } from '../../src/registry/storage/paths.js';
import { http, pushBlob, pushImage, type PushedImage } from './util.js';

function run(cmd: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { maxBuffer: 64 << 20 }, (err, stdout, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr }));
  });
}

interface Fixture {
  root: string;
  v1: PushedImage;
  v2: PushedImage;
  /** skopeo's push of busybox: its manifest digest and layer digests. */
  busybox: { digest: string; layers: string[]; config: string };
  /** A blob uploaded to team/app that no manifest references. */
  loose: string;
}

let store: string;
before(async () => {
  requireTool('skopeo');
  store = tempDir('drydock-scrub-store-');
  await busyboxImage(store);
});

async function populate(): Promise<Fixture> {
  const root = tempDir('drydock-scrub-');
  const reg = await startRegistry({ root });
  try {
    const v1 = await pushImage(reg.url, 'team/app', 'v1', { layers: 2 });
    const v2 = await pushImage(reg.url, 'team/app', 'v2');
    assert.equal((await http(`${reg.url}/v2/team/app/manifests/${v2.digest}`, { method: 'PUT', body: v2.manifest, headers: { 'Content-Type': 'application/vnd.oci.image.manifest.v1+json' } })).status, 201);
    const loose = await pushBlob(reg.url, 'team/app', randomBytes(3000));
    const push = await run('skopeo', ['copy', '--dest-tls-verify=false', `oci:${store}:latest`, `docker://${reg.host}/library/busybox:latest`]);
    assert.equal(push.code, 0, push.stderr);
    const r = await http(`${reg.url}/v2/library/busybox/manifests/latest`, { headers: { Accept: 'application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json' } });
    assert.equal(r.status, 200);
    const m = r.json() as { config: { digest: string }; layers: { digest: string }[] };
    return { root, v1, v2, loose, busybox: { digest: r.headers.get('docker-content-digest')!, config: m.config.digest, layers: m.layers.map((l) => l.digest) } };
  } finally {
    await reg.close();
  }
}

const blobFile = (root: string, digest: string) => path.join(root, paths.blobData(parseDigest(digest)));

async function scrub(args: string[], env?: NodeJS.ProcessEnv): Promise<{ code: number; result: ScrubResult; stderr: string }> {
  const r = await runCli(['registry', 'scrub', ...args, '--format', 'json'], { env });
  assert.doesNotThrow(() => JSON.parse(r.stdout), `stdout is JSON: ${r.stdout} ${r.stderr}`);
  return { code: r.code, result: JSON.parse(r.stdout) as ScrubResult, stderr: r.stderr };
}

type Expected = Pick<ScrubProblem, 'repository' | 'tags' | 'role' | 'digest' | 'state'> & { manifest?: string };
const pick = (p: ScrubProblem): Expected => ({ repository: p.repository, tags: p.tags, role: p.role, digest: p.digest, state: p.state, ...(p.manifest !== undefined ? { manifest: p.manifest } : {}) });
const byDigest = (a: Expected, b: Expected) => `${a.role}${a.digest}`.localeCompare(`${b.role}${b.digest}`);

const cases: { name: string; damage: (f: Fixture) => Promise<void>; want: (f: Fixture) => Expected[] }[] = [
  { name: 'clean registry', damage: async () => {}, want: () => [] },
  {
    name: 'one byte of a layer flipped',
    damage: async (f) => {
      const file = blobFile(f.root, f.v1.layers[1]!);
      const bytes = await fsp.readFile(file);
      bytes[10] = bytes[10]! ^ 0xff;
      await fsp.writeFile(file, bytes);
    },
    want: (f) => [{ repository: 'team/app', tags: ['v1'], manifest: f.v1.digest, role: 'layer', digest: f.v1.layers[1]!, state: 'corrupt' }],
  },
  {
    name: 'config blob deleted',
    damage: async (f) => { await fsp.rm(path.dirname(blobFile(f.root, f.v2.config)), { recursive: true }); },
    want: (f) => [{ repository: 'team/app', tags: ['v2'], manifest: f.v2.digest, role: 'config', digest: f.v2.config, state: 'missing' }],
  },
  {
    name: "skopeo-pushed layer deleted",
    damage: async (f) => { await fsp.rm(blobFile(f.root, f.busybox.layers[0]!)); },
    want: (f) => [{ repository: 'library/busybox', tags: ['latest'], manifest: f.busybox.digest, role: 'layer', digest: f.busybox.layers[0]!, state: 'missing' }],
  },
  {
    name: 'manifest revision truncated',
    damage: async (f) => {
      const file = blobFile(f.root, f.busybox.digest);
      await fsp.truncate(file, Math.floor((await fsp.stat(file)).size / 2));
    },
    want: (f) => [{ repository: 'library/busybox', tags: ['latest'], manifest: f.busybox.digest, role: 'manifest', digest: f.busybox.digest, state: 'corrupt' }],
  },
  {
    name: 'unreferenced blob corrupt',
    damage: async (f) => { await fsp.appendFile(blobFile(f.root, f.loose), 'x'); },
    want: (f) => [{ repository: undefined, tags: [], role: 'blob', digest: f.loose, state: 'corrupt' }],
  },
  {
    name: 'all at once',
    damage: async (f) => {
      await fsp.writeFile(blobFile(f.root, f.v1.layers[0]!), randomBytes(1000));
      await fsp.rm(blobFile(f.root, f.v2.digest));
    },
    want: (f) => [
      { repository: 'team/app', tags: ['v1'], manifest: f.v1.digest, role: 'layer', digest: f.v1.layers[0]!, state: 'corrupt' },
      { repository: 'team/app', tags: ['v2'], manifest: f.v2.digest, role: 'manifest', digest: f.v2.digest, state: 'missing' },
    ],
  },
];

describe('registry scrub (filesystem)', () => {
  for (const c of cases) {
    test(c.name, async () => {
      const f = await populate();
      await c.damage(f);
      const { code, result, stderr } = await scrub(['--root', f.root]);
      const want = c.want(f);
      assert.deepEqual(result.problems.map(pick).sort(byDigest), [...want].sort(byDigest), stderr);
      assert.equal(code, want.length > 0 ? 1 : 0);
      assert.equal(result.repositories, 2);
      assert.ok(result.blobs >= 9, `blobs checked: ${result.blobs}`);
      for (const p of result.problems) if (p.state === 'corrupt' && p.role !== 'manifest') assert.match(p.detail!, /hashes to sha256:/);
    });
  }

  test('text output names repository:tag and role; -q prints nothing', async () => {
    const f = await populate();
    await fsp.writeFile(blobFile(f.root, f.v1.layers[0]!), 'rotten');
    const text = await runCli(['registry', 'scrub', '--root', f.root]);
    assert.equal(text.code, 1);
    assert.match(text.stdout, new RegExp(`^team/app:v1: layer ${f.v1.layers[0]} corrupt \\(content hashes to sha256:[0-9a-f]{64}\\) in manifest ${f.v1.digest}$`, 'm'));
    assert.match(text.stdout, /^1 problems: \d+ blobs/m);
    const quiet = await runCli(['registry', 'scrub', '--root', f.root, '-q']);
    assert.equal(quiet.code, 1);
    assert.equal(quiet.stdout, '');
    const clean = await populate();
    const ok = await runCli(['registry', 'scrub', '--root', clean.root]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /^ok: \d+ blobs/m);
  });
});

describe('registry scrub (S3 on s3rver)', () => {
  let s3: S3Server;
  before(async () => { s3 = await startS3Server(); });
  after(async () => { await s3?.stop(); });

  test('corrupt layer and deleted blob in a bucket', async () => {
    const rootdirectory = `/scrub-${randomBytes(4).toString('hex')}`;
    const storage = { s3: { regionendpoint: s3.endpoint, bucket: s3.bucket, rootdirectory, accesskey: s3.accessKey, secretkey: s3.secretKey, chunksize: MIN_CHUNK_SIZE } };
    const reg = await startRegistry({ root: tempDir('drydock-scrub-unused-'), config: { storage } as never });
    let a: PushedImage, b: PushedImage;
    try {
      a = await pushImage(reg.url, 'team/app', 'a', { layers: 2 });
      b = await pushImage(reg.url, 'other/svc', 'b');
    } finally {
      await reg.close();
    }
    const config = path.join(tempDir('drydock-scrub-s3-'), 'config.yml');
    writeFileSync(config, `version: 0.1\nstorage:\n  s3:\n    regionendpoint: ${s3.endpoint}\n    bucket: ${s3.bucket}\n    rootdirectory: ${rootdirectory}\n`);
    const env = { AWS_ACCESS_KEY_ID: s3.accessKey, AWS_SECRET_ACCESS_KEY: s3.secretKey };
    const clean = await scrub(['--config', config], env);
    assert.deepEqual(clean.result.problems, [], clean.stderr);
    assert.equal(clean.code, 0);

    const driver = new S3Driver({ bucket: s3.bucket, regionEndpoint: s3.endpoint, accessKey: s3.accessKey, secretKey: s3.secretKey, rootDirectory: rootdirectory });
    await driver.putContent(paths.blobData(parseDigest(a.layers[0]!)), randomBytes(1000));
    await driver.delete(paths.blobData(parseDigest(b.layers[0]!)));
    const bad = await scrub(['--config', config], env);
    assert.equal(bad.code, 1);
    const want: Expected[] = [
      { repository: 'team/app', tags: ['a'], manifest: a.digest, role: 'layer', digest: a.layers[0]!, state: 'corrupt' },
      { repository: 'other/svc', tags: ['b'], manifest: b.digest, role: 'layer', digest: b.layers[0]!, state: 'missing' },
    ];
    assert.deepEqual(bad.result.problems.map(pick).sort(byDigest), want.sort(byDigest));
  });
});
