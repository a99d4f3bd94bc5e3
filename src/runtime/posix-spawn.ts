// Starting a child through posix_spawn(3) (glibc: clone with CLONE_VM|CLONE_VFORK, then exec)
// instead of child_process.spawn, for `runc run` of a build's RUN. libuv forks: the kernel copies
// the page tables of the whole Node process, whose cost grows with its memory. On this VM that is
// ~0.15 ms per MiB of RSS, paid synchronously on the event loop: /bin/true took 3.4 ms from a
// 50 MiB process, 8.4 ms from 107 MiB and 22.6 ms from 212 MiB, against ~2 ms flat through
// posix_spawn (a build sits at 55-110 MiB when its RUN starts). The child gets what libuv gives
// it: the environment, stdio on pipes (or /dev/null), every signal at its default disposition and
// none blocked; every other descriptor of this process is close-on-exec, as libuv opens them.
import { closeSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import type { Readable, Writable } from 'node:stream';
import { loadKoffi } from './mount-syscall.js';
import { provideRawExit } from '../util/raw-exit.js';

interface Libc {
  pipe2(fds: Int32Array, flags: number): number;
  faInit(fa: Buffer): number;
  faDup2(fa: Buffer, fd: number, newfd: number): number;
  faOpen(fa: Buffer, fd: number, path: string, oflag: number, mode: number): number;
  faDestroy(fa: Buffer): number;
  attrInit(attr: Buffer): number;
  attrSetflags(attr: Buffer, flags: number): number;
  attrSetsigdefault(attr: Buffer, set: Buffer): number;
  attrSetsigmask(attr: Buffer, set: Buffer): number;
  attrDestroy(attr: Buffer): number;
  sigfillset(set: Buffer): number;
  sigemptyset(set: Buffer): number;
  spawnp(pid: number[], file: string, fa: Buffer, attr: Buffer, argv: (string | null)[], envp: (string | null)[]): number;
  /** waitpid(2) on a libuv thread-pool thread. */
  waitpid(pid: number, status: number[], options: number, cb: (err: unknown, result: number) => void): void;
  /** waitpid(2) on this thread, for WNOHANG only (it must not block the event loop). */
  waitpidNow(pid: number, status: number[], options: number): number;
  errno(): number;
}

let libc: Libc | undefined | null;

/** The libc calls, or null where they cannot be loaded (no glibc, no koffi): callers fall back to child_process. */
function load(): Libc | null {
  if (libc !== undefined) return libc;
  try {
    if (process.platform !== 'linux') return (libc = null);
    const koffi = loadKoffi();
    const lib = koffi.load('libc.so.6');
    const f = (proto: string) => lib.func(proto) as ((...a: unknown[]) => number) & { async: (...a: unknown[]) => void };
    const waitpid = f('int waitpid(int pid, _Out_ int *status, int options)');
    libc = {
      pipe2: f('int pipe2(_Out_ int *fds, int flags)') as Libc['pipe2'],
      faInit: f('int posix_spawn_file_actions_init(void *fa)') as Libc['faInit'],
      faDup2: f('int posix_spawn_file_actions_adddup2(void *fa, int fd, int newfd)') as Libc['faDup2'],
      faOpen: f('int posix_spawn_file_actions_addopen(void *fa, int fd, const char *path, int oflag, int mode)') as Libc['faOpen'],
      faDestroy: f('int posix_spawn_file_actions_destroy(void *fa)') as Libc['faDestroy'],
      attrInit: f('int posix_spawnattr_init(void *attr)') as Libc['attrInit'],
      attrSetflags: f('int posix_spawnattr_setflags(void *attr, short flags)') as Libc['attrSetflags'],
      attrSetsigdefault: f('int posix_spawnattr_setsigdefault(void *attr, const void *set)') as Libc['attrSetsigdefault'],
      attrSetsigmask: f('int posix_spawnattr_setsigmask(void *attr, const void *set)') as Libc['attrSetsigmask'],
      attrDestroy: f('int posix_spawnattr_destroy(void *attr)') as Libc['attrDestroy'],
      sigfillset: f('int sigfillset(void *set)') as Libc['sigfillset'],
      sigemptyset: f('int sigemptyset(void *set)') as Libc['sigemptyset'],
      spawnp: f('int posix_spawnp(_Out_ int *pid, const char *file, void *fa, void *attr, const char **argv, const char **envp)') as Libc['spawnp'],
      waitpid: (pid, status, options, cb) => waitpid.async(pid, status, options, cb),
      waitpidNow: (pid, status, options) => waitpid(pid, status, options),
      errno: () => koffi.errno(),
    };
    // The CLI's exit can skip Node's teardown now (util/raw-exit.ts): a build with a RUN gets here.
    const rawExit = f('void _exit(int status)');
    const fcntl = lib.func('int fcntl(int fd, int cmd, ...)') as (...a: unknown[]) => number;
    provideRawExit({ exit: (code) => { rawExit(code); }, getFlags: (fd) => fcntl(fd, F_GETFL), setFlags: (fd, flags) => fcntl(fd, F_SETFL, 'int', flags) });
  } catch {
    libc = null;
  }
  return libc;
}

/** Whether spawnPiped can be used here. */
export function posixSpawnAvailable(): boolean {
  return load() !== null;
}

const O_CLOEXEC = 0o2000000;
const F_GETFL = 3;
const F_SETFL = 4;
const O_RDONLY = 0;
const POSIX_SPAWN_SETSIGDEF = 0x04;
const POSIX_SPAWN_SETSIGMASK = 0x08;
// glibc's posix_spawn_file_actions_t is 80 bytes, posix_spawnattr_t 336, sigset_t 128: room to spare.
const FILE_ACTIONS_BYTES = 256;
const ATTR_BYTES = 1024;
const SIGSET_BYTES = 256;

export interface PipedChild {
  pid: number;
  stdin?: Writable;
  stdout: Readable;
  stderr: Readable;
  /** Like ChildProcess 'close': the process has exited and its stdout and stderr are at EOF. */
  closed: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Signals the process while it has not been reaped (its pid cannot have been reused). */
  kill(signal: NodeJS.Signals): void;
}

/**
 * Starts `file` (looked up in PATH like execvp) with `args`, stdout and stderr on pipes, stdin
 * on a pipe or /dev/null. Throws an Error with code ENOENT (or another errno name) when the
 * program cannot be started, as child_process reports it.
 */
export function spawnPiped(file: string, args: string[], opts: { stdin: boolean }): PipedChild {
  const c = load();
  if (!c) throw new Error('posix_spawn is not available here');
  const pipes: Int32Array[] = [];
  const pipe = () => {
    const fds = new Int32Array(2);
    if (c.pipe2(fds, O_CLOEXEC) !== 0) throw errnoError('pipe2', c.errno());
    pipes.push(fds);
    return fds;
  };
  const closeAll = () => { for (const p of pipes) for (const fd of p) { try { closeSync(fd); } catch { /* closed */ } } };
  let inP: Int32Array | undefined;
  let outP: Int32Array;
  let errP: Int32Array;
  try {
    inP = opts.stdin ? pipe() : undefined;
    outP = pipe();
    errP = pipe();
  } catch (e) {
    closeAll();
    throw e;
  }
  const fa = Buffer.alloc(FILE_ACTIONS_BYTES);
  const attr = Buffer.alloc(ATTR_BYTES);
  const all = Buffer.alloc(SIGSET_BYTES);
  const none = Buffer.alloc(SIGSET_BYTES);
  c.faInit(fa);
  c.attrInit(attr);
  const pid = [0];
  let rc: number;
  try {
    // dup2 onto 0-2 clears close-on-exec there; the pipes' own descriptors close at exec.
    if (inP) c.faDup2(fa, inP[0]!, 0); else c.faOpen(fa, 0, '/dev/null', O_RDONLY, 0);
    c.faDup2(fa, outP[1]!, 1);
    c.faDup2(fa, errP[1]!, 2);
    // Node ignores SIGPIPE and handles others: the child starts with defaults and no mask, as libuv's does.
    c.sigfillset(all);
    c.sigemptyset(none);
    c.attrSetsigdefault(attr, all);
    c.attrSetsigmask(attr, none);
    c.attrSetflags(attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
    const env = Object.entries(process.env).filter(([, v]) => v !== undefined).map(([k, v]) => `${k}=${v}`);
    rc = c.spawnp(pid, file, fa, attr, [file, ...args, null], [...env, null]);
  } finally {
    c.faDestroy(fa);
    c.attrDestroy(attr);
  }
  // The child's ends are the child's now (or nobody's, if it did not start).
  for (const fd of [inP?.[0], outP[1], errP[1]]) if (fd !== undefined) closeSync(fd);
  if (rc !== 0) {
    for (const fd of [inP?.[1], outP[0], errP[0]]) if (fd !== undefined) closeSync(fd);
    throw errnoError(`spawn ${file}`, rc);
  }
  const stdout = new net.Socket({ fd: outP[0]!, readable: true, writable: false });
  const stderr = new net.Socket({ fd: errP[0]!, readable: true, writable: false });
  const stdin = inP ? new net.Socket({ fd: inP[1]!, readable: false, writable: true }) : undefined;
  // A command that exits without reading its input: the write fails with EPIPE, as it may with child_process.
  stdin?.on('error', () => {});
  let reaped = false;
  const eof = (s: net.Socket) => new Promise<void>((resolve) => { s.once('close', () => resolve()); });
  const closed = Promise.all([eof(stdout), eof(stderr)]).then(() => reap(c, pid[0]!)).then((status) => {
    reaped = true;
    stdin?.destroy();
    return decodeStatus(status);
  });
  return {
    pid: pid[0]!,
    stdin,
    stdout,
    stderr,
    closed,
    kill(signal) {
      if (reaped) return;
      try { process.kill(pid[0]!, signal); } catch { /* exited */ }
    },
  };
}

const WNOHANG = 1;

/**
 * The process's stdio is at EOF, so it has exited or is about to: by the time the main thread
 * has seen both pipes close it is almost always a zombie already, and a WNOHANG waitpid here
 * reaps it without a thread-pool round trip (in a build's late RUN that trip also started the
 * pool's threads, ~1 ms between runc's exit and the snapshot). Otherwise a blocking waitpid on a
 * thread-pool thread, held for no longer than the exit takes. (libuv blocks signals in its pool
 * threads: no EINTR. libuv reaps only the children it spawned itself.)
 */
function reap(c: Libc, pid: number): Promise<number> {
  const now = [0];
  if (c.waitpidNow(pid, now, WNOHANG) === pid) return Promise.resolve(now[0]!);
  return new Promise((resolve, reject) => {
    const status = [0];
    c.waitpid(pid, status, 0, (err, r) => {
      if (err) return reject(err);
      if (r !== pid) return reject(new Error(`waitpid(${pid}) failed`));
      resolve(status[0]!);
    });
  });
}

/** A wait status as child_process reports it: an exit code, or the signal that ended the process. */
export function decodeStatus(status: number): { code: number | null; signal: NodeJS.Signals | null } {
  const sig = status & 0x7f;
  if (sig === 0) return { code: (status >> 8) & 0xff, signal: null };
  const name = Object.entries(os.constants.signals).find(([, n]) => n === sig)?.[0] as NodeJS.Signals | undefined;
  return { code: null, signal: name ?? null };
}

function errnoError(what: string, errno: number): NodeJS.ErrnoException {
  const name = Object.entries(os.constants.errno).find(([, v]) => v === errno)?.[0] ?? `errno ${errno}`;
  const e: NodeJS.ErrnoException = new Error(`${what}: ${name}`);
  e.code = name;
  e.errno = -errno;
  return e;
}
