// `drydock build` through the CLI: Docker-compatible flags, stdin Dockerfiles, errors that name
// file:line:column, archives with --output, and the wrong-architecture explanation.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { tempDir, requireRoot, requireTool, runCli, CLI_MAIN } from '../helpers/env.js';
import { busyboxImage } from '../helpers/images.js';

const base = tempDir('drydock-builder-cli-');
const root = path.join(base, 'store');

async function context(name: string, files: Record<string, string>): Promise<string> {
  const dir = path.join(base, name);
  for (const [p, v] of Object.entries(files)) {
    await fsp.mkdir(path.dirname(path.join(dir, p)), { recursive: true });
    await fsp.writeFile(path.join(dir, p), v);
  }
  await fsp.mkdir(dir, { recursive: true });
  return dir;
}

before(async () => {
  requireRoot();
  requireTool('runc');
  await busyboxImage(root);
});

test('-f - reads the Dockerfile from stdin; -f may point outside the context; --format json', async () => {
  const dir = await context('stdin', { 'x.txt': 'x\n' });
  const r = await runCli(['build', '-q', '-f', '-', '-t', 'from-stdin', dir], { root, input: 'FROM busybox\nCOPY x.txt /\n' });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^sha256:[a-f0-9]{64}\n$/);

  const noContext = await runCli(['build', '-q', '-t', 'no-context', '-'], { root, input: 'FROM busybox\nRUN echo no context > /n\n' });
  assert.equal(noContext.code, 0, noContext.stderr);
  const empty = await runCli(['build', '-'], { root, input: '' });
  assert.match(empty.stderr, /the Dockerfile read from stdin is empty/);

  const outside = path.join(base, 'elsewhere.Dockerfile');
  await fsp.writeFile(outside, 'FROM busybox\nLABEL from=outside\n');
  const j = await runCli(['build', '--format', 'json', '-f', outside, dir], { root });
  assert.equal(j.code, 0, j.stderr);
  const parsed = JSON.parse(j.stdout) as { id: string; steps: { step: number; cached: boolean }[] };
  assert.match(parsed.id, /^sha256:/);
  assert.equal(parsed.steps.length, 2);
});

const failures: { name: string; dockerfile: string; stderr: RegExp; code?: number; args?: string[] }[] = [
  { name: 'unknown instruction', dockerfile: 'FROM busybox\n\n  RUNN echo\n', stderr: /^Error: Dockerfile:3:3: unknown instruction: RUNN \(did you mean RUN\?\)\n$/ },
  { name: 'bad substitution', dockerfile: 'FROM busybox\nENV A=${B\n', stderr: /^Error: Dockerfile:2:1: syntax error: missing '}'/ },
  { name: 'missing base image', dockerfile: 'FROM nosuchimage:1\n', stderr: /Dockerfile:1:1: base image "nosuchimage:1" not found locally and could not be pulled \(.+\); run drydock pull nosuchimage:1/ },
  { name: 'failing RUN exits with its code', dockerfile: 'FROM busybox\nRUN exit 42\n', stderr: /step 2\/2 "RUN exit 42": process "\/bin\/sh -c exit 42" did not complete successfully: exit code: 42/, code: 42 },
  { name: 'missing COPY source', dockerfile: 'FROM busybox\nCOPY nothere /x\n', stderr: /Dockerfile:2:1: COPY failed: file not found in build context: stat nothere: file does not exist/ },
  { name: 'unknown target', dockerfile: 'FROM busybox AS a\n', stderr: /target stage "b" could not be found \(stages: a\)/, args: ['--target', 'b'] },
  { name: 'SHELL needs JSON', dockerfile: 'FROM busybox\nSHELL /bin/bash -c\n', stderr: /Dockerfile:2:1: SHELL requires the arguments to be in JSON form/ },
];
for (const f of failures) {
  test(`error: ${f.name}`, async () => {
    const dir = await context(`fail-${f.name.replace(/\W+/g, '-')}`, { Dockerfile: f.dockerfile });
    const r = await runCli(['build', ...(f.args ?? []), dir], { root });
    assert.equal(r.code, f.code ?? 1, r.stderr);
    assert.match(r.stderr, f.stderr);
  });
}

