// The data partition of an updatable disk (`drydock disk IMAGE --updates-from REF`), laid out
// as docs/boot.md describes ("machines that update themselves"):
//   os/layers/<diffid-hex>.squashfs   one file per image layer (an overlay lower each; .erofs with
//                                     --layer-format erofs, which state.json records for upgrades)
//   os/deployments/<id>.json          which layers, from which manifest, with the image config
//   os/state.json                     default / rollback / pending deployment, the tracked ref
//   os/top/  os/var/  os/etc/         the machine's top layer, persistent /var, /etc's changes
// The layers, the deployment and state.json are src/os's (seedOsRoot, the code `drydock os
// upgrade` stages with); this adds what only the disk builder knows: the top layer, /var, the
// boot tries and deadline, and the Node runtime `drydock os` needs when the image has none.
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import type { ContentStore } from '../store/content-store.js';
import { StoreImageSource } from '../client/store-transport.js';
import { OsLayout, seedOsRoot, bundleRuntime, type Deployment, type LayerFormat, type OsState } from '../os/index.js';
import { inImage, writeLayerFile } from './toplayer.js';
import { runTool } from './exec.js';

export interface UpdatableOptions {
  /** The reference the machine pulls updates from (as the machine sees the registry). */
  ref: string;
  insecureRegistries: string[];
  /** A docker config.json with registry credentials, copied to os/auth.json. */
  authfile?: string;
  /** Tries and seconds a new deployment gets to reach "service started" (os/state.json pending). */
  bootTries: number;
  bootDeadline: number;
  layerFormat: LayerFormat;
}

/** Where the bundled runtime sits in the system (the drydock init's confirm step looks there). */
export const RUNTIME_DIR = '/.drydock/drydock';

/**
 * The whole os/ tree of a new updatable disk: IMAGE's layers and its deployment as the default,
 * the baked top layer (moved from `topDir`), the image's /var as the start of the persistent /var,
 * and node + drydock + the layer packer in the top layer when the image has no node of its own.
 */
export async function buildOsTree(store: ContentStore, image: string, rootfs: string, topDir: string,
  opts: UpdatableOptions, dataDir: string, kernel?: { sha256: string; version?: string; bootConf: string }): Promise<{ deployment: Deployment; state: OsState; runtime?: { bytes: number } }> {
  const os = path.join(dataDir, 'os');
  await fsp.mkdir(os, { recursive: true });
  let authfile: string | null = null;
  if (opts.authfile) {
    await fsp.copyFile(opts.authfile, path.join(os, 'auth.json'));
    await fsp.chmod(path.join(os, 'auth.json'), 0o600);
    authfile = 'os/auth.json';
  }
  // os/top must not exist yet: the baked top layer is moved there whole.
  await fsp.rm(path.join(os, 'top'), { recursive: true, force: true });
  let runtime: { bytes: number } | undefined;
  const given = await fsp.stat(path.join(topDir, RUNTIME_DIR.slice(1), 'bin/drydock')).catch(() => undefined);
  if (!given && !(await inImage(rootfs, '/usr/bin/node')) && !(await inImage(rootfs, '/usr/local/bin/node'))) {
    const b = await bundleRuntime(path.join(topDir, RUNTIME_DIR.slice(1)), { installedAt: RUNTIME_DIR, layerFormat: opts.layerFormat });
    runtime = { bytes: b.bytes };
    // `drydock os …` on the PATH, unless the image brings a drydock of its own.
    if (!(await inImage(rootfs, '/usr/local/bin/drydock')) && !(await inImage(rootfs, '/usr/bin/drydock'))) {
      await writeLayerFile(topDir, rootfs, 'usr/local/bin/drydock', `#!/.drydock/busybox sh\nexec ${RUNTIME_DIR}/bin/drydock "$@"\n`, 0o755);
    }
  }
  const { deployment } = await seedOsRoot(dataDir, new StoreImageSource(store, image), opts.ref, {
    insecureRegistries: opts.insecureRegistries, authfile, platform: { os: 'linux', architecture: 'amd64' }, layerFormat: opts.layerFormat,
  });
  await fsp.rm(path.join(os, 'top'), { recursive: true, force: true });
  await fsp.rename(topDir, path.join(os, 'top'));
  await fsp.mkdir(path.join(os, 'var'), { recursive: true });
  const imageVar = await fsp.lstat(path.join(rootfs, 'var')).catch(() => undefined);
  if (imageVar?.isDirectory()) await runTool('cp', ['-a', `${path.join(rootfs, 'var')}/.`, `${path.join(os, 'var')}/`]);
  await fsp.mkdir(path.join(os, 'etc'), { recursive: true });
  await fsp.mkdir(path.join(os, '.etc-work'), { recursive: true });
  const layout = new OsLayout(dataDir);
  // The boot partition's kernel, and its initramfs's boot.conf: what a deployment's own kernel
  // is compared with, and what its initramfs is made with (src/os/kernel.ts).
  if (kernel) await fsp.writeFile(layout.bootConfPath, kernel.bootConf);
  const state = {
    ...(await layout.readState()), bootTries: opts.bootTries, bootDeadlineSeconds: opts.bootDeadline,
    ...(kernel ? { diskKernel: { sha256: kernel.sha256, version: kernel.version } } : {}),
  } as OsState;
  await layout.writeState(state);
  return { deployment, state, runtime };
}
