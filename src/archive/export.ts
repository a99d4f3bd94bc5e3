// `drydock export`: the flattened filesystem of an image as one plain tar (docker export writes
// a container's filesystem; an image's is the same thing before anything ran).
import { createWriteStream, promises as fsp } from 'node:fs';
import { Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import path from 'node:path';
import type { ContentStore } from '../store/content-store.js';
import type { LocalImage } from '../store/images.js';
import { unpackImage } from '../layer/unpack.js';
import { tarDirectory } from '../layer/create.js';
import { STREAM_CHUNK, tempName, fsyncDir } from '../util/fs.js';

export interface ExportResult { bytes: number }

/**
 * Writes the image's flattened rootfs as a tar to `out` (a path, written atomically, or a
 * stream such as stdout). The layers are applied to a scratch directory next to the store,
 * then archived with the same deterministic writer layers use.
 */
export async function exportImage(store: ContentStore, image: LocalImage, out: string | Writable): Promise<ExportResult> {
  const scratch = await fsp.mkdtemp(path.join(store.tmpDir, 'export-'));
  const isRoot = process.getuid?.() === 0;
  try {
    await unpackImage(store, image, path.join(scratch, 'rootfs'), { allowDevices: isRoot });
    let bytes = 0;
    const counted = Readable.from((async function* () {
      for await (const chunk of tarDirectory(path.join(scratch, 'rootfs'))) { bytes += chunk.length; yield chunk; }
    })(), { objectMode: false, highWaterMark: STREAM_CHUNK });
    if (typeof out === 'string') {
      const tmp = tempName(path.resolve(out));
      try {
        await pipeline(counted, createWriteStream(tmp, { flags: 'wx', highWaterMark: STREAM_CHUNK }));
        const fh = await fsp.open(tmp, 'r');
        try { await fh.sync(); } finally { await fh.close(); }
        await fsp.rename(tmp, out);
        await fsyncDir(path.dirname(path.resolve(out)));
      } catch (e) {
        await fsp.rm(tmp, { force: true });
        throw e;
      }
    } else {
      await pipeline(counted, out, { end: out !== process.stdout });
    }
    return { bytes };
  } finally {
    await fsp.rm(scratch, { recursive: true, force: true });
  }
}

