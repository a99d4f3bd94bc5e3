// `drydock serve` as installed (bin/drydock.js, the CommonJS bundles of `npm run build`) runs with a
// libuv threadpool of SERVE_THREADPOOL_SIZE threads (src/registry/threadpool.ts): every fs call
// runs on that pool, and a call that blocks — a blob commit's fsync, a slow disk — holds a thread.
// With node's default of 4, four such calls stopped every other client. Blocking calls are made
// here with FIFOs (mkfifo) in place of blob files: opening one blocks until a writer comes.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, promises as fsp } from 'node:fs';
import path from 'node:path';
import { PROJECT_ROOT, requireTool, tempDir } from '../helpers/env.js';
import { SERVE_THREADPOOL_SIZE } from '../../src/registry/threadpool.js';
import { http, pushBlob } from './util.js';

const BIN = path.join(PROJECT_ROOT, 'bin/drydock.js');
const children = new Set<ChildProcess>();
after(() => { for (const c of children) c.kill('SIGKILL'); });

/** The installed command: bin/drydock.js with the bundles built (without them it would run the ES-module entry). */
async function serveInstalled(root: string, env: NodeJS.ProcessEnv = {}): Promise<{ url: string; proc: ChildProcess }> {
  assert.ok(existsSync(path.join(PROJECT_ROOT, 'dist/cli/drydock.cjs')), 'dist/cli/drydock.cjs is missing: run `npm run build` (the bundles are what bin/drydock.js runs)');
  const childEnv = { ...process.env, ...env };
  if (!('UV_THREADPOOL_SIZE' in env)) delete childEnv.UV_THREADPOOL_SIZE;
  const proc = spawn(process.execPath, [BIN, 'serve', '--root', root, '--addr', '127.0.0.1:0', '--no-access-log'], { cwd: PROJECT_ROOT, env: childEnv, stdio: ['ignore', 'ignore', 'pipe'] });
  children.add(proc);
  proc.on('exit', () => children.delete(proc));
  let err = '';
  const url = await new Promise<string>((resolve, reject) => {
    proc.stderr!.on('data', (d) => {
      err += d;
      const m = /listening on (\S+)/.exec(err);
      if (m) resolve(m[1]!);
    });
    proc.on('exit', (c) => reject(new Error(`drydock serve exited ${c}: ${err}`)));
  });
  return { url, proc };
}

/** SIGTERM, and SIGKILL after 5 s: a server whose pool is still blocked cannot finish its requests. */
async function stop(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null) return;
  const exited = new Promise((r) => proc.once('exit', r));
  proc.kill('SIGTERM');
  const timer = setTimeout(() => proc.kill('SIGKILL'), 5_000);
  await exited;
  clearTimeout(timer);
}

/** Threads of a process once its threadpool has started (libuv starts all of its threads at first use). */
async function threadsAfterARequest(env: NodeJS.ProcessEnv): Promise<number> {
  const { url, proc } = await serveInstalled(tempDir('drydock-threadpool-'), env);
  try {
    await pushBlob(url, 'pool/count', randomBytes(1024));
    return readdirSync(`/proc/${proc.pid}/task`).length;
  } finally {
    await stop(proc);
  }
}

describe('drydock serve threadpool', () => {
  test(`the installed serve runs ${SERVE_THREADPOOL_SIZE} threadpool threads; an operator's UV_THREADPOOL_SIZE wins`, async () => {
    const four = await threadsAfterARequest({ UV_THREADPOOL_SIZE: '4' });
    const eight = await threadsAfterARequest({ UV_THREADPOOL_SIZE: '8' });
    const unset = await threadsAfterARequest({});
    assert.equal(eight - four, 4, `UV_THREADPOOL_SIZE=8 gives 4 threads more than 4 (${four} and ${eight} threads)`);
    assert.equal(unset - four, SERVE_THREADPOOL_SIZE - 4, `unset: ${unset} threads, against ${four} with node's default of 4`);
  });

  test('eight fs calls blocked on a slow "disk" (FIFO blobs being read) do not stop another client pushing and pulling', async () => {
    requireTool('mkfifo');
    const root = tempDir('drydock-threadpool-');
    const { url, proc } = await serveInstalled(root);
    const fifos: string[] = [];
    try {
      // Eight blobs pushed normally, then each blob file swapped for a FIFO: a GET of one opens it
      // and that open holds a pool thread until a writer comes.
      const digests: string[] = [];
      for (let i = 0; i < 8; i++) digests.push(await pushBlob(url, 'pool/slow', randomBytes(4096)));
      for (const d of digests) {
        const hex = d.slice('sha256:'.length);
        const file = path.join(root, 'docker/registry/v2/blobs/sha256', hex.slice(0, 2), hex, 'data');
        await fsp.rm(file);
        await new Promise<void>((resolve, reject) => spawn('mkfifo', [file]).on('exit', (c) => (c === 0 ? resolve() : reject(new Error(`mkfifo ${c}`)))));
        fifos.push(file);
      }
      const stuck = digests.map((d) => fetch(`${url}/v2/pool/slow/blobs/${d}`).then((r) => r.arrayBuffer()).catch(() => undefined));
      await new Promise((r) => setTimeout(r, 500)); // the eight GETs reach their open()
      const blob = randomBytes(256 * 1024);
      const other = (async () => {
        const d = await pushBlob(url, 'pool/other', blob);
        const r = await http(`${url}/v2/pool/other/blobs/${d}`);
        assert.equal(r.status, 200);
        assert.ok(r.body.equals(blob), 'the same bytes back');
      })();
      const outcome = await Promise.race([other.then(() => 'served'), new Promise((r) => setTimeout(() => r('stalled behind the blocked calls'), 10_000))]);
      assert.equal(outcome, 'served');
      // Let the blocked opens finish (a writer that closes at once: they read EOF), then check the server is whole.
      for (const f of fifos) await (await fsp.open(f, 'w')).close();
      await Promise.all(stuck);
      assert.equal((await http(`${url}/v2/`)).status, 200);
    } finally {
      for (const f of fifos) await fsp.open(f, fsp.constants.O_WRONLY | fsp.constants.O_NONBLOCK).then((h) => h.close(), () => {});
      await stop(proc);
    }
  });
});
