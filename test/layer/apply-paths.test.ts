// applyLayer's two paths, the in-memory one (tars up to IN_MEMORY_TAR, and ADD's small archives
// handed over as bytes) and the streamed one (tar-stream): the same archives must give the same
// trees (types, modes with set-id bits, owners, mtimes, xattrs, hard links, whiteouts in both
// modes) and the same refusals, leaving nothing behind outside the target.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp, lstatSync, readdirSync, readFileSync, readlinkSync, utimesSync, mkdirSync, writeFileSync } from 'node:fs';
import { Readable } from 'node:stream';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { listAttributesSync, getAttributeSync, setAttribute } from '@napi-rs/xattr';
import { applyLayer, type ApplyLayerOptions } from '../../src/layer/apply.js';
import { tempDir, requireRoot } from '../helpers/env.js';
import { makeTar, gzip } from '../helpers/tars.js';
import { pythonTar } from '../helpers/python-tars.js';

type Input = 'stream, streamed' | 'stream, in memory' | 'bytes';
const INPUTS: Input[] = ['stream, streamed', 'stream, in memory', 'bytes'];

function apply(target: string, layer: Buffer, input: Input, opts: ApplyLayerOptions = {}) {
  if (input === 'bytes') return applyLayer(target, layer, opts);
  return applyLayer(target, Readable.from([layer]), { ...opts, inMemoryLimit: input === 'stream, streamed' ? 0 : opts.inMemoryLimit });
}

/** Everything extraction sets, one line per path; hard links as "=first path". */
function listTree(root: string): string {
  const out: string[] = [];
  const inodes = new Map<bigint, string>();
  const walk = (rel: string) => {
    const abs = path.join(root, rel);
    const st = lstatSync(abs, { bigint: true });
    let extra = '';
    if (st.isSymbolicLink()) extra = `-> ${readlinkSync(abs)}`;
    else if (st.isFile()) extra = createHash('sha256').update(readFileSync(abs)).digest('hex').slice(0, 16);
    else if (st.isCharacterDevice() || st.isBlockDevice()) extra = `dev ${st.rdev}`;
    const xattrs = st.isSymbolicLink() ? [] : listAttributesSync(abs).sort().map((n) => `${n}=${getAttributeSync(abs, n)!.toString('hex')}`);
    let link = '';
    if (!st.isDirectory()) {
      if (inodes.has(st.ino)) link = `=${inodes.get(st.ino)}`;
      else inodes.set(st.ino, rel);
    }
    // A whiteout device made in overlay mode has the time it was made.
    const made = st.isCharacterDevice() && st.rdev === 0n;
    out.push(`${rel} ${st.mode.toString(8)} ${st.uid}:${st.gid} ${st.isDirectory() ? '' : st.size} ${made ? '' : st.mtimeNs} ${extra} ${link} ${xattrs.join(',')}`);
    if (st.isDirectory()) for (const n of readdirSync(abs).sort()) walk(`${rel}/${n}`);
  };
  for (const n of readdirSync(root).sort()) walk(n);
  return out.join('\n');
}

/** What a lower layer left: a layer on top replaces, whites out and makes opaque parts of it. */
function lowerTree(target: string): void {
  mkdirSync(path.join(target, 'a/b/c'), { recursive: true });
  mkdirSync(path.join(target, 'opq/keep'), { recursive: true });
  writeFileSync(path.join(target, 'lowerfile'), 'lower');
  writeFileSync(path.join(target, 'opq/gone'), 'lower');
  writeFileSync(path.join(target, 'a/replaced'), 'lower');
  for (const p of ['a/b/c', 'a/b', 'a/replaced', 'a', 'lowerfile', 'opq/keep', 'opq/gone', 'opq']) utimesSync(path.join(target, p), 1000, 1000);
}

async function treesByInput(layer: Buffer, opts: ApplyLayerOptions = {}): Promise<Map<Input, string>> {
  const trees = new Map<Input, string>();
  for (const input of INPUTS) {
    const target = tempDir('drydock-apply-paths-');
    lowerTree(target);
    await apply(target, layer, input, opts);
    trees.set(input, listTree(target));
  }
  return trees;
}

function assertSameTrees(trees: Map<Input, string>, what: string): void {
  const streamed = trees.get('stream, streamed')!;
  for (const [input, tree] of trees) assert.equal(tree, streamed, `${what}: ${input} vs streamed`);
}

