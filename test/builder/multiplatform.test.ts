// Multi-platform builds: `--platform linux/amd64,linux/arm64` builds one image per platform and
// tags an OCI index over them; FROM picks each platform's base from an index; RUN for arm64 runs
// a real aarch64 busybox (Debian's busybox-static:arm64) through qemu-user-static's binfmt_misc
// handler. The host's binfmt_misc state (mounted or not, handler registered/enabled or not) is
// restored exactly after the tests.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { builderFixture, type Fixture } from './helpers.js';
import { CLI_MAIN, PROJECT_ROOT, requireTool, runCli, tempDir } from '../helpers/env.js';
import { BINFMT_DIR, checkBinfmt } from '../../src/builder/binfmt.js';
import { canonicalName } from '../../src/store/images.js';
import { hostPlatform } from '../../src/image/platform.js';
import type { ImageConfig, ImageIndex } from '../../src/image/types.js';

const HANDLER = path.join(BINFMT_DIR, 'qemu-aarch64');
const CACHE = path.join(PROJECT_ROOT, 'test/.cache/busybox-arm64');

/** Debian's arm64 busybox-static, downloaded once into test/.cache (apt sources need arm64). */
function arm64Busybox(): string {
  const bin = path.join(CACHE, 'bin/busybox');
  if (existsSync(bin)) return bin;
  requireTool('dpkg-deb', 'apt-get install dpkg');
  const dl = path.join(CACHE, 'deb');
  execFileSync('mkdir', ['-p', dl]);
  if (!execFileSync('dpkg', ['--print-foreign-architectures'], { encoding: 'utf8' }).split('\n').includes('arm64')) {
    throw new Error('dpkg has no arm64 architecture: dpkg --add-architecture arm64 && apt-get update (scripts/setup.sh does it)');
  }
  execFileSync('apt-get', ['download', 'busybox-static:arm64'], { cwd: dl, stdio: 'pipe' });
  const deb = readdirDeb(dl);
  execFileSync('dpkg-deb', ['-x', path.join(dl, deb), path.join(CACHE, 'root')]);
  execFileSync('mkdir', ['-p', path.dirname(bin)]);
  execFileSync('cp', [path.join(CACHE, 'root/bin/busybox'), bin + '.tmp']);
  execFileSync('mv', [bin + '.tmp', bin]);
  return bin;
}

function readdirDeb(dir: string): string {
  const out = execFileSync('ls', [dir], { encoding: 'utf8' }).split('\n').find((f) => f.endsWith('_arm64.deb'));
  if (!out) throw new Error(`apt-get download busybox-static:arm64 left no .deb in ${dir}`);
  return out;
}

// ---- the host's binfmt_misc state, saved and restored -------------------------------------

interface BinfmtState { mounted: boolean; handler: 'absent' | 'enabled' | 'disabled' }

function binfmtState(): BinfmtState {
  const mounted = existsSync(path.join(BINFMT_DIR, 'status'));
  if (!mounted || !existsSync(HANDLER)) return { mounted, handler: 'absent' };
  return { mounted, handler: readFileSync(HANDLER, 'utf8').startsWith('enabled') ? 'enabled' : 'disabled' };
}

function restoreBinfmt(want: BinfmtState): void {
  const now = binfmtState();
  if (now.mounted && now.handler !== 'absent') {
    if (want.handler === 'absent') writeFileSync(HANDLER, '-1');
    else if (want.handler !== now.handler) writeFileSync(HANDLER, want.handler === 'enabled' ? '1' : '0');
  }
  if (!want.mounted && now.mounted) execFileSync('umount', [BINFMT_DIR]);
}

let fx: Fixture;
let hostBinfmt: BinfmtState;
let amd64Busybox: string;
let arm64: string;

