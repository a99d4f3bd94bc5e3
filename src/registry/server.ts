// The HTTP front end of the registry: routes OCI distribution v1.1 requests onto RegistryStorage.
// It is a plain node:http(s) handler rather than a framework route table because repository names
// contain slashes (/v2/a/b/c/manifests/x), which suffix-anchored regexes match directly, and the
// manifest GET hot path stays a handful of function calls.
import './threadpool.js'; // first: sizes libuv's threadpool before anything starts it
import { PullRecorder } from './retention.js';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { promises as fsp } from 'node:fs';
import type { AddressInfo, Socket } from 'node:net';
import pino, { type Logger } from 'pino';
import { Counter, Histogram, Registry as MetricsRegistry, collectDefaultMetrics } from 'prom-client';
import { MediaType } from '../image/media-types.js';
import { combinedLine } from './access-log.js';
import { ConnectionTracker } from './connections.js';
import { createAuth, type Access, type AuthController, type AuthOptions, type Grant, type Identity, type Policy } from './auth/index.js';
import { parseDuration, splitAddr, type RegistryConfig } from './config.js';
import { RegistryError } from './errors.js';
import { FilesystemDriver } from './storage/filesystem.js';
import type { StorageDriver } from './storage/driver.js';
import { checkedDriver } from './storage/checked.js';
import { S3Driver, s3Location, s3OptionsFromConfig } from './storage/s3.js';
import { MAX_MANIFEST_BYTES, RegistryStorage, parseDigestParam, validateName } from './storage.js';
import { ProxyUpstream } from './proxy.js';
import { createUiHandler } from './ui/index.js';

const API_VERSION = 'registry/2.0';
const MAX_PAGE = 1000;

const RE_UPLOAD = /^\/v2\/(.+)\/blobs\/uploads\/([^/]*)$/;
const RE_BLOB = /^\/v2\/(.+)\/blobs\/([^/]+)$/;
const RE_MANIFEST = /^\/v2\/(.+)\/manifests\/([^/]+)$/;
const RE_TAGS = /^\/v2\/(.+)\/tags\/list$/;
const RE_REFERRERS = /^\/v2\/(.+)\/referrers\/([^/]+)$/;

export interface RegistryServer {
  readonly config: RegistryConfig;
  readonly storage: RegistryStorage;
  /** Resolves with the bound address; port 0 picks an ephemeral port. */
  listen(): Promise<{ url: string; host: string; port: number }>;
  /** Graceful: stops accepting, lets in-flight requests finish (up to http.draintimeout), then closes. */
  close(): Promise<void>;
  /** The underlying node server, once listening. */
  readonly server: Server | undefined;
  /**
   * SIGHUP: re-reads the htpasswd file and swaps in `next`'s access control (accessControl,
   * auth.access, auth.anonymousread) for requests that start from now on; open connections and
   * in-flight uploads are untouched. On an error the old settings stay and it throws.
   */
  reload(next: RegistryConfig): Promise<void>;
  /** The access policy in force (undefined without auth): can(identity, action, repo), filterRepos(identity, repos). */
  policy(): Policy | undefined;
  /** Who sent `req` ({} = anonymous); throws a 401 RegistryError for wrong credentials. */
  identify(req: IncomingMessage): Promise<Identity>;
}

export interface CreateServerOptions {
  /** Swap the storage driver (tests). Default: createStorageDriver(config). */
  driver?: StorageDriver;
  /** Event and JSON access log destination; default stdout. `false` disables. */
  logger?: Logger | false;
  /** Where combined-format access lines go (log.accesslog.format: combined); default stdout. */
  accessLogWriter?: (line: string) => void;
}

interface Ctx {
  req: IncomingMessage;
  res: ServerResponse;
  url: URL;
  route: string;
  user?: string;
  bytesIn: number;
  bytesOut: number;
  /** Gives back the upload slot this request holds (the slow-body cut-off frees it at once). */
  releaseUploadSlot?: () => void;
}

function decode(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new RegistryError('NAME_INVALID', 'malformed percent-encoding in path');
  }
}

/** `n` for tags/list and _catalog: a non-negative integer, clamped to MAX_PAGE. */
function parsePageSize(url: URL): number | undefined {
  const raw = url.searchParams.get('n');
  if (raw === null || raw === '') return undefined;
  if (!/^\d+$/.test(raw)) throw new RegistryError('PAGINATION_NUMBER_INVALID', `n must be a non-negative integer, got "${raw.slice(0, 40)}"`, { n: raw.slice(0, 40) });
  return Math.min(Number(raw), MAX_PAGE);
}

function paginate(all: string[], n: number | undefined, last: string | null): { page: string[]; next?: string } {
  let items = last ? all.filter((t) => t > last) : all;
  const limit = n ?? MAX_PAGE;
  if (items.length > limit) {
    const page = items.slice(0, limit);
    return { page, next: page.length > 0 ? page[page.length - 1] : undefined };
  }
  items = items.slice(0, limit);
  return { page: items };
}

