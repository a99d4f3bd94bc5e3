// The S3 driver against a real distributed object store: a one-node Ceph cluster with a RADOS
// Gateway (test/helpers/ceph.ts), started once for this file. The driver contract table, what RGW
// does that s3rver does not (conditional writes, which the lease relies on; an empty ETag from
// CompleteMultipartUpload), chunked uploads resumed from the state in the bucket, and end to end:
// `drydock serve` on RGW, skopeo copy in and out, delete and `drydock registry gc`.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import {
  CompleteMultipartUploadCommand, CreateMultipartUploadCommand, HeadObjectCommand, ListObjectsV2Command, PutObjectCommand, UploadPartCommand,
} from '@aws-sdk/client-s3';
import { requireTool, runCli, tempDir } from '../helpers/env.js';
import { busyboxImage } from '../helpers/images.js';
import { startCeph, type CephCluster } from '../helpers/ceph.js';
import { S3Driver, MIN_CHUNK_SIZE, type S3DriverOptions } from '../../src/registry/storage/s3.js';
import { PathNotFoundError } from '../../src/registry/storage/driver.js';
import { startRegistry, type RegistryConfig, type StartedRegistry } from '../../src/registry/index.js';
import { storageDriverSuite } from './storage-driver-suite.js';
import { startServe, writeS3ServeConfig } from './serve.js';
import { http, pushImage, sha256 } from './util.js';
import { retentionOnS3 } from './retention-s3.js';

let ceph: CephCluster;
before(async () => {
  ceph = await startCeph();
  process.stderr.write(`Ceph RGW up in ${ceph.startSeconds.toFixed(1)} s\n`);
}, { timeout: 180_000 });
after(async () => { await ceph?.stop(); });

function driverOptions(extra: Partial<S3DriverOptions> = {}): S3DriverOptions {
  return {
    bucket: ceph.bucket, regionEndpoint: ceph.endpoint, accessKey: ceph.accessKey, secretKey: ceph.secretKey,
    rootDirectory: `t-${randomBytes(4).toString('hex')}`, chunkSize: MIN_CHUNK_SIZE, ...extra,
  };
}

storageDriverSuite('s3 on Ceph RGW', () => new S3Driver(driverOptions({ listPageSize: 3 })));

