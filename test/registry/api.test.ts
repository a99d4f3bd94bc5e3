// Every OCI distribution endpoint and error code, over real HTTP against an in-process server.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import http2 from 'node:http';
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { tempDir } from '../helpers/env.js';
import { startRegistry, type StartedRegistry } from '../../src/registry/index.js';
import { assertError, http, pushBlob, pushImage, sha256 } from './util.js';

let reg: StartedRegistry;
let base: string;
let root: string;

before(async () => {
  root = tempDir('drydock-registry-api-');
  reg = await startRegistry({ root, config: { limits: { chunkminlength: 1024 } } });
  base = reg.url;
});
after(async () => { await reg.close(); });

describe('base and headers', () => {
  test('GET /v2/ answers 200 with the API version header', async () => {
    const r = await http(`${base}/v2/`);
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('docker-distribution-api-version'), 'registry/2.0');
  });
  test('health and metrics endpoints', async () => {
    assert.equal((await http(`${base}/healthz`)).status, 200);
    await http(`${base}/v2/`);
    const m = await http(`${base}/metrics`);
    assert.equal(m.status, 200);
    assert.match(m.body.toString(), /drydock_registry_http_requests_total\{method="GET",route="base",status="200"\} \d+/);
    assert.match(m.body.toString(), /drydock_registry_http_request_duration_seconds_bucket/);
  });
  test('unsupported methods get UNSUPPORTED (405)', async () => {
    assertError(await http(`${base}/v2/`, { method: 'POST' }), 405, 'UNSUPPORTED');
    assertError(await http(`${base}/v2/x/manifests/latest`, { method: 'PATCH' }), 405, 'UNSUPPORTED');
    assertError(await http(`${base}/v2/x/tags/list`, { method: 'DELETE' }), 405, 'UNSUPPORTED');
  });
});

