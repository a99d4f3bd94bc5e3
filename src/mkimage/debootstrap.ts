// Drives debootstrap into a scratch directory and slims the result into a container base the
// way Debian's official images (debuerreotype) and moby's contrib/mkimage do: apt caches, lists
// and logs removed, the host's resolv.conf/hostname dropped, apt tuned for image layers and
// services kept from starting at install time. /dev is emptied: runtimes create the device
// nodes, and nodes baked into layers need privileges to extract.
import { spawn } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { UserError } from '../util/errors.js';
import type { Scratch } from './scratch.js';
import { emptyRootfsDir, insideRootfs, writeRootfsFile } from './rootfs-path.js';

export const DEFAULT_SUITE = 'bookworm';
export const DEFAULT_VARIANT = 'minbase';
export const VARIANTS = ['minbase', 'buildd', 'fakechroot', 'standard'] as const;

export interface DebootstrapOptions {
  suite?: string;
  /** debootstrap --variant; "standard" means debootstrap's default (no --variant). */
  variant?: string;
  include?: string[];
  exclude?: string[];
  components?: string[];
  mirror: string;
  arch?: string;
  /** Program to run (tests and odd hosts); default "debootstrap" from PATH. */
  debootstrap?: string;
  /** Progress lines ("I: Retrieving …") as debootstrap prints them. */
  onProgress?: (line: string) => void;
}

const SUITE = /^[a-z0-9][a-z0-9.+-]*$/;
const PACKAGE = /^[a-z0-9][a-z0-9+.-]+$/;
const ARCH = /^[a-z0-9][a-z0-9-]*$/;

/** Splits "a,b c" option values into package names, checking each. */
export function packageList(values: string[] | undefined, what: string): string[] {
  const out = (values ?? []).flatMap((v) => v.split(/[\s,]+/)).filter(Boolean);
  for (const p of out) if (!PACKAGE.test(p)) throw new UserError(`invalid package name "${p}" in ${what}`);
  return out;
}

/** The debootstrap command line for the options (exported for the benchmark and tests). */
export function debootstrapArgs(target: string, opts: DebootstrapOptions): string[] {
  const suite = opts.suite ?? DEFAULT_SUITE;
  if (!SUITE.test(suite)) throw new UserError(`invalid suite "${suite}" (e.g. bookworm, trixie, stable)`);
  const variant = opts.variant ?? DEFAULT_VARIANT;
  if (!(VARIANTS as readonly string[]).includes(variant)) throw new UserError(`invalid variant "${variant}" (one of ${VARIANTS.join(', ')})`);
  let mirror: URL;
  try { mirror = new URL(opts.mirror); } catch { throw new UserError(`invalid mirror URL "${opts.mirror}"`); }
  if (!['http:', 'https:', 'file:'].includes(mirror.protocol)) throw new UserError(`mirror must be an http(s):// or file:// URL, got "${opts.mirror}"`);
  const args = ['--force-check-gpg'];
  if (variant !== 'standard') args.push(`--variant=${variant}`);
  const include = packageList(opts.include, '--include');
  const exclude = packageList(opts.exclude, '--exclude');
  if (include.length) args.push(`--include=${include.join(',')}`);
  if (exclude.length) args.push(`--exclude=${exclude.join(',')}`);
  const components = (opts.components ?? []).flatMap((c) => c.split(',')).filter(Boolean);
  for (const c of components) if (!SUITE.test(c)) throw new UserError(`invalid component "${c}"`);
  if (components.length) args.push(`--components=${components.join(',')}`);
  if (opts.arch) {
    if (!ARCH.test(opts.arch)) throw new UserError(`invalid architecture "${opts.arch}"`);
    args.push(`--arch=${opts.arch}`);
  }
  args.push(suite, target, opts.mirror);
  return args;
}

/** Last lines of debootstrap's own log, which names the package or URL that failed. */
async function logTail(target: string, lines = 15): Promise<string> {
  const log = await fsp.readFile(path.join(target, 'debootstrap/debootstrap.log'), 'utf8').catch(() => '');
  return log.trimEnd().split('\n').slice(-lines).join('\n');
}

/** Runs debootstrap into `scratch.dir/rootfs`; returns that path. */
export async function runDebootstrap(scratch: Scratch, opts: DebootstrapOptions): Promise<string> {
  const target = path.join(scratch.dir, 'rootfs');
  const args = debootstrapArgs(target, opts);
  const program = opts.debootstrap ?? 'debootstrap';
  const child = spawn(program, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    // Own process group: a terminal Ctrl-C reaches us, and we stop debootstrap in order, after
    // which its EXIT trap unmounts /proc and /sys from the target.
    detached: true,
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive', LC_ALL: 'C' },
  });
  scratch.track(child);
  const recent: string[] = [];
  const onData = (chunk: Buffer) => {
    for (const line of chunk.toString('utf8').split('\n')) {
      if (!line.trim()) continue;
      recent.push(line);
      if (recent.length > 20) recent.shift();
      opts.onProgress?.(line);
    }
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', (e: NodeJS.ErrnoException) => {
      reject(e.code === 'ENOENT' ? new UserError(`${program} is not installed (apt-get install debootstrap, or npm run setup)`) : e);
    });
    child.once('close', (c, signal) => resolve(signal ? null : c));
  });
  if (code !== 0) {
    // debootstrap's "E:" lines say what went wrong; its log adds the failing download or package.
    const errors = recent.filter((l) => /^E: /.test(l));
    const log = await logTail(target, 8);
    const detail = [...(errors.length ? errors : recent.slice(-5)), ...(log ? ['debootstrap.log:', ...log.split('\n').map((l) => `  ${l}`)] : [])];
    throw new UserError(`debootstrap ${opts.suite ?? DEFAULT_SUITE} from ${opts.mirror} failed${code === null ? ' (killed)' : ` (exit ${code})`}:\n${detail.join('\n')}`);
  }
  return target;
}

