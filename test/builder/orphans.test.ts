// A `drydock build` killed with SIGKILL mid-RUN cannot clean up: its runc container keeps running
// and its overlay stays mounted. The next command (gc, a build, a run) must find the step whose
// owner process is gone, kill and delete the container, unmount and remove its directory.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { tempDir, requireRoot, requireTool, runCli, CLI_MAIN } from '../helpers/env.js';
import { busyboxImage } from '../helpers/images.js';

function runcList(root: string): { id: string; status: string }[] {
  const out = execFileSync('runc', ['--root', path.join(root, 'runc'), 'list', '--format', 'json'], { encoding: 'utf8' }).trim();
  return out && out !== 'null' ? JSON.parse(out) : [];
}

async function mountsUnder(dir: string): Promise<string[]> {
  return (await fsp.readFile('/proc/self/mountinfo', 'utf8')).split('\n').map((l) => l.split(' ')[4] ?? '').filter((m) => m.startsWith(`${dir}/`));
}

async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false>, ms = 60_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Starts a build whose RUN sleeps, waits until its container runs, and SIGKILLs drydock. */
async function killBuildMidRun(root: string, ctx: string): Promise<void> {
  const child = spawn(process.execPath, [CLI_MAIN, 'build', '-t', 'killed:1', ctx], { env: { ...process.env, DRYDOCK_ROOT: root }, stdio: 'ignore' });
  const exited = new Promise((r) => child.on('exit', r));
  await waitFor('the RUN container', async () => runcList(root).some((c) => c.id.startsWith('drydock-build-') && c.status === 'running'));
  child.kill('SIGKILL');
  await exited;
  // The leak the sweep is for: container and mounts outlive the killed process.
  assert.ok(runcList(root).some((c) => c.id.startsWith('drydock-build-')), 'the killed build left its container');
  assert.ok((await mountsUnder(path.join(root, 'builder'))).length > 0, 'the killed build left its overlay mounted');
}

async function assertNothingLeft(root: string): Promise<void> {
  assert.deepEqual(runcList(root).filter((c) => c.id.startsWith('drydock-build-')), []);
  assert.deepEqual(await mountsUnder(path.join(root, 'builder')), []);
  assert.deepEqual(await fsp.readdir(path.join(root, 'builder')), []);
}

for (const next of ['gc', 'build', 'run'] as const) {
  test(`a build killed mid-RUN is cleaned up by the next ${next}`, async () => {
    requireRoot();
    requireTool('runc');
    const root = path.join(tempDir(`drydock-orphans-${next}-`), 'store');
    await busyboxImage(root);
    const ctx = tempDir('drydock-orphans-ctx-');
    await fsp.writeFile(path.join(ctx, 'Dockerfile'), `FROM busybox\nRUN echo ${next} && sleep 300\n`);
    try {
      await killBuildMidRun(root, ctx);
      await nextCommand(root, next);
      await assertNothingLeft(root);
    } finally {
      // Whatever the outcome, no sleeping container or mount of this test outlives it.
      for (const c of runcList(root)) execFileSync('runc', ['--root', path.join(root, 'runc'), 'delete', '--force', c.id]);
      for (const m of (await mountsUnder(root)).reverse()) execFileSync('umount', ['-l', m]);
    }
  });
}

async function nextCommand(root: string, next: 'gc' | 'build' | 'run'): Promise<void> {
  let r;
  if (next === 'gc') r = await runCli(['gc', '--grace', '0'], { root });
  else if (next === 'run') r = await runCli(['run', '--rm', '--network', 'none', 'busybox', 'true'], { root });
  else {
    const ctx2 = tempDir('drydock-orphans-ctx2-');
    await fsp.writeFile(path.join(ctx2, 'Dockerfile'), 'FROM busybox\nRUN true\n');
    r = await runCli(['build', ctx2], { root });
  }
  assert.equal(r.code, 0, r.stderr);
}
