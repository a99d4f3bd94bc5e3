// startWriteback reaches sync_file_range(2) through koffi on this Linux host: 0 for a file
// with dirty pages (also for a range past its end, which the kernel accepts), -1 for a descriptor
// that is not open, and never a rejection, so a filesystem writer can hint and forget.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { tempDir } from '../helpers/env.js';
import { startWriteback } from '../../src/util/writeback.js';

test('startWriteback hints a written range, and answers -1 for a closed descriptor', async () => {
  const file = path.join(tempDir('drydock-writeback-'), 'data');
  const fh = await fsp.open(file, 'w');
  const chunk = Buffer.alloc(1 << 20, 0x5a);
  await fh.write(chunk, 0, chunk.length, 0);
  const cases: { name: string; offset: number; length: number }[] = [
    { name: 'the written MiB', offset: 0, length: chunk.length },
    { name: 'a range past the end', offset: 8 << 20, length: 4096 },
  ];
  for (const c of cases) assert.equal(await startWriteback(fh.fd, c.offset, c.length), 0, c.name);
  const fd = fh.fd;
  await fh.sync();
  await fh.close();
  assert.equal(await startWriteback(fd, 0, chunk.length), -1, 'closed descriptor');
  assert.deepEqual(await fsp.readFile(file), chunk);
});
