// Shared setup for the runtime CLI tests: a private store, a private bridge + subnet (so parallel
// test files and other engineers' containers never share addresses), and cleanup of everything.
import { execFileSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { tempDir, requireRoot, requireTool, runCli, type CliResult } from '../helpers/env.js';
import { busyboxImage } from '../helpers/images.js';

export interface RuntimeFixture {
  root: string;
  env: NodeJS.ProcessEnv;
  cli(args: string[], opts?: { input?: string | Buffer; timeoutMs?: number }): Promise<CliResult>;
  /** Like cli, but fails the test with stderr when the exit code is not 0. */
  ok(args: string[], opts?: { input?: string | Buffer; timeoutMs?: number }): Promise<string>;
  cleanup(): Promise<void>;
}

export async function runtimeFixture(label: string): Promise<RuntimeFixture> {
  requireRoot();
  for (const t of ['runc', 'ip', 'iptables', 'mount', 'script', 'tar']) requireTool(t);
  const root = tempDir(`drydock-runtime-${label}-`);
  const n = (process.pid % 200) + 20;
  const bridge = `rt${label.slice(0, 6)}${process.pid % 10000}`.slice(0, 15);
  const env = { DRYDOCK_ROOT: root, DRYDOCK_BRIDGE: bridge, DRYDOCK_SUBNET: `10.89.${n}.0` };
  process.env.DRYDOCK_ROOT = root;
  await busyboxImage(root);
  const cli = (args: string[], opts: { input?: string | Buffer; timeoutMs?: number } = {}) => runCli(args, { root, env, ...opts });
  const ok = async (args: string[], opts: { input?: string | Buffer; timeoutMs?: number } = {}) => {
    const r = await cli(args, opts);
    if (r.code !== 0) throw new Error(`drydock ${args.join(' ')} exited ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
    return r.stdout;
  };
  return {
    root, env, cli, ok,
    async cleanup() {
      const ids = (await cli(['ps', '-aq', '--no-trunc'])).stdout.split('\n').filter(Boolean);
      if (ids.length) await cli(['rm', '-f', '-v', ...ids]);
      const { removeBridge } = await import('../../src/runtime/network.js');
      await removeBridge({ name: bridge, subnet: env.DRYDOCK_SUBNET });
      // Nothing of ours may stay mounted.
      const mounts = await fsp.readFile('/proc/self/mountinfo', 'utf8');
      for (const line of mounts.split('\n').filter((l) => l.includes(root)).reverse()) {
        try { execFileSync('umount', ['-l', line.split(' ')[4]!]); } catch { /* gone */ }
      }
    },
  };
}

export { freePort } from '../helpers/docker-registry.js';

export async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false>, ms = 15_000): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try { const v = await fn(); if (v) return v; } catch (e) { last = e; }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export async function readState(root: string, id: string): Promise<{ Status: string; RunnerPid: number; Pid: number; ExitCode: number; RestartCount: number }> {
  return JSON.parse(await fsp.readFile(path.join(root, 'containers', id, 'state.json'), 'utf8'));
}
