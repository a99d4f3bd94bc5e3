// The container rootfs: an overlayfs whose lower dirs are the shared, unpacked-once layers and
// whose upper dir is the container's own writable layer (what `commit` and the builder's RUN
// turn into a new image layer).
import { promises as fsp, mkdirSync } from 'node:fs';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import path from 'node:path';
import { UserError } from '../util/errors.js';
import { mountSyscall, umountSyscall, MNT_DETACH } from './mount-syscall.js';

// Made on first use: promisify reads execFile, which loads node:child_process (a millisecond a
// build, which mounts with mount(2), does not need).
const run = (file: string, args: string[], opts: { cwd: string }) => promisify(execFile)(file, args, opts);

export interface MountedRootfs {
  /** The merged view: the container's root filesystem. */
  rootfs: string;
  /** The writable overlay upper dir (overlay-style whiteouts). */
  upperDir: string;
  unmount(): Promise<void>;
}

export interface MountRootfsOptions {
  /** Unpacked layer dirs, bottom to top (the order ensureLayersUnpacked returns). */
  lowerDirs: string[];
  /** A per-container dir; upper/, work/ and merged/ are created inside. */
  workDir: string;
  /**
   * Skip overlayfs' syncs of the upper dir (the `volatile` option): for throw-away containers
   * (--rm) whose writes never need to survive a crash. Unmounting then does not flush either.
   */
  volatile?: boolean;
}

/** The kernel takes mount data up to one page; longer lowerdir lists are mounted with relative paths. */
const MOUNT_DATA_LIMIT = 4000;

export async function mountRootfs(opts: MountRootfsOptions): Promise<MountedRootfs> {
  const workDir = path.resolve(opts.workDir);
  const upperDir = path.join(workDir, 'upper');
  const work = path.join(workDir, 'work');
  const merged = path.join(workDir, 'merged');
  // Synchronous: three mkdirs before every step's mount, a thread-pool round trip each otherwise.
  for (const d of [upperDir, work, merged]) mkdirSync(d, { recursive: true });
  let lowers = opts.lowerDirs.map((d) => path.resolve(d));
  if (lowers.length === 0) {
    // FROM scratch: overlayfs needs at least one lower dir.
    const empty = path.join(workDir, 'empty');
    await fsp.mkdir(empty, { recursive: true });
    lowers = [empty];
  }
  await mountOverlay(lowers, upperDir, work, merged, opts.volatile);
  return {
    rootfs: merged,
    upperDir,
    unmount: () => unmountPath(merged),
  };
}

/**
 * Mounts overlayfs at `merged`; overlay lists lowerdirs top-first, so the order is reversed.
 * When the options would exceed a page, the layers are named through short symlinks
 * (`<dir of merged>/l/<n>`, like podman) and every path is given relative to that dir, which
 * the mounting process uses as its cwd.
 */
export async function mountOverlay(lowersBottomUp: string[], upperDir: string, work: string, merged: string, volatile = false): Promise<void> {
  // The same layer twice (two steps that both left an empty layer) makes the kernel refuse the
  // mount with ELOOP. Only the topmost copy counts: a lower copy of identical content adds
  // nothing the top one does not already show or hide.
  const top = [...new Set([...lowersBottomUp].reverse())];
  let cwd: string | undefined;
  let data = `lowerdir=${top.join(':')},upperdir=${upperDir},workdir=${work}`;
  if (data.length > MOUNT_DATA_LIMIT) {
    cwd = path.dirname(merged);
    const links = path.join(cwd, 'l');
    await fsp.rm(links, { recursive: true, force: true });
    await fsp.mkdir(links);
    await Promise.all(top.map((d, i) => fsp.symlink(d, path.join(links, String(i)))));
    data = `lowerdir=${top.map((_, i) => `l/${i}`).join(':')},upperdir=${path.relative(cwd, upperDir)},workdir=${path.relative(cwd, work)}`;
    if (data.length > MOUNT_DATA_LIMIT) throw new UserError(`too many layers (${top.length}) for one overlay mount`);
  }
  if (volatile) data += ',volatile';
  try {
    // Paths relative to `cwd` need a process of their own to chdir in (this one's cwd is shared
    // with every async fs call in flight); absolute ones are mounted by this process.
    if (cwd) await run('mount', ['-t', 'overlay', 'overlay', '-o', data, merged], { cwd });
    else mountSyscall('overlay', merged, 'overlay', 0, data);
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new UserError(`cannot mount the container rootfs (overlayfs): ${(err.stderr || err.message).trim()}${process.getuid?.() !== 0 ? ' (drydock run needs root)' : ''}`);
  }
}

export async function isMountPoint(p: string): Promise<boolean> {
  const mounts = await fsp.readFile('/proc/self/mountinfo', 'utf8').catch(() => '');
  const target = path.resolve(p);
  return mounts.split('\n').some((l) => l.split(' ')[4] === target);
}

/** Unmounts if mounted (idempotent: a container cleaned after a crash may already be unmounted). */
export async function unmountPath(p: string): Promise<void> {
  try {
    umountSyscall(p);
  } catch (e) {
    if (!(await isMountPoint(p))) return;
    // Busy (a process still has a file open below it): detach now, like umount -l.
    try { umountSyscall(p, MNT_DETACH); } catch { throw new UserError(`cannot unmount ${p}: ${(e as Error).message}`); }
  }
}
