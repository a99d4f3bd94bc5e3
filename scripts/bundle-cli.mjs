// Bundles the CLI with esbuild into dist/cli/ (what bin/drydock.js runs). Node's ESM loader
// resolves, reads and compiles each file of dist/src and node_modules separately (and wraps every
// CommonJS package); a bundle costs one read, and with V8's code cache almost no compile.
//  - <module>.cjs for each command module of src/cli/commands/index.ts: src/cli/main.ts with that
//    one module (the others' lazy imports are left out), and what it imports, eagerly or lazily.
//    One bundle per process keeps one copy of each class, so `instanceof UserError` holds.
//  - all.cjs (every module) for --help and unknown words; version.cjs (none) for --version.
//  - drydock.cjs: src/cli/launch.ts, which picks the bundle for argv and runs it with its code cache.
//  - aws-sdk-s3.cjs: @aws-sdk/client-s3 and its dependencies (~580 KB, half of build.cjs), which
//    only the S3 backends (registry storage, the build cache's type=s3) import, lazily: the other
//    bundles require it from here when that import runs. Every command bundle held a copy that V8
//    read and deserialized on each start (build.cjs: 1.05 MB and a 658 KB code cache before).
//    The SDK shares no class with drydock's code, so a second bundle is safe there.
//  - monitor-main.cjs / exec-monitor-main.cjs: the detached container monitor and the exec monitor,
//    which src/runtime/lifecycle.ts starts from the directory (and extension) its own code runs from.
//  - snapshot-worker-main.cjs: the build's snapshot worker thread, which src/builder/snapshot-worker.ts
//    starts from beside its own code the same way.
// CommonJS, not ESM with code splitting, because only scripts take V8's code cache on Node 20
// (src/cli/launch.ts says more). Measured by bench/startup.ts.
import { build } from 'esbuild';
import { readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { memoizeToEsm } from './to-esm-memo.mjs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const out = path.join(root, 'dist/cli');
const tmp = `${out}.tmp-${process.pid}`;
const commandsIndex = path.join(root, 'src/cli/commands/index.ts');

/**
 * esbuild plugin: the command modules that src/cli/commands/index.ts imports lazily, except those
 * in `keep` (all when undefined), become a module that throws, so they are not in the bundle.
 */
const onlyModules = (keep) => ({
  name: 'drydock-only-modules',
  setup(b) {
    b.onResolve({ filter: /^\.\/[a-z-]+\.js$/ }, (args) => {
      if (args.importer !== commandsIndex || keep === undefined) return undefined;
      const name = args.path.slice(2, -3);
      return keep.includes(name) ? undefined : { path: name, namespace: 'drydock-left-out' };
    });
    b.onLoad({ filter: /.*/, namespace: 'drydock-left-out' }, (args) => ({
      contents: `throw new Error('drydock: command module ${args.path} is not in this bundle (scripts/bundle-cli.mjs)');`,
      loader: 'js',
    }));
  },
});

/** The module names in src/cli/commands/index.ts's table, read by bundling it without them. */
async function commandModules() {
  const r = await build({ absWorkingDir: root, entryPoints: [commandsIndex], bundle: true, write: false, format: 'esm', platform: 'node', plugins: [onlyModules([])], logLevel: 'warning' });
  const { COMMAND_MODULES } = await import(`data:text/javascript;base64,${Buffer.from(r.outputFiles[0].text).toString('base64')}`);
  return COMMAND_MODULES.map((m) => m.module);
}

/**
 * esbuild plugin: Node built-ins that cost a few milliseconds to load (crypto, child_process and
 * the net, dgram and tty it pulls in, zlib, http…) become a module of getters that require the
 * real one on first use. A bundle imports them at the top of every module that uses them, so
 * without this `drydock images` loads child_process for commander's executable subcommands,
 * crypto for a digest it never computes and the stream family for a blob it never writes. A
 * class that extends a stream class loads node:stream when its module runs: such classes live in
 * modules that a quick command does not import (src/store/hashing-transform.ts, blob-file-writer.ts).
 */
const LAZY_BUILTINS = ['child_process', 'crypto', 'dgram', 'dns', 'http', 'http2', 'https', 'net', 'os', 'perf_hooks', 'readline', 'stream', 'stream/promises', 'tls', 'worker_threads', 'zlib'];
const requireBuiltin = createRequire(import.meta.url);
const lazyBuiltins = {
  name: 'drydock-lazy-builtins',
  setup(b) {
    const filter = new RegExp(`^(node:)?(${LAZY_BUILTINS.join('|')})$`);
    // node:process is the global process; requiring it (commander does) compiles a module for that.
    b.onResolve({ filter: /^(node:)?process$/ }, () => ({ path: 'process', namespace: 'drydock-global-process' }));
    b.onLoad({ filter: /.*/, namespace: 'drydock-global-process' }, () => ({ contents: 'module.exports=process;', loader: 'js' }));
    b.onResolve({ filter }, (args) => {
      const name = args.path.replace(/^node:/, '');
      // The getters' own require() is the real module.
      if (args.namespace === 'drydock-lazy-builtin') return { path: `node:${name}`, external: true };
      return { path: name, namespace: 'drydock-lazy-builtin' };
    });
    b.onLoad({ filter: /.*/, namespace: 'drydock-lazy-builtin' }, (args) => ({
      contents: `let m;const load=()=>m??=require('node:${args.path}');` +
        `for(const k of ${JSON.stringify(Object.keys(requireBuiltin(`node:${args.path}`)))})Object.defineProperty(exports,k,{enumerable:true,get:()=>load()[k]});`,
      loader: 'js',
    }));
  },
};

/** esbuild plugin: @aws-sdk/client-s3 is required from aws-sdk-s3.cjs beside the bundle. */
const AWS_SDK_BUNDLE = 'aws-sdk-s3.cjs';
const awsSdkApart = {
  name: 'drydock-aws-sdk-apart',
  setup(b) {
    b.onResolve({ filter: /^@aws-sdk\/client-s3$/ }, () => ({ path: `./${AWS_SDK_BUNDLE}`, external: true }));
  },
};

const common = {
  absWorkingDir: root,
  bundle: true,
  format: 'cjs',
  platform: 'node',
  target: 'node20',
  minify: true,
  // import() of what stays outside (built-ins, esbuild) becomes a require(): a script run by
  // vm.Script has no module loader to import with, short of an experimental option that warns
  // (and functions V8 restores from a code cache lose even that: "A dynamic import callback
  // was not specified").
  supported: { 'dynamic-import': false },
  // A native addon cannot be bundled, and esbuild (src/os bundles the CLI) finds its binary from
  // its own package; both load from node_modules.
  external: ['@napi-rs/xattr', 'koffi', 'esbuild'],
  // import.meta.url (lifecycle.ts finds the monitor beside its code) is the bundle's own URL,
  // made when asked for: URL's href getter costs a millisecond a command mostly does not need.
  // import.meta.filename is the bundle's path (a require made from a path skips the URL's parse).
  define: { 'import.meta': '__drydockImportMeta' },
  banner: { js: "'use strict';const __drydockImportMeta={filename:__filename,get url(){return require('node:url').pathToFileURL(__filename).href}};" },
  logLevel: 'warning',
};

rmSync(tmp, { recursive: true, force: true });
const modules = await commandModules();
const bundles = [
  ...modules.map((m) => ({ name: m, entry: 'src/cli/main.ts', keep: [m] })),
  { name: 'all', entry: 'src/cli/main.ts', keep: undefined },
  { name: 'version', entry: 'src/cli/main.ts', keep: [] },
  { name: 'drydock', entry: 'src/cli/launch.ts', keep: [] },
  { name: 'monitor-main', entry: 'src/runtime/monitor-main.ts', keep: undefined },
  { name: 'exec-monitor-main', entry: 'src/runtime/exec-monitor-main.ts', keep: undefined },
  { name: 'snapshot-worker-main', entry: 'src/builder/snapshot-worker-main.ts', keep: undefined },
];
await Promise.all([...bundles.map((b) => build({
  ...common,
  entryPoints: [b.entry],
  outfile: path.join(tmp, `${b.name}.cjs`),
  plugins: [onlyModules(b.keep), lazyBuiltins, awsSdkApart],
})), build({
  ...common,
  stdin: { contents: "module.exports = require('@aws-sdk/client-s3');", resolveDir: root, loader: 'js' },
  outfile: path.join(tmp, AWS_SDK_BUNDLE),
  plugins: [lazyBuiltins],
})]);
// V8 holds a source with any non-ASCII character as a two-byte string: twice the bytes, and
// slower to compile from the code cache (about 2 ms for image.cjs). esbuild escapes strings but
// leaves regular expression literals as written (/µs/); \uXXXX means the same there.
for (const name of [...bundles.map((b) => `${b.name}.cjs`), AWS_SDK_BUNDLE]) {
  const file = path.join(tmp, name);
  const original = readFileSync(file, 'utf8');
  let text = memoizeToEsm(original);
  if (/[^\x00-\x7f]/.test(text)) text = text.replace(/[^\x00-\x7f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  if (text !== original) writeFileSync(file, text);
}
// Swap in the new bundles whole (their code caches go with the old ones), so a running drydock
// never sees a half-written directory.
rmSync(out, { recursive: true, force: true });
renameSync(tmp, out);
