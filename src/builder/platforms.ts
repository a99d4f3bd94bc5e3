// `--platform a,b`: the platforms build (or, for --print-plan, are planned) at the same time, each
// an ordinary single-platform build through build.ts, sharing what BuildKit shares between
// platforms (session.ts SharedWork); then an OCI image index over their images.
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ContentStore } from '../store/content-store.js';
import type { Descriptor, ImageIndex } from '../image/types.js';
import { MediaType } from '../image/media-types.js';
import { formatPlatform, parsePlatform } from '../image/platform.js';
import { shortId } from '../image/digest.js';
import { parseReference, familiarString } from '../image/reference.js';
import { canonicalName } from '../store/images.js';
import { UserError } from '../util/errors.js';
import { limiter } from './solver.js';
import { exportOutput, checkOutput } from './export.js';
import { sharedPlan, type PlatformsPlanDocument } from './plan-output.js';
import type { BuildOptions, SharedWork } from './session.js';
import { buildPlatform, planPlatform, openContext, type BuildResult } from './build.js';

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
    failed: new AbortController(),
  };
}

/**
 * `--platform a,b`: the platforms build at the same time, each a single-platform build (its own
 * TARGET* args, base and cache keys) sharing the context, the op limit and any step whose key
 * is the same for all of them (solver.ts, session.ts SharedWork). Then an OCI image index over
 * their manifests, tagged like a single image. Progress lines carry the platform.
 */
export async function buildPlatforms(opts: BuildOptions): Promise<BuildResult> {
  const platforms = platformList(opts.platform!);
  if (opts.output) checkOutput(opts.output, platforms.length);
  const store = opts.store ?? (await ContentStore.open());
  const names = (opts.tags ?? []).map((t) => canonicalName(t));
  if ((await fsp.readdir(path.join(store.root, 'builder')).catch(() => [])).length) {
    const { sweepOrphans, scratchRoot } = await import('../runtime/index.js');
    await sweepOrphans(scratchRoot(store.root));
  }
  const shared = sharedWork(opts, store);
  const { PrefixedLines } = opts.progress ? await import('./step-output.js') : { PrefixedLines: undefined };
  const outs = platforms.map((p) => (opts.progress && PrefixedLines ? new PrefixedLines(opts.progress, `[${p}] `) : undefined));
  // The first platform to fail cancels the others (shared.failed): no step starts, running RUN
  // containers are killed, and its error is the build's, as BuildKit reports it.
  const settled = await Promise.allSettled(platforms.map((platform, i) =>
    buildPlatform({ ...opts, store, platform, tags: [], output: undefined, progress: outs[i], shared })
      .catch((e: unknown) => { if (!shared.failed.signal.aborted) shared.failed.abort(e); throw e; })));
  for (const o of outs) o?.end();
  await (await shared.context.catch(() => undefined))?.hashCache.save();
  if (shared.failed.signal.aborted) {
    // A platform that finished first leaves no image behind either.
    for (const r of settled) if (r.status === 'fulfilled') await store.removeRoot(`built/${r.value.manifestDigest}`);
    throw shared.failed.signal.reason;
  }
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

/**
 * `--print-plan --platform a,b`: each platform's graph (planned at once, sharing the context),
 * with the vertices whose key is in more than one platform's graph marked shared: the solver
 * runs those once for all of them.
 */
export async function planPlatforms(opts: BuildOptions): Promise<PlatformsPlanDocument> {
  const platforms = platformList(opts.platform!);
  const store = opts.store ?? (await ContentStore.open());
  const shared = sharedWork(opts, store);
  const docs = await Promise.all(platforms.map(async (platform) => (await planPlatform({ ...opts, store, platform, shared, progress: undefined })).document));
  return sharedPlan(platforms, docs);
}

