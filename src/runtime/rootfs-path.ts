// Resolves a path inside a container rootfs the way the kernel would after chroot(rootfs):
// symlinks are followed but absolute targets and ".." are re-anchored at the rootfs, so reading
// an image's /etc/passwd (or copying files out with `cp`) can never escape to the host.
import { promises as fsp, chownSync, mkdirSync, readFileSync, readlinkSync, type Stats } from 'node:fs';
import path from 'node:path';
import { UserError } from '../util/errors.js';
import { lstatSyncOrUndefined, statSyncOrUndefined } from '../util/fs.js';

const MAX_LINKS = 40;

/** What the walk asks of the file system next: an lstat (undefined when it fails) or a readlink. */
type Probe = { lstat: string } | { readlink: string };

/**
 * resolveInRoot's walk, one file-system question at a time, so that the async and the
 * synchronous resolver are the same code.
 */
function* walkInRoot(root: string, inner: string): Generator<Probe, string, Stats | string | undefined> {
  const pending = inner.split('/').filter((c) => c && c !== '.');
  const resolved: string[] = [];
  let links = 0;
  while (pending.length) {
    const comp = pending.shift()!;
    if (comp === '..') { resolved.pop(); continue; }
    const candidate = path.join(root, ...resolved, comp);
    const st = (yield { lstat: candidate }) as Stats | undefined;
    if (!st) { resolved.push(comp, ...pending.filter((c) => c !== '.')); return normalise(root, resolved); }
    if (st.isSymbolicLink()) {
      if (++links > MAX_LINKS) throw new UserError(`too many levels of symbolic links resolving ${inner} in the container`);
      const target = (yield { readlink: candidate }) as string;
      if (target.startsWith('/')) resolved.length = 0;
      pending.unshift(...target.split('/').filter((c) => c && c !== '.'));
      continue;
    }
    resolved.push(comp);
  }
  return normalise(root, resolved);
}

/**
 * Returns the host path that `inner` names inside `root`. Missing trailing components are
 * allowed (the result names where they would be created); a symlink loop is an error.
 */
export async function resolveInRoot(root: string, inner: string): Promise<string> {
  const walk = walkInRoot(root, inner);
  for (let step = walk.next(); ; ) {
    if (step.done) return step.value;
    const probe = step.value;
    step = walk.next('lstat' in probe ? await fsp.lstat(probe.lstat).catch(() => undefined) : await fsp.readlink(probe.readlink));
  }
}

/**
 * resolveInRoot with synchronous calls: a RUN step's few lookups (its WORKDIR, /etc/passwd and
 * /etc/group) before `runc run` starts, where each thread-pool round trip would be time the
 * step waits.
 */
export function resolveInRootSync(root: string, inner: string): string {
  const walk = walkInRoot(root, inner);
  for (let step = walk.next(); ; ) {
    if (step.done) return step.value;
    const probe = step.value;
    step = walk.next('lstat' in probe ? lstatSyncOrUndefined(probe.lstat) : readlinkSync(probe.readlink));
  }
}

function normalise(root: string, comps: string[]): string {
  const out: string[] = [];
  for (const c of comps) { if (c === '..') out.pop(); else if (c && c !== '.') out.push(c); }
  return path.join(root, ...out);
}

/** A read of a file that is not there (or not a file) is undefined; other errors are thrown. */
function absentAsUndefined(e: unknown): undefined {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR') return undefined;
  throw e;
}

/** Reads a text file inside the rootfs, or undefined when it does not exist. */
export async function readFileInRoot(root: string, inner: string): Promise<string | undefined> {
  try {
    return await fsp.readFile(await resolveInRoot(root, inner), 'utf8');
  } catch (e) {
    return absentAsUndefined(e);
  }
}

/** readFileInRoot with synchronous calls. */
export function readFileInRootSync(root: string, inner: string): string | undefined {
  try {
    return readFileSync(resolveInRootSync(root, inner), 'utf8');
  } catch (e) {
    return absentAsUndefined(e);
  }
}

/**
 * Creates a directory (and missing parents) inside the rootfs, owned by `opts`' uid and gid
 * from the first new component down; a file in the way is an error.
 */
export function mkdirInRootSync(rootfs: string, inner: string, opts: { uid: number; gid: number }): void {
  const host = resolveInRootSync(rootfs, inner);
  const st = statSyncOrUndefined(host);
  if (st?.isDirectory()) return;
  if (st) throw new UserError(`cannot create directory ${inner}: a file with that name exists in the image`);
  const first = mkdirSync(host, { recursive: true, mode: 0o755 });
  if (first) {
    let p = host;
    const created: string[] = [];
    while (p.length >= first.length) { created.push(p); p = path.dirname(p); }
    for (const c of created) chownSync(c, opts.uid, opts.gid);
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
  return refuseWorkdir(cwd, await resolveInRoot(root, path.posix.resolve('/', cwd)), root);
}

/** checkWorkdir with synchronous calls (a RUN step's, before its container starts). */
export function checkWorkdirSync(root: string, cwd: string): string {
  return refuseWorkdir(cwd, resolveInRootSync(root, path.posix.resolve('/', cwd)), root);
}

/** The resolved working directory inside the container, unless it is under REFUSED_WORKDIRS. */
function refuseWorkdir(cwd: string, resolved: string, root: string): string {
  const inner = `/${path.relative(root, resolved)}`.replace(/\/+$/, '') || '/';
  if (REFUSED_WORKDIRS.some((p) => inner === p || inner.startsWith(`${p}/`))) {
    throw new UserError(`working directory ${cwd} resolves to ${inner} in the container: a working directory under ${REFUSED_WORKDIRS.find((p) => inner === p || inner.startsWith(`${p}/`))} is refused (it could expose host file descriptors, CVE-2024-21626)`);
  }
  return inner;
}
