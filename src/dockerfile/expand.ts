// Variable substitution with BuildKit's rules (moby/buildkit frontend/dockerfile/shell/lex.go):
// quotes are removed, single quotes are literal, the escape character quotes the next character
// (an escape at the very end of a word is dropped), and $VAR ${VAR} ${VAR:-x} ${VAR-x} ${VAR:+x}
// ${VAR+x} ${VAR:?msg} ${VAR?msg} ${VAR#p} ${VAR##p} ${VAR%p} ${VAR%%p} ${VAR/p/r} ${VAR//p/r}
// expand. Special parameters ($@ $* $# $? $- $$ $! $0) and positional ones ($1) are never set
// in a Dockerfile, so they expand to nothing. In # % / patterns the escapes stay raw until the
// pattern is compiled, so `\*` is a literal star. Unquoted expansions split into several words
// in processWords (EXPOSE, VOLUME, COPY sources...).

export type Env = ReadonlyMap<string, string>;

export class ExpansionError extends Error {
  override name = 'ExpansionError';
}

export interface LexerOptions {
  /** Keep quote characters in the result (heredoc delimiter detection). */
  rawQuotes?: boolean;
  /** Keep escape characters in the result. */
  rawEscapes?: boolean;
  /** Leave references to unset variables as written (`$EOF` stays `$EOF`). */
  skipUnsetEnv?: boolean;
  /** `<<` followed by blanks stays one word with what follows (`<< EOF` is one heredoc word). */
  heredocWords?: boolean;
}

class Scanner {
  pos = 0;
  constructor(readonly s: string) {}
  peek(): string { return this.s[this.pos] ?? ''; }
  next(): string { return this.s[this.pos++] ?? ''; }
  eof(): boolean { return this.pos >= this.s.length; }
}

/** Word accumulator: unquoted whitespace ends a word, quoted text never does. */
class Words {
  words: string[] = [];
  cur = '';
  inWord = false;
  addChar(c: string): void {
    if (/\s/.test(c)) {
      if (this.inWord && this.cur.length > 0) { this.words.push(this.cur); this.cur = ''; this.inWord = false; }
      return;
    }
    this.addRaw(c);
  }
  addRaw(c: string): void { this.cur += c; this.inWord = true; }
  addString(s: string): void { for (const c of s) this.addChar(c); }
  addRawString(s: string): void { this.cur += s; this.inWord = true; }
  finish(): string[] { if (this.cur.length > 0) this.words.push(this.cur); return this.words; }
}

const SPECIAL_PARAMS = new Set(['@', '*', '#', '?', '-', '$', '!', '0']);

export class Lexer {
  constructor(readonly escape = '\\', readonly options: LexerOptions = {}) {}

  /** Expands one word (quotes removed, no splitting). */
  processWord(word: string, env: Env): string {
    return new ShellWord(word, env, this.escape, this.options).process().text;
  }

  /** Expands and splits on unquoted whitespace. */
  processWords(word: string, env: Env): string[] {
    return new ShellWord(word, env, this.escape, this.options).process().words;
  }
}

class ShellWord {
  private readonly sc: Scanner;
  private rawEscapes: boolean;

  constructor(word: string, private readonly env: Env, private readonly escape: string, private readonly opts: LexerOptions) {
    this.sc = new Scanner(word);
    this.rawEscapes = !!opts.rawEscapes;
  }

  process(): { text: string; words: string[] } {
    return this.processStopOn('', this.rawEscapes);
  }

  /** Processes until `stop` (unescaped, unquoted) or the end. */
  private processStopOn(stop: string, rawEscapes: boolean): { text: string; words: string[] } {
    const saved = this.rawEscapes;
    this.rawEscapes = rawEscapes;
    try {
      let out = '';
      const w = new Words();
      const sc = this.sc;
      while (!sc.eof()) {
        const c = sc.peek();
        if (stop && c === stop) { sc.next(); return { text: out, words: w.finish() }; }
        if (c === "'" || c === '"') {
          const s = c === "'" ? this.processSingleQuote() : this.processDoubleQuote();
          out += s; w.addRawString(s);
        } else if (c === '$') {
          const v = this.processDollar();
          out += v; w.addString(v);
        } else if (c === '<' && this.opts.heredocWords) {
          const v = this.processPossibleHeredoc();
          out += v; w.addRawString(v);
        } else {
          sc.next();
          if (c === this.escape) {
            if (this.rawEscapes) { w.addRaw(c); out += c; }
            if (sc.eof()) break; // an escape at the end of the word is dropped
            const n = sc.next();
            w.addRaw(n); out += n;
          } else {
            w.addChar(c); out += c;
          }
        }
      }
      if (stop) throw new ExpansionError(`unexpected end of statement while looking for matching ${stop}`);
      return { text: out, words: w.finish() };
    } finally {
      this.rawEscapes = saved;
    }
  }

