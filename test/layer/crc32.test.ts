// The gzip trailer's CRC-32 (src/layer/crc32.ts): libdeflate's where it is installed, zlib's
// otherwise, and the same value as zlib.crc32 for every length and chaining.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import zlib from 'node:zlib';
import { crc32, preloadCrc32 } from '../../src/layer/crc32.js';

test('crc32 gives zlib.crc32 for small and large buffers, from 0 and continued, at odd offsets', () => {
  const data = randomBytes((3 << 20) + 77);
  for (const length of [0, 1, 63, 64 * 1024 - 1, 64 * 1024, 64 * 1024 + 1, 1 << 20, data.length]) {
    assert.equal(crc32(data.subarray(0, length)), zlib.crc32(data.subarray(0, length)), `${length} bytes`);
  }
  // Block by block, as GzipBlocks continues it, the blocks at an odd offset into their buffer.
  let ours = 0;
  let theirs = 0;
  for (let at = 3; at < data.length; at += 300_001) {
    const block = data.subarray(at, at + 300_001);
    ours = crc32(block, ours);
    theirs = zlib.crc32(block, theirs);
    assert.equal(ours, theirs, `continued to ${at + block.length}`);
  }
  assert.equal(crc32(Buffer.alloc(1 << 20, 0xff), 0xffffffff), zlib.crc32(Buffer.alloc(1 << 20, 0xff), 0xffffffff));
});

test('libdeflate sums large blocks (setup.sh installs libdeflate0)', () => {
  assert.equal(preloadCrc32(), 'libdeflate');
});
