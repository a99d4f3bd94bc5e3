// `drydock pull | push | copy | login | logout`: the registry client. Flags and output follow
// docker/podman/skopeo; the work is in src/client (imported lazily).
import { Command, Option } from 'commander';
import { collect, formatSize, printJson } from '../output.js';
import { UserError } from '../../util/errors.js';
import type { TransferOptions, TransferKind, ProgressReporter } from '../../client/index.js';

interface TransferFlags {
  platform?: string;
  all?: boolean;
  quiet?: boolean;
  progress?: string;
  format?: string;
  registryMirror?: string[];
  insecureRegistry?: string[];
  authfile?: string;
  maxConcurrent?: string;
  retries?: string;
}

function addTransferOptions(cmd: Command, concurrencyDefault: string): Command {
  return cmd
    .option('--platform <os/arch[/variant]>', 'platform to pick from a multi-platform index (default: this host)')
    .option('--all', 'copy every platform of a multi-platform index, and the index itself')
    .option('-q, --quiet', 'suppress progress output; print only the result')
    .addOption(new Option('--progress <type>', 'progress output: auto (bars on a TTY), plain, json (one object per event)').choices(['auto', 'tty', 'plain', 'json']).default('auto'))
    .addOption(new Option('--format <format>', 'print the result as JSON').choices(['json']))
    .option('--registry-mirror <url>', 'pull Docker Hub images through this mirror first (repeatable)', collect)
    .option('--insecure-registry <host[:port]|cidr>', 'allow plain HTTP / unverified TLS for this registry (repeatable)', collect)
    .option('--authfile <path>', 'credentials file (default $REGISTRY_AUTH_FILE, $DOCKER_CONFIG/config.json, ~/.docker/config.json)')
    .option('--max-concurrent <n>', `blobs transferred in parallel (default ${concurrencyDefault})`)
    .option('--retries <n>', 'retries per request or blob on transient network errors (default 3)');
}

function positiveInt(v: string | undefined, flag: string): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v) || (flag !== '--retries' && Number(v) < 1)) throw new UserError(`${flag} must be a ${flag === '--retries' ? 'non-negative' : 'positive'} whole number, got "${v}"`);
  return Number(v);
}

