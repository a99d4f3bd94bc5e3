// One image layer → os/layers/<diffid>.squashfs, the form the initramfs stacks as an overlayfs
// lower. The blob (gzip, zstd or plain tar) is unpacked by drydock's own layer code with overlay
// whiteouts (`.wh.x` → char device 0:0, `.wh..wh..opq` → trusted.overlay.opaque=y), both digests
// are checked while it streams, and only a verified squashfs gets its final name (temp, fsync,
// rename, fsync dir): a file named by a diffID is always that layer, whole.
import { promises as fsp } from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { applyLayer } from '../layer/apply.js';
import { HashingTransform } from '../store/content-store.js';
import { layerCompression } from '../image/media-types.js';
import type { Descriptor } from '../image/types.js';
import { mksquashfs } from '../boot/artifacts.js';
import { fsyncDir, tempName } from '../util/fs.js';
import { UserError } from '../util/errors.js';
import type { OsLayout } from './layout.js';

export interface ConvertedLayer {
  diffID: string;
  /** Compressed bytes read from `blob`. */
  bytes: number;
  /** Size of the squashfs written. */
  size: number;
}

async function fsyncFile(file: string): Promise<void> {
  const fh = await fsp.open(file, 'r');
  try { await fh.sync(); } finally { await fh.close(); }
}

/**
 * Converts the layer `desc` (read from `blob`) into layout.layerPath(diffID). `diffID` is what
 * the image config says the layer uncompresses to; a blob that hashes otherwise is refused and
 * nothing is written. Unpacks into os/tmp, on the data partition itself, which keeps device
 * nodes and trusted.* xattrs (a tmpfs in a user namespace would not).
 */
export async function convertLayer(layout: OsLayout, desc: Descriptor, blob: Readable, diffID: string): Promise<ConvertedLayer> {
  const target = layout.layerPath(diffID);
  await fsp.mkdir(layout.tmpDir, { recursive: true });
  await fsp.mkdir(layout.layersDir, { recursive: true });
  const tree = path.join(layout.tmpDir, `layer-${randomBytes(6).toString('hex')}`);
  const squashfs = tempName(target);
  const hasher = new HashingTransform('sha256', desc.size);
  blob.on('error', (e) => hasher.destroy(e));
  try {
    const compression = layerCompression(desc.mediaType);
    const r = await applyLayer(tree, blob.pipe(hasher), { compression: compression === 'none' ? 'auto' : compression, whiteouts: 'overlay', preserveOwners: true });
    const got = hasher.digester.digest();
    if (got !== desc.digest || hasher.digester.size !== desc.size) {
      throw new UserError(`layer ${desc.digest}: downloaded ${hasher.digester.size} bytes hashing to ${got}; the manifest says ${desc.size} bytes`);
    }
    if (r.diffID !== diffID) throw new UserError(`layer ${desc.digest} uncompresses to ${r.diffID}, but the image config expects ${diffID}`);
    await mksquashfs(tree, squashfs, 'zstd');
    await fsyncFile(squashfs);
    await fsp.rename(squashfs, target);
    await fsyncDir(layout.layersDir);
    return { diffID, bytes: hasher.digester.size, size: (await fsp.stat(target)).size };
  } finally {
    blob.destroy();
    await fsp.rm(squashfs, { force: true });
    await fsp.rm(tree, { recursive: true, force: true });
  }
}
