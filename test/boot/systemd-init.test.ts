// Automatic confirm and fallback for an image with systemd as its own init, made the way a user
// makes one: Debian's debootstrap --variant=minbase --include=systemd-sysv bookworm (cached by
// scripts/fetch-systemd-rootfs.sh), imported with `drydock mkimage rootfs`, and a Dockerfile
// adding units. Under QEMU, one updatable disk made from v1 (mirrors own-init.test.ts):
//  1. v2 is pending (staged on the host into the data partition): systemd reaches its default
//     target, the shipped drydock-os-confirm.service confirms it (and stops the softdog the
//     initramfs armed), `drydock os status --json` in the machine shows v2 as the default with v1
//     as the rollback, and the machine is still up past the deadline.
//  2. v3 is pending: a unit multi-user.target waits for never finishes starting, so the default
//     target is never reached and the softdog reboots the machine at the deadline.
//  3. v3 is abandoned (1 try), v2 boots; status says why.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { tempDir, runCli, requireRoot, requireTool } from '../helpers/env.js';
import { ContentStore, resolveImage } from '../../src/store/index.js';
import { StoreImageSource } from '../../src/client/store-transport.js';
import { OsLayout, stageImage } from '../../src/os/index.js';
import { statusOf } from '../os/fixture-image.js';
import { fetchKernel } from './kernel.js';
import { fetchSystemdRootfs } from './systemd-rootfs.js';
import { bootVm } from './qemu.js';

const work = tempDir('drydock-systemd-init-');
const root = path.join(work, 'store');
const REF = '10.0.2.2:5000/os/systemd:stable';
/** Seconds a pending deployment gets to reach its default target (a TCG boot takes about BOOT_S). */
const DEADLINE = Number(process.env.DRYDOCK_TEST_SYSTEMD_DEADLINE ?? 180);
const ids: Record<string, string> = {};
let kernel = '';

// In every version: after the confirm step, the version, `drydock os status --json` (one line)
// and, once the uptime is past the deadline, proof that the softdog no longer runs.
const STATUS_UNIT = `[Unit]
Description=test: report the deployment after the confirm step
# Explicit, so multi-user.target (which wants it) does not order itself after it: a cycle.
After=drydock-os-confirm.service multi-user.target

[Service]
Type=oneshot
ExecStart=/bin/sh -c 'echo "SYSTEMD-UP $$(cat /etc/version) after $$(cut -d" " -f1 /proc/uptime)s" > /dev/console; \\
  echo "STATUS $$(/.drydock/drydock/bin/drydock os status --json | tr -d "\\\\n")" > /dev/console; echo STATUS-END > /dev/console; \\
  while [ "$$(cut -d. -f1 /proc/uptime)" -le ${DEADLINE + 10} ]; do sleep 2; done; echo STILL-UP-PAST-THE-DEADLINE > /dev/console'
`;
// v3: multi-user.target waits for a unit that never finishes starting.
const HANG_UNIT = `[Unit]
Description=test: never finishes starting
Before=multi-user.target

[Service]
Type=oneshot
TimeoutStartSec=infinity
ExecStart=/bin/sh -c 'echo SYSTEMD-HANGS > /dev/console; exec sleep infinity'
`;

async function buildVersion(tag: string, version: string, hang = false): Promise<void> {
  const dir = path.join(work, `ctx-${version}`);
  await fsp.mkdir(dir, { recursive: true });
  await fsp.writeFile(path.join(dir, 'version'), `${version}\n`);
  await fsp.writeFile(path.join(dir, 'test-status.service'), STATUS_UNIT);
  await fsp.writeFile(path.join(dir, 'test.conf'), `[Unit]\nWants=test-status.service${hang ? ' test-hang.service' : ''}\n`);
  await fsp.writeFile(path.join(dir, 'test-hang.service'), HANG_UNIT);
  await fsp.writeFile(path.join(dir, 'Dockerfile'), [
    'FROM debian-systemd:bookworm',
    'COPY version /etc/version',
    'COPY test-status.service test-hang.service /etc/systemd/system/',
    'COPY test.conf /etc/systemd/system/multi-user.target.d/test.conf',
    '',
  ].join('\n'));
  const r = await runCli(['build', '-q', '-t', tag, dir], { root, timeoutMs: 600_000 });
  assert.equal(r.code, 0, r.stderr);
  const store = await ContentStore.open(root);
  ids[version] = (await resolveImage(store, tag)).manifestDescriptor.digest.slice('sha256:'.length, 'sha256:'.length + 12);
}

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
  const tar = fetchSystemdRootfs();
  const r = await runCli(['mkimage', 'rootfs', tar, '-t', 'debian-systemd:bookworm'], { root, timeoutMs: 600_000 });
  assert.equal(r.code, 0, r.stderr);
  await buildVersion('systemd:v1', 'v1');
  await buildVersion('systemd:v2', 'v2');
  await buildVersion('systemd:v3', 'v3', true);
}, { timeout: 1_200_000 });

