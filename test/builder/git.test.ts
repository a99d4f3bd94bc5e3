// Which ADD sources are git repositories, and how `#ref:subdir` splits (BuildKit's isGitURL and
// fragment rules). The checkout itself is tested through a build in instructions.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseGitSource } from '../../src/builder/git.js';

const cases: [string, ReturnType<typeof parseGitSource> | RegExp][] = [
  ['https://github.com/moby/buildkit.git', { url: 'https://github.com/moby/buildkit.git' }],
  ['https://github.com/moby/buildkit.git#v0.13.0', { url: 'https://github.com/moby/buildkit.git', ref: 'v0.13.0' }],
  ['https://github.com/moby/buildkit.git#master:frontend/dockerfile', { url: 'https://github.com/moby/buildkit.git', ref: 'master', subdir: 'frontend/dockerfile' }],
  ['https://example.com/repo.git#:docs', { url: 'https://example.com/repo.git', subdir: 'docs' }],
  ['git@github.com:moby/buildkit.git#main', { url: 'git@github.com:moby/buildkit.git', ref: 'main' }],
  ['git://127.0.0.1:9418/repo.git', { url: 'git://127.0.0.1:9418/repo.git' }],
  ['ssh://git@example.com/repo.git', { url: 'ssh://git@example.com/repo.git' }],
  ['https://example.com/archive.tar.gz', undefined],
  ['https://example.com/file.git.txt', undefined],
  ['src/dir.git', undefined],
  ['https://example.com/repo.git#main:../escape', /invalid git subdirectory "..\/escape"/],
];
for (const [input, want] of cases) {
  test(`parseGitSource ${input}`, () => {
    if (want instanceof RegExp) assert.throws(() => parseGitSource(input), want);
    else assert.deepEqual(parseGitSource(input), want);
  });
}
