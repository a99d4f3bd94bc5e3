// Resource bounds under attack: request bodies that dribble (slowloris on PATCH) are cut off and
// free their upload slots, silent connections are closed, limits.maxuploadbytes bounds the blob
// (not each chunk), and a manifest nested 20000 levels deep is a 400 that stores nothing.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { tempDir } from '../helpers/env.js';
import { startRegistry, type StartedRegistry } from '../../src/registry/index.js';
import { assertError, http, pushBlob, pushImage, sha256 } from './util.js';

/** A raw HTTP/1.1 request whose body is sent one byte every `everyMs`; resolves with what the server answered and when it closed. */
function dribble(reg: StartedRegistry, method: string, target: string, length: number, everyMs: number): { done: Promise<{ response: string; closedAfterMs: number }>; socket: net.Socket } {
  const started = Date.now();
  const socket = net.connect(reg.port, '127.0.0.1');
  let response = '';
  let timer: NodeJS.Timeout | undefined;
  const done = new Promise<{ response: string; closedAfterMs: number }>((resolve) => {
    socket.on('data', (d) => (response += d));
    socket.on('error', () => {});
    socket.on('close', () => { clearInterval(timer); resolve({ response, closedAfterMs: Date.now() - started }); });
  });
  socket.on('connect', () => {
    socket.write(`${method} ${target} HTTP/1.1\r\nHost: ${reg.host}\r\nContent-Type: application/octet-stream\r\nContent-Length: ${length}\r\n\r\n`);
    socket.write('x');
    timer = setInterval(() => { if (!socket.destroyed) socket.write('x'); }, everyMs);
  });
  return { done, socket };
}

describe('slow request bodies', () => {
  let reg: StartedRegistry;
  after(async () => { await reg?.close(); });

  test('three PATCHes sending a byte every 5 s are cut off and do not lock pushes out (maxconcurrentuploads: 3)', async () => {
    reg = await startRegistry({ root: tempDir('drydock-registry-slow-'), config: {
      limits: { maxconcurrentuploads: 3 },
      http: { addr: '127.0.0.1:0', timeout: { body: '2s', minbodyrate: 1024 } },
    } });
    const uploads = await Promise.all([0, 1, 2].map(async () => (await http(`${reg.url}/v2/slow/app/blobs/uploads/`, { method: 'POST' })).headers.get('location')!));
    const slow = uploads.map((loc) => dribble(reg, 'PATCH', loc, 100_000, 5000));
    await new Promise((r) => setTimeout(r, 500));
    // While they hold the three slots, a fourth upload is refused...
    const fourth = (await http(`${reg.url}/v2/slow/app/blobs/uploads/`, { method: 'POST' })).headers.get('location')!;
    assertError(await http(`${reg.url}${fourth}`, { method: 'PATCH', body: 'abc' }), 429, 'TOOMANYREQUESTS');
    // ...until the cut-off frees them (before the fix they were held for ever).
    const results = await Promise.race([
      Promise.all(slow.map((s) => s.done)),
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error('slow PATCHes still held after 15 s')), 15_000)),
    ]);
    for (const r of results) {
      assert.match(r.response, /^HTTP\/1\.1 408 /, r.response);
      assert.match(r.response, /request body too slow/);
      assert.ok(r.closedAfterMs >= 1900 && r.closedAfterMs < 6000, `closed after ${r.closedAfterMs} ms`);
    }
    process.stderr.write(`# slow PATCHes closed after ${results.map((r) => r.closedAfterMs).join(', ')} ms\n`);
    const img = await pushImage(reg.url, 'slow/app', 'v1');
    assert.equal((await http(`${reg.url}/v2/slow/app/manifests/v1`)).headers.get('docker-content-digest'), img.digest);
  });

  test('a fast large body is not cut off by the body timeout', async () => {
    const data = Buffer.alloc(8 * 1024 * 1024, 7);
    const d = await pushBlob(reg.url, 'slow/big', data);
    assert.equal(d, sha256(data));
  });

  test('a connection that sends half its headers and goes quiet is closed (http.timeout.header)', async () => {
    const r2 = await startRegistry({ root: tempDir('drydock-registry-hdr-'), config: { http: { addr: '127.0.0.1:0', timeout: { header: '1s', idle: '3s' } } } });
    try {
      const started = Date.now();
      const closed = await new Promise<number>((resolve) => {
        const s = net.connect(r2.port, '127.0.0.1', () => s.write('GET /v2/ HTTP/1.1\r\nHost: x\r\n'));
        s.on('error', () => {});
        s.on('close', () => resolve(Date.now() - started));
        setTimeout(() => { s.destroy(); resolve(-1); }, 10_000).unref();
      });
      assert.ok(closed > 0 && closed < 5000, `closed after ${closed} ms`);
    } finally { await r2.close(); }
  });
});

