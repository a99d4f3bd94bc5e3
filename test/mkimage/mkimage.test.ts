// `drydock mkimage` through the CLI against a temp store: the busybox base image (contents,
// config, reproducibility), --change/--timezone, prepared rootfs dirs and tarballs, bad input,
// and the debian variant's failure and Ctrl-C paths with real debootstrap against a local
// HTTP "mirror" (no download: the opt-in full build is in debian.test.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import { execFileSync, spawn } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { tempDir, runCli, requireRoot, requireTool, CLI_MAIN } from '../helpers/env.js';
import { ContentStore, resolveImage } from '../../src/store/index.js';
import { unpackImage } from '../../src/layer/index.js';
import { buildBusyboxRootfs } from '../../src/mkimage/busybox-rootfs.js';
import { mountsUnder } from '../../src/mkimage/scratch.js';

const work = tempDir('drydock-mkimage-cli-');
let rootN = 0;
const newRoot = () => path.join(work, `root${rootN++}`);

async function unpacked(root: string, name: string): Promise<string> {
  const store = await ContentStore.open(root);
  const dir = path.join(work, `unpacked-${rootN++}`);
  await fsp.mkdir(dir);
  await unpackImage(store, await resolveImage(store, name), dir);
  return dir;
}

async function imageConfig(root: string, name: string) {
  const store = await ContentStore.open(root);
  return (await resolveImage(store, name)).config;
}

/** Scratch dirs must be gone after every mkimage run, whatever happened. */
async function assertNoScratch(root: string): Promise<void> {
  const left = (await fsp.readdir(path.join(root, 'tmp')).catch(() => [] as string[])).filter((n) => n.startsWith('mkimage-'));
  assert.deepEqual(left, [], 'scratch dirs left behind');
  assert.deepEqual(await mountsUnder(root), [], 'mounts left behind');
}

test('mkimage busybox: applet links, passwd/group, /tmp, CMD ["sh"], no device nodes, report', async () => {
  requireTool('busybox', 'apt-get install busybox-static');
  const root = newRoot();
  const r = await runCli(['mkimage', 'busybox'], { root });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^sha256:[0-9a-f]{64}\nTagged busybox:latest\nSize: [\d.]+MB \([\d.]+MB compressed\), busybox 1\.\d+\.\d+, \d+ applets\n$/);
  const config = await imageConfig(root, 'busybox:latest');
  assert.deepEqual(config.config?.Cmd, ['sh']);
  assert.ok(config.config?.Env?.some((e) => e.startsWith('PATH=') && e.includes('/bin')));
  assert.equal(config.history?.length, 1);
  assert.match(config.history![0]!.created_by!, /^drydock mkimage busybox \(BusyBox v1\./);
  const dir = await unpacked(root, 'busybox:latest');
  assert.equal(await fsp.readlink(path.join(dir, 'bin/sh')), '../bin/busybox');
  assert.equal(await fsp.readlink(path.join(dir, 'usr/bin/env')), '../../bin/busybox');
  assert.match(await fsp.readFile(path.join(dir, 'etc/passwd'), 'utf8'), /^root:x:0:0:root:\/root:\/bin\/sh$/m);
  assert.match(await fsp.readFile(path.join(dir, 'etc/group'), 'utf8'), /^root:x:0:$/m);
  assert.equal((await fsp.stat(path.join(dir, 'tmp'))).mode & 0o7777, 0o1777);
  assert.deepEqual(await fsp.readdir(path.join(dir, 'dev')), []);
  await assertNoScratch(root);
});

