// An HTTP reverse proxy on 127.0.0.1 that records each request it forwards (method, URL,
// headers, when it started and ended) and can hold chosen requests before forwarding them, so a
// test can see how many uploads a client has in flight at once. Requests go upstream unchanged,
// Host header included, so SigV4 signatures (made for the proxy's host) still verify.
import { createServer, request, type IncomingHttpHeaders } from 'node:http';

export interface ProxiedRequest {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  status?: number;
  /** performance.now() when the request arrived and when its response ended. */
  start: number;
  end?: number;
}

export interface RecordingProxy {
  /** http://127.0.0.1:PORT */
  url: string;
  host: string;
  requests: ProxiedRequest[];
  stop(): Promise<void>;
}

/** The most requests among `reqs` that were in flight at the same moment. */
export function maxInFlight(reqs: ProxiedRequest[]): number {
  const events = reqs.flatMap((r) => [[r.start, 1], [r.end ?? Infinity, -1]] as const).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let now = 0;
  let max = 0;
  for (const [, d] of events) max = Math.max(max, (now += d));
  return max;
}

export async function startRecordingProxy(upstream: string, opts: { holdMs?: (r: ProxiedRequest) => number } = {}): Promise<RecordingProxy> {
  const target = new URL(upstream);
  const requests: ProxiedRequest[] = [];
  const server = createServer((req, res) => {
    const rec: ProxiedRequest = { method: req.method!, url: req.url!, headers: req.headers, start: performance.now() };
    requests.push(rec);
    res.on('close', () => { rec.end = performance.now(); });
    req.pause();
    setTimeout(() => {
      const up = request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers }, (ur) => {
        rec.status = ur.statusCode;
        res.writeHead(ur.statusCode!, ur.headers);
        ur.pipe(res);
      });
      up.on('error', (e) => { res.destroy(e); });
      req.pipe(up);
      req.resume();
    }, opts.holdMs?.(rec) ?? 0);
  });
  server.keepAliveTimeout = 1000;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}`,
    host: `127.0.0.1:${port}`,
    requests,
    stop: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}