before(async () => {
  fx = await builderFixture('multiplatform');
  requireTool('qemu-aarch64-static', 'apt-get install qemu-user-static');
  requireTool('update-binfmts', 'apt-get install binfmt-support');
  amd64Busybox = requireTool('busybox');
  arm64 = arm64Busybox();
  assert.match(execFileSync('file', ['-L', arm64], { encoding: 'utf8' }), /ARM aarch64.*statically linked/);
  hostBinfmt = binfmtState();
  if (!hostBinfmt.mounted) execFileSync('mount', ['-t', 'binfmt_misc', 'binfmt_misc', BINFMT_DIR]);
  const now = binfmtState().handler;
  if (now === 'absent') execFileSync('update-binfmts', ['--enable', 'qemu-aarch64'], { stdio: 'pipe' });
  else if (now === 'disabled') writeFileSync(HANDLER, '1');
  assert.equal(binfmtState().handler, 'enabled');
});

after(() => { if (hostBinfmt) restoreBinfmt(hostBinfmt); });

/** A context with both busybox builds under amd64/ and arm64/, as FROM scratch rootfs trees. */
async function rootfsContext(dockerfile: string): Promise<string> {
  const dir = await fx.context({ Dockerfile: dockerfile });
  for (const [arch, bin] of [['amd64', amd64Busybox], ['arm64', arm64]] as const) {
    await fsp.mkdir(path.join(dir, arch, 'bin'), { recursive: true });
    await fsp.copyFile(bin, path.join(dir, arch, 'bin/busybox'));
    await fsp.chmod(path.join(dir, arch, 'bin/busybox'), 0o755);
  }
  return dir;
}

const BASE_DOCKERFILE = [
  'FROM scratch',
  'ARG TARGETARCH',
  'COPY ${TARGETARCH}/ /',
  'RUN ["/bin/busybox", "--install", "-s", "/bin"]',
  '',
].join('\n');

async function readIndex(name: string): Promise<ImageIndex> {
  const desc = await fx.store.resolveTag(canonicalName(name));
  assert.ok(desc, `${name} is tagged`);
  assert.equal(desc.mediaType, 'application/vnd.oci.image.index.v1+json');
  return fx.store.readJsonBlob<ImageIndex>(desc.digest);
}

/** The file `file` in the image's last layer (or `back` layers before it), read with GNU tar. */
async function lastLayerFile(manifestDigest: string, file: string, back = 0): Promise<string> {
  const m = await fx.store.readJsonBlob<{ layers: { digest: string }[] }>(manifestDigest);
  const blob = fx.store.blobPath(m.layers[m.layers.length - 1 - back]!.digest);
  return execFileSync('tar', ['-xOzf', blob, file], { encoding: 'utf8' });
}

/** Seconds since boot from a /proc/uptime line a step wrote (one clock for every container). */
const uptime = (line: string) => Number(line.trim().split(/\s+/)[0]);

test('--platform linux/amd64,linux/arm64 tags an index; FROM takes each platform\'s base from it; arm64 RUN runs under qemu', async () => {
  const baseCtx = await rootfsContext(BASE_DOCKERFILE);
  await fx.build(baseCtx, { platform: 'linux/amd64,linux/arm64', tags: ['mp-base:1'] });
  const baseIndex = await readIndex('mp-base:1');
  assert.deepEqual(baseIndex.manifests.map((d) => d.platform?.architecture), ['amd64', 'arm64']);

  const ctx = await fx.context({
    Dockerfile: [
      'FROM mp-base:1',
      'ARG TARGETPLATFORM TARGETARCH BUILDPLATFORM',
      'RUN uname -m > /arch && echo "$TARGETPLATFORM $TARGETARCH $BUILDPLATFORM" > /args',
      '',
    ].join('\n'),
  });
  const r = await fx.build(ctx, { platform: 'linux/amd64,linux/arm64', tags: ['mp-app:1'] });
  assert.equal(r.platforms?.length, 2);
  const index = await readIndex('mp-app:1');
  assert.equal(index.manifests.length, 2);
  const seen: Record<string, { arch: string; args: string }> = {};
  for (const d of index.manifests) {
    const m = await fx.store.readJsonBlob<{ config: { digest: string } }>(d.digest);
    const config = await fx.store.readJsonBlob<ImageConfig>(m.config.digest);
    assert.equal(config.architecture, d.platform?.architecture, 'config architecture matches the index entry');
    assert.equal(config.os, 'linux');
    seen[config.architecture] = { arch: (await lastLayerFile(d.digest, 'arch')).trim(), args: (await lastLayerFile(d.digest, 'args')).trim() };
  }
  assert.deepEqual(seen, {
    amd64: { arch: 'x86_64', args: 'linux/amd64 amd64 linux/amd64' },
    arm64: { arch: 'aarch64', args: 'linux/arm64 arm64 linux/amd64' },
  });
  // The per-platform images are kept by the index, not listed as dangling <none> images.
  const roots = await fx.store.listRoots();
  for (const d of index.manifests) assert.ok(!roots.includes(`built/${d.digest}`), 'no dangling root per platform');
});