const APT_CONF: Record<string, string> = {
  // Same effect as apt-get clean after every install: package caches would waste layer space.
  'etc/apt/apt.conf.d/docker-clean':
    'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };\n' +
    'APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };\n' +
    'Dir::Cache::pkgcache "";\nDir::Cache::srcpkgcache "";\n',
  'etc/apt/apt.conf.d/docker-autoremove-suggests': 'Apt::AutoRemove::SuggestsImportant "false";\n',
  'etc/apt/apt.conf.d/docker-no-languages': 'Acquire::Languages "none";\n',
  'etc/apt/apt.conf.d/docker-gzip-indexes': 'Acquire::GzipIndexes "true";\nAcquire::CompressionTypes::Order:: "gz";\n',
  // Image builds are restarted from scratch after a crash, so dpkg's fsyncs buy nothing.
  'etc/dpkg/dpkg.cfg.d/docker-apt-speedup': 'force-unsafe-io\n',
};

// Installing a daemon in `RUN apt-get install` must not try to start it inside the build.
const POLICY_RC_D = '#!/bin/sh\n# Installed by drydock mkimage: do not start services while building images.\nexit 101\n';

/** Turns a fresh debootstrap tree into a container base image root filesystem. */
export async function slimDebianRootfs(rootfs: string): Promise<void> {
  await fsp.rm(path.join(rootfs, 'debootstrap'), { recursive: true, force: true });
  // Device nodes and mount points: the runtime provides these.
  for (const d of ['dev', 'proc', 'sys', 'run', 'tmp']) await emptyRootfsDir(rootfs, d);
  await emptyRootfsDir(rootfs, 'var/lib/apt/lists', (n) => n === 'partial' || n === 'lock');
  await emptyRootfsDir(rootfs, 'var/lib/apt/lists/partial');
  await emptyRootfsDir(rootfs, 'var/cache/apt/archives', (n) => n === 'partial' || n === 'lock');
  await emptyRootfsDir(rootfs, 'var/cache/apt/archives/partial');
  for (const rel of ['var/cache/apt/pkgcache.bin', 'var/cache/apt/srcpkgcache.bin', 'var/cache/ldconfig/aux-cache',
    'etc/resolv.conf', 'etc/hostname', 'var/lib/dpkg/status-old', 'var/lib/dpkg/diversions-old',
    'var/lib/dpkg/statoverride-old', 'var/cache/debconf/config.dat-old', 'var/cache/debconf/templates.dat-old']) {
    await fsp.rm(await insideRootfs(rootfs, rel), { force: true });
  }
  await removeLogFiles(path.join(rootfs, 'var/log'));
  // Empty, not absent: systemd and dbus treat an empty machine-id as "generate on first boot".
  const machineId = await insideRootfs(rootfs, 'etc/machine-id');
  if (await fsp.lstat(machineId).then(() => true, () => false)) await fsp.writeFile(machineId, '');
  for (const [rel, content] of Object.entries(APT_CONF)) await writeRootfsFile(rootfs, rel, content);
  await writeRootfsFile(rootfs, 'usr/sbin/policy-rc.d', POLICY_RC_D, 0o755);
}

/** Deletes log files but keeps the directory tree (packages expect /var/log/apt etc. to exist). */
async function removeLogFiles(dir: string): Promise<void> {
  const entries = await fsp.readdir(dir, { withFileTypes: true }).catch(() => []);
  for (const e of entries) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) await removeLogFiles(p);
    else await fsp.rm(p, { force: true });
  }
}

/**
 * For SOURCE_DATE_EPOCH builds: the "last password change" field of /etc/shadow is the day
 * debootstrap ran, which alone would make two builds of the same packages differ. It is set to
 * the epoch's day, as debuerreotype does. (File times are clamped by the layer writer.)
 */
export async function pinShadowDates(rootfs: string, sourceDateEpoch: number): Promise<void> {
  const day = String(Math.floor(sourceDateEpoch / 86400));
  for (const rel of ['etc/shadow', 'etc/shadow-']) {
    const p = await insideRootfs(rootfs, rel);
    const text = await fsp.readFile(p, 'utf8').catch(() => undefined);
    if (text === undefined) continue;
    const pinned = text.split('\n').map((line) => {
      const f = line.split(':');
      if (f.length < 3 || f[2] === '') return line;
      f[2] = day;
      return f.join(':');
    }).join('\n');
    if (pinned !== text) await fsp.writeFile(p, pinned);
  }
}

