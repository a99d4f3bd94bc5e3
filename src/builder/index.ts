// The builder: Dockerfile stages → build graph (graph.ts) → solver (solver.ts) → exporters (export.ts).
import { buildPlatform, planPlatform, type BuildOptions, type BuildResult } from './build.js';
import { buildPlatforms } from './platforms.js';

export { type BuildOptions, type BuildResult, type StepReport } from './build.js';
export { planPlatforms } from './platforms.js';

/** `drydock build`: one platform, or `--platform a,b` as several at once under an image index. */
export function build(opts: BuildOptions): Promise<BuildResult> {
  return opts.platform?.includes(',') ? buildPlatforms(opts) : buildPlatform(opts);
}

/** The build graph of one platform with each vertex's cache status, nothing executed. */
export const plan = planPlatform;
export { formatPlan, formatPlatformsPlan, type PlatformsPlanDocument, type PlanDocument, type PlanVertex, type PlanEdge } from './plan-output.js';
export { BuildCache, stepKey, type CacheEntry, type CachedLayer } from './cache.js';
export { SourceTree, hashSources } from './context.js';
