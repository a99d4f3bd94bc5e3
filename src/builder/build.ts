// The builder: stages → build graph → execution with cache. Only the stages the target needs
// are built (FROM <stage>, COPY --from, RUN --mount from= edges). Every step gets a cache key
// from its parent's key and its inputs; a hit costs one small file read, so a fully cached
// rebuild does no filesystem work. RUN, COPY and ADD execute on an overlay mount of the parent
// layers (src/runtime, shared with `drydock run`) and the upper dir becomes the new layer.
import { promises as fsp, createWriteStream } from 'node:fs';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import path from 'node:path';
import { randomBytes, createHash } from 'node:crypto';
import {
  parseDockerfile, splitStages, parseLine, parseHeredocWord, Lexer, DockerfileError, ExpansionError, isMetadataKeyword, metadataCommand, PatternMatcher,
  type Instruction, type Stage, type StagedDockerfile, type DockerfileWarning,
} from '../dockerfile/index.js';
import { ContentStore } from '../store/content-store.js';
import { resolveImage, canonicalName, type LocalImage } from '../store/images.js';
import { writeImage } from '../store/write-image.js';
import { hostPlatform, parsePlatform, formatPlatform } from '../image/platform.js';
import { Digester, shortId } from '../image/digest.js';
import { parseReference, familiarString } from '../image/reference.js';
import type { Descriptor, ImageConfig, Platform, ContainerConfig } from '../image/types.js';
import type { Compression } from '../image/media-types.js';
import { NotFoundError, UserError } from '../util/errors.js';
import { STREAM_CHUNK, discardStreamedFile } from '../util/fs.js';
import { BuildCache, stepKey, type CacheEntry, type CachedLayer } from './cache.js';
import { SourceTree, HashCache, hashSources } from './context.js';
import { parseChmod, expandOrThrow, splitRawWords } from './instructions.js';
import { dispatchMetadata, configEnv, DEFAULT_SHELL } from './dispatch.js';
import { parseGitSource, resolveGitCommit, checkoutGit, type GitSource } from './git.js';
import { parseMountFlag, cacheMountDir, ociMount, removeMountpoints, type MountRequest } from './mounts.js';
import type { StepCacheHooks } from './remote-cache/index.js';

export interface BuildOptions {
  /** The context directory (read in place). */
  context: string;
  /** Path of the Dockerfile (default <context>/Dockerfile); may be outside the context. */
  dockerfile?: string;
  /** Dockerfile text (e.g. from stdin with `-f -`); wins over `dockerfile`. */
  dockerfileText?: string;
  tags?: string[];
  buildArgs?: Record<string, string>;
  target?: string;
  noCache?: boolean;
  platform?: string;
  network?: 'host' | 'none';
  /** --secret id → host file. */
  secrets?: Record<string, string>;
  /** --ssh id → the SSH agent socket RUN --mount=type=ssh binds. */
  ssh?: Record<string, string>;
  /** --add-host: "ip\thost" lines for RUN steps' /etc/hosts. */
  extraHosts?: string[];
  /** --shm-size in bytes for RUN steps' /dev/shm. */
  shmSize?: number;
  /** --ulimit for RUN steps' processes. */
  ulimits?: { type: string; soft: number; hard: number }[];
  /** -m/--memory: RUN steps' cgroup memory limit in bytes. */
  memory?: number;
  /** Progress output (Step N/M lines and RUN output); undefined = silent. */
  progress?: Writable;
  sourceDateEpoch?: number;
  compression?: Compression;
  labels?: Record<string, string>;
  /** Always pull base images, even when the store has them (docker build --pull). */
  pull?: boolean;
  store?: ContentStore;
  /** --cache-from/--cache-to (src/builder/remote-cache): asked after a local miss, told every step. */
  remoteCache?: StepCacheHooks;
}

export interface StepReport {
  step: number;
  instruction: string;
  cached: boolean;
  key: string;
}

export interface BuildResult {
  /** The image ID (config digest), like `docker build`. */
  imageId: string;
  manifestDigest: string;
  manifest: Descriptor;
  config: ImageConfig;
  names: string[];
  steps: StepReport[];
  layers: CachedLayer[];
}

/** The state of a stage after some step: what the next step builds on. */
interface StageState {
  key: string;
  config: ImageConfig;
  layers: CachedLayer[];
  /** ARGs declared in this stage so far, with their values. */
  args: Map<string, string>;
  /** CMD was set in this stage (ENTRYPOINT then keeps it). */
  cmdSet: boolean;
  /** Last history `created` (used as the image's created time). */
  created: string;
}

const DEFAULT_PATH_ENV = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
/** Build args that every build accepts without an ARG and that never enter cache keys or history. */
const PROXY_ARGS = new Set(['HTTP_PROXY', 'http_proxy', 'HTTPS_PROXY', 'https_proxy', 'FTP_PROXY', 'ftp_proxy', 'NO_PROXY', 'no_proxy', 'ALL_PROXY', 'all_proxy']);

export async function build(opts: BuildOptions): Promise<BuildResult> {
  return new Builder(opts).run();
}

class Builder {
  private store!: ContentStore;
  private cache!: BuildCache;
  private context!: SourceTree;
  private df!: StagedDockerfile;
  private lex!: Lexer;
  private readonly out: Writable | undefined;
  private readonly platform: Platform;
  private readonly buildArgs: Map<string, string>;
  private readonly usedArgs = new Set<string>();
  private globalArgs = new Map<string, string>();
  private readonly stageResults = new Map<number, StageState>();
  private readonly steps: StepReport[] = [];
  private stepNo = 0;
  private totalSteps = 0;
  private readonly stamp: string;

