// `drydock registry scrub`: re-hash every blob of a registry's storage and walk every manifest
// revision of every repository, so bit rot, a truncated file or a blob lost outside the registry
// (a bad restore, a hand-run `rm`) shows up before a client pulls it. Like Zot's scrub, the report
// names what a user pulls: the repository, the tags that reach a broken manifest or blob, and
// which reference is broken (the manifest itself, its config, a layer, an index's child).
//
// Blobs are hashed as streams from the driver (never whole in memory), a few at a time, and each
// digest once however many repositories link it. Read-only: nothing is repaired or deleted.
import { createHash } from 'node:crypto';
import { parseDigest, type Digest } from '../image/digest.js';
import { isNotFound, type StorageDriver } from './storage/driver.js';
import { paths } from './storage/paths.js';
import { RegistryStorage } from './storage.js';
import { listAllBlobs, listDigests } from './gc.js';

export interface ScrubOptions {
  /** Blobs hashed at once. Default 4. */
  concurrency?: number;
  /** Called with each problem as it is found. */
  onProblem?: (p: ScrubProblem) => void;
}

/** What a broken digest is to the manifest that references it. */
export type ScrubRole = 'manifest' | 'config' | 'layer' | 'child manifest' | 'blob';

export interface ScrubProblem {
  /** Absent for a corrupt blob no repository links. */
  repository?: string;
  /** Tags (sorted) whose image includes the broken content; empty for untagged content. */
  tags: string[];
  /** The manifest revision whose reference is broken (for role 'manifest', the revision itself). */
  manifest?: string;
  role: ScrubRole;
  digest: string;
  state: 'missing' | 'corrupt';
  /** For 'corrupt': what the bytes hash to, or why the manifest cannot be read. */
  detail?: string;
}

export interface ScrubResult {
  repositories: number;
  manifests: number;
  blobs: number;
  bytesHashed: number;
  problems: ScrubProblem[];
}

type BlobState = { state: 'ok' } | { state: 'missing' } | { state: 'corrupt'; detail: string };

interface ManifestRefs {
  config?: { digest: string };
  layers?: { digest: string }[];
  manifests?: { digest: string }[];
}

