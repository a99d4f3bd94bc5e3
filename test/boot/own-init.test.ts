// Automatic confirm and fallback for an image that boots its own init (here busybox init with
// /etc/inittab and rcS: the fastest real init under TCG; systemd's unit is checked by
// systemd-analyze verify). Under QEMU, one disk:
//  1. v2bad is pending (staged on the host into the data partition): its rcS hangs before the
//     confirm step, so the softdog the initramfs armed reboots the machine at the deadline.
//  2. v2bad is abandoned (1 try), v1 boots.
//  3. v2good is pending: its rcS finishes, drydock-os-confirm runs, the softdog is stopped with the
//     magic close, and the machine is still up well past the deadline.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { tempDir, runCli, requireRoot, requireTool } from '../helpers/env.js';
import { busyboxImage } from '../helpers/images.js';
import { ContentStore, resolveImage } from '../../src/store/index.js';
import { StoreImageSource } from '../../src/client/store-transport.js';
import { OsLayout, rollback, stageImage } from '../../src/os/index.js';
import { fetchKernel } from './kernel.js';
import { bootVm } from './qemu.js';

const work = tempDir('drydock-own-init-');
const root = path.join(work, 'store');
const REF = '10.0.2.2:5000/os/init:stable';
const DEADLINE = 90;
const MiB = 1024 * 1024;
const ids: Record<string, string> = {};
let kernel = '';

const INITTAB = `::sysinit:/etc/init.d/rcS
::once:/bin/sh -c 'sleep ${DEADLINE + 30}; echo STILL-UP-PAST-THE-DEADLINE'
::ctrlaltdel:/sbin/reboot
`;

async function buildInitImage(tag: string, rcS: string): Promise<void> {
  const dir = path.join(work, `ctx-${tag}`);
  await fsp.mkdir(dir, { recursive: true });
  await fsp.writeFile(path.join(dir, 'inittab'), INITTAB);
  await fsp.writeFile(path.join(dir, 'rcS'), rcS, { mode: 0o755 });
  await fsp.writeFile(path.join(dir, 'Dockerfile'), 'FROM busybox\nCOPY inittab /etc/inittab\nCOPY rcS /etc/init.d/rcS\nCMD ["/sbin/init"]\n');
  const r = await runCli(['build', '-q', '-t', tag, dir], { root });
  assert.equal(r.code, 0, r.stderr);
  const store = await ContentStore.open(root);
  ids[tag] = (await resolveImage(store, tag)).manifestDescriptor.digest.slice('sha256:'.length, 'sha256:'.length + 12);
}

const rcS = (version: string, hang = false) => `#!/bin/sh
mount -t proc proc /proc 2>/dev/null
echo "RCS ${version} $(cat /run/drydock/os-boot.conf | tr '\\n' ' ')"
${hang ? 'echo RCS-HANGS; sleep 100000' : ''}
`;

/** Stages `tag` as the pending deployment straight into the disk's data partition (loop-mounted). */
async function stagePending(disk: string, dataStart: number, tag: string): Promise<void> {
  const mnt = path.join(work, 'mnt');
  await fsp.mkdir(mnt, { recursive: true });
  execFileSync('mount', ['-o', `loop,offset=${dataStart}`, disk, mnt]);
  try {
    const layout = new OsLayout(mnt);
    const store = await ContentStore.open(root);
    const { deployment } = await stageImage(layout, new StoreImageSource(store, tag), REF, { kernel: false });
    await layout.updateState((s) => ({ ...s, pending: { id: deployment.id, triesLeft: 1, deadlineSeconds: DEADLINE } }));
  } finally {
    execFileSync('umount', [mnt]);
  }
}

