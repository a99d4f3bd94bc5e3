// Capabilities and --security-opt, with Docker's semantics: the default set, --cap-add and
// --cap-drop (either may be ALL), --privileged, seccomp=unconfined|FILE and no-new-privileges.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { UserError } from '../util/errors.js';

/** Docker's default capability set (moby/oci/caps/defaults.go). */
export const DEFAULT_CAPABILITIES = [
  'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_FSETID', 'CAP_FOWNER', 'CAP_MKNOD', 'CAP_NET_RAW', 'CAP_SETGID',
  'CAP_SETUID', 'CAP_SETFCAP', 'CAP_SETPCAP', 'CAP_NET_BIND_SERVICE', 'CAP_SYS_CHROOT', 'CAP_KILL', 'CAP_AUDIT_WRITE',
];

/** Every capability by number (linux/capability.h). */
const CAPABILITIES_BY_NUMBER = [
  'CHOWN', 'DAC_OVERRIDE', 'DAC_READ_SEARCH', 'FOWNER', 'FSETID', 'KILL', 'SETGID', 'SETUID', 'SETPCAP', 'LINUX_IMMUTABLE',
  'NET_BIND_SERVICE', 'NET_BROADCAST', 'NET_ADMIN', 'NET_RAW', 'IPC_LOCK', 'IPC_OWNER', 'SYS_MODULE', 'SYS_RAWIO', 'SYS_CHROOT',
  'SYS_PTRACE', 'SYS_PACCT', 'SYS_ADMIN', 'SYS_BOOT', 'SYS_NICE', 'SYS_RESOURCE', 'SYS_TIME', 'SYS_TTY_CONFIG', 'MKNOD', 'LEASE',
  'AUDIT_WRITE', 'AUDIT_CONTROL', 'SETFCAP', 'MAC_OVERRIDE', 'MAC_ADMIN', 'SYSLOG', 'WAKE_ALARM', 'BLOCK_SUSPEND', 'AUDIT_READ',
  'PERFMON', 'BPF', 'CHECKPOINT_RESTORE',
].map((c) => `CAP_${c}`);

/**
 * ALL: every capability this kernel knows that drydock itself holds (its bounding set, like
 * Podman): root in a sandbox that lacks one cannot hand it on, and runc would fail on it.
 */
export function allCapabilities(): string[] {
  let last = CAPABILITIES_BY_NUMBER.length - 1;
  try { last = Math.min(last, Number(readFileSync('/proc/sys/kernel/cap_last_cap', 'utf8').trim())); } catch { /* keep all */ }
  let bounding = (BigInt(1) << BigInt(last + 1)) - BigInt(1);
  try {
    const m = readFileSync('/proc/self/status', 'utf8').match(/^CapBnd:\s*([0-9a-f]+)$/m);
    if (m) bounding &= BigInt(`0x${m[1]}`);
  } catch { /* not Linux procfs: assume all */ }
  return CAPABILITIES_BY_NUMBER.slice(0, last + 1).filter((_, i) => (bounding >> BigInt(i)) & BigInt(1));
}

/** "net_admin", "NET_ADMIN", "CAP_NET_ADMIN" → "CAP_NET_ADMIN"; "all" → "ALL". */
export function normalizeCapability(name: string): string {
  const up = name.trim().toUpperCase();
  if (up === 'ALL') return 'ALL';
  const cap = up.startsWith('CAP_') ? up : `CAP_${up}`;
  if (!CAPABILITIES_BY_NUMBER.includes(cap)) throw new UserError(`invalid capability: unknown capability: "${cap}"`);
  return cap;
}

/** Docker's TweakCapabilities: the effective set for --cap-add/--cap-drop (names normalized). */
export function effectiveCapabilities(o: { capAdd?: string[]; capDrop?: string[]; privileged?: boolean }): string[] {
  if (o.privileged) return allCapabilities();
  const add = (o.capAdd ?? []).map(normalizeCapability);
  const drop = (o.capDrop ?? []).map(normalizeCapability);
  let caps: string[];
  if (add.includes('ALL')) caps = allCapabilities().filter((c) => !drop.includes(c));
  else if (drop.includes('ALL')) caps = add;
  else caps = [...DEFAULT_CAPABILITIES.filter((c) => !drop.includes(c)), ...add];
  return [...new Set(caps)];
}

export interface SecurityOptions {
  /** "default", "unconfined" or an absolute profile path. */
  seccomp: string;
  noNewPrivileges: boolean;
}

/** Parses --security-opt values: seccomp=unconfined|FILE, no-new-privileges[=true|false]. */
export function parseSecurityOpts(list: string[] = [], cwd = process.cwd()): SecurityOptions {
  const out: SecurityOptions = { seccomp: 'default', noNewPrivileges: false };
  for (const raw of list) {
    // Docker still accepts the old "key:value" spelling.
    const m = raw.match(/^([a-z-]+)(?:[=:](.*))?$/s);
    const key = m?.[1];
    const value = m?.[2];
    if (key === 'no-new-privileges') {
      if (value !== undefined && !['true', 'false'].includes(value)) throw new UserError(`invalid --security-opt ${raw}: no-new-privileges takes true or false`);
      out.noNewPrivileges = value !== 'false';
    } else if (key === 'seccomp' && value) {
      out.seccomp = value === 'unconfined' ? 'unconfined' : path.resolve(cwd, value);
    } else if ((key === 'apparmor' || key === 'label') && value) {
      // No LSM is applied by drydock; accepted so Docker and Podman command lines keep working.
    } else {
      throw new UserError(`invalid --security-opt: "${raw}" (use seccomp=unconfined|PROFILE.json or no-new-privileges)`);
    }
  }
  return out;
}