  private processPossibleHeredoc(): string {
    const sc = this.sc;
    sc.next();
    if (sc.peek() !== '<') return '<';
    sc.next();
    // Blanks may separate << (or <<-) from the delimiter: `<< EOF`, `<<- EOF`.
    let dash = '';
    if (sc.peek() === '-' && /[ \t]/.test(sc.s[sc.pos + 1] ?? '')) dash = sc.next();
    let space = '';
    while (sc.peek() === ' ' || sc.peek() === '\t') space += sc.next();
    return `<<${dash}${space}`;
  }

  private processSingleQuote(): string {
    const sc = this.sc;
    let out = sc.next();
    if (!this.opts.rawQuotes) out = '';
    for (;;) {
      if (sc.eof()) throw new ExpansionError('unexpected end of statement while looking for matching single-quote');
      const c = sc.next();
      if (c === "'") return this.opts.rawQuotes ? out + c : out;
      out += c;
    }
  }

  private processDoubleQuote(): string {
    const sc = this.sc;
    let out = sc.next();
    if (!this.opts.rawQuotes) out = '';
    for (;;) {
      if (sc.eof()) throw new ExpansionError('unexpected end of statement while looking for matching double-quote');
      const c = sc.peek();
      if (c === '"') { sc.next(); return this.opts.rawQuotes ? out + c : out; }
      if (c === '$') { out += this.processDollar(); continue; }
      sc.next();
      if (c === this.escape) {
        if (this.rawEscapes) out += c;
        const n = sc.peek();
        if (n === '') continue; // an escape at the end of the word is dropped
        // Inside double quotes only ", $ and the escape character itself are escapable.
        if (n === '"' || n === '$' || n === this.escape) { out += sc.next(); continue; }
      }
      out += c;
    }
  }

  private lookup(name: string): string | undefined {
    // Special and positional parameters are never set in a Dockerfile.
    if (SPECIAL_PARAMS.has(name) || /^[0-9]+$/.test(name)) return undefined;
    return this.env.get(name);
  }

  private processDollar(): string {
    const sc = this.sc;
    sc.next(); // $
    if (sc.peek() !== '{') {
      const name = this.processName();
      if (name === '') return '$';
      const v = this.lookup(name);
      if (v === undefined && this.opts.skipUnsetEnv) return `$${name}`;
      return v ?? '';
    }
    sc.next(); // {
    const first = sc.peek();
    if (first === '') throw new ExpansionError("syntax error: missing '}'");
    if (first === '{' || first === '}' || first === ':') throw new ExpansionError('syntax error: bad substitution');
    const name = this.processName();
    let ch = sc.next();
    let chs = ch;
    const value = this.lookup(name);
    const set = value !== undefined;
    if (ch === '}') {
      if (!set && this.opts.skipUnsetEnv) return `\${${name}}`;
      return value ?? '';
    }
    if (ch === '') throw new ExpansionError("syntax error: missing '}'");
    if (ch === '/') {
      const all = sc.peek() === '/';
      if (all) sc.next();
      let pattern: string;
      try { pattern = this.processStopOn('/', true).text; } catch (e) {
        if (sc.eof()) throw new ExpansionError("syntax error: missing '/' in ${}");
        throw e;
      }
      const replacement = this.stopOnBrace(true);
      if (!set && this.opts.skipUnsetEnv) return `\${${name}/${pattern}/${replacement}}`;
      const re = compileShellPattern(pattern, true, false, all);
      return all ? replaceAllGo(value ?? '', re, replacement) : (value ?? '').replace(re, () => replacement);
    }
    let nullIsUnset = false;
    if (ch === ':') {
      nullIsUnset = true;
      ch = sc.next();
      chs += ch;
    }
    if (!['+', '-', '?', '#', '%'].includes(ch)) throw new ExpansionError(`unsupported modifier (${chs}) in substitution`);
    const patternOp = ch === '#' || ch === '%';
    if (nullIsUnset && patternOp) throw new ExpansionError(`unsupported modifier (${chs}) in substitution`);
    let word = this.stopOnBrace(patternOp);
    if (!set && this.opts.skipUnsetEnv) return `\${${name}${chs}${word}}`;
    const empty = !set || (nullIsUnset && value === '');
    switch (ch) {
      case '-': return empty ? word : value!;
      case '+': return empty ? '' : word;
      case '?':
        if (!set) throw new ExpansionError(`${name}: ${word || 'is not allowed to be unset'}`);
        if (nullIsUnset && value === '') throw new ExpansionError(`${name}: ${word || 'is not allowed to be empty'}`);
        return value!;
      default: {
        // %/# match the shortest pattern, %%/## the longest.
        const greedy = word.startsWith(ch);
        if (greedy) word = word.slice(1);
        return ch === '%' ? trimSuffix(word, value ?? '', greedy) : trimPrefix(word, value ?? '', greedy);
      }
    }
  }