test('a base index without the requested platform is a clear error', async () => {
  const baseCtx = await rootfsContext(BASE_DOCKERFILE);
  await fx.build(baseCtx, { platform: 'linux/amd64,linux/arm64', tags: ['mp-base:2'] });
  const ctx = await fx.context({ Dockerfile: 'FROM mp-base:2\nRUN true\n' });
  await assert.rejects(fx.build(ctx, { platform: 'linux/arm64,linux/s390x' }),
    /Dockerfile:1:1: base image "mp-base:2": no match for platform linux\/s390x: .*has no manifest for linux\/s390x \(it has: linux\/amd64, linux\/arm64\)/);
  // A single-platform base (the fixture's amd64 busybox manifest) serves only its own platform.
  const single = await fx.context({ Dockerfile: 'FROM busybox\nRUN true\n' });
  await assert.rejects(fx.build(single, { platform: 'linux/amd64,linux/arm64' }),
    /Dockerfile:1:1: image with reference busybox was found but does not match the specified platform: wanted linux\/arm64, actual: linux\/amd64/);
});

test('an arm64 RUN without the qemu-aarch64 binfmt handler fails naming it and how to register it', async () => {
  const ctx = await rootfsContext(BASE_DOCKERFILE.replace('RUN', 'RUN --network=none'));
  const saved = binfmtState();
  writeFileSync(HANDLER, '0');
  try {
    assert.equal(binfmtState().handler, 'disabled');
    await assert.rejects(fx.build(ctx, { platform: 'linux/amd64,linux/arm64', noCache: true }),
      (e: Error) => {
        assert.match(e.message, /Dockerfile:4:1: cannot run arm64 binaries on this amd64 host: the binfmt_misc handler qemu-aarch64 is disabled; enable it with: update-binfmts --enable qemu-aarch64/);
        return true;
      });
  } finally {
    restoreBinfmt(saved);
  }
  assert.equal(binfmtState().handler, 'enabled');
});

test('--platform a,b on the command line: -q and --iidfile give the index digest', async () => {
  const ctx = await rootfsContext(BASE_DOCKERFILE);
  const iid = path.join(ctx, 'iid');
  const r = await runCli(['build', '-q', '--platform', 'linux/arm64,linux/amd64', '--iidfile', iid, '-t', 'mp-cli:1', ctx], { root: fx.root });
  assert.equal(r.code, 0, r.stderr);
  const desc = await fx.store.resolveTag(canonicalName('mp-cli:1'));
  assert.equal(r.stdout.trim(), desc?.digest);
  assert.equal(readFileSync(iid, 'utf8'), desc?.digest);
  assert.deepEqual((await readIndex('mp-cli:1')).manifests.map((d) => d.platform?.architecture), ['arm64', 'amd64']);
});

