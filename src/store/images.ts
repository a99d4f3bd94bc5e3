// Image-level view of the content store: resolve "name[:tag]" or an ID prefix to a manifest,
// its config and its layers; list images; garbage-collect unreachable blobs.
import { promises as fsp } from 'node:fs';
import { ContentStore, REF_NAME_ANNOTATION } from './content-store.js';
import { cachedLayerContentSize, imageContentSize } from './layer-size.js';
import { parseReference, formatReference, ReferenceError } from '../image/reference.js';
import { isDigest } from '../image/digest.js';
import { isIndexMediaType } from '../image/media-types.js';
import { manifestMediaType } from '../image/partial.js';
import { selectPlatform, formatPlatform } from '../image/platform.js';
import type { Descriptor, ImageConfig, ImageIndex, ImageManifest, Platform } from '../image/types.js';
import { NotFoundError, UserError } from '../util/errors.js';

export interface LocalImage {
  /** Full reference names that point at this image (may be empty for an ID lookup). */
  names: string[];
  /** Descriptor of the image manifest (after platform selection from an index). */
  manifestDescriptor: Descriptor;
  manifest: ImageManifest;
  /** The index the image was selected from, when the tag points at an index. */
  index?: { descriptor: Descriptor; index: ImageIndex };
  configDigest: string;
  config: ImageConfig;
}

/** Normalises a user-typed name to the store's full "registry/repo:tag" key. */
export function canonicalName(name: string): string {
  const ref = parseReference(name);
  if (ref.digest) throw new UserError(`"${name}": a digest reference cannot be used as a tag name`);
  return formatReference(ref);
}

type LoadedManifest = { manifestDescriptor: Descriptor; manifest: ImageManifest; index?: LocalImage['index'] };

/** The manifest of an index for `platform`; a lone entry serves any platform only when nobody asked for one or it names none. */
function indexChild(desc: Descriptor, index: ImageIndex, platform?: Platform): Descriptor {
  const lone = index.manifests.length === 1 && (!platform || !index.manifests[0]!.platform) ? index.manifests[0] : undefined;
  const child = selectPlatform(index.manifests, platform) ?? lone;
  if (!child) {
    const have = index.manifests.map((d) => d.platform).filter((p): p is Platform => !!p).map(formatPlatform);
    throw new NotFoundError(`image index ${desc.digest} has no manifest for ${platform ? formatPlatform(platform) : 'this platform'} (it has: ${have.join(', ') || 'no platforms'})`);
  }
  return child;
}

const notPulled = (desc: Descriptor, child: Descriptor) => new NotFoundError(`image index ${desc.digest}: manifest for this platform (${child.digest}) was not pulled`);
const isIndex = (desc: Descriptor, doc: ImageManifest | ImageIndex): doc is ImageIndex => isIndexMediaType(desc.mediaType) || Array.isArray((doc as ImageIndex).manifests);

async function loadManifest(store: ContentStore, desc: Descriptor, platform?: Platform): Promise<LoadedManifest> {
  const doc = await store.readJsonBlob<ImageManifest | ImageIndex>(desc.digest);
  if (!isIndex(desc, doc)) return { manifestDescriptor: desc, manifest: doc };
  const child = indexChild(desc, doc, platform);
  if (!(await store.hasBlob(child.digest))) throw notPulled(desc, child);
  const manifest = await store.readJsonBlob<ImageManifest>(child.digest);
  return { manifestDescriptor: child, manifest, index: { descriptor: desc, index: doc } };
}

/** loadManifest with the store's sync readers (listImages; ContentStore.forReading says why). */
function loadManifestSync(store: ContentStore, desc: Descriptor, platform?: Platform): LoadedManifest {
  const doc = store.readJsonBlobSync<ImageManifest | ImageIndex>(desc.digest);
  if (!isIndex(desc, doc)) return { manifestDescriptor: desc, manifest: doc };
  const child = indexChild(desc, doc, platform);
  if (!store.hasBlobSync(child.digest)) throw notPulled(desc, child);
  return { manifestDescriptor: child, manifest: store.readJsonBlobSync<ImageManifest>(child.digest), index: { descriptor: desc, index: doc } };
}

async function finish(store: ContentStore, names: string[], loaded: LoadedManifest): Promise<LocalImage> {
  const config = await store.readJsonBlob<ImageConfig>(loaded.manifest.config.digest);
  return { names, ...loaded, configDigest: loaded.manifest.config.digest, config };
}

/**
 * Resolves what a user typed: a name ("busybox", "localhost:5000/a:1"), a full or short image ID
 * (config digest, like Docker), or a manifest digest ("sha256:…").
 */
