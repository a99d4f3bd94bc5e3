// Boots a VM under qemu-system-x86_64 (TCG; KVM when the host has it) with the serial console
// on stdout, and waits for a marker, the VM powering off, or a timeout. The VM is always killed.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { requireTool } from '../helpers/env.js';

export interface BootRun {
  /** Everything the serial console printed. */
  console: string;
  /** True when the VM powered itself off (qemu exited on its own). */
  poweredOff: boolean;
  /** Milliseconds from spawn to the marker (or the end). */
  elapsedMs: number;
}

/** `type`: when the console matches a pattern (checked in order), type the text once. */
export function bootVm(args: string[], opts: { until?: RegExp; timeoutMs?: number; memory?: number; type?: [RegExp, string][] } = {}): Promise<BootRun> {
  requireTool('qemu-system-x86_64', 'apt-get install qemu-system-x86');
  const accel = existsSync('/dev/kvm') ? ['-accel', 'kvm', '-accel', 'tcg'] : ['-accel', 'tcg'];
  const started = Date.now();
  const child = spawn('qemu-system-x86_64', [
    ...accel, '-m', String(opts.memory ?? 512), '-nographic', '-no-reboot', '-monitor', 'none', '-serial', 'stdio', ...args,
  ], { stdio: ['pipe', 'pipe', 'pipe'] });
  const typing = [...(opts.type ?? [])];
  let console = '';
  let stderr = '';
  return new Promise((resolve, reject) => {
    let settled = false;
    const finish = (poweredOff: boolean) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      child.kill('SIGKILL');
      resolve({ console, poweredOff, elapsedMs: Date.now() - started });
    };
    const timer = setTimeout(() => {
      if (settled) return;
      settled = true;
      child.kill('SIGKILL');
      reject(new Error(`VM did not reach ${opts.until ?? 'power-off'} within ${opts.timeoutMs ?? 120_000} ms; console:\n${console.slice(-6000)}\n${stderr}`));
    }, opts.timeoutMs ?? 120_000);
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d: string) => {
      console += d;
      while (typing[0] && typing[0][0].test(console)) child.stdin.write(typing.shift()![1]);
      if (opts.until?.test(console)) finish(false);
    });
    child.stderr.on('data', (d) => (stderr += d));
    child.stdin.on('error', () => { /* the VM may exit while we type */ });
    child.on('error', (e) => { if (!settled) { settled = true; clearTimeout(timer); reject(e); } });
    child.on('close', (code) => {
      if (settled) return;
      if (code !== 0 && !console) { settled = true; clearTimeout(timer); reject(new Error(`qemu failed (${code}): ${stderr}`)); return; }
      finish(true);
    });
  });
}
