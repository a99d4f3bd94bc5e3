// `drydock import`: a rootfs (tar, tar.gz, tar.zst, a directory, or a stream) becomes a
// single-layer image, with `docker import --change` semantics for the config.
import { createReadStream, promises as fsp } from 'node:fs';
import type { Readable } from 'node:stream';
import path from 'node:path';
import type { ContentStore } from '../store/content-store.js';
import { writeImage } from '../store/write-image.js';
import { applyConfigChanges } from '../builder/changes.js';
import { singleLayerConfig } from '../image/config.js';
import type { Platform } from '../image/types.js';
import type { Compression } from '../image/media-types.js';
import { createLayer, storeLayerStream, type LayerInfo } from '../layer/create.js';
import { decompress } from '../layer/compression.js';
import { ExpansionBudget, countCompressed } from '../layer/limits.js';
import { TarValidator, describeTarError } from '../layer/validate.js';

export { TarValidator, describeTarError };
import { STREAM_CHUNK } from '../util/fs.js';
import { UserError } from '../util/errors.js';

export interface ImportOptions {
  tag?: string | string[];
  /** Dockerfile instructions applied to the config, like `docker import --change`. */
  changes?: string[];
  /** Commit message, recorded as the history comment. */
  message?: string;
  platform?: Platform;
  compression?: Compression;
  sourceDateEpoch?: number;
}

export interface ImportResult {
  manifestDigest: string;
  configDigest: string;
  layer: LayerInfo;
  names: string[];
}

/** Stores an existing tar stream (any compression) as a layer, validating it on the way. */
export async function importLayerStream(store: ContentStore, input: Readable, opts: { compression?: Compression } = {}): Promise<LayerInfo> {
  try {
    // The same rules and expansion cap as extraction (layer/validate.ts), counted from the
    // compressed input so the ratio check sees it.
    const budget = new ExpansionBudget();
    const { stream } = await decompress(countCompressed(input, budget), 'auto');
    const validator = new TarValidator(budget);
    stream.on('error', (e) => validator.destroy(e));
    return await storeLayerStream(store, stream.pipe(validator), opts);
  } catch (e) {
    input.destroy();
    throw describeTarError(e);
  }
}

/** Imports a rootfs tar (path or stream) or directory as a one-layer image. */
export async function importRootfs(store: ContentStore, source: string | Readable, opts: ImportOptions = {}): Promise<ImportResult> {
  let layer: LayerInfo;
  let from: string;
  if (typeof source === 'string') {
    const st = await fsp.stat(source).catch(() => undefined);
    if (!st) throw new UserError(`${source}: no such file or directory`);
    from = path.basename(path.resolve(source));
    layer = st.isDirectory()
      ? await createLayer(store, { dir: source }, { compression: opts.compression, sourceDateEpoch: opts.sourceDateEpoch })
      : await importLayerStream(store, createReadStream(source, { highWaterMark: STREAM_CHUNK }), { compression: opts.compression });
  } else {
    from = '-';
    layer = await importLayerStream(store, source, { compression: opts.compression });
  }
  const config = singleLayerConfig({
    diffID: layer.diffID,
    config: applyConfigChanges({}, opts.changes ?? []),
    platform: opts.platform,
    sourceDateEpoch: opts.sourceDateEpoch,
    history: { created_by: 'drydock import', comment: opts.message ?? `Imported from ${from}` },
  });
  const written = await writeImage(store, { config, layers: [layer], tag: opts.tag });
  // Like `docker import` without a name: kept, listed as <none>, until rmi or image prune.
  if (written.names.length === 0) await store.setRoot(`imported/${written.manifestDigest}`, [written.manifestDigest]);
  return { manifestDigest: written.manifestDigest, configDigest: written.configDigest, layer, names: written.names };
}
