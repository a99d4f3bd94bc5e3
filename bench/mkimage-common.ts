// Shared plumbing for the mkimage benchmarks: how to invoke drydock (compiled CLI when built,
// else from source through tsx), an isolated podman as the peer, timing and the result table.
import { spawnSync, type SpawnSyncOptions } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, readFileSync } from 'node:fs';
import { ensurePodmanConf, podmanStorageArgs } from '../test/helpers/podman.js';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const fromSource = import.meta.url.endsWith('.ts');
export const PROJECT_ROOT = fromSource ? path.resolve(here, '..') : path.resolve(here, '../..');

/**
 * argv prefix that runs the drydock CLI: what users run, the installed bin (bin/drydock.js,
 * which loads the esbuild bundle `npm run build` writes to dist/cli/), when it is built.
 */
export function drydockCommand(): string[] {
  // Another CLI (e.g. `DRYDOCK_CLI=dist/src/cli/main.js`, the per-file tsc output) on request.
  if (process.env.DRYDOCK_CLI) return [process.execPath, process.env.DRYDOCK_CLI];
  if (existsSync(path.join(PROJECT_ROOT, 'dist/cli'))) return [process.execPath, path.join(PROJECT_ROOT, 'bin/drydock.js')];
  const compiled = path.join(PROJECT_ROOT, 'dist/src/cli/main.js');
  if (!fromSource && existsSync(compiled)) return [process.execPath, compiled];
  return [process.execPath, '--import', 'tsx', path.join(PROJECT_ROOT, 'src/cli/main.ts')];
}

export function sh(cmd: string[], opts: SpawnSyncOptions = {}): string {
  const r = spawnSync(cmd[0]!, cmd.slice(1), { encoding: 'utf8', maxBuffer: 64 << 20, ...opts });
  if (r.status !== 0) throw new Error(`${cmd.join(' ')} failed (${r.status ?? r.signal}): ${String(r.stderr).slice(-2000)}`);
  return String(r.stdout);
}

export function shell(script: string, opts: SpawnSyncOptions = {}): string {
  return sh(['bash', '-o', 'pipefail', '-c', script], opts);
}

export interface Timing { wall: number; cpu: number }

/**
 * Runs a shell script under GNU time: wall seconds and CPU seconds (user + sys of the script
 * and every child it waited for). CPU time is the fair number on a shared, loaded machine.
 */
export function measure(script: string): Timing {
  const out = path.join(os.tmpdir(), `drydock-bench-time-${process.pid}`);
  sh(['/usr/bin/time', '-f', '%e %U %S', '-o', out, 'bash', '-o', 'pipefail', '-c', script]);
  const [wall, user, sys] = readFileSync(out, 'utf8').trim().split('\n').pop()!.split(' ').map(Number);
  rmSync(out, { force: true });
  return { wall: wall!, cpu: user! + sys! };
}

/** Shell-quotes argv for measure(). */
export function quote(argv: string[]): string {
  return argv.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ');
}

/** Seconds a function takes. */
export function timed<T>(fn: () => T): { seconds: number; value: T } {
  const t = process.hrtime.bigint();
  const value = fn();
  return { seconds: Number(process.hrtime.bigint() - t) / 1e9, value };
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export function scratchDir(prefix: string): string {
  return mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** podman with private storage, the sandbox's containers.conf written when missing. */
export async function isolatedPodman(dir: string): Promise<{ argv: string[]; cleanup(): void }> {
  await ensurePodmanConf();
  const argv = ['podman', ...podmanStorageArgs(dir)];
  return {
    argv,
    cleanup: () => { spawnSync(argv[0]!, [...argv.slice(1), 'system', 'reset', '-f'], { stdio: 'ignore' }); },
  };
}

export function printTable(title: string, rows: [string, ...string[]][], headers: string[]): void {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  console.log(`\n${title}`);
  console.log(line(headers));
  for (const r of rows) console.log(line(r));
}

export function cleanupDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}
