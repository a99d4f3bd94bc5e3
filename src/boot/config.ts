// Boot options: one set of keys shared by the command-line flags and the YAML file
// (`--config boot.yml`), validated once so the builders only see well-formed values.
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { UserError } from '../util/errors.js';
import { validateTimezone } from '../mkimage/timezone.js';
import { parseReference } from '../image/reference.js';
import { FIRMWARES, type Firmware } from './uefi.js';
import { DEFAULT_LAYER_FORMAT, LAYER_FORMATS, type LayerFormat } from '../os/layout.js';
import { checkUniqueNames, parseServiceEntry, parseServiceFlag, type BootService } from './services.js';

export type InitMode = 'auto' | 'image' | 'drydock';
export type SquashfsCompression = 'zstd' | 'xz' | 'gzip' | 'lz4';
export type DiskFormat = 'raw' | 'qcow2';

/**
 * A filesystem mounted at boot: a labelled disk (`LABEL:/path`) or a host folder shared with
 * the VM by tag (`9p:TAG:/path`, `virtiofs:TAG:/path`). `label` is the label or the tag.
 */
export interface BootMount { type: 'label' | '9p' | 'virtiofs'; label: string; path: string }

/** --network: DHCP on every wired NIC (default), nothing, or one static address. */
export type NetworkConfig =
  | { mode: 'dhcp' }
  | { mode: 'none' }
  | { mode: 'static'; address: string; prefix: number; gateway?: string; dns: string[]; iface?: string };

/** Validated options. Paths are absolute; file-valued options are already read where noted. */
export interface BootOptions {
  timezone?: string;
  proxy?: string;
  noProxy?: string;
  motd?: string;
  /** Path of the startup script. */
  startupScript?: string;
  hostname?: string;
  /** Public keys (contents, one key per entry). */
  sshKeys: string[];
  kernelArgs?: string;
  mounts: BootMount[];
  network: NetworkConfig;
  /** Containers started at boot (--service, services:). */
  services: BootService[];
  /** Directory baked over the image (per-machine files). */
  topLayer?: string;
  init: InitMode;
  kernel?: string;
  modules?: string;
  compression: SquashfsCompression;
  /** ISO only: which firmware boots it (default both: isolinux for BIOS, GRUB for UEFI). */
  firmware?: Firmware;
  /** Disk only. */
  size?: number;
  format: DiskFormat;
  /** Disk only: an updatable disk tracking this reference ('' = the image's own name; docs/boot.md). */
  updatesFrom?: string;
  /** Registries the machine reaches over plain HTTP (HOST:PORT). */
  insecureRegistries: string[];
  /** Registry credentials (docker config.json) the machine pulls with. */
  authfile?: string;
  /** Boots a new deployment gets to reach "service started" before it is abandoned. */
  bootTries: number;
  /** Seconds after boot by which a new deployment must reach "service started" (0: no limit). */
  bootDeadline: number;
  /** The filesystem of the layer files (os/layers/<diffid>.<format>); recorded in state.json for upgrades. */
  layerFormat: LayerFormat;
}

/** Raw, unvalidated values as they come from commander or YAML (kebab-case keys, as the flags). */
export type RawBootOptions = Record<string, unknown>;

const KEYS = [
  'timezone', 'proxy', 'no-proxy', 'motd', 'startup-script', 'hostname', 'ssh-key', 'kernel-args',
  'mount', 'network', 'service', 'top-layer', 'init', 'kernel', 'modules', 'compression', 'firmware', 'size', 'format',
  'updates-from', 'insecure-registry', 'authfile', 'boot-tries', 'boot-deadline', 'layer-format',
] as const;
const PATH_KEYS = new Set(['startup-script', 'top-layer', 'kernel', 'modules', 'authfile']);
const LIST_KEYS = new Set(['ssh-key', 'mount', 'service', 'insecure-registry']);
/** YAML spellings beside the flag names. */
const ALIASES: Record<string, string> = { services: 'service', mounts: 'mount', 'insecure-registries': 'insecure-registry', insecureRegistries: 'insecure-registry' };

