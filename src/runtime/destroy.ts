// Tearing a stopped container down to nothing. Its own module because both ends of a
// container's life need it: `rm` (lifecycle.ts) and a --rm runner finishing (runner.ts); with it
// in lifecycle.ts the runner had to import lifecycle lazily, hiding an import cycle.
import { promises as fsp } from 'node:fs';
import type { Container } from './containers.js';
import { deleteContainer } from './runc.js';
import { unmountPath } from './overlay.js';
import { teardownBridgeNetwork } from './network.js';
import { removeVolume, inspectVolume } from './volumes.js';
import { ContentStore } from '../store/content-store.js';

/**
 * Removes everything a stopped container owns. Every step is idempotent, so a runner that is
 * still finishing (the foreground --rm path) and `rm -f` may both run it.
 */
export async function destroyContainer(c: Container, o: { volumes?: boolean } = {}): Promise<void> {
  const id = c.record.Id;
  await deleteContainer(id, { force: true, runtime: c.record.HostConfig.Runtime });
  if (c.state.Network) await teardownBridgeNetwork(c.state.Network, id);
  await unmountPath(c.paths.merged);
  if (o.volumes) {
    for (const m of c.record.HostConfig.Mounts) {
      if (m.Type === 'volume' && m.Anonymous && m.Source && (await inspectVolume(m.Source))) await removeVolume(m.Source, { force: true }).catch(() => {});
    }
  }
  await fsp.rm(c.paths.dir, { recursive: true, force: true });
  if (!c.record.HostConfig.AutoRemove) {
    await (await ContentStore.open()).removeRoot(`container/${id}`);
  }
}
