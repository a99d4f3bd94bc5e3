// ADD of a local archive and COPY of a directory: the same result wherever they land. Into a
// directory no lower layer has, they are written straight into the step's upper dir (copy.ts
// upperOnlyDir); into one the image has, through the overlay. Both must give the same files,
// owners, modes and links.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { builderFixture, type Fixture } from './helpers.js';
import { tempDir } from '../helpers/env.js';

let fx: Fixture;
let archiveDir: string;
before(async () => {
  fx = await builderFixture('add-extract');
  // Made by GNU tar: a file with its own owner and mode, a hard link to it, a symlink, and an
  // empty 0700 directory.
  const payload = path.join(tempDir('drydock-add-extract-'), 'payload');
  await fsp.mkdir(path.join(payload, 'sub'), { recursive: true });
  await fsp.mkdir(path.join(payload, 'empty'), { mode: 0o700 });
  await fsp.chmod(path.join(payload, 'empty'), 0o700);
  await fsp.writeFile(path.join(payload, 'sub/file.txt'), 'from the archive\n', { mode: 0o640 });
  await fsp.chmod(path.join(payload, 'sub/file.txt'), 0o640);
  await fsp.link(path.join(payload, 'sub/file.txt'), path.join(payload, 'hard'));
  await fsp.symlink('sub/file.txt', path.join(payload, 'link'));
  archiveDir = path.dirname(payload);
  execFileSync('tar', ['-C', payload, '--owner=1234', '--group=5678', '-czf', path.join(archiveDir, 'p.tar.gz'), '.']);
});

const destinations = [
  { name: 'a new directory (written into the upper dir)', dest: '/new/dir/' },
  { name: 'a directory of the image (through the overlay)', dest: '/etc/' },
  { name: 'the root', dest: '/' },
];
for (const c of destinations) {
  test(`ADD p.tar.gz into ${c.name}`, async () => {
    const dir = await fx.context({
      Dockerfile: `FROM busybox\nADD p.tar.gz ${c.dest}\nRUN cd ${c.dest} && stat -c '%n %a %u:%g %h %F' sub/file.txt hard empty && readlink link && cat link && ls /etc/passwd\n`,
    });
    await fsp.copyFile(path.join(archiveDir, 'p.tar.gz'), path.join(dir, 'p.tar.gz'));
    const r = await fx.build(dir, { noCache: true });
    assert.match(r.log, /^sub\/file\.txt 640 1234:5678 2 regular file\nhard 640 1234:5678 2 regular file\nempty 700 1234:5678 2 directory\nsub\/file\.txt\nfrom the archive\n\/etc\/passwd$/m, r.log);
    // The layer holds the archive's entries with the archive's metadata.
    const blob = path.join(fx.root, 'blobs', 'sha256', r.layers[r.layers.length - 2]!.digest.slice('sha256:'.length));
    const listing = execFileSync('tar', ['-tvzf', blob, '--numeric-owner'], { encoding: 'utf8' });
    const prefix = c.dest.slice(1);
    // One of the two names is the file, the other a hard link to it (the layer tar sorts names).
    assert.match(listing, new RegExp(`^-rw-r----- 1234/5678 +17 .* ${prefix}(hard|sub/file\\.txt)$`, 'm'), listing);
    assert.match(listing, new RegExp(`^hrw-r----- 1234/5678 .* ${prefix}(sub/file\\.txt link to ${prefix}hard|hard link to ${prefix}sub/file\\.txt)$`, 'm'), listing);
    assert.match(listing, new RegExp(`^lrwxrwxrwx 1234/5678 .* ${prefix}link -> sub/file\\.txt$`, 'm'), listing);
  });
}

