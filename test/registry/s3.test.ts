// The S3 storage driver against a real S3-API server (s3rver on 127.0.0.1): what S3 itself would
// enforce but s3rver does not (part sizes), the hidden in-progress state, pagination, config
// parsing, the registry HTTP API on S3 (chunked uploads across two server instances), and
// end to end: `drydock serve --config` with storage.s3, skopeo copy in and out, `drydock registry gc`.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { promises as fsp, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { CLI_MAIN, PROJECT_ROOT, requireTool, runCli, tempDir } from '../helpers/env.js';
import { busyboxImage } from '../helpers/images.js';
import { startS3Server, type S3Server } from '../helpers/s3.js';
import { writeS3ServeConfig } from './serve.js';
import { S3Driver, MIN_CHUNK_SIZE, s3OptionsFromConfig, type S3DriverOptions } from '../../src/registry/storage/s3.js';
import { normalizeConfig, startRegistry, type RegistryConfig, type StartedRegistry } from '../../src/registry/index.js';
import { holderLifetimeMs, leaseRenewalMs, leaseStale, MAX_LEASE_TTL_MS, MIN_LEASE_TTL_MS } from '../../src/registry/storage/s3-lease.js';
import { http, pushImage, sha256 } from './util.js';
import { retentionOnS3 } from './retention-s3.js';

let s3: S3Server;
before(async () => { s3 = await startS3Server(); });
after(async () => { await s3?.stop(); });

function driverOptions(extra: Partial<S3DriverOptions> = {}): S3DriverOptions {
  return {
    bucket: s3.bucket, regionEndpoint: s3.endpoint, accessKey: s3.accessKey, secretKey: s3.secretKey,
    rootDirectory: `t-${randomBytes(4).toString('hex')}`, chunkSize: MIN_CHUNK_SIZE, ...extra,
  };
}

/** Records every S3 call the driver makes (command name and input). */
async function recordCalls(d: S3Driver): Promise<{ name: string; input: Record<string, unknown> }[]> {
  const calls: { name: string; input: Record<string, unknown> }[] = [];
  const { client } = await d.s3();
  client.middlewareStack.add((next, context) => async (args) => {
    calls.push({ name: String(context.commandName), input: args.input as Record<string, unknown> });
    return next(args);
  }, { step: 'initialize', name: `record-${randomBytes(3).toString('hex')}` });
  return calls;
}

async function bucketKeys(d: S3Driver, prefix = ''): Promise<string[]> {
  const { client } = await d.s3();
  const out = await client.send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: prefix }));
  return (out.Contents ?? []).map((o) => o.Key!);
}

