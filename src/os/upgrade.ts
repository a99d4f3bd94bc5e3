// `drydock os upgrade` / `switch`, and the first deployment of a new disk: read an image from any
// ImageSource (a registry for upgrades, the local store for `drydock disk --updates-from`), fetch
// and convert only the layers whose diffID file is missing, write the deployment file, and only
// then name it in state.json. A kill at any point leaves state.json naming complete files only.
import path from 'node:path';
import { isIndexMediaType } from '../image/media-types.js';
import { formatPlatform, hostPlatform, platformMatches } from '../image/platform.js';
import { digestOf } from '../image/digest.js';
import { parseReference } from '../image/reference.js';
import type { ImageSource, RawManifest } from '../image/source.js';
import type { Descriptor, ImageConfig, ImageIndex, ImageManifest, Platform } from '../image/types.js';
import { RegistryContext, type ClientOptions } from '../client/context.js';
import { RemoteImageSource } from '../client/remote.js';
import { readBodyLimited } from '../client/transport.js';
import { UserError } from '../util/errors.js';
import { convertLayer } from './layers.js';
import { stageKernel, type KernelEvent } from './kernel.js';
import { OsLayout, newPending, layerFormatOf, type Deployment, type LayerFormat, type OsState, type UpgradeRecord } from './layout.js';
import { withLock } from './lock.js';

const MAX_CONFIG_BYTES = 8 * 1024 * 1024;

export type StageEvent =
  | { type: 'manifest'; digest: string }
  | { type: 'layer'; digest: string; diffID: string; size: number; status: 'exists' | 'fetching' | 'done' }
  | KernelEvent;

export interface StageOptions {
  platform?: Platform;
  /** What missing layers are converted to (default squashfs; upgrade passes state.json's). */
  layerFormat?: LayerFormat;
  /**
   * Stage the image's own kernel (default true). `drydock disk` passes false: the first
   * deployment boots the kernel on the boot partition, which is that kernel already.
   */
  kernel?: boolean;
  onEvent?: (e: StageEvent) => void;
}

export interface UpgradeOptions extends StageOptions {
  /** `switch`: the new reference to track from now on. */
  ref?: string;
  /** Boots the new deployment gets to reach "service started" (default 3). */
  tries?: number;
  deadlineSeconds?: number;
  /** Registry client settings beyond what state.json gives (tests point daemon.json away). */
  client?: ClientOptions;
}

export interface UpgradeResult {
  /** 'no-update': the reference still names the deployment that runs (or is staged). */
  status: 'staged' | 'no-update';
  deployment: Deployment;
  state: OsState;
  record: UpgradeRecord;
}

interface ResolvedImage { manifest: RawManifest; doc: ImageManifest; bytes: number }

function parseJson<T>(bytes: Buffer, what: string): T {
  try { return JSON.parse(bytes.toString('utf8')) as T; } catch { throw new UserError(`${what} is not valid JSON`); }
}

/** The image manifest for `platform` (the host's by default), through an index if there is one. */
async function resolveManifest(src: ImageSource, platform: Platform = hostPlatform()): Promise<ResolvedImage> {
  const top = await src.getManifest();
  let bytes = top.bytes.length;
  const doc = parseJson<ImageManifest | ImageIndex>(top.bytes, `${src.description}: manifest`);
  if (!isIndexMediaType(top.mediaType) && !Array.isArray((doc as ImageIndex).manifests)) {
    if (!(doc as ImageManifest).config || !Array.isArray((doc as ImageManifest).layers)) throw new UserError(`${src.description}: manifest ${top.digest} lacks "config" or "layers"`);
    return { manifest: top, doc: doc as ImageManifest, bytes };
  }
  const candidates = (doc as ImageIndex).manifests.filter((d) => d.annotations?.['vnd.docker.reference.type'] !== 'attestation-manifest');
  const chosen = candidates.find((d) => platformMatches(platform, d.platform)) ?? (candidates.length === 1 && !candidates[0]!.platform ? candidates[0] : undefined);
  if (!chosen) throw new UserError(`${src.description}: no image for platform ${formatPlatform(platform)} in the index`);
  const child = await src.getManifestByDigest(chosen.digest);
  if (child.digest !== chosen.digest) throw new UserError(`${src.description}: manifest ${chosen.digest} hashes to ${child.digest}`);
  bytes += child.bytes.length;
  const childDoc = parseJson<ImageManifest>(child.bytes, `${src.description}: manifest ${chosen.digest}`);
  if (!childDoc.config || !Array.isArray(childDoc.layers)) throw new UserError(`${src.description}: manifest ${chosen.digest} lacks "config" or "layers"`);
  return { manifest: child, doc: childDoc, bytes };
}

