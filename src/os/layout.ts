// The data partition of an updatable machine (docs/boot.md, "machines that update themselves"):
// os/state.json says which deployment boots, os/deployments/<id>.json says which layers it
// stacks, os/layers/<diffid>.squashfs (or .erofs) holds each layer once. A deployment file is written once
// and never changed; state.json is switched only by rename, so a power cut at any moment leaves
// either the old state or the new one, and the old one only names files that were already there.
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { readJsonIfExists, writeJsonAtomic, fsyncDir } from '../util/fs.js';
import { UserError } from '../util/errors.js';
import type { ContainerConfig } from '../image/types.js';

/** Where `drydock os` finds the data partition inside a booted machine. */
export const DEFAULT_OS_ROOT = '/run/drydock/os';
/** Boots a new deployment gets to reach "service started" before it is abandoned. */
export const DEFAULT_TRIES = 3;
export const DEFAULT_DEADLINE_SECONDS = 300;

/**
 * The filesystem of a layer file; its name ends in it (os/layers/<diffid>.erofs). The initramfs
 * mounts each file by that ending, so one disk may hold both kinds.
 */
export type LayerFormat = 'squashfs' | 'erofs';
export const LAYER_FORMATS: readonly LayerFormat[] = ['squashfs', 'erofs'];
/**
 * What `drydock disk --updates-from` writes unless --layer-format says otherwise: erofs booted
 * faster under the test kernel (bench/boot-layer-formats.ts; the table is in docs/boot.md).
 */
export const DEFAULT_LAYER_FORMAT: LayerFormat = 'erofs';
/** A state.json without "layerFormat" was made before erofs: its initramfs mounts squashfs only. */
export const LEGACY_LAYER_FORMAT: LayerFormat = 'squashfs';

export interface PendingDeployment {
  id: string;
  /** Boots left; the initramfs decrements it each time it boots `id` unconfirmed. */
  triesLeft: number;
  /** Boots of it so far (the initramfs counts them, for the "abandoned" reason). */
  attempts?: number;
  /** Seconds a boot has to reach "service started" before it counts as failed. */
  deadlineSeconds: number;
}

export interface AbandonedDeployment { id: string; reason: string; at: string }

export interface OsState {
  version: 1;
  /** The reference `upgrade` pulls (as the machine reaches the registry). */
  ref: string;
  default: string;
  rollback: string | null;
  /** Written by the initramfs at every boot: the deployment this boot runs. */
  booted?: string | null;
  pending: PendingDeployment | null;
  abandoned: AbandonedDeployment[];
  insecureRegistries: string[];
  /** Registry credentials (Docker config.json format), relative to the root. */
  authfile: string | null;
  /** What `drydock disk --boot-tries/--boot-deadline` set: the defaults for a new pending deployment. */
  bootTries?: number;
  bootDeadlineSeconds?: number;
  /** What new layers are converted to (`drydock disk --layer-format`); absent: squashfs (LEGACY_LAYER_FORMAT). */
  layerFormat?: LayerFormat;
  /**
   * The kernel on the boot partition (the disk's build), which every boot starts first. A
   * deployment whose image brings this same kernel needs no kernel of its own.
   */
  diskKernel?: { sha256: string; version?: string };
}

/**
 * A deployment's own kernel (its image's /boot/vmlinuz-<version> with /lib/modules/<version>),
 * which the disk's initramfs starts with kexec. Paths are relative to the root, under os/kernels/.
 */
export interface DeploymentKernel {
  vmlinuz: string;
  /** The drydock initramfs with this kernel's boot modules. */
  initrd: string;
  /** The whole module tree as squashfs, mounted at /lib/modules/<version>. */
  modules?: string;
  version?: string;
  /** sha256 hex of the vmlinuz: equal to the running initramfs's own means no kexec. */
  sha256?: string;
}

export interface Deployment {
  id: string;
  ref: string;
  manifestDigest: string;
  configDigest: string;
  /** "sha256:<diffid>", bottom layer first. */
  layers: string[];
  created: string;
  imageConfig: ContainerConfig;
  kernel?: DeploymentKernel;
}

/** What the last `upgrade`/`switch` fetched (os/last-upgrade.json; state.json stays minimal). */
export interface UpgradeRecord {
  at: string;
  ref: string;
  manifestDigest: string;
  /** Deployment written, or null for "no update". */
  deployment: string | null;
  /** Bytes read from the registry: manifests, config and the layers fetched. */
  bytes: number;
  layersFetched: number;
  layersReused: number;
}