describe('S3 config (storage: s3:)', () => {
  const ok: { name: string; raw: Record<string, unknown>; want: Partial<S3DriverOptions> }[] = [
    { name: 'minimal S3-compatible', raw: { bucket: 'b', regionendpoint: 'http://127.0.0.1:9000' }, want: { bucket: 'b', region: 'us-east-1', regionEndpoint: 'http://127.0.0.1:9000' } },
    { name: 'AWS with keys and prefix', raw: { bucket: 'b', region: 'eu-west-1', accesskey: 'AK', secretkey: 'SK', rootdirectory: '/reg', chunksize: 16 << 20 }, want: { region: 'eu-west-1', accessKey: 'AK', secretKey: 'SK', rootDirectory: '/reg', chunkSize: 16 << 20 } },
    { name: 'string booleans and chunk size, as env-expanded configs have them', raw: { bucket: 'b', region: 'r', secure: 'false', forcepathstyle: 'true', skipverify: true, chunksize: '5242880' }, want: { secure: false, forcePathStyle: true, skipVerify: true, chunkSize: 5242880 } },
    { name: 'registry:2 keys without effect are accepted', raw: { bucket: 'b', region: 'r', v4auth: true, loglevel: 'debug', multipartcopychunksize: 33554432 }, want: { bucket: 'b' } },
    { name: 'encryption and storage class', raw: { bucket: 'b', region: 'r', encrypt: true, keyid: 'kms-key', storageclass: 'STANDARD_IA' }, want: { encrypt: true, keyId: 'kms-key', storageClass: 'STANDARD_IA' } },
    { name: 'lease lifetime as a duration', raw: { bucket: 'b', region: 'r', leaselifetime: '2m' }, want: { leaseTtlMs: 120_000 } },
    { name: 'lease lifetime in seconds, as REGISTRY_STORAGE_S3_LEASELIFETIME=45 reads', raw: { bucket: 'b', region: 'r', leaselifetime: 45 }, want: { leaseTtlMs: 45_000 } },
    { name: 'no lease lifetime: the default (30 s) applies', raw: { bucket: 'b', region: 'r' }, want: { leaseTtlMs: undefined } },
    { name: 'a lease lifetime of exactly 1h (the cap)', raw: { bucket: 'b', region: 'r', leaselifetime: '1h' }, want: { leaseTtlMs: 3_600_000 } },
    { name: 'the cap spelled 60m', raw: { bucket: 'b', region: 'r', leaselifetime: '60m' }, want: { leaseTtlMs: 3_600_000 } },
    { name: 'the cap in plain seconds (REGISTRY_STORAGE_S3_LEASELIFETIME=3600)', raw: { bucket: 'b', region: 'r', leaselifetime: '3600' }, want: { leaseTtlMs: 3_600_000 } },
    { name: 'a lease lifetime of exactly 5s (the floor)', raw: { bucket: 'b', region: 'r', leaselifetime: '5s' }, want: { leaseTtlMs: 5_000 } },
    { name: 'the floor spelled 5000ms', raw: { bucket: 'b', region: 'r', leaselifetime: '5000ms' }, want: { leaseTtlMs: 5_000 } },
  ];
  for (const c of ok) {
    test(`accepts: ${c.name}`, () => {
      const o = s3OptionsFromConfig(c.raw, {});
      for (const [k, v] of Object.entries(c.want)) assert.deepEqual(o[k as keyof S3DriverOptions], v, k);
    });
  }
  const bad: { name: string; raw: Record<string, unknown>; err: RegExp }[] = [
    { name: 'no bucket', raw: { region: 'r' }, err: /bucket is required/ },
    { name: 'no region and no endpoint', raw: { bucket: 'b' }, err: /region is required/ },
    { name: 'chunk size under 5 MiB', raw: { bucket: 'b', region: 'r', chunksize: 1048576 }, err: /chunksize must be an integer of at least 5242880/ },
    { name: 'a typo', raw: { bucket: 'b', region: 'r', regionendpiont: 'x' }, err: /storage\.s3\.regionendpiont: unknown parameter/ },
    { name: 'half a key pair', raw: { bucket: 'b', region: 'r', accesskey: 'AK' }, err: /both accesskey and secretkey/ },
    { name: 'a non-boolean', raw: { bucket: 'b', region: 'r', secure: 'yes' }, err: /secure must be true or false/ },
    { name: 'a lease lifetime that is no duration', raw: { bucket: 'b', region: 'r', leaselifetime: 'soon' }, err: /leaselifetime must be a duration between 5s and 1h .*got "soon"/ },
    { name: 'a lease lifetime under 5 s (renewals every third of it would race the 1 s clock)', raw: { bucket: 'b', region: 'r', leaselifetime: '2s' }, err: /leaselifetime must be a duration between 5s and 1h/ },
    { name: 'a lease lifetime over an hour', raw: { bucket: 'b', region: 'r', leaselifetime: '2h' }, err: /leaselifetime must be a duration between 5s and 1h/ },
    { name: 'a lease lifetime one second over the cap', raw: { bucket: 'b', region: 'r', leaselifetime: '1h0m1s' }, err: /leaselifetime must be a duration between 5s and 1h .*got "1h0m1s"/ },
    { name: 'a lease lifetime of 3601 plain seconds', raw: { bucket: 'b', region: 'r', leaselifetime: 3601 }, err: /leaselifetime must be a duration between 5s and 1h/ },
    { name: 'a lease lifetime one millisecond under the floor', raw: { bucket: 'b', region: 'r', leaselifetime: '4999ms' }, err: /leaselifetime must be a duration between 5s and 1h/ },
    { name: 'a zero lease lifetime', raw: { bucket: 'b', region: 'r', leaselifetime: '0s' }, err: /leaselifetime must be a duration between 5s and 1h/ },
  ];
  for (const c of bad) test(`refuses: ${c.name}`, () => assert.throws(() => s3OptionsFromConfig(c.raw, {}), c.err));

  test('region falls back to AWS_REGION', () => {
    assert.equal(s3OptionsFromConfig({ bucket: 'b' }, { AWS_REGION: 'ap-south-1' }).region, 'ap-south-1');
  });
  test('normalizeConfig takes storage.s3 and still refuses other drivers', () => {
    const cfg = normalizeConfig({ storage: { s3: { bucket: 'b', regionendpoint: 'http://x:1' } } as unknown as RegistryConfig['storage'] });
    assert.equal(cfg.storage.s3?.bucket, 'b');
    assert.throws(() => normalizeConfig({ storage: { s3: null } } as never), /storage\.s3 needs parameters/);
    assert.throws(() => normalizeConfig({ storage: { azure: {} } } as never), /"azure" is not supported \(drydock has: filesystem, s3\)/);
  });
});

