// The accelerator choice: DRYDOCK_QEMU_ACCEL wins, bad values are refused, and on this host the
// probe's verdict is one that really boots the test kernel (a broken KVM must yield tcg).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { chooseQemuAccel, accelArgs } from '../../src/boot/qemu-accel.js';
import { requireTool } from '../helpers/env.js';
import { fetchKernel } from './kernel.js';

test('DRYDOCK_QEMU_ACCEL forces the accelerator; anything else is refused', async () => {
  const kernel = '/nonexistent';
  for (const [value, want] of [['kvm', 'kvm'], ['tcg', 'tcg'], [' TCG ', 'tcg']] as const) {
    assert.equal(await chooseQemuAccel(kernel, { DRYDOCK_QEMU_ACCEL: value }), want);
  }
  await assert.rejects(chooseQemuAccel(kernel, { DRYDOCK_QEMU_ACCEL: 'hvf' }), /DRYDOCK_QEMU_ACCEL=hvf: expected kvm or tcg/);
});

test('the chosen accelerator gets the test kernel to print its banner', async () => {
  requireTool('qemu-system-x86_64', 'apt-get install qemu-system-x86');
  const vmlinuz = path.join(fetchKernel(), 'vmlinuz');
  const accel = await chooseQemuAccel(vmlinuz, {});
  const r = spawnSync('qemu-system-x86_64', [...accelArgs(accel), '-m', '128', '-nographic', '-no-reboot', '-monitor', 'none',
    '-serial', 'stdio', '-kernel', vmlinuz, '-append', 'console=ttyS0 panic=-1'], { encoding: 'utf8', timeout: 60_000, killSignal: 'SIGKILL' });
  // No initramfs: the kernel panics (root fs) and -no-reboot makes QEMU exit.
  assert.match(r.stdout, /Linux version \d/, `under ${accel}: ${r.stderr}`);
});
