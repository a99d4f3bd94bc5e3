// Everything a registry operation shares: the registries config (mirrors, insecure hosts, CAs),
// where credentials come from, and one keep-alive transport per endpoint so tokens and
// connections are reused across the manifests and blobs of a copy.
import { getCredentials, type AuthConfigOptions } from './auth-config.js';
import { RegistriesConfig, type Endpoint, type RegistriesOptions } from './registries-config.js';
import { RegistryTransport } from './transport.js';

export interface ClientOptions extends RegistriesOptions {
  /** --authfile and env for credential lookup. */
  auth?: AuthConfigOptions;
  /** Attempts after the first on transient failures (default 3). */
  retries?: number;
  /** Called when something is worked around (a mirror failing over to upstream, a retry). */
  onWarning?: (message: string) => void;
}

export class RegistryContext {
  private readonly transports = new Map<string, RegistryTransport>();

  private constructor(readonly config: RegistriesConfig, readonly opts: ClientOptions) {}

  static async create(opts: ClientOptions = {}): Promise<RegistryContext> {
    return new RegistryContext(await RegistriesConfig.load(opts), opts);
  }

  get retries(): number { return this.opts.retries ?? 3; }

  warn(message: string): void {
    this.opts.onWarning?.(message);
  }

  /**
   * The transport for an endpoint. Credentials are looked up under `credentialsHost` for the
   * upstream (e.g. "docker.io" for registry-1.docker.io) and under the mirror's own host for mirrors.
   */
  async transport(endpoint: Endpoint, registry: string): Promise<RegistryTransport> {
    const credentialsHost = endpoint.mirror ? endpoint.host : registry;
    const key = `${endpoint.scheme ?? ''}|${endpoint.host}|${endpoint.insecure}|${credentialsHost}`;
    let t = this.transports.get(key);
    if (!t) {
      t = new RegistryTransport(endpoint, {
        credentials: (host) => getCredentials(host, undefined, this.opts.auth),
        credentialsHost,
        tls: await this.config.tlsFor(endpoint.host),
        retries: endpoint.mirror ? 0 : this.retries,
      });
      this.transports.set(key, t);
    }
    return t;
  }

  async close(): Promise<void> {
    await Promise.all([...this.transports.values()].map((t) => t.close()));
    this.transports.clear();
  }
}
