// Exporters: what a solved target becomes. The image exporter waits for the target's blobs
// (compressed in parallel from the snapshots, see solver.ts), writes config and manifest into
// the store and moves the tags; --output (exportOutput) writes one or several platforms' images
// as BuildKit's exporters do: an archive with `drydock save`'s writers (docker, oci), or the
// filesystem itself (local, tar). A new exporter is one more function here.
import { promises as fsp, createWriteStream } from 'node:fs';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import os from 'node:os';
import path from 'node:path';
import type { ContentStore } from '../store/content-store.js';
import type { ImageManifest } from '../image/types.js';
import { formatPlatform } from '../image/platform.js';
import { UserError } from '../util/errors.js';
import { tempName, fsyncDir } from '../util/fs.js';
import type { Descriptor, ImageConfig, ContainerConfig } from '../image/types.js';
import { canonicalName } from '../store/images.js';
import { writeImage } from '../store/write-image.js';
import { shortId } from '../image/digest.js';
import { parseReference, familiarString } from '../image/reference.js';
import type { CachedLayer } from './cache.js';
import type { BuildGraph } from './vertex.js';
import { imageConfig, type SolvedState, type Solver } from './solver.js';
import { BUILD_STEP_ROOT } from '../store/images.js';
import { span, traced } from '../util/trace.js';
import { crashPoint } from '../util/crash-point.js';
import type { BuildSession, OutputSpec } from './session.js';
export type { OutputSpec } from './session.js';

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
  const names = (s.opts.tags ?? []).map((t) => s.at(s.df.stages[0]!.from, () => canonicalName(t)));
  // The export starts as soon as the target's diffIDs are known: the config (which names diffIDs
  // only) is written while the last layer is still compressing.
  crashPoint('export.start');
  // The manifest must name compressed blobs, so this is where the snapshots' compression (begun
  // as each step ended, in parallel) is awaited; a remote cache hit's blob is fetched only now
  // that the image needs it.
  const layers = Promise.all(state.layers.map((l) => solver.blob(l))).then(async (ls) => {
    await s.opts.remoteCache?.ensureLayers(ls);
    return ls;
  });
  layers.catch(() => { /* awaited by writeImage */ });
  const config = imageConfig(planned, state);
  if (s.opts.labels && Object.keys(s.opts.labels).length) {
    config.config = { ...config.config, Labels: { ...(config.config?.Labels ?? {}), ...s.opts.labels } } as ContainerConfig;
  }
  // type=inline: the cache records join the config (BuildKit's moby.buildkit.cache.v0).
  if (s.opts.remoteCache) Object.assign(config, await s.opts.remoteCache.finalImage(finalStage.vertices[finalStage.vertices.length - 1]!.key, await layers));
  // Tags are set only when they move (writeImage): a fully cached rebuild then writes nothing at
  // all (index.json's lock, write and fsyncs are the slowest part of a no-op build on a busy disk).
  // A layer whose descriptor comes before its blob is durable (a tiny snapshot, compressed in
  // memory) lets the manifest be written and fsynced while the layer's blob is; the tag still
  // waits for every blob (durable). A remote cache's layers may still be fetched: no early ones.
  const described = s.opts.remoteCache ? undefined : Promise.all(state.layers.map((l) => solver.descriptor(l)));
  const written = await traced('export.image', () => writeImage(s.store, described ? { config, layers: described, durable: layers, tag: names } : { config, layers, tag: names }));
  crashPoint('export.image-written');
  // Untagged, it is kept like Docker's dangling images: listed as <none>, removed by rmi or image prune.
  if (names.length === 0) await s.store.setRoot(`built/${written.manifestDigest}`, [written.manifestDigest]);
  if (solver.finalStepPrintsImageId) s.log(`${solver.finalPrefix} ---> ${shortId(written.configDigest)}\n`);
  s.log(`Successfully built ${shortId(written.configDigest)}\n`);
  for (const n of names) s.log(`Successfully tagged ${familiarString(parseReference(n))}\n`);
  return { imageId: written.configDigest, manifestDigest: written.manifestDigest, manifest: written.manifest, config, names, layers: await layers };
}

