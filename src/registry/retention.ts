// Tag retention as Zot has it (storage.retention in zot's config; here storage.maintenance.retention,
// with Zot's field names): per repository glob, which tags to keep; every other tag of a
// repository a policy covers is deleted, and with deleteUntagged, manifests no tag reaches once
// they are older than `delay`. gc (gc.ts) asks retentionPlan() what to delete before it marks, so
// the mark-and-sweep protocol is unchanged: a deleted tag only makes its blobs unreferenced.
//
// Push time is the tag's current link's modification time (rewritten by every PUT of the tag).
// Pull time comes from PullRecorder: the server notes pulls in memory and writes one small file
// per repository every few seconds and on shutdown, never on the request path.
import { parseDigest, type Digest } from '../image/digest.js';
import { parseDuration } from './duration.js';
import { isNotFound, type StorageDriver } from './storage/driver.js';
import { ROOT, paths } from './storage/paths.js';
import { RegistryStorage } from './storage.js';

export interface KeepTagsRule {
  /** Regexes a tag must match in full (default: every tag). */
  patterns?: string[];
  mostRecentlyPushedCount?: number;
  mostRecentlyPulledCount?: number;
  /** Durations ("168h"). */
  pulledWithin?: string;
  pushedWithin?: string;
}

export interface RetentionPolicy {
  /** Globs: `*` within one path component, `**` across them. */
  repositories: string[];
  deleteReferrers?: boolean;
  deleteUntagged?: boolean;
  keepTags?: KeepTagsRule[];
}

export interface RetentionConfig {
  dryRun?: boolean;
  /** Untagged manifests younger than this are kept (default 24h, Zot's). */
  delay?: string;
  policies?: RetentionPolicy[];
  /** drydock: how often the server writes recorded pull times (default "10s"). */
  pullFlushInterval?: string;
}

export interface RetentionPlan {
  tags: { repository: string; tag: string; digest: string }[];
  manifests: { repository: string; digest: string }[];
}

/** Checks a retention section; throws an Error naming the bad field. */
export function checkRetention(r: unknown): RetentionConfig | undefined {
  if (r === undefined || r === null) return undefined;
  if (typeof r !== 'object') throw new Error('storage.maintenance.retention must be a map');
  const c = r as RetentionConfig;
  if (c.delay !== undefined) parseDuration(c.delay, 0);
  if (c.policies !== undefined && !Array.isArray(c.policies)) throw new Error('storage.maintenance.retention.policies must be a list');
  for (const [i, p] of (c.policies ?? []).entries()) {
    const at = `storage.maintenance.retention.policies[${i}]`;
    if (!Array.isArray(p.repositories) || p.repositories.some((g) => typeof g !== 'string')) throw new Error(`${at}.repositories must be a list of globs`);
    for (const [j, k] of (p.keepTags ?? []).entries()) {
      for (const pat of k.patterns ?? []) {
        try { new RegExp(pat); } catch (e) { throw new Error(`${at}.keepTags[${j}].patterns: ${(e as Error).message}`); }
      }
      for (const f of ['mostRecentlyPushedCount', 'mostRecentlyPulledCount'] as const) {
        if (k[f] !== undefined && !(Number.isInteger(k[f]) && k[f]! >= 0)) throw new Error(`${at}.keepTags[${j}].${f} must be a non-negative integer`);
      }
      for (const f of ['pulledWithin', 'pushedWithin'] as const) if (k[f] !== undefined) parseDuration(k[f], 0);
    }
  }
  return c;
}

