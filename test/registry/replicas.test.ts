// Three `drydock serve` processes on one Ceph RGW bucket (test/helpers/ceph.ts) behave as one
// registry: an upload moves between replicas chunk by chunk and only one replica writes it at a
// time (the S3 lease, storage/s3-lease.ts); what one replica acknowledged the others serve at
// once; and `drydock registry gc` running while replicas take pushes never breaks an image whose
// manifest PUT got 201 — including pushes that skip blobs the gc is sweeping at that moment; a
// replica killed mid-PATCH blocks its upload only until its lease goes stale, after the lifetime
// the replicas are configured with (REGISTRY_STORAGE_S3_LEASELIFETIME), and gc runs meanwhile.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import nodeHttp from 'node:http';
import path from 'node:path';
import { HeadObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { requireTool, runCli, tempDir } from '../helpers/env.js';
import { startCeph, type CephCluster } from '../helpers/ceph.js';
import { MIN_CHUNK_SIZE } from '../../src/registry/storage/s3.js';
import { startServe, type ServeProcess, writeS3ServeConfig } from './serve.js';
import { http, pushBlob, pushImage, sha256 } from './util.js';

let ceph: CephCluster;
const replicas: ServeProcess[] = [];
let configFile: string;
let env: Record<string, string>;
/** The replicas' lease lifetime (storage.s3.leaselifetime, set through the environment as an operator may). */
const LEASE_LIFETIME_S = 6;

before(async () => {
  ceph = await startCeph();
  configFile = path.join(tempDir('drydock-replicas-'), 'config.yml');
  writeS3ServeConfig(configFile, ceph, '/shared');
  env = { AWS_ACCESS_KEY_ID: ceph.accessKey, AWS_SECRET_ACCESS_KEY: ceph.secretKey, REGISTRY_STORAGE_S3_LEASELIFETIME: `${LEASE_LIFETIME_S}s` };
  for (let i = 0; i < 3; i++) replicas.push(await startServe(['--config', configFile, '--no-access-log'], env));
}, { timeout: 240_000 });
after(async () => {
  for (const r of replicas) await r.stop();
  await ceph?.stop();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A PATCH whose body is sent in two halves; `during` runs between them, the request still open. */
function slowPatch(url: string, head: Buffer, tail: Buffer, during: () => Promise<void>): Promise<{ status: number; body: string }> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const req = nodeHttp.request({ host: u.hostname, port: u.port, path: u.pathname + u.search, method: 'PATCH', agent: false, headers: { 'Content-Type': 'application/octet-stream', 'Content-Length': head.length + tail.length } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, body: Buffer.concat(chunks).toString() }));
    });
    req.on('error', reject);
    req.write(head, async () => {
      try {
        await during();
      } finally {
        req.end(tail);
      }
    });
  });
}

/** Waits until `key` exists in the bucket (at most 30 s). */
async function waitForKey(key: string): Promise<void> {
  const client = new S3Client({ region: 'us-east-1', endpoint: ceph.endpoint, forcePathStyle: true, credentials: { accessKeyId: ceph.accessKey, secretAccessKey: ceph.secretKey } });
  try {
    for (const deadline = Date.now() + 30_000; ;) {
      try {
        await client.send(new HeadObjectCommand({ Bucket: ceph.bucket, Key: key }));
        return;
      } catch (e) {
        if (Date.now() > deadline) throw new Error(`${key} never appeared: ${(e as Error).name}`);
        await sleep(100);
      }
    }
  } finally {
    client.destroy();
  }
}

async function assertImageIntact(base: string, repo: string, digest: string): Promise<void> {
  const m = await http(`${base}/v2/${repo}/manifests/${digest}`, { headers: { Accept: 'application/vnd.oci.image.manifest.v1+json' } });
  assert.equal(m.status, 200, `${repo}@${digest}: ${m.body.toString()}`);
  assert.equal(sha256(m.body), digest);
  const doc = m.json() as { config: { digest: string }; layers: { digest: string }[] };
  for (const d of [doc.config.digest, ...doc.layers.map((l) => l.digest)]) {
    const b = await http(`${base}/v2/${repo}/blobs/${d}`);
    assert.equal(b.status, 200, `${repo}@${digest}: blob ${d} is ${b.status}`);
    assert.equal(sha256(b.body), d, `${repo}@${digest}: blob ${d} intact`);
  }
}

