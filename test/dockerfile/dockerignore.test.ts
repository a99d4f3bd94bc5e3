// .dockerignore cases with moby/patternmatcher's answers (the table mirrors its own tests).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PatternMatcher, PatternError, readIgnoreFile } from '../../src/dockerfile/index.js';

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
  // Go's filepath.Match negates with "^"; "!" is an ordinary character in a class.
  [['[!a].txt'], 'a.txt', true],
  [['[^a].txt'], 'a.txt', false],
  [['[^a].txt'], 'b.txt', true],
  [['[\\]a]'], ']', true],
  [['[\\]a]'], 'a', true],
  [['[\\]a]'], 'b', false],
  [['[\\-x]'], '-', true],
  [['[\\-x]'], 'x', true],
  [['[\\-x]'], 'w', false],
  [['[a-c]x'], 'bx', true],
  // A pattern matching any parent directory excludes everything below it.
  [['**/node_modules'], 'node_modules/pkg/index.js', true],
  [['**/node_modules'], 'node_modules/pkg', true],
  [['**/node_modules'], 'a/b/node_modules/pkg/x', true],
  [['**/node_modules'], 'node_modules_x/y', false],
  [['**/node_modules', '!**/keep.txt'], 'node_modules/pkg/a.js', true],
  [['**/node_modules', '!**/keep.txt'], 'node_modules/pkg/keep.txt', false],
  [['a/*/c'], 'a/b/c/d/e', true],
  [['**/*.log'], 'logs/2024/x.log', true],
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

// Malformed patterns are errors, as Go's filepath.Match reports them (ErrBadPattern).
for (const bad of ['[]a]', '[-]', '[x-]', '[a-b-c]', '\\', 'dir\\', '[abc', '[', '[^]', '!a[']) {
  test(`dockerignore malformed pattern ${JSON.stringify(bad)}`, () => {
    assert.throws(() => new PatternMatcher([bad]), (e: Error) => e instanceof PatternError && /^syntax error in pattern/.test(e.message));
  });
}