test('a context that is missing or not a directory gets docker build\'s words, exit 1', async () => {
  const file = path.join(await context('ctx-file', { Dockerfile: 'FROM busybox\n' }), 'Dockerfile');
  const cases: [string, string][] = [
    [path.join(base, 'no-such-context'), `unable to prepare context: path "${path.join(base, 'no-such-context')}" not found\n`],
    [file, `unable to prepare context: context must be a directory: ${file}\n`],
  ];
  for (const [ctx, words] of cases) {
    const r = await runCli(['build', '-q', ctx], { root });
    assert.equal(r.code, 1, ctx);
    assert.equal(r.stderr, words);
  }
});

test('--output type=docker and type=oci write archives that skopeo reads', async () => {
  requireTool('skopeo');
  const dir = await context('output', { Dockerfile: 'FROM busybox\nCMD ["echo", "archived"]\n' });
  const docker = path.join(base, 'out-docker.tar');
  const oci = path.join(base, 'out-oci.tar');
  assert.equal((await runCli(['build', '-q', '-t', 'archived:1', '-o', `type=docker,dest=${docker}`, dir], { root })).code, 0);
  assert.equal((await runCli(['build', '-q', '-t', 'archived:1', '--output', `type=oci,dest=${oci}`, dir], { root })).code, 0);
  const a = JSON.parse(execFileSync('skopeo', ['inspect', '--config', `docker-archive:${docker}`], { encoding: 'utf8' }));
  const b = JSON.parse(execFileSync('skopeo', ['inspect', '--config', `oci-archive:${oci}`], { encoding: 'utf8' }));
  assert.deepEqual(a.config.Cmd, ['echo', 'archived']);
  assert.deepEqual(b.config.Cmd, ['echo', 'archived']);
});

test('RUN of a foreign-architecture binary without a qemu binfmt handler names the handler', async () => {
  // A minimal aarch64 ELF header: the kernel refuses it with ENOEXEC on this amd64 host.
  const elf = Buffer.alloc(64);
  elf.write('\x7fELF', 0, 'latin1');
  elf[4] = 2; elf[5] = 1; elf[6] = 1; // 64-bit, little endian, version 1
  elf.writeUInt16LE(2, 16); // ET_EXEC
  elf.writeUInt16LE(183, 18); // EM_AARCH64
  elf.writeUInt32LE(1, 20);
  const dir = await context('arch', { Dockerfile: 'FROM scratch\nCOPY --chmod=755 hello-arm64 /hello\nRUN ["/hello"]\n' });
  await fsp.writeFile(path.join(dir, 'hello-arm64'), elf);
  const r = await runCli(['build', '--platform', 'linux/arm64', dir], { root });
  assert.notEqual(r.code, 0);
  // This host has binfmt_misc unmounted (test/builder/multiplatform.test.ts restores that state).
  assert.match(r.stderr, /cannot run arm64 binaries on this amd64 host: .*qemu-aarch64.*update-binfmts --enable qemu-aarch64\), or build for linux\/amd64/);
});