  constructor(private readonly opts: BuildOptions) {
    this.out = opts.progress;
    this.platform = opts.platform ? parsePlatform(opts.platform) : hostPlatform();
    this.buildArgs = new Map(Object.entries(opts.buildArgs ?? {}));
    this.stamp = opts.sourceDateEpoch !== undefined ? new Date(opts.sourceDateEpoch * 1000).toISOString() : new Date().toISOString();
  }

  private log(s: string): void { this.out?.write(s); }

  async run(): Promise<BuildResult> {
    this.store = this.opts.store ?? (await ContentStore.open());
    this.cache = new BuildCache(this.store);
    // Steps of builds killed before they could clean up (their runc containers and mounts).
    const { sweepOrphans, scratchRoot } = await import('../runtime/index.js');
    await sweepOrphans(scratchRoot(this.store.root));
    const dfPath = this.opts.dockerfile ?? path.join(this.opts.context, 'Dockerfile');
    let text = this.opts.dockerfileText;
    if (text === undefined) {
      text = await fsp.readFile(dfPath, 'utf8').catch((e: NodeJS.ErrnoException) => {
        throw new UserError(e.code === 'ENOENT' ? `failed to read Dockerfile: open ${dfPath}: no such file or directory` : `failed to read Dockerfile ${dfPath}: ${e.message}`);
      });
    }
    const file = this.opts.dockerfileText !== undefined ? 'Dockerfile' : path.basename(dfPath);
    const parsed = parseDockerfile(text, { file });
    this.df = splitStages(parsed);
    if (parsed.directives.syntax !== undefined) {
      this.log(`# syntax=${parsed.directives.syntax}: using drydock's built-in Dockerfile frontend (the frontend image is not pulled)\n`);
    }
    this.printWarnings(parsed.warnings);
    this.lex = new Lexer(this.df.escape);
    this.context = await SourceTree.openContext(this.opts.context, this.opts.dockerfileText === undefined ? dfPath : undefined);
    this.context.hashCache = await HashCache.load(path.join(this.store.root, 'cache', 'context', `${createHash('sha256').update(this.context.root).digest('hex').slice(0, 32)}.json`));
    this.globalArgs = this.evalMetaArgs();

    const target = this.pickTarget();
    this.finalInst = target.commands[target.commands.length - 1];
    const order = this.stagesNeeded(target);
    this.totalSteps = order.reduce((n, s) => n + 1 + s.commands.length, 0);
    // Ctrl-C: runc gets the signal (runOnce forwards it), the running step fails, its mounts and
    // work dir are cleaned up in `finally`, and the build stops before the next step.
    const onSignal = () => { this.interrupted = true; };
    const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
    for (const sig of signals) process.on(sig, onSignal);
    try {
      for (const stage of order) this.stageResults.set(stage.index, await this.buildStage(stage));
    } catch (e) {
      if (this.interrupted) throw new UserError('build interrupted', 130);
      throw e;
    } finally {
      for (const sig of signals) process.off(sig, onSignal);
    }
    await this.context.hashCache.save();
    const final = this.stageResults.get(target.index)!;
    this.warnUnusedArgs();
    return this.finish(final);
  }

  private interrupted = false;
  /** The target's last instruction: its " ---> " line shows the image ID, printed once written. */
  private finalInst: Instruction | undefined;

  /** BuildKit's lint warnings, once per build, before the first step. */
  private printWarnings(warnings: DockerfileWarning[]): void {
    if (warnings.length === 0) return;
    this.log(`${warnings.length} warning${warnings.length === 1 ? '' : 's'} found:\n`);
    for (const w of warnings) this.log(` - ${w.rule}: ${w.message} (line ${w.line})\n`);
  }

  // ---- stages and the build graph -------------------------------------------------------

  private evalMetaArgs(): Map<string, string> {
    const env = new Map<string, string>();
    const p = this.platform;
    const host = hostPlatform();
    const auto: Record<string, string> = {
      TARGETPLATFORM: formatPlatform(p), TARGETOS: p.os, TARGETARCH: p.architecture, TARGETVARIANT: p.variant ?? '',
      BUILDPLATFORM: formatPlatform(host), BUILDOS: host.os, BUILDARCH: host.architecture, BUILDVARIANT: '',
    };
    for (const [k, v] of Object.entries(auto)) env.set(k, v);
    for (const inst of this.df.metaArgs) {
      for (const [name, def] of this.parseArgDecls(inst, env)) {
        const v = this.buildArgs.has(name) ? this.buildArgs.get(name)! : def;
        if (this.buildArgs.has(name)) this.usedArgs.add(name);
        if (v !== undefined) env.set(name, v); else env.delete(name);
      }
    }
    return env;
  }

  private parseArgDecls(inst: Instruction, env: Map<string, string>): [string, string | undefined][] {
    return this.at(inst, () => splitRawWords(inst.args, this.df.escape).map((w): [string, string | undefined] => {
      const eq = w.indexOf('=');
      const name = eq < 0 ? w : w.slice(0, eq);
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new UserError(`invalid ARG name "${name}"`);
      return [name, eq < 0 ? undefined : this.lex.processWord(w.slice(eq + 1), env)];
    }));
  }

  private pickTarget(): Stage {
    const stages = this.df.stages;
    if (!this.opts.target) return stages[stages.length - 1]!;
    const t = this.opts.target.toLowerCase();
    const s = stages.find((x) => x.name === t);
    if (!s) throw new UserError(`target stage "${this.opts.target}" could not be found (stages: ${stages.map((x) => x.name ?? String(x.index)).join(', ')})`);
    return s;
  }

