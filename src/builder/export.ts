// Exporters: what a solved target becomes. The image exporter waits for the target's blobs
// (compressed in parallel from the snapshots, see solver.ts), writes config and manifest into
// the store and moves the tags; the archive exporter (--output) writes it with `drydock save`'s
// writers. A new exporter (registry, local dir) is one more function here.
import type { Descriptor, ImageConfig, ContainerConfig } from '../image/types.js';
import { canonicalName } from '../store/images.js';
import { writeImage } from '../store/write-image.js';
import { shortId } from '../image/digest.js';
import { parseReference, familiarString } from '../image/reference.js';
import type { CachedLayer } from './cache.js';
import type { BuildGraph } from './vertex.js';
import { imageConfig, type SolvedState, type Solver } from './solver.js';
import { BUILD_STEP_ROOT } from '../store/images.js';
import type { BuildSession } from './session.js';

export interface ExportedImage {
  imageId: string;
  manifestDigest: string;
  manifest: Descriptor;
  config: ImageConfig;
  names: string[];
  layers: CachedLayer[];
}

/** The target as an image in the store: tagged, or kept dangling like Docker's `<none>` images. */
export async function exportImage(s: BuildSession, graph: BuildGraph, solver: Solver, state: SolvedState): Promise<ExportedImage> {
  const finalStage = graph.stages.find((st) => st.index === graph.target)!;
  const planned = finalStage.vertices[finalStage.vertices.length - 1]!.config;
  // The manifest must name compressed blobs, so this is where the snapshots' compression (begun
  // as each step ended, in parallel) is awaited.
  const layers = await Promise.all(state.layers.map((l) => solver.blob(l)));
  // A remote cache hit's blob is fetched only now that the image needs it.
  await s.opts.remoteCache?.ensureLayers(layers);
  const config = imageConfig(planned, state);
  if (s.opts.labels && Object.keys(s.opts.labels).length) {
    config.config = { ...config.config, Labels: { ...(config.config?.Labels ?? {}), ...s.opts.labels } } as ContainerConfig;
  }
  // type=inline: the cache records join the config (BuildKit's moby.buildkit.cache.v0).
  if (s.opts.remoteCache) Object.assign(config, await s.opts.remoteCache.finalImage(finalStage.vertices[finalStage.vertices.length - 1]!.key, layers));
  const written = await writeImage(s.store, { config, layers });
  // Tags are set only when they move: a fully cached rebuild then writes nothing at all
  // (index.json's lock, write and fsyncs are the slowest part of a no-op build on a busy disk).
  const names = (s.opts.tags ?? []).map((t) => s.at(s.df.stages[0]!.from, () => canonicalName(t)));
  for (const n of names) {
    if ((await s.store.resolveTag(n))?.digest !== written.manifestDigest) await s.store.setTag(n, written.manifest);
  }
  // Untagged, it is kept like Docker's dangling images: listed as <none>, removed by rmi or image prune.
  if (names.length === 0) await s.store.setRoot(`built/${written.manifestDigest}`, [written.manifestDigest]);
  if (solver.finalStepPrintsImageId) s.log(`${solver.finalPrefix} ---> ${shortId(written.configDigest)}\n`);
  s.log(`Successfully built ${shortId(written.configDigest)}\n`);
  for (const n of names) s.log(`Successfully tagged ${familiarString(parseReference(n))}\n`);
  return { imageId: written.configDigest, manifestDigest: written.manifestDigest, manifest: written.manifest, config, names, layers };
}

/** --output type=oci|docker,dest=FILE: the same archive writers as `drydock save` (skopeo/podman-compatible). */
export async function exportArchive(s: BuildSession, image: ExportedImage, output: { type: 'oci' | 'docker'; dest: string }): Promise<void> {
  const { saveImages } = await import('../archive/index.js');
  await saveImages(s.store, [image.names[0] ?? image.imageId], output.dest, { format: output.type === 'oci' ? 'oci-archive' : 'docker-archive' });
}

/**
 * The steps' intermediate images, so `drydock run <ID>` works on any " ---> ID" line, as with
 * Docker's classic builder. They are kept by `buildstep/` roots: resolvable by ID, not listed by
 * `images`, dropped by `drydock builder prune`. Images already stored are not written again.
 */
export async function exportStepImages(s: BuildSession, solver: Solver): Promise<void> {
  // Names only: every earlier build's step roots are there, and reading them all would make a
  // cached rebuild slower with each build.
  const have = await s.store.listRootOwners([BUILD_STEP_ROOT]);
  await Promise.all(solver.stepImages.map(async (img) => {
    const owner = `${BUILD_STEP_ROOT}${img.id.slice(7)}`;
    if (have.has(owner) && (await s.store.hasBlob(img.id))) return;
    const layers = await Promise.all(img.layers.map((l) => solver.blob(l)));
    // A --cache-from hit's layer is not downloaded just for an intermediate image: that step's
    // image is not written (its ID was printed; the cache, not the image, is what matters there).
    for (const l of layers) if (s.opts.remoteCache && !(await s.store.hasBlob(l.digest))) return;
    const written = await writeImage(s.store, { config: img.config, layers });
    if (written.configDigest !== img.id) throw new Error(`intermediate image of a step is ${written.configDigest}, printed as ${img.id}`);
    await s.store.setRoot(owner, [written.manifestDigest]);
  }));
}