describe('limits.maxuploadbytes bounds the blob', () => {
  let reg: StartedRegistry;
  after(async () => { await reg?.close(); });

  test('chunks that each fit but add up past the limit are refused; a blob under it is accepted', async () => {
    reg = await startRegistry({ root: tempDir('drydock-registry-maxup-'), config: { limits: { maxuploadbytes: 1000 } } });
    const loc = (await http(`${reg.url}/v2/lim/app/blobs/uploads/`, { method: 'POST' })).headers.get('location')!;
    const a = Buffer.alloc(600, 1);
    const first = await http(`${reg.url}${loc}`, { method: 'PATCH', body: a, headers: { 'Content-Range': '0-599' } });
    assert.equal(first.status, 202, first.body.toString());
    const next = new URL(first.headers.get('location')!, reg.url);
    const second = await http(next.toString(), { method: 'PATCH', body: a, headers: { 'Content-Range': '600-1199' } });
    assertError(second, 413, 'SIZE_INVALID');
    assert.match(second.json().errors[0].message, /blob exceeds 1000 bytes \(limits\.maxuploadbytes\)/);
    // The same through the final PUT's body.
    const loc2 = (await http(`${reg.url}/v2/lim/app/blobs/uploads/`, { method: 'POST' })).headers.get('location')!;
    const p1 = await http(`${reg.url}${loc2}`, { method: 'PATCH', body: a });
    assert.equal(p1.status, 202);
    const put = new URL(p1.headers.get('location')!, reg.url);
    put.searchParams.set('digest', sha256(Buffer.concat([a, a])));
    assertError(await http(put.toString(), { method: 'PUT', body: a }), 413, 'SIZE_INVALID');
    assert.equal(await pushBlob(reg.url, 'lim/app', Buffer.alloc(1000, 2)), sha256(Buffer.alloc(1000, 2)));
  });
});

describe('deeply nested manifests', () => {
  let reg: StartedRegistry;
  after(async () => { await reg?.close(); });

  test('20000 levels inside annotations: 400 MANIFEST_INVALID, nothing stored', async () => {
    const root = tempDir('drydock-registry-deep-');
    reg = await startRegistry({ root });
    const img = await pushImage(reg.url, 'deep/app', 'v1');
    const m = JSON.parse(img.manifest.toString()) as Record<string, unknown>;
    const deep = `${'['.repeat(20000)}${']'.repeat(20000)}`;
    const body = Buffer.from(JSON.stringify({ ...m, annotations: { x: 'placeholder' } }).replace('"placeholder"', deep));
    const digest = sha256(body);
    for (const ref of ['v2', digest]) {
      const r = await http(`${reg.url}/v2/deep/app/manifests/${ref}`, { method: 'PUT', body, headers: { 'Content-Type': 'application/vnd.oci.image.manifest.v1+json' } });
      assertError(r, 400, 'MANIFEST_INVALID');
      assert.match(r.json().errors[0].message, /nested deeper than/);
    }
    assertError(await http(`${reg.url}/v2/deep/app/manifests/${digest}`), 404, 'MANIFEST_UNKNOWN');
    assertError(await http(`${reg.url}/v2/deep/app/manifests/v2`), 404, 'MANIFEST_UNKNOWN');
    assert.deepEqual((await http(`${reg.url}/v2/deep/app/tags/list`)).json().tags, ['v1']);
    const hex = digest.slice(7);
    assert.equal(existsSync(path.join(root, 'docker/registry/v2/blobs/sha256', hex.slice(0, 2), hex)), false, 'no blob data');
    assert.equal(existsSync(path.join(root, 'docker/registry/v2/repositories/deep/app/_manifests/revisions/sha256', hex)), false, 'no revision');
    // Ordinary nesting (an index of manifests with annotations) still goes through.
    assert.equal((await http(`${reg.url}/v2/deep/app/manifests/v1`)).status, 200);
  });
});
