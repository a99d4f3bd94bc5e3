// The installed `drydock` bin runs the esbuild bundles that `npm run build` writes to dist/cli/
// (scripts/bundle-cli.mjs): the bundles are what users start, so they must behave as dist/src does —
// one bundle per command module, commander errors, help, the code cache (src/cli/launch.ts), and
// the detached monitor, an entry that src/runtime/lifecycle.ts finds next to the code it runs from.
// Speed is bench/startup.ts's job.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { closeSync, copyFileSync, existsSync, openSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { busyboxImage } from '../helpers/images.js';
import { COMMAND_MODULES } from '../../src/cli/commands/index.js';
import { PROJECT_ROOT, requireRoot, requireTool, tempDir } from '../helpers/env.js';
import { canonicalName, ContentStore } from '../../src/store/index.js';

const BIN = path.join(PROJECT_ROOT, 'bin/drydock.js');
const require = createRequire(import.meta.url);

// Rebuilt here so the test checks today's sources, not whatever bundle the last build left.
const built = spawnSync(process.execPath, [path.join(PROJECT_ROOT, 'scripts/bundle-cli.mjs')], { encoding: 'utf8' });

/**
 * Runs the bin and lists the drydock files it read: a preload logs what fs opens and reads (the
 * CommonJS launcher and bundles), an ESM loader hook what Node's ESM loader resolves.
 */
const PRELOAD = path.join(tempDir('drydock-preload-'), 'log-reads.cjs');
writeFileSync(PRELOAD, 'const fs=require("fs");for(const f of ["openSync","readFileSync"]){const o=fs[f];fs[f]=function(p,...a){if(typeof p==="string")fs.writeSync(2,"LOADED "+p+"\\n");return o.call(this,p,...a)}}' +
  ';process.on("exit",()=>fs.writeSync(2,"BUILTINS "+process.moduleLoadList.filter((m)=>m.startsWith("NativeModule ")).map((m)=>m.slice(13)).join(" ")+"\\n"))\n');

function bin(args: string[], root: string, env: NodeJS.ProcessEnv = {}) {
  const hook = 'data:text/javascript,import{writeSync}from"node:fs";export async function resolve(s,c,n){const r=await n(s,c);if(r.url.startsWith("file:"))writeSync(2,"LOADED "+new URL(r.url).pathname+"\\n");return r}';
  const r = spawnSync(process.execPath, ['--no-warnings', '--experimental-loader', hook, '-r', PRELOAD, BIN, ...args], {
    encoding: 'utf8', env: { ...process.env, DRYDOCK_ROOT: root, ...env }, timeout: 120_000,
  });
  const loaded = [...new Set([...r.stderr.matchAll(/^LOADED (\S+)$/gm)].map((m) => path.relative(PROJECT_ROOT, m[1]!)))].filter((f) => !f.startsWith('..'));
  const builtins = (/^BUILTINS (.*)$/m.exec(r.stderr)?.[1] ?? '').split(' ');
  return { code: r.status, stdout: r.stdout, stderr: r.stderr.replace(/^(LOADED|BUILTINS) .*\n/gm, ''), loaded, builtins };
}

