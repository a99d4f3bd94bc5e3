// Dockerfile syntax → AST with positions. This is the BuildKit split: the parser knows lines,
// directives, continuations, heredocs, flags and JSON-vs-shell form, but nothing about what an
// instruction means; src/builder turns the AST into stages and a build graph.
//
// We evaluated `dockerfile-ast` (rcjsuen, used by VS Code): it is an editor AST — heredoc bodies
// come back as ordinary whitespace-split arguments and exec form is not decoded — so the build
// semantics would have to be re-derived from its text anyway. The grammar below follows
// moby/buildkit's frontend/dockerfile/parser and is tested against a table of tricky cases.
import { DockerfileError, type Position } from './errors.js';

export interface Flag {
  name: string;
  /** undefined for a bare `--link`. */
  value?: string;
  position: Position;
}

export interface Heredoc {
  name: string;
  /** Body with a trailing newline, like BuildKit. */
  content: string;
  /** False when the delimiter is quoted (`<<'EOF'`): no variable expansion in the body. */
  expand: boolean;
  /** `<<-EOF`: leading tabs stripped from body lines. */
  chomp: boolean;
}

export interface Instruction {
  /** Upper-case keyword ("RUN"). */
  keyword: string;
  /** The logical line as written (continuations joined), for history and messages. */
  original: string;
  flags: Flag[];
  /** Everything after the flags, raw (quotes kept, no expansion). */
  args: string;
  /** Exec form (`["a","b"]`), when the arguments are a JSON array of strings. */
  json?: string[];
  heredocs: Heredoc[];
  start: Position;
  /** Last line of the instruction, including heredoc bodies. */
  endLine: number;
  /** Column where `args` begins, for argument errors. */
  argsPosition: Position;
}

export interface Dockerfile {
  file: string;
  directives: Record<string, string>;
  escape: string;
  instructions: Instruction[];
}

export const KEYWORDS = new Set([
  'ADD', 'ARG', 'CMD', 'COPY', 'ENTRYPOINT', 'ENV', 'EXPOSE', 'FROM', 'HEALTHCHECK', 'LABEL',
  'MAINTAINER', 'ONBUILD', 'RUN', 'SHELL', 'STOPSIGNAL', 'USER', 'VOLUME', 'WORKDIR',
]);
const HEREDOC_KEYWORDS = new Set(['ADD', 'COPY', 'RUN']);
/** Instructions whose arguments may be a JSON array (exec form). */
const JSON_KEYWORDS = new Set(['ADD', 'COPY', 'CMD', 'ENTRYPOINT', 'RUN', 'SHELL', 'VOLUME']);
const KNOWN_DIRECTIVES = new Set(['syntax', 'escape', 'check']);
const DIRECTIVE = /^#[ \t]*([a-zA-Z][a-zA-Z0-9]*)[ \t]*=[ \t]*(.+?)[ \t]*$/;

export interface ParseOptions {
  file?: string;
}

