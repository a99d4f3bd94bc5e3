// Configuration: distribution's config.yml keys where they mean the same thing (so a registry:2
// config file works as is), plus a few drydock extensions (auth.access rules, limits, cache).
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { UserError } from '../util/errors.js';
import type { AccessRule } from './auth/access.js';
import { s3OptionsFromConfig, type S3StorageConfig } from './storage/s3.js';

export interface RegistryConfig {
  version?: string;
  log?: { level?: string; accesslog?: { disabled?: boolean } };
  storage: {
    /** fsync: drydock extension (default true); false behaves like distribution (no fsync). */
    filesystem: { rootdirectory: string; fsync?: boolean };
    /** distribution's s3 driver parameters; when present, the registry stores everything in the bucket. */
    s3?: S3StorageConfig;
    delete?: { enabled?: boolean };
    maintenance?: {
      uploadpurging?: { enabled?: boolean; age?: string; interval?: string; dryrun?: boolean };
      readonly?: { enabled?: boolean };
    };
    /** drydock: how long manifests/tags stay in memory ("5s"; "0" disables). */
    cache?: { ttl?: string };
  };
  http: {
    addr: string;
    tls?: { certificate?: string; key?: string };
    /** Seconds to let in-flight requests finish on shutdown (distribution's http.draintimeout). */
    draintimeout?: string;
    headers?: Record<string, string[]>;
  };
  auth?: {
    htpasswd?: { realm?: string; path: string };
    token?: { realm?: string; service?: string; issuer?: string; rootcertbundle?: string; jwks?: string; signingkey?: string; expiration?: number };
    /** drydock: per-user rules; anonymous pull. */
    access?: AccessRule[];
    anonymousread?: boolean;
  };
  proxy?: { remoteurl: string; username?: string; password?: string; ttl?: string };
  /** drydock: request limits. */
  limits?: { maxuploadbytes?: number; maxconcurrentuploads?: number; chunkminlength?: number };
  metrics?: { enabled?: boolean };
}

/** Go-style durations as distribution writes them: "168h", "30m", "1h30m", "10s", "500ms". */
export function parseDuration(value: string | number | undefined, fallbackMs: number): number {
  if (value === undefined || value === '') return fallbackMs;
  if (typeof value === 'number') return value * 1000;
  if (/^\d+$/.test(value)) return Number(value) * 1000;
  const re = /(\d+(?:\.\d+)?)(ms|h|m|s)/g;
  let total = 0;
  let consumed = 0;
  for (const m of value.matchAll(re)) {
    const n = Number(m[1]);
    total += m[2] === 'h' ? n * 3_600_000 : m[2] === 'm' ? n * 60_000 : m[2] === 's' ? n * 1000 : n;
    consumed += m[0].length;
  }
  if (consumed !== value.length) throw new UserError(`invalid duration "${value}" (expected e.g. 168h, 30m, 10s)`);
  return total;
}

export function defaultConfig(root: string): RegistryConfig {
  return {
    version: '0.1',
    storage: { filesystem: { rootdirectory: root }, delete: { enabled: true } },
    http: { addr: '127.0.0.1:5000' },
  };
}

/** Reads a YAML config file (registry:2's config.yml works) and fills in defaults. */
export async function loadConfigFile(file: string): Promise<RegistryConfig> {
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch {
    throw new UserError(`config file ${file} not found`);
  }
  let doc: unknown;
  try {
    doc = YAML.parse(text);
  } catch (e) {
    throw new UserError(`${file}: invalid YAML: ${(e as Error).message}`);
  }
  return normalizeConfig((doc ?? {}) as Partial<RegistryConfig>, path.dirname(path.resolve(file)));
}

export function normalizeConfig(doc: Partial<RegistryConfig> & Record<string, unknown>, baseDir = process.cwd()): RegistryConfig {
  const storage = (doc.storage ?? {}) as Record<string, unknown>;
  const drivers = Object.keys(storage).filter((k) => !['delete', 'maintenance', 'cache', 'redirect'].includes(k));
  const unsupported = drivers.filter((d) => d !== 'filesystem' && d !== 'inmemory' && d !== 's3');
  if (unsupported.length > 0) throw new UserError(`storage driver "${unsupported[0]}" is not supported (drydock has: filesystem, s3)`);
  if (storage.s3 !== undefined) {
    if (!storage.s3 || typeof storage.s3 !== 'object') throw new UserError('storage.s3 needs parameters (bucket, region or regionendpoint, ...)');
    // When s3 is configured it is the store; storage.filesystem (always filled in below) is unused.
    s3OptionsFromConfig(storage.s3 as Record<string, unknown>);
  }
  const fsCfg = (storage.filesystem ?? {}) as { rootdirectory?: string; fsync?: boolean };
  const fsRoot = fsCfg.rootdirectory ?? '/var/lib/registry';
  const resolve = (p: string | undefined) => (p ? path.resolve(baseDir, p) : p);
  const cfg: RegistryConfig = {
    ...doc,
    storage: { ...(doc.storage ?? {}), filesystem: { ...fsCfg, rootdirectory: path.resolve(baseDir, fsRoot) } } as RegistryConfig['storage'],
    http: { addr: '127.0.0.1:5000', ...(doc.http ?? {}) },
  };
  if (cfg.http.tls) cfg.http.tls = { certificate: resolve(cfg.http.tls.certificate), key: resolve(cfg.http.tls.key) };
  if (cfg.auth?.htpasswd) cfg.auth.htpasswd = { ...cfg.auth.htpasswd, path: resolve(cfg.auth.htpasswd.path)! };
  if (cfg.auth?.token) {
    const t = cfg.auth.token;
    cfg.auth.token = { ...t, rootcertbundle: resolve(t.rootcertbundle), jwks: resolve(t.jwks), signingkey: resolve(t.signingkey) };
  }
  validateConfig(cfg);
  return cfg;
}

export function validateConfig(cfg: RegistryConfig): void {
  const { host, port } = splitAddr(cfg.http.addr);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UserError(`http.addr "${cfg.http.addr}": invalid port`);
  if (!host) throw new UserError(`http.addr "${cfg.http.addr}": missing host`);
  const tls = cfg.http.tls;
  if (tls && (tls.certificate || tls.key) && !(tls.certificate && tls.key)) {
    throw new UserError('http.tls needs both certificate and key');
  }
  const token = cfg.auth?.token;
  if (token && (token.rootcertbundle || token.jwks) && !token.realm) throw new UserError('auth.token.realm is required with an external token issuer (rootcertbundle/jwks)');
  for (const [i, r] of (cfg.auth?.access ?? []).entries()) {
    if (!Array.isArray(r.users) || !Array.isArray(r.repositories) || !Array.isArray(r.actions)) {
      throw new UserError(`auth.access[${i}]: needs users, repositories and actions lists`);
    }
    for (const a of r.actions) if (!['pull', 'push', 'delete', '*'].includes(a)) throw new UserError(`auth.access[${i}]: unknown action "${a}" (pull, push, delete, *)`);
  }
  if (cfg.proxy && !/^https?:\/\//.test(cfg.proxy.remoteurl ?? '')) throw new UserError('proxy.remoteurl must be an http(s) URL');
}

/** "host:port", ":5000" (all interfaces, like Go) or "[::1]:5000". */
export function splitAddr(addr: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(addr);
  if (!m) throw new UserError(`invalid listen address "${addr}" (expected host:port)`);
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port: Number(m[3]) };
}
