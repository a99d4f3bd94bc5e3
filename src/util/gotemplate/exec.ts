// Executes a parsed template against a value, as Go's text/template does, with Docker's extra
// functions (json, join, split, lower, upper, title, pad, truncate). Errors read like Go's:
// `template: :1:2: executing "" at <.Foo>: can't evaluate field Foo in type T`.
import { argString, parse, type ArgNode, type BranchNode, type CommandNode, type ListNode, type Node, type ParsedTemplate, type PipeNode } from './parser.js';
import { formatValue, goTypeName, isMap, isTrue, structType, toJson, TypedNil } from './values.js';
import { goQuote, sprintf } from './printf.js';

export class TemplateExecError extends Error {}

type Fn = (...args: unknown[]) => unknown;
class FuncError extends Error {}

const escapeHtml = (s: string) => s.replace(/[<>&'"\0]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', "'": '&#39;', '"': '&#34;', '\0': '\uFFFD' }[c]!));

function str(v: unknown, fn: string): string {
  if (typeof v !== 'string') throw new FuncError(`wrong type for value; expected string; got ${goTypeName(v)}`, { cause: fn });
  return v;
}
function int(v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v)) throw new FuncError(`wrong type for value; expected int; got ${goTypeName(v)}`);
  return v;
}

function basicKind(v: unknown): string {
  if (typeof v === 'number') return Number.isInteger(v) ? 'int' : 'float';
  if (typeof v === 'string' || typeof v === 'boolean') return typeof v;
  if (v === null || v === undefined) return 'nil';
  return 'other';
}

function eq(a: unknown, ...rest: unknown[]): boolean {
  if (rest.length === 0) throw new FuncError('missing argument for comparison');
  for (const b of rest) {
    const ka = basicKind(a); const kb = basicKind(b);
    if (ka === 'other' || kb === 'other') {
      if (a === b) return true;
      throw new FuncError(`non-comparable type ${formatValue(ka === 'other' ? a : b)}: ${goTypeName(ka === 'other' ? a : b)}`);
    }
    if (ka !== kb && !(ka === 'nil' || kb === 'nil') && !((ka === 'int' || ka === 'float') && (kb === 'int' || kb === 'float'))) throw new FuncError('incompatible types for comparison');
    if (a === b || (ka === 'nil' && kb === 'nil')) return true;
  }
  return false;
}

function lt(a: unknown, b: unknown): boolean {
  const ka = basicKind(a); const kb = basicKind(b);
  if (ka === 'other' || ka === 'nil' || ka === 'boolean') throw new FuncError('invalid type for comparison');
  const numeric = (k: string) => k === 'int' || k === 'float';
  if (ka !== kb && !(numeric(ka) && numeric(kb))) throw new FuncError('incompatible types for comparison');
  return (a as number | string) < (b as number | string);
}

function index(item: unknown, ...keys: unknown[]): unknown {
  let v = item;
  for (const k of keys) {
    if (v === null || v === undefined) throw new FuncError('index of untyped nil');
    if (v instanceof TypedNil) {
      if (v.kind === 'map') { v = ''; continue; }
      throw new FuncError(`index out of range: ${String(k)}`);
    }
    if (Array.isArray(v) || typeof v === 'string') {
      const i = int(k);
      if (i < 0 || i >= v.length) throw new FuncError(`index out of range: ${i}`);
      v = typeof v === 'string' ? v.charCodeAt(i) : v[i];
    } else if (isMap(v)) {
      v = Object.prototype.hasOwnProperty.call(v, String(k)) ? v[String(k)] : undefined;
    } else {
      throw new FuncError(`can't index item of type ${goTypeName(v)}`);
    }
  }
  return v;
}

function slice(item: unknown, ...idx: unknown[]): unknown {
  if (typeof item !== 'string' && !Array.isArray(item)) throw new FuncError(`can't slice item of type ${goTypeName(item)}`);
  const [i = 0, j = item.length] = idx.map(int);
  if (i < 0 || j < i || j > item.length) throw new FuncError(`index out of range: ${j > item.length ? j : i}`);
  return item.slice(i, j);
}