describe('lease lifetime bounds (storage.s3.leaselifetime 5s-1h)', () => {
  test('the floor: a 5 s lease renews with room for two 1 s clock readings; under it a renewal would not', () => {
    // The age of a lease is read on the server's 1 s clock (Last-Modified against Date): a live
    // holder's lease can read up to its renewal interval plus two seconds old.
    assert.equal(MIN_LEASE_TTL_MS, 5_000);
    assert.ok(leaseRenewalMs(MIN_LEASE_TTL_MS) + 2_000 < MIN_LEASE_TTL_MS, `renewal every ${leaseRenewalMs(MIN_LEASE_TTL_MS)} ms`);
    assert.ok(!(leaseRenewalMs(3_000) + 2_000 < 3_000), 'a 3 s lifetime (below the floor) would let a live lease look stale');
    assert.equal(leaseStale(leaseRenewalMs(MIN_LEASE_TTL_MS) + 2_000, MIN_LEASE_TTL_MS, MIN_LEASE_TTL_MS), false);
  });

  test('the cap: a lease claiming a longer lifetime than 1 h blocks an upload for 1 h at most', () => {
    const cases: { body: string; want: number | undefined }[] = [
      { body: JSON.stringify({ holder: 'h', pid: 1, ttlMs: 30_000 }), want: 30_000 },
      { body: JSON.stringify({ holder: 'h', pid: 1, ttlMs: MAX_LEASE_TTL_MS }), want: MAX_LEASE_TTL_MS },
      { body: JSON.stringify({ holder: 'h', pid: 1, ttlMs: MAX_LEASE_TTL_MS + 1 }), want: MAX_LEASE_TTL_MS },
      { body: JSON.stringify({ holder: 'h', pid: 1, ttlMs: 365 * 86_400_000 }), want: MAX_LEASE_TTL_MS },
      { body: JSON.stringify({ holder: 'h', pid: 1, ttlMs: 1e308 * 10 }), want: undefined }, // Infinity serializes as null
      { body: JSON.stringify({ holder: 'h', ttlMs: -5 }), want: undefined },
      { body: JSON.stringify({ holder: 'h', ttlMs: '1h' }), want: undefined },
      { body: '{"holder":"dead"}', want: undefined },
      { body: 'null', want: undefined },
      { body: 'not json', want: undefined },
    ];
    for (const c of cases) assert.equal(holderLifetimeMs(c.body), c.want, c.body);
    const year = holderLifetimeMs(JSON.stringify({ ttlMs: 365 * 86_400_000 }));
    assert.equal(leaseStale(MAX_LEASE_TTL_MS, 5_000, year), false, 'held for the hour');
    assert.equal(leaseStale(MAX_LEASE_TTL_MS + 1_000, 5_000, year), true, 'taken over after it');
    assert.equal(leaseStale(MAX_LEASE_TTL_MS + 1_000, 5_000, 365 * 86_400_000), false, 'uncapped, it would block for a year');
  });

  test('leaselifetime 1h from the config: the lease object records it, renewals come every 20 min, and it reads back capped', async () => {
    const o = s3OptionsFromConfig({ bucket: s3.bucket, regionendpoint: s3.endpoint, accesskey: s3.accessKey, secretkey: s3.secretKey, rootdirectory: `t-${randomBytes(4).toString('hex')}`, leaselifetime: '1h' }, {});
    const d = new S3Driver(o);
    await d.putContent('/up/a/startedat', 'now');
    const release = await d.lockFile('/up/a/writer.lock');
    assert.ok(release);
    const body = (await d.getContent('/up/a/writer.lock')).toString();
    assert.equal(JSON.parse(body).ttlMs, 3_600_000);
    assert.equal(holderLifetimeMs(body), 3_600_000);
    assert.equal(leaseRenewalMs(o.leaseTtlMs!), 1_200_000);
    await release();
    await assert.rejects(d.getContent('/up/a/writer.lock'), /path not found/, 'released');
    await d.delete('/');
  });
});

