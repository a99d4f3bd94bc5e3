// Mark and sweep, like `registry garbage-collect`: mark every blob reachable from a manifest
// revision (with --delete-untagged, only from tagged manifests, their children and referrers),
// then delete unmarked blobs. Unlike distribution's, which wants the registry read-only, this gc
// is safe next to live servers on the same storage (another process, or an S3 bucket shared by
// many), without a lock between them:
//
// - Recent means linked, not written. Every way a blob enters a repository writes its link
//   there (upload commit, mount, and every manifest PUT that references it refreshes the links of
//   its blobs and its own revision link), so a blob is kept when its data or any link to it in
//   any repository is younger than the grace period before this run's start stamp, or was
//   written during the run. The stamp is a file the run writes, so its time and the links'
//   times come from the same clock (the filesystem's or the S3 server's).
// - Sweeping next to live pushes. A writer links first and then checks that the blob exists;
//   the sweep moves a blob out of blobs/ ("holds" it) and then looks for fresh links again. With
//   storage that is read-after-write consistent (a local filesystem; S3 since 2020), one of the
//   two sees the other: either the writer finds the blob gone and fails (or re-uploads it), or
//   the sweep finds the fresh link and puts the blob back before anything is deleted. So a
//   manifest that got 201 keeps every blob, whatever the interleaving. Links to swept blobs are
//   removed the same way: held, then put back if the blob exists again.
// - A gc that dies mid-sweep leaves its held blobs under _drydock/gc/<run>/; the next run puts
//   them back before it starts.
import { randomUUID } from 'node:crypto';
import { parseDigest, type Digest } from '../image/digest.js';
import { isNotFound, type StorageDriver } from './storage/driver.js';
import { BLOBS, GC_RUNS, REPOSITORIES, paths } from './storage/paths.js';
import { RegistryStorage } from './storage.js';
import { retentionPlan, type RetentionConfig } from './retention.js';

export interface GcOptions {
  dryRun?: boolean;
  deleteUntagged?: boolean;
  /** Blobs written or linked more recently than this are kept. Default 1 hour. */
  gracePeriodMs?: number;
  log?: (line: string) => void;
  /** Retention policies (storage.maintenance.retention): tags and untagged manifests they drop are deleted before marking. */
  retention?: RetentionConfig;
}

export interface GcResult {
  repositories: number;
  manifestsMarked: number;
  blobsMarked: number;
  manifestsDeleted: string[];
  /** "repo:tag" deleted by retention policies. */
  tagsDeleted: string[];
  blobsDeleted: string[];
  bytesFreed: number;
  /** Unreferenced blobs kept because their data or a link to them is recent (grace period, or during this run). */
  blobsKeptByGrace: number;
  /** Of those, blobs this run had already held back when a push linked them: put back in place. */
  blobsRestored: number;
}

interface ManifestJson {
  config?: { digest: string };
  layers?: { digest: string }[];
  manifests?: { digest: string }[];
  subject?: { digest: string };
}

interface BlobEntry { digest: Digest; size: number; modTime: Date }