  /** Resolves "name" or "0" to a stage defined before `before`. */
  private stageRef(ref: string, before: number): Stage | undefined {
    const lower = ref.toLowerCase();
    const named = this.df.stages.find((s) => s.name === lower && s.index < before);
    if (named) return named;
    if (/^\d+$/.test(ref) && Number(ref) < before) return this.df.stages[Number(ref)];
    return undefined;
  }

  private baseName(stage: Stage): string {
    return this.at(stage.from, () => this.lex.processWord(stage.baseText, this.globalArgs));
  }

  private dependencies(stage: Stage): Stage[] {
    const deps: Stage[] = [];
    const base = this.stageRef(this.baseName(stage), stage.index);
    if (base) deps.push(base);
    for (const inst of stage.commands) {
      for (const f of inst.flags) {
        let ref: string | undefined;
        if (inst.keyword === 'COPY' && f.name === 'from') ref = f.value;
        if (inst.keyword === 'RUN' && f.name === 'mount' && f.value) ref = parseMountFlag(f.value).from;
        if (!ref) continue;
        const s = this.stageRef(this.lex.processWord(ref, this.globalArgs), stage.index);
        if (s) deps.push(s);
      }
    }
    return deps;
  }

  /** The target and the stages it needs, in dependency order; others are skipped. */
  private stagesNeeded(target: Stage): Stage[] {
    const order: Stage[] = [];
    const seen = new Set<number>();
    const visit = (s: Stage) => {
      if (seen.has(s.index)) return;
      seen.add(s.index);
      for (const d of this.dependencies(s)) visit(d);
      order.push(s);
    };
    visit(target);
    return order;
  }

  // ---- one stage ----------------------------------------------------------------------------

  private async buildStage(stage: Stage): Promise<StageState> {
    let state = await this.fromStep(stage);
    const base = state.config.config?.OnBuild;
    if (base && base.length && !this.stageRef(this.baseName(stage), stage.index)) {
      this.log(`# Executing ${base.length} build trigger${base.length > 1 ? 's' : ''}\n`);
      for (const trigger of base) {
        const inst = parseLine(trigger, `${this.df.file} (ONBUILD trigger of ${this.baseName(stage)})`, stage.from.start, this.df.escape);
        state = await this.step(stage, state, inst, true);
      }
    }
    if (state.config.config) state.config.config.OnBuild = null;
    for (const inst of stage.commands) state = await this.step(stage, state, inst, false);
    return state;
  }

  private async fromStep(stage: Stage): Promise<StageState> {
    this.stepNo++;
    const name = this.baseName(stage);
    this.log(`Step ${this.stepNo}/${this.totalSteps} : ${stage.from.original}\n`);
    const fromStage = this.stageRef(name, stage.index);
    let state: StageState;
    let baseId: string | undefined;
    if (fromStage) {
      const prev = this.stageResults.get(fromStage.index)!;
      state = { ...prev, config: structuredClone(prev.config), layers: [...prev.layers], args: new Map(), cmdSet: false };
    } else if (name.toLowerCase() === 'scratch') {
      state = {
        key: stepKey('', ['FROM scratch', formatPlatform(this.platform)]),
        config: {
          architecture: this.platform.architecture, os: this.platform.os, ...(this.platform.variant ? { variant: this.platform.variant } : {}),
          config: { Env: [DEFAULT_PATH_ENV] }, rootfs: { type: 'layers', diff_ids: [] }, history: [],
        },
        layers: [], args: new Map(), cmdSet: false, created: this.stamp,
      };
    } else {
      const platformFlag = stage.from.flags.find((f) => f.name === 'platform')?.value;
      const platform = platformFlag ? parsePlatform(this.lex.processWord(platformFlag, this.globalArgs)) : this.platform;
      const img = await this.resolveBase(name, platform, stage.from);
      baseId = img.configDigest;
      state = {
        key: stepKey('', ['FROM', img.manifestDescriptor.digest]),
        config: structuredClone(img.config),
        layers: img.manifest.layers.map((l, i) => ({ digest: l.digest, size: l.size, mediaType: l.mediaType, diffID: img.config.rootfs.diff_ids[i]! })),
        args: new Map(), cmdSet: false, created: img.config.created ?? this.stamp,
      };
      state.config.config ??= {};
      state.config.history ??= [];
      // Like BuildKit and buildah: an image without PATH gets the default one, so RUN and the
      // final container find their binaries.
      const env = state.config.config.Env ?? [];
      if (!env.some((e) => e.startsWith('PATH='))) state.config.config.Env = [DEFAULT_PATH_ENV, ...env];
    }
    // The base's IMAGE ID as `drydock images` shows it (scratch has none, as in Docker; a stage shows its name).
    this.log(` ---> ${fromStage ? `stage ${fromStage.name ?? fromStage.index}` : baseId ? shortId(baseId) : ''}\n`);
    if (!fromStage) this.opts.remoteCache?.onStep({ key: state.key, entry: { created: state.created }, layers: state.layers });
    this.steps.push({ step: this.stepNo, instruction: stage.from.original, cached: true, key: state.key });
    return state;
  }

  private async resolveBase(name: string, platform: Platform, inst: Instruction): Promise<LocalImage> {
    if (!this.opts.pull) {
      try {
        return await resolveImage(this.store, name, platform);
      } catch (e) {
        if (!(e instanceof NotFoundError)) throw this.wrap(inst, e);
      }
    }
    // Not in the store (or --pull): fetch it with the registry client, honouring auth and mirrors.
    const { pullImage } = await import('../client/index.js');
    this.log(`Pulling ${name} (${formatPlatform(platform)})...\n`);
    try {
      return await pullImage(this.store, name, { platform, pullPolicy: this.opts.pull ? 'always' : 'missing' });
    } catch (e) {
      throw this.err(inst, `base image "${name}" not found locally and could not be pulled (${(e as Error).message}); run drydock pull ${name}, or create it with drydock import/mkimage`);
    }
  }

