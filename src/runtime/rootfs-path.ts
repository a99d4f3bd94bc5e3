// Resolves a path inside a container rootfs the way the kernel would after chroot(rootfs):
// symlinks are followed but absolute targets and ".." are re-anchored at the rootfs, so reading
// an image's /etc/passwd (or copying files out with `cp`) can never escape to the host.
import { promises as fsp, lstatSync, readlinkSync } from 'node:fs';
import path from 'node:path';
import { UserError } from '../util/errors.js';

const MAX_LINKS = 40;

/**
 * Returns the host path that `inner` names inside `root`. Missing trailing components are
 * allowed (the result names where they would be created); a symlink loop is an error.
 * The lstat and readlink calls are synchronous: a few fast syscalls on the local rootfs, where
 * thread-pool round trips each waited for a CPU on a busy host (an ADD resolves its destination
 * three times before it extracts).
 */
export async function resolveInRoot(root: string, inner: string): Promise<string> {
  return resolveInRootSync(root, inner);
}

/** resolveInRoot, for callers that are synchronous themselves. */
export function resolveInRootSync(root: string, inner: string): string {
  const pending = inner.split('/').filter((c) => c && c !== '.');
  const resolved: string[] = [];
  let links = 0;
  while (pending.length) {
    const comp = pending.shift()!;
    if (comp === '..') { resolved.pop(); continue; }
    const candidate = path.join(root, ...resolved, comp);
    let st;
    try { st = lstatSync(candidate); } catch { resolved.push(comp, ...pending.filter((c) => c !== '.')); return normalise(root, resolved); }
    if (st.isSymbolicLink()) {
      if (++links > MAX_LINKS) throw new UserError(`too many levels of symbolic links resolving ${inner} in the container`);
      const target = readlinkSync(candidate);
      if (target.startsWith('/')) resolved.length = 0;
      pending.unshift(...target.split('/').filter((c) => c && c !== '.'));
      continue;
    }
    resolved.push(comp);
  }
  return normalise(root, resolved);
}

function normalise(root: string, comps: string[]): string {
  const out: string[] = [];
  for (const c of comps) { if (c === '..') out.pop(); else if (c && c !== '.') out.push(c); }
  return path.join(root, ...out);
}

/** Reads a text file inside the rootfs, or undefined when it does not exist. */
export async function readFileInRoot(root: string, inner: string): Promise<string | undefined> {
  try {
    return await fsp.readFile(await resolveInRoot(root, inner), 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR') return undefined;
    throw e;
  }
}

/** Where a working directory must not lead: procfs and the /dev links runc points into it. */
const REFUSED_WORKDIRS = ['/proc', '/dev/fd', '/dev/stdin', '/dev/stdout', '/dev/stderr'];

/**
 * Checks a working directory (WORKDIR, -w) by what it resolves to inside the rootfs, not by its
 * text: `/app` may be a symlink to /proc/self/fd/7, which in runc before 1.1.12 is a directory
 * of the host (CVE-2024-21626). Returns the resolved path inside the container.
 */
export async function checkWorkdir(root: string, cwd: string): Promise<string> {
  const inner = `/${path.relative(root, await resolveInRoot(root, path.posix.resolve('/', cwd)))}`.replace(/\/+$/, '') || '/';
  if (REFUSED_WORKDIRS.some((p) => inner === p || inner.startsWith(`${p}/`))) {
    throw new UserError(`working directory ${cwd} resolves to ${inner} in the container: a working directory under ${REFUSED_WORKDIRS.find((p) => inner === p || inner.startsWith(`${p}/`))} is refused (it could expose host file descriptors, CVE-2024-21626)`);
  }
  return inner;
}
