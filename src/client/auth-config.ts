// Credentials in Docker's config.json / podman's auth.json format: `auths` entries with a base64
// "user:password" `auth`, plus `credsStore` / `credHelpers` naming docker-credential-<name>
// executables. Reading follows podman's precedence (--authfile, REGISTRY_AUTH_FILE) and then
// Docker's (DOCKER_CONFIG, ~/.docker); writes are atomic and keep every key we do not know.
import { spawn } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { readJsonIfExists, writeFileAtomic } from '../util/fs.js';
import { UserError } from '../util/errors.js';
import { DEFAULT_REGISTRY } from '../image/reference.js';

/** The key Docker uses for Docker Hub in `auths` and towards credential helpers. */
export const DOCKER_HUB_AUTH_KEY = 'https://index.docker.io/v1/';

export interface Credentials {
  username: string;
  password: string;
  /** An OAuth2 refresh token (helpers report it with username "<token>"). */
  identityToken?: string;
}

export interface AuthFile {
  auths?: Record<string, { auth?: string; username?: string; password?: string; identitytoken?: string; [k: string]: unknown }>;
  credsStore?: string;
  credHelpers?: Record<string, string>;
  [k: string]: unknown;
}

export interface AuthConfigOptions {
  /** --authfile: wins over every environment variable. */
  authFile?: string;
  env?: NodeJS.ProcessEnv;
}

/** The file drydock reads and `drydock login` writes, in podman-then-Docker precedence. */
export function authFilePath(opts: AuthConfigOptions = {}): string {
  const env = opts.env ?? process.env;
  if (opts.authFile) return path.resolve(opts.authFile);
  if (env.REGISTRY_AUTH_FILE) return path.resolve(env.REGISTRY_AUTH_FILE);
  const dir = env.DOCKER_CONFIG || path.join(env.HOME || os.homedir(), '.docker');
  return path.join(dir, 'config.json');
}

