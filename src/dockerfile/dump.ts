// A text dump of the parsed Dockerfile, one s-expression per instruction like BuildKit's
// AST.Dump (`(copy ["--from=b"] "a" "/b")`), so parser cases are data: test/dockerfile/testfiles.
// Shell-form arguments are one string as written; exec form is marked `json` with one string per
// element; heredoc bodies and lint warnings follow on their own lines.
import type { Dockerfile, Instruction } from './parser.js';

const q = (s: string) => JSON.stringify(s);

export function dumpInstruction(inst: Instruction): string {
  let out = `(${inst.keyword.toLowerCase()}`;
  if (inst.flags.length) out += ` [${inst.flags.map((f) => q(`--${f.name}${f.value === undefined ? '' : `=${f.value}`}`)).join(' ')}]`;
  if (inst.json) out += ` json${inst.json.map((a) => ` ${q(a)}`).join('')}`;
  else if (inst.args !== '') out += ` ${q(inst.args)}`;
  out += ')';
  for (const h of inst.heredocs) {
    out += `\n  heredoc ${q(h.name)}${h.expand ? ' expand' : ''}${h.chomp ? ' chomp' : ''} ${q(h.content)}`;
  }
  return out;
}

export function dumpDockerfile(df: Dockerfile): string {
  const lines: string[] = [];
  for (const [k, v] of Object.entries(df.directives)) lines.push(`# ${k}=${v}`);
  for (const inst of df.instructions) lines.push(dumpInstruction(inst));
  for (const w of df.warnings) lines.push(`warning ${w.rule} line ${w.line}: ${w.message}`);
  return lines.join('\n') + '\n';
}
