// RUN --mount=type=cache|bind|secret|ssh|tmpfs → OCI mounts. Everything is mounted by runc, which
// creates mount points inside the rootfs only (securejoin); the mount points it had to create
// are removed from the upper dir afterwards so they never end up in the layer.
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';
import type { OciMount } from '../runtime/index.js';
import { UserError } from '../util/errors.js';

export interface MountRequest {
  type: 'cache' | 'bind' | 'secret' | 'ssh' | 'tmpfs';
  target: string;
  source?: string;
  from?: string;
  id?: string;
  readonly: boolean;
  required?: boolean;
  /** The flag text after expansion, for the cache key. */
  text: string;
}

/** Where BuildKit binds the first forwarded SSH agent socket (and points SSH_AUTH_SOCK). */
export const SSH_AGENT_TARGET = '/run/buildkit/ssh_agent.0';

export function parseMountFlag(text: string): MountRequest {
  const fields = new Map<string, string>();
  for (const part of text.split(',')) {
    if (!part) continue;
    const eq = part.indexOf('=');
    const k = (eq < 0 ? part : part.slice(0, eq)).trim().toLowerCase();
    fields.set(k, eq < 0 ? 'true' : part.slice(eq + 1));
  }
  const type = (fields.get('type') ?? 'bind') as MountRequest['type'];
  if (!['cache', 'bind', 'secret', 'ssh', 'tmpfs'].includes(type)) throw new UserError(`unsupported mount type "${type}" (cache, bind, secret, ssh, tmpfs)`);
  // An ssh mount forwards the agent given as --ssh ID (default "default") where BuildKit puts it.
  const id = fields.get('id') ?? (type === 'ssh' ? 'default' : undefined);
  let target = fields.get('target') ?? fields.get('dst') ?? fields.get('destination');
  if (!target && type === 'secret' && id) target = `/run/secrets/${id}`;
  if (!target && type === 'ssh') target = SSH_AGENT_TARGET;
  if (!target) throw new UserError(`--mount=${text}: target is required`);
  if (!target.startsWith('/')) target = `/${target}`;
  const ro = fields.get('ro') ?? fields.get('readonly');
  const rw = fields.get('rw') ?? fields.get('readwrite');
  const readonly = type === 'secret' || type === 'ssh' || (type === 'bind' ? rw !== 'true' : ro === 'true');
  return {
    type, target: path.posix.normalize(target), source: fields.get('source') ?? fields.get('src'), from: fields.get('from'), id, readonly,
    required: fields.get('required') === 'true', text,
  };
}

/** Host dir of a cache mount: keyed by its id (default: the target), shared across builds. */
export function cacheMountDir(storeRoot: string, m: MountRequest): string {
  const id = m.id ?? m.target;
  return path.join(storeRoot, 'cache', 'mounts', createHash('sha256').update(id).digest('hex').slice(0, 32));
}

export function ociMount(m: MountRequest, hostSource: string | undefined): OciMount {
  if (m.type === 'tmpfs') return { destination: m.target, type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', 'mode=1777'] };
  return { destination: m.target, type: 'bind', source: hostSource!, options: ['rbind', 'rprivate', m.readonly ? 'ro' : 'rw'] };
}

/**
 * Deletes, from the upper dir, mount points runc created for this run (empty files or dirs that
 * do not exist in any lower dir), then parents that became empty and were created the same way.
 * The targets are handled at once (each is a few lstats, a round trip each); two that share a
 * created parent (/etc/hosts, /etc/hostname) may both find it empty, so a removal that finds its
 * entry gone already, or the dir no longer empty, is not an error.
 */
export async function removeMountpoints(upperDir: string, lowerDirs: string[], targets: string[]): Promise<void> {
  const inLower = async (rel: string) => (await Promise.all(lowerDirs.map((l) => fsp.lstat(path.join(l, rel)).then(() => true, () => false)))).includes(true);
  const sameAsLower = async (rel: string, st: { mode: number; uid: number; gid: number }) => {
    for (const l of [...lowerDirs].reverse()) {
      const ls = await fsp.lstat(path.join(l, rel)).catch(() => undefined);
      if (ls) return ls.isDirectory() && ls.mode === st.mode && ls.uid === st.uid && ls.gid === st.gid;
    }
    return false;
  };
  const raced = (e: NodeJS.ErrnoException) => { if (e.code !== 'ENOENT' && e.code !== 'ENOTEMPTY') throw e; };
  const isEmptyDir = async (p: string) => (await fsp.readdir(p).catch((e: NodeJS.ErrnoException) => { raced(e); return ['gone']; })).length === 0;
  await Promise.all(targets.map(async (target) => {
    let rel = path.posix.normalize(target).replace(/^\/+/, '');
    while (rel && rel !== '.') {
      const p = path.join(upperDir, rel);
      const st = await fsp.lstat(p).catch(() => undefined);
      if (!st) break;
      if (await inLower(rel)) {
        // A parent the mount point forced overlay to copy up: drop it when nothing else changed.
        if (st.isDirectory() && (await isEmptyDir(p)) && (await sameAsLower(rel, st))) await fsp.rmdir(p).catch(raced);
        break;
      }
      if (st.isDirectory()) {
        if (!(await isEmptyDir(p))) break;
        await fsp.rmdir(p).catch(raced);
      } else if (st.isFile() && st.size === 0) {
        await fsp.rm(p).catch(raced);
      } else break;
      rel = path.posix.dirname(rel);
    }
  }));
}