function parseContentRange(h: string | undefined): { start: number; end: number } | undefined {
  if (!h) return undefined;
  const m = /^(?:bytes )?(\d+)-(\d+)$/.exec(h.trim());
  if (!m) throw new RegistryError('BLOB_UPLOAD_INVALID', `invalid Content-Range "${h.slice(0, 60)}"`, undefined, 416);
  const start = Number(m[1]);
  const end = Number(m[2]);
  if (end < start) throw new RegistryError('BLOB_UPLOAD_INVALID', `invalid Content-Range "${h}"`, undefined, 416);
  return { start, end };
}

/** A declared Content-Length must be the Content-Range's length (the body itself is counted in appendUpload). */
function checkRangeLength(req: IncomingMessage, range: { start: number; end: number } | undefined): void {
  const declared = req.headers['content-length'];
  if (range && declared !== undefined && Number(declared) !== range.end - range.start + 1) {
    throw new RegistryError('RANGE_INVALID', `Content-Length ${declared} does not match Content-Range ${range.start}-${range.end}`);
  }
}

/** bytes=a-b | a- | -n, single range only. Returns undefined for "whole blob". */
function parseRange(h: string | undefined, size: number): { start: number; end: number } | undefined {
  if (!h) return undefined;
  const m = /^bytes=(\d*)-(\d*)$/.exec(h.trim());
  const unsatisfiable = () => new RegistryError('BLOB_UNKNOWN', 'requested range not satisfiable', { size }, 416)
    .withHeaders({ 'Content-Range': `bytes */${size}` });
  if (!m || (m[1] === '' && m[2] === '')) throw unsatisfiable();
  let start: number;
  let end: number;
  if (m[1] === '') {
    const suffix = Number(m[2]);
    if (suffix === 0) throw unsatisfiable();
    start = Math.max(0, size - suffix);
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  }
  if (start >= size || end < start) throw unsatisfiable();
  return { start, end };
}

function hasBody(req: IncomingMessage): boolean {
  const len = req.headers['content-length'];
  if (len !== undefined) return Number(len) > 0;
  return req.headers['transfer-encoding'] !== undefined;
}

async function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > limit) {
    throw new RegistryError('SIZE_INVALID', `body exceeds ${limit} bytes`, { limit }, 413);
  }
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    n += chunk.length;
    if (n > limit) throw new RegistryError('SIZE_INVALID', `body exceeds ${limit} bytes`, { limit }, 413);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, n);
}

class Metrics {
  readonly registry = new MetricsRegistry();
  readonly requests = new Counter({ name: 'drydock_registry_http_requests_total', help: 'HTTP requests by method, route and status', labelNames: ['method', 'route', 'status'] as const, registers: [this.registry] });
  readonly duration = new Histogram({ name: 'drydock_registry_http_request_duration_seconds', help: 'HTTP request latency', labelNames: ['method', 'route'] as const, buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30], registers: [this.registry] });
  readonly bytesIn = new Counter({ name: 'drydock_registry_http_received_bytes_total', help: 'Request body bytes received (blob uploads and manifests)', registers: [this.registry] });
  readonly bytesOut = new Counter({ name: 'drydock_registry_http_sent_bytes_total', help: 'Response body bytes sent (blobs and manifests)', registers: [this.registry] });
  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'drydock_registry_' });
  }
}

/** The S3 driver options of a config that has `storage.s3`, else undefined. */
function s3Options(config: RegistryConfig) {
  return config.storage.s3 ? s3OptionsFromConfig(config.storage.s3 as unknown as Record<string, unknown>) : undefined;
}

/** The driver a config selects: storage.s3 when present (the SDK loads on first use), else the filesystem. */
/** The configured driver, behind the path check every driver goes through. */
export function createStorageDriver(config: RegistryConfig): StorageDriver {
  const s3 = s3Options(config);
  if (s3) return checkedDriver(new S3Driver(s3));
  return checkedDriver(new FilesystemDriver(config.storage.filesystem.rootdirectory, { fsync: config.storage.filesystem.fsync }));
}

/** Where a config stores things, for messages: a directory or "s3://bucket/root at endpoint". */
export function storageLocation(config: RegistryConfig): string {
  const s3 = s3Options(config);
  return s3 ? s3Location(s3) : config.storage.filesystem.rootdirectory;
}