/** BuildKit's words (exporter/oci, type=docker) for a docker-archive of several platforms. */
export const DOCKER_MULTI_PLATFORM_ERROR = 'docker exporter does not currently support exporting manifest lists';

/** Refuses what no exporter can do before a build starts, so nothing is built in vain. */
export function checkOutput(output: OutputSpec, platforms: number): void {
  if (output.type === 'docker' && platforms > 1) throw new UserError(DOCKER_MULTI_PLATFORM_ERROR);
}

/**
 * Writes the build's result: `images` (one per platform, in --platform order), `index` the
 * image index over them when there are several, `name` the first tag (for archive annotations).
 */
export async function exportOutput(store: ContentStore, output: OutputSpec, images: ExportedImage[], index?: Descriptor, name?: string): Promise<void> {
  checkOutput(output, images.length);
  if (output.type === 'docker' || (output.type === 'oci' && !index)) {
    const { saveImages } = await import('../archive/index.js');
    await saveImages(store, [name ?? images[0]!.imageId], output.dest, { format: output.type === 'oci' ? 'oci-archive' : 'docker-archive' });
  } else if (output.type === 'oci') {
    await writeOciIndexArchive(store, output.dest, index!, images, name);
  } else {
    await writeFilesystems(store, output, images);
  }
}

/** An OCI archive whose index.json names the image index (as BuildKit's oci exporter writes it). */
async function writeOciIndexArchive(store: ContentStore, dest: string, index: Descriptor, images: ExportedImage[], name?: string): Promise<void> {
  const { OciLayoutDestination } = await import('../archive/oci.js');
  const out = OciLayoutDestination.archive(dest);
  try {
    for (const img of images) {
      const bytes = await store.readBlob(img.manifest.digest);
      const manifest = JSON.parse(bytes.toString('utf8')) as ImageManifest;
      for (const b of [manifest.config, ...manifest.layers]) {
        if (!(await out.hasBlob(b))) await out.putBlob(b, store.openBlob(b.digest));
      }
      await out.putManifest({ bytes, mediaType: img.manifest.mediaType, digest: img.manifest.digest });
    }
    const bytes = await store.readBlob(index.digest);
    const raw = { bytes, mediaType: index.mediaType, digest: index.digest };
    await out.putManifest(raw);
    let ref: string | undefined;
    try { ref = name ? parseReference(name).tag : undefined; } catch { ref = undefined; }
    out.addTopLevel({ manifest: raw, fullName: name, ref });
    await out.commit();
  } catch (e) {
    await out.abort();
    throw e;
  }
}

