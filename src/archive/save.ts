// `drydock save`: images from the store into a docker-archive (default, like docker save),
// an oci-archive, or an OCI layout directory. Blobs stream from the store into the output;
// a file output appears only when complete (temp file + rename).
import type { Writable } from 'node:stream';
import type { ContentStore } from '../store/content-store.js';
import { resolveImage, canonicalName } from '../store/images.js';
import { parseReference } from '../image/reference.js';
import { UserError } from '../util/errors.js';
import { OciLayoutDestination } from './oci.js';
import { DockerArchiveDestination } from './docker.js';

export type SaveFormat = 'docker-archive' | 'oci-archive' | 'oci-dir';

export interface SaveResult { images: { name: string; manifestDigest: string; configDigest: string }[] }

export async function saveImages(store: ContentStore, names: string[], out: string | Writable, opts: { format?: SaveFormat } = {}): Promise<SaveResult> {
  if (names.length === 0) throw new UserError('save needs at least one image');
  const format = opts.format ?? 'docker-archive';
  if (format === 'oci-dir' && typeof out !== 'string') throw new UserError('--format oci-dir needs -o DIRECTORY');
  // Resolve everything first: a typo fails before any output exists.
  const images = [];
  for (const name of names) {
    const img = await resolveImage(store, name);
    let full: string | undefined;
    try { full = parseReference(name).digest ? undefined : canonicalName(name); } catch { full = undefined; }
    images.push({ name, img, full: full && img.names.includes(full) ? full : undefined });
  }
  const dest = format === 'docker-archive' ? new DockerArchiveDestination(out)
    : format === 'oci-archive' ? OciLayoutDestination.archive(out as string)
      : OciLayoutDestination.directory(out as string);
  try {
    for (const { img, full } of images) {
      for (const b of [img.manifest.config, ...img.manifest.layers]) {
        if (await dest.hasBlob(b)) continue;
        if (!(await store.hasBlob(b.digest))) throw new UserError(`cannot save ${img.names[0] ?? img.manifestDescriptor.digest}: blob ${b.digest} is not in the store`);
        await dest.putBlob(b, store.openBlob(b.digest));
      }
      const bytes = await store.readBlob(img.manifestDescriptor.digest);
      const manifest = { bytes, mediaType: img.manifestDescriptor.mediaType, digest: img.manifestDescriptor.digest };
      await dest.putManifest(manifest);
      dest.addTopLevel({
        manifest,
        fullName: full,
        ref: full ? parseReference(full).tag : undefined,
        platform: { architecture: img.config.architecture, os: img.config.os, ...(img.config.variant ? { variant: img.config.variant } : {}) },
      });
    }
    await dest.commit();
  } catch (e) {
    await dest.abort();
    throw e;
  }
  return { images: images.map(({ name, img }) => ({ name, manifestDigest: img.manifestDescriptor.digest, configDigest: img.configDigest })) };
}
