// Variable substitution cases, with the results Docker's shell lexer gives.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Lexer } from '../../src/dockerfile/index.js';

const env = new Map([['A', 'apple'], ['EMPTY', ''], ['SP', 'x y'], ['PATHV', '/usr/local/bin:/usr/bin'], ['FILE', 'archive.tar.gz']]);

const words: [string, string | RegExp, string?][] = [
  ['$A', 'apple'],
  ['${A}', 'apple'],
  ['pre${A}post', 'preapplepost'],
  ['$A-x', 'apple-x'],
  ['$UNSET', ''],
  ['${UNSET:-def}', 'def'],
  ['${EMPTY:-def}', 'def'],
  ['${EMPTY-def}', ''],
  ['${A:-def}', 'apple'],
  ['${A:+alt}', 'alt'],
  ['${EMPTY:+alt}', ''],
  ['${EMPTY+alt}', 'alt'],
  ['${UNSET:-${A}}', 'apple'],
  ["'$A'", '$A'],
  ['"$A"', 'apple'],
  ['"a \\"q\\" b"', 'a "q" b'],
  ['"\\n"', '\\n'],
  ['\\$A', '$A'],
  ['a\\ b', 'a b'],
  ['$', '$'],
  ['${FILE%.gz}', 'archive.tar'],
  ['${FILE%%.*}', 'archive'],
  ['${FILE#*.}', 'tar.gz'],
  ['${FILE##*.}', 'gz'],
  ['${PATHV/usr/opt}', '/opt/local/bin:/usr/bin'],
  ['${PATHV//usr/opt}', '/opt/local/bin:/opt/bin'],
  ['${UNSET:?must be set}', /UNSET: must be set/],
  ['${A', /missing '}'/],
  ["'open", /single-quote/],
  ['${}', /bad substitution/],
];

for (const [input, want, escape] of words) {
  test(`processWord ${JSON.stringify(input)}`, () => {
    const lex = new Lexer(escape ?? '\\');
    if (want instanceof RegExp) assert.throws(() => lex.processWord(input, env), want);
    else assert.equal(lex.processWord(input, env), want);
  });
}

test('backtick escape leaves backslashes literal', () => {
  assert.equal(new Lexer('`').processWord('c:\\dir\\$A `$A', env), 'c:\\dir\\apple $A');
});

const split: [string, string[]][] = [
  ['a b  c', ['a', 'b', 'c']],
  ['"a b" c', ['a b', 'c']],
  ['$SP z', ['x', 'y', 'z']],
  ['"$SP" z', ['x y', 'z']],
  ['80/tcp ${UNSET:-443}', ['80/tcp', '443']],
  ['', []],
];
for (const [input, want] of split) {
  test(`processWords ${JSON.stringify(input)}`, () => {
    assert.deepEqual(new Lexer().processWords(input, env), want);
  });
}
