// Pull-through cache mode (distribution's proxy.remoteurl): misses are fetched from the upstream
// registry, verified, stored locally, then served; tags are re-checked upstream on every pull so
// they follow the remote, and fall back to the local copy when the remote is unreachable.
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';

// undici costs ~20 MiB of RSS when loaded; only a pull-through cache needs it, so it loads on first use.
let undici: Promise<typeof import('undici')> | undefined;
async function request(...args: Parameters<typeof import('undici').request>): Promise<Dispatcher.ResponseData> {
  undici ??= import('undici');
  return (await undici).request(...args) as Promise<Dispatcher.ResponseData>;
}
import type { Digest } from '../image/digest.js';
import { MANIFEST_MEDIA_TYPES } from '../image/media-types.js';
import { RegistryError } from './errors.js';
import type { BlobInfo, RegistryStorage, StoredManifest } from './storage.js';

interface Challenge { scheme: string; params: Record<string, string> }

function parseChallenge(h: string | string[] | undefined): Challenge | undefined {
  const v = Array.isArray(h) ? h[0] : h;
  if (!v) return undefined;
  const sp = v.indexOf(' ');
  const scheme = (sp < 0 ? v : v.slice(0, sp)).toLowerCase();
  const params: Record<string, string> = {};
  for (const m of v.slice(sp + 1).matchAll(/(\w+)="([^"]*)"/g)) params[m[1]!.toLowerCase()] = m[2]!;
  return { scheme, params };
}

export class ProxyUpstream {
  private readonly remote: string;
  private readonly tokens = new Map<string, { token: string; expires: number }>();
  private readonly inflight = new Map<string, Promise<BlobInfo>>();

  constructor(
    private readonly cfg: { remoteurl: string; username?: string; password?: string },
    private readonly storage: RegistryStorage,
    /** Told about every upstream failure (the server logs it as a warning). */
    private readonly warn: (message: string) => void = () => {},
  ) {
    this.remote = cfg.remoteurl.replace(/\/+$/, '');
  }

  /**
   * An upstream error answer as the mirror's own 502, carrying what the upstream said (its spec
   * error codes and messages, or the start of a non-JSON body), so the client sees the cause.
   */
  private async upstreamError(r: Dispatcher.ResponseData, what: string): Promise<RegistryError> {
    let said = '';
    try {
      const chunks: Buffer[] = [];
      let n = 0;
      for await (const c of r.body as AsyncIterable<Buffer>) {
        if (n < 64 * 1024) chunks.push(c);
        n += c.length;
      }
      const text = Buffer.concat(chunks).toString('utf8');
      try {
        const doc = JSON.parse(text) as { errors?: { code?: string; message?: string }[] };
        said = (doc.errors ?? []).map((e) => [e.code, e.message].filter(Boolean).join(': ')).filter(Boolean).join('; ');
      } catch {
        said = text.replace(/\s+/g, ' ').trim().slice(0, 200);
      }
    } catch { /* the body broke off: the status is all there is */ }
    const message = `upstream ${this.remote} answered ${r.statusCode} for ${what}${said ? `: ${said}` : ''}`;
    this.warn(message);
    return new RegistryError('UNAVAILABLE', message, undefined, 502);
  }

  private basic(): string | undefined {
    if (!this.cfg.username) return undefined;
    return `Basic ${Buffer.from(`${this.cfg.username}:${this.cfg.password ?? ''}`).toString('base64')}`;
  }

  private async token(ch: Challenge, scope: string): Promise<string> {
    const key = `${ch.params.realm}|${scope}`;
    const hit = this.tokens.get(key);
    if (hit && hit.expires > Date.now()) return hit.token;
    const url = new URL(ch.params.realm!);
    if (ch.params.service) url.searchParams.set('service', ch.params.service);
    url.searchParams.set('scope', scope);
    const headers: Record<string, string> = {};
    const b = this.basic();
    if (b) headers.authorization = b;
    const r = await request(url, { headers });
    if (r.statusCode !== 200) throw await this.upstreamError(r, `a token (${scope})`);
    const body = (await r.body.json()) as { token?: string; access_token?: string; expires_in?: number };
    const token = body.token ?? body.access_token ?? '';
    this.tokens.set(key, { token, expires: Date.now() + Math.max(30, (body.expires_in ?? 60) - 10) * 1000 });
    return token;
  }