  // ---- one step -----------------------------------------------------------------------------

  private stageEnv(state: StageState): Map<string, string> {
    return configEnv(state.config.config ?? {}, state.args);
  }

  private async step(stage: Stage, parent: StageState, inst: Instruction, trigger: boolean): Promise<StageState> {
    if (this.interrupted) throw new UserError('build interrupted', 130);
    if (!trigger) this.stepNo++;
    this.log(trigger ? `Trigger : ${inst.original}\n` : `Step ${this.stepNo}/${this.totalSteps} : ${inst.original}\n`);
    const state: StageState = { ...parent, config: structuredClone(parent.config), args: new Map(parent.args) };
    state.config.config ??= {};
    const env = this.stageEnv(state);
    const c = state.config.config;
    const flags = new Map(inst.flags.map((f) => [f.name, f.value]));
    let historyText = inst.original;
    /** Inputs of the cache key besides the parent's key. */
    let keyParts: unknown[];
    let execute: (() => Promise<CachedLayer | undefined>) | undefined;

    switch (inst.keyword) {
      case 'ARG': {
        const decls = this.parseArgDecls(inst, env);
        for (const [name, def] of decls) {
          let v = this.buildArgs.has(name) ? this.buildArgs.get(name) : def;
          if (this.buildArgs.has(name)) this.usedArgs.add(name);
          if (v === undefined && this.globalArgs.has(name)) v = this.globalArgs.get(name);
          if (v === undefined) state.args.delete(name); else state.args.set(name, v);
        }
        historyText = `ARG ${decls.map(([n, d]) => (d === undefined ? n : `${n}=${d}`)).join(' ')}`;
        keyParts = ['ARG', decls.map(([n]) => [n, state.args.get(n)])];
        break;
      }
      case 'RUN': {
        const plan = await this.planRun(inst, state, env, flags);
        keyParts = plan.keyParts;
        historyText = plan.history;
        execute = plan.execute;
        break;
      }
      case 'COPY':
      case 'ADD': {
        const plan = await this.planCopy(inst, state, env, flags);
        keyParts = plan.keyParts;
        historyText = plan.history;
        execute = plan.execute;
        break;
      }
      default: {
        if (!isMetadataKeyword(inst.keyword)) throw this.err(inst, `unsupported instruction ${inst.keyword}`);
        const cmd = metadataCommand(this.df.file, inst, this.df.escape);
        const d = this.at(inst, () => dispatchMetadata({ config: c, author: state.config.author, cmdSet: state.cmdSet }, cmd, this.lex, env));
        state.config.config = d.state.config;
        if (d.state.author !== undefined) state.config.author = d.state.author;
        state.cmdSet = d.state.cmdSet;
        historyText = d.history;
        keyParts = d.keyParts;
      }
    }

    const key = stepKey(parent.key, keyParts);
    let entry = this.opts.noCache ? undefined : (await this.cache.get(key)) ?? (await this.opts.remoteCache?.lookup(key, parent.layers));
    const cached = !!entry;
    if (entry) {
      this.log(' ---> Using cache\n');
    } else {
      const layer = execute ? await execute() : undefined;
      entry = { created: this.stamp, ...(layer ? { layer } : {}) };
      await this.cache.put(key, entry);
    }
    this.applyEntry(state, entry, historyText, !!execute);
    state.key = key;
    this.opts.remoteCache?.onStep({ key, parent: parent.key, entry, layers: state.layers });
    if (inst !== this.finalInst || trigger) this.log(` ---> ${shortId(`sha256:${key}`)}\n`);
    this.steps.push({ step: this.stepNo, instruction: inst.original, cached, key });
    return state;
  }

  private applyEntry(state: StageState, entry: CacheEntry, createdBy: string, producesLayer: boolean): void {
    const comment = 'buildkit.dockerfile.v0';
    state.created = entry.created;
    state.config.history = [...(state.config.history ?? [])];
    if (entry.layer) {
      state.layers = [...state.layers, entry.layer];
      state.config.rootfs = { type: 'layers', diff_ids: [...state.config.rootfs.diff_ids, entry.layer.diffID] };
      state.config.history.push({ created: entry.created, created_by: createdBy, comment });
    } else {
      void producesLayer;
      state.config.history.push({ created: entry.created, created_by: createdBy, comment, empty_layer: true });
    }
  }

  // ---- RUN ----------------------------------------------------------------------------------

