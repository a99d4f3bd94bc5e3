// Dockerfile syntax → AST with positions. This is the BuildKit split: the parser knows lines,
// directives, continuations, heredocs, flags and JSON-vs-shell form, but nothing about what an
// instruction means; src/builder turns the AST into stages and a build graph.
//
// We evaluated `dockerfile-ast` (rcjsuen, used by VS Code): it is an editor AST — heredoc bodies
// come back as ordinary whitespace-split arguments and exec form is not decoded — so the build
// semantics would have to be re-derived from its text anyway. The grammar below follows
// moby/buildkit's frontend/dockerfile/parser (parser.go, line_parsers.go, split_command.go) and
// is tested by the cases in test/dockerfile/testfiles.
import { DockerfileError, type Position } from './errors.js';
import { Lexer } from './expand.js';

export interface Flag {
  name: string;
  /** undefined for a bare `--link`. */
  value?: string;
  position: Position;
}

export interface Heredoc {
  name: string;
  /** The opener as written (`<<-'EOF'`). */
  word: string;
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
  /** Lint warnings (BuildKit's rule names), in file order. */
  warnings: DockerfileWarning[];
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

/** A BuildKit-style lint warning: rule name, message, 1-based line. */
export interface DockerfileWarning {
  rule: string;
  message: string;
  line: number;
}

/** bufio.Scanner's limit in BuildKit's parser: a line must be shorter than 64 KiB. */
const MAX_LINE_BYTES = 64 * 1024;
const NOT_STRING_ARRAY = 'when using JSON array syntax, arrays must be comprised of strings only';

export function parseDockerfile(text: string, opts: ParseOptions = {}): Dockerfile {
  const file = opts.file ?? 'Dockerfile';
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    // The newline counts towards the limit, as in bufio.Scanner's buffer.
    if (Buffer.byteLength(lines[i]!) + 1 > MAX_LINE_BYTES) {
      throw new DockerfileError(file, { line: i + 1, column: 1 }, `dockerfile line greater than max allowed size of ${MAX_LINE_BYTES - 1}`);
    }
  }
  const directives: Record<string, string> = {};
  for (let i = 0; i < lines.length; i++) {
    const m = DIRECTIVE.exec(lines[i]!);
    if (!m) break;
    const name = m[1]!.toLowerCase();
    if (!KNOWN_DIRECTIVES.has(name)) break;
    if (name in directives) throw new DockerfileError(file, { line: i + 1, column: 1 }, `only one ${name} parser directive can be used`);
    directives[name] = m[2]!;
  }
  if (directives.syntax !== undefined) checkSyntax(file, directives.syntax, lines);
  const escape = directives.escape ?? '\\';
  if (escape !== '\\' && escape !== '`') {
    throw new DockerfileError(file, { line: 1, column: 1 }, `invalid escape token '${escape}' does not match ${'`'} or \\`);
  }
  // The escape character ends a continued line unless it is itself escaped ("a\\" is not
  // continued); alone on a line it continues (BuildKit's lineContinuationRegex).
  const e = escape === '\\' ? '\\\\' : '`';
  const continuation = new RegExp(`([^${e}])${e}[ \\t]*$|^${e}[ \\t]*$`);
  const trimContinuation = (line: string): [string, boolean] =>
    continuation.test(line) ? [line.replace(continuation, '$1'), false] : [line, true];
  const instructions: Instruction[] = [];
  const warnings: DockerfileWarning[] = [];
  let i = 0;
  while (i < lines.length) {
    const raw = lines[i]!;
    const trimmed = raw.replace(/^\s+/, '');
    if (trimmed === '' || trimmed.startsWith('#')) { i++; continue; }
    const start = { line: i + 1, column: raw.length - trimmed.length + 1 };
    let [logical, done] = trimContinuation(trimmed);
    let emptyContinuation = false;
    while (!done && i + 1 < lines.length) {
      i++;
      const next = lines[i]!;
      const nextTrim = next.replace(/^\s+/, '');
      if (nextTrim.startsWith('#')) continue; // comments inside a continuation are dropped
      if (nextTrim === '') { emptyContinuation = true; continue; }
      let part: string;
      [part, done] = trimContinuation(next);
      logical += part;
    }
    i++;
    if (emptyContinuation) warnings.push({ rule: 'NoEmptyContinuation', message: 'Empty continuation line', line: start.line });
    const inst = parseLine(logical, file, start, escape);
    if (HEREDOC_KEYWORDS.has(inst.keyword) && !inst.json && inst.args.includes('<<')) {
      let found: Omit<Heredoc, 'content'>[];
      try { found = heredocsFromArgs(inst.args); } catch (err) { throw new DockerfileError(file, start, (err as Error).message); }
      for (const h of found) {
        const body: string[] = [];
        let closed = false;
        while (i < lines.length) {
          let line = lines[i]!;
          i++;
          if (h.chomp) line = line.replace(/^\t+/, '');
          if (line === h.name) { closed = true; break; }
          body.push(line);
        }
        if (!closed) throw new DockerfileError(file, start, `unterminated heredoc: no line "${h.name}" closes ${h.word}`);
        inst.heredocs.push({ ...h, content: body.length ? body.join('\n') + '\n' : '' });
      }
    }
    inst.endLine = i;
    lint(inst, warnings);
    instructions.push(inst);
  }
  return { file, directives, escape, instructions, warnings };
}

/**
 * `# syntax=` names a frontend image. drydock is its own frontend; it accepts the standard one
 * (docker/dockerfile, any 1.x tag or -labs, with or without docker.io/ and a digest) since its
 * syntax is what drydock implements, and refuses any other (its syntax is unknown).
 */
export const STANDARD_FRONTEND = /^(?:docker\.io\/)?docker\/dockerfile(?:-upstream)?(?::(?:latest|labs|1(?:\.\d+){0,2}(?:-labs)?))?(?:@sha256:[0-9a-f]{64})?$/;

function checkSyntax(file: string, syntax: string, lines: string[]): void {
  if (STANDARD_FRONTEND.test(syntax)) return;
  const line = lines.findIndex((l) => /^#\s*syntax\s*=/i.test(l)) + 1;
  throw new DockerfileError(file, { line: line || 1, column: 1 }, `unsupported frontend "${syntax}": drydock builds with its own Dockerfile frontend and accepts only # syntax=docker/dockerfile[:1[.N]] (with or without docker.io/)`);
}

/** BuildKit's lint rules that need only the syntax tree. */
function lint(inst: Instruction, warnings: DockerfileWarning[]): void {
  const line = inst.start.line;
  if (inst.keyword === 'MAINTAINER') {
    warnings.push({ rule: 'MaintainerDeprecated', message: 'Maintainer instruction is deprecated in favor of using label', line });
  }
  const platform = inst.keyword === 'FROM' ? inst.flags.find((f) => f.name === 'platform') : undefined;
  if (platform?.value !== undefined && !platform.value.includes('$')) {
    warnings.push({ rule: 'FromPlatformFlagConstDisallowed', message: `FROM --platform flag should not use constant value ${JSON.stringify(platform.value)}`, line });
  }
  if ((inst.keyword === 'CMD' || inst.keyword === 'ENTRYPOINT') && !inst.json && inst.args.startsWith('[')) {
    warnings.push({ rule: 'JSONArgsRecommended', message: `JSON arguments recommended for ${inst.keyword} to prevent unintended behavior related to OS signals`, line });
  }
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
    while (pos < logical.length && /\s/.test(logical[pos]!)) pos++;
    if (!logical.startsWith('--', pos)) break;
    const tokenStart = pos;
    const token = readToken(logical, pos, escape);
    pos = token.end;
    const text = token.text.slice(2);
    if (text === '') { // a bare "--" ends the flags
      while (pos < logical.length && /\s/.test(logical[pos]!)) pos++;
      break;
    }
    const eq = text.indexOf('=');
    const name = eq < 0 ? text : text.slice(0, eq);
    if (!/^[a-zA-Z][a-zA-Z0-9-]*$/.test(name)) {
      throw new DockerfileError(file, { line: start.line, column: start.column + tokenStart }, `invalid flag "${token.text}"`);
    }
    flags.push({ name, value: eq < 0 ? undefined : unquote(text.slice(eq + 1)), position: { line: start.line, column: start.column + tokenStart } });
  }
  const args = logical.slice(pos).replace(/\s+$/, '');
  const inst: Instruction = {
    keyword, original: logical.replace(/\s+$/, ''), flags, args, heredocs: [], start, endLine: start.line,
    argsPosition: { line: start.line, column: start.column + pos },
  };
  const jsonText = JSON_KEYWORDS.has(keyword) ? args : keyword === 'HEALTHCHECK' ? args.replace(/^\S+\s*/, '') : '';
  if (jsonText.startsWith('[')) {
    const json = parseJsonArray(jsonText);
    if (json === 'not-strings') throw new DockerfileError(file, start, NOT_STRING_ARRAY);
    if (json && keyword !== 'HEALTHCHECK') inst.json = json;
  }
  return inst;
}

/** BuildKit's parseJSON: an array of strings is exec form; other JSON values are an error. */
function parseJsonArray(text: string): string[] | 'not-strings' | undefined {
  let v: unknown;
  try { v = JSON.parse(text); } catch { return undefined; /* not JSON: shell form, like Docker */ }
  if (!Array.isArray(v)) return undefined;
  return v.every((x) => typeof x === 'string') ? (v as string[]) : 'not-strings';
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

const HEREDOC_WORD = /^(\d*)<<(-?)\s*([^<]*)$/;

/**
 * One word as a heredoc opener (`<<EOF`, `<<-EOF`, `<< EOF`, `3<<EOF`, `<<'one two'`,
 * `<<eo'f'`), like BuildKit's ParseHeredoc: the name is the word lexed without quotes; any
 * quoting at all (counted by lexing with and without raw quotes) turns expansion off.
 */
export function parseHeredocWord(word: string): Omit<Heredoc, 'content'> | undefined {
  const m = HEREDOC_WORD.exec(word);
  if (!m || m[3] === '') return undefined;
  const rest = m[3]!;
  const env = new Map<string, string>();
  const words = new Lexer('\\', { skipUnsetEnv: true }).processWords(rest, env);
  if (words.length !== 1) return undefined;
  const raw = new Lexer('\\', { skipUnsetEnv: true, rawQuotes: true }).processWords(rest, env);
  const quotes = (s: string) => (s.match(/['"]/g) ?? []).length;
  return { name: words[0]!, word, chomp: m[2] === '-', expand: quotes(words[0]!) === quotes(raw[0] ?? '') };
}

/** Heredoc openers among the words of an instruction's arguments (BuildKit's heredocsFromLine). */
export function heredocsFromArgs(args: string): Omit<Heredoc, 'content'>[] {
  let words: string[];
  try {
    words = new Lexer('\\', { rawQuotes: true, rawEscapes: true, skipUnsetEnv: true, heredocWords: true }).processWords(args, new Map());
  } catch {
    return []; // a line the lexer cannot split has no heredocs, as in BuildKit
  }
  const out: Omit<Heredoc, 'content'>[] = [];
  for (const w of words) {
    const h = parseHeredocWord(w);
    if (h) out.push(h);
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
