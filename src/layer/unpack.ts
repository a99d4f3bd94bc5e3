// Flattens an image into a directory: every layer applied in order, whiteouts honoured, each
// layer's uncompressed digest checked against the config's diff_ids.
import type { ContentStore } from '../store/content-store.js';
import type { LocalImage } from '../store/images.js';
import { layerCompression } from '../image/media-types.js';
import { applyLayer, LayerError, type ApplyLayerOptions } from './apply.js';

export interface UnpackResult { layers: number; entries: number; bytes: number }

export async function unpackImage(store: ContentStore, image: LocalImage, targetDir: string,
  opts: Omit<ApplyLayerOptions, 'compression' | 'whiteouts'> = {}): Promise<UnpackResult> {
  const diffIDs = image.config.rootfs?.diff_ids ?? [];
  let entries = 0;
  let bytes = 0;
  for (const [i, layer] of image.manifest.layers.entries()) {
    if (!(await store.hasBlob(layer.digest))) throw new LayerError(`layer ${layer.digest} is not in the store (pull the image again)`);
    const compression = layerCompression(layer.mediaType);
    const r = await applyLayer(targetDir, store.openBlob(layer.digest), { ...opts, compression: compression === 'none' ? 'auto' : compression });
    if (diffIDs[i] && diffIDs[i] !== r.diffID) {
      throw new LayerError(`layer ${i + 1} (${layer.digest}) uncompresses to ${r.diffID}, but the image config expects ${diffIDs[i]}`);
    }
    entries += r.entries;
    bytes += r.bytes;
  }
  return { layers: image.manifest.layers.length, entries, bytes };
}
