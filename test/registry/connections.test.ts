// Graceful close as Go's http.Server.Shutdown does it: a request that was sent before the
// shutdown but not parsed yet is served; idle keep-alive connections close at once; a connection
// that never sends a request is cut after its grace, within draintimeout.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { tempDir } from '../helpers/env.js';
import { startRegistry } from '../../src/registry/index.js';

function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => resolve(s));
    s.once('error', reject);
  });
}

/** Everything the server sends until it closes the connection, and whether it was reset. */
function readAll(s: net.Socket): Promise<{ text: string; reset: boolean }> {
  return new Promise((resolve) => {
    let text = '';
    let reset = false;
    s.on('data', (d) => (text += d));
    s.on('error', () => (reset = true));
    s.on('close', () => resolve({ text, reset }));
  });
}

describe('registry close', () => {
  test('a connection accepted but not yet read when close() starts gets its request served, then Connection: close', async () => {
    const reg = await startRegistry({ root: tempDir('drydock-conn-new-') });
    const s = await connect(reg.port);
    const all = readAll(s);
    await new Promise((r) => setTimeout(r, 50)); // the server has accepted it
    const closed = reg.close();
    s.write('GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n');
    const { text, reset } = await all;
    await closed;
    assert.equal(reset, false);
    assert.match(text, /^HTTP\/1\.1 200 /);
    assert.match(text, /\r\nconnection: close\r\n/i);
  });

  test('an idle keep-alive connection is closed at once; close() does not wait for it', async () => {
    const reg = await startRegistry({ root: tempDir('drydock-conn-idle-') });
    const s = await connect(reg.port);
    const all = readAll(s);
    s.write('GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n');
    await new Promise<void>((resolve) => s.once('data', () => resolve()));
    const t0 = Date.now();
    await reg.close();
    const { text } = await all;
    assert.match(text, /^HTTP\/1\.1 200 /);
    assert.ok(Date.now() - t0 < 2000, `close took ${Date.now() - t0} ms`);
  });

  test('a connection that never sends a request is cut when draintimeout ends', async () => {
    const reg = await startRegistry({ root: tempDir('drydock-conn-silent-'), config: { http: { addr: '127.0.0.1:0', draintimeout: '300ms' } } });
    const s = await connect(reg.port);
    const all = readAll(s);
    const t0 = Date.now();
    await reg.close();
    const took = Date.now() - t0;
    const { text } = await all;
    assert.equal(text, '');
    assert.ok(took >= 250 && took < 3000, `close took ${took} ms`);
  });

  test('no new connection is accepted once close() starts', async () => {
    const reg = await startRegistry({ root: tempDir('drydock-conn-refuse-') });
    const closed = reg.close();
    await assert.rejects(connect(reg.port), /ECONNREFUSED/);
    await closed;
  });
});
