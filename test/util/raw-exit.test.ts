// The CLI's exit without Node's teardown (src/util/raw-exit.ts), through bin/drydock.js as the
// bench and users run it: a build with a RUN (libc loaded through koffi for posix_spawn) ends
// with _exit(2) from the last 'exit' listener. Its output must be complete on a pipe and in a
// file, its exit code the build's, and a stdio pipe shared with the parent must get back the
// flags it had (libuv sets O_NONBLOCK on a pipe it makes a stream for; Node's teardown resets
// it, so must the raw exit). A build that read stdin exits through Node's teardown.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { closeSync, constants, openSync, readFileSync, readSync, writeFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { tempDir, requireRoot, requireTool, PROJECT_ROOT } from '../helpers/env.js';
import { busyboxImage } from '../helpers/images.js';

const base = tempDir('drydock-raw-exit-');
const root = path.join(base, 'store');
const BIN = path.join(PROJECT_ROOT, 'bin', 'drydock.js');
const WITHOUT_TEARDOWN = /^trace exit\.without-teardown /m;

before(async () => {
  requireRoot();
  requireTool('runc');
  await busyboxImage(root);
});

let contexts = 0;
function context(dockerfile: string): string {
  const dir = path.join(base, `ctx${contexts++}`);
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'Dockerfile'), dockerfile);
  return dir;
}

function env(): NodeJS.ProcessEnv {
  return { ...process.env, DRYDOCK_ROOT: root, DRYDOCK_TRACE: '1' };
}

/** Runs bin/drydock.js with `stdio`, resolving with its exit code. */
function run(args: string[], stdio: ('ignore' | 'pipe' | number)[], input?: string): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, [BIN, ...args], { stdio: stdio as never, env: env() });
    let stderr = '';
    c.stderr?.on('data', (d: Buffer) => (stderr += d));
    if (input !== undefined) c.stdin!.end(input);
    c.on('error', reject);
    c.on('close', (code) => resolve({ code, stderr }));
  });
}

/** A FIFO's two ends: the write end blocking (what a parent's pipe usually is), the read end not. */
function fifo(): { read: number; write: number; drain(): string; close(): void } {
  const p = path.join(base, `fifo${contexts++}`);
  execFileSync('mkfifo', [p]);
  const read = openSync(p, constants.O_RDONLY | constants.O_NONBLOCK);
  const write = openSync(p, constants.O_WRONLY);
  return {
    read,
    write,
    drain() {
      let out = '';
      const buf = Buffer.alloc(65536);
      for (;;) {
        let n: number;
        try { n = readSync(read, buf); } catch (e) { if ((e as NodeJS.ErrnoException).code === 'EAGAIN') break; throw e; }
        if (n === 0) break;
        out += buf.toString('utf8', 0, n);
      }
      return out;
    },
    close() { closeSync(read); closeSync(write); },
  };
}

function nonBlocking(fd: number): boolean {
  const flags = parseInt(/^flags:\s*([0-7]+)$/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))![1]!, 8);
  return (flags & constants.O_NONBLOCK) !== 0;
}

test('a build with a RUN, stdout and stderr on one pipe of the parent: output complete, code 0, the pipe blocking again', async () => {
  const ctx = context('FROM busybox\nRUN echo from-the-run && echo built > /b\nCMD ["sh"]\n');
  const pipe = fifo();
  try {
    assert.equal(nonBlocking(pipe.write), false);
    const r = await run(['build', '-t', 'raw-exit:pipe', ctx], ['ignore', pipe.write, pipe.write]);
    const out = pipe.drain();
    assert.equal(r.code, 0, out);
    assert.match(out, /from-the-run/);
    assert.match(out, /^Successfully built [0-9a-f]{12}\nSuccessfully tagged raw-exit:pipe\n/m);
    assert.match(out, WITHOUT_TEARDOWN);
    // libuv made the shared pipe non-blocking for process.stdout; the exit put that back.
    assert.equal(nonBlocking(pipe.write), false);
  } finally {
    pipe.close();
  }
});

test('a build with a RUN, stdout to a file: the image ID is in it, code 0', async () => {
  const ctx = context('FROM busybox\nRUN echo x > /x\n');
  const file = path.join(base, 'iid.out');
  const fd = openSync(file, 'w');
  try {
    const r = await run(['build', '-q', ctx], ['ignore', fd, 'pipe']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, WITHOUT_TEARDOWN);
  } finally {
    closeSync(fd);
  }
  assert.match(readFileSync(file, 'utf8'), /^sha256:[0-9a-f]{64}\n$/);
});

test('a failing RUN: the exit code is the build\'s, the error complete on stderr', async () => {
  const ctx = context('FROM busybox\nRUN echo before-failing; exit 42\n');
  const pipe = fifo();
  try {
    const r = await run(['build', ctx], ['ignore', 'ignore', pipe.write]);
    const err = pipe.drain();
    assert.equal(r.code, 42, err);
    assert.match(err, /did not complete successfully: exit code: 42\n/);
    assert.match(err, WITHOUT_TEARDOWN);
    assert.equal(nonBlocking(pipe.write), false);
  } finally {
    pipe.close();
  }
});

test('a build that read its Dockerfile from stdin exits through Node\'s teardown', async () => {
  const ctx = context('');
  const r = await run(['build', '-q', '-f', '-', ctx], ['pipe', 'ignore', 'pipe'], 'FROM busybox\nRUN echo y > /y\n');
  assert.equal(r.code, 0, r.stderr);
  assert.doesNotMatch(r.stderr, WITHOUT_TEARDOWN);
  assert.match(r.stderr, /^trace build\.export /m);
});
