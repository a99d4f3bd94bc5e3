// The seed posts' flows with inputs from outside drydock: a gcc -static binary FROM scratch
// (seed 003), run as Docker runs it (0:0 without any /etc/passwd in the image).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { runtimeFixture, type RuntimeFixture } from './helpers.js';
import { ContentStore, resolveImage } from '../../src/store/index.js';
import { CLI_MAIN, FIXTURES, requireTool, runCli, tempDir } from '../helpers/env.js';
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
  { name: 'no USER, no /etc/passwd: 0:0, HOME=/', args: [], code: 0, stdout: 'hello uid=0 gid=0 groups=0 home=/\n' },
  { name: 'numeric -u 1000:1000 needs no passwd', args: ['-u', '1000:1000'], code: 0, stdout: 'hello uid=1000 gid=1000 groups=1000 home=/\n' },
  { name: 'numeric -u 1000 alone: gid 0', args: ['-u', '1000'], code: 0, stdout: 'hello uid=1000 gid=0 groups=0 home=/\n' },
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
  assert.equal(r.stdout, 'hello uid=0 gid=0 groups=0 home=/\n');
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

test('seed 004 verbatim: tar --numeric-owner -c -C "$target" . | drydock import - name:version; drydock run -i -t name:version echo success', async () => {
  requireTool('script', 'apt-get install util-linux');
  const target = await debootstrapStyleTree();
  const tarball = execFileSync('tar', ['--numeric-owner', '-c', '-C', target, '.'], { maxBuffer: 64 << 20 });
  const imported = await runCli(['import', '-', 'name:version'], { root: fx.root, env: fx.env, input: tarball });
  assert.equal(imported.code, 0, imported.stderr);
  assert.match(imported.stdout, /^sha256:[0-9a-f]{64}\n$/);
  // -i -t wants a terminal on stdin, as in the post's shell: script(1) provides one.
  const cli = [process.execPath, CLI_MAIN, 'run', '-i', '-t', 'name:version', 'echo', 'success'].map((a) => `'${a}'`).join(' ');
  const r = spawnSync('script', ['-qec', cli, '/dev/null'], { env: { ...process.env, ...fx.env }, encoding: 'utf8', timeout: 120_000 });
  assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
  // The pty echoes what script(1) forwards from its own (empty) stdin, shown as ^@ or ^D.
  assert.equal(r.stdout.replace(/\r/g, '').replace(/\^[@D]/g, ''), 'success\n');
  // Without a terminal, Docker's CLI refuses -i -t with exactly this line and status 1.
  const piped = await fx.cli(['run', '-i', '-t', 'name:version', 'echo', 'success']);
  assert.deepEqual([piped.code, piped.stdout, piped.stderr], [1, '', 'the input device is not a TTY\n']);
  const execPiped = await fx.cli(['exec', '-i', '-t', 'nosuch', 'true']);
  assert.deepEqual([execPiped.code, execPiped.stderr], [1, 'the input device is not a TTY\n']);
});

