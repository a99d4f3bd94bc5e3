// The registry client's HTTP/1.1 layer, on Node's own http/https modules. Measured on a 200 MB
// pull (bench/copy.ts), Node's native llhttp parser and socket path cost about half the CPU of
// undici's WebAssembly parser and stream layers (0.58 s vs 1.0 s user time), and CPU is what a
// pull competes for on a small machine. The surface is the little the transport needs: one
// request, a streaming response, keep-alive pools per endpoint, TLS options.
import http, { type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import https from 'node:https';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

export interface HttpResponse {
  statusCode: number;
  headers: IncomingHttpHeaders;
  body: HttpResponseBody;
}

/** The response stream, plus dump(): read and drop the rest so the connection can be reused. */
export type HttpResponseBody = IncomingMessage & { dump(): Promise<void> };

export interface HttpPoolOptions {
  /** Parallel sockets per origin. */
  connections?: number;
  tls?: { ca?: string[]; cert?: string; key?: string; rejectUnauthorized?: boolean };
  /** A socket idle this long (no bytes either way) fails the request with ETIMEDOUT. */
  idleTimeoutMs?: number;
}

export interface HttpRequestOptions {
  method: string;
  headers?: Record<string, string>;
  body?: Readable | Buffer | string;
}

/**
 * Keep-alive socket pools for plain and TLS origins, shared by every request of one endpoint.
 * The TLS pool is made on the first https: request: node:https loads node:tls, and the first TLS
 * connection parses the root CA store, tens of milliseconds a plain-HTTP pull does not need.
 */
export class HttpPool {
  private readonly httpAgent: http.Agent;
  private httpsAgent?: https.Agent;
  private readonly idleTimeoutMs: number;
  private readonly agentOptions: http.AgentOptions;
  private readonly tls: NonNullable<HttpPoolOptions['tls']>;

  constructor(opts: HttpPoolOptions = {}) {
    this.agentOptions = { keepAlive: true, maxSockets: opts.connections ?? 8, keepAliveMsecs: 30_000 };
    this.httpAgent = new http.Agent(this.agentOptions);
    this.tls = opts.tls ?? {};
    this.idleTimeoutMs = opts.idleTimeoutMs ?? 300_000;
  }

  private tlsAgent(): https.Agent {
    const tls = this.tls;
    return this.httpsAgent ??= new https.Agent({
      ...this.agentOptions,
      ca: tls.ca && tls.ca.length ? tls.ca : undefined, cert: tls.cert, key: tls.key,
      rejectUnauthorized: tls.rejectUnauthorized ?? true,
    });
  }

  request(url: URL, o: HttpRequestOptions): Promise<HttpResponse> {
    const tls = url.protocol === 'https:';
    if (!tls && url.protocol !== 'http:') return Promise.reject(new Error(`unsupported URL scheme ${url.protocol}`));
    const headers: Record<string, string> = { ...o.headers };
    if (o.body !== undefined && !(o.body instanceof Readable) && headers['content-length'] === undefined) {
      headers['content-length'] = String(Buffer.byteLength(o.body));
    }
    return new Promise<HttpResponse>((resolve, reject) => {
      let uploadDone = o.body === undefined || !(o.body instanceof Readable);
      const req = (tls ? https : http).request(url, {
        method: o.method, headers, agent: tls ? this.tlsAgent() : this.httpAgent,
      }, (res) => {
        const body = res as HttpResponseBody;
        body.dump = async () => {
          // A server that answered before reading the whole upload (an error, a 401) will not
          // read the rest: drop the connection instead of waiting on a stalled body.
          if (!uploadDone) { req.destroy(); return; }
          if (res.readableEnded || res.destroyed) return;
          res.resume();
          await new Promise<void>((done) => { res.once('end', done); res.once('close', done); res.once('error', () => done()); });
        };
        resolve({ statusCode: res.statusCode ?? 0, headers: res.headers, body });
      });
      req.on('error', reject);
      req.setTimeout(this.idleTimeoutMs, () => {
        req.destroy(Object.assign(new Error(`no data for ${Math.round(this.idleTimeoutMs / 1000)} s`), { code: 'ETIMEDOUT' }));
      });
      if (o.body instanceof Readable) {
        pipeline(o.body, req).then(() => { uploadDone = true; }, (e: Error) => { uploadDone = true; req.destroy(e); });
      } else {
        req.end(o.body);
      }
    });
  }

  close(): void {
    this.httpAgent.destroy();
    this.httpsAgent?.destroy();
  }
}
