// HTTP to one registry endpoint: scheme detection (HTTPS, or HTTP for insecure registries),
// Basic and Bearer challenges with per-scope token caching, manual redirects that never carry
// credentials to another origin, and retries with backoff for transient failures.
import type { Readable } from 'node:stream';
import { UserError } from '../util/errors.js';
import { HttpPool, type HttpResponse } from './http.js';
import type { Credentials } from './auth-config.js';
import type { Endpoint } from './registries-config.js';

export const USER_AGENT = `drydock/${process.env.npm_package_version ?? '0.1.0'}`;
const MAX_REDIRECTS = 5;
const MAX_ERROR_BODY = 64 * 1024;
const MAX_TOKEN_BODY = 1 << 20;

/** One entry of a registry's `{"errors": [...]}` body, as the distribution spec defines it. */
export interface RegistryDiagnostic {
  code: string;
  message?: string;
  detail?: unknown;
}

/** Statuses worth another try whatever the body says (ggcr's temporaryStatusCodes, minus 500). */
const TEMPORARY_STATUS = new Set([408, 429, 502, 503, 504]);
/** Error codes that mean "try again" (ggcr's temporaryErrorCodes). */
const TEMPORARY_CODES = new Set(['BLOB_UPLOAD_INVALID', 'TOOMANYREQUESTS', 'UNAVAILABLE']);

/**
 * A registry answered with an error status. Every diagnostic it sent is kept, typed, and
 * `temporary` decides retries from the status and codes, never from message text.
 */
export class RegistryHttpError extends UserError {
  override name = 'RegistryHttpError';
  constructor(message: string, readonly status: number, readonly errors: RegistryDiagnostic[] = []) {
    super(message);
  }

  /** The first diagnostic's code (what most callers branch on). */
  get code(): string | undefined { return this.errors[0]?.code; }

  get temporary(): boolean {
    if (TEMPORARY_STATUS.has(this.status)) return true;
    return this.errors.length > 0 && this.errors.every((d) => TEMPORARY_CODES.has(d.code));
  }
}

/** Network-level or 5xx/429 failure worth retrying. */
export class TransientError extends UserError {
  override name = 'TransientError';
}

export interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

