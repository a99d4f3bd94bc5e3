// The shared test base image: a busybox rootfs from the host's busybox-static, imported with
// CMD ["sh"]. Built once per store root and name; later calls return the existing image.
import path from 'node:path';
import { promises as fsp } from 'node:fs';
import { ContentStore, resolveImage, canonicalName, type LocalImage } from '../../src/store/index.js';
import { buildBusyboxRootfs } from '../../src/mkimage/busybox-rootfs.js';
import { importRootfs } from '../../src/archive/index.js';
import { requireTool, tempDir } from './env.js';

/** Fixed so every test run produces the same layer and image digests. */
export const BUSYBOX_SOURCE_DATE_EPOCH = 1700000000;

export async function busyboxImage(root: string, name = 'busybox:latest'): Promise<LocalImage> {
  requireTool('busybox', 'apt-get install busybox-static');
  const store = await ContentStore.open(root);
  if (await store.resolveTag(canonicalName(name))) return resolveImage(store, name);
  const dir = path.join(tempDir('drydock-busybox-'), 'rootfs');
  await fsp.mkdir(dir);
  await buildBusyboxRootfs(dir);
  await importRootfs(store, dir, { tag: name, changes: ['CMD ["sh"]'], sourceDateEpoch: BUSYBOX_SOURCE_DATE_EPOCH });
  await fsp.rm(path.dirname(dir), { recursive: true, force: true });
  return resolveImage(store, name);
}
