// Attacks on the upload state machine over real HTTP (raw node:http, so a PATCH body can be held
// open mid-stream), on the filesystem and on the S3 driver (s3rver): a commit racing a streaming
// PATCH, N concurrent commits of one upload, and chunks whose body disagrees with Content-Range.
// Every blob the server acknowledged with 201 must then serve exactly its digest, which skopeo
// checks too (`skopeo copy` to a dir: fails with "Digest did not match" on a corrupt layer).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import nodeHttp from 'node:http';
import { requireTool, tempDir } from '../helpers/env.js';
import { startS3Server, type S3Server } from '../helpers/s3.js';
import { startRegistry, type RegistryConfig, type StartedRegistry } from '../../src/registry/index.js';
import { MIN_CHUNK_SIZE } from '../../src/registry/storage/s3.js';
import type { ChildProcess } from 'node:child_process';
import { assertError, http, pushBlob, serveProcess, sha256 } from './util.js';

interface RawResponse { status: number; headers: nodeHttp.IncomingHttpHeaders; body: Buffer }

/** One request; `send` writes the body (and may pause between writes); no body means Content-Length: 0. */
function raw(base: string, method: string, target: string, headers: Record<string, string | number>, send?: (req: nodeHttp.ClientRequest) => Promise<void>): Promise<RawResponse> {
  const u = new URL(target, base);
  return new Promise((resolve, reject) => {
    let answered = false;
    const req = nodeHttp.request({ host: u.hostname, port: u.port, path: u.pathname + u.search, method, headers: send ? headers : { 'Content-Length': 0, ...headers }, agent: false }, (res) => {
      answered = true;
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    // A server that refuses a request before reading its body closes the connection: the rest
    // of the body then fails with EPIPE, and the answer is what counts.
    req.on('error', (e) => { if (!answered) setTimeout(() => { if (!answered) reject(e); }, 200); });
    if (!send) { req.end(); return; }
    send(req).then(() => req.end(), () => {});
  });
}

const write = (req: nodeHttp.ClientRequest, b: Buffer) => new Promise<void>((resolve, reject) => req.write(b, (e) => (e ? reject(e) : resolve())));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function errorCode(r: RawResponse): string | undefined {
  try { return (JSON.parse(r.body.toString('utf8')) as { errors: { code: string }[] }).errors[0]?.code; } catch { return undefined; }
}

function run(cmd: string, args: string[]): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: 120_000, maxBuffer: 16 << 20 }, (err, _stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stderr }));
  });
}

/**
 * The final check of every attack: each acknowledged digest serves content with that digest, and
 * an image made of them copies out with skopeo, which verifies every blob.
 */
async function assertAcknowledgedBlobsIntact(reg: { url: string; host: string }, repo: string, digests: Map<string, number>): Promise<void> {
  for (const d of digests.keys()) {
    const g = await http(`${reg.url}/v2/${repo}/blobs/${d}`);
    assert.equal(g.status, 200, `GET ${d}`);
    assert.equal(sha256(g.body), d, `the blob acknowledged as ${d} holds other content`);
  }
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } }));
  const configDigest = await pushBlob(reg.url, repo, config);
  const manifest = JSON.stringify({
    schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: configDigest, size: config.length },
    layers: [...digests].map(([digest, size]) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest, size })),
  });
  const put = await http(`${reg.url}/v2/${repo}/manifests/check`, { method: 'PUT', body: manifest, headers: { 'Content-Type': 'application/vnd.oci.image.manifest.v1+json' } });
  assert.equal(put.status, 201, put.body.toString());
  const out = tempDir('drydock-upload-races-skopeo-');
  const r = await run('skopeo', ['copy', '--src-tls-verify=false', `docker://${reg.host}/${repo}:check`, `dir:${out}/image`]);
  assert.equal(r.code, 0, `skopeo copy: ${r.stderr}`);
}

async function startUpload(reg: { url: string }, repo: string): Promise<string> {
  const post = await http(`${reg.url}/v2/${repo}/blobs/uploads/`, { method: 'POST' });
  assert.equal(post.status, 202);
  return post.headers.get('location')!;
}

function withDigest(loc: string, digest: string): string {
  return `${loc}${loc.includes('?') ? '&' : '?'}digest=${digest}`;
}

let s3: S3Server;
before(async () => {
  requireTool('skopeo');
  s3 = await startS3Server();
});
after(async () => { await s3?.stop(); });