test('Ctrl-C stops the build: exit 130, no mounts or work dirs left', async () => {
  const dir = await context('interrupt', { Dockerfile: 'FROM busybox\nRUN echo started; sleep 60\nRUN echo never\n' });
  const child = spawn(process.execPath, ['--import', 'tsx', CLI_MAIN, 'build', dir], { env: { ...process.env, DRYDOCK_ROOT: root }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => {
    out += d;
    if (out.includes('started') && !child.killed) child.kill('SIGINT');
  });
  child.stderr.on('data', (d) => (out += d));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  assert.equal(code, 130, out);
  assert.match(out, /build interrupted/);
  assert.doesNotMatch(out, /echo never/);
  const mounts = await fsp.readFile('/proc/self/mounts', 'utf8');
  assert.ok(!mounts.includes(path.join(root, 'builder')), 'no overlay mount left');
  assert.deepEqual(await fsp.readdir(path.join(root, 'builder')), []);
});

test('builder prune drops the cache: the next build reruns its steps', async () => {
  const dir = await context('prune', { Dockerfile: 'FROM busybox\nRUN echo prune > /p\n' });
  assert.equal((await runCli(['build', dir], { root })).code, 0);
  assert.match((await runCli(['build', dir], { root })).stdout, /Using cache/);
  const pruned = await runCli(['builder', 'prune', '-f', '--format', 'json'], { root });
  assert.equal(pruned.code, 0, pruned.stderr);
  assert.ok((JSON.parse(pruned.stdout) as { removed: number }).removed >= 1);
  const after = await runCli(['build', dir], { root });
  assert.doesNotMatch(after.stdout, /Using cache/);
});

test('--help shows examples', async () => {
  const r = await runCli(['build', '--help']);
  assert.equal(r.code, 0);
  assert.match(r.stdout, /drydock build -t myapp:1\.0 \./);
  assert.match(r.stdout, /--build-arg/);
});

/**
 * Runs the CLI under strace (-ff: one log per thread, so no call is split in two) and returns
 * each traced call with the thread that made it and whether that was the main thread.
 */
async function stracedCli(args: string[], logDir: string): Promise<{ main: boolean; line: string }[]> {
  requireTool('strace');
  const log = path.join(logDir, 'strace');
  const fromSource = CLI_MAIN.endsWith('.ts');
  execFileSync('strace', ['-ff', '-qq', '-y', '-o', log, '-e', 'trace=execve,openat,rename,renameat2,mkdir,mkdirat,unlink,unlinkat,rmdir,fsync,fdatasync,sync_file_range,syncfs',
    process.execPath, ...(fromSource ? ['--import', 'tsx'] : []), CLI_MAIN, ...args], { env: { ...process.env, DRYDOCK_ROOT: root }, stdio: ['ignore', 'ignore', 'pipe'] });
  const files = (await fsp.readdir(logDir)).filter((f) => f.startsWith('strace.'));
  const out: { main: boolean; line: string }[] = [];
  for (const f of files) {
    const lines = (await fsp.readFile(path.join(logDir, f), 'utf8')).split('\n').filter(Boolean);
    // The main thread is the one that exec'd node.
    const main = lines.some((l) => l.startsWith(`execve("${process.execPath}"`));
    for (const line of lines) out.push({ main, line });
  }
  return out;
}

test('a fully cached rebuild writes nothing, fsyncs nothing, and reads its cache and Dockerfile on the main thread', async () => {
  const files: Record<string, string> = { Dockerfile: 'FROM busybox\nCOPY data /data\nRUN du -s /data > /du.txt\nRUN echo late > /late\nCMD ["sh"]\n' };
  for (let d = 0; d < 4; d++) for (let f = 0; f < 4; f++) files[`data/d${d}/f${f}.txt`] = `file ${d}/${f}\n`.repeat(100);
  const dir = await context('no-writes', files);
  assert.equal((await runCli(['build', '-q', '-t', 'no-writes', dir], { root })).code, 0);
  const calls = await stracedCli(['build', '-q', '-t', 'no-writes', dir], tempDir('drydock-strace-build-'));
  const inStore = calls.filter((c) => c.line.includes(root));
  // No file opened for writing, created, renamed, removed; mkdir -p of dirs that exist is fine.
  const writes = inStore.filter((c) => /^open(at)?\(.*O_(WRONLY|RDWR|CREAT)/.test(c.line) || /^(rename|renameat2|unlink|unlinkat|rmdir)\(/.test(c.line) || (/^mkdir(at)?\(/.test(c.line) && !/EEXIST/.test(c.line)));
  assert.deepEqual(writes.map((c) => c.line), []);
  assert.deepEqual(calls.filter((c) => /^(fsync|fdatasync|sync_file_range|syncfs)\(/.test(c.line)).map((c) => c.line), []);
  // The step cache entries (3 steps) and the context's hash cache are read synchronously: each
  // open on the thread pool is a round trip that, on a loaded host, waits for a CPU.
  const cacheOpens = inStore.filter((c) => /^openat\(.*\/cache\/(steps|context)\//.test(c.line));
  assert.ok(cacheOpens.filter((c) => c.line.includes('/cache/steps/')).length >= 3, cacheOpens.map((c) => c.line).join('\n'));
  assert.ok(cacheOpens.some((c) => c.line.includes('/cache/context/')), cacheOpens.map((c) => c.line).join('\n'));
  assert.deepEqual(cacheOpens.filter((c) => !c.main).map((c) => c.line), [], 'cache files opened on the thread pool');
  const dockerfileOpens = calls.filter((c) => /^openat\(/.test(c.line) && c.line.includes(`${dir}/Dockerfile"`));
  assert.ok(dockerfileOpens.length >= 1 && dockerfileOpens.every((c) => c.main), dockerfileOpens.map((c) => c.line).join('\n'));
});
