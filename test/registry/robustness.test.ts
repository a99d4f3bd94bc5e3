// Crashes, restarts, garbage collection and shutdown: `drydock serve` as a real child process
// killed with SIGKILL mid-upload, gc racing live pushes, stale upload purging, graceful close.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, promises as fsp, readdirSync, writeFileSync } from 'node:fs';
import nodeHttp from 'node:http';
import path from 'node:path';
import { runCli, tempDir } from '../helpers/env.js';
import { FilesystemDriver, gcRegistry, startRegistry, type StartedRegistry } from '../../src/registry/index.js';
import { assertError, http, pushBlob, pushImage, serveProcess, sha256 } from './util.js';

const children = new Set<ChildProcess>();
after(() => { for (const c of children) c.kill('SIGKILL'); });

function serve(root: string, args: string[] = []): Promise<{ url: string; proc: ChildProcess }> {
  return serveProcess(['--root', root, ...args], children);
}

function blobPath(root: string, digest: string): string {
  const hex = digest.slice(7);
  return path.join(root, 'docker/registry/v2/blobs/sha256', hex.slice(0, 2), hex, 'data');
}

describe('kill -9 mid-upload', () => {
  test('nothing half-written is visible; the upload resumes after restart; a repeated push works', async () => {
    const root = tempDir('drydock-registry-kill-');
    const data = randomBytes(8 * 1024 * 1024);
    const digest = sha256(data);
    const first = await serve(root);
    const loc = (await http(`${first.url}/v2/crash/blobs/uploads/`, { method: 'POST' })).headers.get('location')!;
    const u = new URL(first.url);
    // Stream half the blob, then SIGKILL the server while the request is still open.
    await new Promise<void>((resolve) => {
      const req = nodeHttp.request({ host: u.hostname, port: u.port, path: loc, method: 'PATCH', headers: { 'Content-Length': data.length } });
      req.on('error', () => resolve());
      req.write(data.subarray(0, 4 * 1024 * 1024), () => setTimeout(() => { first.proc.kill('SIGKILL'); setTimeout(resolve, 200); }, 300));
    });
    await new Promise((r) => (first.proc.exitCode !== null ? r(null) : first.proc.once('exit', r)));
    assert.equal(existsSync(blobPath(root, digest)), false, 'no blob before the digest was verified');

    const second = await serve(root);
    try {
      assertError(await http(`${second.url}/v2/crash/blobs/${digest}`), 404, 'BLOB_UNKNOWN');
      const st = await http(`${second.url}${loc}`);
      assert.equal(st.status, 204, 'the upload session survived the crash');
      const offset = Number(st.headers.get('range')!.split('-')[1]) + 1;
      assert.ok(offset > 0 && offset <= 4 * 1024 * 1024, `offset ${offset}`);
      const put = await http(`${second.url}${loc}?digest=${digest}`, { method: 'PUT', body: data.subarray(offset), headers: { 'Content-Range': `${offset}-${data.length - 1}` } });
      assert.equal(put.status, 201, put.body.toString());
      assert.deepEqual((await http(`${second.url}/v2/crash/blobs/${digest}`)).body, data);
      // and a client that starts over instead of resuming
      assert.equal(await pushBlob(second.url, 'crash/again', data), digest);
      assert.deepEqual((await http(`${second.url}/v2/crash/again/blobs/${digest}`)).body, data);
    } finally {
      second.proc.kill('SIGTERM');
    }
  });

  test('SIGTERM lets an in-flight upload finish (graceful shutdown)', async () => {
    const root = tempDir('drydock-registry-term-');
    const srv = await serve(root);
    const data = randomBytes(2 * 1024 * 1024);
    const loc = (await http(`${srv.url}/v2/term/blobs/uploads/`, { method: 'POST' })).headers.get('location')!;
    const u = new URL(srv.url);
    const status = await new Promise<number>((resolve, reject) => {
      const req = nodeHttp.request({ host: u.hostname, port: u.port, path: loc, method: 'PATCH', headers: { 'Content-Length': data.length } }, (res) => { res.resume(); resolve(res.statusCode!); });
      req.on('error', reject);
      req.write(data.subarray(0, 1024 * 1024), () => {
        srv.proc.kill('SIGTERM');
        setTimeout(() => req.end(data.subarray(1024 * 1024)), 300);
      });
    });
    assert.equal(status, 202);
    const code = await new Promise((r) => (srv.proc.exitCode !== null ? r(srv.proc.exitCode) : srv.proc.once('exit', r)));
    assert.equal(code, 0);
    const files = readdirSync(path.join(root, 'docker/registry/v2/repositories/term/_uploads'));
    assert.equal((await fsp.stat(path.join(root, 'docker/registry/v2/repositories/term/_uploads', files[0]!, 'data'))).size, data.length);
  });
});

describe('stale uploads', () => {
  test('uploads older than uploadpurging.age are purged at startup', async () => {
    const root = tempDir('drydock-registry-purge-');
    const reg = await startRegistry({ root });
    const loc = (await http(`${reg.url}/v2/p/blobs/uploads/`, { method: 'POST' })).headers.get('location')!;
    const id = loc.split('/').pop()!;
    await reg.close();
    const dir = path.join(root, 'docker/registry/v2/repositories/p/_uploads', id);
    writeFileSync(path.join(dir, 'startedat'), new Date(Date.now() - 8 * 24 * 3600 * 1000).toISOString());
    const fresh = await startRegistry({ root });
    try {
      for (let i = 0; i < 50 && existsSync(dir); i++) await new Promise((r) => setTimeout(r, 20));
      assert.equal(existsSync(dir), false);
      assertError(await http(`${fresh.url}${loc}`), 404, 'BLOB_UPLOAD_UNKNOWN');
    } finally { await fresh.close(); }
  });
});

