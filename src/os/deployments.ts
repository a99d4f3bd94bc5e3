// `drydock os status | rollback | confirm`: what boots next, and the step after a good boot. Every
// change is one state.json rename; cleanup runs after it, so a crash mid-cleanup leaves only
// files nothing names, which the next confirm removes.
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { UserError } from '../util/errors.js';
import { fsyncDir } from '../util/fs.js';
import { OsLayout, diffHex, newPending, type AbandonedDeployment, type Deployment, type OsState, type UpgradeRecord } from './layout.js';
import { withLock } from './lock.js';
import { unusedKernelFiles } from './kernel.js';
import { sweepOrphans } from '../runtime/orphans.js';

export interface DeploymentStatus extends Deployment {
  /** Roles of this deployment: booted (runs now), staged (next boot), default, rollback. */
  roles: ('booted' | 'staged' | 'default' | 'rollback')[];
}

export interface OsStatus {
  root: string;
  ref: string;
  booted: string | null;
  /** The deployment the next boot starts (the staged one when there is one, else the default). */
  next: string;
  default: string;
  rollback: string | null;
  staged: (DeploymentStatus & { triesLeft: number; deadlineSeconds: number }) | null;
  deployments: DeploymentStatus[];
  abandoned: AbandonedDeployment[];
  lastUpgrade: UpgradeRecord | null;
}

export async function status(root: string): Promise<OsStatus> {
  const layout = new OsLayout(root);
  const state = await layout.readState();
  const ids = [...new Set([state.booted, state.pending?.id, state.default, state.rollback].filter((x): x is string => !!x))];
  const deployments: DeploymentStatus[] = [];
  for (const id of ids) {
    const d = await layout.readDeployment(id);
    const roles: DeploymentStatus['roles'] = [];
    if (state.booted === id) roles.push('booted');
    if (state.pending?.id === id) roles.push('staged');
    if (state.default === id) roles.push('default');
    if (state.rollback === id) roles.push('rollback');
    deployments.push({ ...d, roles });
  }
  const staged = state.pending ? { ...deployments.find((d) => d.id === state.pending!.id)!, triesLeft: state.pending.triesLeft, deadlineSeconds: state.pending.deadlineSeconds } : null;
  return {
    root: layout.root, ref: state.ref, booted: state.booted ?? null, next: state.pending?.id ?? state.default,
    default: state.default, rollback: state.rollback, staged, deployments, abandoned: state.abandoned,
    lastUpgrade: (await layout.readLastUpgrade()) ?? null,
  };
}

export interface RollbackResult {
  /** staged: the rollback deployment boots next (and becomes the default once it boots well);
   *  reverted: the unconfirmed deployment running now is dropped, the default boots next;
   *  discarded: a staged deployment that never booted is dropped. */
  action: 'staged' | 'reverted' | 'discarded';
  next: string;
  state: OsState;
}

export async function rollback(root: string, opts: { tries?: number; deadlineSeconds?: number } = {}): Promise<RollbackResult> {
  const layout = new OsLayout(root);
  return withLock(layout.lockPath, async () => {
    let action: RollbackResult['action'] = 'staged';
    const next = await layout.updateState(async (state) => {
      if (state.pending && state.booted === state.pending.id && state.pending.id !== state.default) {
        // This boot runs a new deployment not confirmed yet: the default is the previous one.
        action = 'reverted';
        return { ...state, rollback: state.pending.id, pending: null };
      }
      if (state.pending) {
        action = 'discarded';
        return { ...state, pending: null };
      }
      if (!state.rollback) throw new UserError('no rollback deployment: this machine has booted only one deployment');
      await layout.readDeployment(state.rollback);
      action = 'staged';
      return { ...state, pending: newPending(state, state.rollback, opts) };
    });
    return { action, next: next.pending?.id ?? next.default, state: next };
  });
}

export interface ConfirmResult {
  /** The deployment promoted to default, when this boot ran the pending one. */
  promoted: string | null;
  removedDeployments: string[];
  removedLayers: string[];
  state: OsState;
}

/**
 * This boot reached "service started": when it runs the pending deployment, that becomes the
 * default and the old default the rollback. Then everything beyond default, rollback, the staged
 * and the booted deployment is deleted, with the layers only they used.
 */
export async function confirm(root: string): Promise<ConfirmResult> {
  const layout = new OsLayout(root);
  return withLock(layout.lockPath, async () => {
    let state = await layout.readState();
    let promoted: string | null = null;
    const booted = (st: OsState) => !!st.pending && st.booted === st.pending.id;
    if (booted(state)) {
      state = await layout.updateState((s) => {
        if (!booted(s)) return s;
        promoted = s.pending!.id;
        return s.pending!.id === s.default ? { ...s, pending: null } : { ...s, default: s.pending!.id, rollback: s.default, pending: null };
      });
    }
    return { promoted, ...(await cleanup(layout, state)), state };
  });
}

/** Deletes deployments and layers `state` does not keep, and leftovers of interrupted writes. */
async function cleanup(layout: OsLayout, state: OsState): Promise<{ removedDeployments: string[]; removedLayers: string[] }> {
  const keep = new Set([state.default, state.rollback, state.pending?.id, state.booted].filter((x): x is string => !!x));
  const layers = new Set<string>();
  const kernels: Deployment['kernel'][] = [];
  for (const id of keep) {
    const d = await layout.readDeployment(id);
    for (const l of d.layers) layers.add(diffHex(l));
    kernels.push(d.kernel);
  }
  const removedDeployments: string[] = [];
  for (const name of await fsp.readdir(layout.deploymentsDir)) {
    const id = name.replace(/\.json$/, '');
    if (keep.has(id)) continue;
    await fsp.rm(path.join(layout.deploymentsDir, name), { force: true });
    if (name.endsWith('.json') && !name.startsWith('.')) removedDeployments.push(id);
  }
  await fsyncDir(layout.deploymentsDir);
  const removedLayers: string[] = [];
  for (const name of await fsp.readdir(layout.layersDir)) {
    // Kept by diffID whatever the file type (.squashfs, or .erofs from the disk builder).
    if (!name.startsWith('.') && layers.has(name.replace(/\..*$/, ''))) continue;
    await fsp.rm(path.join(layout.layersDir, name), { recursive: true, force: true });
    if (!name.startsWith('.')) removedLayers.push(`sha256:${name.replace(/\.[a-z]+$/, '')}`);
  }
  await fsyncDir(layout.layersDir);
  // Kernels only deleted deployments used (and temp files of an interrupted staging).
  const unusedKernels = await unusedKernelFiles(layout, kernels);
  for (const f of unusedKernels) await fsp.rm(f, { force: true });
  if (unusedKernels.length) await fsyncDir(layout.kernelsDir);
  await fsp.rm(layout.tmpDir, { recursive: true, force: true });
  await sweepOrphans(layout.scratchDir);
  return { removedDeployments, removedLayers };
}
