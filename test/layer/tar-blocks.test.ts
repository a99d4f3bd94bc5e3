// The snapshot worker's gzip path (src/layer/tar-blocks.ts): a tree read straight into blocks
// must be the very tar tarDirectory yields, and its gzip the very blob createLayer stores
// (ParallelGzip's stream path), for compressible, incompressible and mixed data, at block
// boundaries and for an empty tree; a file that changes size fails it, and it closes the file.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { gunzipSync } from 'node:zlib';
import path from 'node:path';
import { ContentStore } from '../../src/store/index.js';
import { createLayer, tarDirectory } from '../../src/layer/index.js';
import { tarPieces, type TarPiece } from '../../src/layer/create.js';
import { GZIP_BLOCK } from '../../src/layer/parallel-gzip.js';
import { GzipFileSink, TarBlockReader, tarIntoBlocks } from '../../src/layer/tar-blocks.js';
import { tempDir } from '../helpers/env.js';

const sha256 = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

async function tarOf(dir: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of tarDirectory(dir, { overlayUpper: true })) chunks.push(c);
  return Buffer.concat(chunks);
}

function readAll(reader: TarBlockReader, size: number): Buffer {
  const out: Buffer[] = [];
  for (;;) {
    const block = Buffer.alloc(size);
    const n = reader.fill(block);
    out.push(block.subarray(0, n));
    if (n < size) return Buffer.concat(out);
  }
}

/** tarIntoBlocks into a GzipFileSink with a file of its own: what they report, and the bytes. */
async function gzipViaBlocks(dir: string): Promise<{ digest: string; size: number; diffID: string; bytes: Buffer }> {
  const file = path.join(tempDir('drydock-tarblocks-out-'), 'blob');
  const fh = await fsp.open(file, 'wx');
  try {
    const sink = new GzipFileSink(fh);
    const diffID = await tarIntoBlocks(dir, sink);
    const r = await sink.finish();
    return { ...r, diffID, bytes: readFileSync(file) };
  } finally {
    await fh.close();
  }
}

/** Trees whose tars cross block boundaries in every way: compressible, random, mixed, exact. */
async function trees(): Promise<[string, string][]> {
  const out: [string, string][] = [];
  const make = async (name: string, files: [string, Buffer][]) => {
    const dir = tempDir(`drydock-tarblocks-${name}-`);
    for (const [f, data] of files) {
      await fsp.mkdir(path.dirname(path.join(dir, f)), { recursive: true });
      await fsp.writeFile(path.join(dir, f), data);
    }
    out.push([name, dir]);
  };
  const text = Buffer.from('layer text that deflate shrinks well\n'.repeat(80_000));
  await make('empty', []);
  await make('compressible', [['a/text', text], ['b/small', Buffer.from('x\n')]]);
  await make('random', Array.from({ length: 12 }, (_, i) => [`d${i % 3}/f${i}.bin`, randomBytes(128 * 1024 + i * 511)] as [string, Buffer]));
  await make('mixed', [['1-noise', randomBytes(3 * GZIP_BLOCK + 100)], ['2-text', text], ['3-noise', randomBytes(700_000)]]);
  // One header, the data, and the 1024-byte end of archive: exactly one block, then exactly two.
  await make('one-block', [['f', randomBytes(GZIP_BLOCK - 1536)]]);
  await make('two-blocks', [['f', randomBytes(2 * GZIP_BLOCK - 1536)]]);
  return out;
}

test('TarBlockReader gives tarDirectory\'s bytes, whatever the block size', async () => {
  for (const [name, dir] of await trees()) {
    const expected = await tarOf(dir);
    for (const size of [512, 1000, 64 * 1024 + 3, GZIP_BLOCK]) {
      const got = readAll(new TarBlockReader(tarPieces(dir, { overlayUpper: true })), size);
      assert.equal(sha256(got), sha256(expected), `${name}, blocks of ${size}`);
    }
  }
});

test('tarIntoBlocks and GzipFileSink write createLayer\'s blob: same digest, size and diffID, and the bytes gunzip to the tar', async () => {
  const store = await ContentStore.open(tempDir('drydock-tarblocks-store-'));
  for (const [name, dir] of await trees()) {
    const layer = await createLayer(store, { dir }, { overlayUpper: true, compression: 'gzip' });
    const got = await gzipViaBlocks(dir);
    assert.deepEqual({ digest: got.digest, size: got.size, diffID: got.diffID }, { digest: layer.digest, size: layer.size, diffID: layer.diffID }, name);
    assert.equal(sha256(got.bytes), layer.digest, name);
    assert.equal(got.bytes.length, got.size, name);
    assert.equal(sha256(gunzipSync(got.bytes)), layer.diffID, name);
  }
});

test('a file datasynced as it is written (past earlySync bytes) still holds createLayer\'s bytes', async () => {
  const store = await ContentStore.open(tempDir('drydock-tarblocks-store-'));
  const dir = tempDir('drydock-tarblocks-early-');
  await fsp.writeFile(path.join(dir, 'noise'), randomBytes(5 * GZIP_BLOCK + 4321));
  await fsp.writeFile(path.join(dir, 'text'), Buffer.from('text\n'.repeat(600_000)));
  const file = path.join(tempDir('drydock-tarblocks-out-'), 'blob');
  const fh = await fsp.open(file, 'wx');
  let datasyncs = 0;
  const counted = { writev: fh.writev.bind(fh), write: fh.write.bind(fh), datasync: () => { datasyncs++; return fh.datasync(); } } as Pick<typeof fh, 'writev' | 'write' | 'datasync'>;
  try {
    const sink = new GzipFileSink(counted, { earlySync: GZIP_BLOCK });
    const diffID = await tarIntoBlocks(dir, sink);
    const blob = await sink.finish();
    const layer = await createLayer(store, { dir }, { overlayUpper: true, compression: 'gzip' });
    assert.deepEqual({ ...blob, diffID }, { digest: layer.digest, size: layer.size, diffID: layer.diffID });
    assert.equal(sha256(readFileSync(file)), layer.digest);
  } finally {
    await fh.close();
  }
  // One at a time: the first usually still runs while the other blocks are written.
  assert.ok(datasyncs >= 1, `${datasyncs} datasyncs while ~6 MiB were written with earlySync at 1 MiB`);
});

test('a file that grew or shrank after the walk saw it fails the tar with its name, and no file stays open', async () => {
  for (const change of ['grow', 'shrink'] as const) {
    const dir = tempDir(`drydock-tarblocks-${change}-`);
    const file = path.join(dir, 'data.bin');
    await fsp.writeFile(file, randomBytes(300_000));
    // The file changes between the walk's lstat (its header) and the read of its contents.
    function* changing(): Generator<TarPiece> {
      for (const piece of tarPieces(dir)) {
        if (!Buffer.isBuffer(piece)) {
          // writeFileSync truncates and rewrites in place: the inode the walk saw stays.
          const data = readFileSync(file);
          writeFileSync(file, change === 'grow' ? Buffer.concat([data, Buffer.from('more')]) : data.subarray(0, 1000));
        }
        yield piece;
      }
    }
    const before = readdirSync('/proc/self/fd').length;
    const reader = new TarBlockReader(changing());
    assert.throws(() => readAll(reader, GZIP_BLOCK), (e: Error) => e.message.includes(`${file} changed size while it was being archived (300000 -> `), change);
    assert.equal(readdirSync('/proc/self/fd').length, before, `${change}: the file was closed`);
  }
});
