// A repository in a registry as an ImageSource (pull side: mirrors first, then upstream) and an
// ImageDestination (push side: HEAD to skip, cross-repository mount, monolithic streamed PUT).
import { Readable, finished } from 'node:stream';
import { digestOf, parseDigest } from '../image/digest.js';
import { MANIFEST_MEDIA_TYPES, MediaType } from '../image/media-types.js';
import { formatReference, type Reference } from '../image/reference.js';
import type { BlobOrigin, ImageDestination, ImageSource, RawManifest } from '../image/source.js';
import { MAX_MANIFEST_BYTES } from '../image/partial.js';
import type { Descriptor } from '../image/types.js';
import { UserError, NotFoundError } from '../util/errors.js';
import { STREAM_CHUNK } from '../util/fs.js';
import type { RegistryContext } from './context.js';
import { repositoryOn, type Endpoint, type RegistryHostConfig } from './registries-config.js';
import {
  RegistryHttpError, isTransientNetworkError, backoffMs, sleep, describeNetworkError, readBodyLimited, type RegistryTransport,
} from './transport.js';
import type { HttpResponse } from './http.js';


const ACCEPT = [...MANIFEST_MEDIA_TYPES, MediaType.DockerSchema1Signed].join(', ');

export class ManifestTooLargeError extends UserError {
  override name = 'ManifestTooLargeError';
}

/** Reads a manifest response: size-capped, media type from the document or the header. */
async function readManifest(res: HttpResponse, what: string): Promise<RawManifest> {
  const declared = Number(res.headers['content-length']);
  if (Number.isFinite(declared) && declared > MAX_MANIFEST_BYTES) {
    res.body.destroy();
    throw new ManifestTooLargeError(`${what}: manifest is ${declared} bytes, over the ${MAX_MANIFEST_BYTES} byte limit`);
  }
  let bytes: Buffer;
  try {
    bytes = await readBodyLimited(res.body, MAX_MANIFEST_BYTES, `${what}: manifest`);
  } catch (e) {
    if (e instanceof UserError) throw new ManifestTooLargeError(`${what}: manifest is over the ${MAX_MANIFEST_BYTES} byte limit`);
    throw e;
  }
  let doc: { mediaType?: unknown; manifests?: unknown; schemaVersion?: unknown };
  try { doc = JSON.parse(bytes.toString('utf8')); } catch { throw new UserError(`${what}: manifest is not valid JSON`); }
  const header = String(res.headers['content-type'] ?? '').split(';')[0]!.trim();
  const mediaType = typeof doc?.mediaType === 'string' && doc.mediaType ? doc.mediaType
    : MANIFEST_MEDIA_TYPES.includes(header) ? header
      : Array.isArray(doc?.manifests) ? MediaType.OciIndex : MediaType.OciManifest;
  if (mediaType === MediaType.DockerSchema1Signed || doc?.schemaVersion === 1) {
    throw new UserError(`${what}: Docker schema 1 manifests are not supported (deprecated since 2017); re-push the image with a current client`);
  }
  return { bytes, mediaType, digest: digestOf(bytes) };
}

function scopePull(repo: string): string { return `repository:${repo}:pull`; }
function scopePush(repo: string): string { return `repository:${repo}:pull,push`; }

export class RemoteImageSource implements ImageSource {
  readonly description: string;
  private readonly hostConfig: RegistryHostConfig;
  /** Index of the endpoint that served the manifest; blobs are tried from there on. */
  private active = 0;

  constructor(private readonly ctx: RegistryContext, readonly ref: Reference) {
    this.description = `docker://${formatReference(ref)}`;
    this.hostConfig = ctx.config.forRepository(ref.registry, ref.repository);
    if (this.hostConfig.blocked) throw new UserError(`registry ${ref.registry} is blocked by the registries configuration`);
  }

  get registry(): string { return this.ref.registry; }
  get repository(): string { return this.ref.repository; }
  get blobOrigin(): BlobOrigin { return { registry: this.ref.registry, repository: this.ref.repository }; }

