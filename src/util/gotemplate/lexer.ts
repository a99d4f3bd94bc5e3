// Go text/template's lexer: splits a template into text and the tokens inside {{ }}, with
// trim markers ({{- and -}}) and comments. Positions are byte offsets into the template, as Go
// reports them ("template: :1:2: ..."), so error texts match Docker's.

export type TokenKind =
  | 'text' | 'left' | 'right' | 'space' | 'field' | 'variable' | 'identifier' | 'keyword'
  | 'string' | 'rawString' | 'char' | 'number' | 'bool' | 'nil' | 'dot' | 'pipe'
  | 'leftParen' | 'rightParen' | 'declare' | 'assign' | 'comma' | 'eof';

export interface Token { kind: TokenKind; value: string; pos: number; line: number }

export class TemplateSyntaxError extends Error {}

const KEYWORDS = new Set(['if', 'else', 'end', 'range', 'with', 'define', 'template', 'block', 'break', 'continue']);

export function lex(input: string): Token[] {
  const tokens: Token[] = [];
  let pos = 0;
  let line = 1;
  const lineAt = (p: number) => line + countNewlines(input.slice(pos, p));
  const fail = (msg: string, at = pos): never => { throw new TemplateSyntaxError(`template: :${lineAt(at)}: ${msg}`); };
  const push = (kind: TokenKind, value: string, at: number) => tokens.push({ kind, value, pos: at, line: lineAt(at) });
  const advance = (to: number) => { line += countNewlines(input.slice(pos, to)); pos = to; };

  while (pos < input.length) {
    let open = input.indexOf('{{', pos);
    if (open < 0) { push('text', input.slice(pos), pos); advance(input.length); break; }
    // "{{- " trims the white space before the action.
    const trimLeft = input.startsWith('{{- ', open) || input.startsWith('{{-\t', open) || input.startsWith('{{-\n', open) || input.startsWith('{{-\r', open);
    let text = input.slice(pos, open);
    if (trimLeft) text = text.replace(/[ \t\r\n]+$/, '');
    if (text) push('text', text, pos);
    advance(open);
    push('left', '{{', pos);
    let p = open + 2 + (trimLeft ? 2 : 0);
    // Comments: {{/* ... */}}, only with optional trim markers around them.
    if (input.startsWith('/*', p)) {
      const close = input.indexOf('*/', p + 2);
      if (close < 0) fail('unclosed comment');
      let q = close + 2;
      let trimRight = false;
      if (input.startsWith(' -}}', q)) { trimRight = true; q += 4; }
      else if (input.startsWith('}}', q)) q += 2;
      else fail('comment ends before closing delimiter');
      tokens.pop();
      advance(q);
      if (trimRight) advance(pos + (input.slice(pos).match(/^[ \t\r\n]*/)![0].length));
      continue;
    }
    for (;;) {
      if (p >= input.length) fail('unclosed action', p);
      const c = input[p]!;
      // " -}}" ends the action and trims what follows.
      if (/[ \t\r\n]/.test(c) && input.startsWith('-}}', p + 1 + (input.slice(p + 1).match(/^[ \t\r\n]*/)![0].length)) && isTrimRight(input, p)) {
        const ws = input.slice(p).match(/^[ \t\r\n]*/)![0].length;
        const closeAt = p + ws + 1;
        advance(closeAt);
        push('right', '}}', closeAt);
        p = closeAt + 2;
        p += input.slice(p).match(/^[ \t\r\n]*/)![0].length;
        break;
      }
      if (input.startsWith('}}', p)) { advance(p); push('right', '}}', p); p += 2; break; }
      if (/[ \t\r\n]/.test(c)) {
        const n = input.slice(p).match(/^[ \t\r\n]+/)![0].length;
        push('space', ' ', p); p += n; continue;
      }
      if (c === '|') { push('pipe', '|', p); p++; continue; }
      if (c === '(') { push('leftParen', '(', p); p++; continue; }
      if (c === ')') { push('rightParen', ')', p); p++; continue; }
      if (c === ',') { push('comma', ',', p); p++; continue; }
      if (c === ':') {
        if (input[p + 1] !== '=') fail('expected :=', p);
        push('declare', ':=', p); p += 2; continue;
      }
      if (c === '=') { push('assign', '=', p); p++; continue; }
      if (c === '"') {
        let q = p + 1;
        while (q < input.length && input[q] !== '"') {
          if (input[q] === '\\') q++;
          if (input[q] === '\n' || q >= input.length) fail('unterminated quoted string', p);
          q++;
        }
        if (q >= input.length) fail('unterminated quoted string', p);
        push('string', input.slice(p, q + 1), p); p = q + 1; continue;
      }
      if (c === '`') {
        const q = input.indexOf('`', p + 1);
        if (q < 0) fail('unterminated raw quoted string', p);
        push('rawString', input.slice(p, q + 1), p); p = q + 1; continue;
      }
      if (c === "'") {
        const m = input.slice(p).match(/^'(?:\\.|[^\\'])+'/);
        if (!m) fail('unterminated character constant', p);
        push('char', m![0], p); p += m![0].length; continue;
      }
      if (c === '$') {
        const m = input.slice(p).match(/^\$[\p{L}_\d]*/u)!;
        push('variable', m[0], p); p += m[0].length; continue;
      }
      if (c === '.') {
        if (/\d/.test(input[p + 1] ?? '')) { /* a number like .5 */ } else {
          const m = input.slice(p).match(/^\.[\p{L}_][\p{L}_\d]*/u);
          if (m) { push('field', m[0], p); p += m[0].length; continue; }
          push('dot', '.', p); p++; continue;
        }
      }
      if (/[\d.+-]/.test(c)) {
        const m = input.slice(p).match(/^[+-]?(?:0[xX][\da-fA-F_]+|0[bB][01_]+|0[oO][0-7_]+|(?:\d[\d_]*)?\.?\d*(?:[eE][+-]?\d+)?)i?/);
        if (!m || !m[0] || m[0] === '+' || m[0] === '-' || m[0] === '.') fail(`bad number syntax: "${input.slice(p, p + 1)}"`, p);
        if (/[\p{L}_]/u.test(input[p + m![0].length] ?? '')) fail(`bad number syntax: "${input.slice(p, p + m![0].length + 1)}"`, p);
        push('number', m![0], p); p += m![0].length; continue;
      }
      if (/[\p{L}_]/u.test(c)) {
        const m = input.slice(p).match(/^[\p{L}_][\p{L}_\d]*/u)!;
        const w = m[0];
        if (KEYWORDS.has(w)) push('keyword', w, p);
        else if (w === 'true' || w === 'false') push('bool', w, p);
        else if (w === 'nil') push('nil', w, p);
        else push('identifier', w, p);
        p += w.length;
        // An identifier followed directly by a field (x.Y) is a chain in Go; handled by the parser.
        continue;
      }
      fail(`unexpected ${JSON.stringify(c)} in command`.replace(/^unexpected "(.)" in command$/, (_m, ch: string) => `bad character U+${ch.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')} '${ch}'`), p);
    }
    advance(p);
  }
  tokens.push({ kind: 'eof', value: '', pos: input.length, line });
  return tokens;
}

function isTrimRight(input: string, p: number): boolean {
  const ws = input.slice(p).match(/^[ \t\r\n]*/)![0].length;
  return ws > 0 && input.startsWith('-}}', p + ws);
}

function countNewlines(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) === 10) n++;
  return n;
}
