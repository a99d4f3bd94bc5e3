// The builder, wired: Dockerfile → stages → build graph (graph.ts, nothing executed) → solver
// (solver.ts: cache, concurrent execution, snapshots) → exporters (export.ts: the image in the
// store, --output archives). Options and shared state live in session.ts.
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { parseDockerfile, splitStages, type DockerfileWarning } from '../dockerfile/index.js';
import { ContentStore } from '../store/content-store.js';
import type { Descriptor, ImageConfig, ImageIndex } from '../image/types.js';
import { MediaType } from '../image/media-types.js';
import { formatPlatform, parsePlatform } from '../image/platform.js';
import { shortId } from '../image/digest.js';
import { parseReference, familiarString } from '../image/reference.js';
import { canonicalName } from '../store/images.js';
import { UserError } from '../util/errors.js';
import { BuildCache, type CachedLayer } from './cache.js';
import { SourceTree, HashCache } from './context.js';
import { planBuild, type BuildGraph } from './graph.js';
import { Solver, PrefixedLines, limiter, type StepReport } from './solver.js';
import { exportImage, exportOutput, exportStepImages, checkOutput } from './export.js';
import { describePlan, sharedPlan, type PlanDocument, type PlatformsPlanDocument } from './plan-output.js';
import os from 'node:os';
import { BuildSession, PROXY_ARGS, type BuildOptions, type SharedWork } from './session.js';

export type { BuildOptions } from './session.js';
export type { StepReport } from './solver.js';

export interface BuildResult {
  /** The image ID (config digest), like `docker build`. */
  imageId: string;
  manifestDigest: string;
  manifest: Descriptor;
  config: ImageConfig;
  names: string[];
  steps: StepReport[];
  layers: CachedLayer[];
  /** With several platforms: each one's image; then manifest is the index over them. */
  platforms?: BuildResult[];
}

export async function build(opts: BuildOptions): Promise<BuildResult> {
  if (opts.platform?.includes(',')) return buildPlatforms(opts);
  const s = await openSession(opts);
  try {
    const graph = await planBuild(s);
    const solver = new Solver(s, graph);
    // Ctrl-C: runc gets the signal (runOnce forwards it), the running steps fail, their mounts
    // and work dirs are cleaned up, and no further step starts.
    const onSignal = () => { s.interrupted = true; };
    const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
    for (const sig of signals) process.on(sig, onSignal);
    let state;
    try {
      state = await solver.solve();
    } catch (e) {
      await solver.flush().catch(() => {});
      if (s.interrupted) throw new UserError('build interrupted', 130);
      throw e;
    } finally {
      for (const sig of signals) process.off(sig, onSignal);
    }
    // The platforms of one build share the context; build.ts saves its hash cache once for all.
    if (!opts.shared) await s.context.hashCache?.save();
    warnUnusedArgs(s);
    // The image, the steps' images and the cache entries are independent writes: together, their
    // fsyncs overlap. The first failure is reported once all have settled.
    const [exported, steps, puts] = await Promise.allSettled([exportImage(s, graph, solver, state), exportStepImages(s, solver), solver.flush()]);
    for (const r of [exported, steps, puts]) if (r.status === 'rejected') throw r.reason;
    const image = (exported as PromiseFulfilledResult<Awaited<ReturnType<typeof exportImage>>>).value;
    if (opts.output) await exportOutput(s.store, opts.output, [image], undefined, image.names[0]);
    return { ...image, steps: solver.steps };
  } finally {
    await s.removeTempFiles();
  }
}

/** The platforms of `--platform a,b`, validated, duplicates dropped, in the order given. */
function platformList(spec: string): string[] {
  const platforms = [...new Set(spec.split(',').map((p) => p.trim()).filter(Boolean))];
  for (const p of platforms) {
    try { parsePlatform(p); } catch (e) { throw new UserError((e as Error).message); }
  }
  return platforms.map((p) => formatPlatform(parsePlatform(p)));
}

/** Work the platforms share: the context opened once, one op limit, executed steps by key. */
function sharedWork(opts: BuildOptions, store: ContentStore): SharedWork {
  const context = openContext(opts, store);
  context.catch(() => { /* each platform's session reports it */ });
  return {
    context,
    limit: limiter(opts.parallelism ?? Math.max(2, os.availableParallelism?.() ?? os.cpus().length)),
    steps: new Map(),
  };
}

/**
 * `--platform a,b`: the platforms build at the same time, each a single-platform build (its own
 * TARGET* args, base and cache keys) sharing the context, the op limit and any step whose key
 * is the same for all of them (solver.ts, session.ts SharedWork). Then an OCI image index over
 * their manifests, tagged like a single image. Progress lines carry the platform.
 */
