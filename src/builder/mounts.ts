// RUN --mount=type=cache|bind|secret|ssh|tmpfs → OCI mounts. Everything is mounted by runc, which
// creates mount points inside the rootfs only (securejoin); the mount points it had to create
// are removed from the upper dir afterwards so they never end up in the layer.
import { lstatSync, readdirSync, rmdirSync, unlinkSync } from 'node:fs';
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
 * Synchronous: a few dozen lstats of cached entries take well under a millisecond here, where as
 * fs.promises calls they were chains of thread-pool round trips between `runc run`'s exit and
 * the step's snapshot (2-3 ms, more on a busy host). Two targets that share a created parent
 * (/etc/hosts, /etc/hostname) both look at it; the second finds it gone, which is not an error.
 */
export async function removeMountpoints(upperDir: string, lowerDirs: string[], targets: string[]): Promise<void> {
  const lstatOrUndefined = (p: string) => { try { return lstatSync(p); } catch { return undefined; } };
  const inLower = (rel: string) => lowerDirs.some((l) => lstatOrUndefined(path.join(l, rel)) !== undefined);
  const sameAsLower = (rel: string, st: { mode: number; uid: number; gid: number }) => {
    for (const l of [...lowerDirs].reverse()) {
      const ls = lstatOrUndefined(path.join(l, rel));
      if (ls) return ls.isDirectory() && ls.mode === st.mode && ls.uid === st.uid && ls.gid === st.gid;
    }
    return false;
  };
  const raced = (e: unknown) => { const code = (e as NodeJS.ErrnoException).code; if (code !== 'ENOENT' && code !== 'ENOTEMPTY') throw e; };
  const isEmptyDir = (p: string) => { try { return readdirSync(p).length === 0; } catch (e) { raced(e); return false; } };
  const removeDir = (p: string) => { try { rmdirSync(p); } catch (e) { raced(e); } };
  for (const target of targets) {
    let rel = path.posix.normalize(target).replace(/^\/+/, '');
    while (rel && rel !== '.') {
      const p = path.join(upperDir, rel);
      const st = lstatOrUndefined(p);
      if (!st) break;
      if (inLower(rel)) {
        // A parent the mount point forced overlay to copy up: drop it when nothing else changed.
        if (st.isDirectory() && isEmptyDir(p) && sameAsLower(rel, st)) removeDir(p);
        break;
      }
      if (st.isDirectory()) {
        if (!isEmptyDir(p)) break;
        removeDir(p);
      } else if (st.isFile() && st.size === 0) {
        try { unlinkSync(p); } catch (e) { raced(e); }
      } else break;
      rel = path.posix.dirname(rel);
    }
  }
}