export async function scrubRegistry(driver: StorageDriver, opts: ScrubOptions = {}): Promise<ScrubResult> {
  const concurrency = Math.max(1, opts.concurrency ?? 4);
  const storage = new RegistryStorage(driver, { cacheTtlMs: 0 });
  const result: ScrubResult = { repositories: 0, manifests: 0, blobs: 0, bytesHashed: 0, problems: [] };
  const report = (p: ScrubProblem) => {
    result.problems.push(p);
    opts.onProblem?.(p);
  };

  // 1. Every blob in blobs/, hashed once.
  const states = new Map<string, BlobState>();
  const blobs = (await listAllBlobs(driver)).map((b) => b.digest);
  await pool(blobs, concurrency, async (d) => {
    const st = await hashBlob(driver, d);
    if (st.state === 'ok') result.bytesHashed += st.size;
    states.set(d.value, st.state === 'ok' ? { state: 'ok' } : st);
  });
  result.blobs = blobs.length;
  const stateOf = (digest: string): BlobState => states.get(digest) ?? { state: 'missing' };
  const reported = new Set<string>();

  // 2. Every repository: its revisions, what they reference, and which tags reach them.
  const repos = await storage.repositories();
  result.repositories = repos.length;
  for (const repo of repos) {
    const revisions = await listDigests(driver, paths.revisions(repo));
    result.manifests += revisions.length;
    const refs = new Map<string, ManifestRefs | undefined>();
    const readRefs = async (digest: string): Promise<ManifestRefs | undefined> => {
      if (refs.has(digest)) return refs.get(digest);
      let m: ManifestRefs | undefined;
      if (stateOf(digest).state === 'ok') {
        try {
          m = JSON.parse((await driver.getContent(paths.blobData(parseDigest(digest)))).toString('utf8')) as ManifestRefs;
        } catch { m = undefined; }
      }
      refs.set(digest, m);
      return m;
    };
    // Tags reaching each manifest: the tagged one and, for an index, its children.
    const tagsOf = new Map<string, Set<string>>();
    const reach = async (digest: string, tag: string, depth: number) => {
      const set = tagsOf.get(digest) ?? new Set<string>();
      if (set.has(tag) || depth > 64) return;
      set.add(tag);
      tagsOf.set(digest, set);
      for (const c of (await readRefs(digest))?.manifests ?? []) if (typeof c?.digest === 'string') await reach(c.digest, tag, depth + 1);
    };
    const tagged: { tag: string; digest: string }[] = [];
    for (const tag of await storage.tags(repo).catch(() => [] as string[])) {
      const d = await storage.resolveTag(repo, tag).catch(() => undefined);
      if (!d) continue;
      tagged.push({ tag, digest: d.value });
      await reach(d.value, tag, 0);
    }
    const tagsFor = (digest: string) => [...(tagsOf.get(digest) ?? [])].sort();
    const revisionSet = new Set(revisions.map((d) => d.value));

    // A tag pointing at a manifest this repository has no revision of (or no bytes for).
    for (const { tag, digest } of tagged) {
      if (revisionSet.has(digest)) continue;
      report({ repository: repo, tags: [tag], manifest: digest, role: 'manifest', digest, state: 'missing' });
      reported.add(digest);
    }
    for (const rev of revisions) {
      const d = rev.value;
      const st = stateOf(d);
      const tags = tagsFor(d);
      if (st.state !== 'ok') {
        report({ repository: repo, tags, manifest: d, role: 'manifest', digest: d, state: st.state, ...(st.state === 'corrupt' ? { detail: st.detail } : {}) });
        reported.add(d);
        continue;
      }
      const m = await readRefs(d);
      if (!m || typeof m !== 'object') {
        report({ repository: repo, tags, manifest: d, role: 'manifest', digest: d, state: 'corrupt', detail: 'not a JSON manifest' });
        reported.add(d);
        continue;
      }
      const check = (role: ScrubRole, ref: unknown) => {
        const digest = (ref as { digest?: unknown } | undefined)?.digest;
        if (typeof digest !== 'string') return;
        const bs = stateOf(digest);
        if (bs.state === 'ok') return;
        report({ repository: repo, tags, manifest: d, role, digest, state: bs.state, ...(bs.state === 'corrupt' ? { detail: bs.detail } : {}) });
        reported.add(digest);
      };
      check('config', m.config);
      for (const l of Array.isArray(m.layers) ? m.layers : []) check('layer', l);
      for (const c of Array.isArray(m.manifests) ? m.manifests : []) check('child manifest', c);
    }
  }

  // 3. Corrupt blobs nothing above referenced (no repository links them to a manifest).
  for (const [digest, st] of states) {
    if (st.state === 'corrupt' && !reported.has(digest)) report({ tags: [], role: 'blob', digest, state: 'corrupt', detail: st.detail });
  }
  return result;
}

/** Streams the blob's data through its digest's hash. */
async function hashBlob(driver: StorageDriver, d: Digest): Promise<{ state: 'ok'; size: number } | { state: 'missing' } | { state: 'corrupt'; detail: string }> {
  const hash = createHash(d.algorithm);
  try {
    const stream = await driver.reader(paths.blobData(d));
    for await (const chunk of stream) hash.update(chunk as Buffer);
  } catch (e) {
    if (isNotFound(e)) return { state: 'missing' };
    return { state: 'corrupt', detail: `unreadable: ${(e as Error).message}` };
  }
  const got = `${d.algorithm}:${hash.digest('hex')}`;
  if (got === d.value) return { state: 'ok', size: (await driver.stat(paths.blobData(d))).size };
  return { state: 'corrupt', detail: `content hashes to ${got}` };
}

async function pool<T>(items: T[], n: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, worker));
}



/** One line per problem, e.g. "library/app:v1,latest: layer sha256:… corrupt (content hashes to …) in manifest sha256:…". */
export function formatScrubProblem(p: ScrubProblem): string {
  const where = p.repository === undefined ? '(unreferenced)' : p.tags.length > 0 ? `${p.repository}:${p.tags.join(',')}` : `${p.repository} (untagged)`;
  const inManifest = p.manifest && p.role !== 'manifest' ? ` in manifest ${p.manifest}` : '';
  return `${where}: ${p.role} ${p.digest} ${p.state}${p.detail ? ` (${p.detail})` : ''}${inManifest}`;
}
