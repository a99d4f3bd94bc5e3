// `drydock serve` (alias `drydock registry serve`), `drydock registry gc`, `drydock registry scrub`, `drydock registry htpasswd`.
// Flags override the YAML config (registry:2's config.yml keys work), like `registry serve config.yml`.
import type { Command } from 'commander';
import { UserError } from '../../util/errors.js';
import { formatSize, printJson } from '../output.js';

interface ServeFlags {
  config?: string;
  addr?: string;
  root?: string;
  htpasswd?: string;
  realm?: string;
  tlsCert?: string;
  tlsKey?: string;
  anonymousRead?: boolean;
  token?: boolean;
  tokenRealm?: string;
  tokenService?: string;
  tokenIssuer?: string;
  tokenRootcertbundle?: string;
  tokenSigningKey?: string;
  delete?: boolean;
  readOnly?: boolean;
  proxy?: string;
  proxyUsername?: string;
  proxyPassword?: string;
  accessLog?: boolean;
  accessLogFormat?: string;
  fsync?: boolean;
  workers?: string;
  quiet?: boolean;
  s3Bucket?: string;
  s3Endpoint?: string;
  s3Region?: string;
  s3Rootdirectory?: string;
  ui?: boolean;
}

/**
 * --workers N: N server processes sharing the listening socket (node:cluster), so hashing and
 * request handling use every core. Storage is shared; each worker caches manifests for
 * storage.cache.ttl, so a re-pointed tag may be served stale by another worker for that long.
 */
