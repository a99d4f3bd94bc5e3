// Variable substitution cases, with the results Docker's shell lexer gives.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Lexer } from '../../src/dockerfile/index.js';

const env = new Map([['A', 'apple'], ['EMPTY', ''], ['SP', 'x y'], ['PATHV', '/usr/local/bin:/usr/bin'], ['FILE', 'archive.tar.gz'], ['STARS', 'a**'], ['PAT', 'a*b*'], ['Q', 'what?']]);

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
  // Special parameters are never set in a Dockerfile (BuildKit's isSpecialParam).
  ['$@', ''], ['$*', ''], ['$#', ''], ['$?', ''], ['$-', ''], ['$$', ''], ['$!', ''], ['$0', ''], ['$1', ''],
  ['a$@b$#c', 'abc'], ['${@}', ''], ['${*}', ''], ['${#}', ''], ['${?}', ''], ['${-}', ''], ['${$}', ''], ['${!}', ''],
  ['${#:-dflt}', 'dflt'], ['${#A}', /unsupported modifier \(A\) in substitution/],
  // An escape at the end of a word is dropped, as in BuildKit's lexer.
  ['hello\\', 'hello'], ['hello\\\\', 'hello\\'],
  // Escaped glob characters in patterns are literal.
  ['${STARS%\\*}', 'a*'], ['${STARS%%*}', ''], ['${STARS#a\\*}', '*'], ['${STARS##*\\*}', ''],
  ['${PAT/\\*/x}', 'axb*'], ['${PAT//\\*/x}', 'axbx'], ['${PAT//*/x}', 'x'], ['${Q%\\?}', 'what'], ['${Q%?}', 'what'],
  ['${PATHV/\\/usr/X}', 'X/local/bin:/usr/bin'], ['${FILE%.*}', 'archive.tar'], ['${FILE%\\q}', /invalid escape '\\q'/],
  ['${EMPTY:?}', /EMPTY: is not allowed to be empty/], ['${UNSET?}', /UNSET: is not allowed to be unset/],
  ['${A:#x}', /unsupported modifier \(:#\) in substitution/], ['${A', /missing '}'/], ['${A:-x', /missing '}'/],
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