  private async planRun(inst: Instruction, state: StageState, env: Map<string, string>, flags: Map<string, string | undefined>) {
    const c = state.config.config!;
    const shell = c.Shell ?? DEFAULT_SHELL;
    let argv: string[];
    let stdin: string | undefined;
    const heredoc = inst.heredocs[0];
    if (inst.json) {
      argv = inst.json;
    } else if (heredoc && inst.heredocs.length === 1 && parseHeredocWord(inst.args.trim())) {
      // `RUN <<EOF` alone: the body is the script (the shell expands variables in it); a #!
      // line picks the interpreter, like BuildKit.
      const body = heredoc.content;
      const shebang = /^#!(.*)\n/.exec(body);
      if (shebang) { argv = [...shebang[1]!.trim().split(/\s+/), '/dev/stdin']; stdin = body; } else argv = [...shell, body];
    } else if (inst.heredocs.length) {
      // Heredocs inside a shell command: the shell itself reads them.
      argv = [...shell, [inst.args, ...inst.heredocs.map((h) => `${h.content}${h.name}`)].join('\n')];
    } else {
      argv = [...shell, inst.args];
    }
    const network = (flags.get('network') ?? this.opts.network ?? 'host') as string;
    if (!['host', 'none', 'default'].includes(network)) throw this.err(inst, `unsupported --network=${network} (host, none, default)`);
    const mounts = inst.flags.filter((f) => f.name === 'mount').map((f) => this.at(inst, () => parseMountFlag(this.lex.processWord(f.value ?? '', env))));
    // Build args in effect reach the command's environment but not the image config.
    const argEnv = [...state.args].filter(([k]) => !(c.Env ?? []).some((e) => e.startsWith(`${k}=`))).map(([k, v]) => `${k}=${v}`);
    const proxyEnv = [...this.buildArgs].filter(([k]) => PROXY_ARGS.has(k)).map(([k, v]) => `${k}=${v}`);
    const mountKeys: unknown[] = [];
    for (const m of mounts) {
      if (m.type === 'bind' && !m.from) {
        const entries = await this.at(inst, () => this.context.resolve([m.source ?? '.'], 'RUN --mount'));
        mountKeys.push([m.text, await hashSources(this.context, entries)]);
      } else if (m.type === 'bind' && m.from) {
        const s = this.stageRef(m.from, Infinity);
        mountKeys.push([m.text, s ? this.stageResults.get(s.index)?.key : m.from]);
      } else mountKeys.push(m.text);
    }
    const history = `RUN ${argEnv.length ? `|${argEnv.length} ${argEnv.join(' ')} ` : ''}${argv.join(' ')} # buildkit`;
    return {
      history,
      keyParts: ['RUN', argv, argEnv, mountKeys, network === 'none' ? 'none' : 'host', stdin ?? ''],
      execute: () => this.withRootfs(state, async (rootfs, lowers, upper, workDir) => {
        const { createRuntimeSpec, runOnce, checkWorkdir } = await import('../runtime/index.js');
        const cwd = c.WorkingDir || '/';
        await checkWorkdir(rootfs, cwd).catch((e: Error) => { throw this.err(inst, e.message); });
        const { mkdirInRoot } = await import('./copy.js');
        await mkdirInRoot(rootfs, cwd, { uid: 0, gid: 0 });
        const ociMounts = [];
        const sshEnv: string[] = [];
        for (const m of mounts) {
          if (m.type === 'ssh') {
            const sock = this.opts.ssh?.[m.id!];
            if (!sock) {
              // Like BuildKit: an agent nobody forwarded is skipped unless the mount requires it.
              if (m.required) throw this.err(inst, `no SSH key "${m.id}" forwarded from the client (drydock build --ssh ${m.id}[=SOCKET])`);
              continue;
            }
            if (!sshEnv.length) sshEnv.push(`SSH_AUTH_SOCK=${m.target}`);
            ociMounts.push(ociMount(m, sock));
            continue;
          }
          ociMounts.push(ociMount(m, await this.mountSource(inst, m, workDir)));
        }
        const spec = await createRuntimeSpec({
          rootfs, args: argv, env: [...(c.Env ?? []), ...argEnv, ...proxyEnv, ...sshEnv], cwd, user: c.User || '0:0',
          network: network === 'none' ? 'none' : 'host', mounts: ociMounts, hostFilesDir: path.join(workDir, 'hostfiles'),
          extraHosts: this.opts.extraHosts, shmSize: this.opts.shmSize, rlimits: this.opts.ulimits,
          ...(this.opts.memory ? { resources: { memory: { limit: this.opts.memory } } } : {}),
        });
        const id = `drydock-build-${randomBytes(6).toString('hex')}`;
        const { addOwnedContainer } = await import('../runtime/index.js');
        await addOwnedContainer(workDir, id);
        const sink = this.out ?? new Writable({ write: (_c, _e, cb) => cb() });
        // Keep the tail of stderr: runc's init reports exec failures there, not in its log.
        let stderrTail = '';
        const stderr = new Writable({
          write: (chunk: Buffer, _e, cb) => { stderrTail = (stderrTail + chunk.toString('utf8')).slice(-4096); sink.write(chunk, cb); },
        });
        const result = await runOnce({
          id, bundleDir: path.join(workDir, 'bundle'), spec, architecture: state.config.architecture,
          stdio: { stdout: sink, stderr, ...(stdin !== undefined ? { stdin: Readable.from([stdin]) } : {}) },
        }).catch((e: Error) => { throw this.err(inst, e.message); });
        if (result.exitCode !== 0 && /exec [^\n]*: exec format error\s*$/.test(stderrTail)) {
          const host = hostPlatform().architecture;
          throw this.err(inst, `the image is for ${state.config.architecture} but this host is ${host}; install qemu-user-static/binfmt or build for linux/${host} (${argv[0]}: exec format error)`);
        }
        if (result.exitCode !== 0) {
          throw new UserError(`${this.df.file}:${inst.start.line}: step ${this.stepNo}/${this.totalSteps} "${inst.original}": process "${argv.join(' ')}" did not complete successfully: exit code: ${result.exitCode}`, result.exitCode);
        }
        await removeMountpoints(upper, lowers, [
          ...mounts.map((m) => m.target), '/etc/hosts', '/etc/hostname', '/etc/resolv.conf', '/proc', '/sys', '/dev',
        ]);
      }),
    };
  }