const camel = (k: string): string => k.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

/** Reads a YAML file whose keys are the flag names (kebab-case; camelCase accepted too). */
export async function loadBootConfigFile(file: string): Promise<RawBootOptions> {
  let text: string;
  try { text = await fsp.readFile(file, 'utf8'); } catch (e) {
    throw new UserError(`cannot read boot config ${file}: ${(e as Error).message}`, { cause: e });
  }
  let doc: unknown;
  try { doc = parseYaml(text); } catch (e) {
    throw new UserError(`${file}: invalid YAML: ${(e as Error).message}`, { cause: e });
  }
  if (doc == null) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) throw new UserError(`${file}: expected a mapping of options (timezone: …, proxy: …)`);
  const out: RawBootOptions = {};
  const base = path.dirname(path.resolve(file));
  for (const [k, v] of Object.entries(doc as Record<string, unknown>)) {
    const key = KEYS.find((known) => known === k || camel(known) === k || known.replace(/-/g, '_') === k || ALIASES[k] === known);
    if (!key) throw new UserError(`${file}: unknown key "${k}" (known: ${KEYS.join(', ')})`);
    let value = v;
    // services: entries may be mappings (image, name, command, env, volumes, restart), checked later.
    if (key === 'service') value = Array.isArray(v) ? v : [v];
    else if (LIST_KEYS.has(key)) value = Array.isArray(v) ? v.map(String) : [String(v)];
    else if (v !== null && typeof v === 'object') throw new UserError(`${file}: "${k}" must be a single value`);
    // Paths in the file are relative to the file, as in docker-compose.
    if (PATH_KEYS.has(key) && typeof value === 'string') value = path.resolve(base, value);
    if (key === 'ssh-key') value = (value as string[]).map((s) => (looksLikePublicKey(s) ? s : path.resolve(base, s)));
    out[key] = value;
  }
  return out;
}

/** Flags win over the file; list options (ssh-key, mount) accumulate. */
export function mergeRaw(file: RawBootOptions, flags: RawBootOptions): RawBootOptions {
  const out: RawBootOptions = { ...file };
  for (const [k, v] of Object.entries(flags)) {
    if (v === undefined) continue;
    if (LIST_KEYS.has(k)) out[k] = [...((file[k] as string[] | undefined) ?? []), ...(v as string[])];
    else out[k] = v;
  }
  return out;
}

export function looksLikePublicKey(s: string): boolean {
  return /^(ssh-(rsa|ed25519|dss)|ecdsa-sha2-\S+|sk-\S+)\s+[A-Za-z0-9+/=]+/.test(s.trim());
}

/** "2G", "512M", "1.5GiB", "1048576" → bytes. */
export function parseSize(s: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?$/i.exec(s.trim());
  if (!m) throw new UserError(`invalid size "${s}" (examples: 2G, 512M, 1073741824)`);
  const mult = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g' | 't'];
  return Math.round(Number(m[1]) * mult);
}

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

