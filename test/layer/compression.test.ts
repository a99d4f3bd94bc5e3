// Compression helpers: parallel gzip is valid, deterministic and independent of input chunking;
// detection by magic bytes; zstd through the binary with failures surfaced.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { gunzipSync, gzipSync, deflateRawSync } from 'node:zlib';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ParallelGzip, decompress, detectCompression, compressor } from '../../src/layer/index.js';
import { gzipSync as parallelGzipSync, flatBytes, incompressibleSync } from '../../src/layer/parallel-gzip.js';
import { requireTool } from '../helpers/env.js';

async function collect(r: NodeJS.ReadableStream): Promise<Buffer> {
  const out: Buffer[] = [];
  for await (const c of r) out.push(c as Buffer);
  return Buffer.concat(out);
}

function pieces(buf: Buffer, size: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < buf.length; i += size) out.push(buf.subarray(i, i + size));
  return out;
}

const inputs: [string, Buffer][] = [
  ['empty', Buffer.alloc(0)],
  ['tiny', Buffer.from('hello')],
  ['exactly one block', Buffer.alloc(1 << 20, 3)],
  ['random 3 MiB + 5 bytes', randomBytes((3 << 20) + 5)],
  ['text 5 MiB', Buffer.from('lorem ipsum dolor sit amet '.repeat(200_000))],
];
for (const [name, input] of inputs) {
  test(`ParallelGzip round trip: ${name}`, async () => {
    const a = await collect(Readable.from(pieces(input, 4096 + 7)).pipe(new ParallelGzip()));
    const b = await collect(Readable.from(pieces(input, 1 << 20)).pipe(new ParallelGzip()));
    assert.ok(gunzipSync(a).equals(input));
    assert.ok(a.equals(b), 'output does not depend on how the input was chunked');
    // The shared dictionary keeps the ratio within 1% of single-stream gzip.
    assert.ok(a.length <= gzipSync(input).length * 1.01 + 64);
  });
}

test('gzipSync gives ParallelGzip\'s bytes: blocks, dictionaries, stored blocks and level alike', async () => {
  const text = Buffer.from('lorem ipsum dolor sit amet '.repeat(100_000));
  const cases: [string, Buffer, number?][] = [
    ...inputs,
    ['noise of 40 KiB (probed, stored)', randomBytes(40 << 10)],
    ['two blocks exactly', Buffer.concat([text.subarray(0, 1 << 20), randomBytes(1 << 20)])],
    ['text, noise, text', Buffer.concat([text, randomBytes((1 << 20) + 3), text.subarray(0, 70_000)])],
    ['text at level 1', text, 1],
  ];
  for (const [name, input, level] of cases) {
    const stream = await collect(Readable.from(pieces(input, 1 << 20)).pipe(new ParallelGzip(level)));
    assert.ok(parallelGzipSync(input, level).equals(stream), name);
  }
});

test('ParallelGzip stores incompressible blocks and still compresses the compressible ones', async () => {
  const noise = randomBytes(4 << 20);
  const text = Buffer.from('lorem ipsum dolor sit amet '.repeat(80_000));
  const input = Buffer.concat([noise, text]);
  const out = await collect(Readable.from(pieces(input, 1 << 20)).pipe(new ParallelGzip()));
  assert.ok(gunzipSync(out).equals(input));
  // Stored blocks: the noise costs its own size plus a few bytes per 64 KiB; the text compresses.
  assert.ok(out.length < noise.length * 1.001 + gzipSync(text).length * 1.01 + 1024, `${out.length}`);
  const storedOnly = await collect(Readable.from([noise]).pipe(new ParallelGzip()));
  assert.ok(storedOnly.length < noise.length * 1.001, `${storedOnly.length}`);
  // Deflate's stored block header (BTYPE 00) right after the gzip header.
  assert.equal(storedOnly[10]! & 0b110, 0);
  // The stored blocks are written by hand, not by zlib: GNU gzip must read them, the final one
  // (BFINAL set, a whole 1 MiB block of noise) and ones between compressed blocks alike.
  requireTool('gzip');
  const { execFileSync } = await import('node:child_process');
  const mixed = Buffer.concat([text.subarray(0, 1 << 20), noise, randomBytes(70_000)]);
  for (const [what, plain] of [['noise only', noise], ['text then noise', mixed], ['noise then text', input]] as const) {
    const gz = await collect(Readable.from(pieces(plain, 1 << 20)).pipe(new ParallelGzip()));
    assert.ok(execFileSync('gzip', ['-dc'], { input: gz, maxBuffer: 64 << 20 }).equals(plain), `${what}: gzip -dc gives the input back`);
    execFileSync('gzip', ['-t'], { input: gz });
  }
  // And it is cheap: far less CPU (thread pool included) than deflating the noise at level 6,
  // which is what searching incompressible data for matches costs. CPU time, not wall: a loaded
  // machine does not change it much.
  const cpu = (fn: () => unknown) => { const u = process.cpuUsage(); fn(); const d = process.cpuUsage(u); return d.user + d.system; };
  const level6 = cpu(() => { for (const p of pieces(noise, 1 << 20)) deflateRawSync(p, { level: 6 }); });
  const u = process.cpuUsage();
  await collect(Readable.from(pieces(noise, 1 << 20)).pipe(new ParallelGzip()));
  const d = process.cpuUsage(u);
  assert.ok(d.user + d.system < level6 * 0.6, `ParallelGzip used ${(d.user + d.system) / 1000} ms of CPU, level-6 deflate ${level6 / 1000} ms`);
});