function goLen(v: unknown): number {
  if (v instanceof TypedNil) return 0;
  if (typeof v === 'string') return Buffer.byteLength(v);
  if (Array.isArray(v)) return v.length;
  if (isMap(v)) return Object.keys(v).length;
  throw new FuncError(`len of type ${goTypeName(v)}`);
}

/** fmt.Sprint: spaces between operands when neither side is a string. */
function sprint(args: unknown[]): string {
  let out = '';
  args.forEach((a, i) => {
    if (i > 0 && typeof a !== 'string' && typeof args[i - 1] !== 'string') out += ' ';
    out += formatValue(a);
  });
  return out;
}

/** strings.Title: upper-cases the first letter of each word. */
function title(s: string): string {
  return s.replace(/(^|[^\p{L}\p{N}_'])(\p{L})/gu, (_m, sep: string, ch: string) => sep + ch.toUpperCase());
}

const FUNCS: Record<string, Fn> = {
  // text/template's builtins (and/or are evaluated lazily in evalCall)
  and: () => undefined,
  or: () => undefined,
  not: (v) => !isTrue(v),
  len: goLen,
  index: index as Fn,
  slice: slice as Fn,
  print: (...a) => sprint(a),
  println: (...a) => `${a.map((x) => formatValue(x)).join(' ')}\n`,
  printf: (f, ...a) => sprintf(str(f, 'printf'), a),
  eq: eq as Fn,
  ne: (a, b) => !eq(a, b),
  lt: (a, b) => lt(a, b),
  le: (a, b) => lt(a, b) || eq(a, b),
  gt: (a, b) => !lt(a, b) && !eq(a, b),
  ge: (a, b) => !lt(a, b),
  html: (...a) => escapeHtml(sprint(a)),
  js: (...a) => sprint(a).replace(/[\\'"<>&=\n\r\t]/g, (c) => (c === '\\' ? '\\\\' : c === "'" ? "\\'" : c === '"' ? '\\"' : `\\u${c.charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')}`)),
  urlquery: (...a) => encodeURIComponent(sprint(a)).replace(/%20/g, '+').replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`),
  call: (fn, ...a) => {
    if (typeof fn !== 'function') throw new FuncError(`non-function of type ${goTypeName(fn)}`);
    return (fn as Fn)(...a);
  },
  // Docker's additions (cli/templates/templates.go)
  json: (v) => toJson(v, structType(v) !== undefined),
  split: (s, sep) => str(s, 'split').split(str(sep, 'split')),
  join: (a, sep) => {
    if (!Array.isArray(a)) throw new FuncError(`wrong type for value; expected []string; got ${goTypeName(a)}`);
    return a.map((x) => formatValue(x, false)).join(str(sep, 'join'));
  },
  title: (s) => title(str(s, 'title')),
  lower: (s) => str(s, 'lower').toLowerCase(),
  upper: (s) => str(s, 'upper').toUpperCase(),
  pad: (s, before, after) => ' '.repeat(int(before)) + str(s, 'pad') + ' '.repeat(int(after)),
  truncate: (s, n) => (str(s, 'truncate').length < int(n) ? (s as string) : (s as string).slice(0, n as number)),
};

export const FUNC_NAMES: ReadonlySet<string> = new Set(Object.keys(FUNCS));

class Break { constructor(readonly kind: 'break' | 'continue') {} }

export interface ExecOptions {
  /** 'error' like Docker's inspect: a missing map key is an error, not "<no value>". */
  missingKey?: 'default' | 'error';
  /** Docker's HeaderFunctions: json, split, join, title, lower, upper, pad and truncate return their first argument, for a table's header row. */
  headerFuncs?: boolean;
}

const HEADER_FUNCS = new Set(['json', 'split', 'join', 'title', 'lower', 'upper', 'pad', 'truncate']);

export class Template {
  private constructor(private parsed: ParsedTemplate) {}

  /** Parses `text`; a syntax error throws TemplateSyntaxError with Go's message. */
  static parse(text: string): Template {
    return new Template(parse(text, FUNC_NAMES));
  }

  execute(data: unknown, opts: ExecOptions = {}): string {
    const st = new State(this.parsed, data, opts);
    st.walkList(data, this.parsed.root);
    return st.out.join('');
  }
}

class State {
  out: string[] = [];
  private vars: { name: string; value: unknown }[];
  private node: { pos: number; text: string } = { pos: 0, text: '' };
  private depth = 0;

  constructor(private t: ParsedTemplate, data: unknown, private opts: ExecOptions) {
    this.vars = [{ name: '$', value: data }];
  }

  private at(pos: number, text: string): void { this.node = { pos, text }; }

  private errorf(msg: string): never {
    const before = this.t.text.slice(0, this.node.pos);
    const line = before.split('\n').length;
    const col = this.node.pos - before.lastIndexOf('\n') - 1;
    // Go 1.19 (Docker 20.10's) prints the whole node, not a shortened one.
    const ctx = this.node.text;
    throw new TemplateExecError(`template: :${line}:${col}: executing "" at <${ctx}>: ${msg}`);
  }

  walkList(dot: unknown, list: ListNode): void {
    for (const n of list.nodes) this.walk(dot, n);
  }

  private walk(dot: unknown, n: Node): void {
    switch (n.kind) {
      case 'text': this.out.push(n.text); return;
      case 'action': {
        const mark = this.vars.length;
        const v = this.evalPipeline(dot, n.pipe);
        if (n.pipe.decl.length === 0) this.out.push(this.printable(v, n.pipe));
        void mark;
        return;
      }
      case 'if': case 'with': {
        const mark = this.vars.length;
        const v = this.evalPipeline(dot, n.pipe);
        if (isTrue(v)) this.walkList(n.kind === 'with' ? v : dot, n.list);
        else if (n.elseList) this.walkList(dot, n.elseList);
        this.vars.length = mark;
        return;
      }
      case 'range': return this.walkRange(dot, n);
      case 'break': case 'continue': throw new Break(n.kind);
      case 'template': {
        const body = this.t.defines.get(n.name);
        this.at(n.pos, `{{template ${goQuote(n.name)}}}`);
        if (!body) this.errorf(`template ${goQuote(n.name)} not defined`);
        if (++this.depth > 1000) this.errorf('exceeded maximum template depth (100000)');
        const value = n.pipe ? this.evalPipeline(dot, n.pipe) : undefined;
        const saved = this.vars;
        this.vars = [{ name: '$', value }];
        this.walkList(value, body);
        this.vars = saved;
        this.depth--;
        return;
      }
    }
  }

  private walkRange(dot: unknown, n: BranchNode): void {
    const mark = this.vars.length;
    const v = this.evalPipeline(dot, n.pipe);
    // The declared variables were pushed by evalPipeline; range sets them per element.
    this.vars.length = mark;
    let entries: [unknown, unknown][];
    if (v === undefined || v === null || v instanceof TypedNil) entries = [];
    else if (Array.isArray(v)) entries = v.map((x, i) => [i, x]);
    else if (isMap(v)) entries = Object.keys(v).sort().map((k) => [k, v[k]]);
    else if (typeof v === 'number' && Number.isInteger(v)) entries = Array.from({ length: Math.max(0, v) }, (_x, i) => [i, i]);
    else { this.at(n.pipe.pos, argString(n.pipe)); this.errorf(`range can't iterate over ${formatValue(v)}`); }
    if (entries.length === 0) {
      if (n.elseList) this.walkList(dot, n.elseList);
      return;
    }
    for (const [k, elem] of entries) {
      if (n.pipe.decl.length === 1) this.setVar(n.pipe.decl[0]!, elem, n.pipe.isAssign);
      else if (n.pipe.decl.length === 2) { this.setVar(n.pipe.decl[0]!, k, n.pipe.isAssign); this.setVar(n.pipe.decl[1]!, elem, n.pipe.isAssign); }
      try {
        this.walkList(elem, n.list);
      } catch (e) {
        if (!(e instanceof Break)) throw e;
        if (e.kind === 'break') break;
      } finally {
        this.vars.length = mark;
      }
    }
  }

  private setVar(name: string, value: unknown, assign: boolean): void {
    if (assign) {
      for (let i = this.vars.length - 1; i >= 0; i--) if (this.vars[i]!.name === name) { this.vars[i]!.value = value; return; }
    }
    this.vars.push({ name, value });
  }

  private varValue(name: string): unknown {
    for (let i = this.vars.length - 1; i >= 0; i--) if (this.vars[i]!.name === name) return this.vars[i]!.value;
    return this.errorf(`undefined variable: ${name}`);
  }

  private printable(v: unknown, pipe: PipeNode): string {
    if (typeof v === 'function') { this.at(pipe.pos, argString(pipe)); this.errorf(`can't print ${argString(pipe)} of type func`); }
    return formatValue(v);
  }

  private evalPipeline(dot: unknown, pipe: PipeNode): unknown {
    this.at(pipe.pos, argString(pipe));
    let value: unknown;
    let hasFinal = false;
    for (const cmd of pipe.cmds) {
      value = this.evalCommand(dot, cmd, hasFinal, value);
      hasFinal = true;
    }
    for (const name of pipe.decl) this.setVar(name, value, pipe.isAssign);
    return value;
  }

  private evalCommand(dot: unknown, cmd: CommandNode, hasFinal: boolean, final: unknown): unknown {
    const first = cmd.args[0]!;
    const args = cmd.args.slice(1);
    switch (first.kind) {
      case 'field': return this.evalFieldChain(dot, dot, first.pos, argString(first), first.idents, args, hasFinal, final);
      case 'chain': {
        const base = this.evalArg(dot, first.node);
        return this.evalFieldChain(dot, base, first.pos, argString(first), first.fields, args, hasFinal, final);
      }
      case 'identifier': return this.evalCall(dot, first.name, cmd, args, hasFinal, final);
      case 'pipe': this.notAFunction(args, hasFinal, cmd); return this.evalPipeline(dot, first);
      case 'variable': {
        const v = this.varValue(first.idents[0]!);
        if (first.idents.length === 1) { this.notAFunction(args, hasFinal, cmd); return v; }
        return this.evalFieldChain(dot, v, first.pos, argString(first), first.idents.slice(1), args, hasFinal, final);
      }
      default:
        this.at(first.pos, argString(first));
        this.notAFunction(args, hasFinal, cmd);
        return this.evalArg(dot, first);
    }
  }

  private notAFunction(args: ArgNode[], hasFinal: boolean, cmd: CommandNode): void {
    if (args.length > 0 || hasFinal) { this.at(cmd.pos, argString(cmd)); this.errorf(`can't give argument to non-function ${argString(cmd.args[0]!)}`); }
  }

  private evalArg(dot: unknown, n: ArgNode): unknown {
    this.at(n.pos, argString(n));
    switch (n.kind) {
      case 'dot': return dot;
      case 'nil': return null;
      case 'bool': case 'number': case 'string': return n.value;
      case 'field': return this.evalFieldChain(dot, dot, n.pos, argString(n), n.idents, [], false, undefined);
      case 'variable': {
        const v = this.varValue(n.idents[0]!);
        return n.idents.length === 1 ? v : this.evalFieldChain(dot, v, n.pos, argString(n), n.idents.slice(1), [], false, undefined);
      }
      case 'pipe': return this.evalPipeline(dot, n);
      case 'chain': return this.evalFieldChain(dot, this.evalArg(dot, n.node), n.pos, argString(n), n.fields, [], false, undefined);
      case 'identifier': return this.evalCall(dot, n.name, { kind: 'command', pos: n.pos, args: [n] }, [], false, undefined);
    }
  }

  private evalFieldChain(dot: unknown, receiver: unknown, pos: number, text: string, idents: string[], args: ArgNode[], hasFinal: boolean, final: unknown): unknown {
    let v = receiver;
    for (let i = 0; i < idents.length; i++) {
      const last = i === idents.length - 1;
      v = this.evalField(dot, idents[i]!, pos, text, v, last ? args : [], last && hasFinal, final);
    }
    return v;
  }

  private evalField(dot: unknown, name: string, pos: number, text: string, receiver: unknown, args: ArgNode[], hasFinal: boolean, final: unknown): unknown {
    this.at(pos, text);
    if (receiver === undefined || receiver === null) this.errorf(`nil pointer evaluating interface {}.${name}`);
    const hasArgs = args.length > 0 || hasFinal;
    const type = structType(receiver);
    if (type !== undefined) {
      const obj = receiver as Record<string, unknown>;
      if (!Object.prototype.hasOwnProperty.call(obj, name)) this.errorf(`can't evaluate field ${name} in type ${type}`);
      const v = obj[name];
      if (typeof v === 'function') {
        const argv = args.map((a) => this.evalArg(dot, a));
        if (hasFinal) argv.push(final);
        this.at(pos, text);
        try { return (v as Fn).apply(obj, argv); } catch (e) { return this.errorf(`error calling ${name}: ${(e as Error).message}`); }
      }
      if (hasArgs) this.errorf(`${name} has arguments but cannot be invoked as function`);
      return v;
    }
    if (receiver instanceof TypedNil && receiver.kind === 'map') receiver = {};
    if (isMap(receiver)) {
      if (hasArgs) this.errorf(`${name} is not a method but has arguments`);
      if (Object.prototype.hasOwnProperty.call(receiver, name)) return receiver[name];
      if (this.opts.missingKey === 'error') this.errorf(`map has no entry for key ${goQuote(name)}`);
      return undefined;
    }
    return this.errorf(`can't evaluate field ${name} in type ${goTypeName(receiver)}`);
  }

  private evalCall(dot: unknown, name: string, cmd: CommandNode, args: ArgNode[], hasFinal: boolean, final: unknown): unknown {
    const fn = FUNCS[name]!;
    const ctxText = argString(cmd);
    if (name === 'and' || name === 'or') {
      // Go 1.18+: evaluation stops at the first argument that decides the result.
      const all: (() => unknown)[] = args.map((a) => () => this.evalArg(dot, a));
      if (hasFinal) all.push(() => final);
      if (all.length === 0) { this.at(cmd.pos, ctxText); this.errorf(`wrong number of args for ${name}: want at least 1 got 0`); }
      let v: unknown;
      for (const get of all) {
        v = get();
        if (isTrue(v) === (name === 'or')) return v;
      }
      return v;
    }
    const argv = args.map((a) => this.evalArg(dot, a));
    if (hasFinal) argv.push(final);
    this.at(cmd.pos, ctxText);
    const want = FIXED_ARITY[name];
    if (want !== undefined && argv.length !== want && !(this.opts.headerFuncs && HEADER_FUNCS.has(name))) this.errorf(`wrong number of args for ${name}: want ${want} got ${argv.length}`);
    try {
      if (this.opts.headerFuncs && HEADER_FUNCS.has(name)) return argv[0];
      return fn(...argv);
    } catch (e) {
      if (e instanceof TemplateExecError) throw e;
      if (e instanceof FuncError && /^wrong type for value/.test(e.message) && !['index', 'slice', 'len'].includes(name)) this.errorf(e.message);
      return this.errorf(`error calling ${name}: ${(e as Error).message}`);
    }
  }
}

const FIXED_ARITY: Record<string, number> = { not: 1, len: 1, json: 1, split: 2, join: 2, title: 1, lower: 1, upper: 1, pad: 3, truncate: 2, lt: 2, le: 2, gt: 2, ge: 2, ne: 2 };