export async function resolveImage(store: ContentStore, nameOrId: string, platform?: Platform): Promise<LocalImage> {
  // Synchronous reads of index.json, the manifest and the config (a few KiB each): a build
  // resolves its FROM images this way on its way to the first step, where three thread-pool
  // round trips in a row cost more than the reads.
  const tags = store.listTagsSync();
  const idLike = /^(sha256:)?[a-f0-9]{4,64}$/.test(nameOrId);
  if (!idLike || !/^[a-f0-9]+$/.test(nameOrId) || nameOrId.length < 4 || nameOrId.startsWith('sha256:')) {
    let ref;
    try { ref = parseReference(nameOrId); } catch (e) { if (!idLike) throw new UserError((e as ReferenceError).message); }
    if (ref) {
      if (ref.digest) {
        if (!(await store.hasBlob(ref.digest))) throw new NotFoundError(`image ${nameOrId} not found in the store`);
        const desc = tags.find((t) => t.descriptor.digest === ref!.digest)?.descriptor ?? await describeBlob(store, ref.digest);
        return finish(store, tags.filter((t) => t.descriptor.digest === ref!.digest).map((t) => t.name), await loadManifest(store, desc, platform));
      }
      const key = formatReference(ref);
      const hit = tags.find((t) => t.name === key);
      if (hit) {
        const loaded = loadManifestSync(store, hit.descriptor, platform);
        return { names: [key], ...loaded, configDigest: loaded.manifest.config.digest, config: store.readJsonBlobSync<ImageConfig>(loaded.manifest.config.digest) };
      }
      if (!idLike) throw new NotFoundError(`No such image: ${nameOrId} (image "${nameOrId}" not found in the store, looked for ${key})`);
    }
  }
  // ID prefix: match the config digest (Docker's IMAGE ID) or the manifest digest.
  const prefix = nameOrId.replace(/^sha256:/, '');
  const matches = new Map<string, LocalImage>();
  for (const t of tags) {
    const img = await finish(store, [], await loadManifest(store, t.descriptor, platform)).catch(() => undefined);
    if (!img) continue;
    if (img.configDigest.slice(7).startsWith(prefix) || t.descriptor.digest.slice(7).startsWith(prefix)) {
      const prev = matches.get(img.configDigest);
      if (prev) prev.names.push(t.name); else matches.set(img.configDigest, { ...img, names: [t.name] });
    }
  }
  // Build steps' intermediate images resolve by ID too (`drydock run <id>` after a build).
  for (const u of await untaggedImages(store, tags, [...UNTAGGED_ROOT_KINDS, BUILD_STEP_ROOT])) {
    const img = await unnamedImage(store, u.digest, platform).catch(() => undefined);
    if (img && !matches.has(img.configDigest) && (img.configDigest.slice(7).startsWith(prefix) || u.digest.slice(7).startsWith(prefix))) {
      matches.set(img.configDigest, img);
    }
  }
  if (matches.size === 0) {
    if (isDigest(nameOrId) && (await store.hasBlob(nameOrId))) {
      return unnamedImage(store, nameOrId, platform);
    }
    throw new NotFoundError(`No such image: ${nameOrId} (image "${nameOrId}" not found in the store)`);
  }
  if (matches.size > 1) throw new UserError(`image ID prefix "${nameOrId}" is ambiguous (${matches.size} images)`);
  return [...matches.values()][0]!;
}

/** The image a manifest or index digest names, with no names attached. */
async function unnamedImage(store: ContentStore, digest: string, platform?: Platform): Promise<LocalImage> {
  return finish(store, [], await loadManifest(store, await describeBlob(store, digest), platform));
}

async function describeBlob(store: ContentStore, digest: string): Promise<Descriptor> {
  const bytes = await store.readBlob(digest);
  return { mediaType: manifestMediaType(bytes), digest, size: bytes.length };
}

function describeBlobSync(store: ContentStore, digest: string): Descriptor {
  const bytes = store.readBlobSync(digest);
  return { mediaType: manifestMediaType(bytes), digest, size: bytes.length };
}

export interface ImageSummary {
  name: string;
  repository: string;
  tag: string;
  manifestDigest: string;
  id: string;
  created?: string;
  /** The unpacked size of the layers' files, as `docker images` shows SIZE. */
  size: number;
  /** The config's labels (for `images --filter label=`). */
  labels?: Record<string, string>;
}

/**
 * The layers' unpacked size from the per-layer size cache (read synchronously); a layer not in
 * it is measured once (layer-size.ts); the compressed size when a layer cannot be read.
 */
async function unpackedSize(store: ContentStore, layers: readonly Descriptor[]): Promise<number> {
  let total = 0;
  for (const l of layers) {
    const cached = cachedLayerContentSize(store, l.digest);
    if (cached === undefined) return imageContentSize(store, layers).catch(() => layers.reduce((n, d) => n + d.size, 0));
    total += cached;
  }
  return total;
}

