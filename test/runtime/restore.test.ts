// Seed 004's `--restart=always` beyond the monitor's life: start after a killed monitor (no
// stale netns / runc state), `drydock container restore` after a (simulated) reboot, and the
// systemd units that run it, checked by systemd-analyze.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { promises as fsp, existsSync } from 'node:fs';
import path from 'node:path';
import { runtimeFixture, waitFor, readState, type RuntimeFixture } from './helpers.js';
import { PROJECT_ROOT, requireTool, tempDir } from '../helpers/env.js';

let fx: RuntimeFixture;
before(async () => { fx = await runtimeFixture('restore'); });
after(async () => { await fx?.cleanup(); });

/** What a reboot or kill -9 does to a detached container: monitor and process die unrecorded. */
async function crash(id: string): Promise<void> {
  const st = await waitFor('pid', async () => { const s = await readState(fx.root, id); return s.Pid ? s : undefined; });
  process.kill(st.RunnerPid, 'SIGKILL');
  process.kill(st.Pid, 'SIGKILL');
  await waitFor('crash detected', async () => (await fx.ok(['ps', '-a', '--filter', `id=${id}`, '--format', '{{.Status}}'])).startsWith('Exited (255)'));
}

async function status(name: string): Promise<string> {
  return (await fx.ok(['inspect', '--format', '{{.State.Status}}', name])).trim();
}

/** This container's addresses in the bridge's allocation file. */
async function addressesOf(id: string): Promise<string[]> {
  const file = path.join('/run/drydock/networks', `${fx.env.DRYDOCK_BRIDGE}.json`);
  const used = JSON.parse(await fsp.readFile(file, 'utf8').catch(() => '{}')) as Record<string, string>;
  return Object.keys(used).filter((a) => used[a] === id);
}

test('--restart=always after kill -9 of the monitor: start works (the stale netns and runc state are cleared)', async () => {
  const id = (await fx.ok(['run', '-d', '--restart=always', '--name', 'reg', 'busybox', 'sleep', '1000'])).trim();
  await crash(id);
  assert.ok(existsSync(`/run/netns/drydock-${id.slice(0, 12)}`), 'the dead runner left its netns');
  const r = await fx.cli(['start', 'reg']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(await status('reg'), 'running');
  assert.equal((await fx.ok(['exec', 'reg', 'sh', '-c', 'ip -4 addr show eth0 | grep -c inet'])).trim(), '1');
  assert.equal((await addressesOf(id)).length, 1, 'the old address was released, not leaked');
  await fx.ok(['rm', '-f', 'reg']);
  assert.deepEqual(await addressesOf(id), []);
});

test('container restore starts what the policies say after a (simulated) reboot', async () => {
  const run = async (name: string, policy: string) => (await fx.ok(['run', '-d', `--restart=${policy}`, '--name', name, 'busybox', 'sleep', '1000'])).trim();
  const always = await run('r-always', 'always');
  const unless = await run('r-unless', 'unless-stopped');
  await run('r-unless-stopped', 'unless-stopped');
  const no = await run('r-no', 'no');
  const failure = await run('r-onfail', 'on-failure');
  await fx.ok(['stop', '-t', '1', 'r-unless-stopped']);
  for (const id of [always, unless, no, failure]) await crash(id);

  const r = await fx.cli(['container', 'restore']);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(r.stdout.split('\n').filter(Boolean).sort(), ['r-always', 'r-onfail', 'r-unless']);
  for (const name of ['r-always', 'r-onfail', 'r-unless']) assert.equal(await status(name), 'running', name);
  for (const name of ['r-no', 'r-unless-stopped']) assert.equal(await status(name), 'exited', name);
  // Nothing more to do: a second restore starts nothing.
  assert.equal((await fx.ok(['container', 'restore'])).trim(), '');
  await fx.ok(['rm', '-f', 'r-always', 'r-unless', 'r-unless-stopped', 'r-no', 'r-onfail']);
});

/** systemd-analyze verify: no complaint at all about the unit. */
function verifyUnit(file: string): void {
  requireTool('systemd-analyze', 'apt-get install systemd');
  const v = spawnSync('systemd-analyze', ['verify', file], { encoding: 'utf8' });
  assert.equal(v.status, 0, `${file}: ${v.stderr}`);
  assert.equal(v.stderr.trim(), '', `${file}: ${v.stderr}`);
}

test('generate systemd CONTAINER prints a unit systemd accepts, starting and stopping that container', async () => {
  await fx.ok(['create', '--restart=always', '--name', 'unitbox', 'busybox', 'sleep', '1000']);
  const unit = await fx.ok(['generate', 'systemd', '-t', '7', 'unitbox']);
  assert.match(unit, /^ExecStart=\S+ \S+ start unitbox$/m);
  assert.match(unit, /^ExecStop=\S+ \S+ stop -t 7 unitbox$/m);
  assert.match(unit, new RegExp(`^Environment=DRYDOCK_ROOT=${fx.root.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`, 'm'));
  assert.match(unit, new RegExp(`^Environment=DRYDOCK_BRIDGE=${fx.env.DRYDOCK_BRIDGE}$`, 'm'));
  const file = path.join(tempDir('drydock-unit-'), 'drydock-unitbox.service');
  await fsp.writeFile(file, unit);
  verifyUnit(file);
  // The unit's own commands do what it says.
  const exec = unit.match(/^ExecStart=(.*)$/m)![1]!.split(' ');
  const started = spawnSync(exec[0]!, exec.slice(1), { env: { ...process.env, ...fx.env }, encoding: 'utf8' });
  assert.equal(started.status, 0, started.stderr);
  assert.equal(await status('unitbox'), 'running');
  const stop = unit.match(/^ExecStop=(.*)$/m)![1]!.split(' ');
  const stopped = spawnSync(stop[0]!, stop.slice(1), { env: { ...process.env, ...fx.env }, encoding: 'utf8' });
  assert.equal(stopped.status, 0, stopped.stderr);
  assert.equal(await status('unitbox'), 'exited');
  await fx.ok(['rm', 'unitbox']);
  const missing = await fx.cli(['generate', 'systemd', 'nosuch']);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /nosuch/);
});

test('the shipped units (contrib/systemd) pass systemd-analyze verify and name commands drydock has', async () => {
  for (const unit of ['drydock-restore.service', 'drydock-registry.service']) {
    const file = path.join(PROJECT_ROOT, 'contrib/systemd', unit);
    verifyUnit(file);
    // ExecStart runs `drydock …` through /usr/bin/env: those words must be a valid drydock command.
    const words = (await fsp.readFile(file, 'utf8')).match(/^ExecStart=\/usr\/bin\/env drydock (.*)$/m)![1]!.split(' ');
    const help = await fx.cli([...words, '--help']);
    assert.equal(help.code, 0, `${unit}: drydock ${words.join(' ')}: ${help.stderr}`);
  }
});
