// `drydock build`: Docker-compatible flags over src/builder. Output follows the classic
// builder ("Step N/M : ...", " ---> Using cache", "Successfully built ..."), -q prints the ID.
import { Command, Option } from 'commander';
import { collect, printJson } from '../output.js';
import { UserError, VerbatimError } from '../../util/errors.js';
import type { OutputSpec } from '../../builder/export.js';

interface BuildFlags {
  tag?: string[];
  file?: string;
  buildArg?: string[];
  target?: string;
  cache: boolean;
  pull?: boolean;
  output?: string;
  iidfile?: string;
  platform?: string;
  network?: string;
  secret?: string[];
  quiet?: boolean;
  progress?: string;
  label?: string[];
  compression: 'gzip' | 'zstd' | 'none';
  format?: string;
  addHost?: string[];
  shmSize?: string;
  ulimit?: string[];
  memory?: string;
  ssh?: string[];
  printPlan?: boolean;
  cacheFrom?: string[];
  cacheTo?: string[];
}

function parseKeyValue(list: string[] | undefined, what: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const item of list ?? []) {
    const eq = item.indexOf('=');
    // "--build-arg NAME" takes the value from the environment, like Docker.
    if (eq < 0) {
      if (what === '--build-arg' && process.env[item] !== undefined) out[item] = process.env[item]!;
      else if (what === '--build-arg') continue;
      else throw new UserError(`${what} ${item}: expected KEY=VALUE`);
      continue;
    }
    out[item.slice(0, eq)] = item.slice(eq + 1);
  }
  return out;
}

function parseCsv(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of text.split(',')) {
    const eq = part.indexOf('=');
    if (eq < 0) out[part] = '';
    else out[part.slice(0, eq)] = part.slice(eq + 1);
  }
  return out;
}

/**
 * `-o/--output`, as buildx reads it: `type=local,dest=DIR[,platform-split=true|false]`,
 * `type=tar,dest=FILE|-`, `type=oci,dest=FILE`, `type=docker,dest=FILE`; a bare `DIR` is
 * type=local and a bare `-` is a tar on stdout. Without `type=`, docker (drydock's default).
 */
export function parseOutput(text: string): OutputSpec {
  if (!text.includes('=')) return text === '-' ? { type: 'tar', dest: '-' } : { type: 'local', dest: text };
  const kv = parseCsv(text);
  const type = kv.type ?? 'docker';
  if (!['oci', 'docker', 'local', 'tar'].includes(type)) throw new UserError(`--output type=${type} is not supported (local, tar, oci, docker)`);
  if (!kv.dest) throw new UserError(type === 'local' ? 'output directory is required for local exporter' : `--output type=${type} needs dest=FILE`);
  let platformSplit: boolean | undefined;
  if (kv['platform-split'] !== undefined) {
    if (type !== 'local') throw new UserError(`platform-split is an option of the local exporter, not type=${type}`);
    const v = kv['platform-split'];
    if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(v)) platformSplit = true;
    else if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(v)) platformSplit = false;
    else throw new UserError(`non-bool value for platform-split: ${v}`);
  }
  return { type: type as OutputSpec['type'], dest: kv.dest, ...(platformSplit !== undefined ? { platformSplit } : {}) };
}