/**
 * What `images` lists: every tag, then the untagged images (<none>:<none>). index.json, the
 * manifests, the configs and the size cache are read synchronously (ContentStore.forReading says
 * why); `sizes: false` (`images -q`) skips the size cache.
 */
export async function listImages(store: ContentStore, opts: { sizes?: boolean } = {}): Promise<ImageSummary[]> {
  type Named = Pick<ImageSummary, 'name' | 'repository' | 'tag' | 'manifestDigest'>;
  /** The summary of the image at `desc`, or undefined when its manifest or config is missing. */
  const summarise = async (named: Named, desc: Descriptor): Promise<ImageSummary | undefined> => {
    let manifest: ImageManifest;
    let config: ImageConfig;
    try {
      manifest = loadManifestSync(store, desc).manifest;
      config = store.readJsonBlobSync<ImageConfig>(manifest.config.digest);
    } catch { return undefined; }
    return {
      ...named,
      id: manifest.config.digest,
      created: config.created,
      size: opts.sizes === false ? 0 : await unpackedSize(store, manifest.layers),
      labels: config.config?.Labels ?? undefined,
    };
  };
  const out: ImageSummary[] = [];
  const tags = store.listTagsSync();
  for (const t of tags) {
    const colon = t.name.lastIndexOf(':');
    const named = { name: t.name, repository: t.name.slice(0, colon), tag: t.name.slice(colon + 1), manifestDigest: t.descriptor.digest };
    // A tag whose blobs are incomplete still shows, so the user can rmi it.
    out.push((await summarise(named, t.descriptor)) ?? { ...named, id: '', size: 0 });
  }
  for (const u of untaggedImagesSync(store, tags)) {
    let desc: Descriptor;
    try { desc = describeBlobSync(store, u.digest); } catch { continue; }
    const summary = await summarise({ name: '<none>:<none>', repository: '<none>', tag: '<none>', manifestDigest: u.digest }, desc);
    if (summary) out.push(summary); // else incomplete (a pull for another platform): nothing to show or run
  }
  return out;
}

/** Root owners that hold a whole image nobody tagged: a build or import without a name, a pull by digest, a load of an untagged archive. */
const UNTAGGED_ROOT_KINDS = ['built/', 'imported/', 'pulled/', 'loaded/'];
/**
 * Root owner prefix of a build step's intermediate image (the " ---> ID" lines of `drydock
 * build`): resolvable by ID, like Docker's intermediate images, but not listed by `images`;
 * `drydock builder prune` drops them with the build cache.
 */
export const BUILD_STEP_ROOT = 'buildstep/';

/**
 * Images kept by a root but by no tag: `docker images` shows these as <none>:<none>, they
 * resolve by ID, `rmi` removes them and `image prune` removes them all.
 */
export async function untaggedImages(store: ContentStore, tags?: { descriptor: Descriptor }[], kinds: readonly string[] = UNTAGGED_ROOT_KINDS): Promise<{ owner: string; digest: string }[]> {
  return untaggedImagesSync(store, tags ?? await store.listTags(), kinds);
}

function untaggedImagesSync(store: ContentStore, tags: { descriptor: Descriptor }[], kinds: readonly string[] = UNTAGGED_ROOT_KINDS): { owner: string; digest: string }[] {
  const tagged = new Set(tags.map((t) => t.descriptor.digest));
  const out: { owner: string; digest: string }[] = [];
  const seen = new Set<string>();
  for (const r of store.listRootEntriesSync(kinds)) {
    for (const d of r.digests) {
      if (tagged.has(d) || seen.has(d) || !store.hasBlobSync(d)) continue;
      seen.add(d);
      out.push({ owner: r.owner, digest: d });
    }
  }
  return out;
}

/** Drops the untagged-image roots that keep `manifestDigest` (its blobs then go with gc or rmi). */
async function removeUntaggedRoots(store: ContentStore, manifestDigest: string): Promise<void> {
  for (const r of await store.listRootEntries(UNTAGGED_ROOT_KINDS)) {
    if (r.digests.includes(manifestDigest)) await store.removeRoot(r.owner);
  }
}

/** `image prune`: forgets every untagged image and deletes the blobs only they used. */
export async function pruneUntaggedImages(store: ContentStore): Promise<{ images: string[]; deleted: string[]; bytes: number }> {
  const out = { images: [] as string[], deleted: [] as string[], bytes: 0 };
  for (const u of await untaggedImages(store)) {
    const r = await removeImage(store, u.digest, { force: true });
    out.images.push(u.digest);
    out.deleted.push(...r.deleted);
    out.bytes += r.bytes;
  }
  return out;
}

