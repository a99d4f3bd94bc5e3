// The StorageDriver contract as a suite any driver runs in one line, after distribution's
// testsuites.Driver: what the registry relies on (storage.ts, gc.ts) — whole-object put/get,
// ranged reads, append writers across instances, commit/cancel, recursive delete, list and
// walk — plus invalid paths refused by the path check every driver goes through, eight
// parallel writers, and nothing left behind. Chunk sizes assume a driver's 5 MiB minimum part.
import { after, afterEach, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import { MIN_CHUNK_SIZE } from '../../src/registry/storage/s3.js';
import { checkedDriver, InvalidPathError } from '../../src/registry/storage/checked.js';
import { PathNotFoundError, type FileInfo, type StorageDriver } from '../../src/registry/storage/driver.js';

async function readAll(r: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of r as AsyncIterable<Buffer>) chunks.push(c);
  return Buffer.concat(chunks);
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** Paths distribution's PathRegexp refuses, and '.'/'..' components. */
const INVALID_PATHS = ['', 'relative/file', '/', '/a/../b', '/a/./b', '/..', '/a//b', '/a b', '/a\u0000b', '/caf\u00e9', '/a:b', '/a?b', '/a%2e%2e'];

export function storageDriverSuite(name: string, make: () => StorageDriver | Promise<StorageDriver>): void {
  describe(`StorageDriver contract: ${name}`, () => {
    let d: StorageDriver;
    before(async () => { d = checkedDriver(await make()); });
    // distribution's TearDownTest: a test that leaves files behind fails. Each test works under
    // its own top-level directory and removes it; the root must then be empty.
    afterEach(async () => {
      for (const top of await d.list('/').catch(() => [] as string[])) await d.delete(top);
    });
    after(async () => {
      assert.deepEqual(await d.list('/').catch(() => [] as string[]), [], 'the suite left nothing behind');
    });

    const contents: { name: string; data: Buffer | string }[] = [
      { name: 'empty', data: Buffer.alloc(0) },
      { name: 'text', data: 'sha256:0123' },
      { name: 'binary 1 MiB', data: randomBytes(1 << 20) },
    ];
    for (const c of contents) {
      test(`putContent/getContent round trip: ${c.name}`, async () => {
        const p = `/put/${c.name.replace(/ /g, '-')}`;
        await d.putContent(p, c.data);
        assert.deepEqual(await d.getContent(p), Buffer.from(c.data));
        assert.equal((await d.stat(p)).size, Buffer.byteLength(c.data));
        await d.putContent(p, 'replaced', { sync: false });
        assert.equal((await d.getContent(p)).toString(), 'replaced');
      });
    }

    const missing: { op: string; run: (d: StorageDriver) => Promise<unknown> }[] = [
      { op: 'getContent', run: (x) => x.getContent('/nope/file') },
      { op: 'stat', run: (x) => x.stat('/nope/file') },
      { op: 'list', run: (x) => x.list('/nope') },
      { op: 'reader', run: (x) => x.reader('/nope/file') },
      { op: 'move', run: (x) => x.move('/nope/file', '/elsewhere') },
    ];
    for (const m of missing) {
      test(`${m.op} of a missing path throws PathNotFoundError`, async () => {
        await assert.rejects(m.run(d), PathNotFoundError);
      });
    }

    test('stat tells files from directories', async () => {
      await d.putContent('/st/dir/sub/file', '12345');
      const f = await d.stat('/st/dir/sub/file');
      assert.deepEqual([f.isDir, f.size, f.path], [false, 5, '/st/dir/sub/file']);
      assert.ok(f.modTime.getTime() > Date.now() - 600_000);
      for (const dir of ['/st', '/st/dir', '/st/dir/sub']) assert.equal((await d.stat(dir)).isDir, true, dir);
      await assert.rejects(d.stat('/st/di'), PathNotFoundError); // a key prefix is not a directory
    });

    test('list returns direct children, sorted, as full paths', async () => {
      // "k" only has a grandchild: a directory all the same (the registry's tags/<tag>/current/link)
      for (const f of ['b', 'a', 'c/x', 'c/y/z', 'd-e', 'f', 'g', 'h', 'k/l/m']) await d.putContent(`/ls/${f}`, f);
      assert.deepEqual(await d.list('/ls'), ['a', 'b', 'c', 'd-e', 'f', 'g', 'h', 'k'].map((n) => `/ls/${n}`));
      assert.deepEqual(await d.list('/ls/c/'), ['/ls/c/x', '/ls/c/y']);
    });

    const data = randomBytes(3000);
    const ranges: { name: string; offset?: number; end?: number; want: Buffer }[] = [
      { name: 'whole', want: data },
      { name: 'from offset', offset: 1000, want: data.subarray(1000) },
      { name: 'offset and inclusive end', offset: 10, end: 19, want: data.subarray(10, 20) },
      { name: 'last byte', offset: 2999, end: 2999, want: data.subarray(2999) },
      { name: 'at the end', offset: 3000, want: Buffer.alloc(0) },
    ];
    for (const r of ranges) {
      test(`reader: ${r.name}`, async () => {
        await d.putContent('/rd/blob', data);
        assert.deepEqual(await readAll(await d.reader('/rd/blob', r.offset, r.end)), r.want);
      });
    }

    test('appending writers across instances build one file; size and stat follow each close', async () => {
      const p = '/up/one/data';
      const pieces = [randomBytes(100), randomBytes(70_000), Buffer.alloc(0), randomBytes(5)];
      let total = 0;
      for (const piece of pieces) {
        const w = await d.writer(p, true);
        assert.equal(w.size, total);
        await w.write(piece);
        total += piece.length;
        assert.equal(w.size, total);
        await w.close();
        assert.equal(w.size, total);
        assert.equal((await d.stat(p)).size, total);
      }
      assert.deepEqual(await d.list('/up/one'), ['/up/one/data'], 'an in-progress file is listed');
      const w = await d.writer(p, true);
      await w.commit();
      assert.deepEqual(await d.getContent(p), Buffer.concat(pieces));
    });

    test('a blob larger than the part size, appended in uneven chunks by several writers', async () => {
      const p = '/up/big/data';
      const blob = randomBytes(2 * MIN_CHUNK_SIZE + 777_777);
      const cuts = [0, 1_000_000, MIN_CHUNK_SIZE + 3, MIN_CHUNK_SIZE + 4, 2 * MIN_CHUNK_SIZE + 100_000, blob.length];
      for (let i = 0; i + 1 < cuts.length; i++) {
        const w = await d.writer(p, true);
        // socket-sized writes, as the registry does them
        for (let off = cuts[i]!; off < cuts[i + 1]!; off += 65_536) await w.write(blob.subarray(off, Math.min(off + 65_536, cuts[i + 1]!)));
        if (i + 2 === cuts.length) await w.commit();
        else await w.close();
        assert.equal(w.size, cuts[i + 1]);
      }
      assert.equal((await d.stat(p)).size, blob.length);
      assert.equal(sha(await readAll(await d.reader(p))), sha(blob));
      const mid = MIN_CHUNK_SIZE - 10;
      assert.deepEqual(await readAll(await d.reader(p, mid, mid + 19)), blob.subarray(mid, mid + 20), 'range across a part boundary');
    });

    test('commit without writes leaves an empty file; append-commit of a finished file keeps it', async () => {
      const w = await d.writer('/up/empty/data', true);
      await w.commit();
      assert.equal((await d.stat('/up/empty/data')).size, 0);
      await d.putContent('/up/done/data', 'finished');
      const again = await d.writer('/up/done/data', true);
      assert.equal(again.size, 8);
      await again.commit();
      assert.equal((await d.getContent('/up/done/data')).toString(), 'finished');
      const more = await d.writer('/up/done/data', true);
      await more.write(Buffer.from('+more'));
      await more.close();
      assert.equal((await d.stat('/up/done/data')).size, 13);
      const fin = await d.writer('/up/done/data', true);
      await fin.commit();
      assert.equal((await d.getContent('/up/done/data')).toString(), 'finished+more');
    });

    test('a non-append writer truncates', async () => {
      await d.putContent('/up/trunc', 'old content');
      const w = await d.writer('/up/trunc', false);
      assert.equal(w.size, 0);
      await w.write(Buffer.from('new'));
      await w.commit();
      assert.equal((await d.getContent('/up/trunc')).toString(), 'new');
    });

    test('cancel removes the file, including data written by earlier writers', async () => {
      const w1 = await d.writer('/up/cancel/data', true);
      await w1.write(randomBytes(MIN_CHUNK_SIZE + 10));
      await w1.close();
      const w2 = await d.writer('/up/cancel/data', true);
      await w2.write(Buffer.from('x'));
      await w2.cancel();
      await assert.rejects(d.stat('/up/cancel/data'), PathNotFoundError);
      assert.deepEqual(await d.list('/up/cancel').catch(() => []), []);
    });

    test('move replaces the destination and removes the source', async () => {
      await d.putContent('/mv/src', 'payload');
      await d.putContent('/mv/dst/data', 'old');
      await d.move('/mv/src', '/mv/dst/data');
      assert.equal((await d.getContent('/mv/dst/data')).toString(), 'payload');
      await assert.rejects(d.stat('/mv/src'), PathNotFoundError);
      await d.move('/mv/dst/data', '/mv/new/dir/data');
      assert.equal((await d.getContent('/mv/new/dir/data')).toString(), 'payload');
    });

    test('delete is recursive, spares siblings that share a name prefix, and ignores missing paths', async () => {
      for (const f of ['/del/a/1', '/del/a/b/2', '/del/a/b/c/3', '/del/ab/4', '/del/a-z']) await d.putContent(f, 'x');
      const w = await d.writer('/del/a/inprogress', true);
      await w.write(randomBytes(MIN_CHUNK_SIZE + 1));
      await w.close();
      await d.delete('/del/a');
      await assert.rejects(d.stat('/del/a'), PathNotFoundError);
      await assert.rejects(d.stat('/del/a/inprogress'), PathNotFoundError);
      assert.deepEqual(await d.list('/del'), ['/del/a-z', '/del/ab']);
      await d.delete('/del/never/existed');
      await d.delete('/del/ab/4');
      await assert.rejects(d.stat('/del/ab/4'), PathNotFoundError);
    });

    test('deleteEmptyDir, where the driver has it, removes only an empty directory', async () => {
      if (!d.deleteEmptyDir) return; // an object store has no directories to remove
      await d.putContent('/ede/full/link', 'x');
      await d.putContent('/ede/empty/gone', 'x');
      await d.delete('/ede/empty/gone');
      await d.deleteEmptyDir('/ede/full');
      assert.equal((await d.getContent('/ede/full/link')).toString(), 'x');
      await d.deleteEmptyDir('/ede/empty');
      assert.deepEqual(await d.list('/ede'), ['/ede/full']);
      await d.deleteEmptyDir('/ede/never/existed');
    });

    test('walk reports every file and directory, parents first, and honours skip', async () => {
      const files = ['/wk/r/a/_layers/l1', '/wk/r/a/_layers/l2', '/wk/r/a/_manifests/m', '/wk/r/b/c/_manifests/m', '/wk/r/b/c/_uploads/u/data', '/wk/r/z'];
      for (const f of files) await d.putContent(f, f);
      const seen: FileInfo[] = [];
      await d.walk('/wk/r', (info) => { seen.push(info); });
      const byPath = new Map(seen.map((i) => [i.path, i]));
      assert.equal(byPath.size, seen.length, 'each path once');
      const dirs = ['/wk/r/a', '/wk/r/a/_layers', '/wk/r/a/_manifests', '/wk/r/b', '/wk/r/b/c', '/wk/r/b/c/_manifests', '/wk/r/b/c/_uploads', '/wk/r/b/c/_uploads/u'];
      assert.deepEqual([...byPath.keys()].sort(), [...dirs, ...files].sort());
      for (const f of files) assert.deepEqual([byPath.get(f)!.isDir, byPath.get(f)!.size], [false, f.length]);
      for (const dir of dirs) assert.equal(byPath.get(dir)!.isDir, true);
      const order = seen.map((i) => i.path);
      for (const [i, p] of order.entries()) {
        const parent = p.slice(0, p.lastIndexOf('/'));
        if (parent !== '/wk/r') assert.ok(order.indexOf(parent) < i, `${parent} before ${p}`);
      }
      // what RegistryStorage.repositories() does: skip everything under "_" directories
      const visited: string[] = [];
      await d.walk('/wk/r', (info) => {
        visited.push(info.path);
        return info.path.slice(info.path.lastIndexOf('/') + 1).startsWith('_') ? 'skip' : undefined;
      });
      assert.deepEqual(visited.sort(), ['/wk/r/a', '/wk/r/a/_layers', '/wk/r/a/_manifests', '/wk/r/b', '/wk/r/b/c', '/wk/r/b/c/_manifests', '/wk/r/b/c/_uploads', '/wk/r/z']);
      const none: string[] = [];
      await d.walk('/wk/missing', (info) => { none.push(info.path); });
      assert.deepEqual(none, []);
    });

    const ops: { op: string; run: (x: StorageDriver, p: string) => Promise<unknown> }[] = [
      { op: 'getContent', run: (x, p) => x.getContent(p) },
      { op: 'putContent', run: (x, p) => x.putContent(p, 'x') },
      { op: 'reader', run: (x, p) => x.reader(p) },
      { op: 'writer', run: (x, p) => x.writer(p, true) },
      { op: 'stat', run: (x, p) => x.stat(p) },
      { op: 'list', run: (x, p) => x.list(p) },
      { op: 'move (source)', run: (x, p) => x.move(p, '/inv/ok') },
      { op: 'move (destination)', run: (x, p) => x.move('/inv/ok', p) },
      { op: 'delete', run: (x, p) => x.delete(p) },
      { op: 'walk', run: (x, p) => x.walk(p, () => {}) },
    ];
    test('the path check keeps every optional capability the driver has, and adds none', async () => {
    const inner = await make();
    const checked = checkedDriver(inner);
    for (const m of ['checkReady', 'lockFile', 'touch', 'deleteEmptyDir', 'sender'] as const) {
      assert.equal(typeof checked[m], typeof inner[m], `${m} is forwarded exactly when the driver has it`);
    }
  });

  test('invalid paths are refused before the driver sees them, by every operation', async () => {
      await d.putContent('/inv/ok', 'kept');
      for (const o of ops) {
        for (const p of INVALID_PATHS) {
          // stat, list and walk take the root itself
          if (p === '/' && ['stat', 'list', 'walk'].includes(o.op)) continue;
          await assert.rejects(o.run(d, p), InvalidPathError, `${o.op}(${JSON.stringify(p)})`);
        }
      }
      assert.equal((await d.getContent('/inv/ok')).toString(), 'kept');
    });

    test('eight parallel writers, interleaved, each get exactly their own bytes', async () => {
      const blobs = Array.from({ length: 8 }, () => [randomBytes(70_000), randomBytes(1), randomBytes(300_000)]);
      const writers = await Promise.all(blobs.map((_, i) => d.writer(`/par/w${i}/data`, false)));
      for (let part = 0; part < 3; part++) await Promise.all(writers.map((w, i) => w.write(blobs[i]![part]!)));
      await Promise.all(writers.map((w) => w.commit()));
      for (const [i, parts] of blobs.entries()) {
        assert.equal(sha(await readAll(await d.reader(`/par/w${i}/data`))), sha(Buffer.concat(parts)), `writer ${i}`);
      }
      // Racing whole-object replaces of one path are not checked here: s3rver, the S3 server this
      // suite runs on, writes an object in place and can tear under concurrent PUTs of one key
      // (real S3 and RGW replace atomically).
    });
  });
}
