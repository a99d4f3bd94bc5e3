// os/state.json and os/deployments/*.json: validation, ids, and what a crash leaves behind. The
// crash is a real SIGKILL of a child process at each step of the atomic write (open temp, write,
// fsync, close, rename, fsync dir): before the rename the old state must read back, after it the
// new one, and never a torn or empty file.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { promises as fsp, writeFileSync } from 'node:fs';
import path from 'node:path';
import { CLI_MAIN, tempDir } from '../helpers/env.js';
import { OsLayout, type OsState, type Deployment } from '../../src/os/layout.js';
import { withLock } from '../../src/os/lock.js';

const D1 = 'sha256:' + 'a'.repeat(64);
const layoutModule = path.join(path.dirname(CLI_MAIN), '..', 'os', `layout${path.extname(CLI_MAIN)}`);

function state(over: Partial<OsState> = {}): OsState {
  return { version: 1, ref: '10.0.2.2:5000/os:stable', default: 'aaaaaaaaaaaa', rollback: null, booted: null, pending: null, abandoned: [], insecureRegistries: [], authfile: null, ...over };
}

function deployment(id: string): Deployment {
  return { id, ref: 'r', manifestDigest: D1, configDigest: D1, layers: [D1], created: new Date(0).toISOString(), imageConfig: { Cmd: ['sh'] } };
}

test('state round-trips; a missing or bad state.json is a clear error', async () => {
  const root = tempDir('drydock-os-layout-');
  const l = new OsLayout(root);
  await assert.rejects(l.readState(), /state\.json not found: .* is not the data partition of a disk made with drydock disk --updates-from/);
  await l.create();
  await l.writeState(state({ pending: { id: 'bbbbbbbbbbbb', triesLeft: 3, deadlineSeconds: 300 } }));
  assert.deepEqual((await l.readState()).pending, { id: 'bbbbbbbbbbbb', triesLeft: 3, deadlineSeconds: 300 });
  const cases: [string, RegExp][] = [
    ['{"version":', /is not valid JSON/],
    ['{"version":2,"ref":"x","default":"aaaaaaaaaaaa"}', /version 2 is not supported/],
    ['{"version":1,"ref":"x","default":"../../etc"}', /is not a deployment id/],
    ['{"version":1,"default":"aaaaaaaaaaaa"}', /"ref" is missing/],
  ];
  for (const [text, want] of cases) {
    writeFileSync(l.statePath, text);
    await assert.rejects(l.readState(), want, text);
  }
  // Old fields the initramfs may leave out get their defaults.
  writeFileSync(l.statePath, '{"version":1,"ref":"x","default":"aaaaaaaaaaaa"}');
  assert.deepEqual(await l.readState(), { version: 1, ref: 'x', default: 'aaaaaaaaaaaa', rollback: null, pending: null, abandoned: [], insecureRegistries: [], authfile: null });
});

test('deployment ids: 12 hex of the manifest digest, then a counter; files are never rewritten', async () => {
  const l = new OsLayout(tempDir('drydock-os-layout-'));
  await l.create();
  assert.equal(await l.newDeploymentId(D1), 'aaaaaaaaaaaa');
  await l.writeDeployment(deployment('aaaaaaaaaaaa'));
  assert.equal(await l.newDeploymentId(D1), 'aaaaaaaaaaaa-2');
  await assert.rejects(l.writeDeployment(deployment('aaaaaaaaaaaa')), /already exists/);
  await l.writeDeployment(deployment('aaaaaaaaaaaa-2'));
  // A temp file of an interrupted write is not a deployment.
  writeFileSync(path.join(l.deploymentsDir, '.tmp-bbbbbbbbbbbb.json-1-00'), '{');
  assert.deepEqual(await l.deploymentIds(), ['aaaaaaaaaaaa', 'aaaaaaaaaaaa-2']);
  assert.equal((await l.readDeployment('aaaaaaaaaaaa-2')).id, 'aaaaaaaaaaaa-2');
  await assert.rejects(l.readDeployment('cccccccccccc'), /deployment cccccccccccc not found/);
  assert.throws(() => l.layerPath('sha256:../x'), /not a sha256 digest/);
});

/**
 * A child that writes the new state and SIGKILLs itself just before the `step`-th filesystem
 * operation of the write. The real fs functions run; they are only wrapped to count.
 */
const CHILD = `
import { promises as fsp } from 'node:fs';
const [mod, root, stepArg, stateJson] = process.argv.slice(2);
const stopAt = Number(stepArg);
let n = 0;
const checkpoint = (name) => { n++; process.stdout.write(n + ' ' + name + '\\n'); if (n === stopAt) process.kill(process.pid, 'SIGKILL'); };
const wrap = (obj, name, label = name) => { const f = obj[name]; obj[name] = function (...a) { checkpoint(label); return f.apply(this, a); }; };
const open = fsp.open;
fsp.open = async (...a) => {
  checkpoint('open ' + a[0].split('/').pop());
  const fh = await open(...a);
  for (const m of ['writeFile', 'sync', 'close']) wrap(fh, m);
  return fh;
};
wrap(fsp, 'rename');
const { OsLayout } = await import(mod);
await new OsLayout(root).writeState(JSON.parse(stateJson));
checkpoint('done');
`;

