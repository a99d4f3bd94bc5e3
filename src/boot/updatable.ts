// The data partition of an updatable disk (`drydock disk IMAGE --updates-from REF`), laid out
// as docs/boot.md describes ("machines that update themselves"):
//   os/layers/<diffid-hex>.squashfs   one file per image layer (an overlay lower each)
//   os/deployments/<id>.json          which layers, from which manifest, with the image config
//   os/state.json                     default / rollback / pending deployment, the tracked ref
//   os/top/  os/var/  os/etc/         the machine's top layer, persistent /var, /etc's changes
// The initramfs stacks the default deployment's layers under os/top; `drydock os upgrade`
// (src/os) adds layers and deployments and switches state.json by rename.
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import type { ContentStore } from '../store/content-store.js';
import type { LocalImage } from '../store/images.js';
import { layerCompression } from '../image/media-types.js';
import { layerToSquashfs } from '../os/layer-squashfs.js';
import { LayerError } from '../layer/errors.js';
import { runTool } from './exec.js';

export interface UpdatableOptions {
  /** The reference the machine pulls updates from (as the machine sees the registry). */
  ref: string;
  insecureRegistries: string[];
  /** A docker config.json with registry credentials, copied to os/auth.json. */
  authfile?: string;
  /** Tries and seconds a new deployment gets to reach "service started" (os/state.json pending). */
  bootTries: number;
  bootDeadline: number;
}

export interface Deployment {
  id: string;
  ref: string;
  manifestDigest: string;
  configDigest: string;
  /** diffIDs, bottom layer first. */
  layers: string[];
  created: string;
  imageConfig: Record<string, unknown>;
}

export interface OsState {
  version: 1;
  ref: string;
  default: string;
  rollback: string | null;
  booted?: string;
  pending: { id: string; triesLeft: number; deadlineSeconds: number; attempts?: number } | null;
  abandoned: { id: string; reason: string; at: string }[];
  insecureRegistries: string[];
  authfile: string | null;
  /** Defaults `drydock os upgrade` gives a new pending deployment. */
  bootTries: number;
  bootDeadlineSeconds: number;
}

/** <id> of a deployment: the first 12 hex digits of its manifest digest. */
export function deploymentId(manifestDigest: string): string {
  return manifestDigest.replace(/^sha256:/, '').slice(0, 12);
}

async function writeJsonDurable(file: string, value: unknown): Promise<void> {
  const tmp = `${file}.tmp`;
  await fsp.writeFile(tmp, JSON.stringify(value, null, 2) + '\n');
  const fh = await fsp.open(tmp, 'r');
  try { await fh.sync(); } finally { await fh.close(); }
  await fsp.rename(tmp, file);
}

/**
 * Converts every layer of `img` into `<dataDir>/os/layers` (checking each against the config's
 * diff_ids) and writes its deployment. Returns the deployment; the caller writes state.json.
 */
export async function addDeployment(store: ContentStore, img: LocalImage, ref: string, dataDir: string, work: string): Promise<Deployment> {
  const layersDir = path.join(dataDir, 'os/layers');
  const depDir = path.join(dataDir, 'os/deployments');
  await fsp.mkdir(layersDir, { recursive: true });
  await fsp.mkdir(depDir, { recursive: true });
  const diffIDs = img.config.rootfs?.diff_ids ?? [];
  if (diffIDs.length !== img.manifest.layers.length) {
    throw new LayerError(`${ref}: the image config lists ${diffIDs.length} diff_ids for ${img.manifest.layers.length} layers`);
  }
  // Two at a time: mksquashfs is already multi-threaded.
  const layers = img.manifest.layers.map((l, i) => ({ l, i }));
  const queue = [...layers];
  const worker = async (): Promise<void> => {
    for (let job = queue.shift(); job; job = queue.shift()) {
      if (!(await store.hasBlob(job.l.digest))) throw new LayerError(`layer ${job.l.digest} is not in the store (pull the image again)`);
      const c = layerCompression(job.l.mediaType);
      await layerToSquashfs(store.openBlob(job.l.digest), layersDir, work, { expectDiffID: diffIDs[job.i], compression: c === 'none' ? 'auto' : c });
    }
  };
  await Promise.all([worker(), worker()]);
  const dep: Deployment = {
    id: deploymentId(img.manifestDescriptor.digest),
    ref,
    manifestDigest: img.manifestDescriptor.digest,
    configDigest: img.configDigest,
    layers: diffIDs,
    created: img.config.created ?? new Date().toISOString(),
    imageConfig: (img.config.config ?? {}) as Record<string, unknown>,
  };
  await writeJsonDurable(path.join(depDir, `${dep.id}.json`), dep);
  return dep;
}

/** Writes os/state.json (temp, fsync, rename). */
export async function writeOsState(dataDir: string, state: OsState): Promise<void> {
  await writeJsonDurable(path.join(dataDir, 'os/state.json'), state);
}

/**
 * The whole os/ tree of a new updatable disk: IMAGE's layers and its deployment as the default,
 * the baked top layer (moved from `topDir`), the image's /var as the start of the persistent /var.
 */
export async function buildOsTree(store: ContentStore, img: LocalImage, rootfs: string, topDir: string,
  opts: UpdatableOptions, dataDir: string, work: string): Promise<{ deployment: Deployment; state: OsState }> {
  const deployment = await addDeployment(store, img, opts.ref, dataDir, work);
  const os = path.join(dataDir, 'os');
  await fsp.rename(topDir, path.join(os, 'top'));
  await fsp.mkdir(path.join(os, 'var'), { recursive: true });
  const imageVar = await fsp.lstat(path.join(rootfs, 'var')).catch(() => undefined);
  if (imageVar?.isDirectory()) await runTool('cp', ['-a', `${path.join(rootfs, 'var')}/.`, `${path.join(os, 'var')}/`]);
  await fsp.mkdir(path.join(os, 'etc'), { recursive: true });
  await fsp.mkdir(path.join(os, '.etc-work'), { recursive: true });
  let authfile: string | null = null;
  if (opts.authfile) {
    await fsp.copyFile(opts.authfile, path.join(os, 'auth.json'));
    await fsp.chmod(path.join(os, 'auth.json'), 0o600);
    authfile = 'os/auth.json';
  }
  const state: OsState = {
    version: 1, ref: opts.ref, default: deployment.id, rollback: null, pending: null, abandoned: [],
    insecureRegistries: opts.insecureRegistries, authfile, bootTries: opts.bootTries, bootDeadlineSeconds: opts.bootDeadline,
  };
  await writeOsState(dataDir, state);
  return { deployment, state };
}
