// `drydock cp`: files between a container and the host, in both directions and as tar streams.
// Everything that touches the container's rootfs runs chrooted into it (chroot-tar.ts), so a
// container that swaps directories for symlinks while the copy runs cannot redirect a read or a
// write to the host. The host side is trusted: GNU tar archives the host files going in and
// extracts the stream coming out (it refuses `..` members and defers absolute symlinks).
import { spawn } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { UserError } from '../util/errors.js';
import { findContainer } from './containers.js';
import { ensureMounted } from './runner.js';
import { chrootTar } from './chroot-tar.js';

/** `CTR:path` → container ref and path, else undefined (a host path). */
export function splitContainerPath(arg: string): { ref: string; path: string } | undefined {
  const m = arg.match(/^([a-zA-Z0-9][a-zA-Z0-9_.-]*):(.*)$/);
  if (!m || arg.startsWith('/') || arg.startsWith('.')) return undefined;
  return { ref: m[1]!, path: m[2] || '/' };
}

export interface CopyStreams { stdout?: NodeJS.WritableStream; stdin?: NodeJS.ReadableStream }

/** docker cp: exactly one of `src` and `dst` is CTR:PATH; `-` is a tar stream on stdin/stdout. */
export async function copy(src: string, dst: string, o: CopyStreams = {}): Promise<void> {
  const from = splitContainerPath(src);
  const to = splitContainerPath(dst);
  if (from && to) throw new UserError('copying between containers is not supported; copy to the host first');
  if (!from && !to) throw new UserError('one of source or destination must be a container path (CTR:PATH)');
  if (from) return copyOut(from, dst, o);
  return copyIn(src, to!, o);
}

async function copyOut(from: { ref: string; path: string }, dst: string, o: CopyStreams): Promise<void> {
  const rootfs = await ensureMounted(await findContainer(from.ref));
  const kind = (await chrootTar(rootfs, ['stat', from.path])).trim();
  if (kind === 'missing') throw new UserError(`Could not find the file ${from.path} in container ${from.ref}`);
  const name = path.posix.basename(from.path.replace(/\/+$/, '')) || '.';
  if (dst === '-') {
    await chrootTar(rootfs, ['create', from.path, name], { stdout: o.stdout ?? process.stdout });
    return;
  }
  const dstStat = await fsp.stat(dst).catch(() => undefined);
  if (dst.endsWith('/') && !dstStat) throw new UserError(`destination directory ${dst} does not exist`);
  const contents = kind === 'dir' && /(^|\/)\.$/.test(from.path);
  const target = contents || !dstStat?.isDirectory() ? dst : path.join(dst, name);
  if (kind === 'dir' && !contents && dstStat && !dstStat.isDirectory()) throw new UserError(`cannot copy a directory to a file: ${dst}`);
  let hostDir: string;
  let arcname: string;
  if (contents) { await fsp.mkdir(target, { recursive: true }); hostDir = target; arcname = '.'; }
  else { hostDir = path.dirname(path.resolve(target)); arcname = path.basename(target); }
  const untar = spawn('tar', ['-x', '-f', '-', '-C', hostDir], { stdio: ['pipe', 'ignore', 'pipe'] });
  let err = '';
  untar.stderr!.on('data', (d) => (err += d));
  const untarDone = new Promise<number>((r) => untar.on('close', (c) => r(c ?? 1)));
  try {
    await chrootTar(rootfs, ['create', from.path, arcname], { stdout: untar.stdin! });
  } finally {
    untar.stdin!.end();
  }
  if ((await untarDone) !== 0) throw new UserError(`cp: tar: ${err.trim()}`);
}

async function copyIn(src: string, to: { ref: string; path: string }, o: CopyStreams): Promise<void> {
  const rootfs = await ensureMounted(await findContainer(to.ref));
  const kindOf = async (p: string) => (await chrootTar(rootfs, ['stat', p])).trim();
  if (src === '-') {
    if ((await kindOf(to.path)) !== 'dir') throw new UserError(`destination ${to.path} must be a directory when copying a tar stream from stdin`);
    await chrootTar(rootfs, ['extract', to.path], { stdin: o.stdin ?? process.stdin });
    return;
  }
  const hostSrc = path.resolve(src);
  const srcStat = await fsp.lstat(hostSrc).catch(() => undefined);
  if (!srcStat) throw new UserError(`no such file or directory: ${src}`);
  const contents = srcStat.isDirectory() && /(^|\/)\.$/.test(src);
  const targetKind = await kindOf(to.path);
  let dir: string;
  let name: string;
  if (contents) { dir = to.path; name = '.'; await chrootTar(rootfs, ['mkdir', dir]); }
  else if (targetKind === 'dir') { dir = to.path; name = path.basename(hostSrc); }
  else {
    if (to.path.endsWith('/')) throw new UserError(`destination directory ${to.path} does not exist in the container`);
    dir = path.posix.dirname(to.path); name = path.posix.basename(to.path);
    if ((await kindOf(dir)) !== 'dir') throw new UserError(`destination directory ${dir} does not exist in the container`);
  }
  const tarArgs = ['-C', contents ? hostSrc : path.dirname(hostSrc), '-cf', '-', '--', contents ? '.' : path.basename(hostSrc)];
  if (!contents && name !== path.basename(hostSrc)) tarArgs.unshift('--transform', `s|^${escapeRe(path.basename(hostSrc))}|${escapeRe(name)}|`);
  const child = spawn('tar', tarArgs, { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stderr.on('data', (d) => (err += d));
  // Attach a reader at once: Node discards a child's unread stdout when the child exits.
  const tarStream = child.stdout.pipe(new PassThrough({ highWaterMark: 1 << 20 }));
  const tarDone = new Promise<number>((r) => child.on('close', (c) => r(c ?? 1)));
  await chrootTar(rootfs, ['extract', dir], { stdin: tarStream });
  if ((await tarDone) !== 0) throw new UserError(`tar: ${err.trim()}`);
}

function escapeRe(s: string): string {
  return s.replace(/[|\\^$.*+?()[\]{}]/g, '\\$&');
}
