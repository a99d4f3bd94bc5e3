// --cache-from / --cache-to (see remote-cache.ts): flags, BuildKit's cache format, the hooks.
export { RemoteCache, type StepCacheHooks, type SolvedStep, type LayerOrigin, type RemoteCacheOptions } from './remote-cache.js';
export { parseCacheTo, parseCacheFrom, csvFields, type CacheExportSpec, type CacheImportSpec, type CacheMode } from './options.js';
export * from './format.js';
