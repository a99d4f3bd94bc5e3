// isArchive (ADD's check, run beside the step's mount): small gzip and plain archives are
// checked on the main thread, the rest through the decompressor stream; both must answer the
// same for tars, non-tars and corrupt input.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { isArchive } from '../../src/builder/copy.js';
import { tempDir } from '../helpers/env.js';
import { makeTar, gzip, zstd } from '../helpers/tars.js';

test('isArchive: tars (plain, gzip, zstd; small and past 1 MiB) yes, other files no', async () => {
  const dir = tempDir('drydock-is-archive-');
  const small = makeTar([{ name: 'a/', type: 'directory' }, { name: 'a/f', body: 'x' }]);
  // Past the 1 MiB read-whole size, and a gzip start that expands past 1 MiB: the stream path.
  const large = makeTar([{ name: 'zeros', body: Buffer.alloc(3 * 1024 * 1024) }]);
  const noise = Buffer.from(Array.from({ length: 2 * 1024 * 1024 }, (_, i) => (i * 7919) % 251));
  const cases: [string, Buffer, boolean][] = [
    ['small.tar', small, true],
    ['small.tar.gz', gzip(small), true],
    ['small.tar.zst', zstd(small), true],
    ['large.tar.gz', gzip(large), true],
    ['large.tar', large, true],
    ['noise.tar.gz', gzip(Buffer.concat([makeTar([{ name: 'n', body: noise }])])), true],
    ['plain.gz', gzip(Buffer.from('not a tar\n')), false],
    ['text', Buffer.from('hello\n'), false],
    ['empty', Buffer.alloc(0), false],
    ['corrupt.gz', Buffer.concat([gzip(small).subarray(0, 10), Buffer.alloc(200, 0x55)]), false],
    ['big-not-tar.gz', gzip(Buffer.alloc(2 * 1024 * 1024, 0x61)), false],
  ];
  for (const [name, bytes, expected] of cases) {
    await fsp.writeFile(path.join(dir, name), bytes);
    assert.equal(await isArchive(path.join(dir, name)), expected, name);
  }
  assert.equal(await isArchive(path.join(dir, 'missing')), false);
  assert.equal(await isArchive(dir), false, 'a directory');
});
