// The web UI's JSON endpoints under /ui/api/: what the distribution API does not answer in one
// request (repositories with tag counts, tags with their digests, a manifest with its image
// config, who the caller is and whether they may delete). Each one authorizes exactly like the
// /v2/ route it summarizes, through the same authorize(), so the UI can never show what the
// caller may not pull. Referrers and tag deletion need nothing extra: the page calls /v2/.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Access, Grant, Policy } from '../auth/index.js';
import { RegistryError } from '../errors.js';
import { parseDigestParam, validateName, type RegistryStorage } from '../storage.js';

/** The part of the server's request context the UI handlers use. */
export interface UiContext {
  req: IncomingMessage;
  res: ServerResponse;
  url: URL;
}

export interface UiApiDeps {
  storage: RegistryStorage;
  /** The server's authorize(): throws 401/403 as RegistryErrors, records the user for the access log. */
  authorize(ctx: UiContext, access: Access[]): Promise<Grant>;
  authKind(): 'none' | 'htpasswd' | 'token';
  /** The access policy in force (reloaded on SIGHUP); undefined without auth or with an external token issuer alone. */
  policy(): Policy | undefined;
  /** Deletes are enabled and the registry takes writes (not read-only, not a pull-through cache). */
  deletable: boolean;
}

const RE_TAGS = /^\/ui\/api\/repositories\/(.+)\/tags$/;
const RE_MANIFEST = /^\/ui\/api\/repositories\/(.+)\/manifests\/([^/]+)$/;
/** Image configs are small; a larger "config" is some artifact's payload the page would not show. */
const MAX_CONFIG_BYTES = 4 << 20;
/** Parallel storage reads for per-tag and per-repository details. */
const PARALLEL = 16;

const IMAGE_CONFIG_TYPES = new Set(['application/vnd.oci.image.config.v1+json', 'application/vnd.docker.container.image.v1+json']);

function decode(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new RegistryError('NAME_INVALID', 'malformed percent-encoding in path');
  }
}

async function mapLimit<T, R>(items: readonly T[], fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(PARALLEL, items.length) }, worker));
  return out;
}

function sendJson(ctx: UiContext, status: number, value: unknown): void {
  const body = Buffer.from(JSON.stringify(value));
  ctx.res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': body.length, 'Cache-Control': 'no-store' });
  ctx.res.end(ctx.req.method === 'HEAD' ? undefined : body);
}

function repoAccess(name: string, action: string): Access[] {
  return [{ type: 'repository', name, actions: [action] }];
}

async function readSmallBlob(storage: RegistryStorage, name: string, digest: string, size: number): Promise<Buffer | undefined> {
  if (size > MAX_CONFIG_BYTES) return undefined;
  const d = parseDigestParam(digest);
  await storage.statBlob(name, d); // the blob must be linked into this repository, as for GET /v2/<name>/blobs/
  const chunks: Buffer[] = [];
  for await (const c of await storage.openBlob(d)) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

export function createUiApi(deps: UiApiDeps): (ctx: UiContext) => Promise<void> {
  const { storage } = deps;

  async function session(ctx: UiContext): Promise<void> {
    // Without credentials the page shows its login form (or, with auth off, everything).
    let user: string | null = null;
    if (ctx.req.headers.authorization) user = (await deps.authorize(ctx, [])).user ?? null;
    sendJson(ctx, 200, { user, auth: deps.authKind() });
  }

  async function repositories(ctx: UiContext): Promise<void> {
    const grant = await deps.authorize(ctx, [{ type: 'registry', name: 'catalog', actions: ['*'] }]);
    const all = await storage.repositories();
    const policy = deps.policy();
    // Only what the caller may pull, as for _catalog; an external issuer's tokens alone decide when there is no policy.
    const names = deps.authKind() === 'none' ? all
      : policy ? policy.filterRepos(grant.identity, all)
        : all.filter((r) => (grant.listable ? grant.listable(r) : grant.can(r, 'pull')));
    const repos = await mapLimit(names, async (name) => ({ name, tags: (await storage.tags(name).catch(() => [])).length }));
    sendJson(ctx, 200, { repositories: repos });
  }

  async function tags(ctx: UiContext, name: string): Promise<void> {
    const grant = await deps.authorize(ctx, repoAccess(name, 'pull'));
    const all = await storage.tags(name);
    const rows = await mapLimit(all, async (tag) => {
      try {
        const m = await storage.getManifest(name, tag);
        return { name: tag, digest: m.digest, mediaType: m.mediaType, size: m.bytes.length };
      } catch {
        return { name: tag, digest: null, mediaType: null, size: null }; // deleted while listing
      }
    });
    sendJson(ctx, 200, { name, tags: rows, canDelete: deps.deletable && grant.can(name, 'delete') });
  }

  async function manifest(ctx: UiContext, name: string, ref: string): Promise<void> {
    const grant = await deps.authorize(ctx, repoAccess(name, 'pull'));
    const m = await storage.getManifest(name, ref);
    let parsed: { config?: { mediaType?: string; digest?: string; size?: number } } | null = null;
    try {
      parsed = JSON.parse(m.bytes.toString('utf8'));
    } catch { /* not JSON: the page shows the media type and size only */ }
    let config: unknown = null;
    const c = parsed?.config;
    if (c && typeof c.digest === 'string' && typeof c.size === 'number' && IMAGE_CONFIG_TYPES.has(c.mediaType ?? '')) {
      try {
        const bytes = await readSmallBlob(storage, name, c.digest, c.size);
        if (bytes) config = JSON.parse(bytes.toString('utf8'));
      } catch (e) {
        if (!(e instanceof RegistryError || e instanceof SyntaxError)) throw e;
      }
    }
    sendJson(ctx, 200, {
      name, reference: ref, digest: m.digest, mediaType: m.mediaType, size: m.bytes.length,
      manifest: parsed, config, canDelete: deps.deletable && grant.can(name, 'delete'),
    });
  }

  return async (ctx) => {
    const p = ctx.url.pathname;
    const method = ctx.req.method;
    if (method !== 'GET' && method !== 'HEAD') throw new RegistryError('UNSUPPORTED', `${method} is not supported on ${p}`);
    if (p === '/ui/api/session') return session(ctx);
    if (p === '/ui/api/repositories') return repositories(ctx);
    let m: RegExpExecArray | null;
    if ((m = RE_TAGS.exec(p))) {
      const name = decode(m[1]!);
      validateName(name);
      return tags(ctx, name);
    }
    if ((m = RE_MANIFEST.exec(p))) {
      const name = decode(m[1]!);
      validateName(name);
      return manifest(ctx, name, decode(m[2]!));
    }
    throw new RegistryError('UNSUPPORTED', `unknown UI endpoint ${p.slice(0, 100)}`, undefined, 404);
  };
}
