// Table of tricky Dockerfile syntax cases, checked against what Docker/BuildKit produce.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseDockerfile, splitStages, DockerfileError } from '../../src/dockerfile/index.js';

interface Case {
  name: string;
  src: string;
  /** Expected [keyword, args] per instruction. */
  want?: [string, string][];
  json?: (string[] | undefined)[];
  heredocs?: { index: number; name: string; content: string; expand: boolean }[];
  error?: RegExp;
}

const cases: Case[] = [
  { name: 'comments and blank lines', src: '# hello\n\nFROM busybox\n  # indented comment\nRUN true\n', want: [['FROM', 'busybox'], ['RUN', 'true']] },
  { name: 'backslash continuation', src: 'FROM busybox\nRUN echo a \\\n  b\n', want: [['FROM', 'busybox'], ['RUN', 'echo a   b']] },
  { name: 'continuation with comment inside', src: 'FROM busybox\nRUN echo a \\\n# not part of it\n  b \\\n\n  c\n', want: [['FROM', 'busybox'], ['RUN', 'echo a   b   c']] },
  { name: 'continuation with trailing spaces after escape', src: 'FROM busybox\nRUN echo a \\   \n b\n', want: [['FROM', 'busybox'], ['RUN', 'echo a  b']] },
  { name: 'escape directive backtick', src: '# escape=`\nFROM busybox\nRUN echo c:\\dir `\n  next\n', want: [['FROM', 'busybox'], ['RUN', 'echo c:\\dir   next']] },
  { name: 'escape directive not at top is a comment', src: 'FROM busybox\n# escape=`\nRUN echo a `\n', want: [['FROM', 'busybox'], ['RUN', 'echo a `']] },
  { name: 'syntax directive', src: '# syntax=docker/dockerfile:1\nFROM busybox\n', want: [['FROM', 'busybox']] },
  { name: 'exec form', src: 'FROM busybox\nCMD ["echo", "a b"]\n', want: [['FROM', 'busybox'], ['CMD', '["echo", "a b"]']], json: [undefined, ['echo', 'a b']] },
  { name: 'invalid JSON falls back to shell form', src: 'FROM busybox\nCMD [echo, hi]\n', want: [['FROM', 'busybox'], ['CMD', '[echo, hi]']], json: [undefined, undefined] },
  { name: 'JSON with non-strings is shell form', src: 'FROM busybox\nENTRYPOINT ["a", 1]\n', json: [undefined, undefined] },
  { name: 'lower-case keywords', src: 'from busybox\nrun true\n', want: [['FROM', 'busybox'], ['RUN', 'true']] },
  { name: 'flags', src: 'FROM --platform=linux/amd64 busybox AS b\nCOPY --from=b --chown=1:2 --link a /b\n', want: [['FROM', 'busybox AS b'], ['COPY', 'a /b']] },
  {
    name: 'heredoc', src: 'FROM busybox\nRUN <<EOF\necho $HOME\nexit 0\nEOF\nCMD true\n',
    want: [['FROM', 'busybox'], ['RUN', '<<EOF'], ['CMD', 'true']], heredocs: [{ index: 1, name: 'EOF', content: 'echo $HOME\nexit 0\n', expand: true }],
  },
  {
    name: 'quoted heredoc, chomp', src: "FROM busybox\nCOPY <<-'EOT' /etc/x\n\tline1\n\t\tline2\n\tEOT\n",
    heredocs: [{ index: 1, name: 'EOT', content: 'line1\nline2\n', expand: false }],
  },
  {
    name: 'two heredocs on one line', src: 'FROM busybox\nRUN cat <<A <<B > /x\na\nA\nb\nB\n',
    heredocs: [{ index: 1, name: 'A', content: 'a\n', expand: true }, { index: 1, name: 'B', content: 'b\n', expand: true }],
  },
  { name: 'quoted << is not a heredoc', src: 'FROM busybox\nRUN echo "<<EOF"\n', want: [['FROM', 'busybox'], ['RUN', 'echo "<<EOF"']], heredocs: [] },
  { name: 'heredoc not recognised in CMD', src: 'FROM busybox\nCMD cat <<EOF\n', want: [['FROM', 'busybox'], ['CMD', 'cat <<EOF']] },
  { name: 'unterminated heredoc', src: 'FROM busybox\nRUN <<EOF\necho\n', error: /Dockerfile:2:1: unterminated heredoc/ },
  { name: 'unknown instruction names position', src: 'FROM busybox\n  RUNN true\n', error: /^Dockerfile:2:3: unknown instruction: RUNN \(did you mean RUN\?\)/ },
  { name: 'invalid escape', src: '# escape=x\nFROM busybox\n', error: /invalid escape token/ },
  { name: 'CRLF line endings', src: 'FROM busybox\r\nRUN a \\\r\n b\r\n', want: [['FROM', 'busybox'], ['RUN', 'a  b']] },
];

