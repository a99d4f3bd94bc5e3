// `drydock export`: the flattened filesystem of an image as one plain tar (docker export writes
// a container's filesystem; an image's is the same thing before anything ran).
//
// Streamed, without touching the disk: layers are read top to bottom, each entry is written
// the first time its path is seen (upper layers win), and an entry is dropped when an upper
// layer deleted it (.wh.name), made its directory opaque (.wh..wh..opq), or replaced a parent
// directory with a non-directory. Each layer is decompressed once; whiteouts never reach the
// output. Entry names are checked like extraction checks them, so no escaping name passes.
import { Readable, type Writable } from 'node:stream';
import path from 'node:path';
import tar from 'tar-stream';
import type { ContentStore } from '../store/content-store.js';
import type { LocalImage } from '../store/images.js';
import { layerCompression } from '../image/media-types.js';
import { decompress } from '../layer/compression.js';
import { normalizeEntryPath, LayerError, type EntryHeader } from '../layer/apply.js';
import { WHITEOUT_PREFIX, OPAQUE_WHITEOUT } from '../layer/create.js';
import type { TarEntryType } from '../layer/tar-writer.js';
import { TarWriter } from './tar-file.js';
import { TarHeaderTap } from '../layer/pax-tap.js';
import { ExpansionBudget } from '../layer/limits.js';
import { describeTarError } from './import.js';

export interface ExportResult { bytes: number; entries: number }

const TYPES = new Set<string>(['file', 'link', 'symlink', 'character-device', 'block-device', 'directory', 'fifo']);

export async function exportImage(store: ContentStore, image: LocalImage, out: string | Writable): Promise<ExportResult> {
  const writer = new TarWriter(out);
  /** Paths written so far -> whether they are directories. */
  const seen = new Map<string, boolean>();
  /** Whiteouts and opaque directories from the layers above the one being read. */
  const deleted = new Set<string>();
  const opaque = new Set<string>();
  let entries = 0;

  const hidden = (rel: string): boolean => {
    if (deleted.has(rel)) return true;
    for (let i = rel.indexOf('/'); i >= 0; i = rel.indexOf('/', i + 1)) {
      const parent = rel.slice(0, i);
      if (deleted.has(parent) || opaque.has(parent) || seen.get(parent) === false) return true;
    }
    return false;
  };

  try {
    for (let i = image.manifest.layers.length - 1; i >= 0; i--) {
      const layer = image.manifest.layers[i]!;
      if (!(await store.hasBlob(layer.digest))) throw new LayerError(`layer ${layer.digest} is not in the store (pull the image again)`);
      const compression = layerCompression(layer.mediaType);
      const { stream } = await decompress(store.openBlob(layer.digest), compression === 'none' ? 'auto' : compression);
      const layerDeleted: string[] = [];
      const layerOpaque: string[] = [];
      const extract = tar.extract();
      let current: Readable | undefined;
      stream.on('error', (e) => extract.destroy(e));
      // A truncated layer fails the extractor; the entry being copied must fail with it.
      extract.on('error', (e: Error) => current?.destroy(e));
      // Raw xattr bytes ride alongside tar-stream (which would UTF-8-decode them).
      // It also refuses bad sizes and caps the layer's expansion (limits.ts) before tar-stream reads.
      const tap = new TarHeaderTap(new ExpansionBudget());
      let index = 0;
      stream.on('data', (chunk: Buffer) => { try { tap.feed(chunk); } catch (e) { stream.destroy(e as Error); } });
      stream.pipe(extract as unknown as NodeJS.WritableStream);
      for await (const entry of extract) {
        current = entry as unknown as Readable;
        const h = entry.header as EntryHeader;
        const xattrs = tap.entries[index++];
        const rel = normalizeEntryPath(h.name);
        const base = path.posix.basename(rel);
        const dir = path.posix.dirname(rel) === '.' ? '' : path.posix.dirname(rel);
        if (rel === '' || !TYPES.has(h.type) || hidden(rel) || seen.has(rel)) { entry.resume(); continue; }
        if (base === OPAQUE_WHITEOUT) { layerOpaque.push(dir); entry.resume(); continue; }
        if (base.startsWith(WHITEOUT_PREFIX)) { layerDeleted.push(dir ? `${dir}/${base.slice(WHITEOUT_PREFIX.length)}` : base.slice(WHITEOUT_PREFIX.length)); entry.resume(); continue; }
        const isDir = h.type === 'directory';
        seen.set(rel, isDir);
        await writer.addEntry({
          name: isDir ? `${rel}/` : rel,
          type: (h.type === 'contiguous-file' ? 'file' : h.type) as TarEntryType,
          mode: h.mode ?? 0o644,
          uid: h.uid ?? 0,
          gid: h.gid ?? 0,
          size: h.type === 'file' ? h.size ?? 0 : 0,
          mtime: Math.floor((h.mtime?.getTime() ?? 0) / 1000),
          linkname: h.type === 'link' ? normalizeEntryPath(h.linkname ?? '', `hardlink "${h.name}" target`) : h.linkname ?? undefined,
          devmajor: h.devmajor,
          devminor: h.devminor,
          xattrs,
        }, h.type === 'file' ? (entry as unknown as Readable) : undefined);
        if (h.type !== 'file') entry.resume();
        entries++;
      }
      for (const d of layerDeleted) deleted.add(d);
      for (const d of layerOpaque) opaque.add(d);
    }
    await writer.finish();
  } catch (e) {
    await writer.abort();
    throw describeTarError(e);
  }
  return { bytes: writer.size, entries };
}