  /** Host path backing a RUN --mount. */
  private async mountSource(inst: Instruction, m: MountRequest, workDir: string): Promise<string | undefined> {
    switch (m.type) {
      case 'tmpfs': case 'ssh': return undefined;
      case 'cache': {
        const dir = cacheMountDir(this.store.root, m);
        await fsp.mkdir(dir, { recursive: true });
        return dir;
      }
      case 'secret': {
        const src = this.opts.secrets?.[m.id ?? ''];
        if (!src) {
          if (m.required) throw this.err(inst, `secret "${m.id}" is required but was not given (--secret id=${m.id},src=FILE)`);
          // An absent optional secret mounts an empty file, so the command can test for it.
          const empty = path.join(workDir, `secret-${randomBytes(4).toString('hex')}`);
          await fsp.writeFile(empty, '', { mode: 0o400 });
          return empty;
        }
        return path.resolve(src);
      }
      case 'bind': {
        let host: string;
        if (m.from) {
          const tree = await this.treeFor(inst, m.from, workDir);
          host = (await tree.resolve([m.source ?? '.'], 'RUN --mount'))[0]!.hostPath;
        } else {
          host = (await this.at(inst, () => this.context.resolve([m.source ?? '.'], 'RUN --mount')))[0]!.hostPath;
        }
        if (m.readonly) return host;
        // rw bind mounts write to a throwaway copy, like BuildKit: the source is never changed.
        const copy = path.join(workDir, `bind-${randomBytes(4).toString('hex')}`);
        await fsp.cp(host, copy, { recursive: true, preserveTimestamps: true });
        return copy;
      }
    }
  }

  // ---- COPY / ADD ---------------------------------------------------------------------------