describe('blob uploads', () => {
  test('monolithic POST then PUT', async () => {
    const data = randomBytes(5000);
    const d = sha256(data);
    const p = await http(`${base}/v2/mono/app/blobs/uploads/`, { method: 'POST' });
    assert.equal(p.status, 202);
    const loc = p.headers.get('location')!;
    assert.match(loc, /^\/v2\/mono\/app\/blobs\/uploads\/[0-9a-f-]{36}$/);
    assert.equal(p.headers.get('range'), '0-0');
    assert.equal(p.headers.get('oci-chunk-min-length'), '1024');
    assert.ok(p.headers.get('docker-upload-uuid'));
    const put = await http(`${base}${loc}?digest=${d}`, { method: 'PUT', body: data, headers: { 'Content-Type': 'application/octet-stream' } });
    assert.equal(put.status, 201);
    assert.equal(put.headers.get('location'), `/v2/mono/app/blobs/${d}`);
    assert.equal(put.headers.get('docker-content-digest'), d);
    const g = await http(`${base}/v2/mono/app/blobs/${d}`);
    assert.equal(g.status, 200);
    assert.deepEqual(g.body, data);
  });

  test('single POST with digest', async () => {
    const d = await pushBlob(base, 'single', 'single-post');
    const h = await http(`${base}/v2/single/blobs/${d}`, { method: 'HEAD' });
    assert.equal(h.status, 200);
    assert.equal(h.headers.get('content-length'), String('single-post'.length));
    assert.equal(h.headers.get('docker-content-digest'), d);
  });

  test('chunked PATCH with Content-Range, status GET, out-of-order 416, final PUT', async () => {
    const data = randomBytes(300_000);
    const d = sha256(data);
    const loc = (await http(`${base}/v2/chunked/blobs/uploads/`, { method: 'POST' })).headers.get('location')!;
    const c1 = await http(`${base}${loc}`, { method: 'PATCH', body: data.subarray(0, 100_000), headers: { 'Content-Range': '0-99999', 'Content-Type': 'application/octet-stream' } });
    assert.equal(c1.status, 202);
    assert.equal(c1.headers.get('range'), '0-99999');
    assert.equal(c1.headers.get('location'), loc);
    // out of order: skips bytes
    const bad = await http(`${base}${loc}`, { method: 'PATCH', body: data.subarray(200_000), headers: { 'Content-Range': '200000-299999' } });
    assertError(bad, 416, 'BLOB_UPLOAD_INVALID');
    const st = await http(`${base}${loc}`);
    assert.equal(st.status, 204);
    assert.equal(st.headers.get('range'), '0-99999');
    // chunk without Content-Range (streamed PATCH, as docker does)
    const c2 = await http(`${base}${loc}`, { method: 'PATCH', body: data.subarray(100_000, 200_000) });
    assert.equal(c2.headers.get('range'), '0-199999');
    const put = await http(`${base}${loc}?digest=${d}`, { method: 'PUT', body: data.subarray(200_000), headers: { 'Content-Range': '200000-299999' } });
    assert.equal(put.status, 201, put.body.toString());
    assert.deepEqual((await http(`${base}/v2/chunked/blobs/${d}`)).body, data);
  });

  test('Content-Length that disagrees with Content-Range is 416 RANGE_INVALID', async () => {
    const loc = (await http(`${base}/v2/sizes/blobs/uploads/`, { method: 'POST' })).headers.get('location')!;
    assertError(await http(`${base}${loc}`, { method: 'PATCH', body: 'abcd', headers: { 'Content-Range': '0-9' } }), 416, 'RANGE_INVALID');
  });

  test('wrong digest on PUT is DIGEST_INVALID and nothing becomes visible', async () => {
    const data = Buffer.from('real content');
    const wrong = sha256('other content');
    const loc = (await http(`${base}/v2/wrong/blobs/uploads/`, { method: 'POST' })).headers.get('location')!;
    assertError(await http(`${base}${loc}?digest=${wrong}`, { method: 'PUT', body: data }), 400, 'DIGEST_INVALID');
    assertError(await http(`${base}/v2/wrong/blobs/${wrong}`, { method: 'GET' }), 404, 'BLOB_UNKNOWN');
    assertError(await http(`${base}/v2/wrong/blobs/${sha256(data)}`, { method: 'GET' }), 404, 'BLOB_UNKNOWN');
    assert.equal(existsSync(path.join(root, 'docker/registry/v2/blobs/sha256', wrong.slice(7, 9), wrong.slice(7))), false);
    // the failed session is gone
    assertError(await http(`${base}${loc}`), 404, 'BLOB_UPLOAD_UNKNOWN');
  });

  test('single POST with a wrong digest leaves no upload behind', async () => {
    assertError(await http(`${base}/v2/wrong2/blobs/uploads/?digest=${sha256('x')}`, { method: 'POST', body: 'y' }), 400, 'DIGEST_INVALID');
    const uploads = path.join(root, 'docker/registry/v2/repositories/wrong2/_uploads');
    assert.deepEqual(existsSync(uploads) ? readdirSync(uploads) : [], []);
  });

  test('upload cancel (DELETE) and unknown uploads', async () => {
    const loc = (await http(`${base}/v2/cancel/blobs/uploads/`, { method: 'POST' })).headers.get('location')!;
    assert.equal((await http(`${base}${loc}`, { method: 'DELETE' })).status, 204);
    assertError(await http(`${base}${loc}`), 404, 'BLOB_UPLOAD_UNKNOWN');
    assertError(await http(`${base}${loc}`, { method: 'PATCH', body: 'x' }), 404, 'BLOB_UPLOAD_UNKNOWN');
    assertError(await http(`${base}/v2/cancel/blobs/uploads/not-a-uuid`), 404, 'BLOB_UPLOAD_UNKNOWN');
    assertError(await http(`${base}/v2/cancel/blobs/uploads/..%2F..%2Fetc`), 404, 'BLOB_UPLOAD_UNKNOWN');
  });

  test('an upload from repo A is not readable from repo B; mount makes it so', async () => {
    const d = await pushBlob(base, 'team/a', 'shared layer');
    assertError(await http(`${base}/v2/team/b/blobs/${d}`), 404, 'BLOB_UNKNOWN');
    const m = await http(`${base}/v2/team/b/blobs/uploads/?mount=${d}&from=team/a`, { method: 'POST' });
    assert.equal(m.status, 201);
    assert.equal(m.headers.get('location'), `/v2/team/b/blobs/${d}`);
    assert.equal((await http(`${base}/v2/team/b/blobs/${d}`)).body.toString(), 'shared layer');
    // mount of a blob the source lacks falls back to a new upload session
    const f = await http(`${base}/v2/team/b/blobs/uploads/?mount=${sha256('nope')}&from=team/a`, { method: 'POST' });
    assert.equal(f.status, 202);
    assert.match(f.headers.get('location')!, /\/blobs\/uploads\//);
  });

  test('Range requests', async () => {
    const data = Buffer.from('0123456789abcdef');
    const d = await pushBlob(base, 'ranges', data);
    const cases: [string, number, string | undefined, string | undefined][] = [
      ['bytes=0-3', 206, '0123', 'bytes 0-3/16'],
      ['bytes=10-', 206, 'abcdef', 'bytes 10-15/16'],
      ['bytes=-4', 206, 'cdef', 'bytes 12-15/16'],
      ['bytes=14-100', 206, 'ef', 'bytes 14-15/16'],
      ['bytes=16-20', 416, undefined, 'bytes */16'],
      ['bytes=5-2', 416, undefined, 'bytes */16'],
      ['items=1-2', 416, undefined, 'bytes */16'],
    ];
    for (const [range, status, body, contentRange] of cases) {
      const r = await http(`${base}/v2/ranges/blobs/${d}`, { headers: { Range: range } });
      assert.equal(r.status, status, range);
      if (body !== undefined) assert.equal(r.body.toString(), body, range);
      assert.equal(r.headers.get('content-range') ?? undefined, contentRange, range);
    }
  });

  test('blob delete removes the repository link only', async () => {
    const d = await pushBlob(base, 'del/a', 'to delete');
    await http(`${base}/v2/del/b/blobs/uploads/?mount=${d}&from=del/a`, { method: 'POST' });
    assert.equal((await http(`${base}/v2/del/a/blobs/${d}`, { method: 'DELETE' })).status, 202);
    assertError(await http(`${base}/v2/del/a/blobs/${d}`), 404, 'BLOB_UNKNOWN');
    assert.equal((await http(`${base}/v2/del/b/blobs/${d}`)).status, 200);
    assertError(await http(`${base}/v2/del/a/blobs/${d}`, { method: 'DELETE' }), 404, 'BLOB_UNKNOWN');
  });

  test('a client that disconnects mid-upload leaves a resumable session', async () => {
    const data = randomBytes(3 * 1024 * 1024);
    const loc = (await http(`${base}/v2/disconnect/blobs/uploads/`, { method: 'POST' })).headers.get('location')!;
    const u = new URL(base);
    await new Promise<void>((resolve) => {
      const req = http2.request({ host: u.hostname, port: u.port, path: loc, method: 'PATCH', headers: { 'Content-Length': data.length } });
      req.on('error', () => resolve());
      req.write(data.subarray(0, 1024 * 1024), () => setTimeout(() => { req.destroy(); resolve(); }, 200));
    });
    let offset = 0;
    for (let i = 0; i < 50; i++) {
      const st = await http(`${base}${loc}`);
      assert.equal(st.status, 204);
      offset = Number(st.headers.get('range')!.split('-')[1]) + 1;
      if (offset >= 1024 * 1024) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(offset > 0 && offset <= 1024 * 1024, `resumable offset ${offset}`);
    // Until the server has seen the disconnect, the cut-off PATCH still owns the upload (416).
    let put = await http(`${base}${loc}?digest=${sha256(data)}`, { method: 'PUT', body: data.subarray(offset), headers: { 'Content-Range': `${offset}-${data.length - 1}` } });
    for (let i = 0; i < 50 && put.status === 416; i++) {
      await new Promise((r) => setTimeout(r, 50));
      put = await http(`${base}${loc}?digest=${sha256(data)}`, { method: 'PUT', body: data.subarray(offset), headers: { 'Content-Range': `${offset}-${data.length - 1}` } });
    }
    assert.equal(put.status, 201, put.body.toString());
    assert.deepEqual((await http(`${base}/v2/disconnect/blobs/${sha256(data)}`)).body, data);
  });

  test('the same blob pushed concurrently by many clients ends up intact', async () => {
    const data = randomBytes(2 * 1024 * 1024 + 17);
    const results = await Promise.all(Array.from({ length: 8 }, () => pushBlob(base, 'concurrent', data)));
    assert.equal(new Set(results).size, 1);
    assert.deepEqual((await http(`${base}/v2/concurrent/blobs/${results[0]}`)).body, data);
  });
});

describe('names and digests', () => {
  const badNames = ['..%2Fx', 'UPPER/case', 'a//b', 'a/-b', '_x'];
  for (const name of badNames) {
    test(`invalid repository name ${name} is NAME_INVALID`, async () => {
      assertError(await http(`${base}/v2/${name}/tags/list`), 400, 'NAME_INVALID');
      assertError(await http(`${base}/v2/${name}/blobs/uploads/`, { method: 'POST' }), 400, 'NAME_INVALID');
    });
  }
  const badDigests = ['sha256:abc', `sha256:${'a'.repeat(65)}`, `md5:${'a'.repeat(32)}`, `sha256:${'A'.repeat(64)}`, 'nodigest'];
  for (const dg of badDigests) {
    test(`invalid digest ${dg.slice(0, 20)} is DIGEST_INVALID`, async () => {
      assertError(await http(`${base}/v2/digests/blobs/${dg}`), 400, 'DIGEST_INVALID');
      assertError(await http(`${base}/v2/digests/blobs/uploads/?digest=${dg}`, { method: 'POST', body: 'x' }), 400, 'DIGEST_INVALID');
    });
  }
  test('sha512 digests work end to end', async () => {
    const { createHash } = await import('node:crypto');
    const data = Buffer.from('sha512 content');
    const d = `sha512:${createHash('sha512').update(data).digest('hex')}`;
    const r = await http(`${base}/v2/sha512/blobs/uploads/?digest=${d}`, { method: 'POST', body: data });
    assert.equal(r.status, 201);
    assert.equal((await http(`${base}/v2/sha512/blobs/${d}`)).body.toString(), 'sha512 content');
  });
});

describe('manifests', () => {
  test('PUT/GET/HEAD by tag and digest', async () => {
    const img = await pushImage(base, 'm/app', 'v1');
    for (const ref of ['v1', img.digest]) {
      const g = await http(`${base}/v2/m/app/manifests/${ref}`, { headers: { Accept: 'application/vnd.oci.image.manifest.v1+json' } });
      assert.equal(g.status, 200);
      assert.deepEqual(g.body, img.manifest);
      assert.equal(g.headers.get('content-type'), 'application/vnd.oci.image.manifest.v1+json');
      assert.equal(g.headers.get('docker-content-digest'), img.digest);
      const h = await http(`${base}/v2/m/app/manifests/${ref}`, { method: 'HEAD' });
      assert.equal(h.status, 200);
      assert.equal(h.headers.get('content-length'), String(img.manifest.length));
      assert.equal(h.body.length, 0);
    }
  });

  test('PUT by digest; wrong digest is DIGEST_INVALID', async () => {
    const img = await pushImage(base, 'm/bydigest', 'tmp');
    const put = await http(`${base}/v2/m/bydigest/manifests/${img.digest}`, { method: 'PUT', body: img.manifest, headers: { 'Content-Type': 'application/vnd.oci.image.manifest.v1+json' } });
    assert.equal(put.status, 201);
    assert.equal(put.headers.get('docker-content-digest'), img.digest);
    assert.equal(put.headers.get('location'), `/v2/m/bydigest/manifests/${img.digest}`);
    assertError(await http(`${base}/v2/m/bydigest/manifests/${sha256('x')}`, { method: 'PUT', body: img.manifest, headers: { 'Content-Type': 'application/vnd.oci.image.manifest.v1+json' } }), 400, 'DIGEST_INVALID');
  });

  test('Docker schema2 manifest and manifest list', async () => {
    const cfg = Buffer.from('{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}');
    const cd = await pushBlob(base, 'm/docker', cfg);
    const ld = await pushBlob(base, 'm/docker', 'layer');
    const mf = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.docker.distribution.manifest.v2+json', config: { mediaType: 'application/vnd.docker.container.image.v1+json', digest: cd, size: cfg.length }, layers: [{ mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip', digest: ld, size: 5 }] }));
    assert.equal((await http(`${base}/v2/m/docker/manifests/amd64`, { method: 'PUT', body: mf, headers: { 'Content-Type': 'application/vnd.docker.distribution.manifest.v2+json' } })).status, 201);
    const list = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.docker.distribution.manifest.list.v2+json', manifests: [{ mediaType: 'application/vnd.docker.distribution.manifest.v2+json', digest: sha256(mf), size: mf.length, platform: { architecture: 'amd64', os: 'linux' } }] }));
    assert.equal((await http(`${base}/v2/m/docker/manifests/latest`, { method: 'PUT', body: list, headers: { 'Content-Type': 'application/vnd.docker.distribution.manifest.list.v2+json' } })).status, 201);
    const g = await http(`${base}/v2/m/docker/manifests/latest`);
    assert.equal(g.headers.get('content-type'), 'application/vnd.docker.distribution.manifest.list.v2+json');
    // an index whose child is not in the repository
    const orphan = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: sha256('missing'), size: 7 }] }));
    assertError(await http(`${base}/v2/m/docker/manifests/orphan`, { method: 'PUT', body: orphan, headers: { 'Content-Type': 'application/vnd.oci.image.index.v1+json' } }), 400, 'MANIFEST_BLOB_UNKNOWN');
  });

  const ociType = 'application/vnd.oci.image.manifest.v1+json';
  const invalid: [string, () => Promise<{ body: Buffer | string; type: string }>, number, string][] = [
    ['references an unknown blob', async () => ({ body: JSON.stringify({ schemaVersion: 2, mediaType: ociType, config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256('unknown config'), size: 14 }, layers: [] }), type: ociType }), 400, 'MANIFEST_BLOB_UNKNOWN'],
    ['is not JSON', async () => ({ body: '{not json', type: ociType }), 400, 'MANIFEST_INVALID'],
    ['is schema1', async () => ({ body: JSON.stringify({ schemaVersion: 1, name: 'x' }), type: 'application/vnd.docker.distribution.manifest.v1+prettyjws' }), 400, 'MANIFEST_INVALID'],
    ['is ambiguous (manifests and layers)', async () => ({ body: JSON.stringify({ schemaVersion: 2, manifests: [], layers: [], config: { mediaType: 'x', digest: sha256('a'), size: 1 } }), type: ociType }), 400, 'MANIFEST_INVALID'],
    ['has a mediaType that differs from Content-Type', async () => ({ body: JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [] }), type: ociType }), 400, 'MANIFEST_INVALID'],
    ['has a bad descriptor digest', async () => ({ body: JSON.stringify({ schemaVersion: 2, mediaType: ociType, config: { mediaType: 'a', digest: 'sha256:zz', size: 1 }, layers: [] }), type: ociType }), 400, 'MANIFEST_INVALID'],
    ['has a negative size', async () => ({ body: JSON.stringify({ schemaVersion: 2, mediaType: ociType, config: { mediaType: 'a', digest: sha256('a'), size: -1 }, layers: [] }), type: ociType }), 400, 'MANIFEST_INVALID'],
    ['is 5 MiB', async () => ({ body: Buffer.alloc(5 * 1024 * 1024, 0x20), type: ociType }), 413, 'SIZE_INVALID'],
  ];
  for (const [what, make, status, code] of invalid) {
    test(`a manifest that ${what} gets ${code}`, async () => {
      const { body, type } = await make();
      assertError(await http(`${base}/v2/m/invalid/manifests/latest`, { method: 'PUT', body, headers: { 'Content-Type': type } }), status, code);
    });
  }

  test('GET of unknown manifests and repositories', async () => {
    await pushImage(base, 'm/known', 'v1');
    assertError(await http(`${base}/v2/m/known/manifests/nope`), 404, 'MANIFEST_UNKNOWN');
    assertError(await http(`${base}/v2/m/known/manifests/${sha256('nope')}`), 404, 'MANIFEST_UNKNOWN');
    assertError(await http(`${base}/v2/m/never/manifests/latest`), 404, 'NAME_UNKNOWN');
    assertError(await http(`${base}/v2/m/known/manifests/${'x'.repeat(200)}`), 404, 'MANIFEST_UNKNOWN');
  });

  test('delete a tag without deleting the manifest; delete by digest removes tags', async () => {
    const img = await pushImage(base, 'm/del', 'v1');
    await http(`${base}/v2/m/del/manifests/v2`, { method: 'PUT', body: img.manifest, headers: { 'Content-Type': 'application/vnd.oci.image.manifest.v1+json' } });
    assert.equal((await http(`${base}/v2/m/del/manifests/v1`, { method: 'DELETE' })).status, 202);
    assertError(await http(`${base}/v2/m/del/manifests/v1`), 404, 'MANIFEST_UNKNOWN');
    assert.equal((await http(`${base}/v2/m/del/manifests/${img.digest}`)).status, 200);
    assert.deepEqual((await http(`${base}/v2/m/del/tags/list`)).json().tags, ['v2']);
    assert.equal((await http(`${base}/v2/m/del/manifests/${img.digest}`, { method: 'DELETE' })).status, 202);
    assertError(await http(`${base}/v2/m/del/manifests/${img.digest}`), 404, 'MANIFEST_UNKNOWN');
    assertError(await http(`${base}/v2/m/del/manifests/v2`), 404, 'MANIFEST_UNKNOWN');
    assertError(await http(`${base}/v2/m/del/manifests/${img.digest}`, { method: 'DELETE' }), 404, 'MANIFEST_UNKNOWN');
  });

  test('a stored manifest over 4 MiB is refused on pull too (413)', async () => {
    // Planted behind the server's back (e.g. by another registry sharing the root).
    const big = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [], annotations: { pad: 'x'.repeat(4 * 1024 * 1024 + 10) } }));
    const d = sha256(big);
    const { parseDigest } = await import('../../src/image/digest.js');
    const { paths } = await import('../../src/registry/storage/paths.js');
    const dg = parseDigest(d);
    await reg.storage.driver.putContent(paths.blobData(dg), big);
    await reg.storage.driver.putContent(paths.revisionLink('m/huge', dg), d);
    await reg.storage.driver.putContent(paths.tagCurrent('m/huge', 'big'), d);
    assertError(await http(`${base}/v2/m/huge/manifests/big`), 413, 'SIZE_INVALID');
    assertError(await http(`${base}/v2/m/huge/manifests/${d}`), 413, 'SIZE_INVALID');
  });

  test('If-None-Match gives 304', async () => {
    const img = await pushImage(base, 'm/etag', 'v1');
    const r = await http(`${base}/v2/m/etag/manifests/v1`, { headers: { 'If-None-Match': `"${img.digest}"` } });
    assert.equal(r.status, 304);
  });
});