test('the bin runs the bundle of the command in dist/cli, never the per-file dist/src', () => {
  assert.equal(built.status, 0, built.stderr);
  assert.ok(existsSync(path.join(PROJECT_ROOT, 'dist/cli/drydock.cjs')));
  const root = tempDir();
  const v = bin(['--version'], root);
  assert.equal(v.code, 0, v.stderr);
  assert.match(v.stdout, /^\d+\.\d+\.\d+\n$/);
  // `--version` needs neither commander nor any command module: the launcher and version.cjs.
  assert.deepEqual(v.loaded.filter((f) => !/\.cache(\.tmp-\d+)?$/.test(f)).sort(), ['bin/drydock.js', 'dist/cli/drydock.cjs', 'dist/cli/version.cjs']);

  const images = bin(['images', '-q'], root);
  assert.equal(images.code, 0, images.stderr);
  assert.equal(images.stdout, '');
  // One bundle, the listing's (not the other image commands'), and nothing from dist/src or node_modules.
  assert.deepEqual(images.loaded.filter((f) => f.endsWith('.cjs')).sort(), ['dist/cli/drydock.cjs', 'dist/cli/image-list.cjs']);
  assert.ok(images.loaded.every((f) => !f.startsWith('dist/src/') && !f.startsWith('node_modules/')), images.loaded.join(' '));
  // Built-ins it never uses stay unloaded (scripts/bundle-cli.mjs makes them lazy): commander's
  // child_process (and the dgram it pulls in), the store's crypto.
  const again = bin(['images', '-q'], root);
  assert.equal(again.code, 0, again.stderr);
  for (const m of ['child_process', 'dgram', 'crypto', 'zlib']) assert.ok(!again.builtins.includes(m), `images -q loads ${m}`);
  assert.ok(again.builtins.includes('fs'));

  // commander's own errors still end the process with its message and status.
  const bad = bin(['images', '--no-such-flag'], root);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /error: unknown option '--no-such-flag'/);

  // Each module's bundle holds that module: its first command's help comes from it.
  for (const m of COMMAND_MODULES) {
    const h = bin([m.names[0]!, '--help'], root);
    assert.equal(h.code, 0, `${m.names[0]} --help: ${h.stderr}`);
    assert.match(h.stdout, new RegExp(`^Usage: drydock ([a-z-]+\\|)?${m.names[0]}[ |]`), h.stdout);
    assert.ok(h.loaded.includes(`dist/cli/${m.module}.cjs`), h.loaded.join(' '));
  }

  // No bundle keeps an import() (of a built-in, or esbuild): a vm.Script would need Node's
  // experimental importModuleDynamically, which warns on stderr (`drydock serve` did).
  for (const f of readdirSync(path.join(PROJECT_ROOT, 'dist/cli')).filter((n) => n.endsWith('.cjs'))) {
    const text = readFileSync(path.join(PROJECT_ROOT, 'dist/cli', f), 'utf8');
    const at = text.search(/\bimport\("/);
    assert.equal(at, -1, `${f} keeps an import() at offset ${at}`);
    // ASCII only: V8 would hold the source as a two-byte string, slower to run from the cache.
    const wide = text.search(/[^\x00-\x7f]/);
    assert.equal(wide, -1, `${f} has a non-ASCII character at offset ${wide}`);
  }

  // --help and unknown words run the bundle of every module.
  const help = bin(['--help'], root);
  assert.equal(help.code, 0, help.stderr);
  assert.match(help.stdout, /^Usage: drydock /);
  for (const word of ['images', 'run', 'build', 'serve', 'pull', 'os', 'wait', 'iso', 'mkimage', 'version']) assert.match(help.stdout, new RegExp(`^  ${word}\\b`, 'm'));
  assert.ok(help.loaded.includes('dist/cli/all.cjs'), help.loaded.join(' '));
});

/**
 * What a quick listing may load beyond a bare `node -e 0`: vm, for the launcher's code cache.
 * Anything else is a start-up regression: the stream family (a class extending a stream class in
 * a module the listing imports, or process.stdout instead of src/cli/stdout.ts), os, fs.promises
 * (with the readline, watchers and thread pool it brings: read the few files synchronously), or a
 * built-in read at module load (scripts/bundle-cli.mjs makes them lazy only until then).
 */
const QUICK_BUILTINS = [/^vm$/];

/** Runs the bin with stdout to a file: the Node built-ins it loaded, every file it read, and its output. */
function traced(args: string[], root: string) {
  const dir = tempDir('drydock-traced-');
  const out = path.join(dir, 'stdout');
  const fd = openSync(out, 'w');
  const run = (argv: string[]) => spawnSync(process.execPath, ['-r', PRELOAD, ...argv], {
    encoding: 'utf8', env: { ...process.env, DRYDOCK_ROOT: root }, stdio: ['ignore', fd, 'pipe'], timeout: 120_000,
  });
  const r = run([BIN, ...args]);
  const bare = run(['-e', '0']);
  closeSync(fd);
  const builtins = (text: string) => (/^BUILTINS (.*)$/m.exec(text)?.[1] ?? '').split(' ');
  const base = new Set(builtins(bare.stderr));
  return {
    code: r.status,
    stderr: r.stderr.replace(/^(LOADED|BUILTINS) .*\n/gm, ''),
    stdout: readFileSync(out, 'utf8'),
    extraBuiltins: builtins(r.stderr).filter((m) => !base.has(m)),
    read: [...new Set([...r.stderr.matchAll(/^LOADED (\S+)$/gm)].map((m) => m[1]!))],
  };
}

test('images and ps load no built-in beyond the allowed few, and images reads only what it prints', async () => {
  assert.equal(built.status, 0, built.stderr);
  const root = tempDir();
  const img = await busyboxImage(root);
  const store = await ContentStore.open(root);
  // A second name for the same image, and a tag whose manifest is missing (still listed, for rmi).
  await store.setTag(canonicalName('second:1'), (await store.resolveTag(canonicalName('busybox')))!);
  const index = JSON.parse(readFileSync(path.join(root, 'index.json'), 'utf8'));
  index.manifests.push({ ...index.manifests[0], digest: `sha256:${'0'.repeat(64)}`, annotations: { 'io.containerd.image.name': 'docker.io/library/gone:1' } });
  writeFileSync(path.join(root, 'index.json'), JSON.stringify(index));
  const full = traced(['images'], root); // computes and caches the layer sizes if the import did not
  assert.equal(full.code, 0, full.stderr);
  const manifest = `blobs/sha256/${img.manifestDescriptor.digest.slice(7)}`;
  const config = `blobs/sha256/${img.configDigest.slice(7)}`;
  const sizes = img.manifest.layers.map((l) => `sizes/${l.digest.slice(7)}`);
  const storeFiles = (read: string[]) => read.filter((f) => f.startsWith(`${root}/`)).map((f) => f.slice(root.length + 1)).sort();

  for (const [args, files] of [
    [['images'], ['index.json', manifest, config, ...sizes, `blobs/sha256/${'0'.repeat(64)}`]],
    // -q prints IDs, newest first: no layer sizes.
    [['images', '-q'], ['index.json', manifest, config, `blobs/sha256/${'0'.repeat(64)}`]],
  ] as const) {
    const r = traced([...args], root);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, (args as readonly string[]).includes('-q') ? new RegExp(`^${img.configDigest.slice(7, 19)}\n$`) : /^REPOSITORY +TAG +IMAGE ID +CREATED +SIZE\n(.*\n){3}$/);
    assert.deepEqual(r.extraBuiltins.filter((m) => !QUICK_BUILTINS.some((re) => re.test(m))), [], `${args.join(' ')} loads more than it needs`);
    // The launcher and one bundle (and its code cache) from the project; from the store, only this.
    assert.deepEqual(r.read.filter((f) => f.startsWith(`${PROJECT_ROOT}/`)).map((f) => path.relative(PROJECT_ROOT, f)).filter((f) => !f.endsWith('.cache')).sort(), ['bin/drydock.js', 'dist/cli/drydock.cjs', 'dist/cli/image-list.cjs']);
    assert.deepEqual([...new Set(storeFiles(r.read))], [...new Set(files)].sort(), args.join(' '));
  }
  // An empty store: the table's header, and still no stdout stream (src/cli/stdout.ts).
  for (const args of [['images'], ['images', '-q']]) {
    const empty = traced(args, tempDir());
    assert.equal(empty.code, 0, empty.stderr);
    assert.equal(empty.stdout, args.includes('-q') ? '' : 'REPOSITORY   TAG       IMAGE ID   CREATED   SIZE\n');
    assert.deepEqual(empty.extraBuiltins.filter((m) => !QUICK_BUILTINS.some((re) => re.test(m))), [], `${args.join(' ')} of an empty store loads more than it needs`);
  }
  for (const args of [['ps', '-q'], ['ps', '-a']]) {
    const r = traced(args, root);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.extraBuiltins.filter((m) => !QUICK_BUILTINS.some((re) => re.test(m))), [], `${args.join(' ')} loads more than it needs`);
  }
});

