// LayerEntryRules on its own: the model of the tree a layer builds, without a filesystem.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LayerEntryRules, type EntryHeader } from '../../src/layer/index.js';

const h = (name: string, type = 'file', linkname?: string) => ({ name, type, linkname, size: 0, mode: 0o644 }) as unknown as EntryHeader;

test('a hardlink takes its target\'s kind: entries beneath a hardlinked symlink are refused, beneath a hardlinked file too', () => {
  const rules = new LayerEntryRules('none');
  rules.check(h('s', 'symlink', '/etc'));
  rules.check(h('f'));
  rules.check(h('ls', 'link', 's'));
  rules.check(h('lf', 'link', 'f'));
  assert.throws(() => rules.check(h('ls/x')), /entry "ls\/x": parent "ls" is a symlink/);
  assert.throws(() => rules.check(h('lf/x')), /entry "lf\/x": parent "lf" is not a directory/);
});

test('replacing a symlink or whiting it out lifts the refusal; lower layers are unknown to extraction only', () => {
  const rules = new LayerEntryRules('none');
  rules.check(h('a', 'symlink', '/'));
  rules.check(h('a/', 'directory'));
  rules.check(h('a/x'));
  rules.check(h('b', 'symlink', '/'));
  rules.check(h('.wh.b'));
  rules.check(h('b/y'));
  assert.throws(() => rules.check(h('l', 'link', 'lower-file')), /hardlink target "lower-file" does not exist in the layer stack/);
  assert.doesNotThrow(() => new LayerEntryRules('unknown').check(h('l', 'link', 'lower-file')));
});

test('replacing many directories costs time per entry, not per path seen (bounded)', () => {
  const rules = new LayerEntryRules('none');
  const n = 50_000;
  const t0 = Date.now();
  for (let i = 0; i < n; i++) { rules.check(h(`d${i}/`, 'directory')); rules.check(h(`d${i}/child`)); }
  for (let i = 0; i < n; i++) rules.check(h(`d${i}`));
  for (let i = 0; i < n; i++) rules.check(h(`.wh.d${i}`));
  assert.ok(Date.now() - t0 < 10_000, `${Date.now() - t0} ms for ${4 * n} entries`);
});
