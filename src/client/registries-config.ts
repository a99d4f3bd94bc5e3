// Where to fetch a registry's content from and how to trust it: mirrors (tried before the
// upstream, for pulls), insecure registries (plain HTTP or unverified TLS, only where configured)
// and per-host CAs from certs.d. Sources, merged: containers-registries.conf(5) TOML, Docker's
// daemon.json (`registry-mirrors`, `insecure-registries`) and CLI flags.
import { promises as fsp } from 'node:fs';
import { BlockList, isIP } from 'node:net';
import path from 'node:path';
import { parse as parseToml } from 'smol-toml';
import { UserError } from '../util/errors.js';
import { DEFAULT_REGISTRY } from '../image/reference.js';

export interface Endpoint {
  /** host[:port] to connect to. */
  host: string;
  /** Path prefix the repository is rewritten to on this endpoint (registries.conf "location" with a path). */
  repositoryPrefix?: string;
  /** Plain HTTP is allowed and TLS is not verified. */
  insecure: boolean;
  /**
   * Plain HTTP is allowed when the server does not speak TLS, but TLS, when spoken, is verified:
   * loopback registries, so `push localhost:5000/x` works as with Docker without trusting a bad cert.
   */
  plainHttpFallback?: boolean;
  /** Explicit scheme from a URL-style mirror ("http://mirror:5000"). */
  scheme?: 'http' | 'https';
  mirror: boolean;
  /** registries.conf mirrors: the part of the repository below the matched registries.conf location. */
  remainder?: string;
}

export interface RegistryHostConfig {
  /** The upstream registry host (normalised, e.g. "docker.io"). */
  registry: string;
  /** Mirrors first (pull only), then the upstream itself. */
  pullEndpoints: Endpoint[];
  /** Push goes to the upstream only (mirrors are read-only caches). */
  pushEndpoint: Endpoint;
  blocked: boolean;
}

export interface RegistriesOptions {
  /** --registry-mirror URL (Docker semantics: mirrors of Docker Hub). */
  mirrors?: string[];
  /** --insecure-registry HOST[:PORT] or CIDR. */
  insecureRegistries?: string[];
  /** registries.conf path; default $DRYDOCK_REGISTRIES_CONF or /etc/containers/registries.conf. */
  registriesConf?: string;
  /** daemon.json path; default $DRYDOCK_DAEMON_JSON or /etc/docker/daemon.json. */
  daemonJson?: string;
  /** certs.d directories; default $DRYDOCK_CERTS_D (colon-separated) or the containers and Docker ones. */
  certsDirs?: string[];
  env?: NodeJS.ProcessEnv;
}

interface TomlRegistry {
  location?: string;
  prefix?: string;
  insecure?: boolean;
  blocked?: boolean;
  mirror?: { location?: string; insecure?: boolean }[];
}

/** The upstream endpoint for Docker Hub is registry-1.docker.io. */
function upstreamHost(registry: string): string {
  return registry === DEFAULT_REGISTRY ? 'registry-1.docker.io' : registry;
}

function splitLocation(location: string): { host: string; path?: string; scheme?: 'http' | 'https' } {
  let rest = location.trim();
  let scheme: 'http' | 'https' | undefined;
  const m = /^(https?):\/\//i.exec(rest);
  if (m) { scheme = m[1]!.toLowerCase() as 'http' | 'https'; rest = rest.slice(m[0].length); }
  rest = rest.replace(/\/+$/, '');
  const slash = rest.indexOf('/');
  if (slash < 0) return { host: rest, scheme };
  return { host: rest.slice(0, slash), path: rest.slice(slash + 1), scheme };
}

function isLoopbackHost(host: string): boolean {
  const h = host.replace(/:\d+$/, '').replace(/^\[|\]$/g, '');
  return h === 'localhost' || h === '::1' || /^127\./.test(h);
}