/** Paths of one data partition, all under `root` (the `--root` of `drydock os`). */
export class OsLayout {
  readonly dir: string;
  readonly statePath: string;
  readonly deploymentsDir: string;
  readonly layersDir: string;
  readonly tmpDir: string;
  /** Owned scratch dirs with mounts beneath (the kernel search's), swept once their owner is gone. */
  readonly scratchDir: string;
  readonly lastUpgradePath: string;
  readonly lockPath: string;
  /** Deployments' own kernels: <sha>.vmlinuz, <sha>.initrd, <sha>.modules.squashfs. */
  readonly kernelsDir: string;
  /** A copy of the disk initramfs's boot.conf (label, init, mounts), for deployments' initramfs. */
  readonly bootConfPath: string;

  constructor(readonly root: string) {
    this.dir = path.join(root, 'os');
    this.statePath = path.join(this.dir, 'state.json');
    this.deploymentsDir = path.join(this.dir, 'deployments');
    this.layersDir = path.join(this.dir, 'layers');
    this.tmpDir = path.join(this.dir, 'tmp');
    this.scratchDir = path.join(this.dir, 'scratch');
    this.lastUpgradePath = path.join(this.dir, 'last-upgrade.json');
    this.lockPath = path.join(this.dir, 'lock');
    this.kernelsDir = path.join(this.dir, 'kernels');
    this.bootConfPath = path.join(this.dir, 'boot.conf');
  }

  deploymentPath(id: string): string {
    checkId(id);
    return path.join(this.deploymentsDir, `${id}.json`);
  }

  /** os/layers/<hex>.<format> for a "sha256:<hex>" diffID. */
  layerPath(diffID: string, format: LayerFormat = LEGACY_LAYER_FORMAT): string {
    return path.join(this.layersDir, `${diffHex(diffID)}.${format}`);
  }

  /**
   * The file that holds a layer, in whichever format it was written (a disk upgraded after a
   * --layer-format change holds both), or undefined. squashfs first: the older kind.
   */
  async findLayer(diffID: string): Promise<{ file: string; format: LayerFormat } | undefined> {
    for (const format of LAYER_FORMATS) {
      const file = this.layerPath(diffID, format);
      if (await fsp.stat(file).then((s) => s.isFile(), () => false)) return { file, format };
    }
    return undefined;
  }

  /** The state, or a clear error when this root is not an updatable machine's data partition. */
  async readState(): Promise<OsState> {
    let state: OsState | undefined;
    try {
      state = await readJsonIfExists<OsState>(this.statePath);
    } catch (e) {
      throw new UserError(`${this.statePath} is not valid JSON: ${(e as Error).message}`, { cause: e });
    }
    if (!state) throw new UserError(`${this.statePath} not found: ${this.root} is not the data partition of a disk made with drydock disk --updates-from`);
    return checkState(state, this.statePath);
  }

  /** Replaces state.json atomically (temp, fsync, rename, fsync dir). */
  async writeState(state: OsState): Promise<void> {
    checkState(state, 'new state');
    await writeJsonAtomic(this.statePath, state);
  }