// The other states of binfmt_misc, on a directory laid out like /proc/sys/fs/binfmt_misc (the
// host's own cannot be put in them without disturbing other users of it).
test('checkBinfmt names the missing piece for each binfmt_misc state', async () => {
  const cases: { name: string; files: Record<string, string>; arch: string; error?: RegExp }[] = [
    { name: 'not mounted', files: {}, arch: 'arm64', error: /binfmt_misc is not mounted at .*, so there is no qemu-aarch64 handler; mount binfmt_misc \(mount -t binfmt_misc binfmt_misc .*\) .*update-binfmts --enable qemu-aarch64/ },
    { name: 'globally disabled', files: { status: 'disabled\n' }, arch: 'arm64', error: /binfmt_misc is disabled .*echo 1 > / },
    { name: 'handler absent', files: { status: 'enabled\n' }, arch: 'riscv64', error: /no binfmt_misc handler qemu-riscv64 is registered; .*update-binfmts --enable qemu-riscv64/ },
    { name: 'handler disabled', files: { status: 'enabled\n', 'qemu-aarch64': 'disabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\n' }, arch: 'arm64', error: /handler qemu-aarch64 is disabled/ },
    { name: 'handler enabled', files: { status: 'enabled\n', 'qemu-aarch64': 'enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: POCF\n' }, arch: 'arm64' },
    { name: 'the host architecture needs nothing', files: {}, arch: hostPlatform().architecture },
  ];
  for (const c of cases) {
    const dir = tempDir('drydock-binfmt-');
    for (const [f, v] of Object.entries(c.files)) writeFileSync(path.join(dir, f), v);
    if (c.error) await assert.rejects(checkBinfmt(c.arch, dir), c.error, c.name);
    else await checkBinfmt(c.arch, dir);
  }
});

// ---- platforms at once, sharing platform-independent work ----------------------------------

/** A BUILDPLATFORM tools stage (the same key for every platform) and a per-platform RUN that sleeps. */
const CONCURRENT_DOCKERFILE = (base: string) => [
  `FROM --platform=$BUILDPLATFORM ${base} AS tools`,
  'RUN cat /proc/uptime > /stamp',
  `FROM ${base}`,
  'COPY --from=tools /stamp /tools-stamp',
  'RUN cat /proc/uptime > /start && sleep 2 && cat /proc/uptime > /end',
  '',
].join('\n');

test('--platform a,b builds the platforms at once; a FROM --platform=$BUILDPLATFORM stage runs once for both', async (t) => {
  await fx.build(await rootfsContext(BASE_DOCKERFILE), { platform: 'linux/amd64,linux/arm64', tags: ['mp-base:3'] });
  const ctx = await fx.context({ Dockerfile: CONCURRENT_DOCKERFILE('mp-base:3') });
  const t0 = Date.now();
  const r = await fx.build(ctx, { platform: 'linux/amd64,linux/arm64', tags: ['mp-conc:1'], noCache: true });
  const wall = (Date.now() - t0) / 1000;
  const [amd, arm] = r.platforms!;
  const span = async (img: typeof amd) => ({
    start: uptime(await lastLayerFile(img!.manifestDigest, 'start')),
    end: uptime(await lastLayerFile(img!.manifestDigest, 'end')),
  });
  const a = await span(amd);
  const b = await span(arm);
  t.diagnostic(`wall ${wall.toFixed(2)} s; amd64 RUN ${a.start.toFixed(2)}–${a.end.toFixed(2)}, arm64 RUN ${b.start.toFixed(2)}–${b.end.toFixed(2)} (sum ${(a.end - a.start + b.end - b.start).toFixed(2)} s)`);
  // Run one after the other, one RUN would start after the other ended; at once, they overlap.
  assert.ok(a.start < b.end && b.start < a.end, `the two platforms' RUN steps overlap: amd64 ${a.start}–${a.end}, arm64 ${b.start}–${b.end}`);
  assert.ok(a.end - a.start >= 2 && b.end - b.start >= 2, 'each RUN slept 2 s');
  // The tools stage ran once: both images carry the same stamp (two runs would write two times).
  const stampA = await lastLayerFile(amd!.manifestDigest, 'tools-stamp', 1);
  const stampB = await lastLayerFile(arm!.manifestDigest, 'tools-stamp', 1);
  assert.equal(stampA, stampB, 'one execution of the BUILDPLATFORM stage for both platforms');
  const toolsRuns = r.steps.filter((s) => s.instruction === 'RUN cat /proc/uptime > /stamp');
  assert.equal(toolsRuns.length, 2, 'each platform reports the step');
  assert.deepEqual(toolsRuns.map((s) => !!s.shared).sort(), [false, true], 'one executed it, the other took its result');
  assert.match(r.log, /\[linux\/(amd64|arm64)\] \[tools\]  ---> Using the result of the same step for linux\/(amd64|arm64)/);
  assert.match(r.log, /\[linux\/arm64\] \[stage-1\] Step 5\/5 : RUN cat \/proc\/uptime/);
});