  private async onEndpoints<T>(from: number, what: string, fn: (t: RegistryTransport, repo: string, ep: Endpoint) => Promise<T>): Promise<T> {
    const eps = this.hostConfig.pullEndpoints;
    let lastError: unknown;
    for (let i = from; i < eps.length; i++) {
      const ep = eps[i]!;
      try {
        const t = await this.ctx.transport(ep, this.ref.registry);
        const result = await fn(t, repositoryOn(ep, this.ref.repository), ep);
        this.active = i;
        return result;
      } catch (e) {
        lastError = e;
        if (!ep.mirror) break;
        // Any mirror failure (unreachable, 404, auth, bad data) falls back to the next endpoint.
        this.ctx.warn(`mirror ${ep.host} failed for ${what} (${(e as Error).message}); falling back to ${eps[i + 1]?.mirror ? eps[i + 1]!.host : this.ref.registry}`);
      }
    }
    throw lastError;
  }

  private async fetchManifest(reference: string): Promise<RawManifest> {
    const what = `${this.ref.registry}/${this.ref.repository}:${reference}`;
    const m = await this.onEndpoints(0, `manifest ${reference}`, async (t, repo) => {
      const res = await t.send({
        method: 'GET', path: `/v2/${repo}/manifests/${reference}`, headers: { accept: ACCEPT },
        scopes: [scopePull(repo)], what: `GET manifest ${t.host}/${repo}:${reference}`, allow: [404],
      });
      if (res.statusCode === 404) {
        await res.body.dump().catch(() => {});
        throw new NotFoundError(`manifest for ${what.replace(/:sha256:/, '@sha256:')} not found: manifest unknown`);
      }
      const raw = await readManifest(res, what);
      if (reference.includes(':') && raw.digest !== reference) {
        throw new UserError(`${what}: manifest content hashes to ${raw.digest}, not the requested digest`);
      }
      return raw;
    });
    return m;
  }

  async getManifest(): Promise<RawManifest> {
    return this.fetchManifest(this.ref.digest ?? this.ref.tag ?? 'latest');
  }

  async getManifestByDigest(digest: string): Promise<RawManifest> {
    return this.fetchManifest(parseDigest(digest).value);
  }

  /**
   * Streams a blob. Foreign layers (descriptor `urls`) are fetched from their URL without
   * credentials. A connection that breaks mid-blob is resumed with a Range request (or re-read
   * and skipped when the server ignores Range), up to the retry limit.
   */
  async openBlob(desc: Descriptor): Promise<Readable> {
    const digest = parseDigest(desc.digest).value;
    for (const url of desc.urls ?? []) {
      try {
        const t = await this.ctx.transport(this.hostConfig.pullEndpoints[this.active]!, this.ref.registry);
        const res = await t.fetchForeign(url);
        return Readable.from(res.body, { objectMode: false, highWaterMark: STREAM_CHUNK });
      } catch (e) {
        this.ctx.warn(`foreign layer URL ${url} failed (${(e as Error).message}); trying the registry`);
      }
    }
    // The first response decides the endpoint; resumes go to the same endpoint.
    const first = await this.onEndpoints(this.active, `blob ${digest}`, async (t, repo) => ({ t, repo, res: await this.getBlob(t, repo, digest, 0) }));
    return new BlobDownload(desc, first.res, {
      where: `${first.t.host}/${first.repo}`,
      retries: this.ctx.retries,
      warn: (m) => this.ctx.warn(m),
      reopen: (offset) => this.getBlob(first.t, first.repo, digest, offset),
    });
  }

  private async getBlob(t: RegistryTransport, repo: string, digest: string, offset: number): Promise<HttpResponse> {
    const res = await t.send({
      method: 'GET', path: `/v2/${repo}/blobs/${digest}`, headers: offset > 0 ? { range: `bytes=${offset}-` } : {},
      scopes: [scopePull(repo)], followRedirects: true, what: `GET blob ${t.host}/${repo}@${digest}`, allow: [404],
    });
    if (res.statusCode === 404) {
      await res.body.dump().catch(() => {});
      throw new NotFoundError(`blob ${digest} not found in ${t.host}/${repo}: blob unknown`);
    }
    return res;
  }

  async close(): Promise<void> { /* transports belong to the context */ }
}

