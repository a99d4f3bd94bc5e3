// Container security defaults, as in Docker: the containers-common seccomp profile (Seccomp: 2),
// Docker's 14 capabilities, --cap-add/--cap-drop (ALL too), --security-opt seccomp=unconfined|FILE
// and no-new-privileges, --privileged; working directories are checked by what they resolve to.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp, existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { runtimeFixture, type RuntimeFixture } from './helpers.js';
import { tempDir } from '../helpers/env.js';
import { convertProfile, DEFAULT_SECCOMP_PROFILE, ia32ExitProgram, kernelRunsIa32, kernelRunsX32, presentArchitectures, withoutAbsentAbis } from '../../src/runtime/seccomp.js';
import { spawnSync } from 'node:child_process';
import { gunzipSync } from 'node:zlib';
import { effectiveCapabilities } from '../../src/runtime/capabilities.js';

let fx: RuntimeFixture;
before(async () => { fx = await runtimeFixture('sec'); });
after(async () => { await fx?.cleanup(); });

/** Seccomp mode, CapEff and NoNewPrivs of the container's command, from /proc/self/status. */
async function status(flags: string[]): Promise<Record<string, string>> {
  const out = await fx.ok(['run', '--rm', '--network', 'none', ...flags, 'busybox', 'grep', '-E', '^(Seccomp|CapEff|CapBnd|NoNewPrivs):', '/proc/self/status']);
  return Object.fromEntries(out.trim().split('\n').map((l) => l.split(/:\s+/) as [string, string]));
}

// --privileged hands on every capability drydock holds (a sandbox may lack some).
const allMask = BigInt(`0x${readFileSync('/proc/self/status', 'utf8').match(/^CapBnd:\s*([0-9a-f]+)$/m)![1]}`);
const hex = (n: bigint) => n.toString(16).padStart(16, '0');

const cases: [string, string[], { Seccomp: string; CapEff: string; NoNewPrivs: string }][] = [
  ['default: the seccomp filter and Docker\'s capability mask', [], { Seccomp: '2', CapEff: '00000000a80425fb', NoNewPrivs: '0' }],
  ['--security-opt seccomp=unconfined', ['--security-opt', 'seccomp=unconfined'], { Seccomp: '0', CapEff: '00000000a80425fb', NoNewPrivs: '0' }],
  ['--privileged', ['--privileged'], { Seccomp: '0', CapEff: hex(allMask), NoNewPrivs: '0' }],
  ['--cap-drop ALL', ['--cap-drop', 'ALL'], { Seccomp: '2', CapEff: '0000000000000000', NoNewPrivs: '0' }],
  ['--cap-drop ALL --cap-add net_bind_service', ['--cap-drop', 'ALL', '--cap-add', 'net_bind_service'], { Seccomp: '2', CapEff: '0000000000000400', NoNewPrivs: '0' }],
  ['--cap-drop CHOWN --cap-add CAP_SYS_ADMIN', ['--cap-drop', 'CHOWN', '--cap-add', 'CAP_SYS_ADMIN'], { Seccomp: '2', CapEff: hex(BigInt(0xa80425fb) - BigInt(1) + (BigInt(1) << BigInt(21))), NoNewPrivs: '0' }],
  ['--security-opt no-new-privileges', ['--security-opt', 'no-new-privileges'], { Seccomp: '2', CapEff: '00000000a80425fb', NoNewPrivs: '1' }],
];

for (const [name, flags, want] of cases) {
  test(`/proc/self/status: ${name}`, async () => {
    const s = await status(flags);
    assert.deepEqual({ Seccomp: s.Seccomp, CapEff: s.CapEff, NoNewPrivs: s.NoNewPrivs }, want);
  });
}

test('mount and unshare fail by default and work with --privileged', async () => {
  for (const cmd of [['mount', '-t', 'tmpfs', 'none', '/tmp'], ['unshare', '-m', 'true']]) {
    const denied = await fx.cli(['run', '--rm', '--network', 'none', 'busybox', ...cmd]);
    assert.notEqual(denied.code, 0, `${cmd.join(' ')} worked without --privileged`);
    assert.match(denied.stderr, /permission denied|not permitted/i);
    await fx.ok(['run', '--rm', '--network', 'none', '--privileged', 'busybox', ...cmd]);
  }
  // Privileged: writable /sys and the host's devices.
  const mounts = await fx.ok(['run', '--rm', '--privileged', 'busybox', 'sh', '-c', "grep ' /sys sysfs ' /proc/mounts; ls /dev"]);
  assert.match(mounts, /^sysfs \/sys sysfs rw,/m);
  assert.match(mounts, /^loop-control$/m);
});