describe('replicas on one RGW bucket', () => {
  test('a chunked upload started on one replica, continued on a second, finished on the third', async () => {
    const [a, b, c] = replicas as [ServeProcess, ServeProcess, ServeProcess];
    const blob = randomBytes(2 * MIN_CHUNK_SIZE + 12_345);
    const post = await http(`${a.url}/v2/team/big/blobs/uploads/`, { method: 'POST' });
    assert.equal(post.status, 202);
    let loc = post.headers.get('location')!;
    const cuts = [0, MIN_CHUNK_SIZE + 1, blob.length];
    for (const [i, base] of [a.url, b.url].entries()) {
      const r = await http(new URL(loc, base).toString(), { method: 'PATCH', body: blob.subarray(cuts[i], cuts[i + 1]), headers: { 'Content-Type': 'application/octet-stream', 'Content-Range': `${cuts[i]}-${cuts[i + 1]! - 1}` } });
      assert.equal(r.status, 202, r.body.toString());
      loc = r.headers.get('location')!;
    }
    assert.equal((await http(new URL(loc, c.url).toString())).headers.get('range'), `0-${blob.length - 1}`);
    const put = new URL(loc, c.url);
    put.searchParams.set('digest', sha256(blob));
    assert.equal((await http(put.toString(), { method: 'PUT' })).status, 201);
    for (const r of replicas) assert.equal(sha256((await http(`${r.url}/v2/team/big/blobs/${sha256(blob)}`)).body), sha256(blob));
  });

  test('while one replica streams a PATCH, the others refuse to touch that upload (416), across processes', async () => {
    const [a, b, c] = replicas as [ServeProcess, ServeProcess, ServeProcess];
    const head = randomBytes(MIN_CHUNK_SIZE + 100);
    const tail = randomBytes(50_000);
    const post = await http(`${a.url}/v2/team/race/blobs/uploads/`, { method: 'POST' });
    const loc = post.headers.get('location')!;
    const during: { status: number; what: string }[] = [];
    const lease = `shared/docker/registry/v2/repositories/team/race/_uploads/${/\/uploads\/([^/?]+)/.exec(loc)![1]}/writer.lock`;
    const patched = await slowPatch(new URL(loc, a.url).toString(), head, tail, async () => {
      await waitForKey(lease); // replica a owns the upload now
      const commit = new URL(loc, b.url);
      commit.searchParams.set('digest', sha256(head));
      during.push({ what: 'PUT on b', status: (await http(commit.toString(), { method: 'PUT' })).status });
      during.push({ what: 'PATCH on c', status: (await http(new URL(loc, c.url).toString(), { method: 'PATCH', body: 'evil!', headers: { 'Content-Type': 'application/octet-stream' } })).status });
    });
    assert.equal(patched.status, 202, patched.body);
    assert.deepEqual(during, [{ what: 'PUT on b', status: 416 }, { what: 'PATCH on c', status: 416 }]);
    const whole = Buffer.concat([head, tail]);
    const put = new URL(loc, c.url);
    put.searchParams.set('digest', sha256(whole));
    assert.equal((await http(put.toString(), { method: 'PUT' })).status, 201, 'the lease is released with the PATCH');
    assert.equal(sha256((await http(`${b.url}/v2/team/race/blobs/${sha256(whole)}`)).body), sha256(whole));
  });

  test('a replica killed mid-PATCH: its lease blocks the upload for the configured lifetime, gc runs meanwhile, then another replica resumes it', async () => {
    const doomed = await startServe(['--config', configFile, '--no-access-log'], env);
    try {
      await crashAndResume(doomed);
    } finally {
      if (doomed.process.exitCode === null && doomed.process.signalCode === null) await doomed.stop();
    }
  });

  async function crashAndResume(doomed: ServeProcess): Promise<void> {
    const [a] = replicas as [ServeProcess];
    const first = randomBytes(MIN_CHUNK_SIZE + 7);
    const post = await http(`${a.url}/v2/team/crash/blobs/uploads/`, { method: 'POST' });
    let loc = post.headers.get('location')!;
    const r1 = await http(new URL(loc, a.url).toString(), { method: 'PATCH', body: first, headers: { 'Content-Type': 'application/octet-stream', 'Content-Range': `0-${first.length - 1}` } });
    assert.equal(r1.status, 202);
    loc = r1.headers.get('location')!;
    const lease = `shared/docker/registry/v2/repositories/team/crash/_uploads/${/\/uploads\/([^/?]+)/.exec(loc)![1]}/writer.lock`;
    const dying = slowPatch(new URL(loc, doomed.url).toString(), randomBytes(MIN_CHUNK_SIZE + 3), Buffer.alloc(0), async () => {
      await waitForKey(lease);
      doomed.process.kill('SIGKILL');
    }).catch(() => undefined);
    await dying;
    const killedAt = Date.now();
    const blocked = await http(new URL(loc, a.url).toString());
    assert.equal(blocked.headers.get('range'), `0-${first.length - 1}`, 'the offset is what the last finished request left');
    const second = randomBytes(1000);
    const patch = () => http(new URL(loc, a.url).toString(), { method: 'PATCH', body: second, headers: { 'Content-Type': 'application/octet-stream', 'Content-Range': `${first.length}-${first.length + second.length - 1}` } });
    assert.equal((await patch()).status, 416, 'the dead replica\'s lease is still fresh');
    // gc from another process, run while the dead replica's lease is fresh, neither waits for it
    // nor disturbs the upload.
    const gc = runCli(['registry', 'gc', '--config', configFile, '--grace-period', '0s', '--format', 'json'], { env, timeoutMs: 120_000 });
    let resumed: Awaited<ReturnType<typeof patch>> | undefined;
    let lastRefused = 0;
    while (Date.now() - killedAt < 30_000) {
      await sleep(250);
      const at = Date.now();
      resumed = await patch();
      if (resumed.status !== 416) break;
      lastRefused = at - killedAt;
    }
    const takenAfter = Date.now() - killedAt;
    process.stderr.write(`dead replica's lease (lifetime ${LEASE_LIFETIME_S} s): refused until ${(lastRefused / 1000).toFixed(1)} s after the kill, taken over at ${(takenAfter / 1000).toFixed(1)} s\n`);
    assert.equal(resumed?.status, 202, resumed?.body.toString());
    // Stale = no renewal for the lifetime. The last renewal came up to a third of it before the
    // kill, and Last-Modified has one-second resolution, so the earliest takeover is at
    // lifetime - lifetime/3 - 1 s.
    const earliest = (LEASE_LIFETIME_S - LEASE_LIFETIME_S / 3 - 1) * 1000;
    assert.ok(lastRefused >= earliest - 500, `the lease held while fresh (last 416 at ${lastRefused} ms, earliest takeover ${earliest} ms)`);
    assert.ok(takenAfter < 20_000, `taken over after the configured ${LEASE_LIFETIME_S} s, well before the 30 s default (took ${takenAfter} ms)`);
    const swept = await gc;
    assert.equal(swept.code, 0, swept.stderr);
    const put = new URL(resumed!.headers.get('location')!, a.url);
    const whole = Buffer.concat([first, second]);
    put.searchParams.set('digest', sha256(whole));
    assert.equal((await http(put.toString(), { method: 'PUT' })).status, 201);
    assert.equal(sha256((await http(`${a.url}/v2/team/crash/blobs/${sha256(whole)}`)).body), sha256(whole));
  }

  test('pushes to one replica are pulled from another at once, while they go on', async () => {
    const [a, b, c] = replicas as [ServeProcess, ServeProcess, ServeProcess];
    const pulled: string[] = [];
    const pulls: Promise<void>[] = [];
    for (let i = 0; i < 6; i++) {
      const img = await pushImage(i % 2 ? c.url : a.url, 'team/live', `v${i}`, { layers: 2 });
      pulls.push((async () => {
        const tag = await http(`${b.url}/v2/team/live/manifests/v${i}`, { headers: { Accept: 'application/vnd.oci.image.manifest.v1+json' } });
        assert.equal(tag.status, 200, `v${i} from b right after the push`);
        assert.equal(sha256(tag.body), img.digest);
        await assertImageIntact(b.url, 'team/live', img.digest);
        pulled.push(`v${i}`);
      })());
    }
    await Promise.all(pulls);
    assert.equal(pulled.length, 6);
    const tags = (await http(`${c.url}/v2/team/live/tags/list`)).json() as { tags: string[] };
    assert.deepEqual(tags.tags.sort(), ['v0', 'v1', 'v2', 'v3', 'v4', 'v5']);
  });

  test('gc running while replicas take pushes never breaks an acknowledged image', async () => {
    requireTool('skopeo');
    const [a, b, c] = replicas as [ServeProcess, ServeProcess, ServeProcess];
    // Garbage that pushes will want again: an image deleted at once, its blobs still linked in
    // the repository, so a client's HEAD finds them and skips the upload while gc sweeps them.
    const pool: { data: Buffer; digest: string }[] = [];
    for (let i = 0; i < 6; i++) {
      const data = randomBytes(2000 + i);
      pool.push({ data, digest: await pushBlob(a.url, 'team/gc', data) });
    }
    const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } }));
    const configDigest = await pushBlob(a.url, 'team/gc', config);
    await sleep(1100); // older than the first gc's start stamp (Last-Modified has 1 s resolution)

    const acknowledged: { n: number; digest: string }[] = [];
    let refused = 0;
    const pushOnce = async (base: string, n: number): Promise<void> => {
      const layers = [pool[n % pool.length]!, pool[(n + 1) % pool.length]!];
      for (let attempt = 0; attempt < 5; attempt++) {
        // as docker and skopeo do: HEAD each blob in the repository, upload only the missing
        for (const blob of [{ data: config, digest: configDigest }, ...layers]) {
          if ((await http(`${base}/v2/team/gc/blobs/${blob.digest}`, { method: 'HEAD' })).status !== 200) await pushBlob(base, 'team/gc', blob.data);
        }
        const manifest = Buffer.from(JSON.stringify({
          schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json',
          config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: configDigest, size: config.length },
          layers: layers.map((l) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: l.digest, size: l.data.length })),
          annotations: { n: String(n) },
        }));
        const r = await http(`${base}/v2/team/gc/manifests/n${n}`, { method: 'PUT', body: manifest, headers: { 'Content-Type': 'application/vnd.oci.image.manifest.v1+json' } });
        if (r.status === 201) { acknowledged.push({ n, digest: sha256(manifest) }); return; }
        refused++; // a blob swept under the push: the client re-pushes, as registry clients do on MANIFEST_BLOB_UNKNOWN
        assert.equal(r.status, 400, r.body.toString());
      }
      assert.fail(`push n${n} never succeeded`);
    };
    const gcRuns: string[] = [];
    const gcLoop = (async () => {
      for (let i = 0; i < 3; i++) {
        const gc = await runCli(['registry', 'gc', '--config', configFile, '--grace-period', '0s', '--delete-untagged', '--format', 'json'], { env, timeoutMs: 120_000 });
        assert.equal(gc.code, 0, gc.stderr);
        gcRuns.push(gc.stdout);
      }
    })();
    const pushLoops = [a, b, c].map(async (r, k) => {
      for (let n = k * 10; n < k * 10 + 4; n++) {
        await pushOnce(r.url, n);
        // untag every other image: its manifest becomes garbage for --delete-untagged
        if (n % 2 === 1) assert.equal((await http(`${r.url}/v2/team/gc/manifests/n${n}`, { method: 'DELETE' })).status, 202);
      }
    });
    await Promise.all([gcLoop, ...pushLoops]);
    const swept = gcRuns.reduce((s, out) => s + (JSON.parse(out) as { blobsDeleted: string[] }).blobsDeleted.length, 0);
    process.stderr.write(`gc: ${gcRuns.length} runs swept ${swept} blobs; ${refused} manifest PUTs refused and re-pushed; ${acknowledged.length} acknowledged\n`);
    assert.equal(acknowledged.length, 12);
    // Every acknowledged image still tagged pulls whole from every replica, and with skopeo.
    for (const img of acknowledged) {
      if (img.n % 2 === 1) continue; // untagged on purpose: --delete-untagged may take it
      for (const r of replicas) await assertImageIntact(r.url, 'team/gc', img.digest);
    }
    const out = tempDir('drydock-replicas-skopeo-');
    const copy = await new Promise<{ code: number; stderr: string }>((resolve) => execFile('skopeo', ['copy', '--src-tls-verify=false', `docker://${new URL(b.url).host}/team/gc:n0`, `dir:${out}`], (err, _o, stderr) => resolve({ code: err ? 1 : 0, stderr })));
    assert.equal(copy.code, 0, copy.stderr);
    assert.ok((await fsp.readdir(out)).includes('manifest.json'));
  });
});
