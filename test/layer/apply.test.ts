// applyLayer: escapes refused (table-driven), whiteouts, compression detection, limits.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp, lstatSync } from 'node:fs';
import { Readable } from 'node:stream';
import { execFileSync, spawnSync } from 'node:child_process';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { getAttribute } from '@napi-rs/xattr';
import { applyLayer, normalizeEntryPath } from '../../src/layer/index.js';
import { tempDir, requireRoot, requireTool, PROJECT_ROOT } from '../helpers/env.js';
import { makeTar, gzip, zstd, type TarSpec } from '../helpers/tars.js';

const stream = (b: Buffer) => Readable.from([b]);

/** A target dir inside a sandbox whose sibling "outside" must never be touched. */
async function sandbox(): Promise<{ target: string; outside: string }> {
  const base = tempDir('drydock-layer-apply-');
  const target = path.join(base, 'root');
  const outside = path.join(base, 'outside');
  await fsp.mkdir(target);
  await fsp.mkdir(outside);
  await fsp.writeFile(path.join(outside, 'secret'), 'keep me');
  return { target, outside };
}

async function listTree(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await fsp.readdir(dir, { recursive: true })) out.push(String(e));
  return out.sort();
}

const escapes: { name: string; entries: TarSpec[]; error: RegExp }[] = [
  { name: '../ path', entries: [{ name: '../../etc/passwd', body: 'root::0:0::/:/bin/sh\n' }], error: /entry "\.\.\/\.\.\/etc\/passwd": "\.\." path components are refused/ },
  { name: '.. in the middle', entries: [{ name: 'a/../../outside/secret', body: 'x' }], error: /"\.\." path components are refused/ },
  { name: 'absolute path', entries: [{ name: '/etc/passwd', body: 'x' }], error: /entry "\/etc\/passwd": absolute paths are refused/ },
  {
    name: 'symlink to /etc followed by a file under it',
    entries: [{ name: 'etc', type: 'symlink', linkname: '/etc' }, { name: 'etc/passwd', body: 'pwned' }],
    error: /entry "etc\/passwd": parent "etc" is a symlink/,
  },
  {
    name: 'symlink swapped in for a directory earlier in the archive',
    entries: [
      { name: 'lib/', type: 'directory' },
      { name: 'lib', type: 'symlink', linkname: '../outside' },
      { name: 'lib/secret', body: 'overwritten' },
    ],
    error: /entry "lib\/secret": parent "lib" is a symlink/,
  },
  { name: 'hardlink to /etc/shadow', entries: [{ name: 'shadow', type: 'link', linkname: '/etc/shadow' }], error: /entry "shadow": hardlink to absolute path "\/etc\/shadow" is refused/ },
  { name: 'hardlink climbing out', entries: [{ name: 'x', type: 'link', linkname: '../outside/secret' }], error: /hardlink "x" target "\.\.\/outside\/secret": "\.\." path components are refused/ },
  {
    name: 'hardlink through a symlink',
    entries: [{ name: 'out', type: 'symlink', linkname: '../outside' }, { name: 'x', type: 'link', linkname: 'out/secret' }],
    error: /entry "x": parent "out" is a symlink/,
  },
  { name: 'hardlink to a missing file', entries: [{ name: 'x', type: 'link', linkname: 'nope' }], error: /hardlink target "nope" does not exist/ },
  { name: 'NUL in name', entries: [{ name: 'a\u0000b', body: 'x' }], error: /NUL byte|"\.\." path|a/ },
];

for (const c of escapes) {
  test(`refuses: ${c.name}`, async () => {
    const { target, outside } = await sandbox();
    await assert.rejects(applyLayer(target, stream(makeTar(c.entries))), c.error);
    assert.equal(await fsp.readFile(path.join(outside, 'secret'), 'utf8'), 'keep me');
    assert.deepEqual(await fsp.readdir(outside), ['secret']);
  });
}