test('--print-plan with several platforms: each platform\'s vertices, the shared ones marked', async () => {
  await fx.build(await rootfsContext(BASE_DOCKERFILE), { platform: 'linux/amd64,linux/arm64', tags: ['mp-base:5'] });
  const ctx = await fx.context({ Dockerfile: CONCURRENT_DOCKERFILE('mp-base:5') });
  const { planPlatforms } = await import('../../src/builder/index.js');
  const doc = await planPlatforms({ context: ctx, store: fx.store, platform: 'linux/amd64,linux/arm64' });
  assert.deepEqual(doc.platforms.map((p) => p.platform), ['linux/amd64', 'linux/arm64']);
  const table = doc.platforms.map((p) => p.vertices.map((v) => [v.instruction.split(' ').slice(0, 2).join(' '), v.shared]));
  // On amd64 (the build platform) the target's FROM is the tools stage's FROM: the same key.
  const expected = (fromShared: boolean) => [
    ['FROM --platform=$BUILDPLATFORM', true], ['RUN cat', true], ['FROM mp-base:5', fromShared], ['COPY --from=tools', false], ['RUN cat', false],
  ];
  assert.deepEqual(table, [expected(hostPlatform().architecture === 'amd64'), expected(hostPlatform().architecture === 'arm64')]);
  assert.equal(doc.shared.length, 2);
  assert.ok(doc.platforms[0]!.vertices[4]!.key !== doc.platforms[1]!.vertices[4]!.key, 'the per-platform RUN differs');

  const r = await runCli(['build', '--print-plan', '--platform', 'linux/amd64,linux/arm64', ctx], { root: fx.root });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^build plan: 2 platforms \(linux\/amd64, linux\/arm64\), 2 vertices shared \(1 of them run once for all\)\n/);
  assert.match(r.stdout, /\nplatform linux\/arm64: build plan: 2 stages, 5 vertices, [0-3] of 3 steps cached, target stage-1\n/);
  assert.equal(r.stdout.match(/RUN cat \/proc\/uptime > \/stamp {2}\(shared\)/g)?.length, 2);
  assert.doesNotMatch(r.stdout, /sleep 2.*\(shared\)/);
  const json = await runCli(['build', '--print-plan', '--format', 'json', '--platform', 'linux/amd64,linux/arm64', ctx], { root: fx.root });
  assert.equal(json.code, 0, json.stderr);
  assert.deepEqual(JSON.parse(json.stdout).shared, doc.shared);
});

// ---- --output with several platforms ---------------------------------------------------------

