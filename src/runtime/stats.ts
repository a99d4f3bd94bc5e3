// `drydock stats`: a running container's resource use read from its cgroup (v1 controllers or
// the v2 unified hierarchy, whichever the host mounts) and its network namespace, computed the
// way the Docker CLI does (CPU % over a sampling interval against the host's /proc/stat, memory
// without the inactive page cache).
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import type { Container } from './containers.js';

export interface StatsSample {
  /** Container CPU time, ns. */
  cpuNs: number;
  /** Host CPU time (all CPUs), ns. */
  systemNs: number;
  memUsage: number;
  memLimit: number;
  netRx: number;
  netTx: number;
  blkRead: number;
  blkWrite: number;
  pids: number;
}

const read = (file: string) => fsp.readFile(file, 'utf8').catch(() => undefined);
const num = (text: string | undefined) => (text === undefined ? undefined : Number(text.trim()));

/** The files of a process's cgroup, per v1 controller or in the v2 unified hierarchy. */
async function cgroupDirs(pid: number): Promise<{ v1: Map<string, string>; v2?: string }> {
  const v1 = new Map<string, string>();
  let v2: string | undefined;
  for (const line of ((await read(`/proc/${pid}/cgroup`)) ?? '').split('\n')) {
    const m = /^(\d+):([^:]*):(.*)$/.exec(line);
    if (!m) continue;
    if (m[1] === '0' && m[2] === '') {
      const base = (await read('/sys/fs/cgroup/cgroup.controllers')) !== undefined ? '/sys/fs/cgroup' : '/sys/fs/cgroup/unified';
      v2 = `${base}${m[3]}`;
    } else for (const ctl of m[2]!.split(',')) v1.set(ctl, `/sys/fs/cgroup/${ctl}${m[3]}`);
  }
  return { v1, v2 };
}

function statField(text: string | undefined, key: string): number | undefined {
  const m = text && new RegExp(`^${key} (\\d+)$`, 'm').exec(text);
  return m ? Number(m[1]) : undefined;
}

function hostCpuNs(stat: string): number {
  const fields = stat.split('\n')[0]!.trim().split(/\s+/).slice(1, 8).map(Number);
  // /proc/stat counts USER_HZ ticks (100 per second on Linux).
  return fields.reduce((a, b) => a + b, 0) * 1e7;
}

/** One sample of a running container's counters. */
export async function sampleStats(c: Container): Promise<StatsSample> {
  const pid = c.state.Pid;
  const systemNs = hostCpuNs((await read('/proc/stat')) ?? 'cpu 0');
  const zero: StatsSample = { cpuNs: 0, systemNs, memUsage: 0, memLimit: 0, netRx: 0, netTx: 0, blkRead: 0, blkWrite: 0, pids: 0 };
  if (c.state.Status !== 'running' || !pid) return zero;
  const { v1, v2 } = await cgroupDirs(pid);
  const s = { ...zero };
  const memDir = v1.get('memory');
  if (memDir) {
    const usage = num(await read(`${memDir}/memory.usage_in_bytes`)) ?? 0;
    s.memUsage = Math.max(0, usage - (statField(await read(`${memDir}/memory.stat`), 'total_inactive_file') ?? 0));
    s.memLimit = num(await read(`${memDir}/memory.limit_in_bytes`)) ?? 0;
  } else if (v2) {
    const usage = num(await read(`${v2}/memory.current`)) ?? 0;
    s.memUsage = Math.max(0, usage - (statField(await read(`${v2}/memory.stat`), 'inactive_file') ?? 0));
    const max = (await read(`${v2}/memory.max`))?.trim();
    s.memLimit = max && max !== 'max' ? Number(max) : 0;
  }
  // No limit (or one above the host's memory) shows the host's memory, as Docker does.
  if (!s.memLimit || s.memLimit > os.totalmem()) s.memLimit = os.totalmem();
  const cpuDir = v1.get('cpuacct');
  if (cpuDir) s.cpuNs = num(await read(`${cpuDir}/cpuacct.usage`)) ?? 0;
  else if (v2) s.cpuNs = (statField(await read(`${v2}/cpu.stat`), 'usage_usec') ?? 0) * 1000;
  const pidsDir = v1.get('pids') ?? v2;
  s.pids = num(await read(`${pidsDir}/pids.current`)) ?? 0;
  const blkDir = v1.get('blkio');
  if (blkDir) {
    for (const line of ((await read(`${blkDir}/blkio.throttle.io_service_bytes`)) ?? '').split('\n')) {
      const m = /^\d+:\d+ (Read|Write) (\d+)$/.exec(line.trim());
      if (m) { if (m[1] === 'Read') s.blkRead += Number(m[2]); else s.blkWrite += Number(m[2]); }
    }
  } else if (v2) {
    for (const line of ((await read(`${v2}/io.stat`)) ?? '').split('\n')) {
      s.blkRead += Number(/rbytes=(\d+)/.exec(line)?.[1] ?? 0);
      s.blkWrite += Number(/wbytes=(\d+)/.exec(line)?.[1] ?? 0);
    }
  }
  // The host's interfaces are not the container's traffic (Docker shows 0B for --network host).
  if (c.record.HostConfig.NetworkMode !== 'host') {
    for (const line of ((await read(`/proc/${pid}/net/dev`)) ?? '').split('\n').slice(2)) {
      const [name, rest] = line.split(':');
      if (!rest || name!.trim() === 'lo') continue;
      const f = rest.trim().split(/\s+/).map(Number);
      s.netRx += f[0]!;
      s.netTx += f[8]!;
    }
  }
  return s;
}

/** Docker's units.BytesSize: binary units, four significant digits (7.629GiB, 1.25MiB). */
export function bytesSize(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${Number(v.toPrecision(4))}${units[i]}`;
}

export interface StatsRow { cpuPercent: number; memPercent: number; sample: StatsSample }

/** Docker's CPU %: container CPU time over host CPU time between two samples, times the CPUs. */
export function statsRow(before: StatsSample, after: StatsSample, cpus = os.cpus().length): StatsRow {
  const cpuDelta = after.cpuNs - before.cpuNs;
  const systemDelta = after.systemNs - before.systemNs;
  const cpuPercent = cpuDelta > 0 && systemDelta > 0 ? (cpuDelta / systemDelta) * cpus * 100 : 0;
  const memPercent = after.memLimit ? (after.memUsage / after.memLimit) * 100 : 0;
  return { cpuPercent, memPercent, sample: after };
}