test('systemd as the image\'s init: a pending deployment reaching its default target is confirmed by drydock-os-confirm.service; one that never does is rebooted by the softdog and abandoned', { timeout: 2_400_000 }, async (t) => {
  const disk = path.join(work, 'disk.img');
  const r = await runCli(['disk', 'systemd:v1', '-o', disk, '--kernel', kernel, '--updates-from', REF,
    '--boot-tries', '1', '--boot-deadline', String(DEADLINE), '--kernel-args', 'quiet systemd.show_status=0', '--json'], { root, timeoutMs: 900_000 });
  assert.equal(r.code, 0, r.stderr);
  const built = JSON.parse(r.stdout);
  assert.deepEqual([built.init.mode, built.init.path], ['image', '/sbin/init'], 'auto: the image has an init system');
  const { dataStart } = built.layout;
  const { v1, v2, v3 } = ids as { v1: string; v2: string; v3: string };
  const qemu = ['-drive', `file=${disk},format=raw,if=virtio`, '-nic', 'none'];

  await stagePending(disk, dataStart, 'systemd:v2');
  const b1 = await bootVm(qemu, { until: /STILL-UP-PAST-THE-DEADLINE/, timeoutMs: 900_000, memory: 1024 });
  assert.match(b1.console, new RegExp(`drydock: deployment ${v2}: pending deployment, try 1`));
  assert.match(b1.console, new RegExp(`deployment ${v2}: init /sbin/init \\(the image has an init system`));
  assert.match(b1.console, new RegExp(`watchdog: the machine reboots in ${DEADLINE}s unless deployment ${v2} reaches its default target`));
  assert.match(b1.console, new RegExp(`deployment ${v2} reached service started; it is now the default`), 'the confirm unit ran');
  assert.match(b1.console, /SYSTEMD-UP v2 after/);
  assert.ok(!b1.poweredOff, 'no softdog reboot after the confirm');
  const s1 = statusOf(b1.console);
  assert.deepEqual([s1.booted, s1.default, s1.rollback, s1.staged], [v2, v2, v1, null], 'drydock os status in the machine: v2 confirmed');
  const up1 = Number(/SYSTEMD-UP v2 after ([\d.]+)s/.exec(b1.console)![1]);

  await stagePending(disk, dataStart, 'systemd:v3');
  const b2 = await bootVm(qemu, { timeoutMs: 900_000, memory: 1024 });
  assert.ok(b2.poweredOff, 'the softdog rebooted the machine (QEMU -no-reboot exits)');
  assert.match(b2.console, new RegExp(`drydock: deployment ${v3}: pending deployment, try 1`));
  assert.match(b2.console, /SYSTEMD-HANGS/);
  assert.doesNotMatch(b2.console, /reached service started/);

  const b3 = await bootVm(qemu, { until: /STATUS-END/, timeoutMs: 900_000, memory: 1024 });
  assert.match(b3.console, new RegExp(`abandoning deployment ${v3}: did not reach service started within ${DEADLINE}s on 1 boot`));
  assert.match(b3.console, new RegExp(`drydock: deployment ${v2}: the default deployment`));
  assert.doesNotMatch(b3.console, /watchdog: the machine reboots/);
  assert.match(b3.console, /SYSTEMD-UP v2 after/);
  const s3 = statusOf(b3.console);
  assert.deepEqual([s3.booted, s3.default, s3.rollback, s3.staged], [v2, v2, v1, null]);
  assert.deepEqual(s3.abandoned.map((a: { id: string; reason: string }) => [a.id, a.reason]), [[v3, `did not reach service started within ${DEADLINE}s on 1 boot`]]);
  const up3 = Number(/SYSTEMD-UP v2 after ([\d.]+)s/.exec(b3.console)![1]);
  t.diagnostic(`boots (${b1.accel}): ${[b1, b2, b3].map((b) => `${(b.elapsedMs / 1000).toFixed(0)} s`).join(', ')}; systemd reached the confirm at ${up1} s and ${up3} s of uptime; load ${(await fsp.readFile('/proc/loadavg', 'utf8')).split(' ').slice(0, 3).join(' ')}`);
  await fsp.rm(disk, { force: true });
});