describe('S3 driver on s3rver', () => {
  test('uploads parts of at least chunksize except the last; small files are one PutObject', async () => {
    const d = new S3Driver(driverOptions());
    const calls = await recordCalls(d);
    const blob = randomBytes(2 * MIN_CHUNK_SIZE + 123_456);
    const cuts = [0, 3_000_000, 3_000_001, 7_000_000, blob.length];
    for (let i = 0; i + 1 < cuts.length; i++) {
      const w = await d.writer('/u/data', true);
      for (let off = cuts[i]!; off < cuts[i + 1]!; off += 65_536) await w.write(blob.subarray(off, Math.min(off + 65_536, cuts[i + 1]!)));
      if (i + 2 === cuts.length) await w.commit();
      else await w.close();
    }
    const parts = calls.filter((c) => c.name === 'UploadPartCommand').map((c) => c.input.ContentLength as number);
    assert.ok(parts.length >= 2, `parts: ${parts}`);
    for (const size of parts.slice(0, -1)) assert.ok(size >= MIN_CHUNK_SIZE, `non-final part of ${size} bytes`);
    assert.equal(parts.reduce((a, b) => a + b, 0), blob.length);
    assert.equal(calls.filter((c) => c.name === 'CreateMultipartUploadCommand').length, 1, 'one multipart upload across all writers');
    assert.equal(createHash('sha256').update(await d.getContent('/u/data')).digest('hex'), createHash('sha256').update(blob).digest('hex'));

    calls.length = 0;
    const small = await d.writer('/u/small', true);
    await small.write(randomBytes(100_000));
    await small.commit();
    assert.deepEqual(calls.map((c) => c.name).filter((n) => n.includes('Multipart') || n.includes('Part')), []);
    assert.ok(calls.some((c) => c.name === 'PutObjectCommand' && c.input.Key === `${d.options.rootDirectory}/u/small`));
  });

  test('keys live under rootdirectory; the in-progress state is a hidden sibling that commit removes', async () => {
    const d = new S3Driver(driverOptions());
    const root = d.options.rootDirectory!;
    const w = await d.writer('/r/_uploads/x/data', true);
    await w.write(Buffer.from('partial'));
    await w.close();
    assert.deepEqual(await bucketKeys(d, `${root}/`), [`${root}/r/_uploads/x/.drydock-inprogress.data`]);
    assert.deepEqual(await d.list('/r/_uploads/x'), ['/r/_uploads/x/data']);
    assert.equal((await d.stat('/r/_uploads/x/data')).size, 7);
    const again = await d.writer('/r/_uploads/x/data', true);
    await again.commit();
    assert.deepEqual(await bucketKeys(d, `${root}/`), [`${root}/r/_uploads/x/data`]);
    const other = new S3Driver(driverOptions());
    await assert.rejects(other.stat('/r'), /path not found/, 'another rootdirectory sees nothing');
  });

  test('a state left behind by a commit that died before removing it loses to the finished object', async () => {
    const d = new S3Driver(driverOptions());
    const w = await d.writer('/crash/data', true);
    await w.write(Buffer.from('partial'));
    await w.close();
    // the crash: CompleteMultipartUpload/PutObject happened, the state's DeleteObject did not
    await d.putContent('/crash/data', 'the finished content');
    assert.equal((await d.stat('/crash/data')).size, 20);
    const again = await d.writer('/crash/data', true);
    assert.equal(again.size, 20);
    await again.commit();
    assert.equal((await d.getContent('/crash/data')).toString(), 'the finished content');
    assert.deepEqual(await bucketKeys(d, `${d.options.rootDirectory}/`), [`${d.options.rootDirectory}/crash/data`]);
  });

  test('list and walk page through results (page size 2) and walk jumps over skipped directories', async () => {
    const d = new S3Driver(driverOptions({ listPageSize: 2 }));
    const calls = await recordCalls(d);
    const names = Array.from({ length: 9 }, (_, i) => `f${i}`);
    for (const n of names) await d.putContent(`/p/${n}`, n);
    for (let i = 0; i < 12; i++) await d.putContent(`/p/_skipme/${String(i).padStart(2, '0')}`, 'x');
    calls.length = 0;
    assert.deepEqual(await d.list('/p'), ['/p/_skipme', ...names.map((n) => `/p/${n}`)]);
    assert.ok(calls.filter((c) => c.name === 'ListObjectsV2Command').length >= 5, 'paginated');
    calls.length = 0;
    const seen: string[] = [];
    await d.walk('/p', (info) => { seen.push(info.path); return info.path.endsWith('_skipme') ? 'skip' : undefined; });
    assert.deepEqual(seen.sort(), ['/p/_skipme', ...names.map((n) => `/p/${n}`)].sort());
    const lists = calls.filter((c) => c.name === 'ListObjectsV2Command');
    assert.ok(lists.some((c) => typeof c.input.StartAfter === 'string'), 'jumped with StartAfter');
    assert.ok(lists.length < (9 + 12) / 2, `${lists.length} list calls: the skipped keys were not paged through`);
    await d.delete('/p');
    assert.deepEqual(await bucketKeys(d, `${d.options.rootDirectory}/`), []);
  });

  test('delete and cancel abort the multipart uploads of in-progress files', async () => {
    const d = new S3Driver(driverOptions());
    const calls = await recordCalls(d);
    const root = d.options.rootDirectory!;
    for (const f of ['/ab/_uploads/1/data', '/ab/_uploads/2/data']) {
      const w = await d.writer(f, true);
      await w.write(randomBytes(MIN_CHUNK_SIZE + 5));
      await w.close();
    }
    const created = calls.filter((c) => c.name === 'CreateMultipartUploadCommand').map((c) => c.input.Key);
    assert.deepEqual(created, [`${root}/ab/_uploads/1/data`, `${root}/ab/_uploads/2/data`]);
    calls.length = 0;
    const w = await d.writer('/ab/_uploads/2/data', true);
    await w.cancel();
    await d.delete('/ab');
    // s3rver answers AbortMultipartUpload with 405 (the driver tolerates it); AWS frees the parts
    const aborted = calls.filter((c) => c.name === 'AbortMultipartUploadCommand').map((c) => c.input.Key);
    assert.deepEqual(aborted, [`${root}/ab/_uploads/2/data`, `${root}/ab/_uploads/1/data`]);
    assert.ok(calls.filter((c) => c.name === 'AbortMultipartUploadCommand').every((c) => typeof c.input.UploadId === 'string' && c.input.UploadId.length > 0));
    assert.deepEqual(await bucketKeys(d, `${root}/`), []);
  });

  test('DeleteObjects carries a Content-MD5 of its body (S3-compatible servers require it)', async () => {
    const d = new S3Driver(driverOptions());
    const { client } = await d.s3();
    const seen: { md5?: string; body: string }[] = [];
    client.middlewareStack.add((next, context) => async (args) => {
      const req = args.request as { headers: Record<string, string>; body: string };
      if (context.commandName === 'DeleteObjectsCommand') seen.push({ md5: req.headers['content-md5'], body: String(req.body) });
      return next(args);
    }, { step: 'finalizeRequest', name: 'seeDeleteObjects' });
    await d.putContent('/md5/a', 'x');
    await d.delete('/md5');
    assert.ok(seen.length >= 1);
    for (const s of seen) assert.equal(s.md5, createHash('md5').update(s.body).digest('base64'));
    await assert.rejects(d.stat('/md5/a'), /path not found/);
  });

  test('a missing bucket and wrong credentials are clear errors; env credentials work', async () => {
    await assert.rejects(new S3Driver(driverOptions({ bucket: 'no-such-bucket' })).checkBucket(), /S3 bucket "no-such-bucket" does not exist/);
    await assert.rejects(new S3Driver(driverOptions({ accessKey: 'WRONG', secretKey: 'WRONG' })).checkBucket(), /not usable: InvalidAccessKeyId/);
    const saved = { id: process.env.AWS_ACCESS_KEY_ID, secret: process.env.AWS_SECRET_ACCESS_KEY };
    process.env.AWS_ACCESS_KEY_ID = s3.accessKey;
    process.env.AWS_SECRET_ACCESS_KEY = s3.secretKey;
    try {
      const d = new S3Driver(s3OptionsFromConfig({ bucket: s3.bucket, regionendpoint: s3.endpoint, rootdirectory: 'envcreds' }));
      await d.checkBucket();
      await d.putContent('/hello', 'world');
      assert.equal((await d.getContent('/hello')).toString(), 'world');
    } finally {
      if (saved.id === undefined) delete process.env.AWS_ACCESS_KEY_ID; else process.env.AWS_ACCESS_KEY_ID = saved.id;
      if (saved.secret === undefined) delete process.env.AWS_SECRET_ACCESS_KEY; else process.env.AWS_SECRET_ACCESS_KEY = saved.secret;
    }
  });
});