async function transferOptions(flags: TransferFlags, kind: TransferKind, out?: NodeJS.WriteStream): Promise<{ opts: TransferOptions; reporter: ProgressReporter }> {
  const client = await import('../../client/index.js');
  const { parsePlatform } = await import('../../image/platform.js');
  const mode = flags.quiet || flags.format === 'json' ? (flags.progress === 'json' ? 'json' : 'quiet') : (flags.progress as 'auto' | 'tty' | 'plain' | 'json');
  const reporter = client.createProgressReporter(mode, kind, out);
  let platform;
  if (flags.platform) {
    try { platform = parsePlatform(flags.platform); } catch (e) { throw new UserError((e as Error).message, { cause: e }); }
  }
  return {
    reporter,
    opts: {
      platform,
      all: flags.all,
      mirrors: flags.registryMirror,
      insecureRegistries: flags.insecureRegistry,
      auth: { authFile: flags.authfile },
      concurrency: positiveInt(flags.maxConcurrent, '--max-concurrent'),
      retries: positiveInt(flags.retries, '--retries'),
      // Quiet: no progress events at all (byte counting is a stream hop per chunk).
      onProgress: mode === 'quiet' ? undefined : (e) => reporter.onProgress(e),
      onWarning: (m) => reporter.warn(m),
    },
  };
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

async function prompt(question: string, secret: boolean): Promise<string> {
  const readline = await import('node:readline');
  const rl = readline.createInterface({ input: process.stdin, output: process.stderr, terminal: true });
  if (secret) {
    // Echo nothing while the password is typed.
    (rl as unknown as { _writeToOutput: (s: string) => void })._writeToOutput = (s: string) => { if (s.startsWith(question)) process.stderr.write(question); };
  }
  try {
    return await new Promise((resolve) => rl.question(question, resolve));
  } finally {
    rl.close();
    if (secret) process.stderr.write('\n');
  }
}

/**
 * `drydock pull`'s work and progress (Docker's "Pulling from", layer lines, "Digest:", "Status:"),
 * written to `out`: stdout for `pull`, stderr for `run`/`create`, whose stdout is the container's.
 */
export async function pullWithProgress(image: string, flags: TransferFlags, out: NodeJS.WriteStream) {
  const client = await import('../../client/index.js');
  const { parseReference, familiarString } = await import('../../image/reference.js');
  const { ContentStore } = await import('../../store/index.js');
  const { opts, reporter } = await transferOptions(flags, 'pull', out);
  let ref;
  try { ref = parseReference(image); } catch (e) { throw new UserError((e as Error).message, { cause: e }); }
  if (!image.includes('@') && !/:[\w][\w.-]*$/.test(image.slice(image.lastIndexOf('/') + 1))) reporter.line('Using default tag: latest');
  reporter.line(`${ref.tag ?? ref.digest}: Pulling from ${ref.registry === 'docker.io' ? ref.repository : `${ref.registry}/${ref.repository}`}`);
  // The store opens (a new one writes two files) while the registry is pinged and the manifest fetched.
  const result = await client.pull(ContentStore.open(), ref, opts);
  reporter.finish();
  if (flags.format !== 'json') {
    // Docker's line, with the transferred size appended (awk '/Digest:/{print $2}' still works).
    reporter.line(`Digest: ${result.digest} (${formatSize(result.bytes)} downloaded, ${result.blobsSkipped} blobs already present)`);
    reporter.line(result.previous?.digest === result.digest
      ? `Status: Image is up to date for ${familiarString(ref)}`
      : `Status: Downloaded newer image for ${familiarString(ref)}`);
  }
  return { result, ref };
}

export type { TransferFlags };

export function register(program: Command, only?: string): void {
  // Only the command being run (its word, from main.ts), or every command (help, unknown words).
  const wants = (...names: string[]) => only === undefined || names.includes(only);
  if (wants('pull')) addTransferOptions(program.command('pull')
    .description('Download an image from a registry into the local store')
    .argument('<image>', 'image reference: NAME[:TAG] or NAME@DIGEST (Docker Hub when no registry is given)'), '3')
    .addHelpText('after', `
Examples:
  drydock pull busybox
  drydock pull localhost:5000/team/app:1.4 --platform linux/arm64
  drydock pull --registry-mirror https://mirror.example.com alpine:3.20
  drydock pull -q --progress=json registry.example.com/app@sha256:<digest>`)
    .action(async (image: string, flags: TransferFlags) => {
      const { result, ref } = await pullWithProgress(image, flags, process.stdout);
      if (flags.format === 'json') {
        printJson({ reference: result.name ?? `${ref.registry}/${ref.repository}@${result.digest}`, digest: result.digest, mediaType: result.mediaType, size: result.size, bytes: result.bytes, blobsCopied: result.blobsCopied, blobsSkipped: result.blobsSkipped });
        return;
      }
      process.stdout.write(`${result.name ?? `${ref.registry}/${ref.repository}@${ref.digest ?? result.digest}`}\n`);
    });

  if (wants('push')) addTransferOptions(program.command('push')
    .description('Upload an image from the local store to a registry')
    .argument('<image>', 'store image name (NAME[:TAG])')
    .argument('[destination]', 'registry reference to push to (default: the image name)'), '5')
    .addHelpText('after', `
Examples:
  drydock push localhost:5000/team/app:1.4
  drydock push app:dev registry.example.com/team/app:dev
  drydock push --progress=plain registry.example.com/team/app:1.4`)
    .action(async (image: string, destination: string | undefined, flags: TransferFlags) => {
      const client = await import('../../client/index.js');
      const { parseReference } = await import('../../image/reference.js');
      const { ContentStore } = await import('../../store/index.js');
      const { opts, reporter } = await transferOptions(flags, 'push');
      let ref;
      try { ref = parseReference(destination ?? image); } catch (e) { throw new UserError((e as Error).message, { cause: e }); }
      reporter.line(`The push refers to repository [${ref.registry === 'docker.io' ? `docker.io/${ref.repository}` : `${ref.registry}/${ref.repository}`}]`);
      const store = await ContentStore.open();
      const result = await client.push(store, image, destination, opts);
      reporter.finish();
      if (flags.format === 'json') {
        printJson({ reference: `${ref.registry}/${ref.repository}${ref.tag ? `:${ref.tag}` : ''}`, digest: result.digest, mediaType: result.mediaType, size: result.size, bytes: result.bytes, blobsCopied: result.blobsCopied, blobsSkipped: result.blobsSkipped });
        return;
      }
      if (flags.quiet) { process.stdout.write(`${ref.registry}/${ref.repository}@${result.digest}\n`); return; }
      process.stdout.write(`${ref.tag ?? result.digest}: digest: ${result.digest} size: ${result.size}\n`);
    });

  if (wants('copy')) addTransferOptions(program.command('copy')
    .description('Copy an image between registries, OCI layouts, archives and the local store')
    .argument('<source>', 'docker://REF | oci:DIR[:TAG] | oci-archive:FILE[:TAG] | docker-archive:FILE[:REF] | store:NAME | NAME (store)')
    .argument('<destination>', 'same forms as the source'), '5 to a registry, 3 otherwise')
    .addHelpText('after', `
Examples:
  drydock copy docker://registry-a.example.com/app:1 docker://registry-b.example.com/app:1
  drydock copy --all docker://localhost:5000/base:1 docker://localhost:5000/mirror/base:1
  drydock copy busybox oci-archive:busybox.tar:latest
  drydock copy docker://localhost:5000/app:1 oci:./layout:app`)
    .action(async (source: string, destination: string, flags: TransferFlags) => {
      const client = await import('../../client/index.js');
      const { opts, reporter } = await transferOptions(flags, 'copy');
      const result = await client.copy(source, destination, opts);
      reporter.finish();
      if (flags.format === 'json') {
        printJson({ source, destination, digest: result.digest, mediaType: result.mediaType, size: result.size, bytes: result.bytes, blobsCopied: result.blobsCopied, blobsSkipped: result.blobsSkipped });
        return;
      }
      if (flags.quiet) { process.stdout.write(`${result.digest}\n`); return; }
      reporter.line('Writing manifest to image destination');
      process.stdout.write(`Copied ${result.digest} (manifest ${result.size} bytes, ${formatSize(result.bytes)} transferred, ${result.blobsSkipped} blobs skipped)\n`);
    });

  if (wants('login')) program.command('login')
    .description('Log in to a registry; credentials go to ~/.docker/config.json (or a credential helper)')
    .argument('[registry]', 'registry host[:port] (default: Docker Hub)')
    .option('-u, --username <name>', 'user name')
    .option('-p, --password <password>', 'password (prefer --password-stdin)')
    .option('--password-stdin', 'read the password from stdin')
    .option('--authfile <path>', 'credentials file to write (default $REGISTRY_AUTH_FILE, $DOCKER_CONFIG/config.json, ~/.docker/config.json)')
    .option('--insecure-registry <host[:port]|cidr>', 'allow plain HTTP / unverified TLS for this registry (repeatable)', collect)
    .addHelpText('after', `
Examples:
  drydock login -u ci --password-stdin registry.example.com < token.txt
  drydock login localhost:5000 -u admin -p secret
  drydock login --authfile ./auth.json localhost:5000 -u admin --password-stdin`)
    .action(async (registry: string | undefined, flags: { username?: string; password?: string; passwordStdin?: boolean; authfile?: string; insecureRegistry?: string[] }) => {
      const client = await import('../../client/index.js');
      let password = flags.password;
      if (flags.passwordStdin) {
        if (password) throw new UserError('--password and --password-stdin are mutually exclusive');
        if (!flags.username) throw new UserError('--password-stdin needs --username');
        password = (await readStdin()).replace(/\r?\n$/, '');
      } else if (password) {
        process.stderr.write('WARNING! Using --password via the CLI is insecure. Use --password-stdin.\n');
      }
      let username = flags.username;
      if (!username || password === undefined) {
        if (!process.stdin.isTTY) throw new UserError('username and password required: use -u USER with --password-stdin when not on a terminal');
        username ??= (await prompt('Username: ', false)).trim();
        password ??= await prompt('Password: ', true);
      }
      if (!username) throw new UserError('username is empty');
      if (!password) throw new UserError('password is empty');
      const file = await client.login(registry ?? '', { username, password }, { auth: { authFile: flags.authfile }, insecureRegistries: flags.insecureRegistry });
      process.stderr.write(`Credentials saved to ${file}\n`);
      process.stdout.write('Login Succeeded\n');
    });

  if (wants('logout')) program.command('logout')
    .description('Remove saved credentials for a registry')
    .argument('[registry]', 'registry host[:port] (default: Docker Hub)')
    .option('--authfile <path>', 'credentials file (default $REGISTRY_AUTH_FILE, $DOCKER_CONFIG/config.json, ~/.docker/config.json)')
    .addHelpText('after', `
Examples:
  drydock logout localhost:5000
  drydock logout --authfile ./auth.json registry.example.com`)
    .action(async (registry: string | undefined, flags: { authfile?: string }) => {
      const client = await import('../../client/index.js');
      const host = client.loginRegistry(registry);
      const removed = await client.logout(registry, { auth: { authFile: flags.authfile } });
      process.stdout.write(removed ? `Removing login credentials for ${host}\n` : `Not logged in to ${host}\n`);
    });
}