test('flatBytes: evenly spread bytes skip the deflate probe, anything a Huffman code shrinks does not', () => {
  const noise = randomBytes(32 << 10);
  assert.equal(flatBytes(noise), true);
  // Noise with two tar headers' worth of zeros among the samples (a layer of compressed files).
  const withHeaders = Buffer.from(noise);
  withHeaders.fill(0, 100, 500);
  withHeaders.fill(0, 20_000, 20_400);
  assert.equal(flatBytes(withHeaders), true);
  // A third header: 7.5 bits a byte, and the deflate probe decides.
  withHeaders.fill(0, 30_000, 30_400);
  assert.equal(flatBytes(withHeaders), false);
  // Hex digits: 16 values, 4 bits a byte; and noise over 200 of the 256 values (7.64 bits).
  assert.equal(flatBytes(Buffer.from(noise.toString('hex').slice(0, 32 << 10))), false);
  assert.equal(flatBytes(Buffer.from(noise.map((b) => b % 200))), false);
  assert.equal(flatBytes(Buffer.alloc(32 << 10)), false);
  // A tenth of the samples zeros: a Huffman code could save ~10%, so the deflate probe decides.
  const tenthZeros = Buffer.from(noise);
  tenthZeros.fill(0, 0, 3300);
  assert.equal(flatBytes(tenthZeros), false);
});

test('incompressibleSync: the same decisions as the level-1 probe for noise, text and machine code', () => {
  const noise = randomBytes(1 << 20);
  assert.equal(incompressibleSync(noise), true);
  assert.equal(incompressibleSync(Buffer.from('lorem ipsum dolor sit amet '.repeat(40_000)).subarray(0, 1 << 20)), false);
  assert.equal(incompressibleSync(readFileSync(process.execPath).subarray(1 << 20, 2 << 20)), false);
  // Text whose bytes look flat only by being noise's hex: still probed, still compressed.
  assert.equal(incompressibleSync(Buffer.from(noise.toString('hex').slice(0, 1 << 20))), false);
});

const magics: [string, number[], string][] = [
  ['gzip', [0x1f, 0x8b, 8, 0, 0, 0], 'gzip'],
  ['zstd', [0x28, 0xb5, 0x2f, 0xfd, 0, 0], 'zstd'],
  ['tar', [0x62, 0x69, 0x6e, 0x2f, 0, 0], 'none'],
  ['empty', [], 'none'],
];
for (const [name, bytes, want] of magics) {
  test(`detectCompression: ${name}`, () => assert.equal(detectCompression(Buffer.from(bytes)), want));
}
test('detectCompression refuses xz and bzip2 with a hint', () => {
  assert.throws(() => detectCompression(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0])), /xz-compressed input is not supported/);
  assert.throws(() => detectCompression(Buffer.from('BZh91AY')), /bzip2-compressed input is not supported/);
});

test('zstd compress and auto-detected decompress; corrupt zstd is a clear error', async () => {
  requireTool('zstd');
  const input = randomBytes(2 << 20);
  const z = await collect(Readable.from([input]).pipe(compressor('zstd')));
  const { stream, compression } = await decompress(Readable.from([z]), 'auto');
  assert.equal(compression, 'zstd');
  assert.ok((await collect(stream)).equals(input));
  const bad = Buffer.from(z);
  bad.fill(0, 8, 200);
  const r = await decompress(Readable.from([bad]), 'auto');
  await assert.rejects(collect(r.stream), /zstd decompression failed/);
});