describe('registry API on S3', () => {
  const regs: StartedRegistry[] = [];
  let root: string;
  const s3Config = () => ({ bucket: s3.bucket, regionendpoint: s3.endpoint, accesskey: s3.accessKey, secretkey: s3.secretKey, rootdirectory: root, chunksize: MIN_CHUNK_SIZE });
  const start = async () => {
    const reg = await startRegistry({ root: '/nonexistent-unused', config: { storage: { s3: s3Config() } as unknown as RegistryConfig['storage'] } });
    regs.push(reg);
    return reg;
  };
  before(() => { root = `api-${randomBytes(4).toString('hex')}`; });
  after(async () => { for (const r of regs) await r.close(); });

  test('a chunked upload spread over two server instances, then ranged and full pulls', async () => {
    const [a, b] = [await start(), await start()];
    const blob = randomBytes(MIN_CHUNK_SIZE * 2 + 4321);
    const digest = sha256(blob);
    const post = await http(`${a.url}/v2/big/layer/blobs/uploads/`, { method: 'POST' });
    assert.equal(post.status, 202);
    let loc = post.headers.get('location')!;
    const cuts = [0, 1_500_000, MIN_CHUNK_SIZE + 17, blob.length];
    for (let i = 0; i + 1 < cuts.length; i++) {
      const base = i % 2 === 0 ? a.url : b.url; // alternate instances: no server-side upload state is needed
      const r = await http(new URL(loc, base).toString(), {
        method: 'PATCH', body: blob.subarray(cuts[i], cuts[i + 1]),
        headers: { 'Content-Type': 'application/octet-stream', 'Content-Range': `${cuts[i]}-${cuts[i + 1]! - 1}` },
      });
      assert.equal(r.status, 202, r.body.toString());
      assert.equal(r.headers.get('range'), `0-${cuts[i + 1]! - 1}`);
      loc = r.headers.get('location')!;
    }
    const status = await http(new URL(loc, a.url).toString());
    assert.equal(status.headers.get('range'), `0-${blob.length - 1}`);
    const put = new URL(loc, a.url); // instance a has no hash state for the last chunk: it re-reads the upload
    put.searchParams.set('digest', digest);
    const done = await http(put.toString(), { method: 'PUT' });
    assert.equal(done.status, 201, done.body.toString());
    for (const reg of [a, b]) {
      const head = await http(`${reg.url}/v2/big/layer/blobs/${digest}`, { method: 'HEAD' });
      assert.equal(head.headers.get('content-length'), String(blob.length));
      const full = await http(`${reg.url}/v2/big/layer/blobs/${digest}`);
      assert.equal(sha256(full.body), digest);
      const part = await http(`${reg.url}/v2/big/layer/blobs/${digest}`, { headers: { Range: `bytes=${MIN_CHUNK_SIZE - 5}-${MIN_CHUNK_SIZE + 4}` } });
      assert.equal(part.status, 206);
      assert.deepEqual(part.body, blob.subarray(MIN_CHUNK_SIZE - 5, MIN_CHUNK_SIZE + 5));
    }
    const keys = await bucketKeys(new S3Driver(driverOptions()), `${root}/docker/registry/v2/repositories/big/layer/_uploads/`);
    assert.deepEqual(keys, [], 'the upload directory is gone');
  });

  test('a wrong digest is refused and the cancelled upload leaves nothing behind', async () => {
    const reg = regs[0] ?? await start();
    const post = await http(`${reg.url}/v2/bad/blob/blobs/uploads/`, { method: 'POST' });
    const loc = new URL(post.headers.get('location')!, reg.url);
    await http(loc.toString(), { method: 'PATCH', body: randomBytes(MIN_CHUNK_SIZE + 1), headers: { 'Content-Type': 'application/octet-stream' } });
    loc.searchParams.set('digest', sha256('something else'));
    const r = await http(loc.toString(), { method: 'PUT' });
    assert.equal(r.status, 400);
    const keys = await bucketKeys(new S3Driver(driverOptions()), `${root}/docker/registry/v2/repositories/bad/`);
    assert.deepEqual(keys, []);
  });

  test('pushImage, tags, catalog and delete work as on the filesystem', async () => {
    const reg = regs[0] ?? await start();
    const img = await pushImage(reg.url, 'team/app', 'v1', { layers: 2 });
    assert.deepEqual((await http(`${reg.url}/v2/team/app/tags/list`)).json(), { name: 'team/app', tags: ['v1'] });
    assert.ok(((await http(`${reg.url}/v2/_catalog`)).json() as { repositories: string[] }).repositories.includes('team/app'));
    const m = await http(`${reg.url}/v2/team/app/manifests/${img.digest}`);
    assert.deepEqual(m.body, img.manifest);
    assert.equal((await http(`${reg.url}/v2/team/app/manifests/${img.digest}`, { method: 'DELETE' })).status, 202);
    assert.equal((await http(`${reg.url}/v2/team/app/manifests/v1`)).status, 404);
  });
});