test('the code cache is written on the first run, used after, and never used for another build', () => {
  assert.equal(built.status, 0, built.stderr);
  const root = tempDir();
  // A bundle of its own, so the test does not race other runs of the real one.
  const dir = tempDir('drydock-bundle-');
  const bundle = path.join(dir, 'version.cjs');
  copyFileSync(path.join(PROJECT_ROOT, 'dist/cli/version.cjs'), bundle);
  const cache = `${bundle}.cache`;
  // Named like the bin, so the bundle's main.ts sees itself invoked and runs.
  const entry = path.join(dir, 'drydock.js');
  writeFileSync(entry, `const l = require(${JSON.stringify(path.join(PROJECT_ROOT, 'dist/cli/drydock.cjs'))}); l.runBundle(${JSON.stringify(bundle)}, { shape: l.argShape(process.argv.slice(2)) });\n`);
  const env: NodeJS.ProcessEnv = { ...process.env, DRYDOCK_ROOT: root };
  delete env.npm_package_version;
  const run = (flag = '--version') => spawnSync(process.execPath, [entry, flag], { encoding: 'utf8', env });
  const first = run();
  assert.equal(first.status, 0, first.stderr);
  assert.ok(existsSync(cache), 'the first run writes the cache');
  const header = readFileSync(cache).subarray(0, readFileSync(cache).indexOf(10)).toString();
  assert.match(header, new RegExp(`^drydock-code-cache ${process.version} ${process.arch} \\d+ ${statSync(bundle).size} `));
  const made = statSync(cache).mtimeMs;
  assert.equal(run().status, 0);
  assert.equal(statSync(cache).mtimeMs, made, 'a matching cache is used, not rewritten');
  // A command line of another shape (another flag) may run functions the cache lacks: it rewrites
  // the cache once, which then lists both shapes and is used as it is by either.
  const shapes = () => { const b = readFileSync(cache); const nl = b.indexOf(10); return JSON.parse(b.subarray(nl + 1, b.indexOf(10, nl + 1)).toString()); };
  assert.deepEqual(shapes(), [' --version']);
  assert.equal(run('-v').status, 0);
  assert.deepEqual(shapes(), [' --version', ' -v']);
  const grown = statSync(cache).mtimeMs;
  assert.notEqual(grown, made);
  for (const flag of ['-v', '--version']) assert.equal(run(flag).stdout, '0.1.0\n');
  assert.equal(statSync(cache).mtimeMs, grown, 'both shapes are in the cache');

  // A rebuilt bundle of the same length: V8 alone would take the old cache (it knows the source by
  // its length) and run the old code.
  const text = readFileSync(bundle, 'utf8');
  assert.ok(text.includes('"0.1.0"'));
  writeFileSync(bundle, text.replace('"0.1.0"', '"7.7.7"'));
  const after = run();
  assert.equal(after.status, 0, after.stderr);
  assert.equal(after.stdout, '7.7.7\n');
  assert.notEqual(statSync(cache).mtimeMs, made, 'the stale cache is replaced');
});

