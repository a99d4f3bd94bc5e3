// sweepOrphans: dirs of dead owners go, live ones stay.
// clearOwnedDir: what a step's scratch dir holds goes (deep trees, files, symlinks, never what a
// link points to), the owner record and the kept entries stay.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp, existsSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { clearOwnedDir, createOwnedDir, sweepOrphans } from '../../src/runtime/orphans.js';

test('clearOwnedDir removes all but the owner record and the kept entries, and follows no symlink', async () => {
  const base = mkdtempSync(path.join(os.tmpdir(), 'drydock-clear-owned-'));
  try {
    const dir = path.join(base, 'step');
    const outside = path.join(base, 'outside');
    await fsp.mkdir(path.join(outside, 'sub'), { recursive: true });
    await fsp.writeFile(path.join(outside, 'sub/keep-me'), 'host');
    await createOwnedDir(dir);
    // The layout a RUN leaves after its unmount: bundle, host files, the overlay's work dir.
    await fsp.mkdir(path.join(dir, 'work/work/incompat/volatile'), { recursive: true });
    await fsp.writeFile(path.join(dir, 'work/work/incompat/volatile/dirty'), '');
    await fsp.mkdir(path.join(dir, 'bundle'));
    await fsp.writeFile(path.join(dir, 'bundle/config.json'), '{}');
    await fsp.mkdir(path.join(dir, 'merged'));
    await fsp.mkdir(path.join(dir, 'upper/etc'), { recursive: true });
    await fsp.writeFile(path.join(dir, 'upper/etc/f'), 'layer');
    await fsp.mkdir(path.join(dir, 'bind-1/empty-dir'), { recursive: true });
    await fsp.symlink(outside, path.join(dir, 'bind-1/to-outside'));
    await fsp.symlink(path.join(outside, 'sub'), path.join(dir, 'link-at-top'));
    await fsp.writeFile(path.join(dir, 'secret-1'), 's');

    await clearOwnedDir(dir, ['upper']);

    assert.deepEqual(readdirSync(dir).sort(), ['owner.json', 'upper']);
    assert.equal(readFileSync(path.join(dir, 'upper/etc/f'), 'utf8'), 'layer');
    assert.equal(readFileSync(path.join(outside, 'sub/keep-me'), 'utf8'), 'host', 'what the links named is untouched');
    await clearOwnedDir(path.join(base, 'missing'));
    assert.ok(!existsSync(path.join(base, 'missing')));
  } finally {
    await fsp.rm(base, { recursive: true, force: true });
  }
});

// A process killed between createOwnedTempDir's mkdtemp and its owner record leaves a dir with
// no record: the pid in the name decides, for every kind of owned temp dir.
const unrecorded: { name: string; swept: boolean; why: string }[] = [
  { name: `step-${2 ** 22 + 7}-AbC123`, swept: true, why: 'a build step of a dead pid' },
  { name: `kernel-${2 ** 22 + 7}-xYz789`, swept: true, why: "os upgrade's kernel search of a dead pid" },
  { name: `step-${process.pid}-AbC123`, swept: false, why: 'a live pid keeps it' },
  { name: `kernel-${process.pid}-xYz789`, swept: false, why: 'a live pid keeps it' },
  { name: 'notes', swept: false, why: 'no pid in the name' },
];

test('sweepOrphans: an owned temp dir killed before its owner record goes when the pid in its name is dead', async () => {
  const parent = mkdtempSync(path.join(os.tmpdir(), 'drydock-sweep-unrecorded-'));
  try {
    for (const c of unrecorded) await fsp.mkdir(path.join(parent, c.name, 'inside'), { recursive: true });
    await sweepOrphans(parent);
    for (const c of unrecorded) assert.equal(existsSync(path.join(parent, c.name)), !c.swept, `${c.name}: ${c.why}`);
  } finally {
    await fsp.rm(parent, { recursive: true, force: true });
  }
});