before(async () => {
  requireRoot();
  for (const t of ['mksquashfs', 'mkfs.ext4', 'syslinux', 'qemu-system-x86_64', 'kexec']) requireTool(t);
  kernel = fetchKernel();
  await busyboxImage(root);
  await buildInitImage('init:v1', rcS('v1'));
  await buildInitImage('init:v2bad', rcS('v2bad', true));
  await buildInitImage('init:v2good', rcS('v2good'));
  // A CMD-style image: busybox with a command, which the drydock init runs as the service.
  const dir = path.join(work, 'ctx-cmd');
  await fsp.mkdir(dir, { recursive: true });
  await fsp.writeFile(path.join(dir, 'Dockerfile'), 'FROM busybox\nCMD ["sh", "-c", "echo CMD-SERVICE v1; sleep 100000"]\n');
  const r = await runCli(['build', '-q', '-t', 'init:cmd', dir], { root });
  assert.equal(r.code, 0, r.stderr);
  const store = await ContentStore.open(root);
  ids['init:cmd'] = (await resolveImage(store, 'init:cmd')).manifestDescriptor.digest.slice('sha256:'.length, 'sha256:'.length + 12);
});

test('own init: a pending deployment that never reaches its target is rebooted by the softdog and abandoned; one that does is confirmed', { timeout: 2_400_000 }, async (t) => {
  const disk = path.join(work, 'disk.img');
  const r = await runCli(['disk', 'init:v1', '-o', disk, '--kernel', kernel, '--updates-from', REF, '--init', 'image',
    '--boot-tries', '1', '--boot-deadline', String(DEADLINE), '--json'], { root, timeoutMs: 600_000 });
  assert.equal(r.code, 0, r.stderr);
  const built = JSON.parse(r.stdout);
  assert.equal(built.init.mode, 'image');
  const { dataStart } = built.layout;
  const v1 = ids['init:v1']!, bad = ids['init:v2bad']!, good = ids['init:v2good']!;
  const qemu = ['-drive', `file=${disk},format=raw,if=virtio`, '-nic', 'none'];

  await stagePending(disk, dataStart, 'init:v2bad');
  const b1 = await bootVm(qemu, { timeoutMs: 600_000 });
  assert.ok(b1.poweredOff, 'the softdog rebooted the machine (QEMU -no-reboot exits)');
  assert.match(b1.console, new RegExp(`drydock: deployment ${bad}: pending deployment, try 1`));
  assert.match(b1.console, new RegExp(`watchdog: the machine reboots in ${DEADLINE}s unless deployment ${bad} reaches its default target`));
  assert.match(b1.console, /RCS-HANGS/);
  assert.doesNotMatch(b1.console, /reached service started/);

  const b2 = await bootVm(qemu, { until: /RCS v1/, timeoutMs: 600_000 });
  assert.match(b2.console, new RegExp(`abandoning deployment ${bad}: did not reach service started within ${DEADLINE}s on 1 boot`));
  assert.match(b2.console, new RegExp(`drydock: deployment ${v1}: the default deployment`));
  assert.doesNotMatch(b2.console, /watchdog: the machine reboots/);

  await stagePending(disk, dataStart, 'init:v2good');
  const b3 = await bootVm(qemu, { until: /STILL-UP-PAST-THE-DEADLINE/, timeoutMs: 900_000 });
  assert.match(b3.console, new RegExp(`drydock: deployment ${good}: pending deployment, try 1`));
  assert.match(b3.console, /RCS v2good/);
  assert.match(b3.console, new RegExp(`deployment ${good} reached service started; it is now the default`));
  assert.ok(!b3.poweredOff, 'no reboot after the confirm');
  // The state the confirm wrote, read back from the disk. Read-write: QEMU was killed with the
  // machine up, so ext4 replays its journal, which a read-only loop device cannot.
  const mnt = path.join(work, 'mnt');
  execFileSync('mount', ['-o', `loop,offset=${dataStart}`, disk, mnt]);
  try {
    const s = await new OsLayout(mnt).readState();
    assert.deepEqual([s.default, s.rollback, s.pending, s.abandoned.map((a) => a.id)], [good, v1, null, [bad]]);
  } finally {
    execFileSync('umount', [mnt]);
  }
  t.diagnostic(`boots (${b1.accel}): ${[b1, b2, b3].map((b) => `${(b.elapsedMs / 1000).toFixed(0)} s`).join(', ')}`);
  await fsp.rm(disk, { force: true });
});