test('each command of a bundle has its own code cache, so one command never deserializes what another ran', () => {
  assert.equal(built.status, 0, built.stderr);
  const cli = path.join(PROJECT_ROOT, 'dist/cli');
  const { cacheFileFor } = require(path.join(cli, 'drydock.cjs')) as typeof import('../../src/cli/launch.js');
  for (const [bundle, args, cache] of [
    ['image-list', ['images', '-q'], 'image-list.cjs.images.cache'],
    ['image', ['--root', '/x', 'inspect', 'busybox'], 'image.cjs.inspect.cache'],
    ['all', ['--help'], 'all.cjs.cache'],
    ['all', ['imagse'], 'all.cjs.cache'], // a typo leaves no file of its own
    ['version', ['--version'], 'version.cjs.cache'],
  ] as const) assert.equal(cacheFileFor(path.join(cli, `${bundle}.cjs`), args), path.join(cli, cache), args.join(' '));

  const root = tempDir();
  assert.equal(bin(['inspect', '--help'], root).code, 0);
  const inspect = path.join(cli, 'image.cjs.inspect.cache');
  assert.ok(existsSync(inspect), 'inspect writes its cache');
  const made = statSync(inspect).mtimeMs;
  const size = statSync(inspect).size;
  const tag = bin(['tag', '--help'], root);
  assert.equal(tag.code, 0, tag.stderr);
  assert.ok(existsSync(path.join(cli, 'image.cjs.tag.cache')), 'tag writes a cache of its own');
  assert.equal(statSync(inspect).mtimeMs, made, "another command of the bundle leaves the inspect cache alone");
  assert.equal(statSync(inspect).size, size);
});