test('GNU tar and Python tarfile archives of a varied tree extract the same on both paths, plain and gzip', async () => {
  requireRoot();
  const dir = tempDir('drydock-apply-paths-src-');
  const tree = path.join(dir, 'tree');
  await fsp.mkdir(path.join(tree, 'a/b/c'), { recursive: true });
  await fsp.mkdir(path.join(tree, 'priv'), { mode: 0o700 });
  await fsp.mkdir(path.join(tree, 'sticky'));
  await fsp.chmod(path.join(tree, 'sticky'), 0o1777);
  await fsp.writeFile(path.join(tree, 'a/b/f1'), 'one');
  await fsp.writeFile(path.join(tree, 'a/b/c/owned'), 'owned');
  await fsp.chown(path.join(tree, 'a/b/c/owned'), 1234, 4321);
  await fsp.writeFile(path.join(tree, 'suid'), 'suid');
  await fsp.chown(path.join(tree, 'suid'), 1000, 1000);
  await fsp.chmod(path.join(tree, 'suid'), 0o4755);
  await fsp.writeFile(path.join(tree, 'sgid'), 'sgid');
  await fsp.chown(path.join(tree, 'sgid'), 0, 5);
  await fsp.chmod(path.join(tree, 'sgid'), 0o2755);
  await fsp.writeFile(path.join(tree, 'priv/secret'), 's', { mode: 0o600 });
  await fsp.writeFile(path.join(tree, 'a/replaced'), 'upper');
  await fsp.writeFile(path.join(tree, 'empty'), '');
  // Past the streamed path's small-file size, so it streams this one to disk.
  await fsp.writeFile(path.join(tree, 'big.bin'), Buffer.alloc(300_000, 7));
  await setAttribute(path.join(tree, 'big.bin'), 'user.bin', Buffer.from([0, 1, 254, 255]));
  await fsp.symlink('a/b/f1', path.join(tree, 'rel'));
  await fsp.symlink('/etc/passwd', path.join(tree, 'abs'));
  await fsp.link(path.join(tree, 'a/b/f1'), path.join(tree, 'hard'));
  execFileSync('mkfifo', [path.join(tree, 'fifo')]);
  execFileSync('mknod', [path.join(tree, 'null'), 'c', '1', '3']);
  const long = path.join(tree, 'l'.repeat(120));
  await fsp.mkdir(long);
  await fsp.writeFile(path.join(long, 'n'.repeat(150)), 'long');
  for (const p of ['a/b/f1', 'rel']) execFileSync('touch', ['-h', '-d', '2020-01-02 03:04:05', path.join(tree, p)]);
  const gnuPosix = path.join(dir, 'posix.tar');
  execFileSync('tar', ['--xattrs', '--xattrs-include=*', '--format=posix', '-C', tree, '-cf', gnuPosix, '.']);
  const gnu = path.join(dir, 'gnu.tar');
  execFileSync('tar', ['--format=gnu', '-C', tree, '-cf', gnu, '.']);
  execFileSync('python3', ['-c', 'import sys, tarfile\nwith tarfile.open(sys.argv[1], "w", format=tarfile.PAX_FORMAT) as t: t.add(sys.argv[2], arcname=".")', path.join(dir, 'py.tar'), tree]);
  for (const name of ['posix.tar', 'gnu.tar', 'py.tar']) {
    const tar = await fsp.readFile(path.join(dir, name));
    for (const [what, layer] of [[name, tar], [`${name}.gz`, gzip(tar)]] as const) {
      const trees = await treesByInput(layer);
      assertSameTrees(trees, what);
      const listed = trees.get('bytes')!;
      // The tree is the archive's, not an empty one that trivially matches.
      assert.match(listed, /^suid 104755 1000:1000 /m, what);
      assert.match(listed, /^a\/b\/c\/owned 100644 1234:4321 /m, what);
      assert.match(listed, /^hard .* =a\/b\/f1 /m, what);
      assert.match(listed, /^a\/b\/f1 100644 0:0 3 1577934245000000000 /m, what);
      assert.match(listed, /^null 20644 0:0 0 \d+ dev 259 /m, what);
      if (name === 'posix.tar') assert.match(listed, /^big\.bin .* user\.bin=0001feff$/m, what);
    }
  }
});

test('whiteouts and opaque directories apply the same on both paths, in apply and overlay mode', async () => {
  requireRoot();
  const layer = makeTar([
    { name: '.wh.lowerfile' },
    { name: 'opq/', type: 'directory' },
    { name: 'opq/.wh..wh..opq' },
    { name: 'opq/new', body: 'new' },
    // Named, so its mtime is the header's, not the time the whiteout under it was applied.
    { name: 'a/', type: 'directory' },
    { name: 'a/.wh.b' },
    { name: 'a/replaced', type: 'symlink', linkname: '../lowerfile' },
  ]);
  for (const whiteouts of ['apply', 'overlay'] as const) {
    const trees = await treesByInput(layer, { whiteouts });
    assertSameTrees(trees, whiteouts);
    const listed = trees.get('bytes')!;
    if (whiteouts === 'apply') {
      assert.doesNotMatch(listed, /^lowerfile |^opq\/gone |^a\/b /m);
      assert.match(listed, /^opq\/new /m);
    } else {
      assert.match(listed, /^lowerfile 20644 0:0 0 {2}dev 0 /m);
      assert.match(listed, /^opq \d+ 0:0 .*trusted\.overlay\.opaque=79$/m);
    }
  }
});

