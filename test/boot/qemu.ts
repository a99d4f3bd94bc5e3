// Boots a VM under qemu-system-x86_64 with the serial console on stdout, and waits for a
// marker, the VM powering off, or a timeout. The accelerator is KVM only where a probe showed
// KVM really runs a kernel (src/boot/qemu-accel.ts), else TCG; DRYDOCK_QEMU_ACCEL forces one.
// If KVM still fails mid-boot ("KVM internal error"), the boot is retried once under TCG and
// TCG is remembered. Every VM is killed when its boot settles, and any VM still alive when the
// test process exits (a test timeout, a failed assertion, --test-force-exit) is killed then.
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { requireTool } from '../helpers/env.js';
import { fetchKernel } from './kernel.js';
import { accelArgs, chooseQemuAccel, KVM_FAILURE, rememberAccel, type QemuAccel } from '../../src/boot/qemu-accel.js';

export interface BootRun {
  /** Everything the serial console printed. */
  console: string;
  /** True when the VM powered itself off (qemu exited on its own). */
  poweredOff: boolean;
  /** Milliseconds from spawn to the marker (or the end). */
  elapsedMs: number;
  /** The accelerator the VM ran under. */
  accel: QemuAccel;
}

export interface BootOpts {
  until?: RegExp; timeoutMs?: number; memory?: number; type?: [RegExp, string][];
  /** Once `until` matched: runs while the VM keeps running (talk to it over the network); the VM is killed when it settles. */
  whileRunning?: (console: () => string) => Promise<void>;
}

const live = new Set<ChildProcess>();
let exitHookInstalled = false;
function track(child: ChildProcess): void {
  live.add(child);
  child.once('close', () => live.delete(child));
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => { for (const c of live) c.kill('SIGKILL'); });
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => { for (const c of live) c.kill('SIGKILL'); process.kill(process.pid, sig); });
  }
}

/** The accelerator for this process's VMs, probed once (with the test kernel). */
let accelChoice: Promise<QemuAccel> | undefined;
export function testAccel(): Promise<QemuAccel> {
  accelChoice ??= chooseQemuAccel(path.join(fetchKernel(), 'vmlinuz'));
  return accelChoice;
}

class KvmFailed extends Error {}

/** `type`: when the console matches a pattern (checked in order), type the text once. */
export async function bootVm(args: string[], opts: BootOpts = {}): Promise<BootRun> {
  requireTool('qemu-system-x86_64', 'apt-get install qemu-system-x86');
  const accel = await testAccel();
  try {
    return await bootOnce(accel, args, opts);
  } catch (e) {
    if (!(e instanceof KvmFailed)) throw e;
    accelChoice = Promise.resolve('tcg');
    await rememberAccel('tcg').catch(() => {});
    return bootOnce('tcg', args, opts);
  }
}

function bootOnce(accel: QemuAccel, args: string[], opts: BootOpts): Promise<BootRun> {
  const started = Date.now();
  const timeoutMs = opts.timeoutMs ?? 120_000;
  const child = spawn('qemu-system-x86_64', [
    ...accelArgs(accel), '-m', String(opts.memory ?? 512), '-nographic', '-no-reboot', '-monitor', 'none', '-serial', 'stdio', ...args,
  ], { stdio: ['pipe', 'pipe', 'pipe'] });
  track(child);
  const typing = [...(opts.type ?? [])];
  let console = '';
  let stderr = '';
  return new Promise((resolve, reject) => {
    let settled = false;
    let reached = false;
    const settle = (fn: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      child.kill('SIGKILL');
      fn();
    };
    const timer = setTimeout(() => settle(() => reject(new Error(
      `VM (${accel}) did not reach ${opts.until ?? 'power-off'} within ${timeoutMs} ms; console:\n${console.slice(-6000)}\n${stderr}`))), timeoutMs);
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (d: string) => {
      console += d;
      while (typing[0] && typing[0][0].test(console)) child.stdin!.write(typing.shift()![1]);
      if (!opts.until?.test(console) || reached) return;
      reached = true;
      const elapsedMs = Date.now() - started;
      if (!opts.whileRunning) { settle(() => resolve({ console, poweredOff: false, elapsedMs, accel })); return; }
      opts.whileRunning(() => console).then(
        () => settle(() => resolve({ console, poweredOff: false, elapsedMs, accel })),
        (e: Error) => settle(() => reject(Object.assign(e, { message: `${e.message}\nconsole:\n${console.slice(-6000)}` }))));
    });
    child.stderr!.on('data', (d) => {
      stderr += d;
      if (accel === 'kvm' && KVM_FAILURE.test(stderr)) settle(() => reject(new KvmFailed(stderr)));
    });
    child.stdin!.on('error', () => { /* the VM may exit while we type */ });
    child.on('error', (e) => settle(() => reject(e)));
    child.on('close', (code) => {
      if (accel === 'kvm' && KVM_FAILURE.test(stderr)) settle(() => reject(new KvmFailed(stderr)));
      else if (code !== 0 && !console) settle(() => reject(new Error(`qemu failed (${code}): ${stderr}`)));
      else settle(() => resolve({ console, poweredOff: true, elapsedMs: Date.now() - started, accel }));
    });
  });
}
