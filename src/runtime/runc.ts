// runc invocation. Each store root has its own runc state dir (--root $DRYDOCK_ROOT/runc) so
// separate stores never see each other's containers. `--runtime` may name another OCI runtime
// with runc's CLI (crun, youki).
import { spawn, execFile, type ChildProcess, type StdioOptions } from 'node:child_process';
import { promises as fsp, existsSync, mkdirSync, stat, unlinkSync, writeFileSync } from 'node:fs';
import { promisify } from 'node:util';
import os from 'node:os';
import path from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { defaultRoot } from '../store/content-store.js';
import { UserError } from '../util/errors.js';
import type { OciSpec } from './spec.js';
import type { PipedChild } from './posix-spawn.js';
import { span, traced } from '../util/trace.js';

// Promisified on each call, not at load: reading `execFile` loads child_process (the CLI bundle
// makes built-ins lazy, scripts/bundle-cli.mjs), which `drydock ps` without running containers never needs.
const execFileP = (file: string, args: readonly string[]) => promisify(execFile)(file, args);

export interface RuncOptions {
  /** The OCI runtime binary (default "runc"). */
  runtime?: string;
  /** The runtime's state root (default $DRYDOCK_ROOT/runc). */
  stateRoot?: string;
}

export function runcStateRoot(root = defaultRoot()): string {
  return path.join(root, 'runc');
}

function base(o: RuncOptions = {}): { bin: string; args: string[] } {
  return { bin: o.runtime ?? 'runc', args: ['--root', o.stateRoot ?? runcStateRoot()] };
}

/**
 * The bundle's config.json, and no log or pid file of an earlier start (a restarted container
 * reuses its bundle): a few synchronous calls, on the way to the runc start that waits for them.
 */
export function writeBundle(bundleDir: string, spec: OciSpec, stale: (string | undefined)[] = []): void {
  mkdirSync(bundleDir, { recursive: true });
  // The bundle is rewritten on every start; runc reads it once, so no fsync is needed.
  writeFileSync(path.join(bundleDir, 'config.json'), JSON.stringify(spec));
  // unlink, not rmSync({ force }), which loads fs's rimraf module for a file that is rarely there.
  for (const file of stale) if (file) unlinkIfExists(file);
}

function unlinkIfExists(file: string): void {
  try { unlinkSync(file); } catch (e) { if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e; }
}

export interface RunResult {
  exitCode: number;
  /** Set when the container's init was killed by a signal (exitCode is then 128+n). */
  signal?: string;
}

export interface RunOnceOptions extends RuncOptions {
  id: string;
  bundleDir: string;
  spec: OciSpec;
  stdio: 'inherit' | { stdout: Writable; stderr: Writable; stdin?: Readable };
  /** Image architecture, for the "exec format error" hint. */
  architecture?: string;
}

export interface RuncRunHandle {
  child: ChildProcess;
  logFile: string;
  /** Resolves with the container's exit status; throws a UserError when runc itself failed. */
  wait(): Promise<RunResult>;
}

/**
 * Starts `runc run` (foreground: runc waits for the container and exits with its status) and
 * forwards SIGINT/SIGTERM/SIGHUP/SIGQUIT to it while it runs, so this process lives to clean up.
 */
export async function startRuncRun(o: RuncOptions & { id: string; bundleDir: string; spec: OciSpec; stdio: StdioOptions; pidFile?: string; architecture?: string; ptyWrapper?: boolean }): Promise<RuncRunHandle> {
  const { bin, args } = base(o);
  const logFile = path.join(o.bundleDir, 'runc.log');
  const endBundle = span('runc.write-bundle');
  writeBundle(o.bundleDir, o.spec, [logFile, o.pidFile]);
  endBundle();
  const argv = [bin, ...args, '--log', logFile, '--log-format', 'json', 'run', '--bundle', o.bundleDir, ...(o.pidFile ? ['--pid-file', o.pidFile] : []), o.id];
  // A terminal container without a terminal of ours (the detached monitor): util-linux `script`
  // gives runc a pseudo-terminal and copies its output to our pipe, which becomes the log.
  const child = o.ptyWrapper
    ? spawn('script', ['-q', '-f', '-e', '-c', argv.map(shellQuote).join(' '), '/dev/null'], { stdio: o.stdio })
    : spawn(argv[0]!, argv.slice(1), { stdio: o.stdio });
  const forward = (sig: NodeJS.Signals) => { try { child.kill(sig); } catch { /* exited */ } };
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'];
  for (const s of signals) process.on(s, forward);
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
    child.on('error', (e) => reject((e as NodeJS.ErrnoException).code === 'ENOENT' ? new UserError(`OCI runtime "${bin}" not found (apt-get install runc)`) : e));
    child.on('close', (c, s) => resolve({ code: c, signal: s }));
  }).finally(() => { for (const s of signals) process.off(s, forward); });
  return {
    child,
    logFile,
    async wait() {
      const { code, signal } = await done;
      const exitCode = code ?? 128 + (signal ? os.constants.signals[signal] : 0);
      if (exitCode !== 0) await explainRuncFailure(logFile, o.spec, o.architecture);
      const sig = exitCode > 128 && exitCode < 128 + 65 ? signalName(exitCode - 128) : undefined;
      return { exitCode, ...(sig ? { signal: sig } : {}) };
    },
  };
}