export class RegistriesConfig {
  private readonly insecureHosts = new Set<string>();
  private readonly insecureNets = new BlockList();
  private readonly tomlRegistries: TomlRegistry[] = [];
  private readonly hubMirrors: string[] = [];
  readonly certsDirs: string[];

  private constructor(certsDirs: string[]) {
    this.certsDirs = certsDirs;
  }

  static async load(opts: RegistriesOptions = {}): Promise<RegistriesConfig> {
    const env = opts.env ?? process.env;
    const certsDirs = opts.certsDirs
      ?? (env.DRYDOCK_CERTS_D ? env.DRYDOCK_CERTS_D.split(':').filter(Boolean) : ['/etc/containers/certs.d', '/etc/docker/certs.d']);
    const cfg = new RegistriesConfig(certsDirs);
    const confPath = opts.registriesConf ?? env.DRYDOCK_REGISTRIES_CONF ?? '/etc/containers/registries.conf';
    const daemonPath = opts.daemonJson ?? env.DRYDOCK_DAEMON_JSON ?? '/etc/docker/daemon.json';
    const conf = await readOptional(confPath);
    if (conf !== undefined) cfg.addToml(confPath, conf);
    const daemon = await readOptional(daemonPath);
    if (daemon !== undefined) cfg.addDaemonJson(daemonPath, daemon);
    for (const m of opts.mirrors ?? []) cfg.hubMirrors.push(m);
    for (const i of opts.insecureRegistries ?? []) cfg.addInsecure(i);
    return cfg;
  }

