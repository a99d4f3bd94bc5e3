// mount(2) and umount2(2) called in this process through koffi (an FFI to libc), instead of
// exec'ing mount(8)/umount(8): every build step and container mounts and unmounts an overlay,
// and the two execs cost about 10-30 ms a step where the syscalls take well under 1 ms. Node has
// no mount binding; a C helper would need a compiler on every machine, and letting runc mount
// the overlay would leave COPY/ADD steps (which never start runc) and the rootfs checks before a
// RUN without a host-side view. The calls are synchronous: an overlay mount or a volatile
// unmount returns in microseconds.
import os from 'node:os';
import { createRequire } from 'node:module';

/** umount2 flag: detach now, clean up once the mount is no longer busy (umount -l). */
export const MNT_DETACH = 2;

interface Libc {
  mount(source: string, target: string, fstype: string, flags: number, data: string | null): number;
  umount2(target: string, flags: number): number;
  errno(): number;
}

let libc: Libc | undefined;

export type Koffi = Pick<typeof import('koffi'), 'load' | 'errno'>;

/**
 * koffi's addon. Its package index first reads node's ELF headers to tell glibc from musl and
 * then picks the platform package's binary (10-15 ms, more than the two execs a one-step build
 * saves); on glibc Linux that binary is linux_<arch>/koffi.node, loaded directly here (3-5 ms).
 * Anywhere else, or if that path ever moves, the package index finds it.
 */
export function loadKoffi(): Koffi {
  // koffi is CommonJS with a native addon; the CLI bundles keep it external. From the module's
  // path where there is one (Node 20.11+, the bundles): createRequire parses a URL in ~0.3 ms.
  const require = createRequire(import.meta.filename ?? import.meta.url);
  if (process.platform === 'linux') {
    try { return require(`@koromix/koffi-linux-${process.arch}/linux_${process.arch}/koffi.node`) as Koffi; } catch { /* musl, or another layout */ }
  }
  return require('koffi') as Koffi;
}

/** Where loadKoffi finds the addon, for a child process that needs the same FFI (seccomp.ts's ABI probe). */
export function koffiPath(): string {
  const require = createRequire(import.meta.url);
  if (process.platform === 'linux') {
    try { return require.resolve(`@koromix/koffi-linux-${process.arch}/linux_${process.arch}/koffi.node`); } catch { /* musl, or another layout */ }
  }
  return require.resolve('koffi');
}

function load(): Libc {
  if (libc) return libc;
  const koffi = loadKoffi();
  const lib = koffi.load('libc.so.6');
  const mount = lib.func('int mount(const char *source, const char *target, const char *fstype, unsigned long flags, const char *data)');
  const umount2 = lib.func('int umount2(const char *target, int flags)');
  libc = { mount: (...a) => mount(...a) as number, umount2: (...a) => umount2(...a) as number, errno: () => koffi.errno() };
  return libc;
}

/** An errno as an Error with Node's code ("EINVAL") and the C library's text. */
export class SyscallError extends Error {
  constructor(readonly syscall: string, readonly errno: number) {
    super(`${syscall}: ${describeErrno(errno)} (${errnoName(errno)})`);
    this.name = 'SyscallError';
    this.code = errnoName(errno);
  }
  readonly code: string;
}

function errnoName(n: number): string {
  return Object.entries(os.constants.errno).find(([, v]) => v === n)?.[0] ?? `errno ${n}`;
}

/** The texts mount(8) users know, for the errors an overlay mount gives. */
const ERRNO_TEXT: Record<string, string> = {
  EPERM: 'operation not permitted', ENOENT: 'no such file or directory', EINVAL: 'invalid argument (wrong fs type, bad option or not a mount point)',
  EBUSY: 'target is busy', ENODEV: 'unknown filesystem type', ENOTDIR: 'not a directory', ELOOP: 'too many levels of symbolic links',
  EACCES: 'permission denied', ENOTBLK: 'block device required', ENOMEM: 'out of memory', ENAMETOOLONG: 'file name too long', EIO: 'input/output error',
};

function describeErrno(n: number): string {
  return ERRNO_TEXT[errnoName(n)] ?? errnoName(n);
}

export function mountSyscall(source: string, target: string, fstype: string, flags: number, data: string | null): void {
  const c = load();
  if (c.mount(source, target, fstype, flags, data) !== 0) throw new SyscallError('mount', c.errno());
}

export function umountSyscall(target: string, flags = 0): void {
  const c = load();
  if (c.umount2(target, flags) !== 0) throw new SyscallError('umount2', c.errno());
}
