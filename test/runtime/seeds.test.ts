// The seed posts' flows with inputs from outside drydock: a gcc -static binary FROM scratch
// (seed 003), run as Docker runs it (0:0 without any /etc/passwd in the image).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { runtimeFixture, type RuntimeFixture } from './helpers.js';
import { ContentStore, resolveImage } from '../../src/store/index.js';
import { FIXTURES, requireTool, runCli, tempDir } from '../helpers/env.js';

let fx: RuntimeFixture;
before(async () => { fx = await runtimeFixture('seeds'); });
after(async () => { await fx?.cleanup(); });

/** Seed 003's build context: a static hello and the post's Dockerfile. */
async function seed003Context(): Promise<string> {
  requireTool('gcc', 'apt-get install gcc libc6-dev');
  const dir = tempDir('drydock-seed003-');
  execFileSync('gcc', ['-static', '-Os', '-o', path.join(dir, 'hello'), path.join(FIXTURES, 'seed003/hello.c')]);
  await fsp.writeFile(path.join(dir, 'Dockerfile'), 'FROM scratch\nADD hello /\nCMD ["/hello"]\n');
  return dir;
}

let built: Promise<void> | undefined;
/** `drydock build -t chello:0.1 .` once for the file, as the post types it. */
function buildChello(): Promise<void> {
  built ??= (async () => {
    const ctx = await seed003Context();
    const r = await runCli(['build', '-t', 'chello:0.1', '.'], { root: fx.root, env: fx.env, cwd: ctx });
    assert.equal(r.code, 0, `build: ${r.stderr}`);
  })();
  return built;
}

interface UserCase { name: string; args: string[]; code: number; stdout?: string; stderr?: string }

const userCases: UserCase[] = [
  { name: 'no USER, no /etc/passwd: 0:0, HOME=/', args: [], code: 0, stdout: 'hello uid=0 gid=0 groups= home=/\n' },
  { name: 'numeric -u 1000:1000 needs no passwd', args: ['-u', '1000:1000'], code: 0, stdout: 'hello uid=1000 gid=1000 groups= home=/\n' },
  { name: 'numeric -u 1000 alone: gid 0', args: ['-u', '1000'], code: 0, stdout: 'hello uid=1000 gid=0 groups= home=/\n' },
  { name: 'a user name not in passwd: Docker\'s error', args: ['-u', 'nobody'], code: 125, stderr: 'unable to find user nobody: no matching entries in passwd file' },
  { name: 'root by name needs a passwd entry too (as in Docker)', args: ['-u', 'root'], code: 125, stderr: 'unable to find user root: no matching entries in passwd file' },
  { name: 'a group name not in group: Docker\'s error', args: ['-u', '0:staff'], code: 125, stderr: 'unable to find group staff: no matching entries in group file' },
];

for (const c of userCases) {
  test(`seed 003 FROM scratch static hello: ${c.name}`, async () => {
    await buildChello();
    const r = await fx.cli(['run', '--rm', ...c.args, 'chello:0.1']);
    assert.equal(r.code, c.code, `exit code (stderr: ${r.stderr})`);
    if (c.stdout !== undefined) assert.equal(r.stdout, c.stdout);
    if (c.stderr !== undefined) assert.ok(r.stderr.includes(c.stderr), `stderr: ${r.stderr}`);
  });
}

test('seed 003 verbatim: build -t chello:0.1 . then run chello:0.1 (no --rm)', async () => {
  await buildChello();
  const r = await fx.cli(['run', 'chello:0.1']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, 'hello uid=0 gid=0 groups= home=/\n');
  // The image is just the binary: nothing in it could name uid 0.
  const store = await ContentStore.open(fx.root);
  const img = await resolveImage(store, 'chello:0.1');
  const names: string[] = [];
  for (const l of img.manifest.layers) {
    // GNU tar detects the layer's compression itself when it reads a file.
    const file = path.join(tempDir('drydock-seed003-layer-'), 'layer');
    await fsp.writeFile(file, await readAll(store.openBlob(l.digest)));
    const tarText = execFileSync('tar', ['-tf', file]).toString();
    names.push(...tarText.split('\n').filter(Boolean));
  }
  assert.deepEqual(names, ['hello']);
});

async function readAll(s: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of s) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}