async function readConfig(src: ImageSource, desc: Descriptor): Promise<{ config: ImageConfig; bytes: Buffer }> {
  if (desc.size > MAX_CONFIG_BYTES) throw new UserError(`${src.description}: image config is ${desc.size} bytes, over the ${MAX_CONFIG_BYTES} byte limit`);
  const bytes = await readBodyLimited(await src.openBlob(desc), MAX_CONFIG_BYTES, 'image config');
  if (digestOf(bytes) !== desc.digest) throw new UserError(`${src.description}: image config hashes to ${digestOf(bytes)}, not ${desc.digest}`);
  const config = parseJson<ImageConfig>(bytes, `${src.description}: image config`);
  return { config, bytes };
}

export interface StagedImage {
  deployment: Deployment;
  /** True when an existing deployment file already described this image for this reference. */
  reused: boolean;
  bytes: number;
  layersFetched: number;
  layersReused: number;
}

/**
 * Makes sure a deployment for `src`'s image exists in `layout`: layers converted (only the missing
 * ones fetched) and the deployment file written. Does not touch state.json. Call under the lock.
 */
export async function stageImage(layout: OsLayout, src: ImageSource, ref: string, opts: StageOptions = {}): Promise<StagedImage> {
  return stageResolved(layout, src, await resolveManifest(src, opts.platform), ref, opts);
}

async function stageResolved(layout: OsLayout, src: ImageSource, image: ResolvedImage, ref: string, opts: StageOptions): Promise<StagedImage> {
  const emit = opts.onEvent ?? (() => {});
  emit({ type: 'manifest', digest: image.manifest.digest });
  const { config, bytes: configBytes } = await readConfig(src, image.doc.config);
  let bytes = image.bytes + configBytes.length;
  const diffIDs = config.rootfs?.diff_ids ?? [];
  if (diffIDs.length !== image.doc.layers.length) {
    throw new UserError(`${src.description}: the manifest has ${image.doc.layers.length} layers but the config names ${diffIDs.length} diff_ids`);
  }
  let layersFetched = 0;
  let layersReused = 0;
  for (const [i, desc] of image.doc.layers.entries()) {
    const diffID = diffIDs[i]!;
    const base = { type: 'layer' as const, digest: desc.digest, diffID, size: desc.size };
    if (await layout.hasLayer(diffID)) {
      layersReused++;
      emit({ ...base, status: 'exists' });
      continue;
    }
    emit({ ...base, status: 'fetching' });
    const r = await convertLayer(layout, desc, await src.openBlob(desc), diffID, opts.layerFormat);
    bytes += r.bytes;
    layersFetched++;
    emit({ ...base, status: 'done' });
  }
  for (const id of await layout.deploymentIds()) {
    const d = await layout.readDeployment(id).catch(() => undefined);
    if (d && d.manifestDigest === image.manifest.digest && d.ref === ref) return { deployment: d, reused: true, bytes, layersFetched, layersReused };
  }
  // The image's own kernel, when it brings another one than the disk boots (src/os/kernel.ts).
  const kernel = opts.kernel === false ? undefined : await stageKernel(layout, diffIDs, await layout.readState(), emit);
  const deployment: Deployment = {
    id: await layout.newDeploymentId(image.manifest.digest),
    ref,
    manifestDigest: image.manifest.digest,
    configDigest: image.doc.config.digest,
    layers: diffIDs,
    created: new Date().toISOString(),
    imageConfig: config.config ?? {},
    ...(kernel ? { kernel } : {}),
  };
  await layout.writeDeployment(deployment);
  return { deployment, reused: false, bytes, layersFetched, layersReused };
}