/** `runc run` in the foreground; the runc state is always deleted afterwards (also on Ctrl-C). */
export async function runOnce(opts: RunOnceOptions): Promise<RunResult> {
  const inherit = opts.stdio === 'inherit';
  const io = opts.stdio === 'inherit' ? undefined : opts.stdio;
  try {
    // Piped stdio (a build's RUN): through posix_spawn, whose start does not grow with this
    // process's memory as child_process's fork does (src/runtime/posix-spawn.ts).
    if (io) {
      const { posixSpawnAvailable } = await import('./posix-spawn.js');
      if (posixSpawnAvailable()) return await runPiped(opts, io);
    }
    const h = await startRuncRun({ ...opts, stdio: inherit ? 'inherit' : [io?.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
    if (io) {
      h.child.stdout!.pipe(io.stdout, { end: false });
      h.child.stderr!.pipe(io.stderr, { end: false });
      if (io.stdin && h.child.stdin) io.stdin.pipe(h.child.stdin);
    }
    return await traced('runc.run', () => h.wait());
  } finally {
    await traced('runc.delete', () => deleteContainer(opts.id, { ...opts, force: true }));
  }
}

/** runOnce's piped case: `runc run` started by spawnPiped, signals forwarded as startRuncRun does. */
async function runPiped(o: RunOnceOptions, io: { stdout: Writable; stderr: Writable; stdin?: Readable }): Promise<RunResult> {
  const { spawnPiped } = await import('./posix-spawn.js');
  const { bin, args } = base(o);
  const logFile = path.join(o.bundleDir, 'runc.log');
  const endBundle = span('runc.write-bundle');
  writeBundle(o.bundleDir, o.spec, [logFile]);
  endBundle();
  let child: PipedChild;
  const endSpawn = span('runc.spawn');
  try {
    child = spawnPiped(bin, [...args, '--log', logFile, '--log-format', 'json', 'run', '--bundle', o.bundleDir, o.id], { stdin: !!io.stdin });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new UserError(`OCI runtime "${bin}" not found (apt-get install runc)`);
    throw e;
  } finally {
    endSpawn();
  }
  // libuv starts its thread pool (four threads, each waited for until it runs) on the first
  // request; a late RUN's build has made none yet, and would start it right after runc exits, for
  // the snapshot's first fsync or unlink. One stat now, while runc starts the container.
  stat(o.bundleDir, () => {});
  const forward = (sig: NodeJS.Signals) => child.kill(sig);
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'];
  for (const s of signals) process.on(s, forward);
  try {
    child.stdout.pipe(io.stdout, { end: false });
    child.stderr.pipe(io.stderr, { end: false });
    if (io.stdin && child.stdin) io.stdin.pipe(child.stdin);
    const { code, signal } = await traced('runc.run', () => child.closed);
    const exitCode = code ?? 128 + (signal ? os.constants.signals[signal] : 0);
    if (exitCode !== 0) await explainRuncFailure(logFile, o.spec, o.architecture);
    const sig = exitCode > 128 && exitCode < 128 + 65 ? signalName(exitCode - 128) : undefined;
    return { exitCode, ...(sig ? { signal: sig } : {}) };
  } finally {
    for (const s of signals) process.off(s, forward);
  }
}

/** runOnce with stdout and stderr collected as strings (small outputs: tests, probes). */
export async function runOnceCaptured(opts: Omit<RunOnceOptions, 'stdio'>): Promise<RunResult & { stdout: string; stderr: string }> {
  const { PassThrough } = await import('node:stream');
  const out = new PassThrough();
  const err = new PassThrough();
  const chunks: Record<'out' | 'err', Buffer[]> = { out: [], err: [] };
  out.on('data', (d: Buffer) => chunks.out.push(d));
  err.on('data', (d: Buffer) => chunks.err.push(d));
  const r = await runOnce({ ...opts, stdio: { stdout: out, stderr: err } });
  return { ...r, stdout: Buffer.concat(chunks.out).toString('utf8'), stderr: Buffer.concat(chunks.err).toString('utf8') };
}

export function shellQuote(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

function signalName(n: number): string | undefined {
  return Object.entries(os.constants.signals).find(([, v]) => v === n)?.[0];
}

/** Reads runc's own error log; turns the common failures into clear UserErrors. */
export async function explainRuncFailure(logFile: string, spec: OciSpec | undefined, architecture?: string): Promise<void> {
  const text = await fsp.readFile(logFile, 'utf8').catch(() => '');
  const errors = text.split('\n').filter(Boolean).map((l) => { try { return JSON.parse(l) as { level: string; msg: string }; } catch { return undefined; } })
    .filter((e): e is { level: string; msg: string } => !!e && (e.level === 'error' || e.level === 'fatal'));
  if (!errors.length) return;
  const msg = errors.map((e) => e.msg).join('; ');
  const host = os.arch() === 'x64' ? 'amd64' : os.arch();
  if (/exec format error/.test(msg)) {
    throw new UserError(`the image is for ${architecture ?? 'another architecture'} but this host is ${host}; install qemu-user-static/binfmt or build for linux/${host}`, 126);
  }
  const exe = spec?.process.args[0] ?? '';
  if (/executable file not found|no such file or directory/.test(msg) && /exec:|starting container process/.test(msg)) {
    throw new UserError(`failed to start container: ${exe}: executable file not found in the container (${msg.replace(/^.*?exec: /, '')})`, 127);
  }
  if (/permission denied/.test(msg) && /exec:|starting container process/.test(msg)) {
    throw new UserError(`failed to start container: ${exe}: permission denied`, 126);
  }
  if (/cgroup|memory\.|cpu\.cfs|cpu\.max/i.test(msg) && spec?.linux.resources) {
    throw new UserError(`the OCI runtime could not apply --memory/--cpus limits with this host's cgroup setup: ${msg}`, 125);
  }
  throw new UserError(`OCI runtime failed: ${msg}`, 125);
}

export interface RuncState { id: string; pid: number; status: 'created' | 'running' | 'stopped' | 'paused' | string; bundle: string }

export async function containerState(id: string, o: RuncOptions = {}): Promise<RuncState | undefined> {
  const { bin, args } = base(o);
  try {
    const { stdout } = await execFileP(bin, [...args, 'state', id]);
    return JSON.parse(stdout) as RuncState;
  } catch {
    return undefined;
  }
}

export async function killContainer(id: string, signal: string, o: RuncOptions & { all?: boolean } = {}): Promise<void> {
  const { bin, args } = base(o);
  try {
    await execFileP(bin, [...args, 'kill', ...(o.all ? ['--all'] : []), id, signal]);
  } catch (e) {
    const stderr = String((e as { stderr?: string }).stderr ?? '');
    if (/not running|does not exist|process already finished/.test(stderr)) return;
    throw new UserError(`cannot signal container: ${stderr.trim() || (e as Error).message}`, { cause: e });
  }
}

export async function deleteContainer(id: string, o: RuncOptions & { force?: boolean } = {}): Promise<void> {
  const { bin, args } = base(o);
  // `runc run` removes its state when the container exits; skip the exec when nothing is left.
  // A synchronous check: a build's RUN asks this between runc's exit and the step's snapshot,
  // where a thread-pool round trip queues behind the other steps' and the export's fsyncs.
  if (!/[/]/.test(id) && !existsSync(path.join(args[1]!, id))) return;
  try {
    await execFileP(bin, [...args, 'delete', ...(o.force ? ['--force'] : []), id]);
  } catch {
    // Already gone (or never created): nothing to delete.
  }
}

export interface ExecOptions extends RuncOptions {
  id: string;
  args: string[];
  env?: string[];
  cwd?: string;
  user?: { uid: number; gid: number; additionalGids?: number[] };
  tty?: boolean;
  interactive?: boolean;
  /** Process spec template (the container's process), so exec inherits caps and env. */
  base: OciSpec['process'];
  processFile: string;
}

/** Writes the exec's process file and returns the `runc exec` command line. */
export async function prepareExec(o: ExecOptions): Promise<string[]> {
  const proc = {
    ...o.base,
    terminal: !!o.tty,
    args: o.args,
    env: o.env ?? o.base.env,
    cwd: o.cwd ?? o.base.cwd,
    user: o.user ?? o.base.user,
  };
  await fsp.writeFile(o.processFile, JSON.stringify(proc));
  const { bin, args } = base(o);
  return [bin, ...args, 'exec', '--process', o.processFile, o.id];
}

/** `runc exec` with inherited stdio; returns the exit code. */
export async function execInContainer(o: ExecOptions): Promise<number> {
  const [bin, ...args] = await prepareExec(o);
  const child = spawn(bin!, args, { stdio: [o.interactive || o.tty ? 'inherit' : 'ignore', 'inherit', 'inherit'] });
  const forward = (sig: NodeJS.Signals) => { try { child.kill(sig); } catch { /* gone */ } };
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  for (const s of signals) process.on(s, forward);
  try {
    return await new Promise<number>((resolve, reject) => {
      child.on('error', reject);
      child.on('close', (c, s) => resolve(c ?? 128 + (s ? os.constants.signals[s] : 0)));
    });
  } finally {
    for (const s of signals) process.off(s, forward);
    await fsp.rm(o.processFile, { force: true });
  }
}
