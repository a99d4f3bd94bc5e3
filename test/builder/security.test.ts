// The security cases: sources cannot leave the context, destinations cannot leave the
// rootfs through symlinks in the image, WORKDIR under /proc is refused, hostile ADD tarballs are
// stopped by the foundation's extraction checks. Each case also checks the host was not touched.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import tar from 'tar-stream';
import { builderFixture, type Fixture } from './helpers.js';
import { runImage } from '../helpers/run-image.js';
import { tempDir, requireTool } from '../helpers/env.js';
import { execFileSync } from 'node:child_process';
import { kernelRunsIa32, kernelRunsX32 } from '../../src/runtime/seccomp.js';

let fx: Fixture;
/** A host dir the image's symlinks point at: must stay empty whatever the build does. */
let hostTarget: string;
before(async () => {
  fx = await builderFixture('security');
  hostTarget = tempDir('drydock-host-target-');
  // A base image whose symlinks aim at the host path, absolute and through "..".
  const dir = await fx.context({
    Dockerfile: `FROM busybox
RUN ln -s ${hostTarget} /abs-escape && ln -s ../../../../../../..${hostTarget} /rel-escape
`,
  });
  await fx.build(dir, { tags: ['evil-base'] });
});

async function hostTargetIsEmpty(): Promise<void> {
  assert.deepEqual(await fsp.readdir(hostTarget), [], 'nothing was written to the host');
}

async function hostileTar(file: string, entries: { name: string; type?: 'file' | 'symlink'; linkname?: string; content?: string }[]): Promise<void> {
  const pack = tar.pack();
  for (const e of entries) {
    if (e.type === 'symlink') pack.entry({ name: e.name, type: 'symlink', linkname: e.linkname });
    else pack.entry({ name: e.name }, e.content ?? 'pwned\n');
  }
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const c of pack) chunks.push(c as Buffer);
  await fsp.writeFile(file, Buffer.concat(chunks));
}

const refused: { name: string; files?: Record<string, string | { link: string }>; dockerfile: string; error: RegExp }[] = [
  { name: 'COPY ../ out of the context', dockerfile: 'FROM busybox\nCOPY ../outside /x\n', error: /Dockerfile:2:1: COPY failed: forbidden path outside the build context: \.\.\/outside/ },
  { name: 'COPY a/../../ out of the context', dockerfile: 'FROM busybox\nCOPY a/../../x /x\n', error: /forbidden path outside the build context/ },
  { name: 'ADD ../ out of the context', dockerfile: 'FROM busybox\nADD ../../etc/passwd /x\n', error: /ADD failed: forbidden path outside the build context/ },
  { name: 'COPY an absolute symlink out of the context', files: { passwd: { link: '/etc/passwd' } }, dockerfile: 'FROM busybox\nCOPY passwd /x\n', error: /forbidden path outside the build context: passwd is a symlink to \/etc\/passwd/ },
  { name: 'COPY a relative symlink out of the context', files: { up: { link: '../../../../etc' } }, dockerfile: 'FROM busybox\nCOPY up/passwd /x\n', error: /forbidden path outside the build context: up\/passwd is a symlink to \.\.\/\.\.\/\.\.\/\.\.\/etc/ },
  { name: 'RUN --mount bind source out of the context', dockerfile: 'FROM busybox\nRUN --mount=type=bind,source=../..,target=/m ls /m\n', error: /forbidden path outside the build context/ },
  { name: 'WORKDIR /proc/self/fd', dockerfile: 'FROM busybox\nWORKDIR /proc/self/fd/8\nRUN pwd\n', error: /Dockerfile:2:1: WORKDIR \/proc\/self\/fd\/8: a working directory under \/proc is refused/ },
  { name: 'relative WORKDIR into /proc', dockerfile: 'FROM busybox\nWORKDIR /\nWORKDIR proc/1/cwd\n', error: /under \/proc is refused/ },
];

for (const c of refused) {
  test(`refused: ${c.name}`, async () => {
    const dir = await fx.context({ ...(c.files ?? {}), Dockerfile: c.dockerfile });
    await assert.rejects(fx.build(dir), (e: Error) => { assert.match(e.message, c.error); return true; });
  });
}