test('refuses writing through a symlink left by a lower layer', async () => {
  const { target, outside } = await sandbox();
  await applyLayer(target, stream(makeTar([{ name: 'data', type: 'symlink', linkname: outside }])));
  await assert.rejects(applyLayer(target, stream(makeTar([{ name: 'data/secret', body: 'pwned' }]))), /parent "data" is a symlink/);
  assert.equal(await fsp.readFile(path.join(outside, 'secret'), 'utf8'), 'keep me');
});

test('a directory the layer replaces with a symlink does not get its time set through the link', async () => {
  // Directory times are set at the end; the path of "d/" is by then a symlink to `outside`.
  for (const inMemoryLimit of [0, undefined]) {
    const { target, outside } = await sandbox();
    await fsp.utimes(outside, 2_000_000_000, 2_000_000_000);
    await applyLayer(target, stream(makeTar([
      { name: 'd/', type: 'directory', mtime: 1000 },
      { name: 'd/sub/', type: 'directory', mtime: 1000 },
      { name: 'd', type: 'symlink', linkname: outside },
      { name: 'e/', type: 'directory', mtime: 1000 },
      { name: '.wh.e' },
      { name: 'e', type: 'symlink', linkname: outside },
    ])), { inMemoryLimit });
    assert.equal(lstatSync(outside).mtimeMs, 2_000_000_000_000);
    assert.ok(lstatSync(path.join(target, 'd')).isSymbolicLink());
  }
});

test('a directory listed twice takes the time of its last entry', async () => {
  const { target } = await sandbox();
  await applyLayer(target, stream(makeTar([
    { name: 'd/', type: 'directory', mtime: 1000 },
    { name: 'd/f', body: 'x' },
    { name: 'd/', type: 'directory', mtime: 3000 },
  ])));
  assert.equal(lstatSync(path.join(target, 'd')).mtimeMs, 3_000_000);
});

test('a file entry replaces a symlink instead of writing through it', async () => {
  const { target, outside } = await sandbox();
  await applyLayer(target, stream(makeTar([{ name: 'f', type: 'symlink', linkname: path.join(outside, 'secret') }])));
  await applyLayer(target, stream(makeTar([{ name: 'f', body: 'new' }])));
  assert.equal(await fsp.readFile(path.join(target, 'f'), 'utf8'), 'new');
  assert.ok(lstatSync(path.join(target, 'f')).isFile());
  assert.equal(await fsp.readFile(path.join(outside, 'secret'), 'utf8'), 'keep me');
});

test('absolute and dangling symlink targets are stored verbatim, never followed', async () => {
  const { target } = await sandbox();
  await applyLayer(target, stream(makeTar([
    { name: 'etc/', type: 'directory' },
    { name: 'etc/localtime', type: 'symlink', linkname: '/usr/share/zoneinfo/UTC' },
    { name: 'up', type: 'symlink', linkname: '../../../../etc/passwd' },
  ])));
  assert.equal(await fsp.readlink(path.join(target, 'etc/localtime')), '/usr/share/zoneinfo/UTC');
  assert.equal(await fsp.readlink(path.join(target, 'up')), '../../../../etc/passwd');
});

const corrupt: { name: string; data: () => Buffer; error: RegExp }[] = [
  { name: 'corrupt gzip', data: () => { const g = gzip(makeTar([{ name: 'a', body: 'hello' }])); g[g.length - 6] ^= 0xff; g[12] ^= 0xff; return g; }, error: /corrupt gzip data|truncated gzip/ },
  { name: 'truncated gzip', data: () => gzip(makeTar([{ name: 'a', body: randomBytes(100000) }])).subarray(0, 20000), error: /truncated gzip data|corrupt gzip/ },
  { name: 'truncated tar', data: () => makeTar([{ name: 'a', body: 'x'.repeat(5000) }]).subarray(0, 2048), error: /truncated tar archive/ },
  { name: 'not a tar', data: () => Buffer.from('this is not a tar archive at all'.repeat(40)), error: /not a valid tar archive|truncated tar/ },
  { name: 'xz input', data: () => Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 1, 2, 3]), error: /xz-compressed input is not supported/ },
];

for (const c of corrupt) {
  test(`clear error: ${c.name}`, async () => {
    const { target } = await sandbox();
    await assert.rejects(applyLayer(target, stream(c.data())), c.error);
  });
}

