// The parser's cases are data, like BuildKit's parser/testfiles: each folder under
// test/dockerfile/testfiles holds a Dockerfile and either `result` (the dump, see
// src/dockerfile/dump.ts) or `error` (the exact message parsing and stage splitting give).
// DRYDOCK_UPDATE_TESTFILES=1 writes missing `result` files, to be reviewed before committing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { PROJECT_ROOT } from '../helpers/env.js';
import { parseDockerfile, splitStages, dumpDockerfile, DockerfileError } from '../../src/dockerfile/index.js';

const TESTFILES = path.join(PROJECT_ROOT, 'test/dockerfile/testfiles');
const cases = readdirSync(TESTFILES).sort();

test('testfiles: every case has a result or an error', () => {
  assert.ok(cases.length >= 40, `only ${cases.length} cases`);
  for (const c of cases) {
    const dir = path.join(TESTFILES, c);
    const has = ['result', 'error'].filter((f) => existsSync(path.join(dir, f)));
    if (has.length === 0 && process.env.DRYDOCK_UPDATE_TESTFILES) continue;
    assert.equal(has.length, 1, `${c}: needs exactly one of result, error`);
  }
});

for (const c of cases) {
  test(`parser testfile ${c}`, () => {
    const dir = path.join(TESTFILES, c);
    const text = readFileSync(path.join(dir, 'Dockerfile'), 'utf8');
    const errorFile = path.join(dir, 'error');
    if (existsSync(errorFile)) {
      const want = readFileSync(errorFile, 'utf8').trim();
      assert.throws(() => splitStages(parseDockerfile(text)), (e: Error) => {
        assert.ok(e instanceof DockerfileError, `${e}`);
        assert.equal(e.message, want);
        return true;
      });
      return;
    }
    const got = dumpDockerfile(parseDockerfile(text));
    const resultFile = path.join(dir, 'result');
    if (!existsSync(resultFile) && process.env.DRYDOCK_UPDATE_TESTFILES) writeFileSync(resultFile, got);
    assert.equal(got, readFileSync(resultFile, 'utf8'));
  });
}

test('parser: flags and positions', () => {
  const df = parseDockerfile('FROM busybox\n\nCOPY --from=b --chown="1:2" --link a /b\n');
  const copy = df.instructions[1]!;
  assert.deepEqual(copy.flags.map((f) => [f.name, f.value]), [['from', 'b'], ['chown', '1:2'], ['link', undefined]]);
  assert.deepEqual(copy.start, { line: 3, column: 1 });
  assert.equal(copy.argsPosition.column, 36);
});

test('parser: a line of 64 KiB or more is refused with BuildKit\'s message', () => {
  const longest = `FROM busybox\nRUN ${'x'.repeat(65535 - 4)}\n`;
  assert.equal(parseDockerfile(longest).instructions.length, 2);
  const tooLong = `FROM busybox\nRUN ${'x'.repeat(65536 - 4)}\nRUN true\n`;
  assert.throws(() => parseDockerfile(tooLong), (e: Error) => e.message === 'Dockerfile:2:1: dockerfile line greater than max allowed size of 65535');
  // Bytes count, not characters: 21846 three-byte characters are 65538 bytes.
  assert.throws(() => parseDockerfile(`FROM busybox\nLABEL a=${'€'.repeat(21846)}\n`), /max allowed size of 65535/);
});

test('parser: stages and meta args', () => {
  const s = splitStages(parseDockerfile('ARG V=1\nFROM busybox:${V} AS Build\nRUN true\nFROM scratch\nCOPY --from=build /a /a\n'));
  assert.deepEqual(s.stages.map((x) => x.name), ['build', undefined]);
  assert.equal(s.metaArgs.length, 1);
});
