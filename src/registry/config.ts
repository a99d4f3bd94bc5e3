// Configuration: distribution's config.yml keys where they mean the same thing (so a registry:2
// config file works as is), plus a few drydock extensions (auth.access rules, limits, cache).
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { UserError } from '../util/errors.js';
import type { AccessRule } from './auth/access.js';
import { AccessPolicy, type AccessControlConfig } from './auth/access-control.js';
import { applyEnvOverrides } from './config-env.js';
import { s3OptionsFromConfig, type S3StorageConfig } from './storage/s3.js';
import { checkRetention } from './retention.js';
export { parseDuration } from './duration.js';

export interface RegistryConfig {
  version?: string;
  log?: {
    level?: string;
    /** format: drydock extension; "json" (default, one pino object a line) or "combined" (Apache's combined log format). */
    accesslog?: { disabled?: boolean; format?: AccessLogFormat };
  };
  storage: {
    /** fsync: drydock extension (default true); false behaves like distribution (no fsync). */
    filesystem: { rootdirectory: string; fsync?: boolean };
    /** distribution's s3 driver parameters; when present, the registry stores everything in the bucket. */
    s3?: S3StorageConfig;
    delete?: { enabled?: boolean };
    maintenance?: {
      uploadpurging?: { enabled?: boolean; age?: string; interval?: string; dryrun?: boolean };
      readonly?: { enabled?: boolean };
      /** drydock: Zot's tag retention policies (storage.retention there), applied by `registry gc`. */
      retention?: import('./retention.js').RetentionConfig;
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
    /** drydock: connection bounds (distribution has none but draintimeout). */
    timeout?: {
      /** No byte in either direction for this long closes the connection (default 2m). */
      idle?: string;
      /** The request line and headers must arrive within this (default 1m). */
      header?: string;
      /** A request body gets this long plus one second per `minbodyrate` bytes received (default 1m). */
      body?: string;
      /** Bytes per second a request body must average after the grace (default 1024). */
      minbodyrate?: number;
    };
  };
  auth?: {
    htpasswd?: { realm?: string; path: string };
    token?: { realm?: string; service?: string; issuer?: string; rootcertbundle?: string; jwks?: string; signingkey?: string; expiration?: number };
    /** drydock: per-user rules; anonymous pull. */
    access?: AccessRule[];
    anonymousread?: boolean;
    /** drydock: failed logins per client address and user name within `window` before 429 (default 10 in 1m; 0 disables). */
    ratelimit?: { failures?: number; window?: string };
  };
  /** Zot's per-repository access control (http.accessControl there); reloaded on SIGHUP. */
  accessControl?: AccessControlConfig;
  proxy?: { remoteurl: string; username?: string; password?: string; ttl?: string };
  /** drydock: request limits. */
  limits?: { maxuploadbytes?: number; maxconcurrentuploads?: number; chunkminlength?: number };
  metrics?: { enabled?: boolean };
  /** drydock: the web UI at /ui/ (default on). */
  ui?: { enabled?: boolean };
}

export type AccessLogFormat = 'json' | 'combined';
export const ACCESS_LOG_FORMATS: readonly AccessLogFormat[] = ['json', 'combined'];

export function defaultConfig(root: string): RegistryConfig {
  return {
    version: '0.1',
    storage: { filesystem: { rootdirectory: root }, delete: { enabled: true } },
    http: { addr: '127.0.0.1:5000' },
  };
}

export interface LoadConfigOptions {
  /** Apply distribution's REGISTRY_* overrides from this environment (the CLI passes process.env). */
  env?: NodeJS.ProcessEnv;
  /** Told the name of each REGISTRY_* variable that names no key drydock knows. */
  warn?: (message: string) => void;
}

/** Reads a YAML config file (registry:2's config.yml works), applies REGISTRY_* overrides and fills in defaults. */
export async function loadConfigFile(file: string, opts: LoadConfigOptions = {}): Promise<RegistryConfig> {
  const doc = await readConfigDocument(file);
  overrideFromEnv(doc, opts);
  return normalizeConfig(doc as Partial<RegistryConfig> & Record<string, unknown>, path.dirname(path.resolve(file)));
}

/** No file: the defaults (storage under `root`) with REGISTRY_* overrides, as `registry serve` without a config. */
export function configFromEnv(root: string, opts: LoadConfigOptions = {}): RegistryConfig {
  const doc = defaultConfig(root) as unknown as Record<string, unknown>;
  overrideFromEnv(doc, opts);
  return normalizeConfig(doc as Partial<RegistryConfig> & Record<string, unknown>);
}

function overrideFromEnv(doc: Record<string, unknown>, opts: LoadConfigOptions): void {
  if (!opts.env) return;
  for (const name of applyEnvOverrides(doc, opts.env)) {
    opts.warn?.(`ignoring unrecognized environment variable ${name}`);
  }
}

async function readConfigDocument(file: string): Promise<Record<string, unknown>> {
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
    throw new UserError(`${file}: invalid YAML: ${(e as Error).message}`, { cause: e });
  }
  if (doc !== null && doc !== undefined && (typeof doc !== 'object' || Array.isArray(doc))) throw new UserError(`${file}: expected a YAML mapping`);
  return (doc ?? {}) as Record<string, unknown>;
}

