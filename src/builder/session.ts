// What every part of one build shares: the options, the store and cache, the parsed Dockerfile
// and its lexer, the build args (and which were used), the progress output, and the helpers
// that turn errors into Dockerfile:line:column errors. The planner (graph.ts), the ops
// (ops/*.ts), the solver and the exporter all read it; none of them owns it.
import { promises as fsp } from 'node:fs';
import type { Writable } from 'node:stream';
import {
  DockerfileError, ExpansionError, Lexer, type Instruction, type Stage, type StagedDockerfile,
} from '../dockerfile/index.js';
import type { ContentStore } from '../store/content-store.js';
import { resolveImage, type LocalImage } from '../store/images.js';
import { hostPlatform, parsePlatform, formatPlatform } from '../image/platform.js';
import type { Platform } from '../image/types.js';
import type { Compression } from '../image/media-types.js';
import { NotFoundError, UserError } from '../util/errors.js';
import type { BuildCache } from './cache.js';
import type { SourceTree } from './context.js';
import type { StepCacheHooks } from './remote-cache/index.js';
import type { BuildLayer } from './vertex.js';

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
  /** --output: also write the image as an archive (export.ts). */
  output?: OutputSpec;
  /** How many steps execute at once (default: the core count, at least 2). */
  parallelism?: number;
  store?: ContentStore;
  /** --cache-from/--cache-to (remote-cache/): asked after a local miss, told every step. */
  remoteCache?: StepCacheHooks;
  /** Set by build.ts for the platforms of one `--platform a,b` build, which run at once. */
  shared?: SharedWork;
}

/**
 * What the concurrent per-platform builds of one `--platform a,b` build share, as BuildKit
 * shares vertices between platforms: the context (opened once, its files hashed once), one op
 * limit for the machine, and executed steps by cache key. Keys chain everything a step depends
 * on, so two platforms with the same key (a `FROM --platform=$BUILDPLATFORM` stage, or any step
 * that does not depend on the target) would compute the same thing: the second waits for the
 * first's result instead of running it again.
 */
export interface SharedWork {
  context: Promise<SourceTree>;
  limit: <T>(task: () => Promise<T>) => Promise<T>;
  steps: Map<string, Promise<SharedStep>>;
  /**
   * Aborted with the first platform's failure, as BuildKit cancels the other platforms' vertices:
   * they start no further step and their running RUN containers are killed (solver.ts).
   */
  failed: AbortController;
}

export interface SharedStep {
  layer?: BuildLayer;
  created: string;
  /** The platform whose solver ran it, for the progress line. */
  platform: string;
}

/** Build args that every build accepts without an ARG and that never enter cache keys or history. */
export const PROXY_ARGS = new Set(['HTTP_PROXY', 'http_proxy', 'HTTPS_PROXY', 'https_proxy', 'FTP_PROXY', 'ftp_proxy', 'NO_PROXY', 'no_proxy', 'ALL_PROXY', 'all_proxy']);

export class BuildSession {
  readonly out: Writable | undefined;
  readonly platform: Platform;
  readonly buildArgs: Map<string, string>;
  readonly usedArgs = new Set<string>();
  globalArgs = new Map<string, string>();
  readonly stamp: string;
  readonly lex: Lexer;
  /** Set by a signal: running steps fail and no new step starts. */
  interrupted = false;
  /** Files the planner downloaded (ADD URLs); removed when the build ends. */
  readonly tempFiles: string[] = [];

  constructor(
    readonly opts: BuildOptions,
    readonly store: ContentStore,
    readonly cache: BuildCache,
    readonly df: StagedDockerfile,
    readonly context: SourceTree,
  ) {
    this.out = opts.progress;
    this.platform = opts.platform ? parsePlatform(opts.platform) : hostPlatform();
    this.buildArgs = new Map(Object.entries(opts.buildArgs ?? {}));
    this.stamp = opts.sourceDateEpoch !== undefined ? new Date(opts.sourceDateEpoch * 1000).toISOString() : new Date().toISOString();
    this.lex = new Lexer(df.escape);
  }

