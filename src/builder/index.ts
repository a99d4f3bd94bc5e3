// The builder: Dockerfile stages → build graph → execution with cache (see build.ts).
export { build, type BuildOptions, type BuildResult, type StepReport } from './build.js';
export { BuildCache, stepKey, type CacheEntry, type CachedLayer } from './cache.js';
export { SourceTree, hashSources } from './context.js';