describe('what RGW 16.2 does that the driver relies on or works around', () => {
  test('conditional PutObject: If-None-Match * creates once; If-Match takes only the bare ETag', async () => {
    const d = new S3Driver(driverOptions());
    const { client } = await d.s3();
    const Key = `${d.key('/cond')}`;
    const put = (extra: Record<string, string>) => client.send(new PutObjectCommand({ Bucket: ceph.bucket, Key, Body: randomBytes(8), ...extra }))
      .then((o) => o.ETag!, (e: { $metadata?: { httpStatusCode?: number } }) => e.$metadata?.httpStatusCode);
    const first = await put({ IfNoneMatch: '*' });
    assert.match(String(first), /^"[0-9a-f]{32}"$/);
    assert.equal(await put({ IfNoneMatch: '*' }), 412, 'a second create-if-absent is refused');
    assert.equal(await put({ IfMatch: String(first) }), 412, 'the quoted ETag never matches on RGW 16.2');
    const second = await put({ IfMatch: String(first).replace(/"/g, '') });
    assert.match(String(second), /^"[0-9a-f]{32}"$/, 'the bare ETag matches');
    assert.equal(await put({ IfMatch: String(first).replace(/"/g, '') }), 412, 'a stale ETag is refused');
  });

  test('CompleteMultipartUpload answers with an empty ETag; HeadObject has the real one', async () => {
    const d = new S3Driver(driverOptions());
    const { client } = await d.s3();
    const Key = d.key('/mp');
    const { UploadId } = await client.send(new CreateMultipartUploadCommand({ Bucket: ceph.bucket, Key }));
    const part = await client.send(new UploadPartCommand({ Bucket: ceph.bucket, Key, UploadId, PartNumber: 1, Body: randomBytes(100) }));
    const done = await client.send(new CompleteMultipartUploadCommand({ Bucket: ceph.bucket, Key, UploadId, MultipartUpload: { Parts: [{ PartNumber: 1, ETag: part.ETag }] } }));
    assert.equal(done.ETag ?? '', '');
    assert.match((await client.send(new HeadObjectCommand({ Bucket: ceph.bucket, Key }))).ETag!, /^"[0-9a-f]{32}-1"$/);
    // The driver never reads Complete's ETag: a multipart commit reads back whole.
    const blob = randomBytes(MIN_CHUNK_SIZE + 99);
    const w = await d.writer('/mp-driver', false);
    await w.write(blob);
    await w.commit();
    assert.equal(sha256(await d.getContent('/mp-driver')), sha256(blob));
    await d.delete('/');
  });
});

describe('leases (lockFile) on RGW', () => {
  test('of eight racing acquirers exactly one holds the lease; release frees it', async () => {
    const d = new S3Driver(driverOptions());
    await d.putContent('/up/x/startedat', 'now');
    const racers = await Promise.all(Array.from({ length: 8 }, () => new S3Driver({ ...d.options }).lockFile('/up/x/writer.lock')));
    const holders = racers.filter((r) => r !== undefined);
    assert.equal(holders.length, 1);
    assert.equal(await d.lockFile('/up/x/writer.lock'), undefined);
    await holders[0]!();
    const again = await d.lockFile('/up/x/writer.lock');
    assert.ok(again, 'free after release');
    await again();
    await assert.rejects(d.lockFile('/up/missing/writer.lock'), PathNotFoundError);
    assert.deepEqual((await d.list('/up/x')), ['/up/x/startedat'], 'no lease left behind');
    await d.delete('/');
  });

  test('a live holder renews; a dead holder\'s lease is taken over after its lifetime, by one taker', async () => {
    const d = new S3Driver(driverOptions({ leaseTtlMs: 3000 }));
    await d.putContent('/up/y/startedat', 'now');
    const release = await d.lockFile('/up/y/writer.lock');
    assert.ok(release);
    await new Promise((r) => setTimeout(r, 5000)); // past the lifetime: renewals keep it
    assert.equal(await d.lockFile('/up/y/writer.lock'), undefined, 'renewed lease still held');
    await release();
    // A holder that died leaves its lease behind and renews no more.
    const { client } = await d.s3();
    await client.send(new PutObjectCommand({ Bucket: ceph.bucket, Key: d.key('/up/y/writer.lock'), Body: '{"holder":"dead"}' }));
    assert.equal(await d.lockFile('/up/y/writer.lock'), undefined, 'fresh: still the dead holder\'s');
    await new Promise((r) => setTimeout(r, 4500));
    const takers = (await Promise.all([d.lockFile('/up/y/writer.lock'), new S3Driver({ ...d.options }).lockFile('/up/y/writer.lock')])).filter(Boolean);
    assert.equal(takers.length, 1, 'one taker wins the stale lease');
    await takers[0]!();
    await d.delete('/');
  });

  test('a taker with a shorter lifetime waits for the one the holder renews for', async () => {
    const short = new S3Driver(driverOptions({ leaseTtlMs: 3000 }));
    await short.putContent('/up/z/startedat', 'now');
    // A dead holder that ran with a 9 s lifetime (renewing every 3 s), as a replica not yet
    // restarted with the new setting would.
    const { client } = await short.s3();
    await client.send(new PutObjectCommand({ Bucket: ceph.bucket, Key: short.key('/up/z/writer.lock'), Body: JSON.stringify({ holder: 'dead', pid: 1, ttlMs: 9000 }) }));
    await new Promise((r) => setTimeout(r, 5000));
    assert.equal(await short.lockFile('/up/z/writer.lock'), undefined, 'past the taker\'s 3 s, within the holder\'s 9 s: still held');
    await new Promise((r) => setTimeout(r, 5500));
    const taken = await short.lockFile('/up/z/writer.lock');
    assert.ok(taken, 'stale after the holder\'s 9 s');
    await taken();
    await short.delete('/');
  });
});

describe('registry API on RGW', () => {
  const regs: StartedRegistry[] = [];
  const root = `api-${randomBytes(4).toString('hex')}`;
  const start = async () => {
    const reg = await startRegistry({ root: '/nonexistent-unused', config: { storage: { s3: { bucket: ceph.bucket, regionendpoint: ceph.endpoint, accesskey: ceph.accessKey, secretkey: ceph.secretKey, rootdirectory: root, chunksize: MIN_CHUNK_SIZE } } as unknown as RegistryConfig['storage'] } });
    regs.push(reg);
    return reg;
  };
  after(async () => { for (const r of regs) await r.close(); });

  test('a multipart chunked upload resumed from the bucket\'s state on another instance; delete removes it all', async () => {
    const [a, b] = [await start(), await start()];
    const blob = randomBytes(MIN_CHUNK_SIZE * 2 + 4321);
    const digest = sha256(blob);
    const post = await http(`${a.url}/v2/big/layer/blobs/uploads/`, { method: 'POST' });
    assert.equal(post.status, 202);
    let loc = post.headers.get('location')!;
    const cuts = [0, 1_500_000, MIN_CHUNK_SIZE + 17, blob.length - 10, blob.length];
    for (let i = 0; i + 1 < cuts.length; i++) {
      const base = i % 2 === 0 ? a.url : b.url;
      const r = await http(new URL(loc, base).toString(), {
        method: 'PATCH', body: blob.subarray(cuts[i], cuts[i + 1]),
        headers: { 'Content-Type': 'application/octet-stream', 'Content-Range': `${cuts[i]}-${cuts[i + 1]! - 1}` },
      });
      assert.equal(r.status, 202, r.body.toString());
      assert.equal(r.headers.get('range'), `0-${cuts[i + 1]! - 1}`);
      loc = r.headers.get('location')!;
      // the offset, as a resuming client asks for it, from the other instance
      assert.equal((await http(new URL(loc, i % 2 === 0 ? b.url : a.url).toString())).headers.get('range'), `0-${cuts[i + 1]! - 1}`);
    }
    const put = new URL(loc, a.url);
    put.searchParams.set('digest', digest);
    const done = await http(put.toString(), { method: 'PUT' });
    assert.equal(done.status, 201, done.body.toString());
    for (const reg of [a, b]) {
      const full = await http(`${reg.url}/v2/big/layer/blobs/${digest}`);
      assert.equal(sha256(full.body), digest);
      const part = await http(`${reg.url}/v2/big/layer/blobs/${digest}`, { headers: { Range: `bytes=${MIN_CHUNK_SIZE - 5}-${MIN_CHUNK_SIZE + 4}` } });
      assert.equal(part.status, 206);
      assert.deepEqual(part.body, blob.subarray(MIN_CHUNK_SIZE - 5, MIN_CHUNK_SIZE + 5));
    }
    const d = new S3Driver(driverOptions({ rootDirectory: root }));
    const { client } = await d.s3();
    const keys = async (prefix: string) => ((await client.send(new ListObjectsV2Command({ Bucket: ceph.bucket, Prefix: `${root}/${prefix}` }))).Contents ?? []).map((o) => o.Key!);
    assert.deepEqual(await keys('docker/registry/v2/repositories/big/layer/_uploads/'), [], 'upload state, parts and lease are gone');
    // a cancelled upload with parts in flight leaves nothing either
    const post2 = await http(`${b.url}/v2/big/layer/blobs/uploads/`, { method: 'POST' });
    const loc2 = new URL(post2.headers.get('location')!, b.url).toString();
    assert.equal((await http(loc2, { method: 'PATCH', body: randomBytes(MIN_CHUNK_SIZE + 1), headers: { 'Content-Type': 'application/octet-stream' } })).status, 202);
    assert.equal((await http(new URL(loc2).pathname.replace(/^/, a.url), { method: 'DELETE' })).status, 204);
    assert.deepEqual(await keys('docker/registry/v2/repositories/big/layer/_uploads/'), []);
  });
});

function run(cmd: string, args: string[], timeoutMs = 180_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

describe('drydock serve on RGW: skopeo copy in and out, delete, registry gc', () => {
  test('skopeo round trip; a deleted image is swept by gc, the tagged one pulls intact', async () => {
    requireTool('skopeo');
    const store = tempDir('drydock-rgw-e2e-store-');
    await busyboxImage(store);
    const config = path.join(tempDir('drydock-rgw-e2e-'), 'config.yml');
    writeS3ServeConfig(config, ceph, `/e2e-${randomBytes(4).toString('hex')}`);
    const env = { AWS_ACCESS_KEY_ID: ceph.accessKey, AWS_SECRET_ACCESS_KEY: ceph.secretKey };
    const serve = await startServe(['--config', config, '--no-access-log'], env);
    try {
      const host = new URL(serve.url).host;
      const dest = `docker://${host}/library/busybox:latest`;
      const push = await run('skopeo', ['copy', '--dest-tls-verify=false', `oci:${store}:latest`, dest]);
      assert.equal(push.code, 0, push.stderr);
      const junk = await pushImage(serve.url, 'scratch/junk', 'v1', { layers: 2 });
      assert.equal((await http(`${serve.url}/v2/scratch/junk/manifests/${junk.digest}`, { method: 'DELETE' })).status, 202);
      await new Promise((r) => setTimeout(r, 1100)); // Last-Modified has one-second resolution
      const gc = await runCli(['registry', 'gc', '--config', config, '--grace-period', '0s', '--format', 'json'], { env });
      assert.equal(gc.code, 0, gc.stderr);
      const result = JSON.parse(gc.stdout) as { blobsDeleted: string[]; manifestsMarked: number };
      assert.deepEqual(result.blobsDeleted.sort(), [junk.digest, junk.config, ...junk.layers].sort());
      assert.equal(result.manifestsMarked, 1);
      const out = tempDir('drydock-rgw-e2e-out-');
      const pull = await run('skopeo', ['copy', '--src-tls-verify=false', dest, `dir:${out}`]);
      assert.equal(pull.code, 0, pull.stderr);
      const inspect = JSON.parse((await run('skopeo', ['inspect', '--tls-verify=false', dest])).stdout) as { Layers: string[] };
      for (const layer of inspect.Layers) assert.equal(sha256(await fsp.readFile(path.join(out, layer.slice('sha256:'.length)))), layer);
      assert.equal((await http(`${serve.url}/v2/scratch/junk/blobs/${junk.layers[0]}`)).status, 404);
      assert.doesNotMatch(serve.stderr(), /If-None-Match/, 'RGW honours conditional writes: no warning');
    } finally {
      await serve.stop();
    }
  });
});

describe('retention on RGW', () => {
  test('policies by push time (Last-Modified), pattern and pull time; pull times batched into the bucket; dry-run lists what gc deletes', () => retentionOnS3(ceph));
});