test('the bundled CLI starts a detached container through the bundled monitor', async () => {
  requireRoot();
  requireTool('runc');
  assert.equal(built.status, 0, built.stderr);
  const root = tempDir();
  await busyboxImage(root);
  const run = bin(['run', '-d', '--network', 'none', 'busybox', 'sh', '-c', 'echo from-the-monitor'], root);
  assert.equal(run.code, 0, run.stderr);
  const id = run.stdout.trim();
  const wait = bin(['wait', id], root);
  assert.equal(wait.stdout, '0\n', wait.stderr);
  assert.equal(bin(['logs', id], root).stdout, 'from-the-monitor\n');
  assert.equal(bin(['rm', id], root).code, 0);
});

test('a command whose code imports Node built-ins lazily runs from the code cache too (drydock build, twice)', () => {
  assert.equal(built.status, 0, built.stderr);
  const root = tempDir();
  const ctx = tempDir('drydock-bundle-ctx-');
  // FROM scratch and metadata only: no base image, no runc; the CLI's build action still does
  // `await import('node:net')` and the like, which a function restored from V8's cache cannot
  // do unless the bundle turned them into require().
  writeFileSync(path.join(ctx, 'Dockerfile'), 'FROM scratch\nENV A=1\nCMD ["/x"]\n');
  for (const round of ['first (writes the cache)', 'second (from the cache)']) {
    const r = bin(['build', '-q', ctx], root);
    assert.equal(r.code, 0, `${round}: ${r.stderr}`);
    assert.match(r.stdout, /^sha256:[a-f0-9]{64}\n$/, round);
    assert.ok(existsSync(path.join(PROJECT_ROOT, 'dist/cli/build.cjs.build.cache')), `${round}: the build command has its cache`);
  }
});

test('the AWS SDK is a bundle of its own, loaded only by the S3 backends (build.cjs starts without it)', async () => {
  assert.equal(built.status, 0, built.stderr);
  const dir = path.join(PROJECT_ROOT, 'dist/cli');
  // The SDK's user agent prefix is in its code: in aws-sdk-s3.cjs, in no command bundle.
  assert.match(readFileSync(path.join(dir, 'aws-sdk-s3.cjs'), 'utf8'), /aws-sdk-js/);
  for (const f of readdirSync(dir).filter((n) => n.endsWith('.cjs') && n !== 'aws-sdk-s3.cjs')) {
    assert.doesNotMatch(readFileSync(path.join(dir, f), 'utf8'), /aws-sdk-js/, `${f} carries a copy of the AWS SDK`);
  }
  const root = tempDir();
  const ctx = tempDir('drydock-bundle-ctx-');
  writeFileSync(path.join(ctx, 'Dockerfile'), 'FROM scratch\nENV A=1\n');
  const plain = bin(['build', '-q', ctx], root);
  assert.equal(plain.code, 0, plain.stderr);
  assert.ok(!plain.loaded.includes('dist/cli/aws-sdk-s3.cjs'), plain.loaded.join(' '));
  // Nor child_process, or the dgram it loads (git.ts's execFile): a build that runs no RUN or git
  // step needs neither (~10 ms of loading). (node:net is loaded here anyway: stdout is a pipe.)
  for (const m of ['child_process', 'dgram']) assert.ok(!plain.builtins.includes(m), `a metadata-only build loads ${m}`);
  // An S3 cache at a closed port: the import fails at the connection, so the SDK did load.
  const port = await new Promise<number>((resolve) => {
    const srv = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(p));
    });
  });
  const s3 = bin(['build', '-q', '--cache-from', `type=s3,region=us-east-1,bucket=b,endpoint_url=http://127.0.0.1:${port}`, ctx], root, { AWS_ACCESS_KEY_ID: 'x', AWS_SECRET_ACCESS_KEY: 'y' });
  assert.equal(s3.code, 0, s3.stderr);
  assert.match(s3.stderr, new RegExp(`failed to import cache manifest from s3://b/.*ECONNREFUSED 127\\.0\\.0\\.1:${port}`));
  assert.ok(s3.loaded.includes('dist/cli/aws-sdk-s3.cjs'), s3.loaded.join(' '));
});

