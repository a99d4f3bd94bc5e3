// OCI runtime spec generation with Docker's defaults (mounts, masked paths, capabilities,
// no-new-privileges). One generator serves `drydock run` and the builder's RUN.
import { promises as fsp, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { resolveUser } from './user.js';
import { DEFAULT_CAPABILITIES, allCapabilities } from './capabilities.js';
import { seccompFor, type OciSeccomp } from './seccomp.js';
import { allSettledOrThrow } from '../util/concurrency.js';

export interface OciMount {
  destination: string;
  type?: string;
  source?: string;
  options?: string[];
}

export interface OciResources {
  memory?: { limit?: number; swap?: number };
  cpu?: { quota?: number; period?: number; shares?: number };
  pids?: { limit: number };
}

export interface OciSpec {
  ociVersion: string;
  process: {
    terminal?: boolean;
    user: { uid: number; gid: number; additionalGids?: number[] };
    args: string[];
    env: string[];
    cwd: string;
    capabilities?: Record<'bounding' | 'effective' | 'permitted' | 'ambient' | 'inheritable', string[]>;
    rlimits?: { type: string; hard: number; soft: number }[];
    noNewPrivileges?: boolean;
  };
  root: { path: string; readonly?: boolean };
  hostname?: string;
  mounts: OciMount[];
  linux: {
    namespaces: { type: string; path?: string }[];
    resources?: OciResources & { devices?: unknown[] };
    devices?: OciDevice[];
    seccomp?: OciSeccomp;
    maskedPaths?: string[];
    readonlyPaths?: string[];
    cgroupsPath?: string;
  };
  annotations?: Record<string, string>;
}

export { DEFAULT_CAPABILITIES } from './capabilities.js';

export const DEFAULT_MASKED_PATHS = [
  '/proc/asound', '/proc/acpi', '/proc/kcore', '/proc/keys', '/proc/latency_stats', '/proc/timer_list',
  '/proc/timer_stats', '/proc/sched_debug', '/proc/scsi', '/sys/firmware', '/sys/devices/virtual/powercap',
];

export const DEFAULT_READONLY_PATHS = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'];

export interface OciDevice { path: string; type: 'c' | 'b'; major: number; minor: number; fileMode: number; uid: number; gid: number }

export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export type NetworkSpec = 'host' | 'none' | { netnsPath: string };

export interface RuntimeSpecOptions {
  /** The mounted rootfs (overlay "merged" dir). */
  rootfs: string;
  args: string[];
  env: string[];
  cwd: string;
  /** "name" | "uid" | "name:group" | "uid:gid", resolved against the rootfs's /etc/passwd and /etc/group. */
  user: string;
  /** Extra supplementary groups (--group-add). */
  groupAdd?: string[];
  hostname?: string;
  /** Put HOSTNAME=<the container's hostname> in the environment, as `docker run` does (unless set). */
  hostnameEnv?: boolean;
  network: NetworkSpec;
  mounts?: OciMount[];
  readonlyRootfs?: boolean;
  terminal?: boolean;
  /** Replaces the default capability set (Docker's 14). */
  capabilities?: string[];
  /** --privileged: every capability, no seccomp, no masked paths, the host's devices, rw /sys. */
  privileged?: boolean;
  /** "default" (the containers-common profile), "unconfined" or a profile file. */
  seccomp?: string;
  /** --security-opt no-new-privileges (off by default, as in Docker: setuid programs work). */
  noNewPrivileges?: boolean;
  maskedPaths?: string[];
  readonlyPaths?: string[];
  resources?: OciResources;
  /** Size of the /dev/shm tmpfs in bytes (--shm-size; Docker's default is 64 MiB). */
  shmSize?: number;
  /** Process rlimits (--ulimit), e.g. { type: 'RLIMIT_NOFILE', soft: 1024, hard: 2048 }. */
  rlimits?: { type: string; hard: number; soft: number }[];
  /** Where to write the generated /etc/hosts, /etc/resolv.conf, /etc/hostname (default: next to the rootfs). */
  hostFilesDir?: string;
  /** Extra "ip name" lines for /etc/hosts (--add-host, the container's own address). */
  extraHosts?: string[];
  /** Nameservers for /etc/resolv.conf; default: the host's (minus loopback ones unless host network). */
  dns?: string[];
  /** Run a minimal init (tini) as pid 1 that reaps zombies and forwards signals. */
  init?: boolean;
  annotations?: Record<string, string>;
}

const TINI_CANDIDATES = ['/usr/bin/tini-static', '/usr/bin/tini'];
/** Where the init binary is bind-mounted inside the container (Docker uses /sbin/docker-init). */
export const INIT_PATH = '/sbin/drydock-init';

export async function findInit(): Promise<string> {
  for (const c of TINI_CANDIDATES) {
    try { await fsp.access(c); return c; } catch { /* next */ }
  }
  const { UserError } = await import('../util/errors.js');
  throw new UserError('--init needs tini: apt-get install tini (drydock bind-mounts /usr/bin/tini-static as pid 1)');
}

/** Adds a PATH when the image sets none, like Docker. */
export function withDefaultPath(env: string[]): string[] {
  return env.some((e) => e.startsWith('PATH=')) ? env : [`PATH=${DEFAULT_PATH}`, ...env];
}

export async function createRuntimeSpec(opts: RuntimeSpecOptions): Promise<OciSpec> {
  const caps = opts.privileged ? allCapabilities() : opts.capabilities ?? DEFAULT_CAPABILITIES;
  // The rootfs's passwd and group, the host files and the seccomp profile: a dozen small reads
  // and writes, made with synchronous calls (each a few microseconds) rather than thread-pool
  // round trips that a RUN step would wait for, one after another, before its container starts.
  const hostnameP = opts.hostname !== undefined ? Promise.resolve(opts.hostname)
    : opts.network === 'host' ? Promise.resolve(readTextOr('/etc/hostname', 'localhost\n').trim()) : Promise.resolve('drydock');
  const hostFilesP = hostnameP.then((h) => writeHostFiles(opts.hostFilesDir ?? path.join(path.dirname(opts.rootfs), 'hostfiles'), h, opts));
  // The profile's capability conditions are resolved against the final bounding set.
  const seccompP = opts.privileged ? Promise.resolve(undefined) : seccompFor(opts.seccomp, caps);
  // All settle before the first failure is thrown: no write is left running behind an error.
  const [user, hostname, hostFiles, seccomp] = await allSettledOrThrow([resolveUser(opts.rootfs, opts.user, opts.groupAdd), hostnameP, hostFilesP, seccompP] as const);
  let env = withDefaultPath(opts.env);
  if (!env.some((e) => e.startsWith('HOME='))) env = [...env, `HOME=${user.home}`];
  if (opts.terminal && !env.some((e) => e.startsWith('TERM='))) env = [...env, 'TERM=xterm'];
  // Docker's order: PATH, HOSTNAME, then the image's and the user's variables.
  if (opts.hostnameEnv && !env.some((e) => e.startsWith('HOSTNAME='))) {
    const at = env.findIndex((e) => e.startsWith('PATH=')) + 1;
    env = [...env.slice(0, at), `HOSTNAME=${hostname}`, ...env.slice(at)];
  }
  const namespaces: { type: string; path?: string }[] = [
    { type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' },
  ];
  if (opts.network === 'none') namespaces.push({ type: 'network' });
  else if (typeof opts.network === 'object') namespaces.push({ type: 'network', path: opts.network.netnsPath });
  // With host networking the UTS namespace would still hide the host's name; Docker shares it.
  if (opts.network === 'host' && !opts.hostname) namespaces.splice(namespaces.findIndex((n) => n.type === 'uts'), 1);

  const userMounts = opts.mounts ?? [];
  const userDest = new Set(userMounts.map((m) => path.posix.normalize(m.destination)));
  const defaults: OciMount[] = [
    { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
    { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'] },
    { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', `size=${opts.shmSize ? `${Math.ceil(opts.shmSize / 1024)}k` : '65536k'}`] },
    { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
    // A fresh sysfs, also with host networking (root may mount one in the host's network
    // namespace), as containerd's defaults and BuildKit have it. Not a bind of the host's /sys:
    // `ro` on an rbind makes only its top mount read-only, and the host's cgroup hierarchies
    // mounted below it (/sys/fs/cgroup/*, ~10 on cgroup v1) would stay writable from inside.
    { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
    // The container's own cgroups, read-only (runc binds each hierarchy's cgroup of the container).
    { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['nosuid', 'noexec', 'nodev', 'relatime', 'ro'] },
    { destination: '/etc/hosts', type: 'bind', source: hostFiles.hosts, options: ['rbind', 'rprivate'] },
    { destination: '/etc/hostname', type: 'bind', source: hostFiles.hostname, options: ['rbind', 'rprivate'] },
    { destination: '/etc/resolv.conf', type: 'bind', source: hostFiles.resolv, options: ['rbind', 'rprivate'] },
  ];
  // Privileged containers may write /sys and the cgroup tree (a daemon inside manages both).
  if (opts.privileged) for (const m of defaults) if (m.destination === '/sys' || m.destination === '/sys/fs/cgroup') m.options = m.options!.filter((o) => o !== 'ro');
  const mounts = [...defaults.filter((m) => !userDest.has(m.destination)), ...userMounts];
  let args = opts.args;
  if (opts.init) {
    mounts.push({ destination: INIT_PATH, type: 'bind', source: await findInit(), options: ['bind', 'ro'] });
    args = [INIT_PATH, '--', ...args];
  }
  const spec: OciSpec = {
    ociVersion: '1.0.2',
    process: {
      terminal: !!opts.terminal,
      user: { uid: user.uid, gid: user.gid, ...(user.additionalGids.length ? { additionalGids: user.additionalGids } : {}) },
      args,
      env,
      cwd: opts.cwd || '/',
      capabilities: { bounding: caps, effective: caps, permitted: caps, inheritable: [], ambient: [] },
      noNewPrivileges: !!opts.noNewPrivileges,
      ...(opts.rlimits?.length ? { rlimits: opts.rlimits } : {}),
    },
    root: { path: opts.rootfs, readonly: !!opts.readonlyRootfs },
    hostname: namespaces.some((n) => n.type === 'uts') ? hostname : undefined,
    mounts,
    linux: {
      namespaces,
      ...(opts.resources || opts.privileged ? { resources: { ...opts.resources, ...(opts.privileged ? { devices: [{ allow: true, access: 'rwm' }] } : {}) } } : {}),
      ...(opts.privileged ? { devices: await hostDevices() } : {}),
      ...(seccomp ? { seccomp } : {}),
      maskedPaths: opts.privileged ? [] : opts.maskedPaths ?? DEFAULT_MASKED_PATHS,
      readonlyPaths: opts.privileged ? [] : opts.readonlyPaths ?? DEFAULT_READONLY_PATHS,
    },
    ...(opts.annotations ? { annotations: opts.annotations } : {}),
  };
  return spec;
}

/** The host's device nodes under /dev, for --privileged (like Docker, minus the pty/shm/mqueue mounts). */
export async function hostDevices(dir = '/dev'): Promise<OciDevice[]> {
  const out: OciDevice[] = [];
  const entries = await fsp.readdir(dir, { withFileTypes: true }).catch(() => []);
  for (const e of entries) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) {
      if (!['/dev/pts', '/dev/shm', '/dev/mqueue'].includes(p)) out.push(...await hostDevices(p));
      continue;
    }
    if (!e.isCharacterDevice() && !e.isBlockDevice()) continue;
    // /dev/console and the tty the command runs on belong to the runtime's own setup.
    if (p === '/dev/console' || p === '/dev/ptmx') continue;
    const st = await fsp.stat(p, { bigint: true }).catch(() => undefined);
    if (!st) continue;
    const rdev = st.rdev;
    const major = Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn));
    const minor = Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn));
    out.push({ path: p, type: e.isCharacterDevice() ? 'c' : 'b', major, minor, fileMode: Number(st.mode & 0o7777n), uid: Number(st.uid), gid: Number(st.gid) });
  }
  return out;
}

function writeHostFiles(dir: string, hostname: string, opts: RuntimeSpecOptions): { hosts: string; hostname: string; resolv: string } {
  const hostsFile = path.join(dir, 'hosts');
  const hostnameFile = path.join(dir, 'hostname');
  const resolvFile = path.join(dir, 'resolv.conf');
  const fallbackHosts = '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n';
  const hostHosts = opts.network === 'host' ? readTextOr('/etc/hosts', fallbackHosts) : fallbackHosts;
  const hostResolv = opts.dns ? '' : readTextOr('/etc/resolv.conf', '');
  let hosts = hostHosts;
  for (const line of opts.extraHosts ?? []) hosts += `${line}\n`;
  if (opts.network !== 'host' && !(opts.extraHosts ?? []).some((l) => l.split(/\s+/).includes(hostname))) hosts += `127.0.1.1\t${hostname}\n`;
  let nameservers = opts.dns;
  let rest: string[] = [];
  if (!nameservers) {
    const lines = hostResolv.split('\n');
    nameservers = lines.filter((l) => /^\s*nameserver\s/.test(l)).map((l) => l.trim().split(/\s+/)[1]!)
      // A loopback resolver (systemd-resolved) is unreachable from a separate network namespace.
      .filter((ns) => opts.network === 'host' || !(/^127\./.test(ns) || ns === '::1'));
    rest = lines.filter((l) => /^\s*(search|options)\s/.test(l));
    if (nameservers.length === 0 && opts.network !== 'host') nameservers = ['8.8.8.8', '8.8.4.4'];
  }
  const resolv = [...nameservers.map((n) => `nameserver ${n}`), ...rest].join('\n') + '\n';
  // Regenerated on every start, so no fsync: a crash loses nothing that is not rebuilt.
  mkdirSync(dir, { recursive: true });
  writeFileSync(hostsFile, hosts);
  writeFileSync(hostnameFile, `${hostname}\n`);
  writeFileSync(resolvFile, resolv);
  return { hosts: hostsFile, hostname: hostnameFile, resolv: resolvFile };
}

/** A host file's text, or `fallback` when it cannot be read. */
function readTextOr(file: string, fallback: string): string {
  try { return readFileSync(file, 'utf8'); } catch { return fallback; }
}