test('mkimage busybox is reproducible with SOURCE_DATE_EPOCH (same digest in two stores)', async () => {
  const digests: string[] = [];
  for (let i = 0; i < 2; i++) {
    const root = newRoot();
    const r = await runCli(['mkimage', 'busybox', '--format', 'json', '-t', 'bb:repro'], { root, env: { SOURCE_DATE_EPOCH: '1700000000' } });
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { id: string; manifestDigest: string; tags: string[] };
    assert.deepEqual(out.tags, ['docker.io/library/bb:repro']);
    digests.push(out.manifestDigest);
    assert.equal((await imageConfig(root, 'bb:repro')).created, '2023-11-14T22:13:20.000Z');
    // Wait past a second so a leaked wall-clock mtime would change the second layer.
    if (i === 0) await new Promise((res) => setTimeout(res, 1100));
  }
  assert.equal(digests[0], digests[1]);
  // The flag form gives the same result as the environment variable.
  const root = newRoot();
  const q = await runCli(['mkimage', 'busybox', '-q', '-t', 'bb:repro', '--source-date-epoch', '1700000000'], { root, env: { SOURCE_DATE_EPOCH: '' } });
  assert.equal(q.code, 0, q.stderr);
  const store = await ContentStore.open(root);
  assert.equal(q.stdout, `${(await resolveImage(store, 'bb:repro')).configDigest}\n`);
  assert.equal((await store.resolveTag('docker.io/library/bb:repro'))?.digest, digests[0]);
});

test('--change and --timezone', async () => {
  const root = newRoot();
  const r = await runCli(['mkimage', 'busybox', '-t', 'bb:tz', '-t', 'localhost:5000/base/bb:1',
    '-c', 'ENV GREETING="hello world"', '-c', 'LABEL org.opencontainers.image.title=base', '-c', 'CMD ["date"]', '-c', 'WORKDIR /tmp',
    '--timezone', 'Asia/Tokyo'], { root });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /Tagged bb:tz\nTagged localhost:5000\/base\/bb:1\n/);
  const c = (await imageConfig(root, 'localhost:5000/base/bb:1')).config!;
  assert.deepEqual(c.Cmd, ['date']);
  assert.ok(c.Env?.includes('GREETING=hello world'));
  assert.equal(c.Labels?.['org.opencontainers.image.title'], 'base');
  assert.equal(c.WorkingDir, '/tmp');
  const dir = await unpacked(root, 'bb:tz');
  assert.equal(await fsp.readlink(path.join(dir, 'etc/localtime')), '/usr/share/zoneinfo/Asia/Tokyo');
  assert.equal(await fsp.readFile(path.join(dir, 'etc/timezone'), 'utf8'), 'Asia/Tokyo\n');
  // busybox date inside the image's rootfs reads that zone (static binary, chroot-free check via TZ file path).
  const out = execFileSync(path.join(dir, 'bin/busybox'), ['date', '-d', '@0', '+%H %Z'], { env: { TZ: path.join(dir, 'usr/share/zoneinfo/Asia/Tokyo') }, encoding: 'utf8' });
  assert.equal(out.trim(), '09 JST');
});

