// The image commands through the real CLI binary: output shapes Docker users and scripts rely on.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { runCli, tempDir, requireTool } from '../helpers/env.js';
import { makeTar, gzip, zstd } from '../helpers/tars.js';
import { storeSnapshot } from '../helpers/store-snapshot.js';

const rootfs = makeTar([
  { name: 'bin/', type: 'directory' }, { name: 'bin/hello', body: '#!/bin/sh\necho hello\n', mode: 0o755 },
  { name: 'etc/', type: 'directory' }, { name: 'etc/os-release', body: 'ID=test\n' },
]);
let dir: string;
let rootfsTar: string;
before(async () => {
  dir = tempDir('drydock-cli-image-');
  rootfsTar = path.join(dir, 'rootfs.tar');
  await fsp.writeFile(rootfsTar, rootfs);
});

async function ok(args: string[], root: string, input?: Buffer) {
  const r = await runCli(args, { root, input });
  assert.equal(r.code, 0, `drydock ${args.join(' ')} failed: ${r.stderr}`);
  return r;
}

test('import (file, positional name, stdin, zstd) then images, tag, inspect', async () => {
  requireTool('zstd');
  const root = tempDir('drydock-cli-store-');
  const id = (await ok(['import', rootfsTar, 'demo:1', '-c', 'CMD ["/bin/hello"]', '-c', 'ENV A=1', '-m', 'first'], root)).stdout.trim();
  assert.match(id, /^sha256:[a-f0-9]{64}$/);
  await ok(['import', '-', '-t', 'demo:stdin', '-q'], root, gzip(rootfs));
  const zst = path.join(dir, 'rootfs.tar.zst');
  await fsp.writeFile(zst, zstd(rootfs));
  await ok(['import', zst, '--tag', 'localhost:5000/team/demo:zst'], root);
  await ok(['tag', 'demo:1', 'demo:latest'], root);

  const table = (await ok(['images'], root)).stdout.split('\n');
  assert.match(table[0]!, /^REPOSITORY\s+TAG\s+IMAGE ID\s+CREATED\s+SIZE$/);
  assert.ok(table.some((l) => /^demo\s+1\s+[a-f0-9]{12}\s+.*ago\s+\d/.test(l)), table.join('\n'));
  assert.ok(table.some((l) => /^localhost:5000\/team\/demo\s+zst\s/.test(l)));
  const json = (await ok(['images', '--format', 'json'], root)).stdout.trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(json.length, 4);
  assert.deepEqual(Object.keys(json[0]).sort(), ['Containers', 'CreatedAt', 'CreatedSince', 'Digest', 'ID', 'Repository', 'SharedSize', 'Size', 'Tag', 'UniqueSize', 'VirtualSize']);
  const quiet = (await ok(['images', '-q'], root)).stdout.trim().split('\n');
  assert.ok(quiet.every((l) => /^[a-f0-9]{12}$/.test(l)));
  assert.ok((await ok(['images', 'demo', '--digests'], root)).stdout.includes('DIGEST'));
  assert.equal((await ok(['images', '--format', '{{.Repository}}:{{.Tag}}', 'demo:1'], root)).stdout, 'demo:1\n');

  const inspect = JSON.parse((await ok(['inspect', 'demo:1'], root)).stdout);
  assert.equal(inspect.length, 1);
  assert.equal(inspect[0].Id, id);
  assert.deepEqual(inspect[0].RepoTags.sort(), ['demo:1', 'demo:latest']);
  // Docker's full container.Config: unset fields are there too (Entrypoint null, Tty false, ...).
  assert.deepEqual({ Cmd: inspect[0].Config.Cmd, Env: inspect[0].Config.Env, Entrypoint: inspect[0].Config.Entrypoint, Tty: inspect[0].Config.Tty }, { Cmd: ['/bin/hello'], Env: ['A=1'], Entrypoint: null, Tty: false });
  assert.equal(inspect[0].Comment, 'first');
  assert.equal(inspect[0].RootFS.Type, 'layers');
  assert.equal((await ok(['inspect', '-f', '{{.Config.Cmd}} {{json .Config.Env}}', id.slice(7, 19)], root)).stdout, '[/bin/hello] ["A=1"]\n');
});

test('rmi prints Untagged:/Deleted: and gc reclaims the rest', async () => {
  const root = tempDir('drydock-cli-store-');
  await ok(['import', rootfsTar, 'gone:1', '-q'], root);
  await ok(['tag', 'gone:1', 'gone:2'], root);
  assert.equal((await ok(['rmi', 'gone:1'], root)).stdout, 'Untagged: gone:1\n');
  const r = await ok(['rmi', 'gone:2'], root);
  assert.match(r.stdout, /^Untagged: gone:2\n(Deleted: sha256:[a-f0-9]{64}\n){3}$/);
  const missing = await runCli(['rmi', 'nope:1'], { root });
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /^Error: No such image: nope:1 \(image "nope:1" not found in the store/);
  await fsp.writeFile(path.join(root, 'blobs/sha256', 'a'.repeat(64)), 'orphan');
  assert.match((await ok(['gc', '--dry-run', '--grace', '0'], root)).stdout, /Would delete: sha256:a{64}\nWould reclaim: 6B/);
  assert.match((await ok(['gc', '--grace', '0'], root)).stdout, /Deleted: sha256:a{64}\nTotal reclaimed space: 6B/);
});