test('refusals are the same on both paths, and nothing outside the target is touched', async () => {
  const refused: { entries: Parameters<typeof makeTar>[0]; error: RegExp }[] = [
    { entries: [{ name: '../../etc/passwd', body: 'x' }], error: /"\.\." path components are refused/ },
    { entries: [{ name: 'etc', type: 'symlink', linkname: '/etc' }, { name: 'etc/passwd', body: 'pwned' }], error: /entry "etc\/passwd": parent "etc" is a symlink/ },
    { entries: [{ name: 'lib/', type: 'directory' }, { name: 'lib', type: 'symlink', linkname: '../outside' }, { name: 'lib/secret', body: 'x' }], error: /parent "lib" is a symlink/ },
    { entries: [{ name: 'x', type: 'link', linkname: 'nope' }], error: /hardlink target "nope" does not exist/ },
    { entries: [{ name: 'f', body: 'x' }, { name: 'f/g', body: 'y' }], error: /parent "f" is not a directory/ },
  ];
  for (const c of refused) {
    const layer = makeTar(c.entries);
    for (const input of INPUTS) {
      const base = tempDir('drydock-apply-paths-refused-');
      const target = path.join(base, 'root');
      await fsp.mkdir(path.join(base, 'outside'), { recursive: true });
      await fsp.writeFile(path.join(base, 'outside/secret'), 'keep me');
      await assert.rejects(apply(target, layer, input), c.error, `${input}: ${c.entries.map((e) => e.name).join(', ')}`);
      assert.equal(await fsp.readFile(path.join(base, 'outside/secret'), 'utf8'), 'keep me');
      assert.deepEqual(await fsp.readdir(path.join(base, 'outside')), ['secret']);
    }
  }
  // A truncated archive and a corrupt gzip fail with the same words whichever way they come.
  const truncated = makeTar([{ name: 'f', body: 'x'.repeat(2000) }]).subarray(0, 1200);
  for (const input of INPUTS) {
    await assert.rejects(apply(tempDir('drydock-apply-paths-trunc-'), truncated, input), /truncated tar archive/, input);
    await assert.rejects(apply(tempDir('drydock-apply-paths-trunc-'), gzip(makeTar([{ name: 'f', body: 'x' }])).subarray(0, 30), input), /truncated gzip data/, input);
  }
});

test('the size cap holds on both paths; in memory, an archive over it writes nothing', async () => {
  const layer = makeTar([{ name: 'first', body: 'x'.repeat(4000) }, { name: 'second', body: 'y'.repeat(20_000) }]);
  for (const input of INPUTS) {
    const target = tempDir('drydock-apply-paths-cap-');
    await assert.rejects(apply(target, gzip(layer), input, { limits: { maxBytes: 10_000 } }), /entry "second": layer expands beyond the 9\.77 KiB cap/, input);
    if (input !== 'stream, streamed') assert.deepEqual(await fsp.readdir(target), [], `${input}: nothing written`);
  }
});

test('a tar past the in-memory limit is streamed: gzip bytes that expand past it, and a stream', async () => {
  const files = Array.from({ length: 40 }, (_, i) => ({ name: `d/f${i}`, body: Buffer.alloc(4096, i), mtime: 1600000000 + i }));
  const layer = makeTar([{ name: 'd/', type: 'directory', mtime: 1500000000 }, ...files]);
  // 40 x 4.5 KiB of tar from ~1 KiB of gzip: past a 64 KiB limit, so gunzip stops and the bytes are streamed.
  const limit = 64 * 1024;
  assert.ok(layer.length > limit && gzip(layer).length < limit);
  const expected = listTree(await (async () => { const t = tempDir('drydock-apply-paths-ref-'); await apply(t, layer, 'stream, streamed'); return t; })());
  for (const input of INPUTS) {
    const target = tempDir('drydock-apply-paths-limit-');
    const r = await apply(target, gzip(layer), input, { inMemoryLimit: limit });
    assert.equal(r.bytes, layer.length);
    assert.equal(r.entries, 41);
    assert.equal(listTree(target), expected, input);
  }
  assert.match(expected, /^d\/f39 100644 0:0 4096 1600000039000000000 /m);
  assert.match(expected, /^d 40755 0:0 {2}1500000000000000000 /m);
});

test('diffID and byte counts agree across inputs (what the unpacked-layer cache checks)', async () => {
  const layer = pythonTar([{ name: 'd', type: 'dir' }, { name: 'd/f', body: 'hello' }, { name: 'd/l', type: 'symlink', linkname: 'f' }]);
  const results = [];
  for (const input of INPUTS) results.push(await apply(tempDir('drydock-apply-paths-digest-'), gzip(layer), input));
  const expected = { entries: 3, bytes: layer.length, diffID: `sha256:${createHash('sha256').update(layer).digest('hex')}` };
  for (const r of results) assert.deepEqual(r, expected);
});