describe('S3 wiring', () => {
  // The SDK is ~13 CommonJS modules; a filesystem registry must not pay for loading them.
  const script = `
    import { createRequire } from 'node:module';
    const r = await import(process.env.REG_INDEX);
    const s3 = process.env.S3_ENDPOINT ? { s3: { bucket: 'registry', regionendpoint: process.env.S3_ENDPOINT, accesskey: 'S3RVER', secretkey: 'S3RVER' } } : {};
    const reg = await r.startRegistry({ root: process.env.ROOT, config: { storage: s3 } });
    await (await fetch(reg.url + '/v2/')).arrayBuffer();
    await reg.close();
    const cache = createRequire(import.meta.url).cache;
    process.stdout.write(String(Object.keys(cache).filter((k) => k.includes('@aws-sdk')).length));
  `;
  const sdkModulesLoaded = (extraEnv: Record<string, string>) => new Promise<number>((resolve, reject) => {
    const file = path.join(tempDir('drydock-s3-lazy-'), 'probe.mjs');
    writeFileSync(file, script);
    const fromSource = CLI_MAIN.endsWith('.ts'); // tsx from source, else the compiled dist/
    execFile(process.execPath, [...(fromSource ? ['--import', 'tsx'] : []), file], {
      cwd: PROJECT_ROOT,
      env: { ...process.env, REG_INDEX: path.join(PROJECT_ROOT, fromSource ? 'src/registry/index.ts' : 'dist/src/registry/index.js'), ROOT: tempDir('drydock-s3-lazy-root-'), ...extraEnv },
    }, (err, stdout, stderr) => (err ? reject(new Error(stderr)) : resolve(Number(stdout))));
  });

  test('a filesystem registry never loads the AWS SDK; an S3 one does', async () => {
    assert.equal(await sdkModulesLoaded({}), 0);
    assert.ok(await sdkModulesLoaded({ S3_ENDPOINT: s3.endpoint }) > 0);
  });

  test('serve --s3-bucket with a missing bucket stops with a clear error', async () => {
    const r = await runCli(['serve', '--addr', '127.0.0.1:0', '--s3-bucket', 'no-such-bucket', '--s3-endpoint', s3.endpoint], {
      env: { AWS_ACCESS_KEY_ID: s3.accessKey, AWS_SECRET_ACCESS_KEY: s3.secretKey }, timeoutMs: 60_000,
    });
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /Error: S3 bucket "no-such-bucket" does not exist/);
    // gc goes through the same driver factory and readiness check
    const config = path.join(tempDir(), 'config.yml');
    writeFileSync(config, `version: 0.1\nstorage:\n  s3:\n    bucket: no-such-bucket\n    regionendpoint: ${s3.endpoint}\n    accesskey: ${s3.accessKey}\n    secretkey: ${s3.secretKey}\n`);
    const gc = await runCli(['registry', 'gc', '--config', config, '--dry-run'], { timeoutMs: 60_000 });
    assert.equal(gc.code, 1, gc.stderr);
    assert.match(gc.stderr, /Error: S3 bucket "no-such-bucket" does not exist/);
    const help = await runCli(['serve', '--help']);
    assert.match(help.stdout, /--s3-bucket <bucket>/);
  });
});