// A disk made from a CMD-style image: an upgrade to an image with its own init boots that init
// (the deployment's mode, not the disk's), and the rollback boots the drydock init again. The
// disk's startup script runs under both.
test('init mode per deployment: a CMD-style v1 upgraded to a busybox-init v2 boots busybox init; the rollback boots the drydock init; the startup script runs under both', { timeout: 1_800_000 }, async (t) => {
  const disk = path.join(work, 'disk-cmd.img');
  // The disk's startup script runs under whichever init the booted deployment uses.
  const script = path.join(work, 'startup.sh');
  await fsp.writeFile(path.join(work, 'startup.sh'), '#!/bin/sh\necho "STARTUP-SCRIPT ran as $(id -u)"\n');
  const r = await runCli(['disk', 'init:cmd', '-o', disk, '--kernel', kernel, '--updates-from', REF, '--startup-script', script,
    '--boot-tries', '1', '--boot-deadline', String(DEADLINE), '--json'], { root, timeoutMs: 600_000 });
  assert.equal(r.code, 0, r.stderr);
  const built = JSON.parse(r.stdout);
  assert.equal(built.init.mode, 'drydock');
  const { dataStart } = built.layout;
  const v1 = ids['init:cmd']!, v2 = ids['init:v2good']!;
  const qemu = ['-drive', `file=${disk},format=raw,if=virtio`, '-nic', 'none'];

  await stagePending(disk, dataStart, 'init:v2good');
  const b1 = await bootVm(qemu, { until: /reached service started; it is now the default/, timeoutMs: 600_000 });
  assert.match(b1.console, new RegExp(`drydock: deployment ${v2}: init /sbin/init \\(the image command /sbin/init is an init\\)`));
  assert.match(b1.console, /drydock: starting \/sbin\/init/);
  assert.match(b1.console, new RegExp(`watchdog: the machine reboots in ${DEADLINE}s unless deployment ${v2} reaches its default target`));
  assert.match(b1.console, /RCS v2good/);
  assert.match(b1.console, /RCS v2good[^]*STARTUP-SCRIPT ran as 0[^]*reached service started/, 'busybox init ran the startup script after its rcS, before the confirm');
  assert.doesNotMatch(b1.console, /CMD-SERVICE/);

  const mnt = path.join(work, 'mnt');
  execFileSync('mount', ['-o', `loop,offset=${dataStart}`, disk, mnt]);
  try {
    const s = await new OsLayout(mnt).readState();
    assert.deepEqual([s.default, s.rollback, s.pending], [v2, v1, null], 'busybox init confirmed v2');
    assert.equal((await rollback(mnt)).action, 'staged');
  } finally {
    execFileSync('umount', [mnt]);
  }
  const b2 = await bootVm(qemu, { until: /reached service started; it is now the default/, timeoutMs: 600_000 });
  assert.match(b2.console, new RegExp(`drydock: deployment ${v1}: init /\\.drydock/init \\(the image command runs as a supervised service\\)`));
  assert.match(b2.console, /CMD-SERVICE v1/);
  assert.match(b2.console, /STARTUP-SCRIPT ran as 0/, 'the drydock init ran the startup script');
  assert.doesNotMatch(b2.console, /RCS v/);
  assert.doesNotMatch(b2.console, /watchdog: the machine reboots/, 'the drydock init watches the deployment itself, no softdog');
  t.diagnostic(`boots (${b1.accel}): ${[b1, b2].map((b) => `${(b.elapsedMs / 1000).toFixed(0)} s`).join(', ')}`);
  await fsp.rm(disk, { force: true });
});
