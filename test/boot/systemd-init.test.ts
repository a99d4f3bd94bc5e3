// Automatic confirm for an image with systemd as its own init, made the way a user makes one:
// Debian's debootstrap --variant=minbase --include=systemd-sysv bookworm (cached by
// scripts/fetch-systemd-rootfs.sh), imported with `drydock mkimage rootfs`, and a Dockerfile
// adding a test unit (systemd-rootfs.ts). Under QEMU, an updatable disk made from v1 with v2
// pending (staged on the host into the data partition): systemd reaches its default target, the
// shipped drydock-os-confirm.service confirms v2 and stops the softdog the initramfs armed,
// `drydock os status --json` in the machine shows v2 as the default with v1 as the rollback, and
// the machine is still up past the deadline. The fallback is systemd-fallback.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import { statusOf } from '../os/fixture-image.js';
import { analyzeOf, loadAverage, systemdFixture, SYSTEMD_DEADLINE as DEADLINE } from './systemd-rootfs.js';
import { bootVm } from './qemu.js';

const fixture = systemdFixture('drydock-systemd-init-', [
  { tag: 'systemd:v1', version: 'v1' }, { tag: 'systemd:v2', version: 'v2', waitPastDeadline: true },
]);

test('systemd as the image\'s init: a pending deployment that reaches its default target is confirmed by drydock-os-confirm.service', { timeout: 1_200_000 }, async (t) => {
  const { disk, qemu } = await fixture.machine('systemd:v2');
  const { v1, v2 } = fixture.ids as { v1: string; v2: string };
  const b = await bootVm(qemu, { until: /STILL-UP-PAST-THE-DEADLINE/, timeoutMs: 600_000, memory: 1024 });
  assert.match(b.console, new RegExp(`drydock: deployment ${v2}: pending deployment, try 1`));
  assert.match(b.console, new RegExp(`deployment ${v2}: init /sbin/init \\(the image has an init system`));
  assert.match(b.console, new RegExp(`watchdog: the machine reboots in ${DEADLINE}s unless deployment ${v2} reaches its default target`));
  assert.match(b.console, new RegExp(`deployment ${v2} reached service started; it is now the default`), 'the confirm unit ran');
  assert.match(b.console, /SYSTEMD-UP v2 after/);
  assert.ok(!b.poweredOff, 'no softdog reboot after the confirm');
  const s = statusOf(b.console);
  assert.deepEqual([s.booted, s.default, s.rollback, s.staged], [v2, v2, v1, null], 'drydock os status in the machine: v2 confirmed');
  const up = /SYSTEMD-UP v2 after ([\d.]+)s/.exec(b.console)![1];
  t.diagnostic(`boot (${b.accel}): ${(b.elapsedMs / 1000).toFixed(0)} s to ${DEADLINE + 10} s of uptime; the test unit after the confirm ran at ${up} s of uptime; ${analyzeOf(b.console)}; load ${await loadAverage()}`);
  await fsp.rm(disk, { force: true });
});
