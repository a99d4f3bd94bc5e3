// The full debian variant: real debootstrap from the host's Debian mirror (~50 MB download,
// a few minutes), so it only runs when asked for: DRYDOCK_TEST_DEBIAN=1. The failure and Ctrl-C
// paths run in every CI run (mkimage.test.ts, against a local fake mirror).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import { PassThrough } from 'node:stream';
import path from 'node:path';
import { tempDir, runCli, requireRoot, requireTool } from '../helpers/env.js';
import { ContentStore, resolveImage } from '../../src/store/index.js';
import { unpackImage } from '../../src/layer/index.js';
import { ensureLayersUnpacked, mountRootfs, createRuntimeSpec, runOnce } from '../../src/runtime/index.js';
import { mountsUnder } from '../../src/mkimage/scratch.js';

const enabled = process.env.DRYDOCK_TEST_DEBIAN === '1';

test('mkimage debian bookworm minbase: slim, no device nodes, runs in runc', {
  skip: enabled ? false : 'opt-in: set DRYDOCK_TEST_DEBIAN=1 (downloads ~50 MB from the Debian mirror)',
  timeout: 20 * 60_000,
}, async () => {
  requireRoot();
  requireTool('debootstrap');
  requireTool('runc');
  const work = tempDir('drydock-mkimage-debian-');
  const root = path.join(work, 'store');
  const r = await runCli(['mkimage', 'debian', '--suite', 'bookworm', '--timezone', 'UTC', '--format', 'json', '-t', 'debian:bookworm'], { root, timeoutMs: 20 * 60_000 });
  assert.equal(r.code, 0, r.stderr);
  const report = JSON.parse(r.stdout) as { size: number; compressedSize: number; packages: { manager: string; count: number }; mirror: string };
  assert.equal(report.packages.manager, 'dpkg');
  assert.ok(report.packages.count > 50 && report.packages.count < 200, `minbase has ${report.packages.count} packages`);
  assert.ok(report.size < 150e6, `uncompressed ${report.size} bytes`);

  const store = await ContentStore.open(root);
  const image = await resolveImage(store, 'debian:bookworm');
  assert.deepEqual(image.config.config?.Cmd, ['bash']);
  const dir = path.join(work, 'unpacked');
  await fsp.mkdir(dir);
  await unpackImage(store, image, dir);
  assert.deepEqual(await fsp.readdir(path.join(dir, 'dev')), [], 'no device nodes');
  assert.deepEqual(await fsp.readdir(path.join(dir, 'var/lib/apt/lists')).then((l) => l.filter((n) => n !== 'partial' && n !== 'lock')), []);
  assert.deepEqual((await fsp.readdir(path.join(dir, 'var/cache/apt'))).filter((n) => n.endsWith('.bin')), []);
  await assert.rejects(fsp.lstat(path.join(dir, 'etc/resolv.conf')), 'host resolv.conf is not baked in');
  await assert.rejects(fsp.lstat(path.join(dir, 'debootstrap')));
  assert.ok((await fsp.stat(path.join(dir, 'etc/apt/apt.conf.d/docker-clean'))).isFile());
  const sources = await fsp.readFile(path.join(dir, 'etc/apt/sources.list.d/debian.sources'), 'utf8');
  assert.match(sources, /^Suites: bookworm bookworm-updates$/m);
  assert.match(sources, /^Suites: bookworm-security$/m);
  await assert.rejects(fsp.lstat(path.join(dir, 'etc/apt/sources.list')));
  assert.equal((await fsp.stat(path.join(dir, 'usr/sbin/policy-rc.d'))).mode & 0o111, 0o111);

  const lowers = await ensureLayersUnpacked(store, image.manifest.layers.map((l, i) => ({ digest: l.digest, mediaType: l.mediaType, diffID: image.config.rootfs.diff_ids[i]! })));
  const rootfs = await mountRootfs({ lowerDirs: lowers, workDir: path.join(work, 'c') });
  try {
    const spec = await createRuntimeSpec({ rootfs: rootfs.rootfs, args: ['bash', '-c', 'cat /etc/debian_version; dpkg-query -W | wc -l; cat /etc/timezone'], env: image.config.config?.Env ?? [], cwd: '/', user: '', network: 'none' });
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    let out = '';
    stdout.on('data', (d) => (out += d));
    stderr.resume();
    const run = await runOnce({ id: `mkimage-debian-${process.pid}`, bundleDir: path.join(work, 'bundle'), spec, stdio: { stdout, stderr } });
    assert.equal(run.exitCode, 0);
    const [version, count, tz] = out.trim().split('\n');
    assert.match(version!, /^12\./);
    assert.equal(Number(count), report.packages.count);
    assert.equal(tz, 'UTC');
  } finally {
    await rootfs.unmount();
  }
  assert.deepEqual((await fsp.readdir(path.join(root, 'tmp'))).filter((n) => n.startsWith('mkimage-')), []);
  assert.deepEqual(await mountsUnder(root), []);
});
