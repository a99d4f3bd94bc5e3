// `drydock import`: a rootfs (tar, tar.gz, tar.zst, a directory, or a stream) becomes a
// single-layer image, with `docker import --change` semantics for the config.
import { createReadStream, promises as fsp } from 'node:fs';
import { Readable, Transform, type TransformCallback } from 'node:stream';
import path from 'node:path';
import tar from 'tar-stream';
import type { ContentStore } from '../store/content-store.js';
import { writeImage } from '../store/write-image.js';
import { applyConfigChanges } from '../builder/changes.js';
import { singleLayerConfig } from '../image/config.js';
import type { Platform } from '../image/types.js';
import type { Compression } from '../image/media-types.js';
import { createLayer, storeLayerStream, type LayerInfo } from '../layer/create.js';
import { decompress } from '../layer/compression.js';
import { LayerError, normalizeEntryPath, checkPaxSize, describeTarError, type EntryHeader } from '../layer/apply.js';

export { describeTarError };
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

/**
 * Passes a tar stream through unchanged while parsing it on the side, so a truncated, corrupt
 * or escaping archive fails the import before its blob becomes visible in the store.
 */
export class TarValidator extends Transform {
  private readonly extract = tar.extract();
  private readonly parsed: Promise<void>;
  entries = 0;

  constructor() {
    super({ highWaterMark: STREAM_CHUNK });
    this.parsed = (async () => {
      // Symlinks seen so far: an entry beneath one would be written through it on extraction.
      const symlinks = new Set<string>();
      for await (const entry of this.extract) {
        this.entries++;
        const h = entry.header as EntryHeader;
        const rel = checkHeader(h);
        const parts = rel.split('/');
        for (let i = 1; i < parts.length; i++) {
          const parent = parts.slice(0, i).join('/');
          if (symlinks.has(parent)) throw new LayerError(`entry "${h.name}": parent "${parent}" is a symlink earlier in the archive; refusing (could escape the root)`);
        }
        if (h.type === 'symlink') symlinks.add(rel); else symlinks.delete(rel);
        entry.resume();
      }
    })();
    this.parsed.catch(() => { /* reported from _transform/_flush */ });
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    let settled = false;
    const done = (e?: unknown) => { if (!settled) { settled = true; e ? cb(describeTarError(e) as Error) : cb(null, chunk); } };
    this.parsed.catch(done);
    if (this.extract.write(chunk)) done();
    else this.extract.once('drain', () => done(undefined));
  }

  override _flush(cb: TransformCallback): void {
    (this.extract as unknown as { end(): void }).end();
    this.parsed.then(() => cb(), (e) => cb(describeTarError(e) as Error));
  }
}

function checkHeader(h: EntryHeader): string {
  checkPaxSize(h);
  const rel = normalizeEntryPath(h.name);
  if (h.type === 'link') {
    if ((h.linkname ?? '').startsWith('/')) throw new LayerError(`entry "${h.name}": hardlink to absolute path "${h.linkname}" is refused (would escape the root)`);
    normalizeEntryPath(h.linkname ?? '', `hardlink "${h.name}" target`);
  }
  return rel;
}

/** Stores an existing tar stream (any compression) as a layer, validating it on the way. */
export async function importLayerStream(store: ContentStore, input: Readable, opts: { compression?: Compression } = {}): Promise<LayerInfo> {
  try {
    const { stream } = await decompress(input, 'auto');
    const validator = new TarValidator();
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