async function runPrimary(cluster: typeof import('node:cluster').default, workers: number, flags: ServeFlags, root: string): Promise<void> {
  let announced = false;
  let stopping = false;
  const exited = new Promise<void>((resolve) => {
    let alive = workers;
    cluster.on('exit', (w, code, signal) => {
      alive--;
      if (!stopping) {
        process.stderr.write(`registry worker ${w.process.pid} exited (${code ?? signal}); stopping\n`);
        stop();
      }
      if (alive === 0) resolve();
    });
  });
  const stop = () => {
    if (stopping) return;
    stopping = true;
    if (!flags.quiet) process.stderr.write('shutting down: waiting for in-flight requests\n');
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGTERM');
  };
  // A worker takes SIGHUP only once it is listening (its handler is installed by then; before, the
  // signal would kill it). One still starting when a reload comes is signalled when it is ready,
  // because it may have read the config file before the rewrite.
  const ready = new Set<import('node:cluster').Worker>();
  const reloadsSeen = new Map<import('node:cluster').Worker, number>();
  let reloads = 0;
  cluster.on('message', (w, msg: { listening?: string }) => {
    if (!msg?.listening) return;
    ready.add(w);
    if ((reloadsSeen.get(w) ?? 0) !== reloads) { reloadsSeen.set(w, reloads); w.process.kill('SIGHUP'); }
    if (announced) return;
    announced = true;
    if (flags.quiet) process.stdout.write(`${msg.listening}\n`);
    else process.stderr.write(`drydock registry listening on ${msg.listening} (storage ${root}, ${workers} workers)\n`);
  });
  for (let i = 0; i < workers; i++) reloadsSeen.set(cluster.fork(), 0);
  const reload = () => {
    reloads++;
    for (const w of ready) { reloadsSeen.set(w, reloads); w.process.kill('SIGHUP'); }
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  process.on('SIGHUP', reload);
  await exited;
  process.off('SIGINT', stop);
  process.off('SIGTERM', stop);
  process.off('SIGHUP', reload);
}

function defaultRegistryRoot(): string {
  const base = process.env.DRYDOCK_ROOT ?? `${process.env.HOME ?? '/root'}/.local/share/drydock`;
  return `${base}/registry`;
}

/** The storage `registry gc` and `registry scrub` work on: --root, else the config's (filesystem or S3), else the default root. */
async function maintenanceDriver(flags: { config?: string; root?: string }, cmd: Command): Promise<import('../../registry/index.js').StorageDriver> {
  const reg = await import('../../registry/index.js');
  const root = flags.root ?? (cmd.optsWithGlobals().root as string | undefined);
  let driver: import('../../registry/index.js').StorageDriver;
  if (root) driver = reg.checkedDriver(new reg.FilesystemDriver(root));
  else if (flags.config) driver = reg.createStorageDriver(await reg.loadConfigFile(flags.config));
  else driver = reg.checkedDriver(new reg.FilesystemDriver(defaultRegistryRoot()));
  await driver.checkReady?.();
  return driver;
}

/** The config `serve` runs with: the file (or defaults) with REGISTRY_* and then flags over it. Re-run on SIGHUP. */
async function serveConfig(flags: ServeFlags, root: string | undefined, envOpts: import('../../registry/index.js').LoadConfigOptions): Promise<import('../../registry/index.js').RegistryConfig> {
  const reg = await import('../../registry/index.js');
  const config = flags.config ? await reg.loadConfigFile(flags.config, envOpts) : reg.configFromEnv(root ? root : defaultRegistryRoot(), envOpts);
  if (root) config.storage.filesystem.rootdirectory = (await import('node:path')).resolve(root);
  if (flags.addr) config.http.addr = flags.addr;
  if (flags.tlsCert || flags.tlsKey) config.http.tls = { certificate: flags.tlsCert, key: flags.tlsKey };
  if (flags.delete === false) config.storage.delete = { enabled: false };
  if (flags.fsync === false) config.storage.filesystem.fsync = false;
  if (flags.ui === false) config.ui = { enabled: false };
  if (flags.readOnly) config.storage.maintenance = { ...config.storage.maintenance, readonly: { enabled: true } };
  if (flags.htpasswd || flags.token || flags.tokenRealm || flags.anonymousRead) config.auth ??= {};
  if (flags.htpasswd) config.auth!.htpasswd = { realm: flags.realm ?? config.auth!.htpasswd?.realm ?? 'drydock registry', path: flags.htpasswd };
  if (flags.anonymousRead) config.auth!.anonymousread = true;
  if (flags.token || flags.tokenRealm || flags.tokenRootcertbundle) {
    config.auth!.token = {
      ...config.auth!.token,
      ...(flags.tokenRealm ? { realm: flags.tokenRealm } : {}),
      ...(flags.tokenService ? { service: flags.tokenService } : {}),
      ...(flags.tokenIssuer ? { issuer: flags.tokenIssuer } : {}),
      ...(flags.tokenRootcertbundle ? { rootcertbundle: flags.tokenRootcertbundle } : {}),
      ...(flags.tokenSigningKey ? { signingkey: flags.tokenSigningKey } : {}),
    };
  }
  if (flags.proxy) config.proxy = { remoteurl: flags.proxy, username: flags.proxyUsername, password: flags.proxyPassword };
  if (flags.accessLogFormat) config.log = { ...config.log, accesslog: { ...config.log?.accesslog, format: flags.accessLogFormat as never } };
  if (flags.accessLog === false || flags.quiet) config.log = { ...config.log, accesslog: { ...config.log?.accesslog, disabled: true } };
  if (flags.s3Bucket || flags.s3Endpoint || flags.s3Region || flags.s3Rootdirectory) {
    const s3 = { ...config.storage.s3 } as NonNullable<typeof config.storage.s3>;
    if (flags.s3Bucket) s3.bucket = flags.s3Bucket;
    if (flags.s3Endpoint) s3.regionendpoint = flags.s3Endpoint;
    if (flags.s3Region) s3.region = flags.s3Region;
    if (flags.s3Rootdirectory) s3.rootdirectory = flags.s3Rootdirectory;
    config.storage.s3 = s3;
  }
  reg.normalizeConfig(config as never);
  return config;
}

function addServeCommand(parent: Command, name: string): Command {
  return parent.command(name)
    .description('Run an OCI distribution (registry v2) server')
    .option('-c, --config <file>', "YAML config (registry:2's config.yml keys work)")
    .option('--addr <host:port>', 'listen address (http.addr)', undefined)
    .option('--root <dir>', 'storage root (storage.filesystem.rootdirectory; default $DRYDOCK_ROOT/registry)')
    .option('--htpasswd <file>', 'enable Basic auth with a bcrypt htpasswd file (auth.htpasswd.path)')
    .option('--realm <realm>', 'auth realm (auth.htpasswd.realm)')
    .option('--anonymous-read', 'allow pulls without credentials when auth is on')
    .option('--token', 'use bearer tokens from the built-in /token endpoint (users from --htpasswd)')
    .option('--token-realm <url>', 'external token server URL (auth.token.realm)')
    .option('--token-service <name>', 'token audience (auth.token.service)')
    .option('--token-issuer <name>', 'token issuer (auth.token.issuer)')
    .option('--token-rootcertbundle <file>', 'PEM certificates/keys of the external issuer (pinned)')
    .option('--token-signing-key <file>', 'PEM private key for the built-in issuer (default: generated per start)')
    .option('--tls-cert <file>', 'TLS certificate (http.tls.certificate)')
    .option('--tls-key <file>', 'TLS key (http.tls.key)')
    .option('--no-delete', 'refuse DELETE (storage.delete.enabled=false)')
    .option('--read-only', 'refuse pushes and deletes (storage.maintenance.readonly)')
    .option('--proxy <url>', 'pull-through cache of this upstream registry (proxy.remoteurl)')
    .option('--proxy-username <user>', 'upstream user (proxy.username)')
    .option('--proxy-password <password>', 'upstream password (proxy.password)')
    .option('--no-access-log', 'do not write the access log to stdout')
    .option('--access-log-format <format>', 'access log lines: json or combined (log.accesslog.format; default json)')
    .option('--no-ui', 'do not serve the web UI at /ui/ (ui.enabled=false)')
    .option('--no-fsync', "skip fsync of blob data (distribution's behaviour: faster, not power-loss safe)")
    .option('--workers <n>', 'server processes sharing the port (use the cores; default 1)')
    .option('--s3-bucket <bucket>', 'store in this S3 bucket instead of --root (storage.s3.bucket; credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)')
    .option('--s3-endpoint <url>', 'S3-compatible server, e.g. http://minio:9000 (storage.s3.regionendpoint)')
    .option('--s3-region <region>', 'S3 region (storage.s3.region)')
    .option('--s3-rootdirectory <prefix>', 'key prefix in the bucket (storage.s3.rootdirectory)')
    .option('-q, --quiet', 'print only the listening URL')
    .addHelpText('after', `
Examples:
  drydock serve --addr 127.0.0.1:5000 --root /srv/registry
  htpasswd -Bbn alice s3cret > auth/htpasswd
  drydock serve --htpasswd auth/htpasswd --tls-cert certs/domain.crt --tls-key certs/domain.key --addr :443
  drydock serve --config /etc/docker/registry/config.yml
  REGISTRY_AUTH=htpasswd REGISTRY_AUTH_HTPASSWD_REALM="Registry Realm" \\
    REGISTRY_AUTH_HTPASSWD_PATH=/auth/htpasswd drydock serve --addr :5000
  drydock serve --proxy https://registry.example.com --addr 127.0.0.1:5001   # pull-through cache
  AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... drydock serve --s3-bucket registry --s3-endpoint http://minio:9000

REGISTRY_* variables override config keys as in registry:2 (REGISTRY_ + the key path in upper
case, e.g. REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY); flags override both.
The server stops gracefully on SIGINT/SIGTERM: in-flight requests finish, interrupted uploads stay resumable.
SIGHUP reloads accessControl (and auth.access, auth.anonymousread) and the htpasswd file without
dropping connections; a config that does not load keeps the previous one and prints the error.`)
    .action(async (flags: ServeFlags, cmd: Command) => {
      const reg = await import('../../registry/index.js');
      // --root is also the global store flag; read it from wherever commander put it.
      const root = flags.root ?? (cmd.optsWithGlobals().root as string | undefined);
      // Workers re-run this action: the primary alone warns about unknown REGISTRY_* variables.
      const cluster = (await import('node:cluster')).default;
      const envOpts = { env: process.env, warn: cluster.isWorker ? undefined : (m: string) => process.stderr.write(`warning: ${m}\n`) };
      const config = await serveConfig(flags, root, envOpts);
      const location = reg.storageLocation(config);
      const workers = Number(flags.workers ?? 1);
      if (!Number.isInteger(workers) || workers < 1 || workers > 64) throw new UserError('--workers must be an integer between 1 and 64');
      if (workers > 1 && cluster.isPrimary) return runPrimary(cluster, workers, flags, location);
      const server = reg.createRegistryServer(config);
      const { url } = await server.listen();
      // SIGHUP (as nginx and sshd): re-read the config and the htpasswd file; keep the old ones on an error.
      const reload = () => {
        serveConfig(flags, root, { env: process.env }).then((next) => server.reload(next)).then(
          () => { if (!flags.quiet && !cluster.isWorker) process.stderr.write('reloaded access control and htpasswd file\n'); },
          (e: Error) => process.stderr.write(`error: reload failed, keeping the previous access control: ${e.message}\n`),
        );
      };
      process.on('SIGHUP', reload);
      // Announced only now: the primary forwards SIGHUP to a worker once it says it listens, and a
      // signal that came before the handler would kill it (SIGHUP's default action).
      if (cluster.isWorker) process.send?.({ listening: url });
      else if (flags.quiet) process.stdout.write(`${url}\n`);
      else process.stderr.write(`drydock registry listening on ${url} (storage ${location})\n`);
      await new Promise<void>((resolve) => {
        const stop = () => {
          process.off('SIGINT', stop);
          process.off('SIGTERM', stop);
          process.off('SIGHUP', reload);
          if (!flags.quiet && !cluster.isWorker) process.stderr.write('shutting down: waiting for in-flight requests\n');
          // A worker's IPC channel to the primary would keep it alive after close.
          server.close().then(resolve, resolve).finally(() => { if (cluster.isWorker) process.disconnect?.(); });
        };
        process.on('SIGINT', stop);
        process.on('SIGTERM', stop);
      });
    });
}

export function register(program: Command, only?: string): void {
  // Only the command being run (its word, from main.ts), or every command (help, unknown words).
  const wants = (...names: string[]) => only === undefined || names.includes(only);
  if (wants('serve')) addServeCommand(program, 'serve');
  const registry = wants('registry') ? program.command('registry').description('Run and maintain a registry server') : undefined;
  if (registry) addServeCommand(registry, 'serve');

  registry?.command('gc')
    .description('Delete blobs no manifest references (mark and sweep)')
    .option('-c, --config <file>', 'YAML config (its storage: filesystem root or s3 bucket)')
    .option('--root <dir>', 'storage root (default $DRYDOCK_ROOT/registry)')
    .option('-n, --dry-run', 'only report what would be deleted')
    .option('-m, --delete-untagged', 'also delete manifests no tag reaches')
    .option('--no-retention', "ignore the config's retention policies (storage.maintenance.retention)")
    .option('--grace-period <duration>', 'keep blobs written, uploaded, mounted or referenced within this time', '1h')
    .option('--format <format>', 'output format: text or json', 'text')
    .option('-q, --quiet', 'print nothing but errors')
    .addHelpText('after', `
Examples:
  drydock registry gc --root /srv/registry --dry-run
  drydock registry gc --config /etc/docker/registry/config.yml --delete-untagged
  drydock registry gc --config s3-config.yml --dry-run     # storage: s3: bucket: ...
  drydock registry gc --config config.yml --dry-run        # lists the tags retention policies would delete

Safe next to running servers on the same storage: a blob uploaded, mounted or linked by a manifest
within the grace period, or while gc runs, is kept, and a manifest accepted while gc runs keeps all
its blobs.`)
    .action(async (flags: { config?: string; root?: string; retention?: boolean; dryRun?: boolean; deleteUntagged?: boolean; gracePeriod: string; format: string; quiet?: boolean }, cmd: Command) => {
      const reg = await import('../../registry/index.js');
      const driver = await maintenanceDriver(flags, cmd);
      if (flags.format !== 'text' && flags.format !== 'json') throw new UserError(`--format must be text or json, got "${flags.format}"`);
      const text = flags.format === 'text' && !flags.quiet;
      const retention = flags.config && flags.retention !== false ? (await reg.loadConfigFile(flags.config)).storage.maintenance?.retention : undefined;
      const result = await reg.gcRegistry(driver, {
        retention,
        dryRun: flags.dryRun,
        deleteUntagged: flags.deleteUntagged,
        gracePeriodMs: reg.parseDuration(flags.gracePeriod, 3_600_000),
        log: text ? (line) => process.stdout.write(`${line}\n`) : undefined,
      });
      if (flags.format === 'json') return printJson(result);
      if (text) {
        process.stdout.write(`${flags.dryRun ? 'would free' : 'freed'} ${formatSize(result.bytesFreed)}: ${result.blobsDeleted.length} blobs, ${result.manifestsDeleted.length} manifests${result.tagsDeleted.length > 0 ? `, ${result.tagsDeleted.length} tags` : ''} deleted; ${result.blobsMarked} blobs marked in ${result.repositories} repositories; ${result.blobsKeptByGrace} kept by grace period\n`);
      }
    });

  registry?.command('scrub')
    .description('Re-hash every blob and manifest; report corrupt or missing content per repository and tag')
    .option('-c, --config <file>', 'YAML config (its storage: filesystem root or s3 bucket)')
    .option('--root <dir>', 'storage root (default $DRYDOCK_ROOT/registry)')
    .option('--concurrency <n>', 'blobs hashed at once', '4')
    .option('--format <format>', 'output format: text or json', 'text')
    .option('-q, --quiet', 'print nothing; the exit status tells (1: problems found)')
    .addHelpText('after', `
Examples:
  drydock registry scrub --root /srv/registry
  drydock registry scrub --config s3-config.yml --format json

Read-only, safe next to running servers. Exits 1 when anything is corrupt or missing.`)
    .action(async (flags: { config?: string; root?: string; concurrency: string; format: string; quiet?: boolean }, cmd: Command) => {
      const reg = await import('../../registry/index.js');
      if (flags.format !== 'text' && flags.format !== 'json') throw new UserError(`--format must be text or json, got "${flags.format}"`);
      const concurrency = Number(flags.concurrency);
      if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 64) throw new UserError('--concurrency must be an integer between 1 and 64');
      const driver = await maintenanceDriver(flags, cmd);
      const text = flags.format === 'text' && !flags.quiet;
      const result = await reg.scrubRegistry(driver, {
        concurrency,
        onProblem: text ? (p) => process.stdout.write(`${reg.formatScrubProblem(p)}\n`) : undefined,
      });
      if (flags.format === 'json' && !flags.quiet) printJson(result);
      else if (text) {
        process.stdout.write(`${result.problems.length === 0 ? 'ok' : `${result.problems.length} problems`}: ${result.blobs} blobs (${formatSize(result.bytesHashed)}) and ${result.manifests} manifests in ${result.repositories} repositories checked\n`);
      }
      if (result.problems.length > 0) process.exitCode = 1;
    });

  registry?.command('htpasswd')
    .description('Print an htpasswd line (bcrypt) for a user, like `htpasswd -Bbn`')
    .argument('<user>')
    .option('--password-stdin', 'read the password from stdin')
    .option('-p, --password <password>', 'the password (prefer --password-stdin)')
    .option('--cost <n>', 'bcrypt cost', '10')
    .addHelpText('after', `
Example:
  echo s3cret | drydock registry htpasswd alice --password-stdin >> auth/htpasswd`)
    .action(async (user: string, flags: { passwordStdin?: boolean; password?: string; cost: string }) => {
      const { htpasswdLine } = await import('../../registry/index.js');
      let password = flags.password;
      if (flags.passwordStdin) {
        const chunks: Buffer[] = [];
        for await (const c of process.stdin) chunks.push(c as Buffer);
        password = Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
      }
      if (password === undefined) throw new UserError('give the password with --password-stdin or --password');
      const cost = Number(flags.cost);
      if (!Number.isInteger(cost) || cost < 4 || cost > 31) throw new UserError('--cost must be an integer between 4 and 31');
      process.stdout.write(`${await htpasswdLine(user, password, cost)}\n`);
    });
}