export function parseDockerfile(text: string, opts: ParseOptions = {}): Dockerfile {
  const file = opts.file ?? 'Dockerfile';
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);
  const directives: Record<string, string> = {};
  for (let i = 0; i < lines.length; i++) {
    const m = DIRECTIVE.exec(lines[i]!);
    if (!m) break;
    const name = m[1]!.toLowerCase();
    if (!KNOWN_DIRECTIVES.has(name)) break;
    if (name in directives) throw new DockerfileError(file, { line: i + 1, column: 1 }, `only one ${name} parser directive can be used`);
    directives[name] = m[2]!;
  }
  const escape = directives.escape ?? '\\';
  if (escape !== '\\' && escape !== '`') {
    throw new DockerfileError(file, { line: 1, column: 1 }, `invalid escape token '${escape}' does not match ${'`'} or \\`);
  }
  const continuation = new RegExp(`${escape === '\\' ? '\\\\' : '`'}[ \\t]*$`);
  const instructions: Instruction[] = [];
  let i = 0;
  while (i < lines.length) {
    const raw = lines[i]!;
    const trimmed = raw.replace(/^[ \t]+/, '');
    if (trimmed === '' || trimmed.startsWith('#')) { i++; continue; }
    const start = { line: i + 1, column: raw.length - trimmed.length + 1 };
    let logical = trimmed;
    let done = !continuation.test(logical);
    if (!done) logical = logical.replace(continuation, '');
    while (!done && i + 1 < lines.length) {
      i++;
      const next = lines[i]!;
      const nextTrim = next.replace(/^[ \t]+/, '');
      if (nextTrim.startsWith('#')) continue; // comments inside a continuation are dropped
      if (nextTrim === '') continue; // empty continuation lines are tolerated, like Docker
      done = !continuation.test(next);
      logical += done ? next : next.replace(continuation, '');
    }
    i++;
    const inst = parseLine(logical, file, start, escape);
    if (HEREDOC_KEYWORDS.has(inst.keyword)) {
      for (const h of findHeredocs(inst.args)) {
        const body: string[] = [];
        let closed = false;
        while (i < lines.length) {
          let line = lines[i]!;
          i++;
          if (h.chomp) line = line.replace(/^\t+/, '');
          if (line === h.name) { closed = true; break; }
          body.push(line);
        }
        if (!closed) throw new DockerfileError(file, start, `unterminated heredoc: no line "${h.name}" closes <<${h.chomp ? '-' : ''}${h.name}`);
        inst.heredocs.push({ ...h, content: body.length ? body.join('\n') + '\n' : '' });
      }
    }
    inst.endLine = i;
    instructions.push(inst);
  }
  return { file, directives, escape, instructions };
}

/** Parses one logical line (also used for the instruction inside ONBUILD). */
export function parseLine(logical: string, file: string, start: Position, escape = '\\'): Instruction {
  const m = /^(\S+)/.exec(logical)!;
  const word = m[1]!;
  const keyword = word.toUpperCase();
  if (!KEYWORDS.has(keyword)) {
    throw new DockerfileError(file, start, `unknown instruction: ${word}${suggest(keyword)}`);
  }
  let pos = word.length;
  const flags: Flag[] = [];
  for (;;) {
    while (pos < logical.length && /[ \t]/.test(logical[pos]!)) pos++;
    if (!logical.startsWith('--', pos)) break;
    const tokenStart = pos;
    const token = readToken(logical, pos, escape);
    pos = token.end;
    const text = token.text.slice(2);
    if (text === '') { break; } // a bare "--" ends flags
    const eq = text.indexOf('=');
    const name = eq < 0 ? text : text.slice(0, eq);
    if (!/^[a-zA-Z][a-zA-Z0-9-]*$/.test(name)) {
      throw new DockerfileError(file, { line: start.line, column: start.column + tokenStart }, `invalid flag "${token.text}"`);
    }
    flags.push({ name, value: eq < 0 ? undefined : unquote(text.slice(eq + 1)), position: { line: start.line, column: start.column + tokenStart } });
  }
  const args = logical.slice(pos).replace(/[ \t]+$/, '');
  const inst: Instruction = {
    keyword, original: logical.replace(/[ \t]+$/, ''), flags, args, heredocs: [], start, endLine: start.line,
    argsPosition: { line: start.line, column: start.column + pos },
  };
  if (JSON_KEYWORDS.has(keyword) && args.startsWith('[')) {
    const json = parseJsonArray(args);
    if (json) inst.json = json;
  }
  return inst;
}

function parseJsonArray(text: string): string[] | undefined {
  try {
    const v = JSON.parse(text) as unknown;
    if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v as string[];
  } catch { /* not JSON: shell form, like Docker */ }
  return undefined;
}

/** Reads one whitespace-delimited token, keeping quoted whitespace inside it. */
function readToken(s: string, pos: number, escape: string): { text: string; end: number } {
  let quote = '';
  let i = pos;
  for (; i < s.length; i++) {
    const c = s[i]!;
    if (c === escape && i + 1 < s.length) { i++; continue; }
    if (quote) { if (c === quote) quote = ''; continue; }
    if (c === '"' || c === "'") { quote = c; continue; }
    if (c === ' ' || c === '\t') break;
  }
  return { text: s.slice(pos, i), end: i };
}

function unquote(v: string): string {
  if (v.length >= 2 && (v[0] === '"' || v[0] === "'") && v[v.length - 1] === v[0]) return v.slice(1, -1);
  return v;
}

/** Heredoc openers among the words of an instruction's arguments, outside quotes. */
export function findHeredocs(args: string): Omit<Heredoc, 'content'>[] {
  const out: Omit<Heredoc, 'content'>[] = [];
  let quote = '';
  for (let i = 0; i < args.length; i++) {
    const c = args[i]!;
    if (quote) { if (c === quote) quote = ''; continue; }
    if (c === '"' || c === "'") { quote = c; continue; }
    if (c !== '<' || args[i + 1] !== '<' || args[i + 2] === '<' || (i > 0 && args[i - 1] === '<')) continue;
    const m = /^<<(-?)(?:"([^"\s]+)"|'([^'\s]+)'|([A-Za-z0-9_][A-Za-z0-9_.-]*))/.exec(args.slice(i));
    if (!m) continue;
    const quoted = m[2] ?? m[3];
    out.push({ name: quoted ?? m[4]!, chomp: m[1] === '-', expand: quoted === undefined });
    i += m[0].length - 1;
  }
  return out;
}

function suggest(keyword: string): string {
  let best = '';
  let bestDist = 3;
  for (const k of KEYWORDS) {
    const d = levenshtein(k, keyword);
    if (d < bestDist) { best = k; bestDist = d; }
  }
  return best ? ` (did you mean ${best}?)` : '';
}

function levenshtein(a: string, b: string): number {
  const dp = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = dp[0]!;
    dp[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = dp[j]!;
      dp[j] = Math.min(dp[j]! + 1, dp[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return dp[b.length]!;
}