test('mkimage rootfs: directory, tarball and stdin, package count, device nodes kept as in the source, source untouched', async () => {
  requireRoot();
  const src = path.join(work, 'alpine-like');
  await fsp.mkdir(src);
  await buildBusyboxRootfs(src);
  await fsp.mkdir(path.join(src, 'lib/apk/db'), { recursive: true });
  await fsp.writeFile(path.join(src, 'lib/apk/db/installed'), 'P:musl\nV:1.2.5-r0\n\nP:busybox\nV:1.36.1-r29\n\nP:alpine-baselayout\nV:3.6.5-r0\n');
  const plainTar = path.join(work, 'rootfs.tar.gz');
  execFileSync('tar', ['--numeric-owner', '-czf', plainTar, '-C', src, '.']);
  const xzTar = path.join(work, 'rootfs.tar.xz');
  execFileSync('tar', ['--numeric-owner', '-cJf', xzTar, '-C', src, '.']);
  execFileSync('mknod', [path.join(src, 'dev/null'), 'c', '1', '3']);
  const devTar = path.join(work, 'rootfs-dev.tar');
  execFileSync('tar', ['--numeric-owner', '-cf', devTar, '-C', src, '.']);

  const root = newRoot();
  // Like `docker import`, device nodes stay in the layer; the runtime's /dev covers them at run time.
  const cases: { name: string; source: string; input?: Buffer; extra?: string[]; dev: string[] }[] = [
    { name: 'dir:1', source: src, dev: ['null'] },
    { name: 'plaintar:1', source: plainTar, dev: [] },
    { name: 'xztar:1', source: xzTar, dev: [] },
    { name: 'devtar:1', source: devTar, dev: ['null'] },
    { name: 'stdin:1', source: '-', input: await fsp.readFile(devTar), dev: ['null'] },
    { name: 'stdinxz:1', source: '-', input: await fsp.readFile(xzTar), dev: [] },
    { name: 'dirtz:1', source: src, extra: ['--timezone', 'UTC'], dev: ['null'] },
  ];
  for (const c of cases) {
    const r = await runCli(['mkimage', 'rootfs', c.source, '-t', c.name, '-c', 'CMD ["/bin/sh"]', ...(c.extra ?? [])], { root, input: c.input });
    assert.equal(r.code, 0, `${c.name}: ${r.stderr}`);
    assert.match(r.stdout, /, 3 apk packages\n$/, c.name);
    const dir = await unpacked(root, c.name);
    assert.deepEqual(await fsp.readdir(path.join(dir, 'dev')), c.dev, `${c.name}: device nodes as in the source`);
    for (const d of c.dev) assert.equal((await fsp.lstat(path.join(dir, 'dev', d))).rdev, (1 << 8) | 3, `${c.name}: /dev/${d} is 1:3`);
    assert.equal(await fsp.readlink(path.join(dir, 'bin/sh')), '../bin/busybox', c.name);
    assert.deepEqual((await imageConfig(root, c.name)).config?.Cmd, ['/bin/sh']);
  }
  assert.ok((await fsp.lstat(path.join(src, 'dev/null'))).isCharacterDevice(), 'the source directory is not modified');
  // A foreign rootfs is labelled with the platform it was built for.
  const arm = await runCli(['mkimage', 'rootfs', plainTar, '-t', 'arm:1', '--platform', 'linux/arm64/v8', '--format', 'json'], { root });
  assert.equal(arm.code, 0, arm.stderr);
  const armConfig = await imageConfig(root, 'arm:1');
  assert.deepEqual([armConfig.os, armConfig.architecture, armConfig.variant], ['linux', 'arm64', 'v8']);
  // A truncated .xz fails the import instead of producing a short layer.
  const broken = path.join(work, 'broken.tar.xz');
  await fsp.writeFile(broken, (await fsp.readFile(xzTar)).subarray(0, 20_000));
  const bad = await runCli(['mkimage', 'rootfs', broken, '-t', 'broken:1'], { root });
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /^Error: xz decompression of .*broken\.tar\.xz failed: .*(Unexpected end of input|truncated)/m);
  assert.equal(await (await ContentStore.open(root)).resolveTag('docker.io/library/broken:1'), undefined);
  await assert.rejects(fsp.lstat(path.join(src, 'etc/timezone')));
  await assertNoScratch(root);
});

test('bad input: clear errors, nothing tagged, nothing left behind', async () => {
  const root = newRoot();
  const cases: { args: string[]; env?: NodeJS.ProcessEnv; error: RegExp }[] = [
    { args: ['mkimage', 'rootfs', work], error: /needs a name: -t NAME\[:TAG\]/ },
    { args: ['mkimage', 'rootfs', path.join(work, 'nope'), '-t', 'x:1'], error: /nope: no such file or directory/ },
    { args: ['mkimage', 'busybox', '-t', 'x:1', '-c', 'RUN echo hi'], error: /RUN/ },
    { args: ['mkimage', 'busybox', '-t', 'x:1', '--timezone', 'Nowhere/Atlantis'], error: /unknown timezone "Nowhere\/Atlantis"/ },
    { args: ['mkimage', 'busybox', '-t', 'x:1'], env: { SOURCE_DATE_EPOCH: 'yesterday' }, error: /SOURCE_DATE_EPOCH must be a whole number/ },
    { args: ['mkimage', 'busybox', '-t', 'Bad Name'], error: /invalid|Bad Name/i },
    { args: ['mkimage', 'busybox', '-t', 'x:1', '--busybox', '/bin/true'], error: /not statically linked/ },
    { args: ['mkimage', 'debian', '-t', 'x:1', '--suite', 'bookworm;rm'], error: /invalid suite/ },
    { args: ['mkimage', 'debian', '-t', 'x:1', '--include', 'curl,--foo'], error: /invalid package name "--foo"/ },
    { args: ['mkimage', 'debian', '-t', 'x:1', '--arch', 'vax'], error: /unknown Debian architecture "vax"/ },
    { args: ['mkimage', 'rootfs', work, '-t', 'x:1', '--platform', 'arm64'], error: /invalid platform "arm64"/ },
  ];
  for (const c of cases) {
    const r = await runCli(c.args, { root, env: c.env });
    assert.notEqual(r.code, 0, c.args.join(' '));
    assert.match(r.stderr, c.error, c.args.join(' '));
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
  }
  const store = await ContentStore.open(root);
  assert.deepEqual(await store.listTags(), []);
  await assertNoScratch(root);
});