interface BlobDownloadOptions {
  /** "host/repository", for messages. */
  where: string;
  retries: number;
  warn(message: string): void;
  /** GET the blob again from byte `offset` on (a Range request when offset > 0). */
  reopen(offset: number): Promise<HttpResponse>;
}

/**
 * One blob download as a Readable. The response's chunks are pushed straight through (one stream
 * hop; an async generator behind Readable.from cost two promises per socket read), with the
 * response paused while the reader is behind. A connection that breaks mid-blob is resumed with
 * a Range request (or re-read and skipped when the server ignores Range), up to the retry limit.
 */
class BlobDownload extends Readable {
  private res?: HttpResponse;
  private received = 0;
  private failures = 0;
  /** Bytes of the current response to drop (a server that answered a Range request with 200). */
  private skip = 0;

  constructor(private readonly desc: Descriptor, first: HttpResponse, private readonly o: BlobDownloadOptions) {
    super({ highWaterMark: STREAM_CHUNK });
    this.attach(first);
  }

  override _read(): void {
    this.res?.body.resume();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    // Closed early by the consumer (verification failed, pipeline aborted): drop the connection.
    const body = this.res?.body;
    this.res = undefined;
    if (body && !body.readableEnded) body.destroy();
    cb(err);
  }

  private attach(res: HttpResponse): void {
    this.res = res;
    const body = res.body;
    body.on('data', (chunk: Buffer) => {
      if (this.res !== res) return;
      let c = chunk;
      if (this.skip > 0) {
        if (c.length <= this.skip) { this.skip -= c.length; return; }
        c = c.subarray(this.skip);
        this.skip = 0;
      }
      this.received += c.length;
      if (!this.push(c)) body.pause();
    });
    finished(body, (err) => {
      if (this.res !== res || this.destroyed) return;
      // All bytes in (an error after the last one changes nothing: the store checks the digest).
      if (this.received >= this.desc.size) { this.push(null); return; }
      const e = err ?? Object.assign(new Error(`connection closed after ${this.received} of ${this.desc.size} bytes`), { code: 'ERR_STREAM_PREMATURE_CLOSE' });
      void this.reconnect(e);
    });
  }

  /** After a failure: another GET from where the data stopped, or the error when out of tries. */
  private async reconnect(e: unknown): Promise<void> {
    for (;;) {
      this.res?.body.destroy();
      this.res = undefined;
      if (!isTransientNetworkError(e) || this.failures >= this.o.retries) {
        this.destroy(e instanceof UserError ? e
          : new UserError(`downloading ${this.desc.digest} from ${this.o.where} failed after ${this.received} of ${this.desc.size} bytes: ${describeNetworkError(e)}`));
        return;
      }
      this.o.warn(`download of ${this.desc.digest.slice(7, 19)} interrupted after ${this.received} bytes (${describeNetworkError(e)}); resuming`);
      await sleep(backoffMs(this.failures++));
      if (this.destroyed) return;
      let res: HttpResponse | undefined;
      try {
        res = await this.o.reopen(this.received);
        const range = /^bytes (\d+)-/.exec(String(res.headers['content-range'] ?? ''));
        if (res.statusCode === 206 && range && Number(range[1]) === this.received) this.skip = 0;
        else if (res.statusCode === 200) this.skip = this.received; // server ignored Range: re-read and drop
        else throw new RegistryHttpError(`GET blob ${this.desc.digest}: unexpected resume response ${res.statusCode}`, res.statusCode);
      } catch (err) {
        res?.body.destroy();
        e = err;
        continue;
      }
      if (this.destroyed) { res.body.destroy(); return; }
      this.attach(res);
      return;
    }
  }
}

export class RemoteImageDestination implements ImageDestination {
  readonly description: string;
  private readonly endpoint: Endpoint;

  constructor(private readonly ctx: RegistryContext, readonly ref: Reference) {
    this.description = `docker://${formatReference(ref)}`;
    const hc = ctx.config.forRepository(ref.registry, ref.repository);
    if (hc.blocked) throw new UserError(`registry ${ref.registry} is blocked by the registries configuration`);
    this.endpoint = hc.pushEndpoint;
  }

  get registry(): string { return this.ref.registry; }
  get repository(): string { return this.ref.repository; }

