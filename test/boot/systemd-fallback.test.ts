// Automatic fallback for an image with systemd as its own init (the images of systemd-rootfs.ts;
// the confirm path is systemd-init.test.ts). Under QEMU, one updatable disk made from v1:
//  1. v3 is pending: a unit multi-user.target waits for never finishes starting, so systemd never
//     reaches its default target, nothing confirms, and the softdog the initramfs armed resets
//     the machine at the deadline.
//  2. v3 has used its one try: the initramfs abandons it with the reason and boots v1 with
//     systemd; `drydock os status --json` in the machine says why.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import { statusOf } from '../os/fixture-image.js';
import { analyzeOf, loadAverage, systemdFixture, SYSTEMD_DEADLINE as DEADLINE } from './systemd-rootfs.js';
import { bootVm } from './qemu.js';

const fixture = systemdFixture('drydock-systemd-fallback-', [
  { tag: 'systemd:v1', version: 'v1' }, { tag: 'systemd:v3', version: 'v3', hang: true },
]);

test('systemd as the image\'s init: a pending deployment that never reaches its default target is reset by the softdog and abandoned; v1 boots', { timeout: 1_200_000 }, async (t) => {
  const { disk, qemu } = await fixture.machine('systemd:v3');
  const { v1, v3 } = fixture.ids as { v1: string; v3: string };

  const b1 = await bootVm(qemu, { timeoutMs: 600_000, memory: 1024 });
  assert.ok(b1.poweredOff, 'the softdog reset the machine (QEMU -no-reboot exits)');
  assert.match(b1.console, new RegExp(`drydock: deployment ${v3}: pending deployment, try 1`));
  assert.match(b1.console, new RegExp(`watchdog: the machine reboots in ${DEADLINE}s unless deployment ${v3} reaches its default target`));
  assert.match(b1.console, /SYSTEMD-HANGS/);
  assert.doesNotMatch(b1.console, /reached service started|SYSTEMD-UP/);

  const b2 = await bootVm(qemu, { until: /STATUS-END/, timeoutMs: 600_000, memory: 1024 });
  assert.match(b2.console, new RegExp(`abandoning deployment ${v3}: did not reach service started within ${DEADLINE}s on 1 boot`));
  assert.match(b2.console, new RegExp(`drydock: deployment ${v1}: the default deployment`));
  assert.doesNotMatch(b2.console, /watchdog: the machine reboots/);
  assert.match(b2.console, /SYSTEMD-UP v1 after/);
  const s = statusOf(b2.console);
  assert.deepEqual([s.booted, s.default, s.staged], [v1, v1, null]);
  assert.deepEqual(s.abandoned.map((a: { id: string; reason: string }) => [a.id, a.reason]), [[v3, `did not reach service started within ${DEADLINE}s on 1 boot`]]);
  const up = /SYSTEMD-UP v1 after ([\d.]+)s/.exec(b2.console)![1];
  t.diagnostic(`boots (${b1.accel}): ${(b1.elapsedMs / 1000).toFixed(0)} s (to the softdog reset), ${(b2.elapsedMs / 1000).toFixed(0)} s; v1's test unit ran at ${up} s of uptime; ${analyzeOf(b2.console)}; load ${await loadAverage()}`);
  await fsp.rm(disk, { force: true });
});