test('--output with several platforms, as BuildKit\'s exporters write it', async () => {
  await fx.build(await rootfsContext(BASE_DOCKERFILE), { platform: 'linux/amd64,linux/arm64', tags: ['mp-base:4'] });
  const ctx = await fx.context({
    Dockerfile: [
      'FROM mp-base:4 AS build',
      'ARG TARGETOS TARGETARCH',
      'RUN mkdir /out && echo foo > /out/hello-$TARGETOS-$TARGETARCH',
      'FROM scratch',
      'COPY --from=build /out /',
      '',
    ].join('\n'),
  });
  const both = 'linux/amd64,linux/arm64';
  const files = (dir: string) => execFileSync('find', ['.', '-mindepth', '1'], { cwd: dir, encoding: 'utf8' }).split('\n').filter(Boolean).sort();
  const cases: { name: string; platform: string; type: 'local' | 'tar' | 'oci' | 'docker'; platformSplit?: boolean; pre?: string[]; expect: (dest: string) => Promise<void> | void; error?: RegExp }[] = [
    {
      name: 'local, split by platform (the default with several)', platform: both, type: 'local',
      expect: (d) => assert.deepEqual(files(d), ['./linux_amd64', './linux_amd64/hello-linux-amd64', './linux_arm64', './linux_arm64/hello-linux-arm64']),
    },
    {
      name: 'local, platform-split=false merges into DIR and keeps its files', platform: both, type: 'local', platformSplit: false, pre: ['keep'],
      expect: (d) => assert.deepEqual(files(d), ['./hello-linux-amd64', './hello-linux-arm64', './keep']),
    },
    {
      name: 'local, one platform: straight into DIR', platform: 'linux/arm64', type: 'local',
      expect: (d) => assert.deepEqual(files(d), ['./hello-linux-arm64']),
    },
    {
      name: 'local, one platform with platform-split=true', platform: 'linux/arm64', type: 'local', platformSplit: true,
      expect: (d) => assert.deepEqual(files(d), ['./linux_arm64', './linux_arm64/hello-linux-arm64']),
    },
    {
      name: 'tar: one directory per platform', platform: both, type: 'tar',
      expect: (f) => {
        const names = execFileSync('tar', ['-tf', f], { encoding: 'utf8' }).split('\n').filter(Boolean).sort();
        assert.deepEqual(names, ['linux_amd64/', 'linux_amd64/hello-linux-amd64', 'linux_arm64/', 'linux_arm64/hello-linux-arm64']);
        assert.equal(execFileSync('tar', ['-xOf', f, 'linux_arm64/hello-linux-arm64'], { encoding: 'utf8' }), 'foo\n');
      },
    },
    {
      name: 'oci: an index with both manifests, read by skopeo', platform: both, type: 'oci',
      expect: async (f) => {
        const top = JSON.parse(execFileSync('tar', ['-xOf', f, 'index.json'], { encoding: 'utf8' })) as ImageIndex;
        assert.equal(top.manifests.length, 1);
        assert.equal(top.manifests[0]!.mediaType, 'application/vnd.oci.image.index.v1+json');
        assert.equal(top.manifests[0]!.annotations?.['io.containerd.image.name'], canonicalName('mp-out:1'));
        const raw = JSON.parse(execFileSync('skopeo', ['inspect', '--raw', `oci-archive:${f}`], { encoding: 'utf8' })) as ImageIndex;
        assert.deepEqual(raw.manifests.map((m) => m.platform?.architecture), ['amd64', 'arm64']);
        const arm = JSON.parse(execFileSync('skopeo', ['inspect', '--override-arch', 'arm64', '--config', `oci-archive:${f}`], { encoding: 'utf8' })) as ImageConfig;
        assert.equal(arm.architecture, 'arm64');
      },
    },
    {
      name: 'docker: refused with BuildKit\'s error, nothing written', platform: both, type: 'docker',
      error: /^docker exporter does not currently support exporting manifest lists$/, expect: (f) => assert.ok(!existsSync(f)),
    },
  ];
  requireTool('skopeo');
  for (const c of cases) {
    const dest = path.join(tempDir('drydock-mp-out-'), c.type === 'local' ? 'out' : 'out.tar');
    for (const f of c.pre ?? []) { await fsp.mkdir(dest, { recursive: true }); await fsp.writeFile(path.join(dest, f), 'mine'); }
    const opts = { platform: c.platform, tags: ['mp-out:1'], output: { type: c.type, dest, ...(c.platformSplit !== undefined ? { platformSplit: c.platformSplit } : {}) } };
    if (c.error) await assert.rejects(fx.build(ctx, opts), (e: Error) => { assert.match(e.message, c.error!, c.name); return true; });
    else await fx.build(ctx, opts);
    await c.expect(dest);
  }
});