  private stopOnBrace(rawEscapes: boolean): string {
    try {
      return this.processStopOn('}', rawEscapes).text;
    } catch (e) {
      if (this.sc.eof()) throw new ExpansionError("syntax error: missing '}'");
      throw e;
    }
  }

  private processName(): string {
    const sc = this.sc;
    const c = sc.peek();
    if (/[0-9]/.test(c)) { let d = ''; while (!sc.eof() && /[0-9]/.test(sc.peek())) d += sc.next(); return d; }
    if (SPECIAL_PARAMS.has(c)) return sc.next();
    let name = '';
    while (!sc.eof() && /[\p{L}\p{N}_]/u.test(sc.peek())) name += sc.next();
    return name;
  }
}

/**
 * A shell pattern (`*` any string, `?` one character, `\*` `\?` `\\` literal; no bracket
 * expressions) as a RegExp. `\}` and `\/` are the ${} syntax's escapes, not the pattern's.
 */
function compileShellPattern(pattern: string, greedy: boolean, anchored: boolean, global = false): RegExp {
  let re = anchored ? '^' : '';
  const star = greedy ? '[\\s\\S]*' : '[\\s\\S]*?';
  const chars = [...pattern];
  for (let i = 0; i < chars.length; i++) {
    const c = chars[i]!;
    if (c === '*') { re += star; continue; }
    if (c === '?') { re += '[\\s\\S]'; continue; }
    if (c === '\\') {
      const n = chars[i + 1];
      if (n === '}' || n === '/') continue;
      i++;
      if (n !== '*' && n !== '?' && n !== '\\') throw new ExpansionError(`invalid pattern (${pattern}) in substitution: invalid escape '\\${n ?? ''}'`);
      re += `\\${n}`;
      continue;
    }
    re += c.replace(/[.+^${}()|[\]\\/]/g, '\\$&');
  }
  return new RegExp(re, global ? 'gu' : 'u');
}

/** Go's ReplaceAllString: an empty match right after the previous match is skipped. */
function replaceAllGo(value: string, re: RegExp, replacement: string): string {
  let out = '';
  let last = 0;
  let prevEnd = -1;
  for (const m of value.matchAll(re)) {
    const start = m.index;
    const end = start + m[0].length;
    if (m[0].length === 0 && start === prevEnd) continue;
    out += value.slice(last, start) + replacement;
    last = end;
    prevEnd = end;
  }
  return out + value.slice(last);
}

function trimPrefix(pattern: string, value: string, greedy: boolean): string {
  const m = compileShellPattern(pattern, greedy, true).exec(value);
  return m ? value.slice(m[0].length) : value;
}

/** Reverses a pattern keeping escape pairs together (a\*c → c\*a). */
function reversePattern(pattern: string): string {
  const chars = [...pattern];
  const out: string[] = [];
  for (let i = 0; i < chars.length;) {
    if (chars[i] === '\\' && i !== chars.length - 1) { out.unshift('\\', chars[i + 1]!); i += 2; } else { out.unshift(chars[i]!); i++; }
  }
  return out.join('');
}

function reverseString(s: string): string { return [...s].reverse().join(''); }

/** Regular expressions cannot find the shortest rightmost match, so both sides are reversed. */
function trimSuffix(pattern: string, value: string, greedy: boolean): string {
  return reverseString(trimPrefix(reversePattern(pattern), reverseString(value), greedy));
}
