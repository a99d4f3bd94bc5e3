// --ulimit NAME=SOFT[:HARD] → OCI rlimits, with Docker's names and error texts. Raising a hard
// limit needs CAP_SYS_RESOURCE; without it (sandboxes, rootless) runc's setrlimit would fail
// with a bare EPERM, so the request is checked against this process's limits first.
import { promises as fsp } from 'node:fs';
import { UserError } from '../util/errors.js';

export interface Rlimit { type: string; soft: number; hard: number }

/** Docker's ulimit names → the row of /proc/self/limits that shows the current value. */
const ULIMITS: Record<string, string> = {
  as: 'Max address space', core: 'Max core file size', cpu: 'Max cpu time', data: 'Max data size',
  fsize: 'Max file size', locks: 'Max file locks', memlock: 'Max locked memory', msgqueue: 'Max msgqueue size',
  nice: 'Max nice priority', nofile: 'Max open files', nproc: 'Max processes', rss: 'Max resident set',
  rtprio: 'Max realtime priority', rttime: 'Max realtime timeout', sigpending: 'Max pending signals', stack: 'Max stack size',
};

export function parseUlimit(text: string): Rlimit {
  const eq = text.indexOf('=');
  if (eq < 0) throw new UserError(`invalid ulimit argument: ${text}`);
  const name = text.slice(0, eq);
  if (!ULIMITS[name]) throw new UserError(`invalid ulimit type: ${name}`);
  const parts = text.slice(eq + 1).split(':');
  if (parts.length > 2 || parts.some((p) => !/^-?\d+$/.test(p))) throw new UserError(`invalid ulimit argument: ${text}`);
  const [soft, hard = soft] = parts.map(Number) as [number, number?];
  if (soft < 0 || hard! < 0) throw new UserError(`--ulimit ${text}: unlimited (-1) is not supported; give a number`);
  if (soft > hard!) throw new UserError(`ulimit soft limit must be less than or equal to hard limit: ${soft} > ${hard}`);
  return { type: `RLIMIT_${name.toUpperCase()}`, soft, hard: hard! };
}

/**
 * Refuses, with the current value in the message, a hard limit above this process's when it
 * lacks CAP_SYS_RESOURCE: the kernel would refuse it inside the container anyway.
 */
export async function checkUlimits(limits: Rlimit[]): Promise<void> {
  if (!limits.length) return;
  const status = await fsp.readFile('/proc/self/status', 'utf8').catch(() => '');
  const capEff = BigInt(`0x${/^CapEff:\s*([0-9a-f]+)/m.exec(status)?.[1] ?? '0'}`);
  if (capEff & (1n << 24n)) return;
  const table = await fsp.readFile('/proc/self/limits', 'utf8').catch(() => '');
  for (const l of limits) {
    const name = l.type.slice('RLIMIT_'.length).toLowerCase();
    const row = table.split('\n').find((r) => r.startsWith(ULIMITS[name]!));
    const current = row?.slice(ULIMITS[name]!.length).trim().split(/\s+/)[1];
    if (current === undefined || current === 'unlimited') continue;
    if (l.hard > Number(current)) {
      throw new UserError(`--ulimit ${name}=${l.soft}:${l.hard}: the hard limit cannot be raised above ${current} here (this process lacks CAP_SYS_RESOURCE); ask for ${current} or less`);
    }
  }
}