/** Every blob reachable from a manifest or index digest (manifests, configs, layers). */
export async function reachableFrom(store: ContentStore, digest: string, into: Set<string>): Promise<void> {
  if (into.has(digest)) return;
  into.add(digest);
  let doc: { manifests?: Descriptor[]; config?: Descriptor; layers?: Descriptor[]; subject?: Descriptor; mediaType?: string };
  try {
    const bytes = await store.readBlob(digest);
    if (bytes.length > 4 * 1024 * 1024 || bytes[0] !== 0x7b) return; // not a JSON manifest (a layer)
    doc = JSON.parse(bytes.toString('utf8'));
  } catch {
    return;
  }
  if (Array.isArray(doc.manifests)) for (const m of doc.manifests) await reachableFrom(store, m.digest, into);
  if (doc.config?.digest) into.add(doc.config.digest);
  if (Array.isArray(doc.layers)) for (const l of doc.layers) into.add(l.digest);
}

export interface RemoveImageResult {
  /** Full names that were untagged. */
  untagged: string[];
  /** Blobs deleted because nothing else reaches them (manifest, config, layers). */
  deleted: string[];
  /** Their total size. */
  bytes: number;
}

/**
 * `rmi`: a name untags just that name; an ID or digest untags every name of the image (only
 * with `force` when there are several, as Docker). Blobs that no remaining tag or root reaches
 * are deleted at once, so the space comes back without a gc.
 */
export async function removeImage(store: ContentStore, nameOrId: string, opts: { force?: boolean } = {}): Promise<RemoveImageResult> {
  const tags = await store.listTags();
  let byName: string | undefined;
  try {
    const ref = parseReference(nameOrId);
    if (!ref.digest) byName = formatReference(ref);
  } catch { /* an ID */ }
  let untag: { name: string; descriptor: Descriptor }[];
  let rootDigest: string;
  const named = byName ? tags.find((t) => t.name === byName) : undefined;
  if (named) {
    untag = [named];
    rootDigest = named.descriptor.digest;
  } else {
    const img = await resolveImage(store, nameOrId);
    rootDigest = img.index?.descriptor.digest ?? img.manifestDescriptor.digest;
    untag = tags.filter((t) => img.names.includes(t.name) || t.descriptor.digest === rootDigest);
    if (untag.length > 1 && !opts.force) {
      throw new UserError(`conflict: unable to delete ${nameOrId} (must be forced) - image is referenced in multiple repositories (${untag.map((t) => t.name).join(', ')})`);
    }
  }
  for (const t of untag) await store.removeTag(t.name);
  if (!named) await removeUntaggedRoots(store, rootDigest);
  const remaining = await store.listTags();
  const deleted: string[] = [];
  let bytes = 0;
  if (!remaining.some((t) => t.descriptor.digest === rootDigest)) {
    const live = new Set<string>();
    for (const t of remaining) await reachableFrom(store, t.descriptor.digest, live);
    for (const d of await store.listRoots()) await reachableFrom(store, d, live);
    const mine = new Set<string>();
    await reachableFrom(store, rootDigest, mine);
    for (const d of mine) {
      if (live.has(d)) continue;
      const st = await fsp.stat(store.blobPath(d)).catch(() => undefined);
      if (!st) continue;
      await fsp.rm(store.blobPath(d), { force: true });
      deleted.push(d);
      bytes += st.size;
    }
  }
  return { untagged: untag.map((t) => t.name), deleted, bytes };
}

export interface GcResult { removed: string[]; bytes: number; kept: number }

/**
 * Mark and sweep: roots are every tagged manifest plus digests other subsystems registered.
 * Blobs younger than `graceMs` survive, so a pull or build that has written blobs but not yet
 * tagged its manifest is never swept from under it.
 */
export async function gcStore(store: ContentStore, opts: { dryRun?: boolean; graceMs?: number } = {}): Promise<GcResult> {
  const grace = opts.graceMs ?? 10 * 60_000;
  const live = new Set<string>();
  for (const t of await store.listTags()) await reachableFrom(store, t.descriptor.digest, live);
  for (const d of await store.listRoots()) await reachableFrom(store, d, live);
  const removed: string[] = [];
  let bytes = 0;
  let kept = 0;
  const now = Date.now();
  for await (const b of store.listBlobs()) {
    if (live.has(b.digest)) { kept++; continue; }
    const st = await fsp.stat(b.path).catch(() => undefined);
    if (!st) continue;
    if (now - st.mtimeMs < grace) { kept++; continue; }
    removed.push(b.digest);
    bytes += st.size;
    if (!opts.dryRun) await fsp.rm(b.path, { force: true });
  }
  // Stale ingest files from killed processes.
  for (const f of await fsp.readdir(store.tmpDir).catch(() => [] as string[])) {
    const p = `${store.tmpDir}/${f}`;
    const st = await fsp.stat(p).catch(() => undefined);
    if (st && now - st.mtimeMs > grace && !opts.dryRun) await fsp.rm(p, { recursive: true, force: true });
  }
  return { removed, bytes, kept };
}

export { REF_NAME_ANNOTATION };
