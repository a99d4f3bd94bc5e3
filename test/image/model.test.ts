// The image model: digests and references (table-driven), media types. Config changes
// (--change) are tested beside the builder's dispatch: test/builder/dispatch.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  parseDigest, digestOf, shortId, isDigest, parseReference, formatReference, familiarString, parsePlatform,
  layerCompression,
} from '../../src/image/index.js';

const HEX64 = 'a'.repeat(64);
const HEX128 = 'b'.repeat(128);

const digests: { input: string; ok?: string; error?: RegExp }[] = [
  { input: `sha256:${HEX64}`, ok: `sha256:${HEX64}` },
  { input: `sha512:${HEX128}`, ok: `sha512:${HEX128}` },
  { input: `sha256:${'a'.repeat(63)}`, error: /sha256 needs 64 hex characters, got 63/ },
  { input: `sha256:${'a'.repeat(65)}`, error: /sha256 needs 64 hex characters, got 65/ },
  { input: `sha512:${HEX64}`, error: /sha512 needs 128 hex characters, got 64/ },
  { input: `sha256:${'A'.repeat(64)}`, error: /hex must be lowercase/ },
  { input: `md5:${'a'.repeat(32)}`, error: /unsupported digest algorithm "md5"/ },
  { input: HEX64, error: /expected algorithm:hex/ },
  { input: 'sha256:../../etc/passwd', error: /expected algorithm:hex/ },
  { input: '', error: /empty/ },
];
for (const c of digests) {
  test(`parseDigest(${JSON.stringify(c.input.slice(0, 30))}${c.input.length > 30 ? '…' : ''})`, () => {
    if (c.ok) assert.equal(parseDigest(c.input).value, c.ok);
    else assert.throws(() => parseDigest(c.input), c.error!);
    assert.equal(isDigest(c.input), Boolean(c.ok));
  });
}

test('digestOf and shortId', () => {
  assert.equal(digestOf(''), 'sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
  assert.equal(shortId('sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'), 'e3b0c44298fc');
});

const D = `sha256:${HEX64}`;
const refs: { input: string; full?: string; familiar?: string; error?: RegExp }[] = [
  { input: 'busybox', full: 'docker.io/library/busybox:latest', familiar: 'busybox:latest' },
  { input: 'busybox:1.36', full: 'docker.io/library/busybox:1.36', familiar: 'busybox:1.36' },
  { input: 'library/busybox', full: 'docker.io/library/busybox:latest', familiar: 'busybox:latest' },
  { input: 'docker.io/busybox', full: 'docker.io/library/busybox:latest' },
  { input: 'index.docker.io/library/busybox', full: 'docker.io/library/busybox:latest' },
  { input: 'user/app', full: 'docker.io/user/app:latest', familiar: 'user/app:latest' },
  { input: 'docker.io/library/a/b', full: 'docker.io/library/a/b:latest', familiar: 'library/a/b:latest' },
  { input: `localhost:5000/a/b@${D}`, full: `localhost:5000/a/b@${D}`, familiar: `localhost:5000/a/b@${D}` },
  { input: `example.com/app:v1@${D}`, full: `example.com/app:v1@${D}` },
  { input: 'localhost/app', full: 'localhost/app:latest' },
  { input: 'localhost:5000', full: 'docker.io/library/localhost:5000' },
  { input: '[::1]:5000/app', full: '[::1]:5000/app:latest' },
  { input: 'a__b-c.d/e', error: /invalid registry "a__b-c.d"/ },
  { input: 'a__b-c/e.f', full: 'docker.io/a__b-c/e.f:latest' },
  { input: 'Busybox', error: /must be lowercase/ },
  { input: 'a//b', error: /"" is not a valid path component/ },
  { input: 'a___b', error: /is not a valid path component/ },
  { input: '-a', error: /is not a valid path component/ },
  { input: 'a:b:c', error: /missing repository after registry/ },
  { input: 'busybox@sha256:abc', error: /sha256 needs 64 hex characters, got 3/ },
  { input: `busybox:${'t'.repeat(129)}`, error: /invalid tag/ },
  { input: 'busy box', error: /contains whitespace/ },
  { input: '', error: /empty/ },
];
for (const c of refs) {
  test(`parseReference(${JSON.stringify(c.input.slice(0, 40))})`, () => {
    if (c.error) { assert.throws(() => parseReference(c.input), c.error); return; }
    const ref = parseReference(c.input);
    assert.equal(formatReference(ref), c.full);
    if (c.familiar) assert.equal(familiarString(ref), c.familiar);
  });
}

test('parsePlatform and layerCompression', () => {
  assert.deepEqual(parsePlatform('linux/arm64/v8'), { os: 'linux', architecture: 'arm64', variant: 'v8' });
  assert.throws(() => parsePlatform('linux'), /expected os\/arch/);
  const cases: [string, string][] = [
    ['application/vnd.oci.image.layer.v1.tar+gzip', 'gzip'], ['application/vnd.oci.image.layer.v1.tar+zstd', 'zstd'],
    ['application/vnd.oci.image.layer.v1.tar', 'none'], ['application/vnd.docker.image.rootfs.diff.tar.gzip', 'gzip'],
  ];
  for (const [mt, c] of cases) assert.equal(layerCompression(mt), c, mt);
});