test('the seccomp filter refuses what capabilities alone would allow', async () => {
  // swapon is in the profile's always-EPERM group: even with every capability it is refused
  // under the filter; without it the kernel itself answers (the file is no swap area).
  const filtered = await fx.cli(['run', '--rm', '--network', 'none', '--cap-add', 'ALL', 'busybox', 'swapon', '/etc/passwd']);
  assert.match(filtered.stderr, /Operation not permitted/);
  const unfiltered = await fx.cli(['run', '--rm', '--network', 'none', '--cap-add', 'ALL', '--security-opt', 'seccomp=unconfined', 'busybox', 'swapon', '/etc/passwd']);
  assert.match(unfiltered.stderr, /swapon: \/etc\/passwd: /);
  assert.doesNotMatch(unfiltered.stderr, /Operation not permitted/);
});

test('--security-opt seccomp=FILE applies a profile of our own; bad options fail at create', async () => {
  const dir = tempDir('drydock-seccomp-');
  const file = path.join(dir, 'no-mkdir.json');
  await fsp.writeFile(file, JSON.stringify({
    defaultAction: 'SCMP_ACT_ALLOW',
    syscalls: [{ names: ['mkdir', 'mkdirat'], action: 'SCMP_ACT_ERRNO', errnoRet: 1 }],
  }));
  const r = await fx.cli(['run', '--rm', '--network', 'none', '--security-opt', `seccomp=${file}`, 'busybox', 'mkdir', '/tmp/x']);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /Operation not permitted/);
  const bad: [string[], RegExp][] = [
    [['--cap-add', 'BOGUS'], /unknown capability: "CAP_BOGUS"/],
    [['--security-opt', 'seccomp=/nonexistent.json'], /cannot read seccomp profile \/nonexistent\.json/],
    [['--security-opt', 'bogus'], /invalid --security-opt: "bogus"/],
  ];
  for (const [flags, message] of bad) {
    const b = await fx.cli(['create', ...flags, 'busybox', 'true']);
    assert.equal(b.code, 1, `${flags.join(' ')} was accepted`);
    assert.match(b.stderr, message);
  }
});

