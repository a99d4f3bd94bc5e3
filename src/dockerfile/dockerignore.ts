// .dockerignore with moby/patternmatcher semantics: patterns are path-cleaned and a leading "/"
// dropped; "*" and "?" never cross "/", "**" crosses any number of directories; character
// classes and escapes follow Go's filepath.Match; patterns are evaluated in order, so a later
// "!pattern" re-includes what an earlier one excluded; a pattern that matches any parent
// directory matches everything below it. The same compiler serves COPY/ADD source globs.
import path from 'node:path/posix';
import { UserError } from '../util/errors.js';

export interface IgnorePattern {
  /** The cleaned pattern text (without "!"). */
  pattern: string;
  exclusion: boolean;
  regex: RegExp;
  dirs: number;
}

export class PatternError extends UserError {
  override name = 'PatternError';
}

/** Reads a .dockerignore file's text into patterns (ignorefile.ReadAll). */
export function readIgnoreFile(text: string): string[] {
  const out: string[] = [];
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);
  for (let line of lines) {
    if (line.startsWith('#')) continue;
    line = line.trim();
    if (line === '') continue;
    let invert = false;
    if (line.startsWith('!')) { invert = true; line = line.slice(1).trim(); }
    if (line.length > 0) {
      line = path.normalize(line);
      if (line.length > 1 && line.startsWith('/')) line = line.slice(1);
      line = line.replace(/\/+$/, '') || line;
    }
    out.push(invert ? `!${line}` : line);
  }
  return out;
}

export class PatternMatcher {
  readonly patterns: IgnorePattern[];
  readonly hasExclusions: boolean;

  constructor(patterns: string[]) {
    this.patterns = [];
    for (let p of patterns) {
      p = p.trim();
      if (p === '') continue;
      let exclusion = false;
      if (p.startsWith('!')) {
        if (p.length === 1) throw new PatternError('illegal exclusion pattern: "!"');
        exclusion = true;
        p = p.slice(1);
      }
      p = cleanPath(p);
      this.patterns.push({ pattern: p, exclusion, regex: compileGlob(p), dirs: p.split('/').length });
    }
    this.hasExclusions = this.patterns.some((p) => p.exclusion);
  }

  /**
   * True when `file` (slash-separated, relative to the context) is excluded: patterns apply in
   * order, each to the path and to every parent directory of it (patternmatcher's
   * MatchesOrParentMatches), so `**\/node_modules` excludes everything below any node_modules.
   */
  matches(file: string): boolean {
    file = cleanPath(file);
    const parent = path.dirname(file);
    const parentDirs = parent === '.' ? [] : parent.split('/');
    let matched = false;
    for (const p of this.patterns) {
      // An inclusion cannot change a match, nor an exclusion a non-match.
      if (p.exclusion !== matched) continue;
      let match = p.regex.test(file);
      for (let i = 1; !match && i <= parentDirs.length; i++) match = p.regex.test(parentDirs.slice(0, i).join('/'));
      if (match) matched = !p.exclusion;
    }
    return matched;
  }

  /**
   * True when nothing below the excluded directory `dir` can be re-included, so a walker may
   * skip it entirely (the common case: no "!" patterns). Like fsutil, an exclusion with
   * wildcards may match anywhere, so it keeps the walk going.
   */
  canSkipDir(dir: string): boolean {
    if (!this.hasExclusions) return true;
    dir = cleanPath(dir);
    return !this.patterns.some((p) => p.exclusion && (`${p.pattern}/`.startsWith(`${dir}/`) || /[*?[\\]/.test(p.pattern)));
  }
}

function cleanPath(p: string): string {
  let c = path.normalize(p);
  if (c.length > 1 && c.startsWith('/')) c = c.slice(1);
  if (c.length > 1 && c.endsWith('/')) c = c.slice(0, -1);
  return c === '' ? '.' : c;
}

const syntaxError = (pattern: string) => new PatternError(`syntax error in pattern "${pattern}"`);

/**
 * A Go filepath.Match character class starting at pattern[i] ("["): `^` negates, `\` escapes,
 * `lo-hi` ranges; empty classes, a bare `-` or `]`, and dangling ranges are errors, as in Go.
 * Returns the RegExp class and the index after "]".
 */
function charClass(pattern: string, i: number): { re: string; end: number } {
  const chars = pattern;
  let j = i + 1;
  let negated = false;
  if (chars[j] === '^') { negated = true; j++; }
  const getEsc = (): string => {
    let c = chars[j];
    if (c === undefined || c === '-' || c === ']') throw syntaxError(pattern);
    if (c === '\\') { j++; c = chars[j]; if (c === undefined) throw syntaxError(pattern); }
    const cp = String.fromCodePoint(chars.codePointAt(j)!);
    j += cp.length;
    if (j >= chars.length) throw syntaxError(pattern);
    return cp;
  };
  const esc = (c: string) => (/[\\\]\[^-]/.test(c) ? `\\${c}` : c);
  let body = '';
  let ranges = 0;
  for (;;) {
    if (chars[j] === ']' && ranges > 0) { j++; break; }
    const lo = getEsc();
    let hi = lo;
    if (chars[j] === '-') { j++; hi = getEsc(); }
    // Go accepts lo > hi (it never matches); a RegExp would not compile.
    if (lo.codePointAt(0)! <= hi.codePointAt(0)!) body += lo === hi ? esc(lo) : `${esc(lo)}-${esc(hi)}`;
    ranges++;
  }
  if (body === '') return { re: negated ? '[\\s\\S]' : '(?!)', end: j };
  return { re: `[${negated ? '^' : ''}${body}]`, end: j };
}

/**
 * Compiles a .dockerignore pattern like moby/patternmatcher: Go filepath.Match syntax (checked
 * in full, so malformed classes and a trailing `\` are errors) plus `**`, which crosses any
 * number of directories. "*" and "?" never match "/".
 */
export function compileGlob(pattern: string): RegExp {
  let re = '^';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '*') {
      if (pattern[i + 1] === '*') {
        i++;
        if (pattern[i + 1] === '/') i++; // "**/" is treated as "**"
        if (i + 1 >= pattern.length) re += '.*';
        else re += '(.*/)?';
      } else {
        re += '[^/]*';
      }
    } else if (c === '?') {
      re += '[^/]';
    } else if (c === '\\') {
      if (i + 1 >= pattern.length) throw syntaxError(pattern);
      i++;
      re += escapeRegex(pattern[i]!);
    } else if (c === '[') {
      const cls = charClass(pattern, i);
      re += cls.re;
      i = cls.end - 1;
    } else {
      re += escapeRegex(c);
    }
  }
  return new RegExp(re + '$', 's');
}

/**
 * One path component of a COPY/ADD source glob, with Go's filepath.Match semantics (no `**`;
 * "*" and "?" never match "/").
 */
export function compileComponentGlob(pattern: string): RegExp {
  return compileGlob(pattern.replace(/\*\*+/g, (m) => (m.length > 1 ? '*' : m)));
}

function escapeRegex(c: string): string {
  return c.replace(/[.+^${}()|[\]\\*?/]/g, '\\$&');
}
