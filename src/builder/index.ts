// The builder: Dockerfile stages → build graph (graph.ts) → solver (solver.ts) → exporters (export.ts).
export { build, plan, planPlatforms, type BuildOptions, type BuildResult, type StepReport } from './build.js';
export { formatPlan, formatPlatformsPlan, type PlatformsPlanDocument, type PlanDocument, type PlanVertex, type PlanEdge } from './plan-output.js';
export { BuildCache, stepKey, type CacheEntry, type CachedLayer } from './cache.js';
export { SourceTree, hashSources } from './context.js';
