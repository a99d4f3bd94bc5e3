// Shared setup for the builder tests: a temp store with the busybox base, context dirs written
// from a { path: content } table, and a build() that captures the progress output.
import { promises as fsp } from 'node:fs';
import { PassThrough } from 'node:stream';
import path from 'node:path';
import { tempDir, requireRoot, requireTool } from '../helpers/env.js';
import { busyboxImage } from '../helpers/images.js';
import { build, type BuildOptions, type BuildResult } from '../../src/builder/index.js';
import { ContentStore } from '../../src/store/index.js';

export interface Fixture {
  root: string;
  store: ContentStore;
  /** Writes files (string = content, { link } = symlink) into a fresh context dir. */
  context(files: Record<string, string | { link: string } | { mode: number; content: string }>): Promise<string>;
  build(dir: string, opts?: Partial<BuildOptions>): Promise<BuildResult & { log: string }>;
}

export async function builderFixture(name: string): Promise<Fixture> {
  requireRoot();
  requireTool('runc');
  const base = tempDir(`drydock-builder-${name}-`);
  const root = path.join(base, 'store');
  process.env.DRYDOCK_ROOT = root;
  await busyboxImage(root);
  const store = await ContentStore.open(root);
  let n = 0;
  return {
    root,
    store,
    async context(files) {
      const dir = path.join(base, `ctx${n++}`);
      await fsp.mkdir(dir, { recursive: true });
      for (const [p, v] of Object.entries(files)) {
        const abs = path.join(dir, p);
        await fsp.mkdir(path.dirname(abs), { recursive: true });
        if (typeof v === 'string') await fsp.writeFile(abs, v);
        else if ('link' in v) await fsp.symlink(v.link, abs);
        else await fsp.writeFile(abs, v.content, { mode: v.mode });
      }
      return dir;
    },
    async build(dir, opts = {}) {
      const progress = new PassThrough();
      let log = '';
      progress.on('data', (d) => (log += d));
      try {
        const r = await build({ context: dir, store, progress, ...opts });
        return { ...r, log };
      } catch (e) {
        (e as Error & { log?: string }).log = log;
        throw e;
      }
    },
  };
}
