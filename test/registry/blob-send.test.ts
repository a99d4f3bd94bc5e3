// Blob GETs through the filesystem driver's reused-buffer sender (src/registry/storage/send.ts):
// the bytes and ranges are right, the same two buffers serve send after send (no garbage per
// chunk), a missing file fails before anything is written, and a client that hangs up mid-blob
// leaves the server serving correct content to the next ones.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import nodeHttp from 'node:http';
import { Writable } from 'node:stream';
import { tempDir } from '../helpers/env.js';
import { FilesystemDriver, PathNotFoundError, startRegistry, type StartedRegistry } from '../../src/registry/index.js';
import { http, pushBlob, sha256 } from './util.js';

/** Collects what it is given (copied: the sender reuses its buffers) and which ArrayBuffers carried it. */
function collector(): { dest: Writable; bytes: () => Buffer; arrayBuffers: Set<ArrayBufferLike> } {
  const parts: Buffer[] = [];
  const arrayBuffers = new Set<ArrayBufferLike>();
  const dest = new Writable({
    write(chunk: Buffer, _enc, cb) {
      arrayBuffers.add(chunk.buffer);
      parts.push(Buffer.from(chunk));
      setImmediate(cb);
    },
  });
  return { dest, bytes: () => Buffer.concat(parts), arrayBuffers };
}

describe('filesystem driver sender', () => {
  const data = randomBytes(3 * 1024 * 1024 + 12345);
  let driver: FilesystemDriver;
  before(async () => {
    driver = new FilesystemDriver(tempDir('drydock-registry-send-'));
    await driver.putContent('/blob/data', data);
  });

  test('sends the whole file and ranges, byte for byte', async () => {
    const ranges: [number | undefined, number | undefined][] = [[undefined, undefined], [0, 0], [100, 2 * 1024 * 1024 + 5], [data.length - 1, data.length - 1], [262144, 524287]];
    for (const [start, end] of ranges) {
      const c = collector();
      await (await driver.sender!('/blob/data', start, end))(c.dest);
      assert.ok(c.bytes().equals(data.subarray(start ?? 0, (end ?? data.length - 1) + 1)), `range ${start}-${end}`);
    }
  });

  test('send after send reuses the same two buffers', async () => {
    const seen = new Set<ArrayBufferLike>();
    for (let i = 0; i < 4; i++) {
      const c = collector();
      await (await driver.sender!('/blob/data'))(c.dest);
      assert.ok(c.bytes().equals(data));
      for (const b of c.arrayBuffers) seen.add(b);
    }
    assert.ok(seen.size <= 2, `${seen.size} distinct buffers carried 4 sends of ${data.length} bytes`);
  });

  test('a missing file fails when opened, before any byte', async () => {
    await assert.rejects(driver.sender!('/blob/missing'), PathNotFoundError);
  });
});

describe('blob GET over HTTP', () => {
  let reg: StartedRegistry;
  const data = randomBytes(5 * 1024 * 1024);
  let digest: string;
  before(async () => {
    reg = await startRegistry({ root: tempDir('drydock-registry-send-http-') });
    digest = await pushBlob(reg.url, 'send/app', data);
  });
  after(async () => { await reg.close(); });

  test('a client hanging up mid-blob does not disturb the next ones', async () => {
    const u = new URL(`${reg.url}/v2/send/app/blobs/${digest}`);
    await new Promise<void>((resolve, reject) => {
      const req = nodeHttp.get({ host: u.hostname, port: u.port, path: u.pathname }, (res) => {
        res.once('data', () => { req.destroy(); resolve(); });
      });
      req.on('error', (e) => { if ((e as NodeJS.ErrnoException).code !== 'ECONNRESET') reject(e); });
    });
    const all = await Promise.all(Array.from({ length: 8 }, () => http(`${reg.url}/v2/send/app/blobs/${digest}`)));
    for (const r of all) {
      assert.equal(r.status, 200);
      assert.equal(sha256(r.body), digest);
    }
    const part = await http(`${reg.url}/v2/send/app/blobs/${digest}`, { headers: { Range: 'bytes=1000000-1999999' } });
    assert.equal(part.status, 206);
    assert.ok(part.body.equals(data.subarray(1000000, 2000000)));
  });
});