/** Registry client options from state.json: its insecure registries and its authfile. */
export function clientOptionsFor(layout: OsLayout, state: OsState, extra: ClientOptions = {}): ClientOptions {
  const authFile = state.authfile ? path.resolve(layout.root, state.authfile) : extra.auth?.authFile;
  return {
    ...extra,
    insecureRegistries: [...state.insecureRegistries, ...(extra.insecureRegistries ?? [])],
    auth: { ...extra.auth, authFile },
  };
}

/**
 * `drydock os upgrade` (and `switch` with opts.ref): pulls the tracked reference and stages it
 * as the pending deployment, or reports "no update" when it is what runs (or is staged) already.
 */
export async function upgrade(root: string, opts: UpgradeOptions = {}): Promise<UpgradeResult> {
  const layout = new OsLayout(root);
  return withLock(layout.lockPath, async () => {
    const state = await layout.readState();
    const ref = opts.ref ?? state.ref;
    let reference;
    try { reference = parseReference(ref); } catch (e) { throw new UserError(`${ref}: ${(e as Error).message}`, { cause: e }); }
    const ctx = await RegistryContext.create(clientOptionsFor(layout, state, opts.client));
    try {
      const src = new RemoteImageSource(ctx, reference);
      // "No update" is decided on the manifest alone: nothing else is fetched.
      const current = [state.pending?.id, state.default].filter((x): x is string => !!x);
      const image = await resolveManifest(src, opts.platform);
      for (const id of current) {
        const d = await layout.readDeployment(id).catch(() => undefined);
        if (d?.manifestDigest === image.manifest.digest) {
          const next = ref === state.ref ? state : await layout.updateState((s) => ({ ...s, ref }));
          const record: UpgradeRecord = { at: new Date().toISOString(), ref, manifestDigest: d.manifestDigest, deployment: null, bytes: image.bytes, layersFetched: 0, layersReused: d.layers.length };
          await layout.writeLastUpgrade(record);
          return { status: 'no-update', deployment: d, state: next, record };
        }
      }
      // Converted as the disk was made (--layer-format), which its initramfs can mount.
      const staged = await stageResolved(layout, src, image, ref, { ...opts, layerFormat: layerFormatOf(state) });
      const next = await layout.updateState((s) => ({ ...s, ref, pending: newPending(s, staged.deployment.id, opts) }));
      const record: UpgradeRecord = {
        at: new Date().toISOString(), ref, manifestDigest: staged.deployment.manifestDigest, deployment: staged.deployment.id,
        bytes: staged.bytes, layersFetched: staged.layersFetched, layersReused: staged.layersReused,
      };
      await layout.writeLastUpgrade(record);
      return { status: 'staged', deployment: staged.deployment, state: next, record };
    } finally {
      await ctx.close();
    }
  });
}

export interface SeedOptions extends StageOptions {
  insecureRegistries?: string[];
  /** Path relative to `root` (e.g. "os/auth.json") of registry credentials already copied there. */
  authfile?: string | null;
}

/**
 * The data partition of a new updatable disk: `src`'s image as the one (default) deployment,
 * tracking `ref`. For `drydock disk --updates-from`; `src` is usually a StoreImageSource.
 */
export async function seedOsRoot(root: string, src: ImageSource, ref: string, opts: SeedOptions = {}): Promise<{ state: OsState; deployment: Deployment }> {
  const layout = new OsLayout(root);
  await layout.create();
  return withLock(layout.lockPath, async () => {
    const staged = await stageImage(layout, src, ref, { ...opts, kernel: false });
    const state: OsState = {
      version: 1, ref, default: staged.deployment.id, rollback: null, booted: null, pending: null, abandoned: [],
      insecureRegistries: opts.insecureRegistries ?? [], authfile: opts.authfile ?? null,
      // Recorded so `drydock os upgrade` converts new layers the same way.
      layerFormat: layerFormatOf(opts),
    };
    await layout.writeState(state);
    return { state, deployment: staged.deployment };
  });
}
