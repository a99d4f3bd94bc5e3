// One image layer as an overlayfs lower directory packed into a squashfs file, named by the
// layer's diffID (os/layers/<diffid-hex>.squashfs on an updatable disk, docs/boot.md), for the
// disk builder. The conversion itself is squashLayer (src/os/layers.ts), the same code
// `drydock os upgrade` runs on the machine.
import type { Readable } from 'node:stream';
import { squashLayer } from './layers.js';

export interface LayerFileResult { file: string; diffID: string; bytes: number }

/**
 * Writes `<dir>/<diffid-hex>.squashfs` from a layer stream. The work dir and the temp file are
 * removed on failure; the file appears only complete (temp name, fsync, rename, fsync dir).
 * When `expectDiffID` is given, a layer that uncompresses to something else is refused.
 */
export async function layerToSquashfs(stream: Readable, dir: string, work: string,
  opts: { expectDiffID?: string; compression?: 'auto' | 'gzip' | 'zstd' | 'none' } = {}): Promise<LayerFileResult> {
  const r = await squashLayer(stream, { dir, work, compression: opts.compression, expectDiffID: opts.expectDiffID });
  return { file: r.file, diffID: r.diffID, bytes: r.bytes };
}