/** distribution lets `storage: s3` and `auth: htpasswd` name a driver/kind with no parameters. */
function selectorSection(v: unknown): unknown {
  return typeof v === 'string' ? { [v]: {} } : v;
}

const AUTH_KINDS = ['htpasswd', 'token'];
const AUTH_KEYS = [...AUTH_KINDS, 'access', 'anonymousread', 'ratelimit'];

/**
 * Auth that was asked for must be applied: an unknown kind, a kind without its parameters or
 * auth settings without any kind stop the start instead of serving an open registry.
 */
function checkAuthSection(auth: unknown): RegistryConfig['auth'] {
  if (auth === undefined) return undefined;
  if (!auth || typeof auth !== 'object' || Array.isArray(auth)) {
    throw new UserError('auth is set but names no method (htpasswd or token): refusing to start an open registry');
  }
  const a = auth as Record<string, unknown>;
  const unknown = Object.keys(a).filter((k) => !AUTH_KEYS.includes(k));
  if (unknown.length > 0) throw new UserError(`auth "${unknown[0]}" is not supported (drydock has: htpasswd, token): refusing to start an open registry`);
  if (!AUTH_KINDS.some((k) => a[k] !== undefined)) {
    throw new UserError('auth is set but names no method (htpasswd or token): refusing to start an open registry');
  }
  for (const k of AUTH_KINDS) {
    if (a[k] === null) a[k] = {};
    if (a[k] !== undefined && (typeof a[k] !== 'object' || Array.isArray(a[k]))) throw new UserError(`auth.${k} must be a mapping`);
  }
  const ht = a.htpasswd as { path?: unknown } | undefined;
  if (ht && (typeof ht.path !== 'string' || !ht.path)) throw new UserError('auth.htpasswd.path is required (REGISTRY_AUTH_HTPASSWD_PATH): refusing to start an open registry');
  return a as RegistryConfig['auth'];
}

export function normalizeConfig(doc: Partial<RegistryConfig> & Record<string, unknown>, baseDir = process.cwd()): RegistryConfig {
  const storage = (selectorSection(doc.storage) ?? {}) as Record<string, unknown>;
  if ('auth' in doc) doc = { ...doc, auth: checkAuthSection(selectorSection(doc.auth)) };
  const drivers = Object.keys(storage).filter((k) => !['delete', 'maintenance', 'cache', 'redirect'].includes(k));
  const maintenance = storage.maintenance as { retention?: unknown } | undefined;
  try {
    checkRetention(maintenance?.retention);
  } catch (e) {
    throw new UserError((e as Error).message);
  }
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
    storage: { ...storage, filesystem: { ...fsCfg, rootdirectory: path.resolve(baseDir, fsRoot) } } as RegistryConfig['storage'],
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
  if ((cfg.http as Record<string, unknown>).accessControl !== undefined) {
    throw new UserError('http.accessControl: drydock reads accessControl at the top level of config.yml (Zot nests it under http)');
  }
  if (cfg.accessControl !== undefined && cfg.accessControl !== null) {
    if (!cfg.auth?.htpasswd && !cfg.auth?.token) throw new UserError('accessControl is set but auth names no method (htpasswd or token): users cannot be identified, refusing to start');
    if (cfg.auth.access?.length) throw new UserError('auth.access and accessControl both set: use one (accessControl is the Zot-style form)');
    AccessPolicy.parse(cfg.accessControl);
  }
  const format = cfg.log?.accesslog?.format;
  if (format !== undefined && !ACCESS_LOG_FORMATS.includes(format)) throw new UserError(`log.accesslog.format "${format}" is not supported (${ACCESS_LOG_FORMATS.join(', ')})`);
  if (cfg.proxy && !/^https?:\/\//.test(cfg.proxy.remoteurl ?? '')) throw new UserError('proxy.remoteurl must be an http(s) URL');
}

/** "host:port", ":5000" (all interfaces, like Go) or "[::1]:5000". */
export function splitAddr(addr: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(addr);
  if (!m) throw new UserError(`invalid listen address "${addr}" (expected host:port)`);
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port: Number(m[3]) };
}