export async function gcRegistry(driver: StorageDriver, opts: GcOptions = {}): Promise<GcResult> {
  const log = opts.log ?? (() => {});
  const grace = opts.gracePeriodMs ?? 3_600_000;
  const storage = new RegistryStorage(driver, { deleteEnabled: true, cacheTtlMs: 0 });
  const marked = new Set<string>();
  const result: GcResult = { repositories: 0, manifestsMarked: 0, blobsMarked: 0, manifestsDeleted: [], tagsDeleted: [], blobsDeleted: [], bytesFreed: 0, blobsKeptByGrace: 0, blobsRestored: 0 };
  const readManifest = async (d: Digest): Promise<ManifestJson | undefined> => {
    try {
      return JSON.parse((await driver.getContent(paths.blobData(d))).toString('utf8')) as ManifestJson;
    } catch {
      return undefined;
    }
  };

  const run = randomUUID();
  if (!opts.dryRun) await restoreHeld(driver, log);
  // Everything linked at or after `since` is recent. In a dry run nothing is written, so the
  // local clock stands in for the storage's.
  let since: number;
  if (opts.dryRun) {
    since = Date.now() - grace;
  } else {
    await driver.putContent(paths.gcStamp(run), new Date().toISOString());
    since = (await driver.stat(paths.gcStamp(run))).modTime.getTime() - grace;
  }
  try {
    // Retention decides which tags and manifests go; deleting them only unreferences blobs, so
    // the mark and sweep below (and its protocol) are the same with or without policies.
    const retentionDeleted = new Set<string>();
    const retentionUntagged = new Set<string>();
    if (opts.retention?.policies?.length) {
      const plan = await retentionPlan(driver, opts.retention);
      const dry = opts.dryRun || opts.retention.dryRun;
      for (const t of plan.tags) {
        result.tagsDeleted.push(`${t.repository}:${t.tag}`);
        retentionUntagged.add(`${t.repository}:${t.tag}`);
        log(`${dry ? 'would delete' : 'deleting'} tag ${t.repository}:${t.tag} (${t.digest}): retention`);
        if (!dry) await storage.deleteManifest(t.repository, t.tag).catch(() => {});
      }
      for (const m of plan.manifests) {
        result.manifestsDeleted.push(`${m.repository}@${m.digest}`);
        retentionDeleted.add(`${m.repository}@${m.digest}`);
        log(`${dry ? 'would delete' : 'deleting'} manifest ${m.repository}@${m.digest}: retention`);
        if (!dry) await storage.deleteManifest(m.repository, m.digest).catch(() => {});
      }
    }
    const repos = await storage.repositories();
    result.repositories = repos.length;
    for (const repo of repos) {
      // A dry run deleted nothing: leave out what retention would have deleted.
      const revisions = (await listDigests(driver, paths.revisions(repo))).filter((d) => !retentionDeleted.has(`${repo}@${d.value}`));
      const revisionSet = new Set(revisions.map((d) => d.value));
      let keep: Set<string>;
      if (opts.deleteUntagged) {
        // Reachable from tags: the tagged manifests, children of tagged indexes, and (transitively) their referrers.
        keep = new Set();
        const queue: string[] = [];
        for (const tag of await storage.tags(repo).catch(() => [] as string[])) {
          if (retentionUntagged.has(`${repo}:${tag}`)) continue; // a dry run left it in place
          const d = await storage.resolveTag(repo, tag);
          if (d && revisionSet.has(d.value)) queue.push(d.value);
        }
        const referrersOf = new Map<string, string[]>();
        for (const d of revisions) {
          const m = await readManifest(d);
          if (m?.subject?.digest) referrersOf.set(m.subject.digest, [...(referrersOf.get(m.subject.digest) ?? []), d.value]);
        }
        while (queue.length > 0) {
          const d = queue.pop()!;
          if (keep.has(d)) continue;
          keep.add(d);
          const m = await readManifest(parseDigest(d));
          for (const child of m?.manifests ?? []) if (revisionSet.has(child.digest)) queue.push(child.digest);
          for (const r of referrersOf.get(d) ?? []) queue.push(r);
        }
        for (const d of revisions) {
          if (keep.has(d.value)) continue;
          // A manifest pushed moments ago may be about to be tagged by its client: honour the grace period.
          const st = await driver.stat(paths.revisionLink(repo, d)).catch(() => undefined);
          if (st && st.modTime.getTime() >= since) { keep.add(d.value); continue; }
          result.manifestsDeleted.push(`${repo}@${d.value}`);
          log(`${opts.dryRun ? 'would delete' : 'deleting'} manifest ${repo}@${d.value}`);
          if (!opts.dryRun) await storage.deleteManifest(repo, d.value);
        }
      } else {
        keep = revisionSet;
      }
      for (const d of keep) {
        result.manifestsMarked++;
        marked.add(d);
        const m = await readManifest(parseDigest(d));
        if (m?.config?.digest) marked.add(m.config.digest);
        for (const l of m?.layers ?? []) marked.add(l.digest);
      }
    }
    result.blobsMarked = marked.size;

    // Candidates: unmarked, data older than the grace period, and no recent link anywhere.
    let candidates: BlobEntry[] = [];
    for (const blob of await listAllBlobs(driver)) {
      if (marked.has(blob.digest.value)) continue;
      if (blob.modTime.getTime() >= since) { result.blobsKeptByGrace++; continue; }
      candidates.push(blob);
    }
    const linkedBefore = await recentlyLinked(driver, candidates.map((b) => b.digest), since);
    result.blobsKeptByGrace += candidates.filter((b) => linkedBefore.has(b.digest.value)).length;
    candidates = candidates.filter((b) => !linkedBefore.has(b.digest.value));

    if (opts.dryRun) {
      for (const blob of candidates) {
        result.blobsDeleted.push(blob.digest.value);
        result.bytesFreed += blob.size;
        log(`would delete blob ${blob.digest.value} (${blob.size} bytes)`);
      }
      return result;
    }

    // Hold every candidate, then look for links once more: a push that linked a blob before we
    // held it is seen here; one that links it later finds it gone (see the header).
    const held: BlobEntry[] = [];
    for (const blob of candidates) {
      try {
        await driver.move(paths.blobData(blob.digest), paths.gcHeldBlob(run, blob.digest));
        held.push(blob);
      } catch (e) {
        if (!isNotFound(e)) throw e; // deleted by someone else meanwhile
      }
    }
    const linkedDuring = await recentlyLinked(driver, held.map((b) => b.digest), since);
    const swept = new Set<string>();
    for (const blob of held) {
      if (linkedDuring.has(blob.digest.value)) {
        await moveIfPresent(driver, paths.gcHeldBlob(run, blob.digest), paths.blobData(blob.digest));
        result.blobsKeptByGrace++;
        result.blobsRestored++;
        log(`keeping blob ${blob.digest.value}: linked while gc ran`);
        continue;
      }
      result.blobsDeleted.push(blob.digest.value);
      result.bytesFreed += blob.size;
      swept.add(blob.digest.value);
      log(`deleting blob ${blob.digest.value} (${blob.size} bytes)`);
      await driver.delete(paths.gcHeldBlob(run, blob.digest));
    }

    if (swept.size > 0) {
      // Repository links to swept blobs: held, and put back when the blob exists again (a push
      // that re-uploaded it links first and then moves the data in).
      for (const repo of await repositoriesWithLayers(driver)) {
        for (const d of await listDigests(driver, paths.layers(repo))) {
          if (!swept.has(d.value)) continue;
          const st = await driver.stat(paths.layerLink(repo, d)).catch(() => undefined);
          if (!st || st.modTime.getTime() >= since) continue;
          try {
            await driver.move(paths.layerLink(repo, d), paths.gcHeldLink(run, repo, d));
          } catch (e) {
            if (isNotFound(e)) continue;
            throw e;
          }
          if (await exists(driver, paths.blobData(d))) await moveIfPresent(driver, paths.gcHeldLink(run, repo, d), paths.layerLink(repo, d));
          else {
            // Only the held link goes, never the repository's link folder as a whole: a push may
            // be writing a fresh link into it right now (putContent's temp file, then the link).
            await driver.delete(paths.gcHeldLink(run, repo, d));
            await driver.deleteEmptyDir?.(paths.layerLinkDir(repo, d));
          }
        }
      }
    }
    return result;
  } finally {
    // After an error mid-sweep, what is still held goes back; if even that fails, the folder
    // stays for the next run to restore.
    if (!opts.dryRun) {
      await restoreRun(driver, run, log);
      await driver.delete(paths.gcRun(run));
    }
  }
}