/** Parses WWW-Authenticate: `Bearer realm="...",service="...",scope="a b"` (several challenges allowed). */
export function parseChallenges(header: string | string[] | undefined): Challenge[] {
  const out: Challenge[] = [];
  const isTokenChar = (c: string) => /[A-Za-z0-9!#$%&'*+.^_`|~-]/.test(c);
  for (const h of Array.isArray(header) ? header : header ? [header] : []) {
    let i = 0;
    let current: Challenge | undefined;
    while (i < h.length) {
      while (i < h.length && (h[i] === ' ' || h[i] === ',' || h[i] === '\t')) i++;
      const start = i;
      while (i < h.length && isTokenChar(h[i]!)) i++;
      if (i === start) { i++; continue; }
      const name = h.slice(start, i);
      let j = i;
      while (j < h.length && h[j] === ' ') j++;
      if (h[j] === '=' && current) {
        i = j + 1;
        while (i < h.length && h[i] === ' ') i++;
        let value = '';
        if (h[i] === '"') {
          i++;
          while (i < h.length && h[i] !== '"') {
            if (h[i] === '\\' && i + 1 < h.length) i++;
            value += h[i++];
          }
          i++;
        } else {
          const v = i;
          while (i < h.length && h[i] !== ',' && h[i] !== ' ') i++;
          value = h.slice(v, i);
        }
        current.params[name.toLowerCase()] = value;
      } else {
        current = { scheme: name.toLowerCase(), params: {} };
        out.push(current);
      }
    }
  }
  return out;
}

export function isTransientNetworkError(e: unknown): boolean {
  if (e instanceof TransientError) return true;
  if (e instanceof RegistryHttpError) return e.temporary;
  const code = (e as { code?: string })?.code ?? '';
  return ['ECONNRESET', 'ECONNREFUSED', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH',
    'UND_ERR_SOCKET', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'UND_ERR_CLOSED',
    'ECONNABORTED', 'ERR_STREAM_PREMATURE_CLOSE', 'UND_ERR_REQ_CONTENT_LENGTH_MISMATCH', 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH'].includes(code)
    || /other side closed|socket hang up|premature close|terminated/i.test((e as Error)?.message ?? '');
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Backoff: 200 ms, 400 ms, 800 ms ... with ±25 % jitter, capped at 5 s. */
export function backoffMs(attempt: number, base = 200): number {
  const ms = Math.min(5000, base * 2 ** attempt);
  return Math.round(ms * (0.75 + Math.random() * 0.5));
}

export async function readBodyLimited(body: Readable, limit: number, what: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of body) {
    n += (c as Buffer).length;
    if (n > limit) {
      body.destroy();
      throw new UserError(`${what} is larger than the ${limit} byte limit`);
    }
    chunks.push(c as Buffer);
  }
  return Buffer.concat(chunks);
}

async function errorFromResponse(res: HttpResponse, what: string): Promise<RegistryHttpError> {
  let text = '';
  try { text = (await readBodyLimited(res.body, MAX_ERROR_BODY, 'error body')).toString('utf8'); } catch { /* keep status */ }
  let errors: RegistryDiagnostic[] = [];
  let detail = text.trim().slice(0, 300);
  try {
    const doc = JSON.parse(text) as { errors?: unknown };
    if (Array.isArray(doc.errors)) {
      errors = doc.errors.filter((e): e is RegistryDiagnostic => typeof e?.code === 'string')
        .map((e) => ({ code: e.code, ...(typeof e.message === 'string' ? { message: e.message } : {}), ...(e.detail !== undefined ? { detail: e.detail } : {}) }));
      if (errors.length) detail = errors.map((e) => [e.code.toLowerCase().replace(/_/g, ' '), e.message].filter(Boolean).join(': ')).join('; ');
    }
  } catch { /* not JSON: keep text */ }
  return new RegistryHttpError(`${what}: ${res.statusCode}${detail ? ` ${detail}` : ''}`, res.statusCode, errors);
}

export interface TransportOptions {
  /** Looks credentials up for a registry host (the auth config). */
  credentials?: (host: string) => Promise<Credentials | undefined>;
  /** Host name the credentials are stored under (the upstream registry, e.g. "docker.io"). */
  credentialsHost?: string;
  tls?: { ca?: string[]; cert?: string; key?: string };
  /** Attempts after the first for idempotent requests. */
  retries?: number;
  /** Parallel connections to this endpoint. */
  connections?: number;
}

export interface SendOptions {
  method: 'GET' | 'HEAD' | 'PUT' | 'POST' | 'PATCH' | 'DELETE';
  /** Path below the endpoint ("/v2/...") or an absolute URL (upload locations, redirects). */
  path: string;
  headers?: Record<string, string>;
  body?: Readable | Buffer | string;
  /** Token scopes this request needs ("repository:a/b:pull"). */
  scopes: string[];
  /** Follow 3xx (blob GETs). Credentials go only to this endpoint's origin. */
  followRedirects?: boolean;
  /** Statuses returned to the caller instead of raised (the 2xx range is always returned). */
  allow?: number[];
  /** What the request is, for error messages. */
  what: string;
  retries?: number;
}

interface CachedToken { token: string; expires: number }

export class RegistryTransport {
  private readonly pool: HttpPool;
  private base?: URL;
  private pinging?: Promise<void>;
  private challenge?: Challenge;
  private readonly tokens = new Map<string, CachedToken>();
  private credsLoaded = false;
  private creds?: Credentials;

  constructor(readonly endpoint: Endpoint, private readonly opts: TransportOptions = {}) {
    const tls = opts.tls ?? {};
    this.pool = new HttpPool({ connections: opts.connections ?? 8, tls: { ...tls, rejectUnauthorized: !endpoint.insecure } });
  }

  get host(): string { return this.endpoint.host; }

  async close(): Promise<void> {
    this.pool.close();
  }

  private async credentials(): Promise<Credentials | undefined> {
    if (!this.credsLoaded) {
      this.creds = await this.opts.credentials?.(this.opts.credentialsHost ?? this.endpoint.host);
      this.credsLoaded = true;
    }
    return this.creds;
  }

  /** GET /v2/ once: picks the scheme and learns the auth challenge. */
  async ping(): Promise<void> {
    if (this.base) return;
    this.pinging ??= this.doPing().finally(() => { this.pinging = undefined; });
    await this.pinging;
  }

  private async doPing(): Promise<void> {
    const schemes: ('https' | 'http')[] = this.endpoint.scheme ? [this.endpoint.scheme]
      // Loopback: plain HTTP first. It is what a local registry speaks as a rule, a TLS one says
      // so at once (below), nothing on the wire leaves the host, and a plain-HTTP pull then never
      // loads TLS: node:tls and the root CA store cost a CLI pull tens of milliseconds.
      : this.endpoint.plainHttpFallback ? ['http', 'https']
        : this.endpoint.insecure ? ['https', 'http'] : ['https'];
    let lastError: unknown;
    for (const scheme of schemes) {
      const base = new URL(`${scheme}://${this.endpoint.host}`);
      const more = scheme !== schemes[schemes.length - 1];
      for (let attempt = 0; ; attempt++) {
        try {
          const res = await this.pool.request(new URL('/v2/', base), { method: 'GET', headers: { 'user-agent': USER_AGENT } });
          await res.body.dump().catch(() => {});
          if (scheme === 'http' && more && speaksTls(res)) { lastError = new UserError(`${this.endpoint.host}: /v2/ over plain HTTP answered ${res.statusCode}`); break; }
          if (res.statusCode === 401) this.challenge = parseChallenges(res.headers['www-authenticate'])[0];
          else if (res.statusCode >= 500 || res.statusCode === 429) throw new TransientError(`${this.endpoint.host}: /v2/ answered ${res.statusCode}`);
          else if (res.statusCode !== 200 && res.statusCode !== 404) {
            // Some registries answer 403/404 on /v2/ but serve repositories; keep going.
          }
          this.base = base;
          return;
        } catch (e) {
          lastError = e;
          const detail = `${(e as Error).message} ${(e as { code?: string }).code} ${String((e as { cause?: Error }).cause?.message ?? '')}`;
          // A plain-HTTP server reached over TLS, or a TLS server sent plain HTTP: the other scheme.
          if (more && scheme === 'https' && /wrong version number|EPROTO|packet length too long|ECONNRESET|other side closed/i.test(detail)) break;
          if (more && scheme === 'http' && /ECONNRESET|EPIPE|other side closed|socket hang up|HPE_|Parse Error/i.test(detail)) break;
          // A plain-HTTP registry reached over TLS: say so and name the way out, not OpenSSL's words.
          if (scheme === 'https' && schemes.length === 1 && /wrong version number|packet length too long|EPROTO/i.test(detail)) {
            throw new UserError(`cannot reach registry ${this.endpoint.host}: http: server gave HTTP response to HTTPS client (the registry speaks plain HTTP: pass --insecure-registry ${this.endpoint.host}, or list it under insecure-registries in /etc/docker/daemon.json)`);
          }
          if (!isTransientNetworkError(e) || attempt >= (this.opts.retries ?? 2)) {
            throw new UserError(`cannot reach registry ${this.endpoint.host}: ${describeNetworkError(e)}${certHint(e, this.endpoint.host)}`);
          }
          await sleep(backoffMs(attempt));
        }
      }
    }
    throw new UserError(`cannot reach registry ${this.endpoint.host}: ${describeNetworkError(lastError)}`);
  }

  private tokenKey(scopes: string[]): string {
    return `${this.challenge?.params.realm}|${this.challenge?.params.service}|${[...scopes].sort().join(' ')}`;
  }

  /** Obtains a bearer token for `scopes` from the challenge's realm (cached until it expires). */
  private async token(scopes: string[], fresh: boolean): Promise<string> {
    const key = this.tokenKey(scopes);
    const cached = this.tokens.get(key);
    if (!fresh && cached && cached.expires > Date.now()) return cached.token;
    const realm = this.challenge?.params.realm;
    if (!realm) throw new UserError(`registry ${this.endpoint.host} asked for a bearer token without a realm`);
    let url: URL;
    try { url = new URL(realm); } catch { throw new UserError(`registry ${this.endpoint.host} sent an invalid token realm "${realm}"`); }
    if (this.challenge?.params.service) url.searchParams.set('service', this.challenge.params.service);
    for (const s of scopes) url.searchParams.append('scope', s);
    const creds = await this.credentials();
    const headers: Record<string, string> = { 'user-agent': USER_AGENT };
    let method: 'GET' | 'POST' = 'GET';
    let body: string | undefined;
    if (creds?.identityToken) {
      method = 'POST';
      headers['content-type'] = 'application/x-www-form-urlencoded';
      const form = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: creds.identityToken, client_id: 'drydock', service: this.challenge?.params.service ?? '' });
      for (const s of scopes) form.append('scope', s);
      body = form.toString();
    } else if (creds) {
      headers.authorization = `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString('base64')}`;
    }
    let res: HttpResponse;
    try {
      res = await this.pool.request(url, { method, headers, body });
    } catch (e) {
      throw new UserError(`token endpoint ${url.origin}${url.pathname} is unreachable: ${describeNetworkError(e)}`);
    }
    if (res.statusCode === 401 || res.statusCode === 403) {
      await res.body.dump().catch(() => {});
      throw new RegistryHttpError(`authentication to ${this.endpoint.host} failed: ${creds ? 'incorrect username or password' : 'no credentials (run `drydock login ' + (this.opts.credentialsHost ?? this.endpoint.host) + '`)'}`, res.statusCode, [{ code: 'UNAUTHORIZED' }]);
    }
    if (res.statusCode !== 200) throw await errorFromResponse(res, `token endpoint ${url.origin}${url.pathname}`);
    const text = (await readBodyLimited(res.body, MAX_TOKEN_BODY, 'token response')).toString('utf8');
    let doc: { token?: unknown; access_token?: unknown; expires_in?: unknown };
    try { doc = JSON.parse(text); } catch {
      throw new UserError(`token endpoint ${url.origin}${url.pathname} returned an invalid response (not JSON): ${JSON.stringify(text.slice(0, 80))}`);
    }
    const token = typeof doc?.token === 'string' && doc.token ? doc.token : typeof doc?.access_token === 'string' && doc.access_token ? doc.access_token : undefined;
    if (!token) throw new UserError(`token endpoint ${url.origin}${url.pathname} returned an invalid response (no "token" field)`);
    const ttl = typeof doc.expires_in === 'number' && doc.expires_in > 0 ? doc.expires_in : 60;
    this.tokens.set(key, { token, expires: Date.now() + Math.max(1, ttl - 10) * 1000 });
    return token;
  }

  private async authorization(scopes: string[], fresh: boolean): Promise<string | undefined> {
    const ch = this.challenge;
    if (!ch) return undefined;
    if (ch.scheme === 'bearer') return `Bearer ${await this.token(scopes, fresh)}`;
    if (ch.scheme === 'basic') {
      const creds = await this.credentials();
      if (!creds) return undefined;
      return `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString('base64')}`;
    }
    return undefined;
  }

  url(p: string): URL {
    if (!this.base) throw new Error('transport used before ping()');
    return new URL(p, this.base);
  }

  /**
   * Sends one request. A 401 is answered once with fresh credentials; a second 401 is an error
   * (no loop). Redirects are followed by hand: the Authorization header goes only to this
   * endpoint's own origin. Requests with a stream body are never retried here.
   */
  async send(o: SendOptions): Promise<HttpResponse> {
    await this.ping();
    const retries = typeof o.body === 'object' && !Buffer.isBuffer(o.body) ? 0 : o.retries ?? this.opts.retries ?? 3;
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.sendOnce(o);
      } catch (e) {
        if (attempt >= retries || !isTransientNetworkError(e)) {
          if (e instanceof UserError) throw e;
          throw new TransientError(`${o.what}: ${describeNetworkError(e)}`);
        }
        await sleep(backoffMs(attempt));
      }
    }
  }

  private async sendOnce(o: SendOptions): Promise<HttpResponse> {
    let url = this.url(o.path);
    let authRetried = false;
    let redirects = 0;
    let fresh = false;
    for (;;) {
      const sameOrigin = url.origin === this.base!.origin;
      const headers: Record<string, string> = { 'user-agent': USER_AGENT, ...o.headers };
      if (sameOrigin) {
        const auth = await this.authorization(o.scopes, fresh);
        if (auth) headers.authorization = auth;
      }
      const res = await this.pool.request(url, { method: o.method, headers, body: o.body });
      const status = res.statusCode;
      if (status === 401 && sameOrigin) {
        const ch = parseChallenges(res.headers['www-authenticate'])[0];
        await res.body.dump().catch(() => {});
        const streamed = typeof o.body === 'object' && !Buffer.isBuffer(o.body);
        if (authRetried || !ch || streamed) {
          const creds = await this.credentials();
          throw new RegistryHttpError(`${o.what}: unauthorized${creds ? ' (credentials were rejected or lack access)' : ` (authentication required: run \`drydock login ${this.opts.credentialsHost ?? this.endpoint.host}\`)`}`, 401, [{ code: 'UNAUTHORIZED' }]);
        }
        this.challenge = ch;
        authRetried = true;
        fresh = true;
        continue;
      }
      if (o.followRedirects && [301, 302, 303, 307, 308].includes(status)) {
        const loc = res.headers.location;
        await res.body.dump().catch(() => {});
        if (typeof loc !== 'string' || !loc) throw new RegistryHttpError(`${o.what}: redirect without a Location`, status);
        if (++redirects > MAX_REDIRECTS) throw new RegistryHttpError(`${o.what}: too many redirects`, status);
        url = new URL(loc, url);
        if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new RegistryHttpError(`${o.what}: redirect to unsupported URL ${url.protocol}`, status);
        continue;
      }
      if (status >= 200 && status < 300) return res;
      if (o.allow?.includes(status)) return res;
      // The body is read even for 502/503: a mirror whose upstream is down says why there.
      throw await errorFromResponse(res, o.what);
    }
  }

  /** Plain GET of a URL on another origin (foreign layers): never carries credentials. */
  async fetchForeign(url: string): Promise<HttpResponse> {
    const res = await this.pool.request(new URL(url), { method: 'GET', headers: { 'user-agent': USER_AGENT } });
    if (res.statusCode !== 200) {
      await res.body.dump().catch(() => {});
      throw new RegistryHttpError(`GET ${url}: ${res.statusCode}`, res.statusCode);
    }
    return res;
  }
}

/**
 * A plain-HTTP answer that means "this port speaks TLS": Go's and nginx's TLS servers answer 400
 * to a plain request ("Client sent an HTTP request to an HTTPS server"), proxies redirect to https.
 */
function speaksTls(res: HttpResponse): boolean {
  if (res.statusCode === 400 || res.statusCode === 497) return true;
  const loc = res.headers.location;
  return res.statusCode >= 300 && res.statusCode < 400 && typeof loc === 'string' && /^https:/i.test(loc);
}

/** A TLS verification failure gets the two ways out named. */
function certHint(e: unknown, host: string): string {
  const code = (e as { code?: string; cause?: { code?: string } })?.code ?? (e as { cause?: { code?: string } })?.cause?.code ?? '';
  if (!/CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ALTNAME/.test(code)) return '';
  return ` (TLS certificate not trusted: put the registry's CA in /etc/containers/certs.d/${host}/ca.crt or pass --insecure-registry ${host})`;
}

export function describeNetworkError(e: unknown): string {
  const err = e as Error & { code?: string; cause?: Error & { code?: string } };
  if (!err) return 'unknown error';
  const code = err.code ?? err.cause?.code;
  const msg = err.cause?.message && err.cause.message !== err.message ? `${err.message}: ${err.cause.message}` : err.message;
  if (code === 'ECONNREFUSED') return 'connection refused';
  if (code && !msg.includes(code)) return `${msg} (${code})`;
  return msg;
}
