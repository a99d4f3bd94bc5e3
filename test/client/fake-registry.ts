// A deliberately small, scriptable registry on 127.0.0.1 for faults real servers will not
// produce: wrong blob content, oversize manifests, cut connections, redirects to another
// origin, garbage token endpoints, endless 401s. Every request is recorded for assertions.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { digestOf } from '../../src/image/index.js';

export interface RecordedRequest { method: string; url: string; headers: http.IncomingHttpHeaders }

export type Handler = (req: http.IncomingMessage, res: http.ServerResponse) => boolean | void | Promise<boolean | void>;

export interface FakeRegistry {
  host: string;
  url: string;
  requests: RecordedRequest[];
  manifests: Map<string, { bytes: Buffer; mediaType: string }>;
  blobs: Map<string, Buffer>;
  /** Runs before the default handling; return true when the response was handled. */
  handlers: Handler[];
  addManifest(repo: string, ref: string, bytes: Buffer, mediaType: string): string;
  addBlob(bytes: Buffer): string;
  close(): Promise<void>;
}

export async function startFakeRegistry(): Promise<FakeRegistry> {
  const requests: RecordedRequest[] = [];
  const manifests = new Map<string, { bytes: Buffer; mediaType: string }>();
  const blobs = new Map<string, Buffer>();
  const handlers: Handler[] = [];
  const server = http.createServer(async (req, res) => {
    requests.push({ method: req.method!, url: req.url!, headers: req.headers });
    for (const h of handlers) if (await h(req, res)) return;
    const url = new URL(req.url!, 'http://x');
    if (url.pathname === '/v2/') { res.writeHead(200, { 'content-type': 'application/json' }).end('{}'); return; }
    let m = /^\/v2\/(.+)\/manifests\/([^/]+)$/.exec(url.pathname);
    if (m) {
      const found = manifests.get(`${m[1]}:${m[2]}`);
      if (!found) { res.writeHead(404, { 'content-type': 'application/json' }).end('{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}'); return; }
      res.writeHead(200, { 'content-type': found.mediaType, 'content-length': found.bytes.length, 'docker-content-digest': digestOf(found.bytes) });
      res.end(req.method === 'HEAD' ? undefined : found.bytes);
      return;
    }
    m = /^\/v2\/(.+)\/blobs\/([^/]+)$/.exec(url.pathname);
    if (m) {
      const b = blobs.get(m[2]!);
      if (!b) { res.writeHead(404).end(); return; }
      res.writeHead(200, { 'content-length': b.length, 'content-type': 'application/octet-stream' });
      res.end(req.method === 'HEAD' ? undefined : b);
      return;
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    host: `127.0.0.1:${port}`,
    url: `http://127.0.0.1:${port}`,
    requests, manifests, blobs, handlers,
    addManifest(repo, ref, bytes, mediaType) {
      const digest = digestOf(bytes);
      manifests.set(`${repo}:${ref}`, { bytes, mediaType });
      manifests.set(`${repo}:${digest}`, { bytes, mediaType });
      return digest;
    },
    addBlob(bytes) {
      const d = digestOf(bytes);
      blobs.set(d, bytes);
      return d;
    },
    close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}
