// A registry that speaks plain HTTP, reached over TLS (not loopback-by-name, not --insecure-registry):
// the error names --insecure-registry instead of OpenSSL's "wrong version number".
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { RegistryTransport } from '../../src/client/transport.js';

test('a plain-HTTP registry reached over TLS names --insecure-registry', async () => {
  const server = http.createServer((_req, res) => { res.writeHead(200, { 'docker-distribution-api-version': 'registry/2.0' }); res.end('{}'); });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  try {
    // The endpoint a non-loopback registry gets: TLS only, verified.
    const t = new RegistryTransport({ host, insecure: false, plainHttpFallback: false, mirror: false }, { retries: 0 });
    await assert.rejects(t.ping(), (e: Error) => {
      assert.match(e.message, /server gave HTTP response to HTTPS client/);
      assert.match(e.message, new RegExp(`--insecure-registry ${host.replace(/\./g, '\\.')}`));
      assert.doesNotMatch(e.message, /wrong version number/);
      return true;
    });
  } finally {
    server.close();
  }
});
