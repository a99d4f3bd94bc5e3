// The builder, wired: Dockerfile → stages → build graph (graph.ts, nothing executed) → solver
// (solver.ts: cache, concurrent execution, snapshots) → exporters (export.ts: the image in the
// store, --output) for one platform. Options and shared state live in session.ts; several
// platforms at once are platforms.ts, and index.ts picks between the two.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parseDockerfile, splitStages, type DockerfileWarning } from '../dockerfile/index.js';
import { ContentStore } from '../store/content-store.js';
import type { Descriptor, ImageConfig } from '../image/types.js';
import { UserError } from '../util/errors.js';
import { sha256Hex } from '../util/sha256.js';
import { span, traced } from '../util/trace.js';
import { BuildCache, type CachedLayer } from './cache.js';
import { SourceTree, HashCache } from './context.js';
import { planBuild, type BuildGraph } from './graph.js';
import { Solver, type StepReport } from './solver.js';
import { exportImage, exportOutput, exportStepImages } from './export.js';
import { describePlan, type PlanDocument } from './plan-output.js';
import { BuildSession, PROXY_ARGS, type BuildOptions } from './session.js';

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

/** One platform's build (platforms.ts runs several of these at once for `--platform a,b`). */
export async function buildPlatform(opts: BuildOptions): Promise<BuildResult> {
  if (opts.platform?.includes(',')) throw new UserError('several platforms build through buildPlatforms');
  const s = await traced('build.open', () => openSession(opts));
  try {
    const graph = await traced('build.plan', () => planBuild(s));
    const solver = new Solver(s, graph);
    // Ctrl-C: runc gets the signal (runOnce forwards it), the running steps fail, their mounts
    // and work dirs are cleaned up, and no further step starts.
    const onSignal = () => { s.interrupted = true; };
    const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
    for (const sig of signals) process.on(sig, onSignal);
    let state;
    try {
      state = await traced('build.solve', () => solver.solve());
    } catch (e) {
      await solver.flush().catch(() => {});
      if (s.interrupted) throw new UserError('build interrupted', 130);
      throw e;
    } finally {
      for (const sig of signals) process.off(sig, onSignal);
    }
    warnUnusedArgs(s);
    // The image, the steps' images, the cache entries, the snapshots' move into the layer cache
    // and the context's hash cache are independent writes: together, their fsyncs overlap (and
    // the image's begin while the last layer still compresses). The first failure is reported
    // once all have settled. The platforms of one build share the context: platforms.ts saves
    // its hash cache once for all.
    const endExport = span('build.export');
    const settled = await Promise.allSettled([
      exportImage(s, graph, solver, state), exportStepImages(s, solver), solver.flush(), solver.adopted(),
      opts.shared ? undefined : s.context.hashCache?.save(),
    ]);
    // The steps' blobs too are durable when the build returns (their roots and the cache are not).
    await s.store.syncBlobDirs();
    endExport();
    for (const r of settled) if (r.status === 'rejected') throw r.reason;
    const exported = settled[0];
    const image = (exported as PromiseFulfilledResult<Awaited<ReturnType<typeof exportImage>>>).value;
    if (opts.output) await exportOutput(s.store, opts.output, [image], undefined, image.names[0]);
    return { ...image, steps: solver.steps };
  } finally {
    await s.removeTempFiles();
  }
}

/** The build graph with each vertex's cache status, computed without executing anything. */
export async function planPlatform(opts: BuildOptions): Promise<{ graph: BuildGraph; document: PlanDocument }> {
  if (opts.platform?.includes(',')) throw new UserError('several platforms have one graph each: use planPlatforms');
  const s = await openSession(opts);
  try {
    const graph = await planBuild(s);
    return { graph, document: await describePlan(s, graph) };
  } finally {
    await s.removeTempFiles();
  }
}

/** The build context with its stat-keyed hash cache. */
export async function openContext(opts: BuildOptions, store: ContentStore): Promise<SourceTree> {
  const dfPath = opts.dockerfile ?? path.join(opts.context, 'Dockerfile');
  const context = await SourceTree.openContext(opts.context, opts.dockerfileText === undefined ? dfPath : undefined);
  context.hashCache = await HashCache.load(path.join(store.root, 'cache', 'context', `${sha256Hex(context.root).slice(0, 32)}.json`));
  return context;
}

async function openSession(opts: BuildOptions): Promise<BuildSession> {
  const store = opts.store ?? (await ContentStore.open());
  // One fsync of blobs/sha256 before the tag for the last layer, the config and the manifest.
  store.deferBlobDirSyncs = true;
  // Steps of builds killed before they could clean up (their runc containers and mounts); a
  // multi-platform build sweeps once, before its platforms start. The
  // scratch dir (runtime's scratchRoot) is empty after every build that finished, and then the
  // runtime, a third of the code a cached build would load, is not loaded at all.
  if (!opts.shared && readdirOrEmpty(path.join(store.root, 'builder')).length) {
    const { sweepOrphans, scratchRoot } = await import('../runtime/index.js');
    await sweepOrphans(scratchRoot(store.root));
  }
  const dfPath = opts.dockerfile ?? path.join(opts.context, 'Dockerfile');
  let text = opts.dockerfileText;
  if (text === undefined) {
    // Synchronous, like the other small reads before the first step (context.ts).
    try {
      text = readFileSync(dfPath, 'utf8');
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      throw new UserError(e.code === 'ENOENT' ? `failed to read Dockerfile: open ${dfPath}: no such file or directory` : `failed to read Dockerfile ${dfPath}: ${e.message}`);
    }
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

function readdirOrEmpty(dir: string): string[] {
  try { return readdirSync(dir); } catch { return []; }
}

function warnUnusedArgs(s: BuildSession): void {
  const unused = [...s.buildArgs.keys()].filter((k) => !s.usedArgs.has(k) && !PROXY_ARGS.has(k));
  if (unused.length) s.log(`[Warning] One or more build-args [${unused.join(' ')}] were not consumed\n`);
}