test('-o DIR and -o - (a tar on stdout, progress on stderr) on the command line', async () => {
  await fx.build(await rootfsContext(BASE_DOCKERFILE), { platform: 'linux/amd64,linux/arm64', tags: ['mp-base:6'] });
  const ctx = await fx.context({ Dockerfile: 'FROM mp-base:6\nARG TARGETARCH\nRUN echo $TARGETARCH > /arch\n' });
  const dir = path.join(tempDir('drydock-mp-cli-'), 'out');
  const r = await runCli(['build', '--platform', 'linux/amd64,linux/arm64', '-o', dir, ctx], { root: fx.root });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(readFileSync(path.join(dir, 'linux_arm64/arch'), 'utf8'), 'arm64\n');
  assert.ok(existsSync(path.join(dir, 'linux_amd64/bin/busybox')), 'the whole root filesystem');
  // The tar is binary: the shell sends stdout to a file (runCli decodes text).
  const f = path.join(tempDir('drydock-mp-cli-'), 'out.tar');
  const stderr = execFileSync('sh', ['-c', `"$0" "$1" build --platform linux/amd64,linux/arm64 -o - "$2" 2>&1 >"$3"`, process.execPath, CLI_MAIN, ctx, f],
    { env: { ...process.env, DRYDOCK_ROOT: fx.root }, encoding: 'utf8' });
  assert.match(stderr, /Successfully built index/);
  assert.equal(execFileSync('tar', ['-xOf', f, 'linux_amd64/arch'], { encoding: 'utf8' }), 'amd64\n');
  const bad = await runCli(['build', '--platform', 'linux/amd64,linux/arm64', '-o', 'type=docker,dest=x.tar', ctx], { root: fx.root });
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /docker exporter does not currently support exporting manifest lists/);
});

test('--cache-to mode=min with several platforms exports every platform\'s chain: a fresh store builds both from it without a RUN', async () => {
  const { RemoteCache } = await import('../../src/builder/remote-cache/index.js');
  const { build } = await import('../../src/builder/index.js');
  const { ContentStore } = await import('../../src/store/index.js');
  const ctx = await rootfsContext(BASE_DOCKERFILE.replace('RUN [', 'RUN ["/bin/busybox", "echo", "cache-min"]\nRUN ['));
  const cacheDir = path.join(tempDir('drydock-mp-cache-'), 'cache');
  const exporting = await RemoteCache.open(fx.store, { from: [], to: [{ type: 'local', dest: cacheDir, tag: 'latest', mode: 'min', ignoreError: false }] });
  const first = await fx.build(ctx, { platform: 'linux/amd64,linux/arm64', noCache: true, remoteCache: exporting });
  await exporting.export();
  await exporting.close();
  assert.equal(first.steps.filter((s) => s.instruction.startsWith('RUN') && !s.cached).length, 4, 'two RUN steps per platform ran');

  const fresh = await ContentStore.open(path.join(tempDir('drydock-mp-fresh-'), 'store'));
  const importing = await RemoteCache.open(fresh, { from: [{ type: 'local', src: cacheDir, tag: 'latest' }], to: [] });
  try {
    const r = await build({ context: ctx, store: fresh, platform: 'linux/amd64,linux/arm64', remoteCache: importing });
    const runs = r.steps.filter((s) => s.instruction.startsWith('RUN'));
    assert.equal(runs.length, 4);
    assert.ok(runs.every((s) => s.cached), `every platform's RUN came from the cache: ${JSON.stringify(runs)}`);
    // The same layers (history times of the layerless ARG after FROM scratch are not in a cache).
    for (const i of [0, 1]) assert.deepEqual(r.platforms![i]!.config.rootfs, first.platforms![i]!.config.rootfs, 'the same layers');
  } finally {
    await importing.close();
  }
});

/** A sleep length no other test run picks (the processes are looked for by it), about 5 minutes. */
const napSeconds = () => 240 + Math.floor(Math.random() * 120);

/** Pids of `sleep N` processes. */
async function sleeping(n: number): Promise<string[]> {
  return (await fsp.readdir('/proc')).filter((p) => {
    if (!/^\d+$/.test(p)) return false;
    try { return readFileSync(`/proc/${p}/cmdline`, 'utf8') === `sleep\0${n}\0`; } catch { return false; }
  });
}

