// Retention policies and the batched pull-time records on an S3 bucket, shared by s3.test.ts
// (s3rver, a quick run) and rgw.test.ts (Ceph RGW, the real object store). On S3 a tag's push
// time is its link object's Last-Modified (one-second resolution, the store's clock, never set by
// the test), so the tags are pushed in rounds a second apart; pulls go through `drydock serve`,
// which may write them to the bucket only when it flushes (here: on shutdown).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { GetObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { runCli, tempDir } from '../helpers/env.js';
import type { GcResult } from '../../src/registry/index.js';
import { startServe, writeS3ServeConfig } from './serve.js';
import { http, pushImage, type PushedImage } from './util.js';

export interface S3Endpoint { endpoint: string; bucket: string; accessKey: string; secretKey: string }

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const MANIFEST = { Accept: 'application/vnd.oci.image.manifest.v1+json' };

/** config.yml for serve and gc on the bucket, with `retention` under storage.maintenance. */
function configWith(s3: S3Endpoint, root: string, retention: Record<string, unknown>): string {
  const file = path.join(tempDir('drydock-retention-s3-'), 'config.yml');
  writeS3ServeConfig(file, s3, root);
  const text = readFileSync(file, 'utf8').replace('  delete:\n', `  maintenance:\n    retention: ${JSON.stringify(retention)}\n  delete:\n`);
  writeFileSync(file, text);
  return file;
}

export async function retentionOnS3(s3: S3Endpoint): Promise<void> {
  const root = `/retention-${randomBytes(4).toString('hex')}`;
  const policy = {
    repositories: ['tmp/**'],
    deleteUntagged: true,
    keepTags: [{ patterns: ['keep-.*'] }, { mostRecentlyPushedCount: 1 }, { pulledWithin: '1h' }],
  };
  const retention = { delay: '0s', pullFlushInterval: '1h', policies: [policy] };
  const config = configWith(s3, root, retention);
  const env = { AWS_ACCESS_KEY_ID: s3.accessKey, AWS_SECRET_ACCESS_KEY: s3.secretKey };
  const client = new S3Client({ region: 'us-east-1', endpoint: s3.endpoint, forcePathStyle: true, credentials: { accessKeyId: s3.accessKey, secretAccessKey: s3.secretKey } });
  const pullsKey = `${root.slice(1)}/docker/registry/v2/_drydock/pulls/tmp/app/pulltimes.json`;
  const keysUnder = async (prefix: string) => ((await client.send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: prefix }))).Contents ?? []).map((o) => o.Key!);
  const pushed = new Map<string, PushedImage>();
  let untagged: PushedImage;
  try {
    const serve = await startServe(['--config', config, '--no-access-log'], env);
    try {
      // Round 1 (oldest): a, c and an image left untagged; round 2: b (pulled below), keep-1; round 3: newest.
      const rounds = [['a', 'c', 'untagged'], ['b', 'keep-1'], ['newest']];
      for (const [i, tags] of rounds.entries()) {
        if (i > 0) await sleep(1100); // Last-Modified has one-second resolution
        for (const repo of ['tmp/app', 'prod/app']) {
          for (const tag of tags) pushed.set(`${repo}:${tag}`, await pushImage(serve.url, repo, tag));
        }
      }
      untagged = pushed.get('tmp/app:untagged')!;
      assert.equal((await http(`${serve.url}/v2/tmp/app/manifests/untagged`, { method: 'DELETE' })).status, 202);
      for (let i = 0; i < 20; i++) assert.equal((await http(`${serve.url}/v2/tmp/app/manifests/b`, { headers: MANIFEST })).status, 200);
      assert.deepEqual(await keysUnder(pullsKey), [], 'pull times are not written on the request path');
    } finally {
      assert.equal(await serve.stop(), 0);
    }
    // Written once, on shutdown: one object for the repository, with the pulled tag only.
    const pulls = JSON.parse(await (await client.send(new GetObjectCommand({ Bucket: s3.bucket, Key: pullsKey }))).Body!.transformToString()) as Record<string, number>;
    assert.deepEqual(Object.keys(pulls), ['b']);
    assert.ok(Math.abs(Date.now() - pulls.b!) < 120_000, 'a recent pull time');

    // With a delay of an hour, nothing untagged is old enough yet.
    const patient = configWith(s3, root, { ...retention, delay: '1h' });
    const wait = await runCli(['registry', 'gc', '--config', patient, '--grace-period', '0s', '--dry-run', '--format', 'json'], { env });
    assert.equal(wait.code, 0, wait.stderr);
    assert.deepEqual((JSON.parse(wait.stdout) as GcResult).manifestsDeleted, []);

    const wantTags = ['tmp/app:a', 'tmp/app:c'];
    const wantManifests = [pushed.get('tmp/app:a')!.digest, pushed.get('tmp/app:c')!.digest, untagged.digest].map((d) => `tmp/app@${d}`).sort();
    const dry = await runCli(['registry', 'gc', '--config', config, '--grace-period', '0s', '--dry-run'], { env });
    assert.equal(dry.code, 0, dry.stderr);
    assert.deepEqual([...dry.stdout.matchAll(/^would delete tag (\S+) /gm)].map((m) => m[1]!).sort(), wantTags, dry.stdout);
    assert.deepEqual([...dry.stdout.matchAll(/^would delete manifest (\S+): retention$/gm)].map((m) => m[1]!).sort(), wantManifests, dry.stdout);
    const real = await runCli(['registry', 'gc', '--config', config, '--grace-period', '0s', '--format', 'json'], { env });
    assert.equal(real.code, 0, real.stderr);
    const result = JSON.parse(real.stdout) as GcResult;
    assert.deepEqual([...result.tagsDeleted].sort(), wantTags);
    assert.deepEqual([...result.manifestsDeleted].sort(), wantManifests);
    const gone = ['a', 'c', 'untagged'].flatMap((t) => { const img = pushed.get(`tmp/app:${t}`)!; return [img.digest, img.config, ...img.layers]; });
    assert.deepEqual([...result.blobsDeleted].sort(), gone.sort(), 'the dropped images\' manifests, configs and layers are swept');

    const after = await startServe(['--config', config, '--no-access-log'], env);
    try {
      const list = async (repo: string) => (((await http(`${after.url}/v2/${repo}/tags/list`)).json() as { tags: string[] | null }).tags ?? []).sort();
      assert.deepEqual(await list('tmp/app'), ['b', 'keep-1', 'newest']);
      assert.deepEqual(await list('prod/app'), ['a', 'b', 'c', 'keep-1', 'newest', 'untagged'], 'prod/app has no policy');
      for (const tag of ['b', 'keep-1', 'newest']) {
        const img = pushed.get(`tmp/app:${tag}`)!;
        assert.equal((await http(`${after.url}/v2/tmp/app/manifests/${tag}`, { headers: MANIFEST })).status, 200, tag);
        assert.equal((await http(`${after.url}/v2/tmp/app/blobs/${img.layers[0]}`)).status, 200, `${tag}'s layer`);
      }
      assert.equal((await http(`${after.url}/v2/tmp/app/manifests/${untagged.digest}`, { headers: MANIFEST })).status, 404);
      assert.equal((await http(`${after.url}/v2/prod/app/manifests/a`, { headers: MANIFEST })).status, 200);
    } finally {
      await after.stop();
    }
  } finally {
    client.destroy();
  }
}