test('destinations resolve symlinks inside the rootfs: COPY/ADD through /abs-escape and /rel-escape stay in the image', async () => {
  const dir = await fx.context({ 'f.txt': 'inside\n' });
  await hostileTar(path.join(dir, 'ok.tar'), [{ name: 'from-tar.txt', content: 'tar\n' }]);
  await fsp.writeFile(path.join(dir, 'Dockerfile'), `FROM evil-base
COPY f.txt /abs-escape/copied.txt
COPY f.txt /rel-escape/
ADD ok.tar /abs-escape/
WORKDIR /rel-escape/wd
RUN echo run > here.txt
`);
  await fx.build(dir, { tags: ['contained'] });
  await hostTargetIsEmpty();
  const r = await runImage(fx.root, 'contained', { args: ['sh', '-c', `cd ${hostTarget} && ls | tr "\\n" " " && cat wd/here.txt`] });
  assert.equal(r.out, 'copied.txt f.txt from-tar.txt wd run\n', 'the files landed at the symlink targets inside the image');
});

test('a directory COPY whose tree replaces an image symlink with a directory writes its files there, never through the old link', async () => {
  const files = Object.fromEntries(Array.from({ length: 12 }, (_, i) => [`tree/abs-escape/sub/f${i}.txt`, `${i}\n`]));
  const dir = await fx.context({ ...files, 'tree/abs-escape/top.txt': 'top\n', Dockerfile: 'FROM evil-base\nCOPY tree/ /\n' });
  await fx.build(dir, { tags: ['replaced'] });
  await hostTargetIsEmpty();
  const r = await runImage(fx.root, 'replaced', { args: ['sh', '-c', 'test -d /abs-escape && ! test -L /abs-escape && ls /abs-escape /abs-escape/sub | tr "\\n" " "'] });
  assert.equal(r.out, `/abs-escape: sub top.txt  /abs-escape/sub: ${Array.from({ length: 12 }, (_, i) => `f${i}.txt`).sort().join(' ')} `);
});

const hostileTars: { name: string; entries: Parameters<typeof hostileTar>[1]; error: RegExp }[] = [
  { name: '../ entry', entries: [{ name: '../../../../../../tmp/pwned.txt' }], error: /ADD failed: cannot extract evil\.tar: .*\.\./ },
  { name: 'absolute symlink then a file through it', entries: [{ name: 'link', type: 'symlink', linkname: '/' }, { name: 'link/etc/pwned' }], error: /ADD failed: cannot extract evil\.tar/ },
];
for (const c of hostileTars) {
  test(`hostile ADD tarball refused: ${c.name}`, async () => {
    const dir = await fx.context({ Dockerfile: 'FROM busybox\nADD evil.tar /x/\n' });
    const entries = c.entries.map((e) => (e.type === 'symlink' && e.linkname === '/' ? { ...e, linkname: hostTarget } : e));
    await hostileTar(path.join(dir, 'evil.tar'), entries);
    await assert.rejects(fx.build(dir), (e: Error) => { assert.match(e.message, c.error); return true; });
    await hostTargetIsEmpty();
    assert.equal(await fsp.stat('/tmp/pwned.txt').catch(() => undefined), undefined);
  });
}

test('a failing build leaves no mounts or work dirs behind', async () => {
  const dir = await fx.context({ Dockerfile: 'FROM busybox\nRUN exit 9\n' });
  await assert.rejects(fx.build(dir), /exit code: 9/);
  const mounts = await fsp.readFile('/proc/self/mounts', 'utf8');
  assert.ok(!mounts.includes(path.join(fx.root, 'builder')), 'no overlay mount left');
  assert.deepEqual(await fsp.readdir(path.join(fx.root, 'builder')), []);
});

test('RUN gets Docker\'s builder defaults: the default seccomp profile and the 14 capabilities', async () => {
  const dir = await fx.context({ Dockerfile: "FROM busybox\nRUN grep -E '^(Seccomp|CapEff|NoNewPrivs):' /proc/self/status\n" });
  const r = await fx.build(dir);
  assert.match(r.log, /^Seccomp:\s+2$/m);
  assert.match(r.log, /^CapEff:\s+00000000a80425fb$/m);
  assert.match(r.log, /^NoNewPrivs:\s+0$/m);
});