test('save / load (file and stdin) / export through the CLI', async () => {
  const a = tempDir('drydock-cli-store-');
  const b = tempDir('drydock-cli-store-');
  await ok(['import', rootfsTar, 'ship:1', '-q'], a);
  const archive = path.join(dir, 'ship.tar');
  await ok(['save', 'ship:1', '-o', archive], a);
  assert.equal((await ok(['load', '-i', archive], b)).stdout, 'Loaded image: ship:1\n');
  const oci = (await ok(['save', '--format', 'oci-archive', 'ship:1'], a)).stdout;
  assert.ok(oci.length > 1024);
  const c = tempDir('drydock-cli-store-');
  const viaStdin = await runCli(['load'], { root: c, input: gzip(await fsp.readFile(archive)) });
  assert.equal(viaStdin.stdout, 'Loaded image: ship:1\n', viaStdin.stderr);
  const flat = path.join(dir, 'flat.tar');
  await ok(['export', 'ship:1', '-o', flat], b);
  const { TarFile } = await import('../../src/archive/index.js');
  const t = await TarFile.open(flat);
  assert.deepEqual([...t.entries.keys()].sort(), ['bin', 'bin/hello', 'etc', 'etc/os-release']);
});

test('bad input: clear errors, exit 1, store unchanged', async () => {
  const root = tempDir('drydock-cli-store-');
  await ok(['import', rootfsTar, 'keep:1', '-q'], root);
  const before = await storeSnapshot(root);
  const evil = path.join(dir, 'evil.tar');
  await fsp.writeFile(evil, makeTar([{ name: '../../etc/passwd', body: 'x' }]));
  const cases: [string[], RegExp][] = [
    [['import', evil, 'evil:1'], /^Error: entry "\.\.\/\.\.\/etc\/passwd": "\.\." path components are refused/],
    [['import', path.join(dir, 'missing.tar'), 'x:1'], /^Error: .*missing\.tar: no such file or directory/],
    [['import', rootfsTar, 'Bad:Name'], /^Error: invalid reference format: "Bad:Name": repository name must be lowercase/],
    [['import', rootfsTar, 'x:1', '-c', 'RUN make'], /^Error: invalid change "RUN make": RUN is not allowed/],
    [['load', '-i', evil], /^Error: .*"\.\." path components are refused|not a docker-archive/],
    [['tag', 'nope', 'x:1'], /^Error: No such image: nope \(image "nope" not found/],
    [['save', 'nope', '-o', path.join(dir, 'nope.tar')], /^Error: No such image: nope \(image "nope" not found/],
    [['inspect', 'sha256:abc'], /^Error: /],
  ];
  for (const [args, err] of cases) {
    const r = await runCli(args, { root });
    assert.equal(r.code, 1, `${args.join(' ')}: ${r.stdout}`);
    assert.match(r.stderr, err, args.join(' '));
  }
  assert.deepEqual(await storeSnapshot(root), before);
  await assert.rejects(fsp.stat(path.join(dir, 'nope.tar')));
});

test('--help shows examples', async () => {
  for (const cmd of ['import', 'images', 'save', 'load']) {
    const r = await runCli([cmd, '--help']);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /Examples:\n  drydock /, cmd);
  }
});

test('untagged images (import without a name, a build without -t) list as <none>, resolve by ID, go with rmi and image prune', async () => {
  const root = tempDir('drydock-cli-store-');
  const imported = (await ok(['import', rootfsTar, '-q'], root)).stdout.trim();
  await ok(['import', rootfsTar, 'named:1', '-c', 'ENV NAMED=1', '-q'], root);
  const ctx = tempDir('drydock-cli-untagged-ctx-');
  await fsp.writeFile(path.join(ctx, 'Dockerfile'), 'FROM named:1\nLABEL built=yes\n');
  const built = (await ok(['build', '-q', ctx], root)).stdout.trim();
  assert.match(built, /^sha256:[a-f0-9]{64}$/);

  const rows = (await ok(['images', '--format', 'json'], root)).stdout.trim().split('\n').map((l) => JSON.parse(l));
  const none = rows.filter((r) => r.Repository === '<none>');
  assert.deepEqual(none.map((r) => r.Tag), ['<none>', '<none>']);
  assert.deepEqual(new Set(none.map((r) => r.ID)), new Set([imported.slice(7, 19), built.slice(7, 19)]));
  assert.match((await ok(['images'], root)).stdout, new RegExp(`<none>\\s+<none>\\s+${built.slice(7, 19)}`));

  // Both resolve by short ID; gc keeps them (they are images, not garbage).
  const inspected = JSON.parse((await ok(['inspect', built.slice(7, 19)], root)).stdout)[0];
  assert.equal(inspected.Config.Labels.built, 'yes');
  await ok(['gc', '--grace', '0'], root);
  assert.equal(JSON.parse((await ok(['inspect', imported.slice(7, 19)], root)).stdout).length, 1);

  const rmi = await ok(['rmi', imported.slice(7, 19)], root);
  assert.match(rmi.stdout, /^(Deleted: sha256:[a-f0-9]{64}\n)+$/);
  assert.doesNotMatch((await ok(['images'], root)).stdout, new RegExp(imported.slice(7, 19)));

  const prune = await ok(['image', 'prune', '-f'], root);
  assert.match(prune.stdout, new RegExp(`^Deleted Images:\\nuntagged: sha256:[a-f0-9]{64}\\n(deleted: sha256:[a-f0-9]{64}\\n)+\\nTotal reclaimed space: \\d`));
  const left = (await ok(['images', '--format', 'json'], root)).stdout.trim().split('\n').map((l) => JSON.parse(l));
  assert.deepEqual(left.map((r) => `${r.Repository}:${r.Tag}`), ['named:1']);
  assert.equal(JSON.parse((await ok(['inspect', 'named:1'], root)).stdout)[0].Config.Env.includes('NAMED=1'), true);
});