/** The directory an image's platform gets in a split output: linux/arm64/v8 → linux_arm64_v8. */
export function platformDir(config: ImageConfig): string {
  return formatPlatform({ os: config.os ?? 'linux', architecture: config.architecture, ...(config.variant ? { variant: config.variant } : {}) }).replace(/\//g, '_');
}

/**
 * type=local and type=tar: the images' root filesystems. Several platforms go to one directory
 * each (linux_amd64/, linux_arm64/), as BuildKit does; type=local,platform-split=false merges
 * them into DIR instead (a later platform's file replaces an earlier one's). Each tree is
 * unpacked into a fresh temp dir first, so the image's whiteouts never touch DIR's own files.
 */
async function writeFilesystems(store: ContentStore, output: OutputSpec, images: ExportedImage[]): Promise<void> {
  const split = output.type === 'tar' ? images.length > 1 : (output.platformSplit ?? images.length > 1);
  const { unpackImage } = await import('../layer/unpack.js');
  const unpack = async (img: ExportedImage, dir: string) => {
    const manifest = JSON.parse((await store.readBlob(img.manifest.digest)).toString('utf8')) as ImageManifest;
    await fsp.mkdir(dir, { recursive: true });
    await unpackImage(store, { names: [], manifestDescriptor: img.manifest, manifest, configDigest: img.imageId, config: img.config }, dir);
  };
  if (output.type === 'tar') {
    const work = await fsp.mkdtemp(path.join(os.tmpdir(), 'drydock-output-'));
    try {
      for (const img of images) await unpack(img, split ? path.join(work, platformDir(img.config)) : work);
      const { tarDirectory } = await import('../layer/create.js');
      const tar = Readable.from(tarDirectory(work));
      if (output.dest === '-') { await pipeline(tar, process.stdout, { end: false }); return; }
      const dest = path.resolve(output.dest);
      const tmp = tempName(dest);
      try {
        await pipeline(tar, createWriteStream(tmp, { flags: 'wx' }));
        const fh = await fsp.open(tmp, 'r+');
        try { await fh.sync(); } finally { await fh.close(); }
        await fsp.rename(tmp, dest);
        await fsyncDir(path.dirname(dest));
      } catch (e) {
        await fsp.rm(tmp, { force: true });
        throw e;
      }
    } finally {
      await fsp.rm(work, { recursive: true, force: true });
    }
    return;
  }
  const dest = path.resolve(output.dest);
  await fsp.mkdir(dest, { recursive: true });
  for (const img of images) {
    const target = split ? path.join(dest, platformDir(img.config)) : dest;
    const tmp = tempName(target);
    try {
      await unpack(img, tmp);
      if (split) {
        // The platform's directory is replaced whole: a reader sees the old tree or the new one.
        const old = await fsp.stat(target).then(() => tempName(target), () => undefined);
        if (old) await fsp.rename(target, old);
        await fsp.rename(tmp, target);
        if (old) await fsp.rm(old, { recursive: true, force: true });
      } else {
        // Merged into DIR as BuildKit's local exporter does: DIR's other files stay.
        await promisify(execFile)('cp', ['-a', '--', `${tmp}/.`, `${target}/`]);
      }
    } finally {
      await fsp.rm(tmp, { recursive: true, force: true });
    }
  }
}

/**
 * The steps' intermediate images, so `drydock run <ID>` works on any " ---> ID" line, as with
 * Docker's classic builder. They are kept by `buildstep/` roots: resolvable by ID, not listed by
 * `images`, dropped by `drydock builder prune`. Images already stored are not written again.
 */
export async function exportStepImages(s: BuildSession, solver: Solver): Promise<void> {
  const end = span('export.step-images');
  // Names only: every earlier build's step roots are there, and reading them all would make a
  // cached rebuild slower with each build.
  const have = await s.store.listRootOwners([BUILD_STEP_ROOT]);
  await Promise.all(solver.stepImages.map(async (img) => {
    const owner = `${BUILD_STEP_ROOT}${img.id.slice(7)}`;
    // A stat each on this thread: a late line's rebuild has a dozen cached steps, whose round
    // trips would queue before the export's fsyncs on the thread pool.
    if (have.has(owner) && s.store.hasBlobSync(img.id)) return;
    let layers: CachedLayer[] | Promise<CachedLayer[]> = Promise.all(img.layers.map((l) => solver.blob(l)));
    let written;
    if (s.opts.remoteCache) {
      // A --cache-from hit's layer is not downloaded just for an intermediate image: that step's
      // image is not written (its ID was printed; the cache, not the image, is what matters there).
      layers = await layers;
      for (const l of layers) if (!(await s.store.hasBlob(l.digest))) return;
      written = await writeImage(s.store, { config: img.config, layers });
    } else {
      // Else the config is written while the step's layer may still compress, and the manifest
      // as soon as the layers' descriptors are known, as the image's: their renames then come
      // before the image's tag fsyncs blobs/sha256, which covers them too (the directory fsync at
      // the build's end has nothing left to wait for), instead of one more fsync after the tag.
      layers.catch(() => { /* awaited by writeImage */ });
      written = await writeImage(s.store, { config: img.config, layers: Promise.all(img.layers.map((l) => solver.descriptor(l))), durable: layers });
    }
    if (written.configDigest !== img.id) throw new Error(`intermediate image of a step is ${written.configDigest}, printed as ${img.id}`);
    // Not fsynced: a root lost in a crash is written again by the next build with this step.
    await s.store.setRoot(owner, [written.manifestDigest], { durable: false });
  }));
  end();
}