const backends: { name: string; start: () => Promise<StartedRegistry> }[] = [
  { name: 'filesystem', start: () => startRegistry({ root: tempDir('drydock-upload-races-') }) },
  {
    name: 's3',
    start: () => startRegistry({
      root: '/nonexistent-unused',
      config: { storage: { s3: { bucket: s3.bucket, regionendpoint: s3.endpoint, accesskey: s3.accessKey, secretkey: s3.secretKey, rootdirectory: `races-${randomBytes(4).toString('hex')}`, chunksize: MIN_CHUNK_SIZE } } as unknown as RegistryConfig['storage'] },
    }),
  },
];

for (const backend of backends) {
  describe(`upload state machine (${backend.name})`, () => {
    let reg: StartedRegistry;
    before(async () => { reg = await backend.start(); });
    after(async () => { await reg?.close(); });

    test('a bodiless PUT while a PATCH still streams is refused with 416; the blob is what was acknowledged', async () => {
      const repo = `race/${backend.name}/put-during-patch`;
      const head = randomBytes(1024 * 1024); // one full write of the filesystem driver: on disk before the PUT
      const tail = randomBytes(300_000);
      const loc = await startUpload(reg, repo);
      let duringPatch: RawResponse | undefined;
      const patch = raw(reg.url, 'PATCH', loc, { 'Content-Type': 'application/octet-stream', 'Content-Length': head.length + tail.length }, async (req) => {
        await write(req, head);
        await sleep(400); // the server has read and written the head; the request is still open
        duringPatch = await raw(reg.url, 'PUT', withDigest(loc, sha256(head)), {});
        await write(req, tail);
      });
      const patched = await patch;
      const acknowledged = new Map<string, number>();
      if (duringPatch!.status === 201) acknowledged.set(sha256(head), head.length);
      if (patched.status === 202) {
        const put = await raw(reg.url, 'PUT', withDigest(loc, sha256(Buffer.concat([head, tail]))), {});
        if (put.status === 201) acknowledged.set(sha256(Buffer.concat([head, tail])), head.length + tail.length);
      }
      await assertAcknowledgedBlobsIntact(reg, repo, acknowledged);
      assert.equal(duringPatch!.status, 416, `PUT during the PATCH: ${duringPatch!.status} ${duringPatch!.body.toString()}`);
      assert.equal(errorCode(duringPatch!), 'RANGE_INVALID');
      assert.equal(patched.status, 202, patched.body.toString());
      assert.equal(acknowledged.size, 1, 'the whole upload commits once the PATCH is done');
    });

    test('a PATCH while a PUT streams its last chunk is refused with 416', async () => {
      const repo = `race/${backend.name}/patch-during-put`;
      const data = randomBytes(600_000);
      const loc = await startUpload(reg, repo);
      let duringPut: RawResponse | undefined;
      const put = await raw(reg.url, 'PUT', withDigest(loc, sha256(data)), { 'Content-Length': data.length }, async (req) => {
        await write(req, data.subarray(0, 200_000));
        await sleep(300);
        duringPut = await raw(reg.url, 'PATCH', loc, { 'Content-Length': 5 }, async (r) => write(r, Buffer.from('evil!')));
        await write(req, data.subarray(200_000));
      });
      assert.equal(put.status, 201, put.body.toString());
      await assertAcknowledgedBlobsIntact(reg, repo, new Map([[sha256(data), data.length]]));
      assert.equal(duringPut!.status, 416, duringPut!.body.toString());
    });

    const commitRaces: { name: string; withBody: boolean }[] = [
      { name: 'bodiless PUTs after the last PATCH', withBody: false },
      { name: 'PUTs that each carry the whole body', withBody: true },
    ];
    for (const c of commitRaces) {
      test(`of 8 concurrent commits (${c.name}) exactly one gets 201, the others 404 or 416`, async () => {
        const repo = `race/${backend.name}/commits-${c.withBody ? 'body' : 'bodiless'}`;
        const data = randomBytes(700_000);
        const digest = sha256(data);
        const loc = await startUpload(reg, repo);
        if (!c.withBody) assert.equal((await http(`${reg.url}${loc}`, { method: 'PATCH', body: data })).status, 202);
        const results = await Promise.all(Array.from({ length: 8 }, () => raw(reg.url, 'PUT', withDigest(loc, digest),
          c.withBody ? { 'Content-Length': data.length } : {},
          // One write of the whole body: the refused requests are answered before they are read, and
          // a body still being written then would only see the connection close (EPIPE).
          c.withBody ? async (req) => write(req, data) : undefined)));
        const statuses = results.map((r) => `${r.status} ${errorCode(r) ?? ''}`.trim());
        assert.equal(results.filter((r) => r.status === 201).length, 1, statuses.join(', '));
        for (const r of results.filter((x) => x.status !== 201)) {
          assert.ok((r.status === 404 && errorCode(r) === 'BLOB_UPLOAD_UNKNOWN') || (r.status === 416 && errorCode(r) === 'RANGE_INVALID'), statuses.join(', '));
        }
        await assertAcknowledgedBlobsIntact(reg, repo, new Map([[digest, data.length]]));
      });
    }

    // [Content-Range, body bytes, body sent with Content-Length (else chunked)]
    const mismatches: [string, number, boolean][] = [
      ['0-9', 3000, false],
      ['0-9', 3000, true],
      ['0-2999', 10, false],
    ];
    for (const [range, size, declared] of mismatches) {
      test(`Content-Range ${range} with a ${size}-byte ${declared ? 'declared' : 'chunked'} body is 416 and leaves the upload as it was`, async () => {
        const repo = `race/${backend.name}/range`;
        const first = randomBytes(10);
        const loc = await startUpload(reg, repo);
        // once at offset 0 and once after an accepted chunk, so an undo must cut back to 10 bytes
        for (const offset of [0, 10]) {
          const [a, b] = range.split('-').map(Number) as [number, number];
          const shifted = `${a + offset}-${b + offset}`;
          const body = randomBytes(size);
          const r = await raw(reg.url, 'PATCH', loc, { 'Content-Range': shifted, ...(declared ? { 'Content-Length': size } : {}) }, async (req) => write(req, body));
          assert.equal(r.status, 416, `${shifted} with ${size} bytes: ${r.status} ${r.body.toString()}`);
          assert.equal(errorCode(r), 'RANGE_INVALID');
          const st = await http(`${reg.url}${loc}`);
          assert.equal(st.status, 204);
          assert.equal(st.headers.get('range'), offset === 0 ? '0-0' : '0-9');
          if (offset === 0) {
            const ok = await raw(reg.url, 'PATCH', loc, { 'Content-Range': '0-9' }, async (req) => write(req, first));
            assert.equal(ok.status, 202, ok.body.toString());
            assert.equal(ok.headers.range, '0-9');
          }
        }
        const put = await raw(reg.url, 'PUT', withDigest(loc, sha256(first)), {});
        assert.equal(put.status, 201, put.body.toString());
        await assertAcknowledgedBlobsIntact(reg, repo, new Map([[sha256(first), 10]]));
      });
    }

    test('DELETE of an upload a PATCH is writing is refused with 416', async () => {
      const repo = `race/${backend.name}/delete`;
      const loc = await startUpload(reg, repo);
      let duringPatch: RawResponse | undefined;
      const patched = await raw(reg.url, 'PATCH', loc, { 'Content-Length': 2000 }, async (req) => {
        await write(req, randomBytes(1000));
        await sleep(300);
        duringPatch = await raw(reg.url, 'DELETE', loc, {});
        await write(req, randomBytes(1000));
      });
      assert.equal(patched.status, 202);
      assertError({ status: duringPatch!.status, body: duringPatch!.body }, 416, 'RANGE_INVALID');
      assert.equal((await http(`${reg.url}${loc}`)).headers.get('range'), '0-1999');
    });
  });
}