function runChild(script: string, args: string[]): Promise<{ signal: NodeJS.Signals | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const loader = layoutModule.endsWith('.ts') ? ['--import', 'tsx'] : [];
    const c = spawn(process.execPath, [...loader, script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    c.stdout.on('data', (d) => (stdout += d));
    c.stderr.on('data', (d) => (stderr += d));
    c.on('error', reject);
    c.on('close', (_code, signal) => resolve({ signal, stdout, stderr }));
  });
}

test('SIGKILL at each step of a state write leaves the old state or the new one, whole', async () => {
  const dir = tempDir('drydock-os-crash-');
  const script = path.join(dir, 'child.mjs');
  writeFileSync(script, CHILD);
  const old = state({ default: 'aaaaaaaaaaaa' });
  const next = state({ default: 'aaaaaaaaaaaa', rollback: null, pending: { id: 'bbbbbbbbbbbb', triesLeft: 3, deadlineSeconds: 300 } });
  // A dry run counts the steps and names them.
  const probeRoot = path.join(dir, 'probe');
  await new OsLayout(probeRoot).create();
  await new OsLayout(probeRoot).writeState(old);
  const probe = await runChild(script, [layoutModule, probeRoot, '0', JSON.stringify(next)]);
  const steps = probe.stdout.trim().split('\n').map((l) => l.replace(/^\d+ /, ''));
  assert.equal(steps.at(-1), 'done', probe.stderr);
  const renameAt = steps.indexOf('rename') + 1;
  assert.ok(renameAt > 0 && steps.includes('sync'), steps.join(', '));
  for (let step = 1; step < steps.length; step++) {
    const root = path.join(dir, `r${step}`);
    const l = new OsLayout(root);
    await l.create();
    await l.writeState(old);
    const r = await runChild(script, [layoutModule, root, String(step), JSON.stringify(next)]);
    assert.equal(r.signal, 'SIGKILL', `step ${step} (${steps[step - 1]}): ${r.stderr}`);
    const after = await l.readState();
    assert.deepEqual(after.pending, step <= renameAt ? null : next.pending, `killed before step ${step} (${steps[step - 1]})`);
    // Only the temp file may be left over, never a second state.
    const names = (await fsp.readdir(l.dir)).filter((n) => n.includes('state.json'));
    assert.ok(names.every((n) => n === 'state.json' || n.startsWith('.tmp-state.json-')), names.join(' '));
  }
});

test('the lock refuses a second live holder and takes over a dead one', async () => {
  const l = new OsLayout(tempDir('drydock-os-lock-'));
  await l.create();
  await withLock(l.lockPath, async () => {
    // The current process holds it: a child of the same boot sees a live pid.
    const script = path.join(l.root, 'lock.mjs');
    writeFileSync(script, `const { withLock } = await import(${JSON.stringify(layoutModule.replace(/layout\.(js|ts)$/, 'lock.$1'))});\n` +
      `await withLock(process.argv[2], async () => {}).then(() => console.log('got it'), (e) => console.log(e.message));\n`);
    const r = await runChild(script, [l.lockPath]);
    assert.match(r.stdout, /another drydock os command \(pid \d+\) is running/);
  });
  // A lock left by a process that no longer exists.
  const dead = spawn('true');
  await new Promise((r) => dead.on('close', r));
  writeFileSync(l.lockPath, `${dead.pid} ${(await fsp.readFile('/proc/sys/kernel/random/boot_id', 'utf8')).trim()}\n`);
  assert.equal(await withLock(l.lockPath, async () => 'ran'), 'ran');
  await assert.rejects(fsp.stat(l.lockPath), { code: 'ENOENT' });
});

test('updateState waits for the shell writers\' state.json.lock and applies its change to what they wrote', async () => {
  const l = new OsLayout(tempDir('drydock-os-statelock-'));
  await l.create();
  await l.writeState(state());
  // A shell writer (src/boot/osstate.ts os_write) holds the lock and promotes a deployment.
  await fsp.mkdir(`${l.statePath}.lock`);
  const update = l.updateState((s) => ({ ...s, ref: 'registry.example/os:testing' }));
  await new Promise((r) => setTimeout(r, 300));
  await l.writeState(state({ default: 'bbbbbbbbbbbb', rollback: 'aaaaaaaaaaaa' }));
  await fsp.rmdir(`${l.statePath}.lock`);
  const next = await update;
  assert.deepEqual([next.ref, next.default, next.rollback], ['registry.example/os:testing', 'bbbbbbbbbbbb', 'aaaaaaaaaaaa']);
  assert.deepEqual(await l.readState(), next);
  await assert.rejects(fsp.stat(`${l.statePath}.lock`), { code: 'ENOENT' });
  // A lock left by a killed writer is taken after 10 s (the shell's rule too).
  await fsp.mkdir(`${l.statePath}.lock`);
  const t0 = Date.now();
  await l.updateState((s) => s);
  assert.ok(Date.now() - t0 >= 9_000, `${Date.now() - t0} ms`);
});
