// Go text/template's parser: tokens to a tree of list/text/action/if/range/with nodes, with
// Go's checks at parse time (unknown functions, undefined variables, unbalanced {{end}}) and
// Go's error texts.
import { lex, TemplateSyntaxError, type Token } from './lexer.js';

export type ArgNode =
  | { kind: 'field'; pos: number; idents: string[] }
  | { kind: 'variable'; pos: number; idents: string[] }
  | { kind: 'dot'; pos: number }
  | { kind: 'nil'; pos: number }
  | { kind: 'identifier'; pos: number; name: string }
  | { kind: 'bool'; pos: number; value: boolean }
  | { kind: 'number'; pos: number; value: number; text: string }
  | { kind: 'string'; pos: number; value: string; quoted: string }
  | { kind: 'chain'; pos: number; node: ArgNode; fields: string[] }
  | PipeNode;

export interface CommandNode { kind: 'command'; pos: number; args: ArgNode[] }
export interface PipeNode { kind: 'pipe'; pos: number; line: number; decl: string[]; isAssign: boolean; cmds: CommandNode[] }

export interface BranchNode { kind: 'if' | 'range' | 'with'; pos: number; line: number; pipe: PipeNode; list: ListNode; elseList?: ListNode }

export type Node =
  | { kind: 'text'; pos: number; text: string }
  | { kind: 'action'; pos: number; line: number; pipe: PipeNode }
  | BranchNode
  | { kind: 'break' | 'continue'; pos: number; line: number }
  | { kind: 'template'; pos: number; line: number; name: string; pipe?: PipeNode };

export interface ListNode { kind: 'list'; nodes: Node[] }

export interface ParsedTemplate { root: ListNode; defines: Map<string, ListNode>; text: string }

export function parse(text: string, funcs: ReadonlySet<string>): ParsedTemplate {
  return new Parser(text, funcs).parseTemplate();
}

class Parser {
  private toks: Token[];
  private i = 0;
  private vars: string[][] = [['$']];
  private rangeDepth = 0;
  private defines = new Map<string, ListNode>();

  constructor(private text: string, private funcs: ReadonlySet<string>) {
    this.toks = lex(text);
  }

  parseTemplate(): ParsedTemplate {
    const root = this.list(new Set());
    const t = this.peek();
    if (t.kind !== 'eof') this.fail(t, `unexpected ${describe(t)}`);
    return { root, defines: this.defines, text: this.text };
  }

  private peek(skipSpace = false): Token {
    let j = this.i;
    if (skipSpace) while (this.toks[j]!.kind === 'space') j++;
    return this.toks[j]!;
  }
  private next(): Token { return this.toks[this.i++]!; }
  private nextNonSpace(): Token {
    let t = this.next();
    while (t.kind === 'space') t = this.next();
    return t;
  }
  private fail(t: Token, msg: string): never {
    throw new TemplateSyntaxError(`template: :${t.line}: ${msg}`);
  }

  /** Parses nodes until one of the keywords in `stops` ({{end}}, {{else}}) and leaves it unread. */
  private list(stops: Set<string>): ListNode {
    const nodes: Node[] = [];
    for (;;) {
      const t = this.peek();
      if (t.kind === 'eof') {
        if (stops.size) this.fail(t, 'unexpected EOF');
        return { kind: 'list', nodes };
      }
      if (t.kind === 'text') { this.next(); nodes.push({ kind: 'text', pos: t.pos, text: t.value }); continue; }
      // t is "{{": look at the first word of the action.
      const save = this.i;
      this.next();
      const w = this.nextNonSpace();
      if (w.kind === 'keyword' && (w.value === 'end' || w.value === 'else')) {
        if (!stops.has(w.value)) this.fail(w, `unexpected {{${w.value}}}`);
        this.i = save;
        return { kind: 'list', nodes };
      }
      nodes.push(this.action(w));
    }
  }

  private action(w: Token): Node {
    if (w.kind === 'keyword') {
      switch (w.value) {
        case 'if': case 'range': case 'with': return this.control(w);
        case 'break': case 'continue': {
          if (this.rangeDepth === 0) this.fail(w, `{{${w.value}}} outside {{range}}`);
          this.expectRight(w.value);
          return { kind: w.value, pos: w.pos, line: w.line };
        }
        case 'template': return this.templateCall(w);
        case 'define': case 'block': return this.define(w);
      }
    }
    this.i--;
    while (this.toks[this.i - 1]?.kind === 'space') this.i--;
    const pipe = this.pipeline('command', 'right');
    return { kind: 'action', pos: pipe.pos, line: w.line, pipe };
  }

  private expectRight(context: string): void {
    const t = this.nextNonSpace();
    if (t.kind !== 'right') this.fail(t, `unexpected ${describe(t)} in ${context}`);
  }