describe('upload state machine across two server processes on one root (filesystem)', () => {
  const children = new Set<ChildProcess>();
  after(() => { for (const c of children) c.kill('SIGKILL'); });

  test('a PUT on server B while server A streams a PATCH of the same upload is refused with 416', async () => {
    const root = tempDir('drydock-upload-races-2proc-');
    const [a, b] = [await serveProcess(['--root', root, '--no-access-log'], children), await serveProcess(['--root', root, '--no-access-log'], children)];
    const repo = 'race/two-servers';
    const head = randomBytes(1024 * 1024);
    const tail = randomBytes(300_000);
    const loc = await startUpload(a, repo);
    let onB: RawResponse | undefined;
    const patched = await raw(a.url, 'PATCH', loc, { 'Content-Length': head.length + tail.length }, async (req) => {
      await write(req, head);
      await sleep(400);
      onB = await raw(b.url, 'PUT', withDigest(loc, sha256(head)), {});
      await write(req, tail);
    });
    const acknowledged = new Map<string, number>();
    if (onB!.status === 201) acknowledged.set(sha256(head), head.length);
    const whole = Buffer.concat([head, tail]);
    if (patched.status === 202 && (await raw(b.url, 'PUT', withDigest(loc, sha256(whole)), {})).status === 201) acknowledged.set(sha256(whole), whole.length);
    await assertAcknowledgedBlobsIntact(a, repo, acknowledged);
    assert.equal(onB!.status, 416, `PUT on the other server: ${onB!.status} ${onB!.body.toString()}`);
    assert.equal(acknowledged.size, 1);
  });
});