  /** GET with the upstream's auth dance (Basic or Bearer, as it challenges). */
  private async get(name: string, path: string, accept?: string): Promise<Dispatcher.ResponseData> {
    const url = `${this.remote}/v2/${name}/${path}`;
    const headers: Record<string, string> = {};
    if (accept) headers.accept = accept;
    let r: Dispatcher.ResponseData;
    try {
      r = await request(url, { headers, maxRedirections: 0 } as never);
      if (r.statusCode === 401) {
        const ch = parseChallenge(r.headers['www-authenticate']);
        await r.body.dump();
        if (ch?.scheme === 'bearer' && ch.params.realm) headers.authorization = `Bearer ${await this.token(ch, `repository:${name}:pull`)}`;
        else if (ch?.scheme === 'basic' && this.basic()) headers.authorization = this.basic()!;
        r = await request(url, { headers });
      }
      // Follow blob redirects (object storage behind the upstream) by hand: no credentials to other hosts.
      for (let i = 0; i < 5 && r.statusCode >= 300 && r.statusCode < 400 && r.headers.location; i++) {
        await r.body.dump();
        r = await request(new URL(String(r.headers.location), url), { headers: accept ? { accept } : {} });
      }
    } catch (e) {
      if (e instanceof RegistryError) throw e;
      const message = `upstream ${this.remote} unreachable: ${(e as Error).message}`;
      this.warn(message);
      throw new RegistryError('UNAVAILABLE', message, undefined, 502);
    }
    return r;
  }

  async fetchManifest(name: string, reference: string): Promise<StoredManifest> {
    const r = await this.get(name, `manifests/${reference}`, MANIFEST_MEDIA_TYPES.join(', '));
    if (r.statusCode === 404) {
      await r.body.dump();
      throw new RegistryError('MANIFEST_UNKNOWN', `manifest unknown upstream: ${reference}`, { reference });
    }
    if (r.statusCode !== 200) throw await this.upstreamError(r, `${name}:${reference}`);
    const bytes = Buffer.from(await r.body.arrayBuffer());
    const contentType = String(r.headers['content-type'] ?? '');
    const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
    if (reference.includes(':') && reference !== digest) {
      throw new RegistryError('DIGEST_INVALID', `upstream manifest digest ${digest} does not match ${reference}`, undefined, 502);
    }
    await this.storage.putManifest(name, reference.includes(':') ? digest : reference, bytes, contentType, { skipReferenceCheck: true });
    return this.storage.getManifest(name, digest);
  }

  /** Downloads into an upload session (verified like any push), then links the blob. Concurrent misses share one download. */
  async fetchBlob(name: string, digest: Digest): Promise<BlobInfo> {
    const key = `${name}@${digest.value}`;
    let p = this.inflight.get(key);
    if (!p) {
      p = (async () => {
        const r = await this.get(name, `blobs/${digest.value}`);
        if (r.statusCode === 404) {
          await r.body.dump();
          throw new RegistryError('BLOB_UNKNOWN', undefined, { digest: digest.value });
        }
        if (r.statusCode !== 200) throw await this.upstreamError(r, `blob ${digest.value}`);
        const id = await this.storage.startUpload(name);
        try {
          return await this.storage.commitUpload(name, id, digest, Readable.from(r.body));
        } catch (e) {
          await this.storage.cancelUpload(name, id).catch(() => {});
          throw e;
        }
      })().finally(() => this.inflight.delete(key));
      this.inflight.set(key, p);
    }
    return p;
  }

  async tags(name: string): Promise<string[]> {
    const r = await this.get(name, 'tags/list');
    if (r.statusCode === 404) {
      await r.body.dump();
      throw new RegistryError('NAME_UNKNOWN', undefined, { name });
    }
    if (r.statusCode !== 200) throw await this.upstreamError(r, `tags of ${name}`);
    const body = (await r.body.json()) as { tags?: string[] };
    return (body.tags ?? []).sort();
  }
}