// COPY of a directory: the same rule. The symlinked destination resolves in the image first,
// so its tree lands under the link's target, not at a literal /alias in the upper dir.
const copies = [
  { name: 'a new directory (written into the upper dir)', setup: '', dest: '/new/copied/', check: '/new/copied' },
  { name: 'a directory of the image (through the overlay)', setup: '', dest: '/etc/', check: '/etc' },
  { name: 'a new directory below a symlink of the image', setup: 'RUN mkdir /real-parent && ln -s /real-parent /alias\n', dest: '/alias/sub/', check: '/real-parent/sub' },
  // A lower layer has a file where the destination has a parent (lstat there is ENOTDIR).
  { name: 'a directory that replaced a file of a lower layer', setup: 'RUN echo f > /was-file\nRUN rm /was-file && mkdir /was-file\n', dest: '/was-file/sub/', check: '/was-file/sub' },
];
for (const c of copies) {
  test(`COPY of a directory into ${c.name}`, async () => {
    const dir = await fx.context({
      'tree/a.txt': 'a\n', 'tree/deep/er/b.txt': 'b\n', 'tree/ln': { link: 'a.txt' },
      Dockerfile: `FROM busybox\n${c.setup}COPY --chown=7:8 tree ${c.dest}\nRUN cd ${c.check} && stat -c '%n %u:%g %F' a.txt deep/er/b.txt ln && cat deep/er/b.txt && test ! -e /alias/../sub && ls /etc/passwd\n`,
    });
    const r = await fx.build(dir, { noCache: true });
    assert.match(r.log, /^a\.txt 7:8 regular file\ndeep\/er\/b\.txt 7:8 regular file\nln 7:8 symbolic link\nb\n\/etc\/passwd$/m, r.log);
    const blob = path.join(fx.root, 'blobs', 'sha256', r.layers[r.layers.length - 2]!.digest.slice('sha256:'.length));
    const listing = execFileSync('tar', ['-tvzf', blob, '--numeric-owner'], { encoding: 'utf8' });
    assert.match(listing, new RegExp(`^-rw-r--r-- 7/8 +2 .* ${c.check.slice(1)}/deep/er/b\\.txt$`, 'm'), listing);
    if (c.setup) assert.doesNotMatch(listing, /(^| )alias/m, 'nothing was written at the literal path of the symlink');
  });
}

// A tree into a new directory is copied with synchronous calls (copy.ts copyOneSync), through
// the overlay with the pool's: files above and below SMALL_FILE (64 KiB), modes, an empty
// directory, a symlink and hard links must come out the same either way, under --chown.
test('COPY of a tree: into the upper dir and through the overlay, the same entries', async () => {
  const dir = await fx.context({
    'tree/big.bin': { mode: 0o600, content: 'x'.repeat(200 * 1024) },
    'tree/run.sh': { mode: 0o755, content: '#!/bin/sh\n' },
    'tree/sub/small.txt': 's\n',
    'tree/ln': { link: 'sub/small.txt' },
    Dockerfile: 'FROM busybox\nCOPY --chown=7:8 tree /new/tree/\nCOPY --chown=7:8 tree /etc/\n'
      + "RUN for d in /new/tree /etc; do echo \"== $d\" && cd $d && stat -c '%n %a %u:%g %s %F' big.bin run.sh sub sub/small.txt hard1 hard2 empty ln && readlink ln && md5sum big.bin hard2 | cut -d' ' -f1; done\n",
  });
  await fsp.mkdir(path.join(dir, 'tree/empty'), { mode: 0o700 });
  await fsp.chmod(path.join(dir, 'tree/empty'), 0o700);
  await fsp.writeFile(path.join(dir, 'tree/hard1'), 'h\n');
  await fsp.link(path.join(dir, 'tree/hard1'), path.join(dir, 'tree/hard2'));
  const r = await fx.build(dir, { noCache: true });
  const sum = (f: string) => execFileSync('md5sum', [path.join(dir, 'tree', f)], { encoding: 'utf8' }).split(' ')[0];
  const expected = 'big.bin 600 7:8 204800 regular file\nrun.sh 755 7:8 10 regular file\nsub 755 7:8 4096 directory\nsub/small.txt 644 7:8 2 regular file\n'
    + `hard1 644 7:8 2 regular file\nhard2 644 7:8 2 regular file\nempty 700 7:8 4096 directory\nln 777 7:8 13 symbolic link\nsub/small.txt\n${sum('big.bin')}\n${sum('hard2')}\n`;
  assert.ok(r.log.includes(`== /new/tree\n${expected}== /etc\n${expected}`), r.log);
  // The upper dir's copy, as the layer holds it.
  const blob = path.join(fx.root, 'blobs', 'sha256', r.layers[r.layers.length - 3]!.digest.slice('sha256:'.length));
  const listing = execFileSync('tar', ['-tvzf', blob, '--numeric-owner'], { encoding: 'utf8' });
  assert.match(listing, /^-rw------- 7\/8 +204800 .* new\/tree\/big\.bin$/m, listing);
  assert.match(listing, /^-rwxr-xr-x 7\/8 +10 .* new\/tree\/run\.sh$/m, listing);
  assert.match(listing, /^drwx------ 7\/8 +0 .* new\/tree\/empty\/$/m, listing);
  assert.match(listing, /^lrwxrwxrwx 7\/8 .* new\/tree\/ln -> sub\/small\.txt$/m, listing);
});
