// The kernel's boot id (/proc/sys/kernel/random/boot_id), new at every boot: state kept on disk
// or in /run records it to tell "written during this boot" from "survived a reboot or a crash".
import { readFileSync } from 'node:fs';

let cached: string | undefined;
let override: string | undefined;

/** This boot's id; '' where the kernel has none (not Linux). */
export function bootId(): string {
  if (override !== undefined) return override;
  if (cached === undefined) {
    try { cached = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim(); } catch { cached = ''; }
  }
  return cached;
}

/** Tests pretend the host rebooted; undefined restores the kernel's id. */
export function setBootIdForTesting(id: string | undefined): void {
  override = id;
}
