// Named volumes: $DRYDOCK_ROOT/volumes/<name>/_data, like Docker's local driver. A volume that is
// new and mounted over a path the image populates is first filled with the image's content.
import { promises as fsp } from 'node:fs';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { defaultRoot } from '../store/content-store.js';
import { readJsonIfExists, writeJsonAtomic } from '../util/fs.js';
import { NotFoundError, UserError } from '../util/errors.js';
import { listContainers } from './containers.js';

const run = promisify(execFile);

export interface VolumeInfo {
  Name: string;
  Driver: 'local';
  Mountpoint: string;
  CreatedAt: string;
  Labels: Record<string, string>;
  Scope: 'local';
  Anonymous?: boolean;
}

export function volumesDir(root = defaultRoot()): string {
  return path.join(root, 'volumes');
}

export function validateVolumeName(name: string): string {
  if (!/^[a-zA-Z0-9][a-zA-Z0-9_.-]+$/.test(name)) throw new UserError(`invalid volume name "${name}": only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed, at least 2 characters`);
  return name;
}

export async function inspectVolume(name: string, root = defaultRoot()): Promise<VolumeInfo | undefined> {
  validateVolumeName(name);
  return readJsonIfExists<VolumeInfo>(path.join(volumesDir(root), name, 'volume.json'));
}

/** Creates a volume (idempotent); `created` tells whether it is new. */
export async function createVolume(name: string | undefined, opts: { labels?: Record<string, string>; anonymous?: boolean } = {}, root = defaultRoot()):
  Promise<{ volume: VolumeInfo; created: boolean }> {
  const volName = validateVolumeName(name ?? randomBytes(32).toString('hex'));
  const existing = await inspectVolume(volName, root);
  if (existing) return { volume: existing, created: false };
  const dir = path.join(volumesDir(root), volName);
  await fsp.mkdir(path.join(dir, '_data'), { recursive: true, mode: 0o755 });
  const volume: VolumeInfo = {
    Name: volName, Driver: 'local', Mountpoint: path.join(dir, '_data'), CreatedAt: new Date().toISOString(),
    Labels: opts.labels ?? {}, Scope: 'local', ...(opts.anonymous ? { Anonymous: true } : {}),
  };
  await writeJsonAtomic(path.join(dir, 'volume.json'), volume);
  return { volume, created: true };
}

export async function listVolumes(root = defaultRoot()): Promise<VolumeInfo[]> {
  const out: VolumeInfo[] = [];
  for (const n of await fsp.readdir(volumesDir(root)).catch(() => [] as string[])) {
    const v = await readJsonIfExists<VolumeInfo>(path.join(volumesDir(root), n, 'volume.json')).catch(() => undefined);
    if (v) out.push(v);
  }
  return out.sort((a, b) => a.Name.localeCompare(b.Name));
}

/** Containers (ids) that mount the volume. */
export async function volumeUsers(name: string, root = defaultRoot()): Promise<string[]> {
  return (await listContainers(root)).filter((c) => c.record.HostConfig.Mounts.some((m) => m.Type === 'volume' && m.Source === name)).map((c) => c.record.Id);
}

export async function removeVolume(name: string, opts: { force?: boolean } = {}, root = defaultRoot()): Promise<void> {
  if (!(await inspectVolume(name, root))) throw new NotFoundError(`no such volume: ${name}`);
  const users = await volumeUsers(name, root);
  if (users.length && !opts.force) throw new UserError(`remove ${name}: volume is in use - [${users.map((u) => u.slice(0, 12)).join(', ')}]`, 1);
  await fsp.rm(path.join(volumesDir(root), name), { recursive: true, force: true });
}

/** Docker copies the image's content at the mount point into a new, empty volume. */
export async function seedVolume(mountpoint: string, imagePath: string): Promise<void> {
  const st = await fsp.lstat(imagePath).catch(() => undefined);
  if (!st?.isDirectory()) return;
  const entries = await fsp.readdir(mountpoint);
  if (entries.length) return;
  await run('cp', ['-a', '--', `${imagePath}/.`, mountpoint]).catch((e) => {
    throw new UserError(`cannot copy image content into the new volume: ${String(e.stderr ?? e.message).trim()}`, { cause: e });
  });
}