/** A local stand-in for a Debian mirror: `mode` decides how it answers. */
async function fakeMirror(mode: 'not-found' | 'hang'): Promise<{ url: string; requests: string[]; close(): Promise<void> }> {
  const requests: string[] = [];
  const hanging: http.ServerResponse[] = [];
  const server = http.createServer((req, res) => {
    requests.push(req.url ?? '');
    if (mode === 'hang') { hanging.push(res); return; }
    res.writeHead(404).end('not here\n');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/debian`,
    requests,
    close: async () => { for (const r of hanging) r.destroy(); server.closeAllConnections(); await new Promise((res) => server.close(() => res(undefined))); },
  };
}

test('mkimage debian: a failing debootstrap reports the mirror and its log, scratch removed', async () => {
  requireRoot();
  requireTool('debootstrap');
  const root = newRoot();
  const mirror = await fakeMirror('not-found');
  try {
    const r = await runCli(['mkimage', 'debian', '--suite', 'bookworm', '--mirror', mirror.url, '-t', 'deb:fail'], { root });
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, new RegExp(`Error: debootstrap bookworm from ${mirror.url.replace(/[.:/]/g, '\\$&')} failed \\(exit \\d+\\)`));
    assert.ok(mirror.requests.some((u) => u.includes('/dists/bookworm/')), `debootstrap asked the mirror: ${mirror.requests.join(' ')}`);
  } finally {
    await mirror.close();
  }
  await assertNoScratch(root);
  assert.deepEqual(await (await ContentStore.open(root)).listTags(), []);
});

test('mkimage debian: Ctrl-C while debootstrap runs removes the scratch dir and exits 130', async () => {
  requireRoot();
  requireTool('debootstrap');
  const root = newRoot();
  const mirror = await fakeMirror('hang');
  try {
    const child = spawn(process.execPath, ['--import', 'tsx', CLI_MAIN, 'mkimage', 'debian', '--mirror', mirror.url, '-t', 'deb:int'], {
      env: { ...process.env, DRYDOCK_ROOT: root }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    // Interrupt once debootstrap is waiting on the mirror with its target dir in place.
    const deadline = Date.now() + 30_000;
    while (!mirror.requests.length && Date.now() < deadline) await new Promise((res) => setTimeout(res, 100));
    assert.ok(mirror.requests.length, `debootstrap never reached the mirror: ${stderr}`);
    const scratch = (await fsp.readdir(path.join(root, 'tmp'))).filter((n) => n.startsWith('mkimage-debian-'));
    assert.equal(scratch.length, 1, 'the scratch dir exists while debootstrap runs');
    child.kill('SIGINT');
    assert.equal(await exited, 130, stderr);
    assert.match(stderr, /SIGINT: removing temporary files/);
  } finally {
    await mirror.close();
  }
  await assertNoScratch(root);
  // No debootstrap left running against this store.
  const ps = execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' });
  assert.ok(!ps.split('\n').some((l) => l.includes('debootstrap') && l.includes(root)), 'debootstrap still running');
});
