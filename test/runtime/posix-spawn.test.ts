// spawnPiped (posix_spawn through koffi), which starts a build's `runc run`: it must hand the
// child what child_process.spawn does — output on pipes, input on a pipe or /dev/null, the exit
// code or signal, default signal dispositions, no descriptor of ours — and report a missing
// program as ENOENT. No root needed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { Readable } from 'node:stream';
import { decodeStatus, posixSpawnAvailable, spawnPiped, type PipedChild } from '../../src/runtime/posix-spawn.js';

async function collect(c: PipedChild): Promise<{ out: string; err: string; code: number | null; signal: NodeJS.Signals | null }> {
  let out = '';
  let err = '';
  c.stdout.on('data', (d: Buffer) => (out += d));
  c.stderr.on('data', (d: Buffer) => (err += d));
  const { code, signal } = await c.closed;
  return { out, err, code, signal };
}

test('posix_spawn is available on this (glibc Linux) host', () => {
  assert.equal(posixSpawnAvailable(), process.platform === 'linux');
});

const cases: { name: string; args: string[]; stdin?: string; want: { out: string; err: string; code: number | null; signal: NodeJS.Signals | null } }[] = [
  { name: 'stdout, stderr and the exit code', args: ['-c', 'echo out; echo err >&2; exit 7'], want: { out: 'out\n', err: 'err\n', code: 7, signal: null } },
  { name: 'stdin from a pipe', args: ['-c', 'tr a-z A-Z'], stdin: 'hello\n', want: { out: 'HELLO\n', err: '', code: 0, signal: null } },
  { name: 'stdin is /dev/null without one', args: ['-c', 'cat; readlink /proc/self/fd/0'], want: { out: '/dev/null\n', err: '', code: 0, signal: null } },
  { name: 'death by a signal', args: ['-c', 'kill -TERM $$'], want: { out: '', err: '', code: null, signal: 'SIGTERM' } },
  // Node ignores SIGPIPE; a child must start with it (and every other signal) at the default
  // and nothing blocked, as libuv's children do: `yes | head` ends by SIGPIPE, not by EPIPE.
  { name: 'signals at their defaults, none blocked', args: ['-c', "grep -E '^Sig(Blk|Ign):' /proc/self/status"], want: { out: 'SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n', err: '', code: 0, signal: null } },
];

for (const c of cases) {
  test(`spawnPiped: ${c.name}`, async (t) => {
    if (!posixSpawnAvailable()) return t.skip('no posix_spawn through koffi here');
    const child = spawnPiped('sh', c.args, { stdin: c.stdin !== undefined });
    if (c.stdin !== undefined) Readable.from([c.stdin]).pipe(child.stdin!);
    const r = await collect(child);
    // SigIgn: glibc's posix_spawn leaves its two internal signals (32, 33) ignored; they are
    // not the program's (glibc sets their handlers again at start) and sigfillset cannot name them.
    if (c.name.startsWith('signals')) r.out = r.out.replace(/^SigIgn:\t0000000180000000$/m, 'SigIgn:\t0000000000000000');
    assert.deepEqual(r, c.want);
  });
}

test('spawnPiped: the child gets the descriptors a child_process child gets, none of ours', async (t) => {
  if (!posixSpawnAvailable()) return t.skip('no posix_spawn through koffi here');
  // 0-2, the directory ls reads, and whatever this process inherited without close-on-exec.
  const list = ['-c', 'ls /proc/self/fd | sort -n | tr "\\n" " "'];
  const viaLibuv = execFileSync('sh', list, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  // Open pipes and sockets of our own meanwhile: none may reach the child.
  const busy = spawnPiped('sleep', ['5'], { stdin: true });
  const r = await collect(spawnPiped('sh', list, { stdin: true }));
  busy.kill('SIGKILL');
  await busy.closed;
  assert.equal(r.out, viaLibuv);
  assert.match(r.out, /^0 1 2 3 /);
});

test('spawnPiped: a missing program is ENOENT, and no descriptor is left open', async (t) => {
  if (!posixSpawnAvailable()) return t.skip('no posix_spawn through koffi here');
  const before = countFds();
  assert.throws(() => spawnPiped('drydock-no-such-program', [], { stdin: true }), (e: NodeJS.ErrnoException) => e.code === 'ENOENT');
  assert.equal(countFds(), before);
});

test('spawnPiped: kill signals the running child; after it was reaped, kill does nothing', async (t) => {
  if (!posixSpawnAvailable()) return t.skip('no posix_spawn through koffi here');
  const child = spawnPiped('sleep', ['30'], { stdin: false });
  child.kill('SIGKILL');
  const r = await collect(child);
  assert.equal(r.signal, 'SIGKILL');
  child.kill('SIGKILL');
});

test('spawnPiped: a child that closes its output and runs on is reaped once it exits, with its code', async (t) => {
  if (!posixSpawnAvailable()) return t.skip('no posix_spawn through koffi here');
  // Both pipes at EOF while the process still runs: the WNOHANG reap finds nothing, and the
  // wait on the thread pool must get the status (not 0, not a hang).
  const started = Date.now();
  const r = await collect(spawnPiped('sh', ['-c', 'exec >&- 2>&-; sleep 0.3; exit 5'], { stdin: false }));
  assert.deepEqual(r, { out: '', err: '', code: 5, signal: null });
  assert.ok(Date.now() - started >= 250, 'closed resolved before the process exited');
});

test('spawnPiped: many short children in a row are all reaped with their own codes', async (t) => {
  if (!posixSpawnAvailable()) return t.skip('no posix_spawn through koffi here');
  // Mostly reaped on the main thread (a zombie by the time both pipes closed), some on the pool.
  for (let i = 0; i < 40; i++) {
    const r = await collect(spawnPiped('sh', ['-c', `echo ${i}; exit ${i % 7}`], { stdin: false }));
    assert.deepEqual(r, { out: `${i}\n`, err: '', code: i % 7, signal: null });
  }
  assert.equal(countChildren(), 0);
});

const statuses: [number, { code: number | null; signal: NodeJS.Signals | null }][] = [
  [0, { code: 0, signal: null }],
  [3 << 8, { code: 3, signal: null }],
  [255 << 8, { code: 255, signal: null }],
  [9, { code: null, signal: 'SIGKILL' }],
  [15 | 0x80, { code: null, signal: 'SIGTERM' }], // with the core-dump bit
];
for (const [status, want] of statuses) {
  test(`decodeStatus(${status})`, () => assert.deepEqual(decodeStatus(status), want));
}

/** Descriptors open in this process. */
function countFds(): number {
  return readdirSync('/proc/self/fd').length;
}

/** This process's children not yet reaped (zombies included). */
function countChildren(): number {
  const tasks = readdirSync('/proc/self/task');
  return tasks.reduce((n, tid) => {
    try { return n + readFileSync(`/proc/self/task/${tid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).length; } catch { return n; }
  }, 0);
}
