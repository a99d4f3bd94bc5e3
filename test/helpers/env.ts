// Shared test plumbing: temp store roots, the CLI runner, and prerequisite checks that FAIL
// (never skip) when a tool the suite needs is missing, so CI cannot go green by skipping.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, existsSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import net from 'node:net';

const here = path.dirname(fileURLToPath(import.meta.url));
/** Running from TypeScript (tsx) or from compiled dist/test. */
const fromSource = import.meta.url.endsWith('.ts');
export const PROJECT_ROOT = fromSource ? path.resolve(here, '../..') : path.resolve(here, '../../..');
export const CLI_MAIN = fromSource ? path.join(PROJECT_ROOT, 'src/cli/main.ts') : path.join(PROJECT_ROOT, 'dist/src/cli/main.js');
export const FIXTURES = path.join(PROJECT_ROOT, 'test/fixtures');

const tempDirs = new Set<string>();
let cleanupRegistered = false;

/** A fresh temp dir, removed when the process exits (one exit listener for all of them). */
export function tempDir(prefix = 'drydock-test-'): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  tempDirs.add(dir);
  if (!cleanupRegistered) {
    cleanupRegistered = true;
    process.on('exit', () => {
      for (const d of tempDirs) {
        try { rmSync(d, { recursive: true, force: true }); } catch { /* mounts may linger */ }
      }
    });
  }
  return dir;
}

/** Throws with an install hint when a required host tool is absent. */
export function requireTool(name: string, hint = `apt-get install ${name}`): string {
  const r = spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' });
  const p = r.stdout.trim();
  if (r.status !== 0 || !p) throw new Error(`required tool "${name}" is not installed (${hint}; .ci/run installs it)`);
  return p;
}

export function requireRoot(): void {
  if (process.getuid?.() !== 0) throw new Error('this test needs root (namespaces, mounts, runc)');
}

export interface CliResult { code: number; stdout: string; stderr: string }

/** Runs the drydock CLI in a child process with the given store root. */
export function runCli(args: string[], opts: { root?: string; input?: string | Buffer; env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {}): Promise<CliResult> {
  const nodeArgs = fromSource ? ['--import', 'tsx', CLI_MAIN, ...args] : [CLI_MAIN, ...args];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, nodeArgs, {
      cwd: opts.cwd ?? PROJECT_ROOT,
      env: { ...process.env, ...(opts.root ? { DRYDOCK_ROOT: opts.root } : {}), ...opts.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000);
    child.on('error', reject);
    child.on('close', (code) => { clearTimeout(timer); resolve({ code: code ?? 1, stdout, stderr }); });
    child.stdin.end(opts.input ?? '');
  });
}

export function exists(p: string): boolean {
  return existsSync(p);
}

/**
 * A port for a child process (registry, dockerd, QEMU hostfwd) to bind on 127.0.0.1. Picked below
 * Linux's ephemeral range (32768–60999): a port the kernel handed out by bind(0) and we released
 * is the next one it hands to any test's outgoing connection, and QEMU's hostfwd then fails with
 * "Could not set up host forwarding rule" (seen in CI). Checked free by binding it once.
 */
export async function freePort(): Promise<number> {
  for (let attempt = 0; ; attempt++) {
    const port = 20000 + Math.floor(Math.random() * 12000);
    const free = await new Promise<boolean>((resolve) => {
      const srv = net.createServer();
      srv.once('error', () => resolve(false));
      srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
    });
    if (free) return port;
    if (attempt > 200) throw new Error('freePort: no free port in 20000-31999 on 127.0.0.1');
  }
}
