// src/util/sha256.ts: the WebAssembly SHA-256 of small inputs gives node:crypto's digests, and its
// module is what scripts/sha256-wasm.mjs writes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { SMALL_INPUT, createSha256, sha256Hex } from '../../src/util/sha256.js';

const native = (data: string | Uint8Array) => createHash('sha256').update(data).digest('hex');
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

test('sha256Hex: FIPS 180-4 test vectors', () => {
  assert.equal(sha256Hex(''), 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
  assert.equal(sha256Hex('abc'), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  assert.equal(sha256Hex('abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq'), '248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1');
  assert.equal(sha256Hex('a'.repeat(1_000_000)), 'cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0');
});

test('sha256Hex: every length from 0 to 300 bytes (one and two padding blocks), and around the chunk and size limits', () => {
  for (let n = 0; n <= 300; n++) {
    const b = randomBytes(n);
    assert.equal(sha256Hex(b), native(b), `${n} bytes`);
  }
  // 64960 bytes of whole blocks fit in the module's memory at once; SMALL_INPUT is where node:crypto takes over.
  for (const n of [64959, 64960, 64961, 64960 + 56, 64960 + 64, SMALL_INPUT - 1, SMALL_INPUT, SMALL_INPUT + 1, 3 * SMALL_INPUT]) {
    const b = randomBytes(n);
    assert.equal(sha256Hex(b), native(b), `${n} bytes`);
  }
});

test('sha256Hex: a string is hashed as UTF-8, as Hash.update hashes it', () => {
  for (const s of ['é', '日本語のテキスト', '\u{1f600} emoji', JSON.stringify({ key: 'välue', n: [1, 2, 3] })]) {
    assert.equal(sha256Hex(s), native(s), s);
  }
});

test('createSha256: updates in pieces, across SMALL_INPUT, give the digest of the whole', () => {
  for (let round = 0; round < 40; round++) {
    const ours = createSha256();
    const theirs = createHash('sha256');
    const pieces = 1 + Math.floor(Math.random() * 30);
    for (let i = 0; i < pieces; i++) {
      const piece = Math.random() < 0.5 ? randomBytes(Math.floor(Math.random() * 8000)) : `ü${'x'.repeat(Math.floor(Math.random() * 3000))}\0`;
      ours.update(piece);
      theirs.update(piece);
    }
    assert.equal(ours.digest('hex'), theirs.digest('hex'), `round ${round}`);
  }
});

test('createSha256: a buffer changed after update does not change the digest', () => {
  const b = Buffer.from('first contents');
  const h = createSha256().update(b);
  b.fill(0);
  assert.equal(h.digest('hex'), native('first contents'));
});

test('the embedded module is scripts/sha256-wasm.mjs\'s output', async () => {
  const { sha256Module } = await import(path.join(root, 'scripts/sha256-wasm.mjs'));
  const source = readFileSync(path.join(root, 'src/util/sha256.ts'), 'utf8');
  const embedded = /const SHA256_WASM =\n((?:\s*'[A-Za-z0-9+/=]+'(?: \+)?\n?)+);/.exec(source);
  assert.ok(embedded, 'SHA256_WASM in src/util/sha256.ts');
  const base64 = [...embedded[1]!.matchAll(/'([^']+)'/g)].map((m) => m[1]).join('');
  assert.equal(base64, Buffer.from(sha256Module() as Uint8Array).toString('base64'));
});
