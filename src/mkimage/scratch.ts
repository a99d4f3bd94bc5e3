// A scratch directory for building a root filesystem that is removed on every exit path:
// success, failure, and Ctrl-C / SIGTERM while a child (debootstrap) is still writing into it.
// debootstrap mounts /proc and /sys inside its target; those are unmounted before anything is
// deleted, and if a mount cannot be removed the directory is left alone (rm -rf through a live
// proc or bind mount would damage the host) and the user is told where it is.
import { promises as fsp } from 'node:fs';
import type { ChildProcess } from 'node:child_process';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { unmountPath } from '../runtime/overlay.js';


/** Decodes the octal escapes (\040 for space) mountinfo uses in paths. */
function unescapeMountPath(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** Mount points at or below `dir`, deepest first. */
export async function mountsUnder(dir: string): Promise<string[]> {
  const text = await fsp.readFile('/proc/self/mountinfo', 'utf8').catch(() => '');
  const real = await fsp.realpath(dir).catch(() => path.resolve(dir));
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const mp = line.split(' ')[4];
    if (!mp) continue;
    const p = unescapeMountPath(mp);
    if (p === real || p.startsWith(real + '/')) out.push(p);
  }
  return out.sort((a, b) => b.length - a.length);
}

/** Unmounts everything under `dir` (the runtime's unmountPath falls back to a lazy unmount). */
export async function unmountUnder(dir: string): Promise<void> {
  for (let attempt = 0; attempt < 3; attempt++) {
    const mounts = await mountsUnder(dir);
    if (mounts.length === 0) return;
    for (const mp of mounts) await unmountPath(mp).catch(() => undefined);
  }
  const left = await mountsUnder(dir);
  if (left.length) throw new Error(`cannot unmount ${left.join(', ')}; left ${dir} in place`);
}

/** Unmounts, then deletes. Never deletes through a mount that is still attached. */
export async function removeScratch(dir: string): Promise<void> {
  await unmountUnder(dir);
  await fsp.rm(dir, { recursive: true, force: true, maxRetries: 3 });
}

type Cleanup = () => Promise<void>;
const pending = new Set<Cleanup>();
let handlersInstalled = false;
const SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
const SIGNAL_EXIT: Record<string, number> = { SIGINT: 130, SIGTERM: 143, SIGHUP: 129 };

function onSignal(signal: NodeJS.Signals): void {
  // A second Ctrl-C while cleaning up should not abort the cleanup, so it is ignored here.
  if (onSignal.running) return;
  onSignal.running = true;
  process.stderr.write(`\n${signal}: removing temporary files…\n`);
  Promise.allSettled([...pending].map((c) => c())).finally(() => process.exit(SIGNAL_EXIT[signal] ?? 1));
}
onSignal.running = false;

function register(c: Cleanup): void {
  pending.add(c);
  if (!handlersInstalled) {
    for (const s of SIGNALS) process.on(s, onSignal);
    handlersInstalled = true;
  }
}

function unregister(c: Cleanup): void {
  pending.delete(c);
  if (pending.size === 0 && handlersInstalled) {
    for (const s of SIGNALS) process.off(s, onSignal);
    handlersInstalled = false;
  }
}

export interface Scratch {
  dir: string;
  /** Children that write into `dir`: they are stopped (and waited for) before it is removed. */
  track(child: ChildProcess): void;
}

/** Waits for a child to exit, escalating to SIGKILL after `graceMs`. */
async function stopChild(child: ChildProcess, graceMs = 5000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

/**
 * Runs `fn` with a fresh directory under `parent` and removes it afterwards, also when the
 * process is interrupted. The directory name starts with `prefix`.
 */
export async function withScratchDir<T>(parent: string, prefix: string, fn: (scratch: Scratch) => Promise<T>): Promise<T> {
  await fsp.mkdir(parent, { recursive: true });
  const dir = path.join(parent, `${prefix}${randomBytes(6).toString('hex')}`);
  await fsp.mkdir(dir, { mode: 0o755 });
  const children = new Set<ChildProcess>();
  // Memoised: the signal handler and the finally block may both ask for it.
  let done: Promise<void> | undefined;
  const cleanup: Cleanup = () => (done ??= (async () => {
    await Promise.all([...children].map((c) => stopChild(c)));
    await removeScratch(dir);
  })());
  register(cleanup);
  try {
    return await fn({ dir, track: (c) => { children.add(c); c.once('exit', () => children.delete(c)); } });
  } finally {
    try {
      await cleanup();
    } finally {
      unregister(cleanup);
    }
  }
}