async function buildPlatforms(opts: BuildOptions): Promise<BuildResult> {
  const platforms = platformList(opts.platform!);
  if (opts.output) checkOutput(opts.output, platforms.length);
  const store = opts.store ?? (await ContentStore.open());
  const names = (opts.tags ?? []).map((t) => canonicalName(t));
  if ((await fsp.readdir(path.join(store.root, 'builder')).catch(() => [])).length) {
    const { sweepOrphans, scratchRoot } = await import('../runtime/index.js');
    await sweepOrphans(scratchRoot(store.root));
  }
  const shared = sharedWork(opts, store);
  const outs = platforms.map((p) => (opts.progress ? new PrefixedLines(opts.progress, `[${p}] `) : undefined));
  const settled = await Promise.allSettled(platforms.map((platform, i) =>
    build({ ...opts, store, platform, tags: [], output: undefined, progress: outs[i], shared })));
  for (const o of outs) o?.end();
  await (await shared.context.catch(() => undefined))?.hashCache.save();
  const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
  const results = settled.map((r) => (r as PromiseFulfilledResult<BuildResult>).value);
  const index: ImageIndex = {
    schemaVersion: 2,
    mediaType: MediaType.OciIndex,
    manifests: results.map((r) => ({ ...r.manifest, platform: { os: r.config.os, architecture: r.config.architecture, ...(r.config.variant ? { variant: r.config.variant } : {}) } })),
  };
  const written = await store.writeJson(index, MediaType.OciIndex);
  const descriptor: Descriptor = { mediaType: MediaType.OciIndex, digest: written.digest, size: written.size };
  for (const n of names) await store.setTag(n, descriptor);
  if (names.length === 0) await store.setRoot(`built/${descriptor.digest}`, [descriptor.digest]);
  // The index (tag or root) now keeps the per-platform manifests; their own dangling roots go.
  for (const r of results) await store.removeRoot(`built/${r.manifestDigest}`);
  opts.progress?.write(`Successfully built index ${shortId(descriptor.digest)} (${platforms.join(', ')})\n`);
  for (const n of names) opts.progress?.write(`Successfully tagged ${familiarString(parseReference(n))}\n`);
  if (opts.output) await exportOutput(store, opts.output, results, descriptor, names[0]);
  const first = results[0]!;
  return {
    // As with an image index in containerd's store, the index digest is the ID (--iidfile, -q).
    ...first, imageId: descriptor.digest, manifestDigest: descriptor.digest, manifest: descriptor, names,
    steps: results.flatMap((r) => r.steps), platforms: results,
  };
}

/** The build graph with each vertex's cache status, computed without executing anything. */
export async function plan(opts: BuildOptions): Promise<{ graph: BuildGraph; document: PlanDocument }> {
  if (opts.platform?.includes(',')) throw new UserError('several platforms have one graph each: use planPlatforms');
  const s = await openSession(opts);
  try {
    const graph = await planBuild(s);
    return { graph, document: await describePlan(s, graph) };
  } finally {
    await s.removeTempFiles();
  }
}

/**
 * `--print-plan --platform a,b`: each platform's graph (planned at once, sharing the context),
 * with the vertices whose key is in more than one platform's graph marked shared: the solver
 * runs those once for all of them.
 */
export async function planPlatforms(opts: BuildOptions): Promise<PlatformsPlanDocument> {
  const platforms = platformList(opts.platform!);
  const store = opts.store ?? (await ContentStore.open());
  const shared = sharedWork(opts, store);
  const docs = await Promise.all(platforms.map(async (platform) => (await plan({ ...opts, store, platform, shared, progress: undefined })).document));
  return sharedPlan(platforms, docs);
}

/** The build context with its stat-keyed hash cache. */
async function openContext(opts: BuildOptions, store: ContentStore): Promise<SourceTree> {
  const dfPath = opts.dockerfile ?? path.join(opts.context, 'Dockerfile');
  const context = await SourceTree.openContext(opts.context, opts.dockerfileText === undefined ? dfPath : undefined);
  context.hashCache = await HashCache.load(path.join(store.root, 'cache', 'context', `${createHash('sha256').update(context.root).digest('hex').slice(0, 32)}.json`));
  return context;
}

async function openSession(opts: BuildOptions): Promise<BuildSession> {
  const store = opts.store ?? (await ContentStore.open());
  // Steps of builds killed before they could clean up (their runc containers and mounts); a
  // multi-platform build sweeps once, before its platforms start. The
  // scratch dir (runtime's scratchRoot) is empty after every build that finished, and then the
  // runtime, a third of the code a cached build would load, is not loaded at all.
  if (!opts.shared && (await fsp.readdir(path.join(store.root, 'builder')).catch(() => [])).length) {
    const { sweepOrphans, scratchRoot } = await import('../runtime/index.js');
    await sweepOrphans(scratchRoot(store.root));
  }
  const dfPath = opts.dockerfile ?? path.join(opts.context, 'Dockerfile');
  let text = opts.dockerfileText;
  if (text === undefined) {
    text = await fsp.readFile(dfPath, 'utf8').catch((e: NodeJS.ErrnoException) => {
      throw new UserError(e.code === 'ENOENT' ? `failed to read Dockerfile: open ${dfPath}: no such file or directory` : `failed to read Dockerfile ${dfPath}: ${e.message}`);
    });
  }
  const file = opts.dockerfileText !== undefined ? 'Dockerfile' : path.basename(dfPath);
  const parsed = parseDockerfile(text, { file });
  const df = splitStages(parsed);
  const context = await (opts.shared?.context ?? openContext(opts, store));
  const s = new BuildSession(opts, store, new BuildCache(store), df, context);
  if (parsed.directives.syntax !== undefined) {
    s.log(`# syntax=${parsed.directives.syntax}: using drydock's built-in Dockerfile frontend (the frontend image is not pulled)\n`);
  }
  printWarnings(s, parsed.warnings);
  return s;
}

/** BuildKit's lint warnings, once per build, before the first step. */
function printWarnings(s: BuildSession, warnings: DockerfileWarning[]): void {
  if (warnings.length === 0) return;
  s.log(`${warnings.length} warning${warnings.length === 1 ? '' : 's'} found:\n`);
  for (const w of warnings) s.log(` - ${w.rule}: ${w.message} (line ${w.line})\n`);
}

function warnUnusedArgs(s: BuildSession): void {
  const unused = [...s.buildArgs.keys()].filter((k) => !s.usedArgs.has(k) && !PROXY_ARGS.has(k));
  if (unused.length) s.log(`[Warning] One or more build-args [${unused.join(' ')}] were not consumed\n`);
}