for (const c of cases) {
  test(`parser: ${c.name}`, () => {
    if (c.error) {
      assert.throws(() => parseDockerfile(c.src), (e: Error) => e instanceof DockerfileError && c.error!.test(e.message));
      return;
    }
    const df = parseDockerfile(c.src);
    if (c.want) assert.deepEqual(df.instructions.map((i) => [i.keyword, i.args]), c.want);
    if (c.json) assert.deepEqual(df.instructions.map((i) => i.json), c.json);
    if (c.heredocs) {
      const got = df.instructions.flatMap((inst, index) => inst.heredocs.map((h) => ({ index, name: h.name, content: h.content, expand: h.expand })));
      assert.deepEqual(got, c.heredocs);
    }
  });
}

test('parser: flags and positions', () => {
  const df = parseDockerfile('FROM busybox\n\nCOPY --from=b --chown="1:2" --link a /b\n');
  const copy = df.instructions[1]!;
  assert.deepEqual(copy.flags.map((f) => [f.name, f.value]), [['from', 'b'], ['chown', '1:2'], ['link', undefined]]);
  assert.deepEqual(copy.start, { line: 3, column: 1 });
  assert.equal(copy.argsPosition.column, 36);
});

const stageCases: { name: string; src: string; error?: RegExp; stages?: (string | undefined)[]; metaArgs?: number }[] = [
  { name: 'meta args and named stages', src: 'ARG V=1\nFROM busybox:${V} AS Build\nRUN true\nFROM scratch\nCOPY --from=build /a /a\n', stages: ['build', undefined], metaArgs: 1 },
  { name: 'instruction before FROM', src: 'RUN true\nFROM busybox\n', error: /Dockerfile:1:1: no build stage/ },
  { name: 'unknown flag', src: 'FROM busybox\nCOPY --frm=a b c\n', error: /Dockerfile:2:6: unknown flag: --frm/ },
  { name: 'duplicate stage name', src: 'FROM busybox AS a\nFROM busybox AS a\n', error: /duplicate stage name/ },
  { name: 'FROM with two words', src: 'FROM busybox foo\n', error: /FROM requires either one or three/ },
  { name: 'missing arguments', src: 'FROM busybox\nWORKDIR\n', error: /Dockerfile:2:1: WORKDIR requires at least one argument/ },
  { name: 'no FROM', src: 'ARG A\n', error: /no FROM/ },
];
for (const c of stageCases) {
  test(`stages: ${c.name}`, () => {
    if (c.error) {
      assert.throws(() => splitStages(parseDockerfile(c.src)), (e: Error) => c.error!.test(e.message));
      return;
    }
    const s = splitStages(parseDockerfile(c.src));
    assert.deepEqual(s.stages.map((x) => x.name), c.stages);
    assert.equal(s.metaArgs.length, c.metaArgs);
  });
}
