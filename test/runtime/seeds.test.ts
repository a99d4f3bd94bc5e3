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
import { startDistribution } from '../helpers/docker-registry.js';

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

/**
 * Seed 004's tree as mkimage-yum.sh (and debootstrap) leave it: /dev nodes made by mknod, the
 * usual /dev symlinks, and a static busybox for the commands.
 */
async function debootstrapStyleTree(): Promise<string> {
  requireTool('busybox', 'apt-get install busybox-static');
  const target = path.join(tempDir('drydock-seed004-'), 'rootfs');
  for (const d of ['bin', 'etc', 'tmp', 'dev/pts', 'dev/shm']) await fsp.mkdir(path.join(target, d), { recursive: true });
  await fsp.copyFile(requireTool('busybox'), path.join(target, 'bin/busybox'));
  await fsp.chmod(path.join(target, 'bin/busybox'), 0o755);
  for (const applet of ['sh', 'echo', 'ls', 'cat', 'stat']) await fsp.symlink('busybox', path.join(target, 'bin', applet));
  await fsp.writeFile(path.join(target, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
  await fsp.writeFile(path.join(target, 'etc/group'), 'root:x:0:\n');
  // mkimage-yum.sh's list, verbatim.
  const nodes: [string, string, string, ...string[]][] = [
    ['600', 'console', 'c', '5', '1'], ['600', 'initctl', 'p'], ['666', 'full', 'c', '1', '7'], ['666', 'null', 'c', '1', '3'],
    ['666', 'ptmx', 'c', '5', '2'], ['666', 'random', 'c', '1', '8'], ['666', 'tty', 'c', '5', '0'], ['666', 'tty0', 'c', '4', '0'],
    ['666', 'urandom', 'c', '1', '9'], ['666', 'zero', 'c', '1', '5'],
  ];
  for (const [mode, name, ...rest] of nodes) execFileSync('mknod', ['-m', mode, path.join(target, 'dev', name), ...rest]);
  for (const [link, to] of [['fd', '/proc/self/fd'], ['stdin', '/proc/self/fd/0'], ['stdout', '/proc/self/fd/1'], ['stderr', '/proc/self/fd/2']]) {
    await fsp.symlink(to!, path.join(target, 'dev', link!));
  }
  return target;
}

const packers: { name: string; pack(target: string): Buffer }[] = [
  // The post's command: tar --numeric-owner -c -C "$target" .
  { name: 'GNU tar', pack: (target) => execFileSync('tar', ['--numeric-owner', '-c', '-C', target, '.'], { maxBuffer: 64 << 20 }) },
  {
    name: 'Python tarfile',
    pack: (target) => execFileSync('python3', ['-c', 'import sys, tarfile\nwith tarfile.open(fileobj=sys.stdout.buffer, mode="w|") as t: t.add(sys.argv[1], arcname=".")', target], { maxBuffer: 64 << 20 }),
  },
];

for (const [i, p] of packers.entries()) {
  test(`seed 004: a debootstrap-style tree with mknod'ed /dev, packed by ${p.name}, imported from stdin, runs`, async () => {
    const target = await debootstrapStyleTree();
    const name = `seed004-${i}:1.0`;
    const imported = await fx.cli(['import', '-', name], { input: p.pack(target) });
    assert.equal(imported.code, 0, imported.stderr);
    // The nodes stay in the layer, as Docker keeps them.
    const store = await ContentStore.open(fx.root);
    const img = await resolveImage(store, name);
    const file = path.join(tempDir('drydock-seed004-layer-'), 'layer');
    await fsp.writeFile(file, await readAll(store.openBlob(img.manifest.layers[0]!.digest)));
    const listing = execFileSync('tar', ['--numeric-owner', '-tvf', file]).toString();
    assert.match(listing, /^crw-rw-rw- 0\/0 +1,3 .* \.\/dev\/null$/m);
    assert.match(listing, /^prw------- 0\/0 .* \.\/dev\/initctl$/m);

    const r = await fx.cli(['run', '--rm', '-i', name, 'echo', 'success']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'success\n');
    assert.equal(r.stderr, '');
    // At run time the runtime's tmpfs /dev covers the layer's nodes: no console node, a working null.
    const dev = await fx.cli(['run', '--rm', name, 'sh', '-c', 'ls /dev/initctl /dev/tty0 2>&1; echo x > /dev/null && echo null-ok']);
    assert.match(dev.stdout, /No such file or directory[\s\S]*null-ok\n$/);
  });
}

test('run and create pull a missing image like Docker: --pull missing (default), always, never', async () => {
  const reg = await startDistribution();
  try {
    const name = `${reg.host}/seed/busybox:1`;
    await fx.ok(['push', 'busybox', name]);
    const never = await fx.cli(['run', '--rm', '--pull', 'never', name, 'echo', 'hi']);
    assert.equal(never.code, 125, never.stderr);
    assert.equal(never.stderr, `Error: No such image: ${name}\n`);

    const first = await fx.cli(['run', '--rm', '--network', 'none', name, 'echo', 'hi']);
    assert.equal(first.code, 0, first.stderr);
    assert.equal(first.stdout, 'hi\n', 'pull progress stays off stdout');
    assert.ok(first.stderr.startsWith(`Unable to find image '${name}' locally\n1: Pulling from ${reg.host}/seed/busybox\n`), first.stderr);
    assert.match(first.stderr, /\nDigest: sha256:[0-9a-f]{64} \(/);
    assert.ok(first.stderr.endsWith(`Status: Downloaded newer image for ${name}\n`), first.stderr);

    const present = await fx.cli(['run', '--rm', '--network', 'none', name, 'echo', 'hi']);
    assert.equal(present.stderr, '', 'a present image is not pulled again');
    const always = await fx.cli(['run', '--rm', '--network', 'none', '--pull', 'always', name, 'echo', 'hi']);
    assert.equal(always.code, 0, always.stderr);
    assert.ok(!always.stderr.includes('Unable to find image'), always.stderr);
    assert.ok(always.stderr.endsWith(`Status: Image is up to date for ${name}\n`), always.stderr);

    const other = `${reg.host}/seed/other:2`;
    await fx.ok(['push', 'busybox', other]);
    const created = await fx.cli(['create', '--network', 'none', other, 'true']);
    assert.equal(created.code, 0, created.stderr);
    assert.match(created.stdout, /^[0-9a-f]{64}\n$/, 'create prints only the ID on stdout');
    assert.ok(created.stderr.includes(`Unable to find image '${other}' locally\n`), created.stderr);
    await fx.ok(['rm', created.stdout.trim()]);
  } finally {
    await reg.stop();
  }
});