export function createRegistryServer(config: RegistryConfig, opts: CreateServerOptions = {}): RegistryServer {
  const driver = opts.driver ? checkedDriver(opts.driver) : createStorageDriver(config);
  const storage = new RegistryStorage(driver, {
    cacheTtlMs: parseDuration(config.storage.cache?.ttl, 5000),
    deleteEnabled: config.storage.delete?.enabled ?? false,
  });
  const readOnly = config.storage.maintenance?.readonly?.enabled ?? false;
  const accessFormat = config.log?.accesslog?.disabled ? 'off' : config.log?.accesslog?.format ?? 'json';
  // With the JSON access log, events share its stream (stdout) as before; otherwise they go to
  // stderr, so stdout holds only combined lines (or, with -q, only the URL). With no access log
  // at all, only warnings and errors are logged.
  const log: Logger | undefined = opts.logger === false ? undefined : opts.logger ?? (accessFormat === 'json'
    ? pino({ level: config.log?.level ?? 'info', base: { service: 'drydock-registry' } }, pino.destination({ sync: false }))
    : pino({ level: accessFormat === 'off' ? 'warn' : config.log?.level ?? 'info', base: { service: 'drydock-registry' } }, pino.destination({ fd: 2, sync: false })));
  const accessOut = accessFormat === 'combined' && !opts.accessLogWriter ? pino.destination({ sync: false }) : undefined;
  const writeCombined = accessFormat !== 'combined' ? undefined : opts.accessLogWriter ?? ((line: string) => { accessOut!.write(line); });
  const metricsEnabled = config.metrics?.enabled ?? true;
  const metrics = metricsEnabled ? new Metrics() : undefined;
  const limits = config.limits ?? {};
  const maxUpload = limits.maxuploadbytes && limits.maxuploadbytes > 0 ? limits.maxuploadbytes : Number.MAX_SAFE_INTEGER;
  const maxConcurrentUploads = limits.maxconcurrentuploads && limits.maxconcurrentuploads > 0 ? limits.maxconcurrentuploads : Infinity;
  let activeUploads = 0;
  const timeouts = config.http.timeout ?? {};
  const idleTimeoutMs = parseDuration(timeouts.idle, 120_000);
  const headerTimeoutMs = parseDuration(timeouts.header, 60_000);
  const bodyTimeoutMs = parseDuration(timeouts.body, 60_000);
  const minBodyRate = timeouts.minbodyrate && timeouts.minbodyrate > 0 ? timeouts.minbodyrate : 1024;
  const extraHeaders = Object.entries(config.http.headers ?? {}).map(([k, v]) => [k, Array.isArray(v) ? v.join(', ') : String(v)] as const);
  const proxy = config.proxy ? new ProxyUpstream(config.proxy, storage, (message) => log?.warn({ upstream: config.proxy!.remoteurl }, message)) : undefined;

  let auth: AuthController | undefined;
  const ui = (config.ui?.enabled ?? true) ? createUiHandler({
    storage,
    authorize: (ctx, access) => authorize(ctx as Ctx, access),
    authKind: () => auth!.kind,
    policy: () => auth!.policy(),
    deletable: (config.storage.delete?.enabled ?? false) && !readOnly && !proxy,
  }) : undefined;
  let server: Server | undefined;
  let purgeTimer: NodeJS.Timeout | undefined;
  const connections = new ConnectionTracker();
  let closing = false;

  function baseUrl(req: IncomingMessage): string {
    const proto = config.http.tls?.certificate ? 'https' : 'http';
    return `${proto}://${req.headers.host ?? config.http.addr}`;
  }

  function authOptions(c: RegistryConfig): AuthOptions {
    return {
      htpasswd: c.auth?.htpasswd ? { realm: c.auth.htpasswd.realm ?? 'drydock registry', path: c.auth.htpasswd.path } : undefined,
      token: c.auth?.token ? {
        ...c.auth.token,
        service: c.auth.token.service ?? 'drydock-registry',
        issuer: c.auth.token.issuer ?? 'drydock',
      } : undefined,
      access: c.auth?.access,
      accessControl: c.accessControl ?? undefined,
      anonymousRead: c.auth?.anonymousread,
      rateLimit: { failures: c.auth?.ratelimit?.failures, windowMs: parseDuration(c.auth?.ratelimit?.window, 60_000) },
    };
  }

  async function authorize(ctx: Ctx, access: Access[]): Promise<Grant> {
    const grant = await auth!.authorize(ctx.req, access, baseUrl(ctx.req));
    ctx.user = grant.user;
    return grant;
  }

  function checkWritable(): void {
    if (readOnly) throw new RegistryError('UNSUPPORTED', 'the registry is in read-only mode (storage.maintenance.readonly)');
    if (proxy) throw new RegistryError('UNSUPPORTED', 'a pull-through cache does not accept pushes');
  }

  function repoAccess(name: string, ...actions: string[]): Access[] {
    return [{ type: 'repository', name, actions }];
  }

  function send(ctx: Ctx, status: number, headers: Record<string, string | number>, body?: Buffer | string): void {
    const { res } = ctx;
    res.statusCode = status;
    for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
    if (body !== undefined) {
      const b = typeof body === 'string' ? Buffer.from(body) : body;
      res.setHeader('Content-Length', b.length);
      ctx.bytesOut += ctx.req.method === 'HEAD' ? 0 : b.length;
      res.end(ctx.req.method === 'HEAD' ? undefined : b);
    } else {
      if (!res.hasHeader('Content-Length')) res.setHeader('Content-Length', 0);
      res.end();
    }
  }

  function sendJson(ctx: Ctx, status: number, value: unknown, headers: Record<string, string | number> = {}): void {
    send(ctx, status, { 'Content-Type': 'application/json', ...headers }, JSON.stringify(value));
  }

  // ---- handlers ----

  async function handleBlob(ctx: Ctx, name: string, ref: string): Promise<void> {
    const method = ctx.req.method;
    if (method === 'DELETE') {
      await authorize(ctx, repoAccess(name, 'delete'));
      checkWritable();
      await storage.deleteBlob(name, parseDigestParam(ref));
      return send(ctx, 202, {});
    }
    if (method !== 'GET' && method !== 'HEAD') throw new RegistryError('UNSUPPORTED', `${method} is not supported on blobs`);
    await authorize(ctx, repoAccess(name, 'pull'));
    const digest = parseDigestParam(ref);
    let info;
    try {
      info = await storage.statBlob(name, digest);
    } catch (e) {
      if (!(proxy && e instanceof RegistryError && e.code === 'BLOB_UNKNOWN')) throw e;
      info = await proxy.fetchBlob(name, digest);
    }
    const range = parseRange(ctx.req.headers.range, info.size);
    const headers: Record<string, string | number> = {
      'Content-Type': 'application/octet-stream',
      'Docker-Content-Digest': digest.value,
      ETag: `"${digest.value}"`,
      'Accept-Ranges': 'bytes',
      'Cache-Control': 'max-age=31536000',
    };
    if (ctx.req.headers['if-none-match'] === `"${digest.value}"`) return send(ctx, 304, headers);
    let status = 200;
    if (range) {
      status = 206;
      headers['Content-Range'] = `bytes ${range.start}-${range.end}/${info.size}`;
      headers['Content-Length'] = range.end - range.start + 1;
    } else {
      headers['Content-Length'] = info.size;
    }
    if (method === 'HEAD') {
      ctx.res.writeHead(status, headers);
      ctx.res.end();
      return;
    }
    const sendBody = await storage.blobSender(digest, range?.start, range?.end);
    ctx.res.writeHead(status, headers);
    ctx.bytesOut += Number(headers['Content-Length']);
    await sendBody(ctx.res);
  }

  function uploadHeaders(name: string, id: string, size: number): Record<string, string | number> {
    return {
      Location: `/v2/${name}/blobs/uploads/${id}`,
      Range: `0-${Math.max(0, size - 1)}`,
      'Docker-Upload-UUID': id,
    };
  }

  async function withUploadSlot<T>(ctx: Ctx, fn: () => Promise<T>): Promise<T> {
    if (activeUploads >= maxConcurrentUploads) {
      throw new RegistryError('TOOMANYREQUESTS', `more than ${maxConcurrentUploads} concurrent uploads`).withHeaders({ 'Retry-After': '1' });
    }
    activeUploads++;
    let held = true;
    const release = () => { if (held) { held = false; activeUploads--; } };
    ctx.releaseUploadSlot = release;
    try {
      return await fn();
    } finally {
      release();
    }
  }

  async function handleUpload(ctx: Ctx, name: string, id: string): Promise<void> {
    const method = ctx.req.method;
    const q = ctx.url.searchParams;
    const grant = await authorize(ctx, repoAccess(name, 'pull', 'push'));
    checkWritable();
    if (method === 'POST' && id === '') {
      const mount = q.get('mount');
      const from = q.get('from');
      if (mount) {
        const digest = parseDigestParam(mount);
        if (from) {
          validateName(from);
          // Mounting needs pull on the source; without it, a normal upload (distribution does the same).
          if (grant.can(from, 'pull') && await storage.mountBlob(name, from, digest)) {
            return send(ctx, 201, { Location: `/v2/${name}/blobs/${digest.value}`, 'Docker-Content-Digest': digest.value });
          }
        }
        // Not mountable: fall back to a regular upload session, as the spec says.
      }
      const single = q.get('digest');
      if (single) {
        const digest = parseDigestParam(single);
        const info = await withUploadSlot(ctx, async () => {
          const uid = await storage.startUpload(name);
          try {
            return await storage.commitUpload(name, uid, digest, ctx.req, undefined, maxUpload);
          } catch (e) {
            await storage.cancelUpload(name, uid).catch(() => {});
            throw e;
          }
        });
        ctx.bytesIn += info.size;
        return send(ctx, 201, { Location: `/v2/${name}/blobs/${info.digest}`, 'Docker-Content-Digest': info.digest });
      }
      const uid = await storage.startUpload(name);
      const headers = uploadHeaders(name, uid, 0);
      if (limits.chunkminlength) headers['OCI-Chunk-Min-Length'] = limits.chunkminlength;
      return send(ctx, 202, headers);
    }
    if (id === '') throw new RegistryError('UNSUPPORTED', `${method} needs an upload id`);
    if (method === 'GET') {
      const size = await storage.uploadOffset(name, id);
      return send(ctx, 204, uploadHeaders(name, id, size));
    }
    if (method === 'DELETE') {
      await storage.cancelUpload(name, id);
      return send(ctx, 204, {});
    }
    if (method === 'PATCH') {
      const range = parseContentRange(ctx.req.headers['content-range']);
      checkRangeLength(ctx.req, range);
      const { size, appended } = await withUploadSlot(ctx, () => storage.appendUpload(name, id, ctx.req, range, maxUpload));
      ctx.bytesIn += appended;
      return send(ctx, 202, uploadHeaders(name, id, size));
    }
    if (method === 'PUT') {
      const digest = parseDigestParam(q.get('digest'));
      const range = parseContentRange(ctx.req.headers['content-range']);
      if (hasBody(ctx.req)) checkRangeLength(ctx.req, range);
      const info = await withUploadSlot(ctx, () => storage.commitUpload(name, id, digest, hasBody(ctx.req) ? ctx.req : undefined, hasBody(ctx.req) ? range : undefined, maxUpload));
      ctx.bytesIn += info.appended;
      return send(ctx, 201, { Location: `/v2/${name}/blobs/${info.digest}`, 'Docker-Content-Digest': info.digest });
    }
    throw new RegistryError('UNSUPPORTED', `${method} is not supported on uploads`);
  }

  async function handleManifest(ctx: Ctx, name: string, ref: string): Promise<void> {
    const method = ctx.req.method;
    if (method === 'GET' || method === 'HEAD') {
      await authorize(ctx, repoAccess(name, 'pull'));
      let m;
      let upstreamDown: RegistryError | undefined;
      if (proxy && !ref.includes(':')) {
        // Tags follow the upstream; the local copy serves when the upstream is down.
        try {
          m = await proxy.fetchManifest(name, ref);
        } catch (e) {
          if (!(e instanceof RegistryError && e.code === 'UNAVAILABLE')) throw e;
          upstreamDown = e;
        }
      }
      try {
        m ??= await storage.getManifest(name, ref);
        if (upstreamDown) log?.warn({ repository: name, tag: ref }, 'upstream unavailable: serving the cached copy');
      } catch (e) {
        if (!(proxy && e instanceof RegistryError && (e.code === 'MANIFEST_UNKNOWN' || e.code === 'NAME_UNKNOWN'))) throw e;
        // Not cached: the client gets the upstream's own error, not a bare "not found".
        if (upstreamDown) throw upstreamDown;
        m = await proxy.fetchManifest(name, ref);
      }
      if (pulls && !ref.includes(':') && method === 'GET') pulls.record(name, ref);
      const etag = `"${m.digest}"`;
      const headers = { 'Content-Type': m.mediaType, 'Docker-Content-Digest': m.digest, ETag: etag };
      if (ctx.req.headers['if-none-match'] === etag) return send(ctx, 304, headers);
      return send(ctx, 200, headers, m.bytes);
    }
    if (method === 'PUT') {
      await authorize(ctx, repoAccess(name, 'pull', 'push'));
      checkWritable();
      const body = await readBody(ctx.req, MAX_MANIFEST_BYTES);
      ctx.bytesIn += body.length;
      const r = await storage.putManifest(name, ref, body, ctx.req.headers['content-type']);
      const headers: Record<string, string> = { Location: `/v2/${name}/manifests/${r.digest}`, 'Docker-Content-Digest': r.digest };
      if (r.subject) headers['OCI-Subject'] = r.subject;
      return send(ctx, 201, headers);
    }
    if (method === 'DELETE') {
      await authorize(ctx, repoAccess(name, 'delete'));
      checkWritable();
      await storage.deleteManifest(name, ref);
      return send(ctx, 202, {});
    }
    throw new RegistryError('UNSUPPORTED', `${method} is not supported on manifests`);
  }

  async function handleTags(ctx: Ctx, name: string): Promise<void> {
    if (ctx.req.method !== 'GET' && ctx.req.method !== 'HEAD') throw new RegistryError('UNSUPPORTED', `${ctx.req.method} is not supported on tags`);
    await authorize(ctx, repoAccess(name, 'pull'));
    const n = parsePageSize(ctx.url);
    let all: string[];
    try {
      all = await storage.tags(name);
    } catch (e) {
      if (!(proxy && e instanceof RegistryError && e.code === 'NAME_UNKNOWN')) throw e;
      all = await proxy.tags(name);
    }
    const { page, next } = paginate(all, n, ctx.url.searchParams.get('last'));
    const headers: Record<string, string> = {};
    if (next !== undefined) headers.Link = `</v2/${name}/tags/list?last=${encodeURIComponent(next)}&n=${n ?? MAX_PAGE}>; rel="next"`;
    return sendJson(ctx, 200, { name, tags: page }, headers);
  }

  async function handleCatalog(ctx: Ctx): Promise<void> {
    if (ctx.req.method !== 'GET' && ctx.req.method !== 'HEAD') throw new RegistryError('UNSUPPORTED', `${ctx.req.method} is not supported on _catalog`);
    const grant = await authorize(ctx, [{ type: 'registry', name: 'catalog', actions: ['*'] }]);
    const n = parsePageSize(ctx.url);
    const all = (await storage.repositories()).filter((r) => auth!.kind === 'none' || (grant.listable ? grant.listable(r) : grant.can(r, 'pull')));
    const { page, next } = paginate(all, n, ctx.url.searchParams.get('last'));
    const headers: Record<string, string> = {};
    if (next !== undefined) headers.Link = `</v2/_catalog?last=${encodeURIComponent(next)}&n=${n ?? MAX_PAGE}>; rel="next"`;
    return sendJson(ctx, 200, { repositories: page }, headers);
  }

  async function handleReferrers(ctx: Ctx, name: string, ref: string): Promise<void> {
    if (ctx.req.method !== 'GET') throw new RegistryError('UNSUPPORTED', `${ctx.req.method} is not supported on referrers`);
    await authorize(ctx, repoAccess(name, 'pull'));
    const subject = parseDigestParam(ref);
    let manifests = await storage.referrers(name, subject);
    const headers: Record<string, string> = {};
    const artifactType = ctx.url.searchParams.get('artifactType');
    if (artifactType) {
      manifests = manifests.filter((d) => d.artifactType === artifactType);
      headers['OCI-Filters-Applied'] = 'artifactType';
    }
    return send(ctx, 200, { 'Content-Type': MediaType.OciIndex, ...headers },
      JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OciIndex, manifests }));
  }

  async function route(ctx: Ctx): Promise<void> {
    const p = ctx.url.pathname;
    let m: RegExpExecArray | null;
    if (p === '/v2/' || p === '/v2') {
      ctx.route = 'base';
      if (ctx.req.method !== 'GET' && ctx.req.method !== 'HEAD') throw new RegistryError('UNSUPPORTED', `${ctx.req.method} is not supported on /v2/`);
      await authorize(ctx, []);
      return sendJson(ctx, 200, {});
    }
    if (p === '/v2/_catalog') {
      ctx.route = 'catalog';
      return handleCatalog(ctx);
    }
    if ((m = RE_MANIFEST.exec(p))) {
      ctx.route = 'manifest';
      const name = decode(m[1]!);
      validateName(name);
      return handleManifest(ctx, name, decode(m[2]!));
    }
    if ((m = RE_UPLOAD.exec(p))) {
      ctx.route = 'upload';
      const name = decode(m[1]!);
      validateName(name);
      return handleUpload(ctx, name, decode(m[2]!));
    }
    if ((m = RE_BLOB.exec(p))) {
      ctx.route = 'blob';
      const name = decode(m[1]!);
      validateName(name);
      return handleBlob(ctx, name, decode(m[2]!));
    }
    if ((m = RE_TAGS.exec(p))) {
      ctx.route = 'tags';
      const name = decode(m[1]!);
      validateName(name);
      return handleTags(ctx, name);
    }
    if ((m = RE_REFERRERS.exec(p))) {
      ctx.route = 'referrers';
      const name = decode(m[1]!);
      validateName(name);
      return handleReferrers(ctx, name, decode(m[2]!));
    }
    // After every /v2/ route, so the UI costs the registry API nothing.
    if (ui && (p === '/ui' || p.startsWith('/ui/'))) {
      ctx.route = 'ui';
      return ui.handle(ctx);
    }
    if (p === '/token' && auth?.tokenEndpoint) {
      ctx.route = 'token';
      let params = ctx.url.searchParams;
      let form = false;
      if (ctx.req.method === 'POST') {
        // OAuth2 password grant (docker login tries this first): form-encoded body.
        params = new URLSearchParams((await readBody(ctx.req, 64 * 1024)).toString('utf8'));
        form = true;
      } else if (ctx.req.method !== 'GET') {
        throw new RegistryError('UNSUPPORTED', `${ctx.req.method} is not supported on /token`);
      }
      const r = await auth.tokenEndpoint(ctx.req, params, form);
      return sendJson(ctx, r.status, r.body, r.headers ?? {});
    }
    if (p === '/healthz' || p === '/debug/health') {
      ctx.route = 'health';
      return sendJson(ctx, closing ? 503 : 200, closing ? { status: 'draining' } : { status: 'ok' });
    }
    if (p === '/metrics' && metrics) {
      ctx.route = 'metrics';
      return send(ctx, 200, { 'Content-Type': metrics.registry.contentType }, await metrics.registry.metrics());
    }
    if (p.startsWith('/v2/')) {
      ctx.route = 'unknown';
      throw new RegistryError('NAME_INVALID', 'unrecognized registry path', undefined, 404);
    }
    ctx.route = 'unknown';
    return sendJson(ctx, 404, { errors: [{ code: 'NOT_FOUND', message: 'not found' }] });
  }

  function sendError(ctx: Ctx, e: unknown): void {
    const { res, req } = ctx;
    if (res.headersSent) {
      res.destroy();
      return;
    }
    let err: RegistryError;
    if (e instanceof RegistryError) err = e;
    else if ((e as NodeJS.ErrnoException)?.code === 'ECONNRESET' || (e as Error)?.message === 'aborted') {
      res.destroy();
      return;
    } else {
      log?.error({ err: e, method: req.method, path: ctx.url.pathname }, 'internal error');
      err = new RegistryError('UNKNOWN', (e as Error)?.message ?? String(e));
    }
    // An unread request body would be parsed as the next request on a keep-alive connection.
    if (!req.readableEnded && hasBody(req)) res.setHeader('Connection', 'close');
    sendJson(ctx, err.status, JSON.parse(err.body()), err.headers ?? {});
  }

  /**
   * Slow-body cut-off (Apache mod_reqtimeout's body=…,MinRate=…): a request body gets
   * http.timeout.body, plus one second per minbodyrate bytes received, to arrive. A PATCH that
   * dribbles a byte every few seconds would otherwise hold its upload slot forever.
   */
  function watchBody(ctx: Ctx): NodeJS.Timeout {
    const { req, res } = ctx;
    const sock = req.socket;
    const t0 = Date.now();
    const bytes0 = sock.bytesRead;
    const timer = setInterval(() => {
      if (req.complete || sock.destroyed) { clearInterval(timer); return; }
      const received = sock.bytesRead - bytes0;
      if (Date.now() - t0 <= bodyTimeoutMs + (received / minBodyRate) * 1000) return;
      clearInterval(timer);
      // The client is told 408 now and may retry at once: its slot must already be free, not only
      // once the handler has unwound the upload it was writing.
      ctx.releaseUploadSlot?.();
      log?.warn({ remote: sock.remoteAddress, method: req.method, path: ctx.url.pathname, received, seconds: Math.round((Date.now() - t0) / 1000) }, 'request body too slow: connection closed');
      if (!res.headersSent) {
        const err = new RegistryError('BLOB_UPLOAD_INVALID', `request body too slow: ${received} bytes in ${Math.round((Date.now() - t0) / 1000)}s (http.timeout.body, http.timeout.minbodyrate)`, undefined, 408);
        res.writeHead(408, { 'Content-Type': 'application/json', Connection: 'close' });
        res.end(err.body(), () => sock.destroy());
        setTimeout(() => sock.destroy(), 1000).unref();
      } else {
        sock.destroy();
      }
      // Once the response has ended, node no longer aborts the request when its socket closes:
      // end the body here, so the handler reading it fails and gives back its upload slot.
      req.destroy(new RegistryError('BLOB_UPLOAD_INVALID', 'request body too slow', undefined, 408));
    }, Math.min(1000, Math.max(100, bodyTimeoutMs / 4)));
    timer.unref();
    return timer;
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = process.hrtime.bigint();
    const startedAt = new Date();
    connections.requestStarted(req, res);
    const ctx: Ctx = { req, res, url: new URL(req.url ?? '/', 'http://registry'), route: 'unknown', bytesIn: 0, bytesOut: 0 };
    res.setHeader('Docker-Distribution-API-Version', API_VERSION);
    for (const [k, v] of extraHeaders) res.setHeader(k, v);
    const watchdog = hasBody(req) ? watchBody(ctx) : undefined;
    try {
      if (!auth) throw new RegistryError('UNAVAILABLE', 'registry is starting');
      await route(ctx);
    } catch (e) {
      sendError(ctx, e);
    } finally {
      if (watchdog) clearInterval(watchdog);
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      if (metrics) {
        metrics.requests.inc({ method: req.method ?? '', route: ctx.route, status: String(res.statusCode) });
        metrics.duration.observe({ method: req.method ?? '', route: ctx.route }, seconds);
        if (ctx.bytesIn) metrics.bytesIn.inc(ctx.bytesIn);
        if (ctx.bytesOut) metrics.bytesOut.inc(ctx.bytesOut);
      }
      if (accessFormat === 'json') {
        log?.info({
          method: req.method, path: ctx.url.pathname, route: ctx.route, status: res.statusCode,
          duration_ms: Math.round(seconds * 1e6) / 1e3, bytes_in: ctx.bytesIn, bytes_out: ctx.bytesOut,
          remote: req.socket.remoteAddress, user: ctx.user, user_agent: req.headers['user-agent'],
        }, 'request');
      } else if (writeCombined) {
        writeCombined(combinedLine({
          remote: req.socket.remoteAddress, user: ctx.user, time: startedAt, method: req.method, url: req.url,
          httpVersion: req.httpVersion, status: res.statusCode, bytes: ctx.bytesOut,
          referer: req.headers.referer, userAgent: req.headers['user-agent'],
        }));
      }
    }
  }

  // Pull times for retention's pulledWithin / mostRecentlyPulledCount, batched off the request path.
  const retention = config.storage.maintenance?.retention;
  const pulls = retention?.policies?.length ? new PullRecorder(driver, parseDuration(retention.pullFlushInterval, 10_000)) : undefined;

  async function purgeUploads(): Promise<void> {
    const p = config.storage.maintenance?.uploadpurging;
    if (p?.enabled === false) return;
    const age = parseDuration(p?.age, 168 * 3_600_000);
    try {
      const purged = await storage.purgeUploads(new Date(Date.now() - age), p?.dryrun ?? false);
      if (purged.length > 0) log?.info({ purged: purged.length, dryrun: p?.dryrun ?? false }, 'purged stale uploads');
    } catch (e) {
      log?.warn({ err: e }, 'upload purge failed');
    }
  }

  return {
    config,
    storage,
    get server() { return server; },
    policy() { return auth?.policy(); },
    async identify(req) {
      if (!auth) throw new RegistryError('UNAVAILABLE', 'registry is starting');
      return auth.identify(req, baseUrl(req));
    },
    async reload(next) {
      if (!auth) throw new Error('reload before listen');
      const kind = next.auth?.token ? 'token' : next.auth?.htpasswd ? 'htpasswd' : 'none';
      try {
        if (kind !== auth.kind) throw new Error(`the auth method changed (${auth.kind} to ${kind}): that needs a restart`);
        await auth.reload(authOptions(next));
        log?.info({ auth: auth.kind, accessControl: next.accessControl ? 'accessControl' : next.auth?.access?.length ? 'auth.access' : 'none' }, 'access control reloaded');
      } catch (e) {
        log?.error({ err: e }, 'reload failed: keeping the previous access control and htpasswd file');
        throw e;
      }
    },
    async listen() {
      auth = await createAuth(authOptions(config));
      const { host, port } = splitAddr(config.http.addr);
      const tls = config.http.tls;
      // A missing bucket or refused credentials should stop the start, not fail every request.
      for (const warning of (await driver.checkReady?.()) ?? []) {
        if (log) log.warn(warning);
        else process.stderr.write(`warning: ${warning}\n`);
      }
      const onRequest = (req: IncomingMessage, res: ServerResponse) => { void handle(req, res); };
      if (tls?.certificate && tls.key) {
        const [cert, key] = await Promise.all([fsp.readFile(tls.certificate), fsp.readFile(tls.key)]);
        server = createHttpsServer({ cert, key }, onRequest);
      } else {
        server = createHttpServer(onRequest);
      }
      server.keepAliveTimeout = Math.min(65_000, idleTimeoutMs);
      server.headersTimeout = headerTimeoutMs;
      // Uploads of large layers may legitimately take long: a body is bounded by its rate
      // (watchBody), a connection by its silence (server.timeout destroys idle sockets).
      server.requestTimeout = 0;
      server.timeout = idleTimeoutMs;
      server.on('connection', (s: Socket) => connections.accepted(s));
      await new Promise<void>((resolve, reject) => {
        server!.once('error', reject);
        server!.listen(port, host, () => { server!.off('error', reject); resolve(); });
      });
      const addr = server.address() as AddressInfo;
      const proto = tls?.certificate ? 'https' : 'http';
      const shownHost = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
      void purgeUploads();
      const interval = parseDuration(config.storage.maintenance?.uploadpurging?.interval, 24 * 3_600_000);
      purgeTimer = setInterval(() => { void purgeUploads(); }, interval);
      purgeTimer.unref();
      pulls?.start();
      log?.info({ addr: `${shownHost}:${addr.port}`, storage: opts.driver ? opts.driver.name : storageLocation(config), auth: auth.kind, tls: !!tls?.certificate }, 'listening');
      return { url: `${proto}://${shownHost}:${addr.port}`, host: addr.address, port: addr.port };
    },
    async close() {
      if (!server) return;
      closing = true;
      if (purgeTimer) clearInterval(purgeTimer);
      // In-flight requests finish and fresh connections get their grace, within draintimeout;
      // what is still running then is cut (an interrupted upload stays resumable on disk).
      await connections.shutdown(server, parseDuration(config.http.draintimeout, 30_000));
      await pulls?.stop().catch((e) => log?.warn({ err: e }, 'writing pull times failed'));
      if (log && opts.logger === undefined) log.flush();
      accessOut?.flush();
      server = undefined;
    },
  };
}