/** An image whose passwd/group give users supplementary groups (a foreign tree, GNU tar, import). */
async function groupsImage(name: string, platform?: string): Promise<void> {
  const target = await debootstrapStyleTree();
  for (const applet of ['id', 'env', 'hostname']) await fsp.symlink('busybox', path.join(target, 'bin', applet));
  await fsp.writeFile(path.join(target, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n');
  await fsp.writeFile(path.join(target, 'etc/group'), 'root:x:0:\nwheel:x:10:root\naudio:x:29:app\nvideo:x:44:app,other\napp:x:1000:\n');
  const tarball = execFileSync('tar', ['--numeric-owner', '-c', '-C', target, '.'], { maxBuffer: 64 << 20 });
  const r = await fx.cli(['import', ...(platform ? ['--platform', platform] : []), '-', name], { input: tarball });
  assert.equal(r.code, 0, r.stderr);
}

interface DefaultsCase { name: string; args: string[]; stdout: string | RegExp; stderr?: string }

const defaultsCases: DefaultsCase[] = [
  { name: 'supplementary groups of the default user (root) from /etc/group', args: ['groups:1', 'id', '-G'], stdout: '0 10\n' },
  { name: 'supplementary groups of a named user', args: ['-u', 'app', 'groups:1', 'id', '-G'], stdout: '1000 29 44\n' },
  { name: 'supplementary groups of a numeric uid that has a passwd entry', args: ['-u', '1000', 'groups:1', 'id', '-G'], stdout: '1000 29 44\n' },
  { name: 'an explicit group replaces the group set', args: ['-u', 'app:audio', 'groups:1', 'id', '-G'], stdout: '29\n' },
  { name: '--group-add adds to them', args: ['--group-add', 'video', 'groups:1', 'id', '-G'], stdout: '0 10 44\n' },
  { name: 'HOSTNAME is the container hostname, right after PATH', args: ['--hostname', 'box1', 'groups:1', 'env'], stdout: /^PATH=[^\n]+\nHOSTNAME=box1\n/ },
  { name: 'HOSTNAME defaults to the short ID, as hostname(1) says', args: ['groups:1', 'sh', '-c', 'echo $HOSTNAME; hostname'], stdout: /^([0-9a-f]{12})\n\1\n$/ },
  { name: '-e HOSTNAME wins', args: ['-e', 'HOSTNAME=mine', 'groups:1', 'sh', '-c', 'echo $HOSTNAME'], stdout: 'mine\n' },
  {
    name: 'an image for another platform runs with Docker\'s warning',
    args: ['armish:1', 'echo', 'ran'], stdout: 'ran\n',
    stderr: 'WARNING: The requested image\'s platform (linux/arm64) does not match the detected host platform (linux/amd64) and no specific platform was requested\n',
  },
  { name: 'no warning when the platform was requested', args: ['--platform', 'linux/arm64', 'armish:1', 'echo', 'ran'], stdout: 'ran\n', stderr: '' },
  { name: 'no warning for the host platform', args: ['groups:1', 'echo', 'ran'], stdout: 'ran\n', stderr: '' },
];

let defaultsImages: Promise<void> | undefined;
for (const c of defaultsCases) {
  test(`run defaults like Docker: ${c.name}`, async () => {
    defaultsImages ??= groupsImage('groups:1').then(() => groupsImage('armish:1', 'linux/arm64'));
    await defaultsImages;
    const r = await fx.cli(['run', '--rm', ...c.args]);
    assert.equal(r.code, 0, r.stderr);
    if (typeof c.stdout === 'string') assert.equal(r.stdout, c.stdout); else assert.match(r.stdout, c.stdout);
    if (c.stderr !== undefined) assert.equal(r.stderr, c.stderr);
  });
}

test('ADD of a GNU tar holding mknod\'ed device nodes: the build keeps them in the layer (Docker\'s policy), and the image runs', async () => {
  const target = await debootstrapStyleTree();
  const ctx = tempDir('drydock-seed004-add-');
  execFileSync('tar', ['--numeric-owner', '-cf', path.join(ctx, 'rootfs.tar'), '-C', target, '.']);
  await fsp.writeFile(path.join(ctx, 'Dockerfile'), 'FROM scratch\nADD rootfs.tar /\nCMD ["echo", "success"]\n');
  const b = await runCli(['build', '-t', 'added:1', '.'], { root: fx.root, env: fx.env, cwd: ctx });
  assert.equal(b.code, 0, b.stderr);
  const store = await ContentStore.open(fx.root);
  const img = await resolveImage(store, 'added:1');
  const file = path.join(tempDir('drydock-seed004-add-layer-'), 'layer');
  await fsp.writeFile(file, await readAll(store.openBlob(img.manifest.layers.at(-1)!.digest)));
  const listing = execFileSync('tar', ['--numeric-owner', '-tvf', file]).toString();
  assert.match(listing, /^crw------- 0\/0 +5,1 .* dev\/console$/m);
  assert.match(listing, /^prw------- 0\/0 .* dev\/initctl$/m);
  const r = await fx.cli(['run', '--rm', 'added:1']);
  assert.deepEqual([r.code, r.stdout], [0, 'success\n'], r.stderr);
});

test('an image whose layer holds device nodes goes through push, pull (by run) and save | load, and runs', async () => {
  const target = await debootstrapStyleTree();
  const tarball = execFileSync('tar', ['--numeric-owner', '-c', '-C', target, '.'], { maxBuffer: 64 << 20 });
  assert.equal((await fx.cli(['import', '-', 'devs:1'], { input: tarball })).code, 0);
  const reg = await startDistribution();
  try {
    const name = `${reg.host}/seed/devs:1`;
    await fx.ok(['push', 'devs:1', name]);
    // A second store: the pull and the unpack there start from nothing.
    const other = tempDir('drydock-seed004-pull-');
    const env = { ...fx.env, DRYDOCK_ROOT: other };
    const pulled = await runCli(['run', '--rm', '--network', 'none', name, 'echo', 'success'], { root: other, env });
    assert.deepEqual([pulled.code, pulled.stdout], [0, 'success\n'], pulled.stderr);
    const saved = path.join(tempDir('drydock-seed004-save-'), 'devs.tar');
    await fx.ok(['save', '-o', saved, 'devs:1']);
    const third = tempDir('drydock-seed004-load-');
    const loaded = await runCli(['load', '-i', saved], { root: third, env: { ...fx.env, DRYDOCK_ROOT: third } });
    assert.equal(loaded.code, 0, loaded.stderr);
    const ran = await runCli(['run', '--rm', '--network', 'none', 'devs:1', 'echo', 'success'], { root: third, env: { ...fx.env, DRYDOCK_ROOT: third } });
    assert.deepEqual([ran.code, ran.stdout], [0, 'success\n'], ran.stderr);
  } finally {
    await reg.stop();
  }
});