async function exists(driver: StorageDriver, p: string): Promise<boolean> {
  try {
    await driver.stat(p);
    return true;
  } catch (e) {
    if (isNotFound(e)) return false;
    throw e;
  }
}

/** Every repository with blob links or manifests (a repository that only has mounted blobs counts). */
async function repositoriesWithLayers(driver: StorageDriver): Promise<string[]> {
  const found = new Set<string>();
  await driver.walk(REPOSITORIES, async (info) => {
    if (!info.isDir) return 'skip';
    const base = info.path.slice(info.path.lastIndexOf('/') + 1);
    if (!base.startsWith('_')) return undefined;
    if (base === '_layers' || base === '_manifests') found.add(info.path.slice(REPOSITORIES.length + 1, info.path.lastIndexOf('/')));
    return 'skip';
  });
  return [...found].sort();
}

/**
 * The digests among `digests` that some repository linked at or after `since`: a layer link
 * (upload, mount, or a manifest PUT referencing it) or a revision link (the blob is a manifest).
 * Lists the repositories afresh, so one created since the mark phase is seen.
 */
async function recentlyLinked(driver: StorageDriver, digests: Digest[], since: number): Promise<Set<string>> {
  const recent = new Set<string>();
  if (digests.length === 0) return recent;
  const wanted = new Set(digests.map((d) => d.value));
  for (const repo of await repositoriesWithLayers(driver)) {
    for (const [dir, link] of [[paths.layers(repo), paths.layerLink], [paths.revisions(repo), paths.revisionLink]] as const) {
      for (const d of await listDigests(driver, dir)) {
        if (!wanted.has(d.value) || recent.has(d.value)) continue;
        const st = await driver.stat(link(repo, d)).catch(() => undefined);
        if (st && st.modTime.getTime() >= since) recent.add(d.value);
      }
    }
  }
  return recent;
}