  private transport(): Promise<RegistryTransport> {
    return this.ctx.transport(this.endpoint, this.ref.registry);
  }

  async hasBlob(desc: Descriptor): Promise<boolean> {
    const t = await this.transport();
    const repo = this.ref.repository;
    const res = await t.send({
      method: 'HEAD', path: `/v2/${repo}/blobs/${parseDigest(desc.digest).value}`, scopes: [scopePush(repo)],
      what: `HEAD blob ${t.host}/${repo}@${desc.digest}`, allow: [404], followRedirects: true,
    });
    await res.body.dump().catch(() => {});
    return res.statusCode === 200;
  }

  /** Registries take several uploads at once; five keeps a push busy without tripping limits. */
  readonly concurrency = 5;

  /** Cross-repository mount (same registry): true when the registry linked the blob without a copy. */
  async mountBlob(desc: Descriptor, from: BlobOrigin): Promise<boolean> {
    if (from.registry !== this.ref.registry || from.repository === this.ref.repository) return false;
    const fromRepository = from.repository;
    const t = await this.transport();
    const repo = this.ref.repository;
    const q = new URLSearchParams({ mount: parseDigest(desc.digest).value, from: fromRepository });
    const res = await t.send({
      method: 'POST', path: `/v2/${repo}/blobs/uploads/?${q}`, headers: { 'content-length': '0' },
      scopes: [scopePush(repo), scopePull(fromRepository)], what: `mount ${desc.digest} from ${fromRepository}`,
    });
    await res.body.dump().catch(() => {});
    if (res.statusCode === 201) return true;
    // 202: the registry opened an ordinary upload instead; cancel it, putBlob starts its own.
    const loc = res.headers.location;
    if (typeof loc === 'string') {
      await t.send({ method: 'DELETE', path: t.url(loc).href, scopes: [scopePush(repo)], what: 'cancel upload', allow: [404, 405] })
        .then((r) => r.body.dump()).catch(() => {});
    }
    return false;
  }

  async putBlob(desc: Descriptor, content: Readable): Promise<void> {
    const t = await this.transport();
    const repo = this.ref.repository;
    const digest = parseDigest(desc.digest).value;
    const start = await t.send({
      method: 'POST', path: `/v2/${repo}/blobs/uploads/`, headers: { 'content-length': '0' },
      scopes: [scopePush(repo)], what: `start upload to ${t.host}/${repo}`,
    });
    await start.body.dump().catch(() => {});
    const loc = start.headers.location;
    if (typeof loc !== 'string' || !loc) {
      content.destroy();
      throw new RegistryHttpError(`start upload to ${t.host}/${repo}: no Location header`, start.statusCode);
    }
    const url = t.url(loc);
    url.searchParams.set('digest', digest);
    // One streamed PUT (monolithic upload): no buffering, Content-Length known from the descriptor.
    const res = await t.send({
      method: 'PUT', path: url.href, body: content,
      headers: { 'content-type': 'application/octet-stream', 'content-length': String(desc.size) },
      scopes: [scopePush(repo)], what: `upload ${digest} to ${t.host}/${repo}`,
    });
    await res.body.dump().catch(() => {});
  }

  async putManifest(manifest: RawManifest, tag?: string): Promise<void> {
    const t = await this.transport();
    const repo = this.ref.repository;
    const reference = tag ?? manifest.digest;
    const res = await t.send({
      method: 'PUT', path: `/v2/${repo}/manifests/${reference}`, body: manifest.bytes,
      headers: { 'content-type': manifest.mediaType }, scopes: [scopePush(repo)],
      what: `PUT manifest ${t.host}/${repo}:${reference}`,
    });
    await res.body.dump().catch(() => {});
    const echoed = res.headers['docker-content-digest'];
    if (typeof echoed === 'string' && echoed && echoed !== manifest.digest) {
      throw new UserError(`registry stored manifest ${t.host}/${repo}:${reference} as ${echoed}, expected ${manifest.digest}`);
    }
  }

  /** Tags a manifest that is already in the repository (used by --all for the top-level index). */
  get targetTag(): string | undefined {
    return this.ref.tag;
  }
}