export function register(program: Command, only?: string): void {
  // Only the command being run (its word, from main.ts), or every command (help, unknown words).
  const wants = (...names: string[]) => only === undefined || names.includes(only);
  if (wants('builder')) registerBuilderPrune(program);
  if (wants('build')) program
    .command('build')
    .description('Build an image from a Dockerfile (daemonless; RUN steps execute in runc)')
    .argument('<context>', 'build context directory (read in place, .dockerignore honoured), or - for a Dockerfile on stdin and no context')
    .option('-t, --tag <name>', 'name[:tag] for the image (repeatable)', collect)
    .option('-f, --file <path>', 'Dockerfile path (default CONTEXT/Dockerfile); - reads it from stdin')
    .option('--build-arg <key=value>', 'set a build-time variable (repeatable)', collect)
    .option('--target <stage>', 'build only up to this stage')
    .option('--no-cache', 'do not use the build cache')
    .option('--pull', 'always pull base images, even when they are in the store')
    .option('-o, --output <spec>', 'also write the result: type=local,dest=DIR[,platform-split=BOOL], type=tar,dest=FILE|-, type=oci|docker,dest=FILE, or DIR')
    .option('--iidfile <file>', 'write the image ID to this file')
    .option('--platform <os/arch>', 'target platform(s), comma-separated for an image index (default: the host)')
    .addOption(new Option('--network <mode>', 'network for RUN steps').choices(['host', 'none', 'default']))
    .option('--secret <spec>', 'secret for RUN --mount=type=secret: id=ID,src=FILE or id=ID,env=VAR (repeatable)', collect)
    .option('--add-host <host:ip>', 'add a line to RUN steps\' /etc/hosts (repeatable)', collect)
    .option('--shm-size <bytes>', 'size of /dev/shm in RUN steps, e.g. 256m (default 64m)')
    .option('--ulimit <name=soft[:hard]>', 'ulimit for RUN steps, e.g. nofile=1024:2048 (repeatable; raising a hard limit needs CAP_SYS_RESOURCE)', collect)
    .option('-m, --memory <bytes>', 'memory limit of RUN steps (their cgroup), e.g. 512m')
    .option('--ssh <default|id=socket>', 'forward an SSH agent to RUN --mount=type=ssh (default: $SSH_AUTH_SOCK; repeatable)', collect)
    .option('--cache-from <spec>', 'import build cache: REF, type=registry,ref=REF, type=local,src=DIR[,tag=T] or type=s3,region=R,bucket=B[,...] (repeatable)', collect)
    .option('--cache-to <spec>', 'export build cache: type=registry,ref=REF[,mode=min|max], type=local,dest=DIR[,mode=...], type=s3,region=R,bucket=B[,...] or type=inline (repeatable)', collect)
    .option('--rm', 'accepted for Docker compatibility: a daemonless build keeps no intermediate containers')
    .option('--force-rm', 'accepted for Docker compatibility: a daemonless build keeps no intermediate containers')
    .option('--label <key=value>', 'add a label to the image (repeatable)', collect)
    .addOption(new Option('--compression <alg>', 'layer compression').choices(['gzip', 'zstd', 'none']).default('gzip'))
    .option('-q, --quiet', 'suppress build output and print the image ID')
    .addOption(new Option('--progress <type>', 'progress output').choices(['auto', 'plain', 'tty', 'quiet']).default('auto'))
    .addOption(new Option('--format <format>', 'print the result as JSON').choices(['json']))
    .option('--print-plan', 'print the build graph (stages, steps, edges, which steps are cached) and build nothing')
    .addHelpText('after', `
Examples:
  drydock build -t myapp:1.0 .
  drydock build -f docker/Dockerfile.prod --build-arg VERSION=2.1 -t myapp:prod .
  drydock build --target test --no-cache .
  drydock build --secret id=npmrc,src=$HOME/.npmrc -t web .
  drydock build --ssh default -t app .       # RUN --mount=type=ssh git clone git@host:repo
  drydock build --add-host mirror.local:10.0.0.5 --shm-size 256m -m 1g --ulimit nofile=1024:1024 .
  drydock build -t app -o type=docker,dest=app.tar . && podman load -i app.tar
  drydock build --cache-from type=registry,ref=reg:5000/app:cache --cache-to type=registry,ref=reg:5000/app:cache,mode=max .
  echo 'FROM busybox' | drydock build -f - .
  drydock build -t tools - < Dockerfile.tools        # no context: the Dockerfile alone
  drydock build --print-plan --format json .          # the build graph; nothing runs

SOURCE_DATE_EPOCH in the environment makes layers and timestamps reproducible.`)
    .action(async (context: string, flags: BuildFlags) => {
      const { build, plan, formatPlan } = await import('../../builder/index.js');
      const { ContentStore } = await import('../../store/index.js');
      // fs.promises (a module of its own to load, ~1 ms) only for the flags that write or stat
      // with it; a local build's own file-system calls before its first step are synchronous.
      const loadFsp = () => import('node:fs/promises');
      const secrets: Record<string, string> = {};
      for (const spec of flags.secret ?? []) {
        const kv = parseCsv(spec);
        const id = kv.id;
        if (!id) throw new UserError(`--secret ${spec}: id= is required`);
        if (kv.src ?? kv.source) secrets[id] = (kv.src ?? kv.source)!;
        else if (kv.env) {
          const value = process.env[kv.env];
          if (value === undefined) throw new UserError(`--secret ${spec}: environment variable ${kv.env} is not set`);
          const os = await import('node:os');
          const path = await import('node:path');
          const fsp = await loadFsp();
          const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'drydock-secret-'));
          const file = path.join(dir, id);
          await fsp.writeFile(file, value, { mode: 0o400 });
          const { rmSync } = await import('node:fs');
          process.on('exit', () => { try { rmSync(dir, { recursive: true }); } catch { /* best effort */ } });
          secrets[id] = file;
        } else throw new UserError(`--secret ${spec}: src=FILE or env=VAR is required`);
      }
      const ssh: Record<string, string> = {};
      for (const spec of flags.ssh ?? []) {
        const eq = spec.indexOf('=');
        const id = eq < 0 ? spec : spec.slice(0, eq);
        const sock = eq < 0 ? process.env.SSH_AUTH_SOCK : spec.slice(eq + 1);
        if (!id) throw new UserError(`--ssh ${spec}: expected default|ID[=SOCKET]`);
        if (!sock) throw new UserError(`--ssh ${spec}: SSH_AUTH_SOCK is not set; start ssh-agent or give ${id}=SOCKET`);
        const st = await (await loadFsp()).stat(sock).catch(() => undefined);
        if (!st?.isSocket()) throw new UserError(`--ssh ${spec}: ${sock} is not an SSH agent socket`);
        ssh[id] = sock;
      }
      // node:net (and what it loads) only when there is an address to check.
      const isIP = flags.addHost?.length ? (await import('node:net')).isIP : undefined;
      const extraHosts = (flags.addHost ?? []).map((h) => {
        const i = h.indexOf(':');
        if (i <= 0 || !isIP!(h.slice(i + 1))) throw new UserError(`invalid argument "${h}" for "--add-host" flag: invalid IP address in add-host: "${h.slice(i + 1)}"`);
        return `${h.slice(i + 1)}\t${h.slice(0, i)}`;
      });
      // The modules, not the runtime's index: a build loads the container runtime only for RUN.
      const { parseUlimit, checkUlimits } = await import('../../runtime/ulimits.js');
      const parseMemory = flags.memory !== undefined ? (await import('../../runtime/create.js')).parseMemory : undefined;
      const parseByteSize = flags.shmSize !== undefined ? (await import('../../layer/limits.js')).parseByteSize : undefined;
      const ulimits = (flags.ulimit ?? []).map(parseUlimit);
      await checkUlimits(ulimits);
      const output = flags.output ? parseOutput(flags.output) : undefined;
      const epoch = process.env.SOURCE_DATE_EPOCH;
      if (epoch !== undefined && epoch !== '' && !/^\d+$/.test(epoch)) throw new UserError(`SOURCE_DATE_EPOCH must be a whole number of seconds, got "${epoch}"`);
      const quiet = flags.quiet || flags.progress === 'quiet' || flags.format === 'json';
      // `-o -` writes the tar on stdout, so progress goes to stderr (as buildx does). Asked for
      // only when there is progress: making process.stdout loads net for a pipe, tty for a terminal.
      const progressOut = () => (output?.dest === '-' && output.type === 'tar' ? process.stderr : process.stdout);
      // Loaded only when asked for: a local build does not need the registry cache's code.
      const remote = flags.cacheTo?.length || flags.cacheFrom?.length ? await import('../../builder/remote-cache/index.js') : undefined;
      const cacheTo = remote?.parseCacheTo(flags.cacheTo ?? []) ?? [];
      const cacheFrom = remote?.parseCacheFrom(flags.cacheFrom ?? []) ?? [];
      const store = await ContentStore.open();
      // `drydock build - < Dockerfile`: the Dockerfile on stdin and an empty context, like Docker.
      let dockerfileText = flags.file === '-' || context === '-' ? await readStdin() : undefined;
      if (context === '-') {
        if (flags.file && flags.file !== '-') throw new UserError('with CONTEXT "-" the Dockerfile is read from stdin; -f cannot be used');
        const os = await import('node:os');
        const path = await import('node:path');
        context = await (await loadFsp()).mkdtemp(path.join(os.tmpdir(), 'drydock-empty-context-'));
        const { rmSync } = await import('node:fs');
        const empty = context;
        process.on('exit', () => { try { rmSync(empty, { recursive: true }); } catch { /* best effort */ } });
      }
      if (dockerfileText !== undefined && dockerfileText.trim() === '') throw new UserError('the Dockerfile read from stdin is empty');
      // Docker's words for a context that is not there, before anything looks for a Dockerfile.
      const { statSyncOrUndefined } = await import('../../util/fs.js');
      const ctxStat = statSyncOrUndefined(context);
      if (!ctxStat) throw new VerbatimError(`unable to prepare context: path ${JSON.stringify(context)} not found`);
      if (!ctxStat.isDirectory()) throw new VerbatimError(`unable to prepare context: context must be a directory: ${context}`);
      const buildOptions: import('../../builder/index.js').BuildOptions = {
        context,
        dockerfile: flags.file && flags.file !== '-' ? flags.file : undefined,
        dockerfileText,
        tags: flags.tag,
        buildArgs: parseKeyValue(flags.buildArg, '--build-arg'),
        labels: parseKeyValue(flags.label, '--label'),
        target: flags.target,
        noCache: !flags.cache,
        pull: flags.pull,
        platform: flags.platform,
        network: flags.network === 'none' ? 'none' : 'host',
        secrets,
        ssh,
        extraHosts,
        shmSize: flags.shmSize !== undefined ? parseByteSize!(flags.shmSize, '--shm-size') : undefined,
        ulimits,
        memory: flags.memory !== undefined ? parseMemory!(flags.memory) : undefined,
        progress: quiet ? undefined : progressOut(),
        sourceDateEpoch: epoch ? Number(epoch) : undefined,
        compression: flags.compression,
        output,
        store,
      };
      if (flags.printPlan) {
        if (flags.platform?.includes(',')) {
          const { planPlatforms, formatPlatformsPlan } = await import('../../builder/index.js');
          const document = await planPlatforms({ ...buildOptions, progress: undefined });
          if (flags.format === 'json') printJson(document);
          else process.stdout.write(formatPlatformsPlan(document));
          return;
        }
        const { document } = await plan({ ...buildOptions, progress: undefined });
        if (flags.format === 'json') printJson(document);
        else process.stdout.write(formatPlan(document));
        return;
      }
      const progress = quiet ? undefined : progressOut();
      // --no-cache ignores --cache-from too, as in BuildKit; --cache-to still exports.
      const remoteCache = remote && (cacheTo.length || cacheFrom.length)
        ? await remote.RemoteCache.open(store, { from: flags.cache ? cacheFrom : [], to: cacheTo, progress, warn: (m) => process.stderr.write(`WARNING: ${m}\n`) })
        : undefined;
      let result: Awaited<ReturnType<typeof build>>;
      try {
        result = await build({ ...buildOptions, remoteCache });
        await remoteCache?.export();
      } finally {
        await remoteCache?.close();
      }
      if (flags.iidfile) {
        const { writeFileAtomic } = await import('../../util/fs.js');
        await writeFileAtomic(flags.iidfile, result.imageId);
      }
      if (flags.format === 'json') {
        printJson({ id: result.imageId, manifestDigest: result.manifestDigest, names: result.names, steps: result.steps });
      } else if (quiet) {
        process.stdout.write(`${result.imageId}\n`);
      }
    });
}

function registerBuilderPrune(program: Command): void {
  const builder = program.command('builder').description('Manage the build cache');
  builder
    .command('prune')
    .description('Remove build cache entries (their layers become collectable by `drydock gc`)')
    .option('-f, --force', 'do not prompt (accepted for Docker compatibility; drydock never prompts)')
    .addOption(new Option('--format <format>', 'print the result as JSON').choices(['json']))
    .addHelpText('after', `
Examples:
  drydock builder prune && drydock gc     # drop the build cache, then free the blobs it kept`)
    .action(async (flags: { format?: string }) => {
      const { BuildCache } = await import('../../builder/index.js');
      const { ContentStore } = await import('../../store/index.js');
      const removed = await new BuildCache(await ContentStore.open()).prune();
      if (flags.format === 'json') printJson({ removed });
      else process.stdout.write(`Deleted ${removed} build cache entr${removed === 1 ? 'y' : 'ies'}; run drydock gc to free their blobs\n`);
    });
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}