/** Puts back the blobs and links that runs which died mid-sweep (or are sweeping now) hold: keeping garbage is always safe. */
async function restoreHeld(driver: StorageDriver, log: (line: string) => void): Promise<void> {
  for (const runDir of await driver.list(GC_RUNS).catch(() => [] as string[])) {
    await restoreRun(driver, runDir.slice(runDir.lastIndexOf('/') + 1), log);
  }
}

async function restoreRun(driver: StorageDriver, id: string, log: (line: string) => void): Promise<void> {
  for (const entry of await driver.list(paths.gcHeldBlobs(id)).catch(() => [] as string[])) {
    const d = heldDigest(entry);
    if (!d) continue;
    if (await moveIfPresent(driver, entry, paths.blobData(d))) log(`restored blob ${d.value} held by gc run ${id}`);
  }
  const linksDir = paths.gcHeldLinks(id);
  const links: string[] = [];
  await driver.walk(linksDir, (info) => { if (!info.isDir) links.push(info.path); });
  for (const entry of links) {
    const d = heldDigest(entry);
    if (!d) continue;
    await moveIfPresent(driver, entry, paths.layerLink(entry.slice(linksDir.length + 1, entry.lastIndexOf('/')), d));
  }
}

/** False when the source is gone: another gc run restored or deleted it first. */
async function moveIfPresent(driver: StorageDriver, from: string, to: string): Promise<boolean> {
  try {
    await driver.move(from, to);
    return true;
  } catch (e) {
    if (isNotFound(e)) return false;
    throw e;
  }
}

function heldDigest(p: string): Digest | undefined {
  const base = p.slice(p.lastIndexOf('/') + 1);
  const dash = base.indexOf('-');
  try {
    return parseDigest(`${base.slice(0, dash)}:${base.slice(dash + 1)}`);
  } catch {
    return undefined;
  }
}

/** The digests named by `<dir>/<algorithm>/<hex>` directories (blobs/, _layers/, revisions/). */
export async function listDigests(driver: StorageDriver, dir: string): Promise<Digest[]> {
  const out: Digest[] = [];
  for (const algDir of await driver.list(dir).catch(() => [] as string[])) {
    const alg = algDir.slice(algDir.lastIndexOf('/') + 1);
    for (const hexDir of await driver.list(algDir).catch(() => [] as string[])) {
      try {
        out.push(parseDigest(`${alg}:${hexDir.slice(hexDir.lastIndexOf('/') + 1)}`));
      } catch { /* not a digest directory */ }
    }
  }
  return out;
}

/** Blobs with data. A blob directory without data (a crash between mkdir and rename, or a blob swept earlier) holds nothing to sweep. */
export async function listAllBlobs(driver: StorageDriver): Promise<BlobEntry[]> {
  const out: BlobEntry[] = [];
  for (const algDir of await driver.list(BLOBS).catch(() => [] as string[])) {
    const alg = algDir.slice(algDir.lastIndexOf('/') + 1);
    for (const prefixDir of await driver.list(algDir).catch(() => [] as string[])) {
      for (const hexDir of await driver.list(prefixDir).catch(() => [] as string[])) {
        let digest: Digest;
        try {
          digest = parseDigest(`${alg}:${hexDir.slice(hexDir.lastIndexOf('/') + 1)}`);
        } catch { continue; }
        const st = await driver.stat(`${hexDir}/data`).catch(() => undefined);
        if (st) out.push({ digest, size: st.size, modTime: st.modTime });
      }
    }
  }
  return out;
}

export { REPOSITORIES };