test('the containers-common profile converts like containers/common: capability and arch conditions', async () => {
  const profile = JSON.parse(await fsp.readFile(DEFAULT_SECCOMP_PROFILE, 'utf8'));
  const actionsFor = (name: string, caps: string[], arch = 'amd64') =>
    convertProfile(profile, caps, arch).syscalls!.filter((s) => s.names.includes(name)).map((s) => s.action);
  const defaults = effectiveCapabilities({});
  assert.deepEqual(actionsFor('bpf', defaults), ['SCMP_ACT_ERRNO']);
  assert.deepEqual(actionsFor('bpf', [...defaults, 'CAP_SYS_ADMIN']), ['SCMP_ACT_ALLOW']);
  assert.deepEqual(actionsFor('chroot', defaults), ['SCMP_ACT_ALLOW']);
  assert.deepEqual(actionsFor('chroot', effectiveCapabilities({ capDrop: ['SYS_CHROOT'] })), ['SCMP_ACT_ERRNO']);
  assert.deepEqual(actionsFor('arch_prctl', defaults, 'amd64'), ['SCMP_ACT_ALLOW']);
  assert.deepEqual(actionsFor('arch_prctl', defaults, 'arm64'), []);
  const amd64 = convertProfile(profile, defaults, 'amd64');
  assert.deepEqual(amd64.architectures, ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32']);
  assert.equal(amd64.defaultAction, 'SCMP_ACT_ERRNO');
});

test('WORKDIR and -w are checked by what they resolve to inside the rootfs', async () => {
  const hostDir = tempDir('drydock-workdir-');
  await fx.ok(['run', '--name', 'mkwd', 'busybox', 'sh', '-c', `ln -s /proc/self/fd/7 /app; ln -s /dev/fd /fds; ln -s / ${'/lnk'}`]);
  await fx.ok(['commit', '-c', 'WORKDIR /app', 'mkwd', 'wd:1']);
  await fx.ok(['rm', 'mkwd']);
  const viaImage = await fx.cli(['run', '--rm', 'wd:1', 'pwd']);
  assert.equal(viaImage.code, 125);
  assert.match(viaImage.stderr, /working directory \/app resolves to \/proc\/self\/fd\/7 in the container/);
  const viaFlag = await fx.cli(['run', '--rm', '-w', '/fds/7', 'wd:1', 'pwd']);
  assert.notEqual(viaFlag.code, 0);
  const viaFlag2 = await fx.cli(['run', '--rm', '-w', '/lnk/fds/7', 'wd:1', 'pwd']);
  assert.match(viaFlag2.stderr, /resolves to \/dev\/fd\/7/);
  // A symlink to an absolute path stays inside the rootfs: the host's directory is not used.
  assert.equal(await fx.ok(['run', '--rm', '-w', `/lnk${hostDir}/new`, 'wd:1', 'pwd']), `${hostDir}/new\n`);
  assert.equal(existsSync(path.join(hostDir, 'new')), false);
  await fx.ok(['run', '-d', '--name', 'wdexec', 'busybox', 'sleep', '300']);
  const ex = await fx.cli(['exec', '-w', '/proc/self/fd/7', 'wdexec', 'pwd']);
  assert.notEqual(ex.code, 0);
  assert.match(ex.stderr, /a working directory under \/proc is refused/);
  await fx.ok(['rm', '-f', 'wdexec']);
});

test('kernelRunsX32 agrees with the kernel\'s config, and withoutAbsentAbis drops x32 (and x86) only where the probes say no', async (t) => {
  const config = existsSync('/proc/config.gz') ? gunzipSync(readFileSync('/proc/config.gz')).toString('utf8') : undefined;
  const profile = convertProfile(JSON.parse(await fsp.readFile(DEFAULT_SECCOMP_PROFILE, 'utf8')), effectiveCapabilities({}), 'amd64');
  const runs = await kernelRunsX32();
  // Built without the x32 ABI: the probe must say so (with it, the syscall.x32 boot flag decides).
  if (config && /^# CONFIG_X86_X32_ABI is not set$/m.test(config)) assert.equal(runs, false);
  else if (!config) t.diagnostic('no /proc/config.gz: only the filter half is checked');
  const trimmed = await withoutAbsentAbis(profile);
  const ia32 = await kernelRunsIa32();
  assert.deepEqual(trimmed.architectures, ['SCMP_ARCH_X86_64', ...(ia32 ? ['SCMP_ARCH_X86'] : []), ...(runs ? ['SCMP_ARCH_X32'] : [])]);
  // Every rule and the default action stay; the converted profile itself is not changed.
  assert.deepEqual({ ...trimmed, architectures: undefined }, { ...profile, architectures: undefined });
  assert.deepEqual(profile.architectures, ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32']);
  const arm = { ...profile, architectures: ['SCMP_ARCH_AARCH64', 'SCMP_ARCH_ARM'] };
  assert.equal(await withoutAbsentAbis(arm), arm);
});

test('kernelRunsIa32 agrees with the kernel\'s config and boot line, and its probe program is what a 32-bit exec runs', async (t) => {
  const config = existsSync('/proc/config.gz') ? gunzipSync(readFileSync('/proc/config.gz')).toString('utf8') : undefined;
  const cmdline = readFileSync('/proc/cmdline', 'utf8');
  const runs = await kernelRunsIa32();
  if (!config) t.diagnostic('no /proc/config.gz: the probe is checked against a direct exec only');
  else if (/^# CONFIG_IA32_EMULATION is not set$/m.test(config)) assert.equal(runs, false);
  else if (/^CONFIG_IA32_EMULATION=y$/m.test(config)) {
    // On unless the boot line (or the build's default, for a kernel booted without the flag) turns it off.
    const flag = /(?:^|\s)ia32_emulation=(\S+)/.exec(cmdline)?.[1];
    const off = flag !== undefined ? /^(0|n|no|off|false)$/i.test(flag) : /^CONFIG_IA32_EMULATION_DEFAULT_DISABLED=y$/m.test(config);
    assert.equal(runs, !off);
  }
  // The probe's program, executed here: exit status 42 where IA32 runs, ENOEXEC where it does not.
  const file = path.join(tempDir('drydock-ia32-'), 'exit42');
  await fsp.writeFile(file, ia32ExitProgram(), { mode: 0o755 });
  const r = spawnSync(file);
  if (runs) assert.equal(r.status, 42);
  else assert.equal((r.error as NodeJS.ErrnoException | undefined)?.code, 'ENOEXEC');
});

const architectureCases: { kernel: { x32: boolean; ia32: boolean }; want: string[] }[] = [
  { kernel: { x32: true, ia32: true }, want: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'] },
  { kernel: { x32: false, ia32: true }, want: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86'] },
  { kernel: { x32: true, ia32: false }, want: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X32'] },
  { kernel: { x32: false, ia32: false }, want: ['SCMP_ARCH_X86_64'] },
];
for (const c of architectureCases) {
  test(`presentArchitectures keeps x86_64 always, x86 only with IA32, x32 only with x32: ${JSON.stringify(c.kernel)}`, () => {
    assert.deepEqual(presentArchitectures(['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'], c.kernel), c.want);
    // Other architectures' lists pass unchanged.
    assert.deepEqual(presentArchitectures(['SCMP_ARCH_AARCH64', 'SCMP_ARCH_ARM'], c.kernel), ['SCMP_ARCH_AARCH64', 'SCMP_ARCH_ARM']);
  });
}