  private async planCopy(inst: Instruction, state: StageState, env: Map<string, string>, flags: Map<string, string | undefined>) {
    const isAdd = inst.keyword === 'ADD';
    const c = state.config.config!;
    const words = inst.json ?? this.at(inst, () => splitRawWords(inst.args, this.df.escape).map((w) => this.lex.processWord(w, env)));
    const heredocs = new Map(inst.heredocs.map((h) => [h.name, h]));
    if (words.length < 2) throw this.err(inst, `${inst.keyword} requires at least two arguments, but only one was provided. Destination could not be determined`);
    let dest = words[words.length - 1]!;
    const srcs = words.slice(0, -1);
    const workdir = c.WorkingDir || '/';
    const destAbs = path.posix.resolve(workdir, dest) + (dest.endsWith('/') || ((dest === '.' || dest === './') && true) ? '/' : '');
    dest = destAbs.replace(/\/+$/, '/') || '/';
    const from = flags.get('from') !== undefined ? this.lex.processWord(flags.get('from')!, env) : undefined;
    const chown = flags.get('chown') !== undefined ? this.lex.processWord(flags.get('chown')!, env) : undefined;
    const chmodText = flags.get('chmod');
    const chmod = chmodText !== undefined ? this.at(inst, () => parseChmod(chmodText)) : undefined;
    const checksum = flags.get('checksum');
    if (from !== undefined && isAdd) throw this.err(inst, 'ADD does not support --from; use COPY --from');

    // Sources and their content hashes, computed without touching the image.
    const inline: { name: string; content: string }[] = [];
    const urls: string[] = [];
    const gits: GitSource[] = [];
    const local: string[] = [];
    // A heredoc source is the word the parser opened it with (`<<$EOF` is not expanded first).
    const rawWords = inst.json ? [] : splitRawWords(inst.args, this.df.escape);
    for (const [i, s] of srcs.entries()) {
      const hd = inst.heredocs.find((h) => h.word === rawWords[i]) ?? (s.startsWith('<<') ? heredocs.get(s.replace(/^<<-?["']?|["']?$/g, '')) : undefined);
      if (hd) inline.push({ name: hd.name, content: hd.expand ? this.at(inst, () => expandHeredoc(this.lex, hd.content, env)) : hd.content });
      else if (isAdd && this.at(inst, () => parseGitSource(s))) gits.push(parseGitSource(s)!);
      else if (isAdd && /^https?:\/\//i.test(s)) urls.push(s);
      else local.push(s);
    }
    const keepGitDir = flags.has('keep-git-dir') && flags.get('keep-git-dir') !== 'false';
    const parents = flags.has('parents') && flags.get('parents') !== 'false';
    const excludes = inst.flags.filter((f) => f.name === 'exclude').map((f) => this.lex.processWord(f.value ?? '', env));
    const exclude = excludes.length ? this.at(inst, () => new PatternMatcher(excludes)) : undefined;
    const keyParts: unknown[] = [inst.keyword, dest, chown ?? '', chmod ?? '', flags.has('link'), inline, ...(parents ? ['parents'] : []), ...(excludes.length ? [['exclude', excludes]] : [])];
    let sourceTree: SourceTree | undefined;
    let release: (() => Promise<void>) | undefined;
    if (local.length) {
      if (from !== undefined) {
        const s = this.stageRef(from, Infinity);
        keyParts.push(['from', s ? this.stageResults.get(s.index)!.key : from, local]);
      } else {
        sourceTree = this.context;
        const entries = await this.at(inst, () => this.context.resolve(local, inst.keyword));
        keyParts.push(['context', local, await hashSources(this.context, entries)]);
      }
    }
    const downloads: { url: string; file: string; digest: string }[] = [];
    for (const url of urls) {
      const d = await this.download(inst, url, checksum);
      downloads.push(d);
      keyParts.push(['url', url, d.digest]);
    }
    const commits: string[] = [];
    for (const g of gits) {
      commits.push(await this.at(inst, () => resolveGitCommit(g)));
      keyParts.push(['git', g.url, commits[commits.length - 1], g.subdir ?? '', keepGitDir]);
    }
    const history = `${inst.keyword} ${[...inst.flags.filter((f) => f.name !== 'link').map((f) => (f.value === undefined ? `--${f.name}` : `--${f.name}=${f.value}`)), ...srcs, dest].join(' ')} # buildkit`;

    return {
      history,
      keyParts,
      execute: async () => {
        try {
          return await this.withRootfs(state, async (rootfs, _lowers, _upper, workDir) => {
            const { copyEntries, writeFileInRoot } = await import('./copy.js');
            const owner = chown ? await this.resolveChown(inst, rootfs, chown) : { uid: 0, gid: 0 };
            const copyOpts = { ...owner, chmod, extractArchives: isAdd, instruction: inst.keyword, parents, exclude };
            const many = srcs.length > 1;
            if (many && !dest.endsWith('/')) throw this.err(inst, `When using ${inst.keyword} with more than one source file, the destination must be a directory and end with a /`);
            if (local.length) {
              let tree = sourceTree;
              if (!tree) tree = await this.treeFor(inst, from!, workDir);
              const entries = await this.at(inst, () => tree!.resolve(local, inst.keyword));
              await this.at(inst, () => copyEntries(tree!, entries, rootfs, dest, copyOpts));
            }
            for (const [i, g] of gits.entries()) {
              const checkout = path.join(this.store.tmpDir, `git-${randomBytes(8).toString('hex')}`);
              try {
                const root = await this.at(inst, () => checkoutGit(g, commits[i]!, checkout, keepGitDir));
                const tree = new SourceTree(root, undefined, `git repository ${g.url}`);
                await this.at(inst, async () => copyEntries(tree, await tree.resolve(['.'], inst.keyword), rootfs, dest.endsWith('/') ? dest : `${dest}/`, { ...copyOpts, extractArchives: false }));
              } finally {
                await fsp.rm(checkout, { recursive: true, force: true });
              }
            }
            for (const h of inline) {
              const target = dest.endsWith('/') ? path.posix.join(dest, h.name) : dest;
              await writeFileInRoot(rootfs, target, h.content, 0o644, copyOpts);
            }
            for (const d of downloads) {
              const name = path.posix.basename(new URL(d.url).pathname) || 'index.html';
              const target = dest.endsWith('/') ? path.posix.join(dest, name) : dest;
              await writeFileInRoot(rootfs, target, (await import('node:fs')).createReadStream(d.file, { highWaterMark: STREAM_CHUNK }), 0o600, copyOpts);
            }
          });
        } finally {
          for (const d of downloads) await fsp.rm(d.file, { force: true });
          await release?.();
        }
      },
    };
  }

  private async resolveChown(inst: Instruction, rootfs: string, spec: string): Promise<{ uid: number; gid: number }> {
    const { resolveUser } = await import('../runtime/index.js');
    const [u, g] = spec.split(':', 2) as [string, string | undefined];
    const resolved = await resolveUser(rootfs, g === undefined ? u : `${u}:${g}`).catch((e: Error) => { throw this.err(inst, `--chown=${spec}: ${e.message}`); });
    // "--chown=user" without a group uses the user's UID as the GID, as Docker documents.
    return { uid: resolved.uid, gid: g === undefined ? resolved.uid : resolved.gid };
  }

  private async download(inst: Instruction, url: string, checksum: string | undefined): Promise<{ url: string; file: string; digest: string }> {
    const file = path.join(this.store.tmpDir, `add-${randomBytes(8).toString('hex')}`);
    // fetch follows redirects and streams the body; nothing is buffered whole.
    const res = await fetch(url, { redirect: 'follow' }).catch((e: Error) => { throw this.err(inst, `ADD ${url}: ${(e.cause as Error)?.message ?? e.message}`); });
    if (!res.ok || !res.body) {
      await res.body?.cancel();
      throw this.err(inst, `ADD ${url}: server answered ${res.status} ${res.statusText}`);
    }
    const digester = new Digester('sha256');
    const out = createWriteStream(file);
    try {
      await pipeline(Readable.fromWeb(res.body as import('node:stream/web').ReadableStream<Uint8Array>), async function* (src: AsyncIterable<Buffer>) { for await (const chunk of src) { digester.update(chunk); yield chunk; } }, out);
    } catch (e) {
      await discardStreamedFile(out, file);
      throw this.err(inst, `ADD ${url}: download failed: ${(e as Error).message}`);
    }
    const digest = digester.digest();
    if (checksum && checksum !== digest) {
      await fsp.rm(file, { force: true });
      throw this.err(inst, `ADD ${url}: checksum mismatch: expected ${checksum}, downloaded content is ${digest}`);
    }
    return { url, file, digest };
  }

  /** A read-only view of another stage's (or image's) rootfs, for COPY --from and bind mounts. */
  private async treeFor(inst: Instruction, from: string, workDir: string): Promise<SourceTree> {
    const s = this.stageRef(from, Infinity);
    let layers: CachedLayer[];
    let label: string;
    if (s) {
      layers = this.stageResults.get(s.index)!.layers;
      label = `stage ${s.name ?? s.index}`;
    } else {
      const img = await this.resolveBase(from, this.platform, inst);
      layers = img.manifest.layers.map((l, i) => ({ digest: l.digest, size: l.size, mediaType: l.mediaType, diffID: img.config.rootfs.diff_ids[i]! }));
      label = `image ${from}`;
    }
    const { ensureLayersUnpacked, mountRootfs } = await import('../runtime/index.js');
    await this.opts.remoteCache?.ensureLayers(layers);
    const lowers = await ensureLayersUnpacked(this.store, layers);
    const m = await mountRootfs({ lowerDirs: lowers, workDir: path.join(workDir, `from-${randomBytes(4).toString('hex')}`), volatile: true });
    this.cleanups.push(() => m.unmount());
    return new SourceTree(m.rootfs, undefined, label, true);
  }

  private cleanups: (() => Promise<void>)[] = [];

  /**
   * Mounts the parent's layers with a fresh upper dir, runs `fn`, and turns the upper dir into
   * a layer. Everything is unmounted and removed afterwards, also on failure.
   */
  private async withRootfs(state: StageState, fn: (rootfs: string, lowers: string[], upper: string, workDir: string) => Promise<void>): Promise<CachedLayer> {
    const { ensureLayersUnpacked, mountRootfs, adoptUnpackedLayer, createOwnedDir, scratchRoot } = await import('../runtime/index.js');
    const { createLayer } = await import('../layer/create.js');
    await this.opts.remoteCache?.ensureLayers(state.layers);
    const lowers = await ensureLayersUnpacked(this.store, state.layers);
    const workDir = path.join(scratchRoot(this.store.root), `step-${process.pid}-${randomBytes(6).toString('hex')}`);
    // Owned by this process: if it is killed, the next build, run or gc sweeps mounts and container.
    await createOwnedDir(workDir);
    let mounted: Awaited<ReturnType<typeof mountRootfs>> | undefined;
    // COPY --from sources first, then the step's own overlay; `mounted` clears only once unmounted.
    const unmountAll = async () => {
      for (const c of this.cleanups.splice(0)) await c().catch(() => {});
      await mounted?.unmount();
      mounted = undefined;
    };
    try {
      // volatile: the layer's durable form is its fsynced blob; the upper dir is at most a cache entry.
      mounted = await mountRootfs({ lowerDirs: lowers, workDir, volatile: true });
      await fn(mounted.rootfs, lowers, mounted.upperDir, workDir);
      if (this.interrupted) throw new UserError('build interrupted', 130);
      const layer = await createLayer(this.store, { dir: mounted.upperDir }, {
        overlayUpper: true, sourceDateEpoch: this.opts.sourceDateEpoch, compression: this.opts.compression,
      });
      // The upper dir is the new layer unpacked (overlay whiteouts and all): keep it as the layer
      // cache entry, so the next step mounts it instead of unpacking the blob just written. Not
      // with SOURCE_DATE_EPOCH, where the blob's clamped mtimes differ from the files'.
      if (this.opts.sourceDateEpoch === undefined) {
        const upper = mounted.upperDir;
        await unmountAll();
        await adoptUnpackedLayer(this.store, upper, layer.diffID);
      }
      return { digest: layer.digest, size: layer.size, mediaType: layer.mediaType, diffID: layer.diffID };
    } finally {
      await unmountAll().catch(() => {});
      await fsp.rm(workDir, { recursive: true, force: true }).catch(() => {});
    }
  }

  // ---- output -------------------------------------------------------------------------------

  private async finish(state: StageState): Promise<BuildResult> {
    const config: ImageConfig = { ...state.config, created: state.created };
    if (this.opts.labels && Object.keys(this.opts.labels).length) {
      config.config = { ...config.config, Labels: { ...(config.config?.Labels ?? {}), ...this.opts.labels } } as ContainerConfig;
    }
    // A remote cache hit's blob is fetched only now that the image needs it (and the inline cache joins the config).
    if (this.opts.remoteCache) {
      await this.opts.remoteCache.ensureLayers(state.layers);
      Object.assign(config, this.opts.remoteCache.finalImage(state.key, state.layers));
    }
    const written = await writeImage(this.store, { config, layers: state.layers });
    // Tags are set only when they move: a fully cached rebuild then writes nothing at all
    // (index.json's lock, write and fsyncs are the slowest part of a no-op build on a busy disk).
    const names = (this.opts.tags ?? []).map((t) => this.at(this.df.stages[0]!.from, () => canonicalName(t)));
    for (const n of names) {
      if ((await this.store.resolveTag(n))?.digest !== written.manifestDigest) await this.store.setTag(n, written.manifest);
    }
    // Untagged, it is kept like Docker's dangling images: listed as <none>, removed by rmi or image prune.
    if (names.length === 0) await this.store.setRoot(`built/${written.manifestDigest}`, [written.manifestDigest]);
    written.names = names;
    if (this.finalInst) this.log(` ---> ${shortId(written.configDigest)}\n`);
    this.log(`Successfully built ${shortId(written.configDigest)}\n`);
    for (const n of written.names) this.log(`Successfully tagged ${familiarString(parseReference(n))}\n`);
    return {
      imageId: written.configDigest, manifestDigest: written.manifestDigest, manifest: written.manifest, config,
      names: written.names, steps: this.steps, layers: state.layers,
    };
  }

  private warnUnusedArgs(): void {
    const unused = [...this.buildArgs.keys()].filter((k) => !this.usedArgs.has(k) && !PROXY_ARGS.has(k));
    if (unused.length) this.log(`[Warning] One or more build-args [${unused.join(' ')}] were not consumed\n`);
  }

  // ---- errors -------------------------------------------------------------------------------

  private err(inst: Instruction, message: string, cause?: unknown): DockerfileError {
    return new DockerfileError(this.df.file, inst.start, message, { cause });
  }

  private wrap(inst: Instruction, e: unknown): Error {
    if (e instanceof DockerfileError) return e;
    if (e instanceof UserError || e instanceof ExpansionError) return this.err(inst, e.message, e);
    return e as Error;
  }

  /** Runs `fn`, turning its user-facing errors into errors that name the instruction's position. */
  private at<T>(inst: Instruction, fn: () => T): T {
    try {
      const r = fn();
      if (r instanceof Promise) return r.catch((e) => { throw this.wrap(inst, e); }) as T;
      return r;
    } catch (e) {
      throw this.wrap(inst, e);
    }
  }
}

function expandHeredoc(lex: Lexer, content: string, env: Map<string, string>): string {
  // Heredoc bodies expand variables but keep quotes: expand line by line through a double-quoted
  // context so quote characters survive.
  return content.split('\n').map((line) => line.replace(/\$(\{[^}]*\}|[A-Za-z_][A-Za-z0-9_]*)/g, (m) => lex.processWord(m, env))).join('\n');
}

export { expandOrThrow };