  private control(w: Token): Node {
    const kind = w.value as 'if' | 'range' | 'with';
    this.vars.push([]);
    const pipe = this.pipeline(kind, 'right');
    if (kind === 'range') this.rangeDepth++;
    const list = this.list(new Set(['end', 'else']));
    if (kind === 'range') this.rangeDepth--;
    let elseList: ListNode | undefined;
    this.next(); // {{
    const k = this.nextNonSpace();
    if (k.value === 'else') {
      const after = this.peek(true);
      if ((kind === 'if' && after.value === 'if') || (kind === 'with' && after.value === 'with')) {
        // {{else if ...}} is an {{if}} nested in the else branch, sharing this {{end}}.
        this.nextNonSpace();
        const nested = this.control(after);
        elseList = { kind: 'list', nodes: [nested] };
        this.vars.pop();
        return { kind, pos: pipe.pos, line: w.line, pipe, list, elseList };
      }
      this.expectRight('else');
      elseList = this.list(new Set(['end']));
      this.next();
      this.nextNonSpace();
    }
    this.expectRight('end');
    this.vars.pop();
    return { kind, pos: pipe.pos, line: w.line, pipe, list, elseList };
  }

  private templateName(w: Token): string {
    const t = this.nextNonSpace();
    if (t.kind !== 'string' && t.kind !== 'rawString') this.fail(t, `unexpected ${describe(t)} in ${w.value} clause`);
    this.namePos = t.pos;
    return unquote(t, this);
  }

  private namePos = 0;

  private templateCall(w: Token): Node {
    const name = this.templateName(w);
    const pos = this.namePos;
    const t = this.peek(true);
    if (t.kind === 'right') { this.nextNonSpace(); return { kind: 'template', pos, line: w.line, name }; }
    const pipe = this.pipeline('template clause', 'right');
    return { kind: 'template', pos, line: w.line, name, pipe };
  }

  private define(w: Token): Node {
    const name = this.templateName(w);
    let pipe: PipeNode | undefined;
    if (w.value === 'block') pipe = this.pipeline('block clause', 'right');
    else this.expectRight('define clause');
    const outer = this.vars;
    this.vars = [['$']];
    const body = this.list(new Set(['end']));
    this.vars = outer;
    this.next();
    this.nextNonSpace();
    this.expectRight('end');
    this.defines.set(name, body);
    if (w.value === 'block') return { kind: 'template', pos: w.pos, line: w.line, name, pipe };
    return { kind: 'text', pos: w.pos, text: '' };
  }

  private declared(name: string): boolean {
    return this.vars.some((scope) => scope.includes(name));
  }

  /** A pipeline up to `end` (the action's "}}" or a ")"), with an optional declaration. */
  private pipeline(context: string, end: 'right' | 'rightParen'): PipeNode {
    const start = this.peek(true);
    const pipe: PipeNode = { kind: 'pipe', pos: start.pos, line: start.line, decl: [], isAssign: false, cmds: [] };
    // $x := ..., $x = ..., $i, $e := ... (range only)
    if (start.kind === 'variable') {
      const save = this.i;
      this.nextNonSpace();
      const t = this.peek(true);
      if (t.kind === 'declare' || t.kind === 'assign') {
        this.nextNonSpace();
        pipe.decl.push(start.value);
        pipe.isAssign = t.kind === 'assign';
        if (t.kind === 'assign' && !this.declared(start.value)) this.fail(start, `undefined variable "${start.value}"`);
        if (t.kind === 'declare') this.vars[this.vars.length - 1]!.push(start.value);
      } else if (t.kind === 'comma' && context === 'range') {
        this.nextNonSpace();
        const second = this.nextNonSpace();
        if (second.kind !== 'variable') this.fail(second, `range can only initialize variables`);
        const d = this.nextNonSpace();
        if (d.kind !== 'declare' && d.kind !== 'assign') this.fail(d, `expected := or = after range variables`);
        pipe.decl.push(start.value, second.value);
        pipe.isAssign = d.kind === 'assign';
        if (d.kind === 'declare') this.vars[this.vars.length - 1]!.push(start.value, second.value);
      } else {
        this.i = save;
      }
    }
    for (;;) {
      const t = this.peek(true);
      if (t.kind === end) {
        this.nextNonSpace();
        if (pipe.cmds.length === 0) this.fail(t, `missing value for ${context}`);
        for (let k = 1; k < pipe.cmds.length; k++) {
          const first = pipe.cmds[k]!.args[0]!;
          if (['bool', 'dot', 'nil', 'number', 'string'].includes(first.kind)) this.fail(t, `non executable command in pipeline stage ${k + 1}`);
        }
        return pipe;
      }
      if (t.kind === 'eof') this.fail(t, end === 'right' ? 'unclosed action' : 'unclosed left paren');
      if (t.kind === 'right' || t.kind === 'rightParen') this.fail(t, `unexpected ${describe(t)} in ${end === 'rightParen' ? 'parenthesized pipeline' : context}`);
      pipe.cmds.push(this.command(end));
    }
  }

  private command(end: 'right' | 'rightParen'): CommandNode {
    const first = this.peek(true);
    const cmd: CommandNode = { kind: 'command', pos: first.pos, args: [] };
    for (;;) {
      while (this.peek().kind === 'space') this.next();
      const t = this.peek();
      if (t.kind === 'pipe') {
        this.next();
        if (cmd.args.length === 0) this.fail(t, 'missing value for command');
        return cmd;
      }
      if (t.kind === end || t.kind === 'right' || t.kind === 'rightParen' || t.kind === 'eof') {
        if (cmd.args.length === 0) this.fail(t, 'missing value for command');
        return cmd;
      }
      const operand = this.operand();
      cmd.args.push(operand);
      const after = this.peek();
      if (!['space', 'pipe', 'right', 'rightParen', 'eof'].includes(after.kind)) this.fail(after, `unexpected ${describe(after)} in operand`);
    }
  }