test('a CommonJS module imported by several bundled modules gets one namespace object, whose getters read its exports', async () => {
  const { build } = await import('esbuild');
  // scripts/ is not compiled into dist/: the module is imported from the sources.
  const { memoizeToEsm } = (await import(pathToFileURL(path.join(PROJECT_ROOT, 'scripts/to-esm-memo.mjs')).href)) as { memoizeToEsm: (text: string) => string };
  const dir = tempDir('drydock-toesm-');
  writeFileSync(path.join(dir, 'dep.cjs'), 'exports.count = 0; exports.bump = () => { exports.count++; };\n');
  writeFileSync(path.join(dir, 'esm-flagged.cjs'), 'Object.defineProperty(exports, "__esModule", { value: true }); exports.default = "the default";\n');
  writeFileSync(path.join(dir, 'a.mjs'), 'import dep from "./dep.cjs"; import * as ns from "./dep.cjs"; export const a = dep; export const nsA = ns;\n');
  writeFileSync(path.join(dir, 'b.mjs'), 'import dep from "./dep.cjs"; import * as ns from "./dep.cjs"; import flagged from "./esm-flagged.cjs"; import fs from "node:fs"; export const b = dep; export const nsB = ns; export { flagged, fs };\n');
  writeFileSync(path.join(dir, 'entry.mjs'), 'import { a, nsA } from "./a.mjs"; import { b, nsB, flagged, fs } from "./b.mjs"; module.exports = { a, b, nsA, nsB, flagged, fs };\n');
  const out = await build({ entryPoints: [path.join(dir, 'entry.mjs')], bundle: true, write: false, format: 'cjs', platform: 'node', target: 'node20', minify: true, logLevel: 'silent' });
  const original = out.outputFiles[0]!.text;
  const run = (text: string) => {
    const module = { exports: {} as Record<string, unknown> };
    new Function('module', 'exports', 'require', text)(module, module.exports, require);
    return module.exports as { a: unknown; b: unknown; nsA: { count: number; bump(): void }; nsB: { count: number }; flagged: unknown; fs: typeof import('node:fs') };
  };
  const before = run(original);
  assert.notEqual(before.nsA, before.nsB, "esbuild's own helper makes a namespace per import (else this test checks nothing)");
  const memoized = memoizeToEsm(original);
  assert.notEqual(memoized, original, 'the helper was found and replaced');
  const after = run(memoized);
  assert.equal(after.nsA, after.nsB, 'one namespace object for the module');
  assert.equal(after.a, after.b);
  after.nsA.bump();
  assert.equal(after.nsB.count, 1, "the namespace's getters read the module's current exports");
  // An .mjs importer is in Node's mode: the default of a CommonJS module is its exports, __esModule or not.
  assert.deepEqual(after.flagged, before.flagged);
  assert.deepEqual(after.flagged, { default: 'the default' });
  assert.equal(after.fs.readFileSync, readFileSync);
  // Every bundle the build wrote has the memoized helper (or none at all).
  for (const f of readdirSync(path.join(PROJECT_ROOT, 'dist/cli')).filter((n) => n.endsWith('.cjs'))) {
    const text = readFileSync(path.join(PROJECT_ROOT, 'dist/cli', f), 'utf8');
    if (text.includes('.__esModule?')) assert.ok(text.includes('__drydockToEsmMemo'), `${f} has the memoized __toESM`);
  }
});
