// Which QEMU accelerator to boot with. A /dev/kvm that exists is not a KVM that works: on
// nested or restricted hosts the device opens, QEMU starts, and the guest then hangs in the
// kernel's decompressor or dies with "KVM internal error … emulation failure" once isolinux or
// OVMF runs. So KVM is chosen only after a real kernel has printed its banner under it; the
// verdict is kept per host boot (keyed by /proc/sys/kernel/random/boot_id) so the probe's cost
// (under a second with a working KVM, PROBE_TIMEOUT_MS without) is paid once, not per VM.
// DRYDOCK_QEMU_ACCEL=kvm|tcg overrides everything.
import { spawn } from 'node:child_process';
import { constants, promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { UserError } from '../util/errors.js';
import { bootId } from '../util/boot-id.js';

export type QemuAccel = 'kvm' | 'tcg';

/** How long a working KVM may take to get a kernel to print its banner. TCG needs ~3 s. */
export const PROBE_TIMEOUT_MS = 10_000;

/** QEMU's own words when KVM starts but cannot run the guest. */
export const KVM_FAILURE = /KVM internal error|emulation failure|failed to initialize kvm|Could not access KVM kernel module/i;

/** The QEMU arguments for an accelerator. */
export function accelArgs(accel: QemuAccel): string[] {
  return ['-accel', accel];
}

function fromEnv(env: NodeJS.ProcessEnv): QemuAccel | undefined {
  const v = env.DRYDOCK_QEMU_ACCEL?.trim().toLowerCase();
  if (!v) return undefined;
  if (v === 'kvm' || v === 'tcg') return v;
  throw new UserError(`DRYDOCK_QEMU_ACCEL=${env.DRYDOCK_QEMU_ACCEL}: expected kvm or tcg`);
}

function verdictFile(): string {
  return path.join(os.tmpdir(), `drydock-qemu-accel-${bootId() || 'unknown'}`);
}

/** Records a verdict for this host boot (temp file + rename, so a reader never sees half). */
export async function rememberAccel(accel: QemuAccel): Promise<void> {
  const file = verdictFile();
  const tmp = `${file}.${process.pid}.tmp`;
  await fsp.writeFile(tmp, `${accel}\n`);
  await fsp.rename(tmp, file);
}

async function rememberedAccel(): Promise<QemuAccel | undefined> {
  const v = (await fsp.readFile(verdictFile(), 'utf8').catch(() => '')).trim();
  return v === 'kvm' || v === 'tcg' ? v : undefined;
}

async function kvmDeviceUsable(): Promise<boolean> {
  try {
    await fsp.access('/dev/kvm', constants.R_OK | constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * Boots `kernel` under KVM with no initramfs and waits for "Linux version" on the serial
 * console. True only if it appears; a KVM error, an early exit or the timeout mean false.
 * The probe VM is always killed.
 */
export function probeKvm(kernel: string, timeoutMs = PROBE_TIMEOUT_MS): Promise<boolean> {
  return new Promise((resolve) => {
    const child = spawn('qemu-system-x86_64', [
      ...accelArgs('kvm'), '-m', '128', '-nographic', '-no-reboot', '-monitor', 'none', '-serial', 'stdio',
      '-kernel', kernel, '-append', 'console=ttyS0 panic=-1',
    ], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let done = false;
    const finish = (ok: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      child.kill('SIGKILL');
      resolve(ok);
    };
    const timer = setTimeout(() => finish(false), timeoutMs);
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d: string) => {
      out += d;
      // The banner is the kernel's first line: the decompressor ran and jumped to it.
      if (/Linux version \d/.test(out)) finish(true);
    });
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d: string) => { if (KVM_FAILURE.test(d)) finish(false); });
    child.on('error', () => finish(false));
    child.on('close', () => finish(false));
  });
}

/**
 * The accelerator to boot with: DRYDOCK_QEMU_ACCEL, else TCG without a usable /dev/kvm, else
 * this host boot's remembered verdict, else a probe with `kernel` (remembered afterwards).
 */
export async function chooseQemuAccel(kernel: string, env: NodeJS.ProcessEnv = process.env): Promise<QemuAccel> {
  const forced = fromEnv(env);
  if (forced) return forced;
  if (!(await kvmDeviceUsable())) return 'tcg';
  const known = await rememberedAccel();
  if (known) return known;
  const accel: QemuAccel = (await probeKvm(kernel)) ? 'kvm' : 'tcg';
  await rememberAccel(accel).catch(() => { /* a read-only tmp only costs a probe next time */ });
  return accel;
}
