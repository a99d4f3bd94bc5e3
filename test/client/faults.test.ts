// The bad-input cases, each against a misbehaving server on 127.0.0.1: a blob that does
// not match its digest, a 5 MiB manifest, a garbage token endpoint, a 401 loop, a connection cut
// mid-layer (always, and once), and credentials never following a redirect or a foreign URL.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { ContentStore } from '../../src/store/index.js';
import * as client from '../../src/client/index.js';
import { MediaType } from '../../src/image/index.js';
import { tempDir } from '../helpers/env.js';
import { startFakeRegistry, type FakeRegistry } from './fake-registry.js';
import { buildImage, type TestImage } from './fixtures.js';

function publish(reg: FakeRegistry, repo: string, tag: string, img: TestImage): void {
  for (const l of img.layers) reg.addBlob(l.bytes);
  reg.addBlob(img.config.bytes);
  reg.addManifest(repo, tag, img.manifestBytes, MediaType.OciManifest);
}

/** Nothing half-written: no tag, no blob of the failed layer, no ingest leftovers. */
async function assertNothingStored(store: ContentStore, digest: string): Promise<void> {
  assert.deepEqual(await store.listTags(), []);
  assert.equal(await store.hasBlob(digest), false, 'failed blob is not in the store');
  assert.deepEqual(readdirSync(store.tmpDir), [], 'no temp files left behind');
}

function authFileFor(host: string): string {
  const f = path.join(tempDir(), 'auth.json');
  writeFileSync(f, JSON.stringify({ auths: { [host]: { auth: Buffer.from('bob:pw').toString('base64') } } }));
  return f;
}