test('one platform failing cancels the others: their running RUN is killed, nothing is tagged, the error names the platform', async () => {
  // The arm64 RUN waits (on a cache mount both platforms share) until the amd64 RUN is inside
  // its sleep, then fails; the amd64 RUN would sleep ~5 minutes if nothing killed it.
  const sync = `mp-cancel-${process.pid}-${Date.now()}`;
  const nap = napSeconds();
  const run = `RUN --mount=type=cache,id=${sync},target=/sync if [ "$TARGETARCH" = arm64 ]; then `
    + 'i=0; while [ ! -e /sync/amd64-sleeping ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; echo arm64 fails; exit 1; '
    + `fi; touch /sync/amd64-sleeping; echo amd64 sleeping; sleep ${nap}`;
  const ctx = await rootfsContext(`${BASE_DOCKERFILE}ARG TARGETARCH\n${run}\n`);
  const built = async () => (await fx.store.listRootEntries(['built/'])).map((r) => r.owner).sort();
  const builtBefore = await built();
  const t0 = Date.now();
  const err = await fx.build(ctx, { platform: 'linux/amd64,linux/arm64', tags: ['mp-cancel:1'], noCache: true }).then(
    () => assert.fail('the build succeeded'), (e: Error & { log?: string }) => e);
  const seconds = (Date.now() - t0) / 1000;
  assert.match(err.log ?? '', /\[linux\/amd64\] amd64 sleeping/, 'the amd64 RUN was running');
  assert.match(err.log ?? '', /\[linux\/arm64\] arm64 fails/);
  // BuildKit's vertex name: the platform, then the step within the stage (FROM is 1).
  assert.match(err.message, /^Dockerfile:6: \[linux\/arm64 4\/4\] RUN --mount=type=cache,id=mp-cancel-[^ ]+ if \[ "\$TARGETARCH" = arm64 \].*: process "\/bin\/sh -c if .*" did not complete successfully: exit code: 1$/);
  assert.ok(err.message.includes(`sleep ${nap}"`));
  assert.ok(seconds < 120, `cancelled promptly, not after the ${nap} s sleep (${seconds.toFixed(1)} s)`);
  assert.equal(await fx.store.resolveTag(canonicalName('mp-cancel:1')), undefined, 'no index tagged');
  assert.deepEqual(await built(), builtBefore, 'no platform image left behind');
  const containers = execFileSync('runc', ['--root', path.join(fx.root, 'runc'), 'list', '-q'], { encoding: 'utf8' }).trim();
  assert.equal(containers, '', 'no RUN container left');
  assert.deepEqual(await sleeping(nap), [], 'the amd64 sleep was killed');
  assert.deepEqual(await fsp.readdir(path.join(fx.root, 'builder')).catch(() => []), [], 'every step\'s scratch dir removed');
});

test('a failing step cancels at once, also its own platform\'s other running stages', async () => {
  // Both platforms' `slow` stage sleeps; arm64's `failing` stage fails once both sleeps run.
  // Without cancelling at the step, arm64 would wait for its own sleep before failing the build.
  const sync = `mp-cancel2-${process.pid}-${Date.now()}`;
  const mount = `--mount=type=cache,id=${sync},target=/sync`;
  const nap = napSeconds();
  const ctx = await rootfsContext([
    BASE_DOCKERFILE.replace('FROM scratch', 'FROM scratch AS base'),
    'FROM base AS slow',
    'ARG TARGETARCH',
    `RUN ${mount} touch /sync/$TARGETARCH-sleeping; sleep ${nap}`,
    'FROM base AS failing',
    'ARG TARGETARCH',
    `RUN ${mount} if [ "$TARGETARCH" = arm64 ]; then i=0; while ! [ -e /sync/amd64-sleeping -a -e /sync/arm64-sleeping ] && [ $i -lt 900 ]; do sleep 0.1; i=$((i+1)); done; exit 1; fi`,
    'FROM base',
    'COPY --from=slow /bin/busybox /a',
    'COPY --from=failing /bin/busybox /b',
    '',
  ].join('\n'));
  const t0 = Date.now();
  const err = await fx.build(ctx, { platform: 'linux/amd64,linux/arm64', noCache: true, parallelism: 4 }).then(
    () => assert.fail('the build succeeded'), (e: Error) => e);
  const seconds = (Date.now() - t0) / 1000;
  assert.match(err.message, /^Dockerfile:\d+: \[linux\/arm64 failing 2\/2\] RUN --mount=type=cache,id=mp-cancel2-[^ ]+ if .*: process ".*" did not complete successfully: exit code: 1$/);
  assert.ok(seconds < 120, `cancelled promptly, not after the ${nap} s sleeps (${seconds.toFixed(1)} s)`);
  assert.deepEqual(await sleeping(nap), [], 'both sleeps were killed');
});