describe('tags and catalog', () => {
  before(async () => {
    const img = await pushImage(base, 'paged', 'a');
    for (const t of ['b', 'c', 'd', 'e']) {
      await http(`${base}/v2/paged/manifests/${t}`, { method: 'PUT', body: img.manifest, headers: { 'Content-Type': 'application/vnd.oci.image.manifest.v1+json' } });
    }
  });
  test('tags/list with n, last and Link', async () => {
    const all = await http(`${base}/v2/paged/tags/list`);
    assert.deepEqual(all.json(), { name: 'paged', tags: ['a', 'b', 'c', 'd', 'e'] });
    assert.equal(all.headers.get('link'), null);
    const p1 = await http(`${base}/v2/paged/tags/list?n=2`);
    assert.deepEqual(p1.json().tags, ['a', 'b']);
    assert.equal(p1.headers.get('link'), '</v2/paged/tags/list?last=b&n=2>; rel="next"');
    const p2 = await http(`${base}/v2/paged/tags/list?n=2&last=b`);
    assert.deepEqual(p2.json().tags, ['c', 'd']);
    const p3 = await http(`${base}/v2/paged/tags/list?n=2&last=d`);
    assert.deepEqual(p3.json().tags, ['e']);
    assert.equal(p3.headers.get('link'), null);
    assert.deepEqual((await http(`${base}/v2/paged/tags/list?n=0`)).json().tags, []);
  });
  const pageCases: [string, number, string | undefined][] = [
    ['n=-1', 400, 'PAGINATION_NUMBER_INVALID'],
    ['n=abc', 400, 'PAGINATION_NUMBER_INVALID'],
    ['n=1000000000', 200, undefined],
    ['n=1.5', 400, 'PAGINATION_NUMBER_INVALID'],
  ];
  for (const [q, status, code] of pageCases) {
    test(`tags/list?${q} → ${status}`, async () => {
      const r = await http(`${base}/v2/paged/tags/list?${q}`);
      if (code) assertError(r, status, code);
      else {
        assert.equal(r.status, status);
        assert.deepEqual(r.json().tags, ['a', 'b', 'c', 'd', 'e']);
      }
      const c = await http(`${base}/v2/_catalog?${q}`);
      if (code) assertError(c, status, code);
      else assert.equal(c.status, 200);
    });
  }
  test('tags of an unknown repository are NAME_UNKNOWN', async () => {
    assertError(await http(`${base}/v2/does/not/exist/tags/list`), 404, 'NAME_UNKNOWN');
  });
  test('_catalog lists repositories with pagination', async () => {
    const all = (await http(`${base}/v2/_catalog`)).json().repositories as string[];
    assert.ok(all.includes('paged') && all.includes('m/app'), JSON.stringify(all));
    assert.deepEqual(all, [...all].sort());
    const p1 = await http(`${base}/v2/_catalog?n=1`);
    assert.equal(p1.json().repositories.length, 1);
    const next = /<([^>]+)>/.exec(p1.headers.get('link')!)![1]!;
    const p2 = await http(`${base}${next}`);
    assert.equal(p2.json().repositories[0], all[1]);
  });
});