// Each write a RUN (host network, the builder's defaults) must not be able to make, with the
// error busybox prints for it. The cgroup cases are the host's hierarchies: with /sys bound from
// the host (rbind), they stayed writable under a read-only /sys.
const PIDS_CGROUP = 'd=/sys/fs/cgroup; [ -d $d/pids ] && d=$d/pids';
const unwritable: { name: string; cmd: string; error: RegExp }[] = [
  { name: 'a file in /sys', cmd: 'touch /sys/drydock-test', error: /Read-only file system/ },
  { name: 'a sysfs attribute', cmd: 'echo 1 > /sys/kernel/mm/ksm/run', error: /Read-only file system/ },
  // cgroup v1: the pids hierarchy; v2: the unified one at /sys/fs/cgroup.
  { name: 'a new cgroup', cmd: `${PIDS_CGROUP}; mkdir $d/drydock-test`, error: /Read-only file system/ },
  { name: 'a cgroup\'s limit', cmd: `${PIDS_CGROUP}; echo 1 > $d/pids.max`, error: /Read-only file system/ },
  { name: 'a sysctl', cmd: 'echo 1 > /proc/sys/kernel/ns_last_pid', error: /Read-only file system/ },
];

for (const c of unwritable) {
  test(`RUN cannot write: ${c.name}`, async (t) => {
    // Where the write did get through, it is undone on the host before the test fails.
    t.after(() => Promise.all(['/sys/fs/cgroup/pids/drydock-test', '/sys/fs/cgroup/drydock-test'].map((d) => fsp.rmdir(d).catch(() => {}))));
    const dir = await fx.context({ Dockerfile: `FROM busybox\nRUN (${c.cmd}) 2>&1; echo "exit $?"\n` });
    const r = await fx.build(dir, { noCache: true });
    assert.match(r.log, c.error);
    assert.doesNotMatch(r.log, /^exit 0$/m);
  });
}

test('RUN sees a fresh sysfs and, under /sys/fs/cgroup, only its own cgroups, all read-only', async () => {
  const dir = await fx.context({ Dockerfile: "FROM busybox\nRUN grep -E ' /sys(/| )' /proc/self/mountinfo; cat /proc/self/cgroup\n" });
  const r = await fx.build(dir, { noCache: true });
  assert.match(r.log, / \/ \/sys ro,[^ ]* - sysfs /, 'a sysfs of its own, not a bind of the host\'s');
  const cgroupMounts = [...r.log.matchAll(/^\d+ \d+ \S+ (\S+) (\/sys\/fs\/cgroup\S*) (\S+)(?: \S+)* - (cgroup2?) /gm)];
  assert.ok(cgroupMounts.length > 0, 'the container\'s cgroups are mounted');
  for (const [, root, at, opts, type] of cgroupMounts) {
    assert.match(opts!, /^ro,/, `${at} is read-only`);
    // cgroup v1: each hierarchy shows the container's cgroup, not the host's root of it.
    if (type === 'cgroup') assert.notEqual(root, '/', `${at} is the host's whole hierarchy`);
  }
});

test('RUN\'s seccomp filter covers x32 only where the kernel runs x32: a call with the x32 bit is refused either way', async () => {
  requireTool('gcc', 'apt-get install gcc libc6-dev');
  const src = path.join(tempDir('drydock-x32-probe-'), 'probe.c');
  // A native getpid, then getpid with the x32 bit (0x40000000 | 39).
  await fsp.writeFile(src, `#include <stdio.h>
#include <errno.h>
#include <unistd.h>
#include <sys/syscall.h>
int main(void) {
  printf("native %ld\\n", syscall(39)); fflush(stdout);
  long r = syscall(0x40000000L | 39);
  printf("x32 %ld errno %d\\n", r, r < 0 ? errno : 0); fflush(stdout);
  return 0;
}
`);
  const dir = await fx.context({ Dockerfile: 'FROM busybox\nCOPY probe /probe\nRUN /probe; echo "probe exit $?"\n' });
  execFileSync('gcc', ['-static', '-O2', '-o', path.join(dir, 'probe'), src]);
  const r = await fx.build(dir);
  assert.match(r.log, /^native [1-9][0-9]*$/m, 'x86_64 calls pass the filter');
  if (await kernelRunsX32()) {
    // The full profile: x32 calls are filtered like x86_64 ones and getpid runs.
    assert.match(r.log, /^x32 [1-9][0-9]* errno 0$/m);
    assert.match(r.log, /^probe exit 0$/m);
  } else {
    // No x32 section in the filter: libseccomp's x86_64 section kills the thread (SIGSYS, 31)
    // instead of the ENOSYS that the kernel would have returned.
    assert.doesNotMatch(r.log, /^x32 /m);
    assert.match(r.log, /^probe exit 159$/m);
  }
});

