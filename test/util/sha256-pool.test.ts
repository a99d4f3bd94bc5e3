// The pooled SHA-256 against node:crypto: libcrypto's on a worker thread and the fallback on
// this one give node:crypto's digest for every chunking, with small and large updates mixed.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createPooledSha256 } from '../../src/util/sha256-pool.js';

const data = randomBytes(3 * 1024 * 1024 + 777);

const chunkings: { name: string; sizes: number[] }[] = [
  { name: 'nothing', sizes: [] },
  { name: 'one empty update', sizes: [0] },
  { name: 'one small update (on this thread)', sizes: [100] },
  { name: 'one large update', sizes: [data.length] },
  { name: '1 MiB blocks', sizes: [1 << 20, 1 << 20, 1 << 20, 777] },
  { name: 'small after large (queued behind it)', sizes: [1 << 20, 5, 65535, 5, 65535, 3] },
  { name: 'large after small', sizes: [10, 64 * 1024, 1 << 20, 1] },
];

const libraries: { name: string; library?: string }[] = [
  { name: 'libcrypto' },
  { name: 'node:crypto fallback', library: 'libdoes-not-exist.so.9' },
];

describe('createPooledSha256', () => {
  for (const lib of libraries) {
    for (const c of chunkings) {
      test(`${lib.name}: ${c.name}`, async () => {
        const h = createPooledSha256(lib.library);
        const expected = createHash('sha256');
        let at = 0;
        const pending: Promise<void>[] = [];
        for (const n of c.sizes) {
          const piece = data.subarray(at, at + n);
          at += n;
          expected.update(piece);
          pending.push(h.update(piece)); // not awaited one by one: they must still run in order
        }
        await Promise.all(pending);
        assert.equal(await h.digest(), `sha256:${expected.digest('hex')}`);
      });
    }
  }

  test('an update resolves once its data is read: the buffer may be refilled then', async () => {
    const h = createPooledSha256();
    const expected = createHash('sha256');
    const block = Buffer.alloc(1 << 20);
    for (let i = 0; i < 8; i++) {
      block.fill(i);
      expected.update(block);
      await h.update(block);
    }
    assert.equal(await h.digest(), `sha256:${expected.digest('hex')}`);
  });

  test('no update after digest; close after a digest is harmless', async () => {
    const h = createPooledSha256();
    await h.update(Buffer.from('abc'));
    assert.equal(await h.digest(), 'sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    await h.close();
    await assert.rejects(h.update(Buffer.from('x')), /after digest/);
  });
});