describe('referrers', () => {
  test('subject push returns OCI-Subject; referrers lists and filters', async () => {
    const subject = await pushImage(base, 'refs', 'v1');
    const emptyCfg = await pushBlob(base, 'refs', '{}');
    const mk = (artifactType: string, n: string) => Buffer.from(JSON.stringify({
      schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', artifactType,
      config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: emptyCfg, size: 2 }, layers: [],
      subject: { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: subject.digest, size: subject.manifest.length },
      annotations: { n },
    }));
    const sig = mk('application/vnd.example.signature', '1');
    const sbom = mk('application/spdx+json', '2');
    for (const m of [sig, sbom]) {
      const r = await http(`${base}/v2/refs/manifests/${sha256(m)}`, { method: 'PUT', body: m, headers: { 'Content-Type': 'application/vnd.oci.image.manifest.v1+json' } });
      assert.equal(r.status, 201);
      assert.equal(r.headers.get('oci-subject'), subject.digest);
    }
    const all = await http(`${base}/v2/refs/referrers/${subject.digest}`);
    assert.equal(all.status, 200);
    assert.equal(all.headers.get('content-type'), 'application/vnd.oci.image.index.v1+json');
    const idx = all.json();
    assert.equal(idx.schemaVersion, 2);
    assert.deepEqual(idx.manifests.map((d: { digest: string }) => d.digest).sort(), [sha256(sig), sha256(sbom)].sort());
    assert.equal(idx.manifests.find((d: { digest: string }) => d.digest === sha256(sig)).artifactType, 'application/vnd.example.signature');
    const f = await http(`${base}/v2/refs/referrers/${subject.digest}?artifactType=application/spdx%2Bjson`);
    assert.equal(f.headers.get('oci-filters-applied'), 'artifactType');
    assert.deepEqual(f.json().manifests.map((d: { digest: string }) => d.digest), [sha256(sbom)]);
    // no referrers: empty index, not 404
    assert.deepEqual((await http(`${base}/v2/refs/referrers/${sha256('none')}`)).json().manifests, []);
    assertError(await http(`${base}/v2/refs/referrers/sha256:short`), 400, 'DIGEST_INVALID');
    // deleting a referrer removes it from the list
    await http(`${base}/v2/refs/manifests/${sha256(sig)}`, { method: 'DELETE' });
    assert.deepEqual((await http(`${base}/v2/refs/referrers/${subject.digest}`)).json().manifests.map((d: { digest: string }) => d.digest), [sha256(sbom)]);
  });
});