describe('registry client faults', () => {
  let reg: FakeRegistry;
  let other: FakeRegistry;
  let img: TestImage;
  const BIG = 3_000_000;

  before(async () => {
    reg = await startFakeRegistry();
    other = await startFakeRegistry();
    img = await buildImage([BIG]);
    publish(reg, 'app', '1', img);
  });
  after(async () => { await reg.close(); await other.close(); });

  const layer = () => img.layers[0]!;
  const isLayerGet = (req: { method?: string; url?: string }) => req.method === 'GET' && req.url === `/v2/app/blobs/${layer().descriptor.digest}`;

  it('rejects a blob whose content does not match its digest and stores nothing', async () => {
    reg.handlers.push((req, res) => {
      if (!isLayerGet(req)) return false;
      res.writeHead(200, { 'content-length': layer().bytes.length }).end(randomBytes(layer().bytes.length));
      return true;
    });
    const store = await ContentStore.open(tempDir());
    try {
      await assert.rejects(client.pull(store, `${reg.host}/app:1`, { retries: 0 }), /digest mismatch: expected sha256:/);
      await assertNothingStored(store, layer().descriptor.digest);
    } finally { reg.handlers.length = 0; }
  });

  const hugeCases: { name: string; chunked: boolean }[] = [
    { name: 'with Content-Length', chunked: false },
    { name: 'streamed without Content-Length', chunked: true },
  ];
  for (const c of hugeCases) {
    it(`refuses a 5 MiB manifest (${c.name})`, async () => {
      const huge = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OciManifest, config: img.manifest.config, layers: img.manifest.layers, annotations: { pad: 'x'.repeat(5 * 1024 * 1024) } }));
      reg.handlers.push((req, res) => {
        if (!req.url!.startsWith('/v2/app/manifests/huge')) return false;
        res.writeHead(200, { 'content-type': MediaType.OciManifest, ...(c.chunked ? {} : { 'content-length': huge.length }) });
        res.end(huge);
        return true;
      });
      const store = await ContentStore.open(tempDir());
      try {
        await assert.rejects(client.pull(store, `${reg.host}/app:huge`), /over the 4194304 byte limit/);
        assert.deepEqual(await store.listTags(), []);
      } finally { reg.handlers.length = 0; }
    });
  }

  it('reports a token endpoint that returns garbage', async () => {
    reg.handlers.push((req, res) => {
      if (req.url!.startsWith('/token')) { res.writeHead(200, { 'content-type': 'text/html' }).end('<html>oops</html>'); return true; }
      if (!req.headers.authorization) {
        res.writeHead(401, { 'www-authenticate': `Bearer realm="${reg.url}/token",service="fake",scope="repository:app:pull"` }).end();
        return true;
      }
      return false;
    });
    try {
      await assert.rejects(client.pull(await ContentStore.open(tempDir()), `${reg.host}/app:1`),
        /token endpoint http:\/\/127\.0\.0\.1:\d+\/token returned an invalid response \(not JSON\)/);
    } finally { reg.handlers.length = 0; }
  });

  it('stops after one re-authentication when the registry answers 401 forever', async () => {
    const before = reg.requests.length;
    reg.handlers.push((req, res) => {
      if (!req.url!.startsWith('/v2/')) return false;
      res.writeHead(401, { 'www-authenticate': 'Basic realm="fake"' }).end('{"errors":[{"code":"UNAUTHORIZED","message":"no"}]}');
      return true;
    });
    try {
      await assert.rejects(client.pull(await ContentStore.open(tempDir()), `${reg.host}/app:1`, { auth: { authFile: authFileFor(reg.host) } }),
        /unauthorized \(credentials were rejected or lack access\)/);
      assert.ok(reg.requests.length - before <= 4, `bounded number of requests, got ${reg.requests.length - before}`);
    } finally { reg.handlers.length = 0; }
  });

  /** Sends the first `n` bytes of the layer, then kills the connection. */
  function cutAfter(n: number, onlyFirst: boolean) {
    let cuts = 0;
    return (req: { method?: string; url?: string; headers: Record<string, unknown> }, res: import('node:http').ServerResponse) => {
      if (!isLayerGet(req)) return false;
      const bytes = layer().bytes;
      const range = /^bytes=(\d+)-$/.exec(String(req.headers.range ?? ''));
      if (onlyFirst && cuts > 0) {
        const start = range ? Number(range[1]) : 0;
        res.writeHead(range ? 206 : 200, { 'content-length': bytes.length - start, ...(range ? { 'content-range': `bytes ${start}-${bytes.length - 1}/${bytes.length}` } : {}) });
        res.end(bytes.subarray(start));
        return true;
      }
      cuts++;
      res.writeHead(200, { 'content-length': bytes.length });
      res.write(bytes.subarray(0, n), () => setTimeout(() => res.socket?.destroy(), 20));
      return true;
    };
  }

  it('a connection cut mid-layer every time fails clearly and stores nothing', async () => {
    reg.handlers.push(cutAfter(1_000_000, false));
    const store = await ContentStore.open(tempDir());
    try {
      await assert.rejects(client.pull(store, `${reg.host}/app:1`, { retries: 2 }), /downloading sha256:[0-9a-f]+ from .* failed after \d+ of \d+ bytes/);
      await assertNothingStored(store, layer().descriptor.digest);
    } finally { reg.handlers.length = 0; }
  });

  it('a connection cut once is resumed with a Range request and the pull succeeds', async () => {
    reg.handlers.push(cutAfter(1_000_000, true));
    const start = reg.requests.length;
    const warnings: string[] = [];
    const store = await ContentStore.open(tempDir());
    try {
      const res = await client.pull(store, `${reg.host}/app:1`, { onWarning: (w) => warnings.push(w) });
      assert.equal(res.digest, img.descriptor.digest);
      assert.deepEqual(await store.readBlob(layer().descriptor.digest), layer().bytes);
      const layerGets = reg.requests.slice(start).filter(isLayerGet);
      assert.equal(layerGets.length, 2);
      assert.match(String(layerGets[1]!.headers.range), /^bytes=\d+-$/);
      assert.ok(Number(/=(\d+)-/.exec(String(layerGets[1]!.headers.range))![1]) > 0, 'resumed, not restarted');
      assert.ok(warnings.some((w) => /interrupted after \d+ bytes.*resuming/.test(w)), warnings.join('\n'));
    } finally { reg.handlers.length = 0; }
  });

  it('never sends credentials to a redirect target on another origin', async () => {
    const authSeen: string[] = [];
    reg.handlers.push((req, res) => {
      if (req.url!.startsWith('/v2/') && req.headers.authorization !== `Basic ${Buffer.from('bob:pw').toString('base64')}`) {
        res.writeHead(401, { 'www-authenticate': 'Basic realm="fake"' }).end();
        return true;
      }
      if (req.url!.startsWith('/v2/')) authSeen.push(req.url!);
      if (isLayerGet(req)) {
        res.writeHead(307, { location: `${other.url}/storage/${layer().descriptor.digest}` }).end();
        return true;
      }
      return false;
    });
    other.handlers.push((req, res) => {
      if (!req.url!.startsWith('/storage/')) return false;
      res.writeHead(200, { 'content-length': layer().bytes.length }).end(layer().bytes);
      return true;
    });
    try {
      const store = await ContentStore.open(tempDir());
      const res = await client.pull(store, `${reg.host}/app:1`, { auth: { authFile: authFileFor(reg.host) } });
      assert.equal(res.digest, img.descriptor.digest);
      assert.ok(authSeen.some((u) => u.includes('/blobs/')), 'the registry itself got credentials');
      const storageHits = other.requests.filter((r) => r.url.startsWith('/storage/'));
      assert.equal(storageHits.length, 1);
      assert.equal(storageHits[0]!.headers.authorization, undefined, 'no Authorization header at the redirect target');
    } finally { reg.handlers.length = 0; other.handlers.length = 0; }
  });

  it('fetches foreign-layer URLs without credentials', async () => {
    const foreign = randomBytes(50_000);
    const foreignDigest = other.addBlob(foreign);
    const withForeign = {
      ...img.manifest,
      layers: [...img.manifest.layers, { mediaType: MediaType.DockerForeignLayerGzip, digest: foreignDigest, size: foreign.length, urls: [`${other.url}/foreign/${foreignDigest}`] }],
    };
    reg.addManifest('app', 'foreign', Buffer.from(JSON.stringify(withForeign)), MediaType.OciManifest);
    other.handlers.push((req, res) => {
      if (!req.url!.startsWith('/foreign/')) return false;
      res.writeHead(200, { 'content-length': foreign.length }).end(foreign);
      return true;
    });
    reg.handlers.push((req, res) => {
      if (req.url!.startsWith('/v2/') && !req.headers.authorization) {
        res.writeHead(401, { 'www-authenticate': 'Basic realm="fake"' }).end();
        return true;
      }
      return false;
    });
    try {
      const store = await ContentStore.open(tempDir());
      await client.pull(store, `${reg.host}/app:foreign`, { auth: { authFile: authFileFor(reg.host) } });
      assert.deepEqual(await store.readBlob(foreignDigest), foreign);
      const hits = other.requests.filter((r) => r.url.startsWith('/foreign/'));
      assert.equal(hits.length, 1);
      assert.equal(hits[0]!.headers.authorization, undefined);
    } finally { reg.handlers.length = 0; other.handlers.length = 0; }
  });
  // Retries follow the registry's status and error codes (RegistryHttpError.temporary), and the
  // registry's own diagnostics reach the user and the caller, typed.
  const statusCases: { name: string; status: number; body: object; failures: number; retried: boolean }[] = [
    { name: '503 UNAVAILABLE twice, then the manifest', status: 503, body: { errors: [{ code: 'UNAVAILABLE', message: 'upstream registry-1.example is down' }] }, failures: 2, retried: true },
    { name: '429 TOOMANYREQUESTS once', status: 429, body: { errors: [{ code: 'TOOMANYREQUESTS', message: 'slow down' }] }, failures: 1, retried: true },
    { name: '400 with a temporary code (BLOB_UPLOAD_INVALID)', status: 400, body: { errors: [{ code: 'BLOB_UPLOAD_INVALID', message: 'try again' }] }, failures: 1, retried: true },
    { name: '403 DENIED is final', status: 403, body: { errors: [{ code: 'DENIED', message: 'requested access to the resource is denied', detail: [{ Type: 'repository', Name: 'app', Action: 'pull' }] }] }, failures: 1, retried: false },
  ];
  for (const c of statusCases) {
    it(`registry errors: ${c.name}`, async () => {
      let failed = 0;
      reg.handlers.push((req, res) => {
        if (!(req.method === 'GET' && req.url === '/v2/app/manifests/1') || failed >= c.failures) return false;
        failed++;
        res.writeHead(c.status, { 'content-type': 'application/json' }).end(JSON.stringify(c.body));
        return true;
      });
      const store = await ContentStore.open(tempDir());
      try {
        const pulled = client.pull(store, `${reg.host}/app:1`, { retries: 3 });
        if (c.retried) {
          await pulled;
          assert.equal(failed, c.failures);
        } else {
          const err = await pulled.then(() => undefined, (e: unknown) => e);
          assert.ok(err instanceof client.RegistryHttpError, `a typed registry error, got ${String(err)}`);
          assert.equal(err.status, c.status);
          assert.deepEqual(err.errors, (c.body as { errors: unknown[] }).errors);
          assert.equal(err.temporary, false);
          assert.match(err.message, /denied: requested access to the resource is denied/);
          assert.equal(failed, 1, 'a final error is not retried');
        }
      } finally { reg.handlers.length = 0; }
    });
  }

  it('a registry that keeps answering 503 shows its own message, not just the status', async () => {
    reg.handlers.push((req, res) => {
      if (!req.url!.startsWith('/v2/app/manifests/')) return false;
      res.writeHead(503, { 'content-type': 'application/json' }).end(JSON.stringify({ errors: [{ code: 'UNAVAILABLE', message: 'upstream registry-1.example is down' }] }));
      return true;
    });
    const store = await ContentStore.open(tempDir());
    try {
      await assert.rejects(client.pull(store, `${reg.host}/app:1`, { retries: 1 }), /503 unavailable: upstream registry-1\.example is down/);
    } finally { reg.handlers.length = 0; }
  });
});