/** "dhcp", "none", or "static=ADDR/PREFIX[,gw=GW][,dns=DNS[,dns=DNS2]][,iface=eth0]". */
export function parseNetwork(spec: string): NetworkConfig {
  const s = spec.trim();
  if (s === 'dhcp') return { mode: 'dhcp' };
  if (s === 'none') return { mode: 'none' };
  const bad = (why: string): never => {
    throw new UserError(`invalid --network "${spec}": ${why} (expected dhcp, none or static=ADDR/PREFIX,gw=GW,dns=DNS, e.g. static=192.168.1.10/24,gw=192.168.1.1,dns=1.1.1.1)`);
  };
  if (!s.startsWith('static=')) bad('unknown mode');
  const [cidr, ...parts] = s.slice('static='.length).split(',');
  const m = /^([^/]+)\/(\d{1,2})$/.exec(cidr ?? '');
  if (!m || !IPV4.test(m[1]!) || Number(m[2]) > 32 || Number(m[2]) < 1) bad('the address must be IPv4 ADDR/PREFIX');
  const out: NetworkConfig = { mode: 'static', address: m![1]!, prefix: Number(m![2]), dns: [] };
  for (const p of parts) {
    const [k, v = ''] = p.split('=', 2) as [string, string | undefined];
    if ((k === 'gw' || k === 'gateway') && IPV4.test(v)) out.gateway = v;
    else if (k === 'dns' && IPV4.test(v)) out.dns.push(v);
    else if (k === 'iface' && /^[A-Za-z0-9_.-]{1,15}$/.test(v)) out.iface = v;
    else bad(`"${p}" is not gw=IPV4, dns=IPV4 or iface=NAME`);
  }
  return out;
}

/** The /.drydock/network.conf the network-up script sources. */
export function networkConf(n: NetworkConfig): string {
  const lines = ['# generated by drydock (--network); ip= on the kernel command line wins', `NET_MODE=${n.mode}`];
  if (n.mode === 'static') {
    lines.push(`NET_ADDR=${n.address}`, `NET_PREFIX=${n.prefix}`, `NET_GW=${n.gateway ?? ''}`, `NET_DNS='${n.dns.join(' ')}'`, `NET_IFACE=${n.iface ?? ''}`);
  }
  return lines.join('\n') + '\n';
}

export function parseMount(spec: string): BootMount {
  const share = /^(9p|virtiofs):([^:]*):(.*)$/.exec(spec);
  if (share) {
    const [, type, tag, target] = share as unknown as [string, '9p' | 'virtiofs', string, string];
    if (!/^[A-Za-z0-9_.-]{1,31}$/.test(tag) || !target.startsWith('/') || /[\s:]/.test(target) || target.split('/').includes('..') || target === '/') {
      throw new UserError(`invalid --mount "${spec}": expected ${type}:TAG:/absolute/path (e.g. ${type}:share:/srv/share)`);
    }
    return { type, label: tag, path: path.posix.normalize(target) };
  }
  const i = spec.indexOf(':');
  const label = i > 0 ? spec.slice(0, i).replace(/^LABEL=/, '') : '';
  const target = i > 0 ? spec.slice(i + 1) : '';
  if (!/^[A-Za-z0-9_.-]{1,32}$/.test(label) || !target.startsWith('/') || /[\s:]/.test(target) || target.split('/').includes('..') || target === '/') {
    throw new UserError(`invalid --mount "${spec}": expected LABEL:/absolute/path, 9p:TAG:/path or virtiofs:TAG:/path (e.g. data:/var/lib/data)`);
  }
  return { type: 'label', label, path: path.posix.normalize(target) };
}

const str = (raw: RawBootOptions, k: string): string | undefined => {
  const v = raw[k];
  if (v === undefined || v === null || v === false) return undefined;
  return String(v);
};

async function readSshKeys(values: string[]): Promise<string[]> {
  const keys: string[] = [];
  for (const v of values) {
    let text = v;
    if (!looksLikePublicKey(v)) {
      try { text = await fsp.readFile(v, 'utf8'); } catch {
        throw new UserError(`--ssh-key ${v}: not a public key and not a readable file`);
      }
    }
    if (/PRIVATE KEY/.test(text)) throw new UserError(`--ssh-key ${v} is a private key; pass the .pub file`);
    const lines = text.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
    for (const l of lines) {
      if (!looksLikePublicKey(l)) throw new UserError(`--ssh-key ${v}: "${l.slice(0, 40)}…" is not an OpenSSH public key`);
      keys.push(l);
    }
  }
  return keys;
}

