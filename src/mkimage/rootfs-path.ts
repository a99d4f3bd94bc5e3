// Writing into a root filesystem we did not make (a debootstrap tree, a user's prepared rootfs)
// must not follow its symlinks out of it: an image with `usr -> /` would otherwise have us
// write into the host. Paths are resolved chroot-style by the runtime's resolveInRoot, so an
// absolute symlink in the image points inside the image, as it will in the container.
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { resolveInRoot } from '../runtime/rootfs-path.js';

/**
 * The host path of `rel` inside `rootfs`, with its parent directories created. The last
 * component is not followed, so replacing a symlink (etc/localtime) replaces the link itself.
 */
export async function insideRootfs(rootfs: string, rel: string): Promise<string> {
  const parent = await resolveInRoot(rootfs, path.posix.dirname(rel));
  await fsp.mkdir(parent, { recursive: true });
  return path.join(parent, path.posix.basename(rel));
}

/** Writes a file in the rootfs, replacing a file or symlink already there. */
export async function writeRootfsFile(rootfs: string, rel: string, content: string | Buffer, mode = 0o644): Promise<void> {
  const p = await insideRootfs(rootfs, rel);
  await fsp.rm(p, { force: true });
  await fsp.writeFile(p, content, { mode });
  await fsp.chmod(p, mode);
}

export async function symlinkInRootfs(rootfs: string, rel: string, target: string): Promise<void> {
  const p = await insideRootfs(rootfs, rel);
  await fsp.rm(p, { force: true });
  await fsp.symlink(target, p);
}

/** Removes the entries inside a directory of the rootfs but keeps the directory itself. */
export async function emptyRootfsDir(rootfs: string, rel: string, keep: (name: string) => boolean = () => false): Promise<void> {
  const dir = await resolveInRoot(rootfs, rel);
  const st = await fsp.lstat(dir).catch(() => undefined);
  if (!st?.isDirectory()) return;
  for (const name of await fsp.readdir(dir)) {
    if (keep(name)) continue;
    await fsp.rm(path.join(dir, name), { recursive: true, force: true });
  }
}