  private operand(): ArgNode {
    const node = this.term();
    if (this.peek().kind !== 'field') return node;
    const chainPos = this.peek().pos;
    const fields: string[] = [];
    while (this.peek().kind === 'field') fields.push(this.next().value.slice(1));
    switch (node.kind) {
      case 'field': return { kind: 'field', pos: chainPos, idents: [...node.idents, ...fields] };
      case 'variable': return { kind: 'variable', pos: chainPos, idents: [...node.idents, ...fields] };
      case 'bool': case 'string': case 'number': case 'nil': case 'dot':
        this.fail(this.toks[this.i - 1]!, `unexpected . after term ${JSON.stringify(argString(node))}`);
      // falls through: fail never returns
      default: return { kind: 'chain', pos: chainPos, node, fields };
    }
  }

  private term(): ArgNode {
    const t = this.next();
    switch (t.kind) {
      case 'identifier':
        if (!this.funcs.has(t.value)) this.fail(t, `function ${JSON.stringify(t.value)} not defined`);
        return { kind: 'identifier', pos: t.pos, name: t.value };
      case 'dot': return { kind: 'dot', pos: t.pos };
      case 'nil': return { kind: 'nil', pos: t.pos };
      case 'variable':
        if (!this.declared(t.value)) this.fail(t, `undefined variable "${t.value}"`);
        return { kind: 'variable', pos: t.pos, idents: [t.value] };
      case 'field': return { kind: 'field', pos: t.pos, idents: [t.value.slice(1)] };
      case 'bool': return { kind: 'bool', pos: t.pos, value: t.value === 'true' };
      case 'number': return { kind: 'number', pos: t.pos, value: parseNumber(t, this), text: t.value };
      case 'char': return { kind: 'number', pos: t.pos, value: unquote(t, this).codePointAt(0)!, text: t.value };
      case 'string': case 'rawString': return { kind: 'string', pos: t.pos, value: unquote(t, this), quoted: t.value };
      case 'leftParen': return this.pipeline('parenthesized pipeline', 'rightParen');
      default: return this.fail(t, `unexpected ${describe(t)} in operand`);
    }
  }

  failAt(t: Token, msg: string): never { return this.fail(t, msg); }
}

function parseNumber(t: Token, p: Parser): number {
  const s = t.value.replace(/_/g, '');
  if (/i$/.test(s)) p.failAt(t, `complex numbers are not supported: ${t.value}`);
  const v = /^[+-]?0[xXbBoO]/.test(s) ? Number(s.replace(/^([+-]?)0[oO]/, '$10o')) : /^[+-]?0\d+$/.test(s) ? parseInt(s, 8) : Number(s);
  if (Number.isNaN(v)) p.failAt(t, `illegal number syntax: "${t.value}"`);
  return v;
}

function unquote(t: Token, p: Parser): string {
  if (t.kind === 'rawString') return t.value.slice(1, -1);
  const body = t.value.slice(1, -1);
  try {
    if (t.kind === 'char') return JSON.parse(`"${body.replace(/\\'/g, "'").replace(/"/g, '\\"')}"`) as string;
    return JSON.parse(`"${body.replace(/\\x([\da-fA-F]{2})/g, '\\u00$1').replace(/\\a/g, '\\u0007').replace(/\\v/g, '\\u000b')}"`) as string;
  } catch {
    return p.failAt(t, `invalid syntax: ${t.value}`);
  }
}

function describe(t: Token): string {
  switch (t.kind) {
    case 'right': return '"}}"';
    case 'rightParen': return '")"';
    case 'eof': return 'EOF';
    case 'keyword': return `<${t.value}>`;
    default: return JSON.stringify(t.value);
  }
}

/** The node as Go's String() prints it, for "executing ... at <...>" error contexts. */
export function argString(n: ArgNode | CommandNode): string {
  switch (n.kind) {
    case 'field': return n.idents.map((x) => `.${x}`).join('');
    case 'variable': return n.idents.join('.');
    case 'dot': return '.';
    case 'nil': return 'nil';
    case 'identifier': return n.name;
    case 'bool': return String(n.value);
    case 'number': return n.text;
    case 'string': return n.quoted;
    case 'chain': return `${n.node.kind === 'pipe' ? `(${argString(n.node)})` : argString(n.node)}${n.fields.map((f) => `.${f}`).join('')}`;
    case 'command': return n.args.map((a) => (a.kind === 'pipe' ? `(${argString(a)})` : argString(a))).join(' ');
    case 'pipe': {
      const decl = n.decl.length ? `${n.decl.join(', ')} ${n.isAssign ? '=' : ':='} ` : '';
      return decl + n.cmds.map(argString).join(' | ');
    }
  }
}