export function globToRegExp(glob: string): RegExp {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const ch = glob[i]!;
    if (ch === '*' && glob[i + 1] === '*') { re += '.*'; i++; } else if (ch === '*') re += '[^/]*';
    else if (ch === '?') re += '[^/]';
    else re += ch.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

/** The first policy whose globs match the repository, as in Zot. */
export function policyFor(config: RetentionConfig | undefined, repo: string): RetentionPolicy | undefined {
  return config?.policies?.find((p) => p.repositories.some((g) => globToRegExp(g).test(repo)));
}

const pullsFile = (repo: string) => `${ROOT}/_drydock/pulls/${repo}/pulltimes.json`;

export async function readPullTimes(driver: StorageDriver, repo: string): Promise<Record<string, number>> {
  try {
    const doc = JSON.parse((await driver.getContent(pullsFile(repo))).toString('utf8')) as unknown;
    return doc && typeof doc === 'object' ? (doc as Record<string, number>) : {};
  } catch {
    return {};
  }
}

/**
 * Pull times batched in memory: record() is a Map write; flush() (every interval, and on close)
 * merges them into each repository's pulltimes.json (tag → epoch ms). Two servers flushing one
 * repository at once may lose each other's newest times for that round, never older ones.
 */
export class PullRecorder {
  private pending = new Map<string, Map<string, number>>();
  private timer?: NodeJS.Timeout;
  private flushing?: Promise<void>;

  constructor(private readonly driver: StorageDriver, private readonly intervalMs: number) {}

  start(): void {
    this.timer = setInterval(() => { void this.flush().catch(() => {}); }, this.intervalMs);
    this.timer.unref();
  }

  record(repo: string, tag: string, at = Date.now()): void {
    let m = this.pending.get(repo);
    if (!m) this.pending.set(repo, (m = new Map()));
    m.set(tag, at);
  }

  async flush(): Promise<void> {
    await this.flushing;
    if (this.pending.size === 0) return;
    const batch = this.pending;
    this.pending = new Map();
    this.flushing = (async () => {
      for (const [repo, tags] of batch) {
        const times = await readPullTimes(this.driver, repo);
        for (const [tag, at] of tags) times[tag] = Math.max(times[tag] ?? 0, at);
        await this.driver.putContent(pullsFile(repo), JSON.stringify(times), { sync: false });
      }
    })();
    try { await this.flushing; } finally { this.flushing = undefined; }
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.flush();
  }
}

/** Which tags and untagged manifests the policies delete, as of `now`. */
export async function retentionPlan(driver: StorageDriver, config: RetentionConfig, now = Date.now()): Promise<RetentionPlan> {
  const storage = new RegistryStorage(driver, { cacheTtlMs: 0 });
  const plan: RetentionPlan = { tags: [], manifests: [] };
  const delay = parseDuration(config.delay, 24 * 3_600_000);
  for (const repo of await storage.repositories()) {
    const policy = policyFor(config, repo);
    if (!policy) continue;
    const pulls = await readPullTimes(driver, repo);
    const tags: { tag: string; digest: Digest; pushed: number; pulled: number }[] = [];
    for (const tag of await storage.tags(repo).catch(() => [] as string[])) {
      const digest = await storage.resolveTag(repo, tag).catch(() => undefined);
      if (!digest) continue;
      const pushed = (await driver.stat(paths.tagCurrent(repo, tag)).catch(() => undefined))?.modTime.getTime() ?? 0;
      tags.push({ tag, digest, pushed, pulled: pulls[tag] ?? 0 });
    }
    const keep = new Set<string>();
    if (!policy.keepTags || policy.keepTags.length === 0) for (const t of tags) keep.add(t.tag);
    for (const rule of policy.keepTags ?? []) {
      const res = (rule.patterns ?? []).map((p) => new RegExp(`^(?:${p})$`));
      const matching = tags.filter((t) => res.length === 0 || res.some((r) => r.test(t.tag)));
      const conditional = rule.mostRecentlyPushedCount !== undefined || rule.mostRecentlyPulledCount !== undefined || rule.pulledWithin !== undefined || rule.pushedWithin !== undefined;
      if (!conditional) { for (const t of matching) keep.add(t.tag); continue; }
      if (rule.mostRecentlyPushedCount !== undefined) {
        for (const t of [...matching].sort((a, b) => b.pushed - a.pushed || a.tag.localeCompare(b.tag)).slice(0, rule.mostRecentlyPushedCount)) keep.add(t.tag);
      }
      if (rule.mostRecentlyPulledCount !== undefined) {
        for (const t of matching.filter((t) => t.pulled > 0).sort((a, b) => b.pulled - a.pulled || a.tag.localeCompare(b.tag)).slice(0, rule.mostRecentlyPulledCount)) keep.add(t.tag);
      }
      if (rule.pushedWithin !== undefined) {
        const since = now - parseDuration(rule.pushedWithin, 0);
        for (const t of matching) if (t.pushed >= since) keep.add(t.tag);
      }
      if (rule.pulledWithin !== undefined) {
        const since = now - parseDuration(rule.pulledWithin, 0);
        for (const t of matching) if (t.pulled > 0 && t.pulled >= since) keep.add(t.tag);
      }
    }
    for (const t of tags) if (!keep.has(t.tag)) plan.tags.push({ repository: repo, tag: t.tag, digest: t.digest.value });

    if (policy.deleteUntagged) {
      // Untagged after the tag deletions above: nothing a kept tag reaches (children of an index, referrers).
      const reached = new Set<string>();
      const queue = tags.filter((t) => keep.has(t.tag)).map((t) => t.digest.value);
      const revisions = await listRevisions(driver, repo);
      const subjectOf = new Map<string, string>();
      const manifests = new Map<string, { manifests?: { digest: string }[]; subject?: { digest: string } } | undefined>();
      for (const d of revisions) {
        try {
          const m = JSON.parse((await driver.getContent(paths.blobData(d))).toString('utf8')) as { manifests?: { digest: string }[]; subject?: { digest: string } };
          manifests.set(d.value, m);
          if (typeof m.subject?.digest === 'string') subjectOf.set(d.value, m.subject.digest);
        } catch { manifests.set(d.value, undefined); }
      }
      while (queue.length > 0) {
        const d = queue.pop()!;
        if (reached.has(d)) continue;
        reached.add(d);
        for (const c of manifests.get(d)?.manifests ?? []) if (typeof c?.digest === 'string') queue.push(c.digest);
        for (const [r, s] of subjectOf) if (s === d) queue.push(r);
      }
      for (const d of revisions) {
        if (reached.has(d.value)) continue;
        // A referrer (signature, SBOM) of a manifest that is gone goes only with deleteReferrers, as in Zot.
        if (subjectOf.has(d.value) && !policy.deleteReferrers) continue;
        const st = await driver.stat(paths.revisionLink(repo, d)).catch(() => undefined);
        if (st && st.modTime.getTime() > now - delay) continue;
        plan.manifests.push({ repository: repo, digest: d.value });
      }
    }
  }
  return plan;
}

async function listRevisions(driver: StorageDriver, repo: string): Promise<Digest[]> {
  const out: Digest[] = [];
  let algDirs: string[];
  try { algDirs = await driver.list(paths.revisions(repo)); } catch (e) { if (isNotFound(e)) return out; throw e; }
  for (const algDir of algDirs) {
    const alg = algDir.slice(algDir.lastIndexOf('/') + 1);
    for (const hexDir of await driver.list(algDir).catch(() => [] as string[])) {
      try { out.push(parseDigest(`${alg}:${hexDir.slice(hexDir.lastIndexOf('/') + 1)}`)); } catch { /* not a digest */ }
    }
  }
  return out;
}