async function requireFile(p: string, what: string, kind: 'file' | 'dir' | 'any' = 'file'): Promise<string> {
  const abs = path.resolve(p);
  const st = await fsp.stat(abs).catch(() => undefined);
  if (!st) throw new UserError(`${what} ${p} does not exist`);
  if (kind === 'file' && !st.isFile()) throw new UserError(`${what} ${p} is not a file`);
  if (kind === 'dir' && !st.isDirectory()) throw new UserError(`${what} ${p} is not a directory`);
  return abs;
}

/** Validates merged raw options; every problem is a UserError naming the option. */
export async function validateBootOptions(raw: RawBootOptions, zoneinfo = '/usr/share/zoneinfo'): Promise<BootOptions> {
  const opts: BootOptions = {
    sshKeys: [], mounts: [], network: { mode: 'dhcp' }, services: [], init: 'auto', compression: 'zstd', format: 'raw',
    insecureRegistries: [], bootTries: 3, bootDeadline: 300, layerFormat: DEFAULT_LAYER_FORMAT,
  };

  const tz = str(raw, 'timezone');
  if (tz) {
    validateTimezone(tz);
    const head = await fsp.readFile(path.join(zoneinfo, tz)).then((b) => b.subarray(0, 4).toString('latin1')).catch(() => '');
    if (head !== 'TZif') throw new UserError(`unknown --timezone "${tz}": no such zone in ${zoneinfo} (install tzdata; examples: UTC, Europe/Berlin, Asia/Shanghai)`);
    opts.timezone = tz;
  }

  const proxy = str(raw, 'proxy');
  if (proxy) {
    let u: URL;
    try { u = new URL(proxy); } catch { throw new UserError(`invalid --proxy "${proxy}" (example: http://proxy.example.com:3128)`); }
    if (!['http:', 'https:', 'socks5:', 'socks5h:'].includes(u.protocol)) throw new UserError(`--proxy ${proxy}: scheme must be http, https, socks5 or socks5h`);
    opts.proxy = proxy;
  }
  const noProxy = str(raw, 'no-proxy');
  if (noProxy !== undefined) {
    if (/[\s'"\\$`]/.test(noProxy)) throw new UserError(`invalid --no-proxy "${noProxy}": a comma-separated host list without spaces or quotes`);
    opts.noProxy = noProxy;
  }

  const motd = str(raw, 'motd');
  if (motd !== undefined) {
    // A path to an existing file means its contents; anything else is the text itself.
    const st = await fsp.stat(motd).catch(() => undefined);
    opts.motd = st?.isFile() ? await fsp.readFile(motd, 'utf8') : motd.replace(/\\n/g, '\n');
    if (!opts.motd.endsWith('\n')) opts.motd += '\n';
  }

  const script = str(raw, 'startup-script');
  if (script) opts.startupScript = await requireFile(script, '--startup-script');

  const hostname = str(raw, 'hostname');
  if (hostname) {
    if (hostname.length > 64 || !/^[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?)*$/.test(hostname)) {
      throw new UserError(`invalid --hostname "${hostname}": letters, digits and inner hyphens, up to 64 characters`);
    }
    opts.hostname = hostname;
  }

  opts.sshKeys = await readSshKeys((raw['ssh-key'] as string[] | undefined) ?? []);

  const kargs = str(raw, 'kernel-args');
  if (kargs) {
    if (/[\n\r]/.test(kargs)) throw new UserError('--kernel-args must be one line');
    opts.kernelArgs = kargs.trim();
  }

  opts.mounts = ((raw.mount as string[] | undefined) ?? []).map(parseMount);
  const network = str(raw, 'network');
  if (network) opts.network = parseNetwork(network);
  opts.services = ((raw.service as unknown[] | undefined) ?? []).map((v) => (typeof v === 'string' ? parseServiceFlag(v) : parseServiceEntry(v, 'services:')));
  checkUniqueNames(opts.services);
  const top = str(raw, 'top-layer');
  if (top) opts.topLayer = await requireFile(top, '--top-layer', 'dir');

  const init = str(raw, 'init') ?? 'auto';
  if (!['auto', 'image', 'drydock'].includes(init)) throw new UserError(`invalid --init "${init}": auto, image or drydock`);
  opts.init = init as InitMode;

  const kernel = str(raw, 'kernel');
  if (kernel) opts.kernel = await requireFile(kernel, '--kernel', 'any');
  const modules = str(raw, 'modules');
  if (modules) opts.modules = await requireFile(modules, '--modules', 'dir');

  const comp = str(raw, 'compression') ?? 'zstd';
  if (!['zstd', 'xz', 'gzip', 'lz4'].includes(comp)) throw new UserError(`invalid --compression "${comp}": zstd, xz, gzip or lz4`);
  opts.compression = comp as SquashfsCompression;

  const firmware = str(raw, 'firmware');
  if (firmware !== undefined) {
    if (!(FIRMWARES as readonly string[]).includes(firmware)) throw new UserError(`invalid --firmware "${firmware}": bios, uefi or both`);
    opts.firmware = firmware as Firmware;
  }

  const size = str(raw, 'size');
  if (size) opts.size = parseSize(size);
  const format = str(raw, 'format') ?? 'raw';
  if (format !== 'raw' && format !== 'qcow2') throw new UserError(`invalid --format "${format}": raw or qcow2`);
  opts.format = format;

  // A bare --updates-from (true) tracks the image's own name, filled in once the image is known.
  const updatesFrom = raw['updates-from'] === true ? '' : str(raw, 'updates-from');
  if (updatesFrom) {
    try { parseReference(updatesFrom); } catch (e) {
      throw new UserError(`invalid --updates-from "${updatesFrom}": ${(e as Error).message} (example: 10.0.2.2:5000/os/desktop:stable)`, { cause: e });
    }
  }
  if (updatesFrom !== undefined) opts.updatesFrom = updatesFrom;
  for (const r of (raw['insecure-registry'] as string[] | undefined) ?? []) {
    if (!/^[A-Za-z0-9.-]+(:\d{1,5})?$|^\[[0-9a-fA-F:]+\](:\d{1,5})?$/.test(r)) throw new UserError(`invalid --insecure-registry "${r}": expected HOST[:PORT] (e.g. 10.0.2.2:5000)`);
    opts.insecureRegistries.push(r);
  }
  const authfile = str(raw, 'authfile');
  if (authfile) {
    opts.authfile = await requireFile(authfile, '--authfile');
    try { JSON.parse(await fsp.readFile(opts.authfile, 'utf8')); } catch {
      throw new UserError(`--authfile ${authfile} is not JSON (expected a docker config.json with "auths")`);
    }
  }
  const int = (k: string, min: number, fallback: number): number => {
    const v = str(raw, k);
    if (v === undefined) return fallback;
    if (!/^\d+$/.test(v.trim()) || Number(v) < min) throw new UserError(`invalid --${k} "${v}": a whole number, at least ${min}`);
    return Number(v);
  };
  opts.bootTries = int('boot-tries', 1, opts.bootTries);
  opts.bootDeadline = int('boot-deadline', 0, opts.bootDeadline);
  const layerFormat = str(raw, 'layer-format');
  if (layerFormat !== undefined) {
    const f = LAYER_FORMATS.find((x) => x === layerFormat);
    if (!f) throw new UserError(`invalid --layer-format "${layerFormat}": ${LAYER_FORMATS.join(' or ')}`);
    opts.layerFormat = f;
  }
  const updateOnly = ['insecure-registry', 'authfile', 'boot-tries', 'boot-deadline', 'layer-format'].filter((k) => raw[k] !== undefined && !(Array.isArray(raw[k]) && !(raw[k] as unknown[]).length));
  if (opts.updatesFrom === undefined && updateOnly.length) throw new UserError(`--${updateOnly[0]} only applies to an updatable disk (add --updates-from REF)`);
  return opts;
}
