// copyEntries' tree copy into an upper dir (synchronous calls, copy.ts copyOneSync) lets the
// event loop in at least every SYNC_SLICE_MS: other stages' steps, progress and signals do not
// wait for a large tree.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp, statSync } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { copyEntries } from '../../src/builder/copy.js';
import { SourceTree } from '../../src/builder/context.js';
import { tempDir } from '../helpers/env.js';

test('a large tree copied into the upper dir lets the event loop run meanwhile', async () => {
  const ctx = tempDir('drydock-copy-ctx-');
  for (let d = 0; d < 12; d++) {
    await fsp.mkdir(path.join(ctx, 'tree', `d${d}`), { recursive: true });
    for (let f = 0; f < 8; f++) await fsp.writeFile(path.join(ctx, 'tree', `d${d}`, `f${f}`), randomBytes(512 * 1024));
  }
  // The rootfs is its own upper dir with no lowers: the copy takes the upper-dir path.
  const rootfs = tempDir('drydock-copy-rootfs-');
  const tree = new SourceTree(ctx);
  const entries = await tree.resolve(['tree'], 'COPY');
  let ticks = 0;
  let ticking = true;
  const tick = () => { if (!ticking) return; ticks++; setImmediate(tick); };
  setImmediate(tick);
  const started = performance.now();
  await copyEntries(tree, entries, rootfs, '/out', { uid: 0, gid: 0, instruction: 'COPY', overlay: { upper: rootfs, lowers: [] } });
  const took = performance.now() - started;
  ticking = false;
  assert.equal(statSync(path.join(rootfs, 'out/d11/f7')).size, 512 * 1024);
  // 48 MiB take well over three slices here; a copy that never yielded gives no tick at all.
  if (took >= 30) assert.ok(ticks >= 1, `no turn of the event loop in a ${took.toFixed(0)} ms copy`);
});
