// A CLI's exit without Node's teardown (src/cli/main.ts). Once the event loop has drained and every 'exit'
// listener has run, Node still stops its platform's worker threads and the thread pool (joining
// each: on a busy host every join waits for a CPU), disposes the heap and runs libc's exit
// handlers before the kernel tears the process down: ~1.5 ms of a late-line build's ~100. When
// libc's _exit is at hand already (loaded through koffi for posix_spawn, src/runtime/posix-spawn.ts)
// the last 'exit' listener calls it instead, after doing the one part of that teardown the parent
// can see: Node's ResetStdio, which puts back the O_NONBLOCK flag that libuv set on a stdio pipe
// it made a stream for (the pipe is shared with the parent and whatever else it runs).
// Nothing else is lost: the loop is empty (every write and file operation has completed), the
// other 'exit' listeners (the code cache, launch.ts) ran before, worker threads would be stopped
// anyway. Anything unusual falls back to Node's own exit: stdin was used (a terminal may be in raw
// mode), output still queued, a listener after this one, coverage or a profile to write.
import { readFileSync, writeSync } from 'node:fs';

/** libc's calls for the exit, from whoever loaded libc through koffi. */
export interface RawExitCalls {
  exit(code: number): void;
  /** fcntl(fd, F_GETFL) */
  getFlags(fd: number): number;
  /** fcntl(fd, F_SETFL, flags) */
  setFlags(fd: number, flags: number): number;
}

let calls: RawExitCalls | undefined;

/** Makes the exit without teardown possible in this process (posix-spawn.ts, once libc is loaded). */
export function provideRawExit(c: RawExitCalls): void {
  calls = c;
}

const O_NONBLOCK = 0o4000;
/** The stdio streams Node made (fd → stream). */
const madeStdio = new Map<number, NodeJS.ReadStream | NodeJS.WriteStream>();
/**
 * The flags of descriptors 0-2, read just before Node made the first stdio stream: all three at
 * once, as Node does at start, since two of them often share one pipe (2>&1), whose flags the
 * first stream changes for both.
 */
let startFlags: (number | undefined)[] | undefined;
/** A stdio stream watchStdio could not watch. */
let untracked = false;
let watching = false;

/** A descriptor's file status flags from /proc (no FFI needed before a stream is made). */
function procFlags(fd: number): number | undefined {
  try {
    const m = /^flags:\s*([0-7]+)$/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'));
    return m ? parseInt(m[1]!, 8) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Notes, when process.stdin, stdout or stderr is first used, the descriptor's flags before Node
 * makes its stream (and libuv, for a pipe, sets O_NONBLOCK): what the exit puts back. Called
 * first thing in the CLI; the streams are still made only when something uses them.
 */
export function watchStdio(): void {
  watching = true;
  for (const [fd, name] of [[0, 'stdin'], [1, 'stdout'], [2, 'stderr']] as const) {
    const own = Object.getOwnPropertyDescriptor(process, name);
    // Not Node's lazy getter (made already, or replaced): what the flags were is unknown.
    if (!own?.get || !own.configurable) { untracked = true; continue; }
    const get = own.get;
    Object.defineProperty(process, name, {
      ...own,
      get() {
        if (!madeStdio.has(fd)) {
          startFlags ??= [0, 1, 2].map(procFlags);
          madeStdio.set(fd, get.call(process) as NodeJS.WriteStream);
        }
        return get.call(process) as unknown;
      },
    });
  }
}

/**
 * After `main` has settled: when the process comes to exit, _exit(2) from the last 'exit'
 * listener if nothing needs Node's teardown (see the top of this file).
 */
export function exitWithoutTeardown(): void {
  const listener = (code: number) => {
    if (process.listeners('exit').at(-1) !== listener) return;
    const final = process.exitCode === undefined ? code : Number(process.exitCode);
    if (!Number.isInteger(final) || !canSkipTeardown()) return;
    if (!resetStdio()) return;
    if (process.env.DRYDOCK_TRACE) writeSync(2, 'trace exit.without-teardown 0.0 @0\n');
    calls!.exit(final);
  };
  process.on('exit', listener);
}

function canSkipTeardown(): boolean {
  if (!calls || !watching || untracked || madeStdio.has(0)) return false;
  for (const fd of [1, 2]) {
    const s = madeStdio.get(fd) as NodeJS.WriteStream | undefined;
    if (s && (s.writableLength > 0 || s.writableNeedDrain)) return false;
  }
  // What Node writes during its teardown: coverage, CPU and heap profiles, the inspector's.
  if (process.env.NODE_V8_COVERAGE) return false;
  const flags = [...process.execArgv, process.env.NODE_OPTIONS ?? ''].join(' ');
  return !/--(cpu-prof|heap-prof|prof|inspect|experimental-test-coverage|diagnostic-dir|report)/.test(flags);
}

/** Node's ResetStdio: O_NONBLOCK as it was before a stream was made. False if that failed. */
function resetStdio(): boolean {
  if (!startFlags) return true; // no stream was made: nothing changed
  for (const [fd, flags] of startFlags.entries()) {
    const now = calls!.getFlags(fd);
    if (now < 0) continue; // not open (or closed meanwhile): nothing to put back
    if (flags === undefined) return false;
    if (((now ^ flags) & O_NONBLOCK) === 0) continue;
    if (calls!.setFlags(fd, (now & ~O_NONBLOCK) | (flags & O_NONBLOCK)) !== 0) return false;
  }
  return true;
}
