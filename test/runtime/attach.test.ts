// `drydock attach` to real detached busybox containers: a terminal shell that echoes a line and is
// left running by Ctrl-P Ctrl-Q, and a non-terminal container whose stdout, stderr and exit code
// reach the attached client. Plus Docker's --detach-keys grammar.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { runtimeFixture, waitFor, type RuntimeFixture } from './helpers.js';
import { CLI_MAIN, tempDir } from '../helpers/env.js';
import { parseDetachKeys, DetachScanner, serveAttach, MAX_CLIENT_BACKLOG, STREAM_EXIT } from '../../src/runtime/attach.js';
import net from 'node:net';
import path from 'node:path';
import { PassThrough } from 'node:stream';

let fx: RuntimeFixture;
before(async () => { fx = await runtimeFixture('attach'); });
after(async () => { await fx?.cleanup(); });

function attach(args: string[]) {
  const p = spawn(process.execPath, [CLI_MAIN, 'attach', ...args], { env: { ...process.env, ...fx.env }, stdio: ['pipe', 'pipe', 'pipe'] });
  const io = { stdout: '', stderr: '' };
  p.stdout.on('data', (d) => { io.stdout += d; });
  p.stderr.on('data', (d) => { io.stderr += d; });
  const exit = new Promise<number | null>((resolve) => p.on('exit', (code) => resolve(code)));
  return { p, io, exit };
}

test('attach to a -dit shell: a line is echoed, Ctrl-P Ctrl-Q detaches and the container keeps running', async () => {
  const id = (await fx.ok(['run', '-dit', '--network', 'none', '--name', 'shell', 'busybox', 'sh'])).trim();
  const a = attach(['shell']);
  // Keep typing until the attach socket carries the answer (the client may still be connecting).
  await waitFor('echoed line', async () => {
    a.p.stdin.write('echo at-$((40+2))\n');
    await new Promise((r) => setTimeout(r, 300));
    return a.io.stdout.includes('at-42\r\n');
  });
  a.p.stdin.write('\x10\x11');
  const code = await Promise.race([a.exit, new Promise((r) => setTimeout(() => r('timeout'), 10_000))]);
  assert.equal(code, 0, a.io.stderr);
  assert.equal(a.io.stderr, '');
  assert.match(await fx.ok(['ps', '--format', '{{.Status}}', '--filter', `id=${id}`]), /^Up /);
  // Attach again with other detach keys: ctrl-a then x.
  const b = attach(['--detach-keys', 'ctrl-a,x', 'shell']);
  await waitFor('second echo', async () => {
    b.p.stdin.write('echo again\n');
    await new Promise((r) => setTimeout(r, 300));
    return b.io.stdout.includes('again\r\n');
  });
  b.p.stdin.write('\x01x');
  assert.equal(await b.exit, 0);
  assert.equal(await fx.ok(['inspect', '--format', '{{.State.Running}}', 'shell']), 'true\n');
  await fx.ok(['rm', '-f', 'shell']);
});

test('attach to a non-terminal container: stdout and stderr apart, and its exit code', async () => {
  await fx.ok(['run', '-d', '-i', '--network', 'none', '--name', 'filter', 'busybox', 'sh', '-c',
    'read line; echo "got $line"; echo oops >&2; exit 3']);
  const a = attach(['filter']);
  // stdin reaches the container only once the client is connected: wait for the socket's client.
  await new Promise((r) => setTimeout(r, 1500));
  a.p.stdin.write('hello\n');
  assert.equal(await a.exit, 3);
  assert.equal(a.io.stdout, 'got hello\n');
  assert.equal(a.io.stderr, 'oops\n');
  await fx.ok(['rm', 'filter']);
});

test('attach refuses a stopped container like Docker', async () => {
  await fx.ok(['run', '--network', 'none', '--name', 'done', 'busybox', 'true']);
  const r = await fx.cli(['attach', 'done']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /You cannot attach to a stopped container, start it first/);
});

test('--detach-keys grammar and the scanner', () => {
  for (const [spec, bytes] of [['ctrl-p,ctrl-q', [16, 17]], ['ctrl-a', [1]], ['a,b', [97, 98]], ['ctrl-@,ctrl-_', [0, 31]]] as const) {
    assert.deepEqual([...parseDetachKeys(spec)], bytes, spec);
  }
  for (const bad of ['ctrl-', 'ctrl-1', 'ab']) assert.throws(() => parseDetachKeys(bad), /Invalid detach keys/);
  const passed: number[] = [];
  let detached = 0;
  const s = new DetachScanner(Buffer.from([16, 17]), (b) => passed.push(...b), () => detached++);
  s.push(Buffer.from([65, 16]));
  s.push(Buffer.from([66, 16]));
  assert.deepEqual(passed, [65, 16, 66]);
  s.push(Buffer.from([17]));
  assert.equal(detached, 1);
  assert.deepEqual(passed, [65, 16, 66]);
});

test('a client that stops reading is cut off at MAX_CLIENT_BACKLOG; the container is never held up', async () => {
  const dir = tempDir('drydock-attach-backlog-');
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  const server = await serveAttach(dir, { stdout, stderr });
  try {
    const client = net.connect(path.join(dir, 'attach.sock'));
    await new Promise<void>((resolve, reject) => { client.once('connect', resolve); client.once('error', reject); });
    client.pause(); // never reads
    await new Promise((r) => setTimeout(r, 200)); // the server side has taken the connection
    const chunk = Buffer.alloc(1 << 20, 0x61);
    const total = 3 * MAX_CLIENT_BACKLOG;
    // Writes into the container's output never block on the client: 3x the bound goes through.
    for (let i = 0; i < total / chunk.length; i++) stdout.write(chunk);
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setTimeout(r, 500));
    // Now read what the server queued: the connection ends before all of the output arrived.
    let received = 0;
    client.on('data', (d: Buffer) => { received += d.length; });
    const closed = new Promise<void>((resolve) => client.once('close', () => resolve()));
    client.resume();
    await Promise.race([closed, new Promise((_, reject) => setTimeout(() => reject(new Error('the stalled client was not cut off')), 10_000))]);
    assert.ok(received < total, `cut off after ${received} of ${total} bytes`);
  } finally {
    await server.close();
  }
});

test('keys a client sends after the container exited are dropped; the monitor lives to send the exit code', async () => {
  const dir = tempDir('drydock-attach-epipe-');
  // A real process that closed its stdin (as one that exited has): writes to the pipe fail with EPIPE.
  const child = spawn('sh', ['-c', 'exec 0<&-; sleep 2'], { stdio: ['pipe', 'pipe', 'pipe'] });
  const server = await serveAttach(dir, { stdin: child.stdin, stdout: child.stdout, stderr: child.stderr });
  await new Promise((r) => setTimeout(r, 300));
  const client = net.connect(path.join(dir, 'attach.sock'));
  const frames: Buffer[] = [];
  client.on('data', (d: Buffer) => frames.push(d));
  await new Promise<void>((resolve, reject) => { client.once('connect', resolve); client.once('error', reject); });
  const closed = new Promise<void>((resolve) => client.once('close', () => resolve()));
  // What script(1) forwards from an empty stdin after the command ended (^D), several times over.
  for (let i = 0; i < 5; i++) { client.write('\x04'); await new Promise((r) => setTimeout(r, 50)); }
  await server.close(0);
  await closed;
  const all = Buffer.concat(frames);
  assert.equal(all[0], STREAM_EXIT, 'an exit frame arrived');
  assert.equal(all.readInt32BE(8), 0);
});