/** "https://index.docker.io/v1/", "http://host:5000/", "host:5000" -> "docker.io", "host:5000". */
export function normalizeAuthKey(key: string): string {
  let k = key.trim().replace(/^[a-z]+:\/\//i, '');
  const slash = k.indexOf('/');
  const host = slash >= 0 ? k.slice(0, slash) : k;
  const rest = slash >= 0 ? k.slice(slash + 1).replace(/\/+$/, '') : '';
  let h = host.toLowerCase();
  if (h === 'index.docker.io' || h === 'registry-1.docker.io') h = DEFAULT_REGISTRY;
  // Docker Hub keys carry an API path ("/v1/"); podman keys may carry a repository namespace.
  k = rest && !/^v[12]$/.test(rest) ? `${h}/${rest}` : h;
  return k;
}

/** The key `drydock login` writes: Docker Hub gets Docker's legacy URL so Docker reads it too. */
export function authKeyFor(registry: string): string {
  return normalizeAuthKey(registry) === DEFAULT_REGISTRY ? DOCKER_HUB_AUTH_KEY : normalizeAuthKey(registry);
}

export async function readAuthFile(file: string): Promise<AuthFile> {
  try {
    const data = await readJsonIfExists<AuthFile>(file);
    if (data !== undefined && (typeof data !== 'object' || data === null || Array.isArray(data))) {
      throw new UserError(`${file}: expected a JSON object`);
    }
    return data ?? {};
  } catch (e) {
    if (e instanceof SyntaxError) throw new UserError(`${file} is not valid JSON: ${e.message}`, { cause: e });
    throw e;
  }
}

function decodeAuth(file: string, key: string, entry: NonNullable<AuthFile['auths']>[string]): Credentials | undefined {
  if (entry.identitytoken) return { username: '', password: '', identityToken: entry.identitytoken };
  if (typeof entry.auth === 'string' && entry.auth) {
    const decoded = Buffer.from(entry.auth, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon < 0) throw new UserError(`${file}: auth for "${key}" is not base64 of "user:password"`);
    return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
  }
  if (typeof entry.username === 'string' && typeof entry.password === 'string') return { username: entry.username, password: entry.password };
  return undefined;
}

/** Runs docker-credential-<helper> <action> with `input` on stdin (the helper protocol). */
export function runCredentialHelper(helper: string, action: 'get' | 'store' | 'erase', input: string, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  const exe = `docker-credential-${helper}`;
  return new Promise((resolve, reject) => {
    const child = spawn(exe, [action], { stdio: ['pipe', 'pipe', 'pipe'], env });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('error', (e) => reject(new UserError(`credential helper ${exe} could not run: ${(e as Error).message}`, { cause: e })));
    child.on('close', (code) => {
      if (code === 0) resolve(out);
      else reject(Object.assign(new UserError(`credential helper ${exe} ${action} failed: ${(out || err).trim() || `exit ${code}`}`), { helperOutput: out.trim() }));
    });
    child.stdin.on('error', () => { /* helper exited early; reported through close */ });
    child.stdin.end(input);
  });
}

/**
 * Looks credentials for `registry` (and optionally `repository`) up: a credential helper when
 * one is configured for the host, else `auths` (most specific repository-scoped key first).
 */
export async function getCredentials(registry: string, repository?: string, opts: AuthConfigOptions = {}): Promise<Credentials | undefined> {
  const file = authFilePath(opts);
  const cfg = await readAuthFile(file);
  const host = normalizeAuthKey(registry);
  const helper = Object.entries(cfg.credHelpers ?? {}).find(([k]) => normalizeAuthKey(k) === host)?.[1] ?? cfg.credsStore;
  if (helper) {
    const serverUrl = host === DEFAULT_REGISTRY ? DOCKER_HUB_AUTH_KEY : host;
    try {
      const out = await runCredentialHelper(helper, 'get', serverUrl, opts.env);
      const parsed = JSON.parse(out) as { Username?: string; Secret?: string };
      if (typeof parsed.Secret === 'string' && parsed.Secret) {
        if (parsed.Username === '<token>') return { username: '', password: '', identityToken: parsed.Secret };
        return { username: parsed.Username ?? '', password: parsed.Secret };
      }
    } catch (e) {
      // "credentials not found" is the protocol's miss; fall through to `auths` like Docker.
      const msg = (e as { helperOutput?: string }).helperOutput ?? '';
      if (!/credentials not found/i.test(msg) && !(e instanceof SyntaxError)) throw e;
    }
  }
  const entries = Object.entries(cfg.auths ?? {}).map(([k, v]) => ({ key: normalizeAuthKey(k), raw: k, v }));
  const wanted = repository ? `${host}/${repository}` : host;
  const candidates = entries
    .filter((e) => e.key === host || (wanted.startsWith(`${e.key}/`) && e.key.startsWith(`${host}/`)) || e.key === wanted)
    .sort((a, b) => b.key.length - a.key.length);
  for (const c of candidates) {
    const creds = decodeAuth(file, c.raw, c.v ?? {});
    if (creds) return creds;
  }
  return undefined;
}

/** Stores credentials for `registry` (via the configured helper, else base64 in `auths`). */
export async function saveCredentials(registry: string, creds: Credentials, opts: AuthConfigOptions = {}): Promise<string> {
  const file = authFilePath(opts);
  const cfg = await readAuthFile(file);
  const host = normalizeAuthKey(registry);
  const key = authKeyFor(registry);
  const helper = Object.entries(cfg.credHelpers ?? {}).find(([k]) => normalizeAuthKey(k) === host)?.[1] ?? cfg.credsStore;
  cfg.auths = { ...(cfg.auths ?? {}) };
  for (const k of Object.keys(cfg.auths)) if (normalizeAuthKey(k) === host && k !== key) delete cfg.auths[k];
  if (helper) {
    await runCredentialHelper(helper, 'store', JSON.stringify({ ServerURL: key, Username: creds.username, Secret: creds.password }), opts.env);
    // Docker keeps an empty entry so `docker info` lists the registry; the secret lives in the helper.
    cfg.auths[key] = {};
  } else {
    cfg.auths[key] = { ...(cfg.auths[key] ?? {}), auth: Buffer.from(`${creds.username}:${creds.password}`).toString('base64') };
    delete cfg.auths[key]!.username;
    delete cfg.auths[key]!.password;
  }
  await writeFileAtomic(file, JSON.stringify(cfg, null, '\t') + '\n', 0o600);
  return file;
}

/** Removes credentials for `registry`; returns false when there were none. */
export async function removeCredentials(registry: string, opts: AuthConfigOptions = {}): Promise<boolean> {
  const file = authFilePath(opts);
  const cfg = await readAuthFile(file);
  const host = normalizeAuthKey(registry);
  let removed = false;
  const helper = Object.entries(cfg.credHelpers ?? {}).find(([k]) => normalizeAuthKey(k) === host)?.[1] ?? cfg.credsStore;
  if (helper) {
    try {
      await runCredentialHelper(helper, 'erase', authKeyFor(registry), opts.env);
      removed = true;
    } catch (e) {
      if (!/not found/i.test((e as { helperOutput?: string }).helperOutput ?? '')) throw e;
    }
  }
  if (cfg.auths) {
    for (const k of Object.keys(cfg.auths)) {
      if (normalizeAuthKey(k) === host) { delete cfg.auths[k]; removed = true; }
    }
  }
  if (removed) await writeFileAtomic(file, JSON.stringify(cfg, null, '\t') + '\n', 0o600);
  return removed;
}
