// The size `docker images` shows: the bytes of the files an image's layers unpack to (regular
// files' contents plus symlink targets), not the compressed blobs. Reading a layer's tar headers
// costs one decompression, so each layer's size is kept in <root>/sizes/<hex> once known.
import { promises as fsp, readFileSync } from 'node:fs';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Writable } from 'node:stream';
import type { ContentStore } from './content-store.js';

const cacheFileOf = (store: ContentStore, digest: string) => path.join(store.root, 'sizes', digest.replace(/^sha256:/, ''));

/** The layer's size if it is in the cache (read synchronously, for `drydock images`), else undefined. */
export function cachedLayerContentSize(store: ContentStore, digest: string): number | undefined {
  let text: string;
  try { text = readFileSync(cacheFileOf(store, digest), 'utf8').trim(); } catch { return undefined; }
  return /^\d+$/.test(text) ? Number(text) : undefined;
}

/** The unpacked content size of the layer blob `digest` (cached per blob). */
export async function layerContentSize(store: ContentStore, digest: string): Promise<number> {
  const cacheFile = cacheFileOf(store, digest);
  const cached = await fsp.readFile(cacheFile, 'utf8').catch(() => undefined);
  if (cached !== undefined && /^\d+$/.test(cached.trim())) return Number(cached.trim());
  // Loaded only on a cache miss: `drydock images` with known sizes stays quick to start.
  const { default: tar } = await import('tar-stream');
  // compression.js, not the layer index: the index reaches unpack.ts, which imports the store.
  const { decompress } = await import('../layer/compression.js');
  const { stream } = await decompress(store.openBlob(digest));
  let size = 0;
  const extract = tar.extract();
  extract.on('entry', (header, body, next) => {
    if (header.type === 'file' || header.type === 'contiguous-file') size += header.size ?? 0;
    else if (header.type === 'symlink') size += Buffer.byteLength(header.linkname ?? '');
    body.on('end', next);
    body.resume();
  });
  await pipeline(stream, extract as unknown as Writable);
  // Atomic: a reader never sees a half-written number.
  await fsp.mkdir(path.dirname(cacheFile), { recursive: true });
  const tmp = `${cacheFile}.${process.pid}.tmp`;
  await fsp.writeFile(tmp, String(size));
  await fsp.rename(tmp, cacheFile);
  return size;
}

/** The unpacked size of an image: its layers' content sizes added up. */
export async function imageContentSize(store: ContentStore, layers: readonly { digest: string }[]): Promise<number> {
  let total = 0;
  for (const l of layers) total += await layerContentSize(store, l.digest);
  return total;
}
