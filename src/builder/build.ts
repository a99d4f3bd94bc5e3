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
import { Solver, type StepReport } from './solver.js';
import { exportImage, exportArchive, exportStepImages } from './export.js';
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
    await s.context.hashCache?.save();
    warnUnusedArgs(s);
    const image = await exportImage(s, graph, solver, state);
    await exportStepImages(s, solver);
    await solver.flush();
    if (opts.output) await exportArchive(s, image, opts.output);
    return { ...image, steps: solver.steps };
  } finally {
    await s.removeTempFiles();
  }
}

/**
 * `--platform a,b`: one single-platform build per platform (each with its own TARGET* args, base
 * and cache keys), then an OCI image index over their manifests, tagged like a single image.
 */
async function buildPlatforms(opts: BuildOptions): Promise<BuildResult> {
  const platforms = [...new Set(opts.platform!.split(',').map((p) => p.trim()).filter(Boolean))];
  for (const p of platforms) {
    try { parsePlatform(p); } catch (e) { throw new UserError((e as Error).message); }
  }
  if (opts.output) throw new UserError('--output with several platforms is not supported yet: build one --platform at a time');
  const store = opts.store ?? (await ContentStore.open());
  const names = (opts.tags ?? []).map((t) => canonicalName(t));
  const results: BuildResult[] = [];
  for (const platform of platforms) {
    opts.progress?.write(`#platform ${formatPlatform(parsePlatform(platform))}\n`);
    results.push(await build({ ...opts, store, platform, tags: [], output: undefined }));
  }
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
  const first = results[0]!;
  return {
    // As with an image index in containerd's store, the index digest is the ID (--iidfile, -q).
    ...first, imageId: descriptor.digest, manifestDigest: descriptor.digest, manifest: descriptor, names,
    steps: results.flatMap((r) => r.steps), platforms: results,
  };
}

/** The build graph with each vertex's cache status, computed without executing anything. */
export async function plan(opts: BuildOptions): Promise<{ graph: BuildGraph; document: PlanDocument }> {
  if (opts.platform?.includes(',')) throw new UserError('--print-plan takes one --platform (each platform has its own graph)');
  const s = await openSession(opts);
  try {
    const graph = await planBuild(s);
    return { graph, document: await describePlan(s, graph) };
  } finally {
    await s.removeTempFiles();
  }
}

async function openSession(opts: BuildOptions): Promise<BuildSession> {
  const store = opts.store ?? (await ContentStore.open());
  // Steps of builds killed before they could clean up (their runc containers and mounts). The
  // scratch dir (runtime's scratchRoot) is empty after every build that finished, and then the
  // runtime, a third of the code a cached build would load, is not loaded at all.
  if ((await fsp.readdir(path.join(store.root, 'builder')).catch(() => [])).length) {
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
  const context = await SourceTree.openContext(opts.context, opts.dockerfileText === undefined ? dfPath : undefined);
  context.hashCache = await HashCache.load(path.join(store.root, 'cache', 'context', `${createHash('sha256').update(context.root).digest('hex').slice(0, 32)}.json`));
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