test('RUN\'s seccomp filter keeps its x86 (IA32) section where the kernel runs 32-bit calls: they meet the profile\'s rules', async () => {
  requireTool('gcc', 'apt-get install gcc libc6-dev');
  const src = path.join(tempDir('drydock-ia32-probe-'), 'probe.c');
  // 32-bit calls through int 0x80 from this 64-bit program: getpid (i386 20), which the profile
  // allows, and acct (i386 51), which it answers with EPERM (no CAP_SYS_PACCT).
  await fsp.writeFile(src, `#include <stdio.h>
static long i386_call(long nr, long a) { long r; __asm__ volatile ("int $0x80" : "=a"(r) : "a"(nr), "b"(a) : "memory"); return r; }
int main(void) {
  printf("i386 getpid %ld\\n", i386_call(20, 0)); fflush(stdout);
  printf("i386 acct %ld\\n", i386_call(51, 0)); fflush(stdout);
  return 0;
}
`);
  const dir = await fx.context({ Dockerfile: 'FROM busybox\nCOPY probe /probe\nRUN /probe; echo "probe exit $?"\n' });
  execFileSync('gcc', ['-static', '-O2', '-o', path.join(dir, 'probe'), src]);
  const r = await fx.build(dir, { noCache: true });
  if (await kernelRunsIa32()) {
    assert.match(r.log, /^i386 getpid [1-9][0-9]*$/m, 'an allowed 32-bit call runs');
    assert.match(r.log, /^i386 acct -1$/m, 'a refused one gets the profile\'s EPERM');
    assert.match(r.log, /^probe exit 0$/m);
  } else {
    // No 32-bit entry in the kernel: int 0x80 faults (SIGSEGV) before any filter.
    assert.doesNotMatch(r.log, /^i386 /m);
    assert.match(r.log, /^probe exit 139$/m);
  }
});

test('no runc state or container is left in the store\'s runc root after builds, failed ones too', async () => {
  const ok = await fx.context({ Dockerfile: 'FROM busybox\nRUN echo one > /one\nRUN echo two > /two\n' });
  await fx.build(ok, { noCache: true });
  const failing = await fx.context({ Dockerfile: 'FROM busybox\nRUN echo one > /one\nRUN exit 3\n' });
  await assert.rejects(fx.build(failing, { noCache: true }), /exit code: 3/);
  assert.deepEqual(await fsp.readdir(path.join(fx.root, 'runc')).catch(() => []), []);
  assert.equal(execFileSync('runc', ['--root', path.join(fx.root, 'runc'), 'list', '-q'], { encoding: 'utf8' }).trim(), '');
});

test('a WORKDIR that is a symlink into /proc is refused by what it resolves to, not by its text', async () => {
  const dir = await fx.context({ Dockerfile: 'FROM busybox\nRUN ln -s /proc/self/fd/7 /app\nWORKDIR /app\nRUN pwd\n' });
  await assert.rejects(fx.build(dir), /working directory \/app resolves to \/proc\/self\/fd\/7 in the container: a working directory under \/proc is refused/);
  // Through an image symlink to an absolute host path, WORKDIR is created inside the rootfs.
  const dir2 = await fx.context({ Dockerfile: 'FROM evil-base\nWORKDIR /abs-escape/made-by-workdir\nRUN pwd\n' });
  await fx.build(dir2);
  await hostTargetIsEmpty();
});