  log(s: string): void { this.out?.write(s); }

  /** Resolves "name" or "0" to a stage defined before `before`. */
  stageRef(ref: string, before: number): Stage | undefined {
    const lower = ref.toLowerCase();
    const named = this.df.stages.find((s) => s.name === lower && s.index < before);
    if (named) return named;
    if (/^\d+$/.test(ref) && Number(ref) < before) return this.df.stages[Number(ref)];
    return undefined;
  }

  async resolveBase(name: string, platform: Platform, inst: Instruction): Promise<LocalImage> {
    if (!this.opts.pull) {
      let image: LocalImage | undefined;
      try {
        image = await resolveImage(this.store, name, platform);
      } catch (e) {
        if (!(e instanceof NotFoundError)) throw this.wrap(inst, e);
        // The image is here, as an index without this platform: pulling it again would not help.
        if (/has no manifest for/.test(e.message)) throw this.err(inst, `base image "${name}": no match for platform ${formatPlatform(platform)}: ${e.message}`);
      }
      if (image) {
        // A single-platform image for another platform than the one asked for (--platform, one
        // of a multi-platform build's) would build a mislabelled image: refuse it, as Docker does.
        const c = image.config;
        if (this.opts.platform && c.architecture && (c.architecture !== platform.architecture || (c.os ?? 'linux') !== platform.os)) {
          throw this.err(inst, `image with reference ${name} was found but does not match the specified platform: wanted ${formatPlatform(platform)}, actual: ${formatPlatform({ os: c.os ?? 'linux', architecture: c.architecture, ...(c.variant ? { variant: c.variant } : {}) })}`);
        }
        return image;
      }
    }
    // With a remote cache, only the manifest and config: the layers may never be needed.
    const lazy = await this.opts.remoteCache?.resolveBase(name, platform).catch(() => undefined);
    if (lazy) return lazy;
    // Not in the store (or --pull): fetch it with the registry client, honouring auth and mirrors.
    const { pullImage } = await import('../client/index.js');
    this.log(`Pulling ${name} (${formatPlatform(platform)})...\n`);
    try {
      return await pullImage(this.store, name, { platform, pullPolicy: this.opts.pull ? 'always' : 'missing' });
    } catch (e) {
      throw this.err(inst, `base image "${name}" not found locally and could not be pulled (${(e as Error).message}); run drydock pull ${name}, or create it with drydock import/mkimage`);
    }
  }

  async removeTempFiles(): Promise<void> {
    for (const f of this.tempFiles.splice(0)) await fsp.rm(f, { force: true });
  }

  // ---- errors -------------------------------------------------------------------------------

  err(inst: Instruction, message: string, cause?: unknown): DockerfileError {
    return new DockerfileError(this.df.file, inst.start, message, { cause });
  }

  wrap(inst: Instruction, e: unknown): Error {
    if (e instanceof DockerfileError) return e;
    if (e instanceof UserError || e instanceof ExpansionError) return this.err(inst, e.message, e);
    return e as Error;
  }

  /** Runs `fn`, turning its user-facing errors into errors that name the instruction's position. */
  at<T>(inst: Instruction, fn: () => T): T {
    try {
      const r = fn();
      if (r instanceof Promise) return r.catch((e) => { throw this.wrap(inst, e); }) as T;
      return r;
    } catch (e) {
      throw this.wrap(inst, e);
    }
  }
}

/** `--output`: BuildKit's exporters. `platformSplit` (local only) defaults to "several platforms". */
export interface OutputSpec {
  type: 'oci' | 'docker' | 'local' | 'tar';
  /** A file (oci, docker, tar; "-" is stdout for tar) or a directory (local). */
  dest: string;
  platformSplit?: boolean;
}
