// .dockerignore with moby/patternmatcher semantics: patterns are path-cleaned and a leading "/"
// dropped; "*" and "?" never cross "/", "**" crosses any number of directories; patterns are
// evaluated in order, so a later "!pattern" re-includes what an earlier one excluded; a pattern
// that matches a parent directory matches everything below it.
import path from 'node:path/posix';

export interface IgnorePattern {
  /** The cleaned pattern text (without "!"). */
  pattern: string;
  exclusion: boolean;
  regex: RegExp;
  dirs: number;
}

export class PatternError extends Error {
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

  /** True when `file` (slash-separated, relative to the context) is excluded. */
  matches(file: string): boolean {
    file = cleanPath(file);
    const parentDirs = path.dirname(file) === '.' ? [] : path.dirname(file).split('/');
    let matched = false;
    for (const p of this.patterns) {
      let match = p.regex.test(file);
      if (!match && parentDirs.length > 0 && p.dirs <= parentDirs.length) {
        match = p.regex.test(parentDirs.slice(0, p.dirs).join('/'));
      }
      if (match) matched = !p.exclusion;
    }
    return matched;
  }

  /**
   * True when nothing below the excluded directory `dir` can be re-included, so a walker may
   * skip it entirely (the common case: no "!" patterns).
   */
  canSkipDir(dir: string): boolean {
    if (!this.hasExclusions) return true;
    dir = cleanPath(dir);
    return !this.patterns.some((p) => p.exclusion && (p.pattern.startsWith(`${dir}/`) || p.pattern.includes('*') || p.pattern.includes('?') || p.pattern.includes('[')));
  }
}

function cleanPath(p: string): string {
  let c = path.normalize(p);
  if (c.length > 1 && c.startsWith('/')) c = c.slice(1);
  if (c.length > 1 && c.endsWith('/')) c = c.slice(0, -1);
  return c === '' ? '.' : c;
}

/**
 * Compiles a Go filepath.Match-style pattern (plus "**") to a RegExp: "*" and "?" never match
 * "/". Shared with COPY/ADD source globs.
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
      if (i + 1 < pattern.length) { i++; re += escapeRegex(pattern[i]!); } else re += '\\\\';
    } else if (c === '[') {
      const end = pattern.indexOf(']', i + 1);
      if (end < 0) throw new PatternError(`syntax error in pattern "${pattern}"`);
      let cls = pattern.slice(i + 1, end);
      if (cls.startsWith('^') || cls.startsWith('!')) cls = `^${cls.slice(1)}`;
      re += `[${cls.replace(/\\/g, '\\\\')}]`;
      i = end;
    } else {
      re += escapeRegex(c);
    }
  }
  try {
    return new RegExp(re + '$');
  } catch {
    throw new PatternError(`syntax error in pattern "${pattern}"`);
  }
}

function escapeRegex(c: string): string {
  return c.replace(/[.+^${}()|[\]\\*?/]/g, '\\$&');
}
