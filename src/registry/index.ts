// The registry server (OCI distribution v1.1). Start one in-process — tests, the client
// engineer's interop tests and `drydock serve` all go through here:
//
//   import { startRegistry } from '../src/registry/index.js';
//   const reg = await startRegistry({ root: tmp });                 // http://127.0.0.1:<ephemeral>
//   const reg = await startRegistry({ root, htpasswd: file });      // Basic auth (htpasswd -Bbn)
//   const reg = await startRegistry({ root, htpasswd: file, token: true }); // built-in bearer tokens
//   const reg = await startRegistry({ root, tls: { certificate, key } });
//   console.log(reg.url, reg.port); ...; await reg.close();
//
// For full control build a RegistryConfig (loadConfigFile / normalizeConfig take registry:2's
// config.yml) and call createRegistryServer(config).listen().
import { createRegistryServer, type CreateServerOptions, type RegistryServer } from './server.js';
import { normalizeConfig, type RegistryConfig } from './config.js';
import type { AccessRule } from './auth/access.js';
import type { AccessControlConfig } from './auth/access-control.js';

export { createRegistryServer, createStorageDriver, storageLocation, type RegistryServer, type CreateServerOptions } from './server.js';
export { loadConfigFile, configFromEnv, normalizeConfig, defaultConfig, parseDuration, splitAddr, type RegistryConfig, type LoadConfigOptions, type AccessLogFormat } from './config.js';
export { applyEnvOverrides, CONFIG_SCHEMA } from './config-env.js';
export { gcRegistry, type GcOptions, type GcResult } from './gc.js';
export { scrubRegistry, formatScrubProblem, type ScrubOptions, type ScrubResult, type ScrubProblem } from './scrub.js';
export { retentionPlan, PullRecorder, readPullTimes, type RetentionConfig, type RetentionPolicy, type KeepTagsRule, type RetentionPlan } from './retention.js';
export { RegistryStorage, MAX_MANIFEST_BYTES, parseManifest } from './storage.js';
export { RegistryError, ErrorCodes, type ErrorCode } from './errors.js';
export { FilesystemDriver } from './storage/filesystem.js';
export { S3Driver, s3OptionsFromConfig, type S3DriverOptions, type S3StorageConfig } from './storage/s3.js';
export { PathNotFoundError, type StorageDriver, type FileInfo, type FileWriter } from './storage/driver.js';
export { checkedDriver, InvalidPathError, isValidPath } from './storage/checked.js';
export { htpasswdLine, parseHtpasswd, TokenIssuer, TokenVerifier, AccessRules, AccessPolicy, type AccessRule, type AccessControlConfig, type Identity, type Policy, type PolicyAction } from './auth/index.js';

export interface StartRegistryOptions {
  /** Storage root (storage.filesystem.rootdirectory); ignored when config.storage.s3 is given. */
  root: string;
  /** Default 127.0.0.1:0 (ephemeral port). */
  addr?: string;
  htpasswd?: string;
  realm?: string;
  /** Use the built-in token issuer (needs htpasswd) or an external one. */
  token?: boolean | { realm?: string; service?: string; issuer?: string; rootcertbundle?: string; jwks?: string; signingkey?: string };
  access?: AccessRule[];
  /** Zot-style per-repository policies (config.yml `accessControl`). */
  accessControl?: AccessControlConfig;
  anonymousRead?: boolean;
  tls?: { certificate: string; key: string };
  deleteEnabled?: boolean;
  readOnly?: boolean;
  proxy?: { remoteurl: string; username?: string; password?: string };
  /** Extra config merged over the above (limits, cache, maintenance...). */
  config?: Partial<RegistryConfig>;
  /** Access log; default off for in-process use. */
  accessLog?: boolean;
}

export interface StartedRegistry extends RegistryServer {
  url: string;
  port: number;
  /** "127.0.0.1:PORT", what goes in an image reference. */
  host: string;
}

export async function startRegistry(opts: StartRegistryOptions, serverOpts: CreateServerOptions = {}): Promise<StartedRegistry> {
  const token = opts.token === true ? {} : opts.token || undefined;
  const config = normalizeConfig({
    version: '0.1',
    storage: {
      filesystem: { rootdirectory: opts.root },
      delete: { enabled: opts.deleteEnabled ?? true },
      maintenance: { readonly: { enabled: opts.readOnly ?? false } },
      ...(opts.config?.storage ?? {}),
    } as RegistryConfig['storage'],
    http: { addr: opts.addr ?? '127.0.0.1:0', ...(opts.tls ? { tls: opts.tls } : {}), ...(opts.config?.http ?? {}) },
    auth: opts.htpasswd || token ? {
      htpasswd: opts.htpasswd ? { realm: opts.realm ?? 'drydock registry', path: opts.htpasswd } : undefined,
      token,
      access: opts.access,
      anonymousread: opts.anonymousRead,
      ratelimit: opts.config?.auth?.ratelimit,
    } : undefined,
    accessControl: opts.accessControl,
    proxy: opts.proxy,
    limits: opts.config?.limits,
    metrics: opts.config?.metrics,
    ui: opts.config?.ui,
    log: opts.accessLog ? undefined : { accesslog: { disabled: true } },
  } as RegistryConfig & Record<string, unknown>);
  const server = createRegistryServer(config, serverOpts);
  const { url, port } = await server.listen();
  const started = Object.create(server) as StartedRegistry;
  return Object.assign(started, { url, port, host: `${new URL(url).hostname.replace(/^\[|\]$/g, '')}:${port}`, close: () => server.close() });
}
