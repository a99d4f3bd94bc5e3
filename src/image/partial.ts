// Small facts about manifests that every image location needs, kept once (like ggcr's
// partial package): the size limit and how a manifest's bytes name their media type.
import { MediaType } from './media-types.js';

/** Manifests larger than this are refused everywhere (the limit distribution and containerd use). */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;

/**
 * The media type of manifest bytes: the document's own `mediaType`, else `declared` (a
 * Content-Type, an index entry), else what its shape says (an index has `manifests[]`).
 * Throws a SyntaxError for bytes that are not JSON; callers say where they came from.
 */
export function manifestMediaType(bytes: Buffer, declared?: string): string {
  const doc = JSON.parse(bytes.toString('utf8')) as { mediaType?: unknown; manifests?: unknown } | null;
  if (typeof doc?.mediaType === 'string' && doc.mediaType) return doc.mediaType;
  if (declared) return declared;
  return Array.isArray(doc?.manifests) ? MediaType.OciIndex : MediaType.OciManifest;
}
