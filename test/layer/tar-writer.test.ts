// The ustar header encoder (src/layer/tar-writer.ts): numeric fields are zero-padded octal with a
// NUL, as GNU tar and Go's archive/tar write them; the checksum is six digits, a NUL and a space.
// Layer digests depend on every byte.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { encodeHeader, type TarHeader } from '../../src/layer/tar-writer.js';

/** The field at [offset, offset + width) as written with toString(8) and padStart (the format's definition). */
function octalField(value: number, width: number): Buffer {
  return Buffer.concat([Buffer.from(value.toString(8).padStart(width - 1, '0'), 'ascii'), Buffer.alloc(1)]);
}

test('numeric fields and the checksum are the octal digits GNU tar writes, at every magnitude', () => {
  const cases: TarHeader[] = [];
  for (const v of [0, 1, 7, 8, 0o644, 0o7777, 0o7777777, 1000, 65534, 2 ** 21 - 1]) {
    cases.push({ name: `f${v}`, type: 'file', mode: v & 0o7777, uid: v, gid: v, size: v, mtime: v });
  }
  for (const v of [2 ** 31, 2 ** 32 + 5, 0o77777777777]) cases.push({ name: 'big', type: 'file', mode: 0o755, uid: 0, gid: 0, size: v, mtime: v });
  cases.push({ name: 'dev', type: 'character-device', mode: 0o666, uid: 0, gid: 0, size: 0, mtime: 1764774600, devmajor: 4095, devminor: 0xfffff });
  cases.push({ name: 'ln', type: 'symlink', mode: 0o777, uid: 0, gid: 0, size: 0, mtime: 1, linkname: 'target' });
  for (const h of cases) {
    const b = encodeHeader(h);
    const size = h.type === 'file' ? h.size : 0;
    assert.deepEqual(b.subarray(100, 108), octalField(h.mode, 8), `${h.name} mode`);
    assert.deepEqual(b.subarray(108, 116), octalField(h.uid, 8), `${h.name} uid`);
    assert.deepEqual(b.subarray(116, 124), octalField(h.gid, 8), `${h.name} gid`);
    assert.deepEqual(b.subarray(124, 136), octalField(size, 12), `${h.name} size`);
    assert.deepEqual(b.subarray(136, 148), octalField(h.mtime, 12), `${h.name} mtime`);
    assert.deepEqual(b.subarray(329, 337), octalField(h.devmajor ?? 0, 8), `${h.name} devmajor`);
    assert.deepEqual(b.subarray(337, 345), octalField(h.devminor ?? 0, 8), `${h.name} devminor`);
    assert.equal(b.subarray(257, 265).toString('latin1'), 'ustar\u000000');
    let sum = 0;
    for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 0x20 : b[i]!;
    assert.deepEqual(b.subarray(148, 156), Buffer.concat([octalField(sum, 7), Buffer.from(' ')]), `${h.name} checksum`);
    assert.equal(String.fromCharCode(b[156]!), { file: '0', 'character-device': '3', symlink: '2' }[h.type as string]);
  }
});