function run(cmd: string, args: string[], timeoutMs = 180_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

describe('drydock serve on S3: skopeo copy in and out, registry gc', () => {
  let proc: ChildProcess | undefined;
  after(() => { proc?.kill('SIGTERM'); });

  test('serve --config with storage.s3, skopeo round trip, gc frees only unreferenced blobs', async () => {
    requireTool('skopeo');
    const store = tempDir('drydock-s3-e2e-store-');
    await busyboxImage(store);
    const dir = tempDir('drydock-s3-e2e-');
    const config = path.join(dir, 'config.yml');
    writeS3ServeConfig(config, s3, `/e2e-${randomBytes(4).toString('hex')}`);
    const env = { ...process.env, AWS_ACCESS_KEY_ID: s3.accessKey, AWS_SECRET_ACCESS_KEY: s3.secretKey };
    const fromSource = CLI_MAIN.endsWith('.ts');
    proc = spawn(process.execPath, [...(fromSource ? ['--import', 'tsx'] : []), CLI_MAIN, 'serve', '--config', config, '--no-access-log'], { cwd: PROJECT_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    const url = await new Promise<string>((resolve, reject) => {
      proc!.stderr!.on('data', (d) => {
        err += d;
        const m = /listening on (\S+) \(storage (s3:\/\/[^)]+)\)/.exec(err);
        if (m) resolve(m[1]!);
      });
      proc!.on('exit', (c) => reject(new Error(`serve exited ${c}: ${err}`)));
    });
    assert.doesNotMatch(err, /NodeVersionSupportWarning/);
    const host = new URL(url).host;

    const dest = `docker://${host}/library/busybox:latest`;
    const push = await run('skopeo', ['copy', '--dest-tls-verify=false', `oci:${store}:latest`, dest]);
    assert.equal(push.code, 0, push.stderr);
    const junk = await pushImage(url, 'scratch/junk', 'v1', { layers: 2 });
    assert.equal((await http(`${url}/v2/scratch/junk/manifests/${junk.digest}`, { method: 'DELETE' })).status, 202);
    // S3's LastModified has one-second resolution, and gc keeps what was linked at or after its
    // start stamp (grace 0): links written in gc's own second would rightly be kept.
    await new Promise((r) => setTimeout(r, 1100));

    const gc = await runCli(['registry', 'gc', '--config', config, '--grace-period', '0s', '--format', 'json'], { env });
    assert.equal(gc.code, 0, gc.stderr);
    const result = JSON.parse(gc.stdout) as { blobsDeleted: string[]; repositories: number; manifestsMarked: number };
    assert.deepEqual(result.blobsDeleted.sort(), [junk.digest, junk.config, ...junk.layers].sort());
    assert.equal(result.manifestsMarked, 1);

    const out = tempDir('drydock-s3-e2e-out-');
    const pull = await run('skopeo', ['copy', '--src-tls-verify=false', dest, `dir:${out}`]);
    assert.equal(pull.code, 0, pull.stderr);
    const inspect = JSON.parse((await run('skopeo', ['inspect', '--tls-verify=false', dest])).stdout) as { Layers: string[] };
    for (const layer of inspect.Layers) {
      const data = await fsp.readFile(path.join(out, layer.slice('sha256:'.length)));
      assert.equal(sha256(data), layer, 'pulled layer intact after gc');
    }
    assert.equal((await http(`${url}/v2/scratch/junk/blobs/${junk.layers[0]}`)).status, 404);
    // s3rver ignores If-None-Match, so the lease cannot keep replicas apart: serve says so
    assert.match(err, /ignores If-None-Match on PutObject: uploads are serialized within this process only/);
  });
});

describe('retention on S3 (s3rver)', () => {
  test('policies by push time (Last-Modified), pattern and pull time; pull times batched into the bucket; dry-run lists what gc deletes', () => retentionOnS3(s3));
});