test('limits.maxBytes caps the expanded size, naming the entry that crosses it', async () => {
  const { target } = await sandbox();
  await assert.rejects(applyLayer(target, stream(makeTar([{ name: 'a', body: 'x'.repeat(600) }, { name: 'b', body: 'y'.repeat(600) }])), { limits: { maxBytes: 2500 } }),
    /entry "b": layer expands beyond the 2.44 KiB cap/);
});

test('compression is detected from magic bytes: plain, gzip, zstd', async () => {
  requireTool('zstd');
  const tar = makeTar([{ name: 'hello.txt', body: 'hi\n' }]);
  for (const data of [tar, gzip(tar), zstd(tar)]) {
    const { target } = await sandbox();
    const r = await applyLayer(target, stream(data));
    assert.equal(await fsp.readFile(path.join(target, 'hello.txt'), 'utf8'), 'hi\n');
    assert.equal(r.entries, 1);
    assert.equal(r.bytes, tar.length);
  }
});

test('OCI whiteouts delete lower files; opaque dirs keep only this layer\'s entries (any order)', async () => {
  const { target } = await sandbox();
  await applyLayer(target, stream(makeTar([
    { name: 'a/', type: 'directory' }, { name: 'a/old1', body: '1' }, { name: 'a/sub/', type: 'directory' }, { name: 'a/sub/old2', body: '2' },
    { name: 'b/', type: 'directory' }, { name: 'b/gone', body: 'x' }, { name: 'b/stays', body: 'y' }, { name: 'tree/', type: 'directory' }, { name: 'tree/leaf', body: 'z' },
  ])));
  await applyLayer(target, stream(makeTar([
    // New content before the opaque marker: it must survive (tools differ in ordering).
    { name: 'a/sub/new', body: 'n' },
    { name: 'a/.wh..wh..opq' },
    { name: 'a/fresh', body: 'f' },
    { name: 'b/.wh.gone' },
    { name: '.wh.tree' },
  ])));
  assert.deepEqual(await listTree(target), ['a', 'a/fresh', 'a/sub', 'a/sub/new', 'b', 'b/stays']);
});

test('a whiteout under a missing directory deletes nothing and creates nothing', async () => {
  const { target } = await sandbox();
  await applyLayer(target, stream(makeTar([{ name: 'never/made/.wh.x' }, { name: 'nope/.wh..wh..opq' }])));
  assert.deepEqual(await listTree(target), []);
});

test('whiteouts: "overlay" mode writes overlayfs markers for lower dirs', async () => {
  requireRoot();
  const { target } = await sandbox();
  await applyLayer(target, stream(makeTar([{ name: 'd/', type: 'directory' }, { name: 'd/.wh..wh..opq' }, { name: '.wh.removed' }])), { whiteouts: 'overlay' });
  const st = lstatSync(path.join(target, 'removed'));
  assert.ok(st.isCharacterDevice());
  assert.equal(st.rdev, 0);
  assert.equal((await getAttribute(path.join(target, 'd'), 'trusted.overlay.opaque'))?.toString(), 'y');
});

test('owners, modes, mtimes and xattrs are applied', async () => {
  requireRoot();
  const { target } = await sandbox();
  await applyLayer(target, stream(makeTar([
    { name: 'srv/', type: 'directory', mode: 0o750, uid: 33, gid: 33, mtime: 1600000000 },
    { name: 'srv/app', body: '#!/bin/sh\n', mode: 0o4755, uid: 1000, gid: 100, mtime: 1500000000, xattrs: { 'user.comment': 'hello' } },
    { name: 'srv/hard', type: 'link', linkname: 'srv/app' },
    { name: 'srv/fifo', type: 'fifo' },
  ])));
  const dir = lstatSync(path.join(target, 'srv'));
  assert.equal(dir.mode & 0o7777, 0o750);
  assert.equal(dir.uid, 33);
  assert.equal(Math.floor(dir.mtimeMs / 1000), 1600000000);
  const app = lstatSync(path.join(target, 'srv/app'));
  assert.equal(app.mode & 0o7777, 0o4755);
  assert.deepEqual([app.uid, app.gid], [1000, 100]);
  assert.equal(Math.floor(app.mtimeMs / 1000), 1500000000);
  assert.equal(app.nlink, 2);
  assert.equal(lstatSync(path.join(target, 'srv/hard')).ino, app.ino);
  assert.ok(lstatSync(path.join(target, 'srv/fifo')).isFIFO());
  assert.equal((await getAttribute(path.join(target, 'srv/app'), 'user.comment'))?.toString(), 'hello');
});