  /**
   * Reads state.json, applies `change` and writes the result, holding state.json.lock: the
   * directory lock the initramfs and the init's shell writers take too (src/boot/osstate.ts), so
   * a confirm written by the shell between our read and our write is never lost.
   */
  async updateState(change: (s: OsState) => OsState | Promise<OsState>): Promise<OsState> {
    const lock = `${this.statePath}.lock`;
    for (let tries = 0; ; tries++) {
      try { await fsp.mkdir(lock); break; } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
        // The shell writers hold it for one awk run; after 10 s it is a killed writer's.
        if (tries >= 100) break;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    try {
      const next = await change(await this.readState());
      await this.writeState(next);
      return next;
    } finally {
      await fsp.rmdir(lock).catch(() => {});
    }
  }

  async readDeployment(id: string): Promise<Deployment> {
    const d = await readJsonIfExists<Deployment>(this.deploymentPath(id)).catch((e) => {
      throw new UserError(`deployment ${id}: ${(e as Error).message}`, { cause: e });
    });
    if (!d) throw new UserError(`deployment ${id} not found in ${this.deploymentsDir}`);
    return d;
  }

  /** Writes a new deployment file. Existing ones are never rewritten: their ids are taken. */
  async writeDeployment(d: Deployment): Promise<void> {
    const file = this.deploymentPath(d.id);
    if (await fsp.lstat(file).then(() => true, () => false)) throw new UserError(`deployment ${d.id} already exists`);
    await writeJsonAtomic(file, d);
  }

  /** Ids of every complete deployment file (temp files of an interrupted write are not). */
  async deploymentIds(): Promise<string[]> {
    const names = await fsp.readdir(this.deploymentsDir).catch(() => [] as string[]);
    return names.filter((n) => /^[0-9a-f]{12}(-\d+)?\.json$/.test(n)).map((n) => n.slice(0, -5)).sort();
  }

  /** A fresh id for a manifest: its first 12 hex digits, then -2, -3, … when taken. */
  async newDeploymentId(manifestDigest: string): Promise<string> {
    const base = diffHex(manifestDigest).slice(0, 12);
    const taken = new Set(await this.deploymentIds());
    if (!taken.has(base)) return base;
    for (let n = 2; ; n++) if (!taken.has(`${base}-${n}`)) return `${base}-${n}`;
  }

  async hasLayer(diffID: string): Promise<boolean> {
    return (await this.findLayer(diffID)) !== undefined;
  }

  async readLastUpgrade(): Promise<UpgradeRecord | undefined> {
    return readJsonIfExists<UpgradeRecord>(this.lastUpgradePath).catch(() => undefined);
  }

  async writeLastUpgrade(r: UpgradeRecord): Promise<void> {
    await writeJsonAtomic(this.lastUpgradePath, r);
  }

  /** Creates the directories of an empty data partition. */
  async create(): Promise<void> {
    for (const d of [this.dir, this.deploymentsDir, this.layersDir, path.join(this.dir, 'var'), path.join(this.dir, 'top')]) {
      await fsp.mkdir(d, { recursive: true });
    }
    await fsyncDir(this.root);
  }
}

/** What this state converts new layers to. */
export function layerFormatOf(state: Pick<OsState, 'layerFormat'>): LayerFormat {
  return state.layerFormat ?? LEGACY_LAYER_FORMAT;
}

/** A pending entry for `id`: tries and deadline from the flags, else from state.json, else 3 and 300 s. */
export function newPending(state: OsState, id: string, opts: { tries?: number; deadlineSeconds?: number } = {}): PendingDeployment {
  return {
    id,
    triesLeft: opts.tries ?? state.bootTries ?? DEFAULT_TRIES,
    deadlineSeconds: opts.deadlineSeconds ?? state.bootDeadlineSeconds ?? DEFAULT_DEADLINE_SECONDS,
  };
}

/** "sha256:<64 hex>" → the hex; anything else is refused (it becomes a file name). */
export function diffHex(digest: string): string {
  const m = /^sha256:([0-9a-f]{64})$/.exec(digest);
  if (!m) throw new UserError(`"${digest}" is not a sha256 digest`);
  return m[1]!;
}

function checkId(id: string): void {
  if (!/^[0-9a-f]{12}(-\d+)?$/.test(id)) throw new UserError(`"${id}" is not a deployment id`);
}

function checkState(s: OsState, where: string): OsState {
  const bad = (what: string) => new UserError(`${where}: ${what}`);
  if (!s || typeof s !== 'object') throw bad('not a JSON object');
  if (s.version !== 1) throw bad(`version ${String(s.version)} is not supported (this drydock reads version 1)`);
  if (typeof s.ref !== 'string' || !s.ref) throw bad('"ref" is missing');
  if (typeof s.default !== 'string') throw bad('"default" is missing');
  checkId(s.default);
  if (s.rollback !== null && s.rollback !== undefined) checkId(s.rollback);
  if (s.layerFormat !== undefined && !LAYER_FORMATS.includes(s.layerFormat)) {
    throw bad(`"layerFormat" ${JSON.stringify(s.layerFormat)} is not one of ${LAYER_FORMATS.join(', ')}`);
  }
  if (s.pending) {
    checkId(s.pending.id);
    if (!Number.isInteger(s.pending.triesLeft)) throw bad('"pending.triesLeft" is not an integer');
  }
  return {
    ...s,
    rollback: s.rollback ?? null,
    pending: s.pending ?? null,
    abandoned: Array.isArray(s.abandoned) ? s.abandoned : [],
    insecureRegistries: Array.isArray(s.insecureRegistries) ? s.insecureRegistries : [],
    authfile: s.authfile ?? null,
  };
}
