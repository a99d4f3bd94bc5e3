// Go's fmt.Sprintf for the verbs templates use: %v %s %q %d %f %e %g %x %X %o %b %c %t %T %%,
// with flags (- + space 0 #), width and precision, and Go's %!verb(type=value) for mismatches.
import { formatValue, goTypeName } from './values.js';

export function sprintf(format: string, args: unknown[]): string {
  let out = '';
  let argi = 0;
  let i = 0;
  while (i < format.length) {
    const c = format[i]!;
    if (c !== '%') { out += c; i++; continue; }
    i++;
    let flags = '';
    while (i < format.length && '-+ 0#'.includes(format[i]!)) flags += format[i++];
    let width: number | undefined;
    let m = /^\d+/.exec(format.slice(i));
    if (m) { width = Number(m[0]); i += m[0].length; }
    let prec: number | undefined;
    if (format[i] === '.') {
      i++;
      m = /^\d+/.exec(format.slice(i));
      prec = m ? Number(m[0]) : 0;
      if (m) i += m[0].length;
    }
    const verb = format[i++];
    if (verb === undefined) { out += '%!(NOVERB)'; break; }
    if (verb === '%') { out += '%'; continue; }
    if (argi >= args.length) { out += `%!${verb}(MISSING)`; continue; }
    const arg = args[argi++];
    out += pad(formatOne(verb, arg, flags, prec), width, flags);
  }
  if (argi < args.length) out += `%!(EXTRA ${args.slice(argi).map((a) => `${goTypeName(a)}=${formatValue(a)}`).join(', ')})`;
  return out;
}

function pad(s: string, width: number | undefined, flags: string): string {
  if (width === undefined || s.length >= width) return s;
  if (flags.includes('-')) return s.padEnd(width);
  if (flags.includes('0') && /^[+-]?[\d.]/.test(s)) {
    const sign = /^[+-]/.test(s) ? s[0]! : '';
    return sign + s.slice(sign.length).padStart(width - sign.length, '0');
  }
  return s.padStart(width);
}

function bad(verb: string, arg: unknown): string {
  return `%!${verb}(${goTypeName(arg)}=${formatValue(arg)})`;
}

function sign(n: number, flags: string, s: string): string {
  if (n >= 0 && flags.includes('+')) return `+${s}`;
  if (n >= 0 && flags.includes(' ')) return ` ${s}`;
  return s;
}

function formatOne(verb: string, arg: unknown, flags: string, prec: number | undefined): string {
  switch (verb) {
    case 'v': return formatValue(arg);
    case 'T': return goTypeName(arg);
    case 's':
      if (typeof arg === 'number' || typeof arg === 'boolean') return bad(verb, arg);
      return prec === undefined ? formatValue(arg) : formatValue(arg).slice(0, prec);
    case 'q':
      if (typeof arg === 'string') return flags.includes('#') && !arg.includes('`') ? `\`${arg}\`` : goQuote(arg);
      if (typeof arg === 'number' && Number.isInteger(arg)) return `'${String.fromCodePoint(arg)}'`;
      if (Array.isArray(arg)) return `[${arg.map((a) => formatOne('q', a, flags, prec)).join(' ')}]`;
      return bad(verb, arg);
    case 't': return typeof arg === 'boolean' ? String(arg) : bad(verb, arg);
    case 'd': case 'x': case 'X': case 'o': case 'b': case 'c': {
      if (typeof arg === 'string' && (verb === 'x' || verb === 'X')) {
        const hex = Buffer.from(arg).toString('hex');
        return verb === 'X' ? hex.toUpperCase() : hex;
      }
      if (typeof arg !== 'number' || !Number.isInteger(arg)) return bad(verb, arg);
      if (verb === 'c') return String.fromCodePoint(arg);
      const base = { d: 10, x: 16, X: 16, o: 8, b: 2 }[verb]!;
      let s = Math.abs(arg).toString(base);
      if (verb === 'X') s = s.toUpperCase();
      if (flags.includes('#')) s = (({ x: '0x', X: '0X', o: '0' } as Record<string, string>)[verb] ?? '') + s;
      if (prec !== undefined) s = s.padStart(prec, '0');
      return sign(arg, flags, arg < 0 ? `-${s}` : s);
    }
    case 'f': case 'F': case 'e': case 'E': case 'g': case 'G': {
      if (typeof arg !== 'number') return bad(verb, arg);
      let s: string;
      if (verb === 'f' || verb === 'F') s = arg.toFixed(prec ?? 6);
      else if (verb === 'e' || verb === 'E') s = arg.toExponential(prec ?? 6).replace(/e([+-])(\d)$/, 'e$10$2');
      else s = prec === undefined ? formatValue(arg) : Number(arg.toPrecision(prec)).toString();
      if (verb === 'E' || verb === 'G') s = s.toUpperCase();
      return sign(arg, flags, s);
    }
    default: return bad(verb, arg);
  }
}

/** strconv.Quote: Go's double-quoted string with Go's escapes. */
export function goQuote(s: string): string {
  let out = '"';
  for (const ch of s) {
    const cp = ch.codePointAt(0)!;
    if (ch === '"') out += '\\"';
    else if (ch === '\\') out += '\\\\';
    else if (ch === '\n') out += '\\n';
    else if (ch === '\t') out += '\\t';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\x07') out += '\\a';
    else if (ch === '\b') out += '\\b';
    else if (ch === '\f') out += '\\f';
    else if (ch === '\v') out += '\\v';
    else if (cp < 0x20 || cp === 0x7f) out += `\\x${cp.toString(16).padStart(2, '0')}`;
    else out += ch;
  }
  return `${out}"`;
}
