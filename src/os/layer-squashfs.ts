// One image layer as an overlayfs lower directory packed into a squashfs file, named by the
// layer's diffID (os/layers/<diffid-hex>.squashfs on an updatable disk, docs/boot.md). OCI
// whiteouts become overlay whiteouts (0:0 char devices, trusted.overlay.opaque=y), so the
// initramfs stacks the files as overlay lowers without flattening anything.
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { applyLayer } from '../layer/apply.js';
import { LayerError } from '../layer/errors.js';
import { runTool } from '../boot/exec.js';
import { fsyncDir } from '../util/fs.js';

export interface LayerFileResult { file: string; diffID: string; bytes: number }

/**
 * Writes `<dir>/<diffid-hex>.squashfs` from a layer stream. The work dir and the temp file are
 * removed on failure; the file appears only complete (temp name, fsync, rename, fsync dir).
 * When `expectDiffID` is given, a layer that uncompresses to something else is refused.
 */
export async function layerToSquashfs(stream: Readable, dir: string, work: string,
  opts: { expectDiffID?: string; compression?: 'auto' | 'gzip' | 'zstd' | 'none'; squashfsCompression?: string } = {}): Promise<LayerFileResult> {
  const unpacked = await fsp.mkdtemp(path.join(work, 'layer-'));
  try {
    const r = await applyLayer(unpacked, stream, { compression: opts.compression ?? 'auto', whiteouts: 'overlay' });
    if (opts.expectDiffID && r.diffID !== opts.expectDiffID) {
      throw new LayerError(`layer uncompresses to ${r.diffID}, but the image config expects ${opts.expectDiffID}`);
    }
    const hex = r.diffID.replace(/^sha256:/, '');
    const file = path.join(dir, `${hex}.squashfs`);
    if (await fsp.stat(file).catch(() => undefined)) return { file, diffID: r.diffID, bytes: r.bytes };
    const tmp = path.join(dir, `.${hex}.squashfs.tmp`);
    const comp = opts.squashfsCompression ?? 'zstd';
    try {
      await runTool('mksquashfs', [unpacked, tmp, '-noappend', '-no-progress', '-quiet', '-comp', comp, '-b', '1M',
        ...(comp === 'zstd' ? ['-Xcompression-level', '3'] : [])]);
      const fh = await fsp.open(tmp, 'r');
      try { await fh.sync(); } finally { await fh.close(); }
      await fsp.rename(tmp, file);
      await fsyncDir(dir);
    } catch (e) {
      await fsp.rm(tmp, { force: true });
      throw e;
    }
    return { file, diffID: r.diffID, bytes: r.bytes };
  } finally {
    await fsp.rm(unpacked, { recursive: true, force: true });
  }
}