describe('garbage collection', () => {
  let reg: StartedRegistry;
  const root = tempDir('drydock-registry-gc-');
  after(async () => { await reg?.close(); });

  test('mark and sweep: dry run, unreferenced blobs, grace period, delete-untagged', async () => {
    reg = await startRegistry({ root });
    const kept = await pushImage(reg.url, 'gc/app', 'v1');
    const untagged = await pushImage(reg.url, 'gc/app', 'v2');
    const index = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: untagged.digest, size: untagged.manifest.length }] }));
    await http(`${reg.url}/v2/gc/app/manifests/multi`, { method: 'PUT', body: index, headers: { 'Content-Type': 'application/vnd.oci.image.index.v1+json' } });
    const doomed = await pushImage(reg.url, 'gc/app', 'v3');
    await http(`${reg.url}/v2/gc/app/manifests/v2`, { method: 'DELETE' }); // v2 now reachable only via the index
    await http(`${reg.url}/v2/gc/app/manifests/${doomed.digest}`, { method: 'DELETE' });
    const orphan = await pushBlob(reg.url, 'gc/app', 'uploaded, manifest not pushed yet');
    const driver = new FilesystemDriver(root);

    // default grace period: nothing recent is touched
    const graceful = await gcRegistry(driver);
    assert.equal(graceful.blobsDeleted.length, 0);
    assert.ok(graceful.blobsKeptByGrace >= 3);

    const dry = await gcRegistry(driver, { dryRun: true, gracePeriodMs: 0 });
    assert.ok(dry.blobsDeleted.includes(orphan) && dry.blobsDeleted.includes(doomed.layers[0]!));
    assert.ok(existsSync(blobPath(root, orphan)), 'dry run deletes nothing');

    const res = await gcRegistry(driver, { gracePeriodMs: 0 });
    assert.deepEqual(new Set(res.blobsDeleted), new Set(dry.blobsDeleted));
    for (const d of [orphan, doomed.layers[0]!, doomed.config, doomed.digest]) assert.equal(existsSync(blobPath(root, d)), false, d);
    for (const d of [kept.digest, kept.config, ...kept.layers, untagged.digest, ...untagged.layers]) assert.ok(existsSync(blobPath(root, d)), d);
    reg.storage.invalidateCaches();
    assertError(await http(`${reg.url}/v2/gc/app/blobs/${orphan}`, { method: 'GET' }), 404, 'BLOB_UNKNOWN');
    assert.equal((await http(`${reg.url}/v2/gc/app/manifests/v1`)).status, 200);

    // --delete-untagged keeps children of tagged indexes, drops manifests no tag reaches
    await http(`${reg.url}/v2/gc/app/manifests/multi`, { method: 'DELETE' });
    const untaggedRun = await gcRegistry(driver, { deleteUntagged: true, gracePeriodMs: 0 });
    assert.ok(untaggedRun.manifestsDeleted.includes(`gc/app@${untagged.digest}`));
    assert.ok(!untaggedRun.manifestsDeleted.includes(`gc/app@${kept.digest}`));
    assert.equal(existsSync(blobPath(root, untagged.layers[0]!)), false);
    assert.ok(existsSync(blobPath(root, kept.layers[0]!)));
    reg.storage.invalidateCaches();
    assert.equal((await http(`${reg.url}/v2/gc/app/manifests/v1`)).status, 200);
  });

  test('gc running in a loop next to live pushes loses nothing', async () => {
    const r = await startRegistry({ root: tempDir('drydock-registry-gc-live-') });
    const driver = new FilesystemDriver(r.config.storage.filesystem.rootdirectory);
    let stop = false;
    const gcLoop = (async () => {
      let runs = 0;
      while (!stop) { await gcRegistry(driver, { deleteUntagged: true }); runs++; }
      return runs;
    })();
    try {
      const pushed = await Promise.all(Array.from({ length: 6 }, (_, i) => pushImage(r.url, `live/app${i % 2}`, `t${i}`, { layers: 3 })));
      stop = true;
      assert.ok(await gcLoop >= 1);
      for (const [i, img] of pushed.entries()) {
        const m = await http(`${r.url}/v2/live/app${i % 2}/manifests/t${i}`);
        assert.equal(m.status, 200);
        for (const l of img.layers) assert.equal((await http(`${r.url}/v2/live/app${i % 2}/blobs/${l}`)).status, 200);
      }
    } finally {
      stop = true;
      await r.close();
    }
  });

  test('drydock registry gc CLI (--dry-run, --format json)', async () => {
    const res = await runCli(['registry', 'gc', '--root', root, '--dry-run', '--grace-period', '0s', '--format', 'json']);
    assert.equal(res.code, 0, res.stderr);
    const j = JSON.parse(res.stdout) as { repositories: number; blobsDeleted: string[] };
    assert.equal(j.repositories, 1);
    const text = await runCli(['registry', 'gc', '--root', root]);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /freed .*blobs.*manifests deleted/);
    const bad = await runCli(['registry', 'gc', '--root', root, '--grace-period', 'soon']);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /invalid duration/);
  });
});
