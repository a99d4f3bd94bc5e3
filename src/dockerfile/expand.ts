// Variable substitution with Docker's rules (moby/buildkit frontend/dockerfile/shell/lex.go):
// quotes are removed, single quotes are literal, the escape character quotes the next character,
// and $VAR ${VAR} ${VAR:-x} ${VAR-x} ${VAR:+x} ${VAR+x} ${VAR:?msg} ${VAR#p} ${VAR%p} expand.
// Unquoted expansions split into several words in processWords (EXPOSE, VOLUME, COPY sources...).

export type Env = ReadonlyMap<string, string>;

export class ExpansionError extends Error {
  override name = 'ExpansionError';
}

interface Result { words: string[] }

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
      if (this.inWord) { this.words.push(this.cur); this.cur = ''; this.inWord = false; }
      return;
    }
    this.addRaw(c);
  }
  addRaw(c: string): void { this.cur += c; this.inWord = true; }
  addString(s: string): void { for (const c of s) this.addChar(c); }
  addRawString(s: string): void { this.cur += s; this.inWord = true; }
  finish(): string[] { if (this.inWord) this.words.push(this.cur); return this.words; }
}

export class Lexer {
  constructor(readonly escape = '\\') {}

  /** Expands one word (quotes removed, no splitting). */
  processWord(word: string, env: Env): string {
    return this.process(word, env).text;
  }

  /** Expands and splits on unquoted whitespace. */
  processWords(word: string, env: Env): string[] {
    return this.process(word, env).words;
  }

  private process(word: string, env: Env): { text: string } & Result {
    const sc = new Scanner(word);
    const w = new Words();
    const text = this.processStopOn(sc, env, '', w);
    return { text, words: w.finish() };
  }

  /** Processes until `stop` (unescaped, unquoted) or the end; returns the expanded text. */
  private processStopOn(sc: Scanner, env: Env, stop: string, w: Words): string {
    let out = '';
    while (!sc.eof()) {
      const c = sc.peek();
      if (stop && c === stop) { sc.next(); return out; }
      if (c === "'") {
        sc.next();
        let lit = '';
        while (!sc.eof() && sc.peek() !== "'") lit += sc.next();
        if (sc.eof()) throw new ExpansionError('unexpected end of statement while looking for matching single-quote');
        sc.next();
        out += lit; w.addRawString(lit);
      } else if (c === '"') {
        sc.next();
        const s = this.processDoubleQuote(sc, env);
        out += s; w.addRawString(s);
      } else if (c === '$') {
        const v = this.processDollar(sc, env);
        out += v; w.addString(v);
      } else if (c === this.escape) {
        sc.next();
        if (sc.eof()) { out += c; w.addRaw(c); break; }
        const n = sc.next();
        out += n; w.addRaw(n);
      } else {
        sc.next();
        out += c; w.addChar(c);
      }
    }
    if (stop) throw new ExpansionError(`missing '${stop}'`);
    return out;
  }

  private processDoubleQuote(sc: Scanner, env: Env): string {
    let out = '';
    for (;;) {
      if (sc.eof()) throw new ExpansionError('unexpected end of statement while looking for matching double-quote');
      const c = sc.peek();
      if (c === '"') { sc.next(); return out; }
      if (c === '$') { out += this.processDollar(sc, env); continue; }
      sc.next();
      if (c === this.escape) {
        const n = sc.peek();
        // Inside double quotes only ", $ and the escape character itself are escapable.
        if (n === '"' || n === '$' || n === this.escape) { out += sc.next(); continue; }
      }
      out += c;
    }
  }

  private processDollar(sc: Scanner, env: Env): string {
    sc.next(); // $
    if (sc.peek() !== '{') {
      const name = this.processName(sc);
      if (name === '') return '$';
      return env.get(name) ?? '';
    }
    sc.next(); // {
    const name = this.processName(sc);
    const ch = sc.peek();
    if (ch === '') throw new ExpansionError(`missing '}' in \${${name}`);
    if (name === '') throw new ExpansionError(`bad substitution: \${${sc.s.slice(sc.pos)}`);
    if (ch === '}') { sc.next(); return env.get(name) ?? ''; }
    if (name === '') throw new ExpansionError(`bad substitution: \${${sc.s.slice(sc.pos)}`);
    const value = env.get(name);
    const set = value !== undefined;
    if (ch === ':' || ch === '-' || ch === '+' || ch === '?') {
      let colon = false;
      if (ch === ':') { sc.next(); colon = true; }
      const op = sc.next();
      const word = this.processStopOn(sc, env, '}', new Words());
      const present = colon ? set && value !== '' : set;
      switch (op) {
        case '-': return present ? value! : word;
        case '+': return present ? word : '';
        case '?':
          if (!present) throw new ExpansionError(`${name}: ${word || 'is not allowed to be unset'}`);
          return value!;
        default: throw new ExpansionError(`unsupported modifier (${op}) in substitution`);
      }
    }
    if (ch === '#' || ch === '%') {
      sc.next();
      const longest = sc.peek() === ch;
      if (longest) sc.next();
      const pattern = this.processStopOn(sc, env, '}', new Words());
      return trimPattern(value ?? '', pattern, ch === '#', longest);
    }
    if (ch === '/') {
      sc.next();
      const all = sc.peek() === '/';
      if (all) sc.next();
      const pattern = this.processStopOnAny(sc, env, '/', '}');
      const repl = pattern.stoppedOn === '/' ? this.processStopOn(sc, env, '}', new Words()) : '';
      const re = new RegExp(globToRegex(pattern.text), all ? 'g' : '');
      return (value ?? '').replace(re, () => repl);
    }
    throw new ExpansionError(`missing ':' or '}' in substitution \${${name}${ch}`);
  }

  private processStopOnAny(sc: Scanner, env: Env, a: string, b: string): { text: string; stoppedOn: string } {
    let text = '';
    while (!sc.eof()) {
      const c = sc.peek();
      if (c === a || c === b) { sc.next(); return { text, stoppedOn: c }; }
      if (c === '$') { text += this.processDollar(sc, env); continue; }
      sc.next();
      text += c;
    }
    throw new ExpansionError(`missing '${b}'`);
  }

  private processName(sc: Scanner): string {
    const c = sc.peek();
    // Positional parameters ($1) are never set in a Dockerfile; they expand to nothing.
    if (/[0-9]/.test(c)) { let d = ''; while (/[0-9]/.test(sc.peek()) && !sc.eof()) d += sc.next(); return d; }
    let name = '';
    while (/[A-Za-z0-9_]/.test(sc.peek()) && !sc.eof()) name += sc.next();
    return name;
  }
}

function globToRegex(glob: string): string {
  let re = '';
  for (const c of glob) {
    if (c === '*') re += '.*';
    else if (c === '?') re += '.';
    else re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return re;
}

function trimPattern(value: string, pattern: string, prefix: boolean, longest: boolean): string {
  const body = globToRegex(pattern);
  if (prefix) {
    const m = new RegExp(`^(${longest ? body : body.replace(/\.\*/g, '.*?')})`).exec(value);
    return m ? value.slice(m[1]!.length) : value;
  }
  // Suffix: try every start position; shortest suffix = last match position.
  const re = new RegExp(`^(?:${body})$`);
  if (longest) { for (let i = 0; i <= value.length; i++) if (re.test(value.slice(i))) return value.slice(0, i); }
  else { for (let i = value.length; i >= 0; i--) if (re.test(value.slice(i))) return value.slice(0, i); }
  return value;
}
