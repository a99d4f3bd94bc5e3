// Pure config transformations for the metadata instructions and their argument parsing
// (ENV/LABEL key=value lists, EXPOSE ports, HEALTHCHECK, durations, --chown/--chmod values).
import { Lexer, type Env, ExpansionError } from '../dockerfile/index.js';
import type { HealthConfig } from '../image/types.js';
import { UserError } from '../util/errors.js';

/** Splits on unquoted whitespace, keeping quotes and escapes (they are removed by expansion later). */
export function splitRawWords(s: string, escape: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quote = '';
  let inWord = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c === escape && i + 1 < s.length && quote !== "'") { cur += c + s[++i]; inWord = true; continue; }
    if (quote) { if (c === quote) quote = ''; cur += c; continue; }
    if (c === '"' || c === "'") { quote = c; cur += c; inWord = true; continue; }
    if (/\s/.test(c)) { if (inWord) { out.push(cur); cur = ''; inWord = false; } continue; }
    cur += c;
    inWord = true;
  }
  if (inWord) out.push(cur);
  return out;
}

/**
 * ENV/LABEL arguments: "K=V K2='v 2'" or the legacy "K value with spaces". Keys and values are
 * expanded with `env` (ENV sees the variables it sets earlier on the same line? No: Docker
 * expands the whole line against the environment before the instruction).
 */
export function parseKeyValues(args: string, lex: Lexer, env: Env, what: string): [string, string][] {
  const words = splitRawWords(args, lex.escape);
  if (words.length === 0) throw new UserError(`${what} requires at least one argument`);
  if (!words[0]!.includes('=')) {
    // Legacy form: first word is the key, the rest of the line is the value.
    if (words.length < 2) throw new UserError(`${what} requires the value: ${what} ${words[0]} <value> or ${what} ${words[0]}=<value>`);
    const key = lex.processWord(words[0]!, env);
    const rest = args.trim().slice(args.trim().indexOf(words[0]!) + words[0]!.length).trim();
    return [[key, lex.processWord(rest, env)]];
  }
  return words.map((w) => {
    const eq = w.indexOf('=');
    if (eq <= 0) throw new UserError(`${what}: "${w}" must be of the form name=value`);
    return [lex.processWord(w.slice(0, eq), env), lex.processWord(w.slice(eq + 1), env)];
  });
}

export function expandOrThrow<T>(fn: () => T, where: string): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof ExpansionError) throw new UserError(`${where}: ${e.message}`, { cause: e });
    throw e;
  }
}

/** EXPOSE values: "80", "80/tcp", "53/udp", "8000-8002/tcp" → "80/tcp" keys. */
export function parsePorts(words: string[]): string[] {
  const out: string[] = [];
  for (const w of words) {
    const m = /^(?:(?:[0-9.]+|\[[0-9a-fA-F:]+\]):)?(\d+)(?:-(\d+))?(?:\/(tcp|udp|sctp))?$/i.exec(w);
    if (!m) throw new UserError(`invalid containerPort: ${w}`);
    const start = Number(m[1]);
    const end = m[2] ? Number(m[2]) : start;
    if (start < 1 || end > 65535 || end < start) throw new UserError(`invalid port range: ${w}`);
    const proto = (m[3] ?? 'tcp').toLowerCase();
    for (let p = start; p <= end; p++) out.push(`${p}/${proto}`);
  }
  return out;
}

/** Go duration strings ("30s", "1m30s", "500ms") → nanoseconds. */
export function parseDuration(s: string, flag: string): number {
  const units: Record<string, number> = { ns: 1, us: 1e3, µs: 1e3, ms: 1e6, s: 1e9, m: 60e9, h: 3600e9 };
  if (s === '0') return 0;
  const re = /(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/y;
  let total = 0;
  let pos = 0;
  while (pos < s.length) {
    re.lastIndex = pos;
    const m = re.exec(s);
    if (!m) throw new UserError(`invalid duration for --${flag}: "${s}" (examples: 30s, 1m30s, 500ms)`);
    total += Number(m[1]) * units[m[2]!]!;
    pos = re.lastIndex;
  }
  if (!s) throw new UserError(`invalid duration for --${flag}: empty`);
  return Math.round(total);
}

export function parseHealthcheck(args: string, json: string[] | undefined, flags: Map<string, string | undefined>): HealthConfig {
  const trimmed = args.trim();
  const word = trimmed.split(/\s+/)[0]!.toUpperCase();
  if (word === 'NONE') {
    if (trimmed.split(/\s+/).length > 1) throw new UserError('HEALTHCHECK NONE takes no arguments');
    return { Test: ['NONE'] };
  }
  if (word !== 'CMD') throw new UserError(`HEALTHCHECK: unknown type "${word}" (expected CMD or NONE)`);
  const rest = trimmed.slice(3).trim();
  if (!rest) throw new UserError('HEALTHCHECK CMD requires a command');
  let test: string[];
  if (rest.startsWith('[')) {
    try { const v = JSON.parse(rest) as unknown; test = Array.isArray(v) && v.every((x) => typeof x === 'string') ? ['CMD', ...v] : ['CMD-SHELL', rest]; } catch { test = ['CMD-SHELL', rest]; }
  } else test = ['CMD-SHELL', rest];
  void json;
  const hc: HealthConfig = { Test: test };
  const d = (name: string) => { const v = flags.get(name); return v === undefined ? undefined : parseDuration(v, name); };
  const interval = d('interval'); if (interval !== undefined) hc.Interval = interval;
  const timeout = d('timeout'); if (timeout !== undefined) hc.Timeout = timeout;
  const start = d('start-period'); if (start !== undefined) hc.StartPeriod = start;
  const startInt = d('start-interval'); if (startInt !== undefined) hc.StartInterval = startInt;
  const retries = flags.get('retries');
  if (retries !== undefined) {
    if (!/^\d+$/.test(retries)) throw new UserError(`invalid --retries "${retries}": must be a non-negative integer`);
    hc.Retries = Number(retries);
  }
  return hc;
}

export function parseChmod(v: string): number {
  if (!/^[0-7]{3,4}$/.test(v)) throw new UserError(`invalid --chmod=${v}: expected an octal mode such as 755 or 0644`);
  return parseInt(v, 8);
}

const SIGNALS = new Set(['SIGABRT', 'SIGALRM', 'SIGBUS', 'SIGCHLD', 'SIGCONT', 'SIGFPE', 'SIGHUP', 'SIGILL', 'SIGINT', 'SIGIO', 'SIGKILL', 'SIGPIPE', 'SIGPROF', 'SIGPWR', 'SIGQUIT', 'SIGSEGV', 'SIGSTKFLT', 'SIGSTOP', 'SIGSYS', 'SIGTERM', 'SIGTRAP', 'SIGTSTP', 'SIGTTIN', 'SIGTTOU', 'SIGURG', 'SIGUSR1', 'SIGUSR2', 'SIGVTALRM', 'SIGWINCH', 'SIGXCPU', 'SIGXFSZ']);

export function validateSignal(s: string): string {
  if (/^\d+$/.test(s) && Number(s) > 0 && Number(s) < 65) return s;
  const up = s.toUpperCase();
  const name = up.startsWith('SIG') ? up : `SIG${up}`;
  if (SIGNALS.has(name) || /^SIGRTM(IN|AX)([+-]\d+)?$/.test(name)) return s;
  throw new UserError(`invalid signal: ${s}`);
}