describe('limits and modes', () => {
  test('delete disabled → UNSUPPORTED', async () => {
    const r2 = await startRegistry({ root: tempDir('drydock-registry-nodelete-'), deleteEnabled: false });
    try {
      const img = await pushImage(r2.url, 'x', 'v1');
      assertError(await http(`${r2.url}/v2/x/manifests/${img.digest}`, { method: 'DELETE' }), 405, 'UNSUPPORTED');
      assertError(await http(`${r2.url}/v2/x/blobs/${img.layers[0]}`, { method: 'DELETE' }), 405, 'UNSUPPORTED');
    } finally { await r2.close(); }
  });

  test('read-only mode refuses pushes', async () => {
    const r2 = await startRegistry({ root: tempDir('drydock-registry-ro-'), readOnly: true });
    try {
      assertError(await http(`${r2.url}/v2/x/blobs/uploads/`, { method: 'POST' }), 405, 'UNSUPPORTED');
    } finally { await r2.close(); }
  });

  test('too many concurrent uploads → TOOMANYREQUESTS with Retry-After', async () => {
    const r2 = await startRegistry({ root: tempDir('drydock-registry-429-'), config: { limits: { maxconcurrentuploads: 1 } } });
    try {
      const loc = (await http(`${r2.url}/v2/x/blobs/uploads/`, { method: 'POST' })).headers.get('location')!;
      const u = new URL(r2.url);
      // hold one PATCH open
      const req = http2.request({ host: u.hostname, port: u.port, path: loc, method: 'PATCH', headers: { 'Content-Length': 10 } });
      req.on('error', () => {});
      req.write('12345');
      await new Promise((r) => setTimeout(r, 200));
      const r = await http(`${r2.url}/v2/x/blobs/uploads/?digest=${sha256('y')}`, { method: 'POST', body: 'y' });
      assertError(r, 429, 'TOOMANYREQUESTS');
      assert.equal(r.headers.get('retry-after'), '1');
      req.end('67890');
      await new Promise((r) => setTimeout(r, 200));
      assert.equal((await http(`${r2.url}/v2/x/blobs/uploads/?digest=${sha256('y')}`, { method: 'POST', body: 'y' })).status, 201);
    } finally { await r2.close(); }
  });

  test('maxuploadbytes bounds request bodies (413)', async () => {
    const r2 = await startRegistry({ root: tempDir('drydock-registry-413-'), config: { limits: { maxuploadbytes: 1000 } } });
    try {
      const loc = (await http(`${r2.url}/v2/x/blobs/uploads/`, { method: 'POST' })).headers.get('location')!;
      assertError(await http(`${r2.url}${loc}`, { method: 'PATCH', body: randomBytes(5000) }), 413, 'SIZE_INVALID');
    } finally { await r2.close(); }
  });
});
