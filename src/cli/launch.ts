// The start of the installed `drydock` (bin/drydock.js requires this, bundled as dist/cli/drydock.cjs).
// scripts/bundle-cli.mjs writes one CommonJS bundle per command module (dist/cli/image.cjs, …):
// main.ts plus that module and everything it may import, and all.cjs for --help and unknown words.
// This picks the bundle for argv and runs it through V8's code cache, so a quick command reads two
// files and compiles almost nothing:
//  - CommonJS, because Node 20's ESM loader costs a resolve, a read and a compile per file, and
//    vm.Script (which takes a code cache) runs scripts, not modules; Node 20 has no
//    module.enableCompileCache.
//  - The cache (<bundle>.cjs.cache) is written the first time a bundle runs (or after Node, or the
//    bundle, changed), when the process exits, so it holds the functions that ran compiled. V8 checks
//    its own version and flags but knows the source only by its length, so the file starts with a
//    line naming the bundle's inode, size and mtime; a cache of another build is never used.
//    A read-only install simply runs without one. DRYDOCK_CODE_CACHE=0 turns it off (bench/startup.ts).
//  - A cache made by `images -q` lacks what `images` runs (the table's template, its sizes), which
//    then compiles on every run. So the cache also lists the argv shapes it was made from (command
//    word and flag names, no values); a run of a new shape rewrites it at exit, from the functions
//    deserialized plus those it compiled, until MAX_SHAPES shapes are in.
//  - Each command of a bundle has a cache of its own (<bundle>.cjs.<command>.cache; the shared
//    <bundle>.cjs.cache for --help, --version and words the bundle does not own): V8 deserializes
//    all of a cache, so `images` would otherwise pay for the code `load`, `save` and `inspect` ran.
import { closeSync, fstatSync, fsyncSync, openSync, readFileSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import Module, { createRequire } from 'node:module';
import path from 'node:path';
import vm from 'node:vm';
import { bundleFor, commandWord, COMMAND_MODULES } from './commands/index.js';

/** The first line of a cache file: what it was made from. */
function cacheHeader(bundle: { ino: number; size: number; mtimeMs: number }): string {
  return `drydock-code-cache ${process.version} ${process.arch} ${bundle.ino} ${bundle.size} ${bundle.mtimeMs}\n`;
}

/** Argv shapes a cache takes in before it stops being rewritten for new ones. */
const MAX_SHAPES = 32;

/** The shape of a command line for the cache: its command word and flag names, without values. */
export function argShape(args: readonly string[]): string {
  const word = commandWord(args) ?? '';
  const flags = new Set(args.filter((a) => a.startsWith('-')).map((a) => a.replace(/=.*/s, '')));
  return [word, ...[...flags].sort()].join(' ');
}

/**
 * The V8 cache data in `file` if it was made for this bundle and this Node, with the argv shapes
 * it was made from (the second line, JSON), else undefined.
 */
function readCache(file: string, header: string): { data: Buffer; shapes: string[] } | undefined {
  let data: Buffer;
  try { data = readFileSync(file); } catch { return undefined; }
  const nl = data.indexOf(10);
  if (nl < 0 || data.toString('latin1', 0, nl + 1) !== header) return undefined;
  const nl2 = data.indexOf(10, nl + 1);
  if (nl2 < 0) return undefined;
  let shapes: unknown;
  try { shapes = JSON.parse(data.toString('utf8', nl + 1, nl2)); } catch { return undefined; }
  if (!Array.isArray(shapes) || !shapes.every((x) => typeof x === 'string')) return undefined;
  return { data: data.subarray(nl2 + 1), shapes };
}

/** Temp, fsync, rename: a reader sees the old cache, the new one or none, never a torn one. */
function writeCache(file: string, header: string, shapes: readonly string[], data: Buffer): void {
  const tmp = `${file}.tmp-${process.pid}`;
  try {
    const fd = openSync(tmp, 'w', 0o644);
    try {
      writeSync(fd, header);
      writeSync(fd, `${JSON.stringify(shapes)}\n`);
      writeSync(fd, data);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, file);
  } catch {
    // No cache this time (a read-only install, a full disk); the next run compiles again.
    try { unlinkSync(tmp); } catch { /* never created */ }
  }
}

/**
 * Runs a CommonJS bundle as require() would, with V8's code cache beside it; `shape` (argShape of
 * the command line) decides whether this run adds to the cache.
 */
export function runBundle(file: string, opts: { codeCache?: boolean; shape?: string; cacheFile?: string } = {}): void {
  const fd = openSync(file, 'r');
  let source: string;
  let header: string;
  try {
    header = cacheHeader(fstatSync(fd));
    source = readFileSync(fd, 'utf8');
  } finally {
    closeSync(fd);
  }
  const cacheFile = opts.cacheFile ?? `${file}.cache`;
  const useCache = opts.codeCache ?? true;
  const cached = useCache ? readCache(cacheFile, header) : undefined;
  // No importModuleDynamically: the bundles have no import() (scripts/bundle-cli.mjs).
  const script = new vm.Script(Module.wrap(source), { filename: file, cachedData: cached?.data });
  const shapes = cached === undefined || script.cachedDataRejected ? undefined : cached.shapes;
  const shape = opts.shape ?? '';
  if (useCache && (shapes === undefined || (!shapes.includes(shape) && shapes.length < MAX_SHAPES))) {
    process.once('exit', () => writeCache(cacheFile, header, [...(shapes ?? []), shape], script.createCachedData()));
  }
  const wrapper = script.runInThisContext() as (exports: object, require: NodeJS.Require, module: object, filename: string, dirname: string) => void;
  const module = { exports: {}, filename: file, id: file, loaded: false };
  wrapper.call(module.exports, module.exports, createRequire(file), module, file, path.dirname(file));
}

/**
 * The code cache file of `bundle` for `args`: one per command the bundle owns, else the bundle's
 * shared one (a typo must not leave a cache file behind).
 */
export function cacheFileFor(bundle: string, args: readonly string[]): string {
  const word = commandWord(args);
  const owns = word !== undefined && COMMAND_MODULES.some((m) => m.module === path.basename(bundle, '.cjs') && m.names.includes(word));
  return owns ? `${bundle}.${word}.cache` : `${bundle}.cache`;
}

/** Runs the bundle of the command in argv from `dir` (dist/cli). */
export function launch(dir: string, argv: readonly string[] = process.argv): void {
  const args = argv.slice(2);
  const bundle = path.join(dir, `${bundleFor(args)}.cjs`);
  runBundle(bundle, { codeCache: process.env.DRYDOCK_CODE_CACHE !== '0', shape: argShape(args), cacheFile: cacheFileFor(bundle, args) });
}
