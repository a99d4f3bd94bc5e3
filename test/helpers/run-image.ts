// Runs a stored image's default command (or given args) in real runc through src/runtime, the
// way `docker run IMAGE` would, and captures its output. For tests that check what a build made.
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { ContentStore, resolveImage } from '../../src/store/index.js';
import { ensureLayersUnpacked, mountRootfs, createRuntimeSpec, runOnceCaptured } from '../../src/runtime/index.js';

export async function runImage(root: string, image: string, opts: { args?: string[]; network?: 'none' | 'host' } = {}): Promise<{ code: number; out: string; err: string }> {
  const store = await ContentStore.open(root);
  const img = await resolveImage(store, image);
  const c = img.config.config ?? {};
  const lowers = await ensureLayersUnpacked(store, img.manifest.layers.map((l, i) => ({ digest: l.digest, mediaType: l.mediaType, diffID: img.config.rootfs.diff_ids[i]! })));
  const id = `test-run-${randomBytes(5).toString('hex')}`;
  const work = path.join(root, 'test-runs', id);
  const m = await mountRootfs({ lowerDirs: lowers, workDir: work });
  try {
    const args = [...(c.Entrypoint ?? []), ...(opts.args ?? c.Cmd ?? [])];
    const spec = await createRuntimeSpec({ rootfs: m.rootfs, args, env: c.Env ?? [], cwd: c.WorkingDir || '/', user: c.User ?? '', network: opts.network ?? 'none', hostFilesDir: path.join(work, 'hostfiles') });
    const r = await runOnceCaptured({ id, bundleDir: path.join(work, 'bundle'), spec });
    return { code: r.exitCode, out: r.stdout, err: r.stderr };
  } finally {
    await m.unmount();
    await fsp.rm(work, { recursive: true, force: true });
  }
}