  private addInsecure(entry: string): void {
    const e = entry.trim().replace(/^[a-z]+:\/\//i, '').replace(/\/+$/, '');
    const cidr = /^(.+)\/(\d{1,3})$/.exec(e);
    if (cidr && isIP(cidr[1]!)) {
      this.insecureNets.addSubnet(cidr[1]!, Number(cidr[2]), isIP(cidr[1]!) === 6 ? 'ipv6' : 'ipv4');
      return;
    }
    this.insecureHosts.add(e.toLowerCase());
  }

  private addToml(file: string, text: string): void {
    let doc: Record<string, unknown>;
    try {
      doc = parseToml(text) as Record<string, unknown>;
    } catch (e) {
      throw new UserError(`${file}: invalid TOML: ${(e as Error).message.split('\n')[0]}`, { cause: e });
    }
    const regs = doc.registry;
    if (regs !== undefined && !Array.isArray(regs)) throw new UserError(`${file}: "registry" must be an array of tables ([[registry]])`);
    for (const r of (regs ?? []) as TomlRegistry[]) {
      const location = r.location ?? r.prefix;
      if (!location) throw new UserError(`${file}: a [[registry]] entry needs a "location"`);
      this.tomlRegistries.push({ ...r, location });
      if (r.insecure) this.addInsecure(splitLocation(location).host);
    }
    // The V1 format: [registries.insecure] registries = [...]
    const v1 = doc.registries as { insecure?: { registries?: string[] } } | undefined;
    for (const h of v1?.insecure?.registries ?? []) this.addInsecure(h);
  }

  private addDaemonJson(file: string, text: string): void {
    let doc: { 'registry-mirrors'?: unknown; 'insecure-registries'?: unknown };
    try {
      doc = JSON.parse(text);
    } catch (e) {
      throw new UserError(`${file}: invalid JSON: ${(e as Error).message}`, { cause: e });
    }
    const mirrors = doc['registry-mirrors'] ?? [];
    const insecure = doc['insecure-registries'] ?? [];
    if (!Array.isArray(mirrors) || !Array.isArray(insecure)) throw new UserError(`${file}: registry-mirrors and insecure-registries must be arrays`);
    for (const m of mirrors) this.hubMirrors.push(String(m));
    for (const i of insecure) this.addInsecure(String(i));
  }

  /** Insecure (HTTP or unverified TLS): configured via flags, registries.conf or daemon.json. */
  isInsecure(host: string): boolean {
    const h = host.toLowerCase();
    if (this.insecureHosts.has(h)) return true;
    const bare = h.replace(/:\d+$/, '').replace(/^\[|\]$/g, '');
    const fam = isIP(bare);
    if (fam && this.insecureNets.check(bare, fam === 6 ? 'ipv6' : 'ipv4')) return true;
    return false;
  }

  /** The longest matching [[registry]] location for "registry/repository". */
  private tomlFor(registry: string, repository: string): TomlRegistry | undefined {
    const name = `${registry}/${repository}`;
    let best: TomlRegistry | undefined;
    for (const r of this.tomlRegistries) {
      const loc = r.location!.replace(/\/+$/, '');
      if (loc === registry || name === loc || name.startsWith(`${loc}/`)) {
        if (!best || loc.length > best.location!.length) best = r;
      }
    }
    return best;
  }

  forRepository(registry: string, repository: string): RegistryHostConfig {
    const toml = this.tomlFor(registry, repository);
    const upstream: Endpoint = { host: upstreamHost(registry), insecure: this.isInsecure(registry), plainHttpFallback: isLoopbackHost(registry), mirror: false };
    const pull: Endpoint[] = [];
    if (toml) {
      const loc = toml.location!.replace(/\/+$/, '');
      // Path the matched location covers: the remainder of the repository after it.
      const remainder = loc === registry ? repository : `${registry}/${repository}`.slice(loc.length + 1);
      for (const m of toml.mirror ?? []) {
        if (!m.location) continue;
        const s = splitLocation(m.location);
        const insecure = m.insecure ?? this.isInsecure(s.host);
        if (m.insecure) this.addInsecure(s.host);
        // A mirror location with a path serves the matched namespace under that path.
        pull.push({ host: s.host, scheme: s.scheme, insecure, plainHttpFallback: isLoopbackHost(s.host), mirror: true, remainder, ...(s.path ? { repositoryPrefix: s.path } : {}) });
      }
    }
    if (registry === DEFAULT_REGISTRY) {
      for (const m of this.hubMirrors) {
        const s = splitLocation(m);
        pull.push({ host: s.host, scheme: s.scheme, insecure: this.isInsecure(s.host), plainHttpFallback: isLoopbackHost(s.host), mirror: true, ...(s.path ? { repositoryPrefix: s.path } : {}) });
      }
    }
    pull.push(upstream);
    return { registry, pullEndpoints: pull, pushEndpoint: upstream, blocked: toml?.blocked === true };
  }

  /** Trust material for `host` from certs.d: every *.crt is a CA; *.cert + *.key is a client pair. */
  async tlsFor(host: string): Promise<{ ca?: string[]; cert?: string; key?: string }> {
    const out: { ca?: string[]; cert?: string; key?: string } = {};
    for (const dir of this.certsDirs) {
      const hostDir = path.join(dir, host.replace(/\//g, '_'));
      let names: string[];
      try { names = (await fsp.readdir(hostDir)).sort(); } catch { continue; }
      for (const n of names) {
        const p = path.join(hostDir, n);
        if (n.endsWith('.crt')) (out.ca ??= []).push(await fsp.readFile(p, 'utf8'));
        else if (n.endsWith('.cert')) {
          const keyPath = p.slice(0, -'.cert'.length) + '.key';
          const key = await fsp.readFile(keyPath, 'utf8').catch(() => undefined);
          if (!key) throw new UserError(`${p}: client certificate without ${path.basename(keyPath)}`);
          out.cert = await fsp.readFile(p, 'utf8');
          out.key = key;
        }
      }
    }
    return out;
  }
}

/** Repository path on an endpoint: mirrors may host the namespace under a path prefix. */
export function repositoryOn(endpoint: Endpoint, repository: string): string {
  const rest = endpoint.remainder ?? repository;
  return endpoint.repositoryPrefix ? `${endpoint.repositoryPrefix}/${rest}` : rest;
}

async function readOptional(file: string): Promise<string | undefined> {
  try {
    return await fsp.readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new UserError(`cannot read ${file}: ${(e as Error).message}`, { cause: e });
  }
}
