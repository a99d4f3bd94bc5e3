// .dockerignore cases with moby/patternmatcher's answers (the table mirrors its own tests).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PatternMatcher, readIgnoreFile } from '../../src/dockerfile/index.js';

const cases: [string[], string, boolean][] = [
  [['*.go'], 'main.go', true],
  [['*.go'], 'sub/main.go', false],
  [['**/*.go'], 'sub/deep/main.go', true],
  [['**/*.go'], 'main.go', true],
  [['docs'], 'docs/a/b.md', true],
  [['docs/'], 'docs/a.md', true],
  [['/docs'], 'docs/a.md', true],
  [['./docs'], 'docs', true],
  [['docs/../secret'], 'secret', true],
  [['*'], 'anything', true],
  [['*', '!keep'], 'keep', false],
  [['*', '!keep'], 'other', true],
  [['*.md', '!README.md'], 'README.md', false],
  [['*.md', '!README.md', 'README*'], 'README.md', true],
  [['a/**/b'], 'a/b', true],
  [['a/**/b'], 'a/x/y/b', true],
  [['a/**'], 'a/x', true],
  [['a/**'], 'a', false],
  [['dir?'], 'dir1', true],
  [['dir?'], 'dir/1', false],
  [['[a-c].txt'], 'b.txt', true],
  [['[!a].txt'], 'a.txt', false],
  [['node_modules', '!node_modules/keep'], 'node_modules/keep/x.js', false],
  [['node_modules', '!node_modules/keep'], 'node_modules/other/x.js', true],
  [['\\*literal'], '*literal', true],
  [['\\*literal'], 'xliteral', false],
  [['.git'], '.git/config', true],
  [['**'], 'x/y', true],
];

for (const [patterns, file, want] of cases) {
  test(`dockerignore ${JSON.stringify(patterns)} ${file} -> ${want}`, () => {
    assert.equal(new PatternMatcher(patterns).matches(file), want);
  });
}

test('readIgnoreFile: comments, whitespace, cleaning, leading slash, exclusions', () => {
  assert.deepEqual(readIgnoreFile('\uFEFF# comment\n  *.log  \n\n!/keep.log\n/abs/path/\n a/./b/../c\n'), ['*.log', '!keep.log', 'abs/path', 'a/c']);
});

test('illegal exclusion pattern', () => {
  assert.throws(() => new PatternMatcher(['!']), /illegal exclusion pattern/);
});
