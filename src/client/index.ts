// The registry client: pull, push, copy between transports, login/logout, auth config, mirrors.
import { parseReference, formatReference, type Reference } from '../image/reference.js';
import type { Descriptor, Platform } from '../image/types.js';
import { ContentStore, resolveImage, type LocalImage } from '../store/index.js';
import { UserError } from '../util/errors.js';
import { normalizeAuthKey, saveCredentials, removeCredentials, type AuthConfigOptions, type Credentials } from './auth-config.js';
import { RegistryContext, type ClientOptions } from './context.js';
import { copyImage, type CopyOptions, type CopyResult, type ProgressEvent } from './copy.js';
import { RemoteImageSource, RemoteImageDestination } from './remote.js';
import { RegistryTransport } from './transport.js';
import { StoreImageDestination, StoreImageSource } from './store-transport.js';
import { parseImageLocation, openSource, openDestination, destinationTag } from './transports.js';
import { DEFAULT_REGISTRY } from '../image/reference.js';

export * from './auth-config.js';
export * from './registries-config.js';
export * from './transport.js';
export * from './context.js';
export * from './copy.js';
export * from './remote.js';
export * from './store-transport.js';
export * from './transports.js';
export * from './progress.js';

export interface TransferOptions extends ClientOptions, Omit<CopyOptions, 'tag'> {}

/** Runs `fn` with a context that is closed afterwards (keep-alive sockets must not hold the process). */
async function withContext<T>(opts: ClientOptions, fn: (ctx: RegistryContext) => Promise<T>): Promise<T> {
  const ctx = await RegistryContext.create(opts);
  try { return await fn(ctx); } finally { await ctx.close(); }
}

function parseRef(input: string): Reference {
  try { return parseReference(input); } catch (e) { throw new UserError((e as Error).message, { cause: e }); }
}

export interface PullResult extends CopyResult {
  reference: Reference;
  name?: string;
  /** What the tag pointed at before this pull (the same digest: the image was up to date). */
  previous?: Descriptor;
}

/**
 * Pulls `ref` from its registry (or a mirror) into the store and tags it by its full name.
 * `store` may be a store still opening: the registry round trips start meanwhile.
 */
export async function pull(store: ContentStore | Promise<ContentStore>, ref: string | Reference, opts: TransferOptions = {}): Promise<PullResult> {
  // A store that fails to open is reported where it is first needed, not as an unhandled rejection.
  if (store instanceof Promise) store.catch(() => {});
  const reference = typeof ref === 'string' ? parseRef(ref) : ref;
  const name = reference.tag ? formatReference({ ...reference, digest: undefined }) : undefined;
  return withContext(opts, async (ctx) => {
    const src = new RemoteImageSource(ctx, reference);
    const dest = new StoreImageDestination(store, name);
    let result: CopyResult;
    try {
      result = await copyImage(src, dest, { ...opts, concurrency: opts.concurrency ?? 3, tag: name ?? '' });
    } finally {
      await dest.close();
    }
    if (reference.digest && result.digest !== reference.digest && !opts.all) {
      // Pulled one platform out of the requested index: keep the index digest alive too.
      await (await store).setRoot(`pulled/${reference.digest}`, [result.digest]);
    }
    return { ...result, reference, name, previous: dest.previous };
  });
}

/**
 * For the builder: makes sure `ref` is in the store (pulling it if needed) and returns it.
 * `pullPolicy: 'missing'` (default) uses a local copy when there is one; 'always' re-pulls.
 */
export async function pullImage(store: ContentStore, ref: string, opts: TransferOptions & { platform?: Platform; pullPolicy?: 'missing' | 'always' } = {}): Promise<LocalImage> {
  const reference = parseRef(ref);
  const key = reference.digest ? reference.digest : formatReference(reference);
  if (opts.pullPolicy !== 'always') {
    try {
      const local = await resolveImage(store, reference.digest ? reference.digest : key, opts.platform);
      return local;
    } catch { /* not local: pull */ }
  }
  const result = await pull(store, reference, opts);
  return resolveImage(store, result.name ?? result.digest, opts.platform);
}

export interface PushResult extends CopyResult { reference: Reference }

/** Pushes a store image (`source`, a store name) to `dest` (default: the same name). */
export async function push(store: ContentStore, source: string, dest?: string, opts: TransferOptions = {}): Promise<PushResult> {
  const reference = parseRef(dest ?? source);
  return withContext(opts, async (ctx) => {
    const src = new StoreImageSource(store, source);
    const d = new RemoteImageDestination(ctx, reference);
    const result = await copyImage(src, d, { ...opts, all: opts.all ?? true, concurrency: opts.concurrency ?? 5, tag: reference.digest && !dest ? undefined : reference.tag });
    return { ...result, reference };
  });
}

/** Copies between any two transports ("docker://...", "oci:dir:tag", "store:name", ...). */
export async function copy(srcName: string, destName: string, opts: TransferOptions & { store?: () => Promise<ContentStore> } = {}): Promise<CopyResult> {
  const srcLoc = parseImageLocation(srcName);
  const destLoc = parseImageLocation(destName);
  return withContext(opts, async (ctx) => {
    let storePromise: Promise<ContentStore> | undefined;
    const store = opts.store ?? (() => (storePromise ??= ContentStore.open()));
    const src = await openSource(srcLoc, { ctx, store });
    const dest = await openDestination(destLoc, { ctx, store });
    try {
      return await copyImage(src, dest, { ...opts, tag: destinationTag(destLoc) });
    } finally {
      await src.close?.();
      await dest.close?.();
    }
  });
}

/** Normalises what the user typed after `login`: "https://host:5000/", "host", "" (Docker Hub). */
export function loginRegistry(input: string | undefined): string {
  if (!input) return DEFAULT_REGISTRY;
  const host = normalizeAuthKey(input);
  if (host.includes('/')) throw new UserError(`"${input}": give a registry host (and port), not a repository`);
  return host;
}

/**
 * Checks credentials against the registry (the /v2/ challenge, and a token for Bearer
 * registries), then saves them. Returns the file written.
 */
export async function login(registry: string, creds: Credentials, opts: ClientOptions & { auth?: AuthConfigOptions } = {}): Promise<string> {
  const host = loginRegistry(registry);
  await withContext(opts, async (ctx) => {
    const ep = ctx.config.forRepository(host, 'library/x').pushEndpoint;
    const t = new RegistryTransport(ep, { credentials: async () => creds, credentialsHost: host, tls: await ctx.config.tlsFor(ep.host), retries: 1 });
    try {
      const res = await t.send({ method: 'GET', path: '/v2/', scopes: [], what: `login to ${host}`, allow: [404] });
      await res.body.dump().catch(() => {});
    } catch (e) {
      if ((e as { status?: number }).status === 401) throw new UserError(`login to ${host} failed: unauthorized: incorrect username or password`);
      throw e;
    } finally {
      await t.close();
    }
  });
  return saveCredentials(host, creds, opts.auth);
}

export async function logout(registry: string | undefined, opts: { auth?: AuthConfigOptions } = {}): Promise<boolean> {
  return removeCredentials(loginRegistry(registry), opts.auth);
}

export type { ProgressEvent };