test('device nodes are kept as the layer has them: char, block and fifo entries are created', async () => {
  requireRoot();
  const { target } = await sandbox();
  await applyLayer(target, stream(makeTar([
    { name: 'dev/null', type: 'character-device', devmajor: 1, devminor: 3, mode: 0o666 },
    { name: 'dev/sda', type: 'block-device', devmajor: 8, devminor: 0, mode: 0o660 },
    { name: 'dev/initctl', type: 'fifo', mode: 0o600 },
  ])));
  const st = lstatSync(path.join(target, 'dev/null'));
  assert.ok(st.isCharacterDevice());
  assert.equal(st.rdev, (1 << 8) | 3);
  assert.equal(st.mode & 0o7777, 0o666);
  assert.ok(lstatSync(path.join(target, 'dev/sda')).isBlockDevice());
  assert.ok(lstatSync(path.join(target, 'dev/initctl')).isFIFO());
});

test('where mknod is not permitted (a user namespace), device nodes are skipped with one warning; the rest lands', async () => {
  requireRoot();
  requireTool('unshare', 'apt-get install util-linux');
  requireTool('python3');
  const { target } = await sandbox();
  // A foreign fixture: nodes made by mknod(1), packed by Python's tarfile.
  const tree = tempDir('drydock-layer-nodes-');
  await fsp.mkdir(path.join(tree, 'dev'));
  execFileSync('mknod', ['-m', '666', path.join(tree, 'dev/null'), 'c', '1', '3']);
  execFileSync('mknod', ['-m', '600', path.join(tree, 'dev/console'), 'c', '5', '1']);
  execFileSync('mknod', ['-m', '600', path.join(tree, 'dev/initctl'), 'p']);
  await fsp.writeFile(path.join(tree, 'hello'), 'hi\n');
  const tarFile = path.join(tempDir('drydock-layer-nodes-tar-'), 'nodes.tar');
  execFileSync('python3', ['-c', 'import sys, tarfile\nwith tarfile.open(sys.argv[1], "w", format=tarfile.PAX_FORMAT) as t: t.add(sys.argv[2], arcname=".")', tarFile, tree]);
  const applyModule = path.join(PROJECT_ROOT, import.meta.url.endsWith('.ts') ? 'src/layer/apply.ts' : 'dist/src/layer/apply.js');
  const script = `import { applyLayer } from ${JSON.stringify(applyModule)}; import { createReadStream } from 'node:fs';
    await applyLayer(${JSON.stringify(target)}, createReadStream(${JSON.stringify(tarFile)}));`;
  const r = spawnSync('unshare', ['--user', '--map-root-user', process.execPath, ...(import.meta.url.endsWith('.ts') ? ['--import', 'tsx'] : []), '--input-type=module', '-e', script], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  assert.match(r.stderr, /^WARNING: skipped 2 device nodes of the layer \(mknod is not permitted here; the container's \/dev provides devices\): dev\/(console|null), dev\/(console|null)\n$/);
  assert.deepEqual(await listTree(target), ['dev', 'dev/initctl', 'hello']);
  assert.ok(lstatSync(path.join(target, 'dev/initctl')).isFIFO());
  assert.equal(await fsp.readFile(path.join(target, 'hello'), 'utf8'), 'hi\n');
});

const normalise: [string, string][] = [
  ['./a//b/', 'a/b'], ['a/./b', 'a/b'], ['./', ''], ['.', ''], ['a', 'a'],
];
for (const [input, want] of normalise) {
  test(`normalizeEntryPath(${JSON.stringify(input)}) = ${JSON.stringify(want)}`, () => assert.equal(normalizeEntryPath(input), want));
}
