// The builder: Dockerfile stages → build graph (graph.ts) → solver (solver.ts) → exporters (export.ts).
import { buildPlatform, planPlatform, type BuildOptions, type BuildResult } from './build.js';
import { buildPlatforms } from './platforms.js';
import { buildStarted, buildEnded } from './snapshot-worker.js';

export { type BuildOptions, type BuildResult, type StepReport } from './build.js';
export { planPlatforms } from './platforms.js';

/** `drydock build`: one platform, or `--platform a,b` as several at once under an image index. */
export async function build(opts: BuildOptions): Promise<BuildResult> {
  // The snapshot worker thread (started by the first snapshot) is closed when the last build of
  // the process ends, so a CLI build exits as soon as its image is written.
  buildStarted();
  try {
    return await (opts.platform?.includes(',') ? buildPlatforms(opts) : buildPlatform(opts));
  } finally {
    await buildEnded();
  }
}

/** The build graph of one platform with each vertex's cache status, nothing executed. */
export const plan = planPlatform;
export { formatPlan, formatPlatformsPlan, type PlatformsPlanDocument, type PlanDocument, type PlanVertex, type PlanEdge } from './plan-output.js';
export { BuildCache, stepKey, type CacheEntry, type CachedLayer } from './cache.js';
export { SourceTree, hashSources } from './context.js';
