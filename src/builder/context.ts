// The build context, read in place (never copied or sent anywhere): .dockerignore filtering,
// COPY/ADD source resolution that can never leave the context, and content hashing for the
// cache (contents, modes and names, never mtimes).
import { createReadStream, promises as fsp, readdirSync, readFileSync, readlinkSync, lstatSync, type Stats } from 'node:fs';
import { createHash } from 'node:crypto';
import { createSha256, type Sha256Hash } from '../util/sha256.js';
import path from 'node:path';
import { PatternMatcher, readIgnoreFile, compileComponentGlob } from '../dockerfile/index.js';
import { UserError } from '../util/errors.js';
import { STREAM_CHUNK, readJsonIfExistsSync, writeJsonAtomic, lstatSyncOrUndefined, statSyncOrUndefined } from '../util/fs.js';

/** One resolved source: where it is on the host and the name it is known by. */
export interface SourceEntry {
  /** Host path (already resolved; a top-level symlink is followed inside its root). */
  hostPath: string;
  /** Path relative to the source root, slash-separated ("." for the root). */
  rel: string;
  stat: Stats;
}

const GLOB = /[*?[\\]/;

/**
 * Remembers file content hashes by (inode, size, mtime, ctime), like BuildKit's content-hash
 * cache and git's index: an unchanged file is not re-read on the next build. Any write or
 * metadata change moves ctime, so the content is hashed again.
 */
export class HashCache {
  private entries = new Map<string, [string, string]>();
  dirty = false;
  constructor(readonly file?: string) {}

  static async load(file: string): Promise<HashCache> {
    const c = new HashCache(file);
    // Synchronous, like the walk: one small file, read before anything else can run.
    let data: Record<string, [string, string]> | undefined;
    try { data = readJsonIfExistsSync<Record<string, [string, string]>>(file); } catch { data = undefined; }
    if (data) c.entries = new Map(Object.entries(data));
    return c;
  }

  get(hostPath: string, stamp: string): string | undefined {
    const e = this.entries.get(hostPath);
    return e && e[0] === stamp ? e[1] : undefined;
  }

  set(hostPath: string, stamp: string, hash: string): void {
    this.entries.set(hostPath, [stamp, hash]);
    this.dirty = true;
  }

  async save(): Promise<void> {
    if (!this.file || !this.dirty) return;
    // Not fsynced: a file lost or emptied by a crash is a cache miss (load() reads it as empty).
    await writeJsonAtomic(this.file, Object.fromEntries(this.entries), { durable: false });
    this.dirty = false;
  }
}

/** A tree COPY can read from: the build context, another stage's rootfs, or an image's. */
export class SourceTree {
  hashCache = new HashCache();

  constructor(
    readonly root: string,
    readonly matcher?: PatternMatcher,
    /** "build context" or "stage foo", for messages. */
    readonly description = 'build context',
    /** A container rootfs: absolute symlinks are anchored at the root (chroot semantics). */
    readonly isRootfs = false,
  ) {}

  static async openContext(dir: string, dockerfileRel?: string): Promise<SourceTree> {
    const root = path.resolve(dir);
    // Synchronous stat and reads here and in resolve(): a few small calls that every build makes
    // one after another, each a thread-pool round trip through fs.promises.
    const st = statSyncOrUndefined(root);
    if (!st?.isDirectory()) throw new UserError(`unable to prepare context: path "${dir}" not found or not a directory`);
    // Dockerfile.dockerignore next to the Dockerfile wins over .dockerignore, like BuildKit.
    const candidates = [...(dockerfileRel ? [`${dockerfileRel}.dockerignore`] : []), path.join(root, '.dockerignore')];
    for (const c of candidates) {
      let text: string | undefined;
      try { text = readFileSync(c, 'utf8'); } catch { text = undefined; }
      if (text !== undefined) {
        try {
          return new SourceTree(root, new PatternMatcher(readIgnoreFile(text)));
        } catch (e) {
          throw new UserError(`${path.basename(c)}: ${(e as Error).message}`, { cause: e });
        }
      }
    }
    return new SourceTree(root);
  }

  isIgnored(rel: string): boolean {
    return rel !== '.' && !!this.matcher?.matches(rel);
  }

  /**
   * Resolves COPY/ADD sources. Refuses "../" escapes and symlinks that leave the tree; expands
   * globs per path component like Docker (filepath.Match); hides .dockerignore'd files.
   */
  async resolve(sources: string[], instruction: string): Promise<SourceEntry[]> {
    const out: SourceEntry[] = [];
    for (const src of sources) {
      const cleaned = path.posix.normalize(src.replace(/^\/+/, ''));
      if (cleaned === '..' || cleaned.startsWith('../')) {
        throw new UserError(`${instruction} failed: forbidden path outside the ${this.description}: ${src}`);
      }
      const rel = cleaned === '' ? '.' : cleaned.replace(/\/+$/, '') || '.';
      const matches = GLOB.test(rel) ? await this.glob(rel) : [rel];
      const found: SourceEntry[] = [];
      for (const m of matches) {
        if (this.isIgnored(m)) continue;
        const hostPath = await this.followInTree(m, instruction, src);
        const stat = statSyncOrUndefined(hostPath);
        if (stat) found.push({ hostPath, rel: m, stat });
      }
      if (found.length === 0) {
        throw new UserError(`${instruction} failed: file not found in ${this.description}: stat ${src}: file does not exist${GLOB.test(rel) ? ' (no source files were specified by the pattern)' : ''}`);
      }
      out.push(...found);
    }
    return out;
  }

  /** Follows symlinks component by component, refusing any that leads out of the tree. */
  private async followInTree(rel: string, instruction: string, original: string): Promise<string> {
    const pending = rel === '.' ? [] : rel.split('/');
    const resolved: string[] = [];
    let links = 0;
    while (pending.length) {
      const comp = pending.shift()!;
      if (comp === '.' || comp === '') continue;
      if (comp === '..') {
        if (resolved.length === 0) {
          if (this.isRootfs) continue; // ".." at a rootfs's root stays there, like the kernel
          throw new UserError(`${instruction} failed: forbidden path outside the ${this.description}: ${original}`);
        }
        resolved.pop();
        continue;
      }
      const candidate = path.join(this.root, ...resolved, comp);
      const st = lstatSyncOrUndefined(candidate);
      if (st?.isSymbolicLink()) {
        if (++links > 40) throw new UserError(`${instruction} failed: too many levels of symbolic links: ${original}`);
        const target = readlinkSync(candidate);
        if (this.isRootfs) {
          if (target.startsWith('/')) resolved.length = 0;
          pending.unshift(...target.split('/'));
          continue;
        }
        // An absolute target, or a relative one climbing above the root, points outside the tree.
        if (target.startsWith('/') || path.posix.normalize(path.posix.join('.', ...resolved, target)).split('/')[0] === '..') {
          throw new UserError(`${instruction} failed: forbidden path outside the ${this.description}: ${original} is a symlink to ${target}`);
        }
        pending.unshift(...target.split('/'));
        continue;
      }
      resolved.push(comp);
    }
    return path.join(this.root, ...resolved);
  }

  /** Expands a glob pattern one path component at a time, like Docker. */
  private async glob(pattern: string): Promise<string[]> {
    const parts = pattern.split('/');
    let current = ['.'];
    for (const part of parts) {
      const next: string[] = [];
      for (const dir of current) {
        if (!GLOB.test(part)) { next.push(dir === '.' ? part : `${dir}/${part}`); continue; }
        const re = compileComponentGlob(part);
        const names = await fsp.readdir(path.join(this.root, dir)).catch(() => [] as string[]);
        for (const n of names.sort()) if (re.test(n)) next.push(dir === '.' ? n : `${dir}/${n}`);
      }
      current = next;
    }
    return current;
  }

  /** Walks a directory source (sorted), skipping ignored entries; yields every entry below it. */
  *walk(entry: SourceEntry): Generator<SourceEntry> {
    // Synchronous readdir/lstat: one fast syscall each, where a libuv round trip per entry made
    // walking a context of a few hundred files (every build hashes it) take ~100 ms under load.
    const names = readdirSync(entry.hostPath).sort();
    // hostPath is already clean and a name has no '/': concatenation, not path.join, whose
    // normalisation of the whole path was a third of the walk's time.
    const dir = entry.hostPath.endsWith('/') ? entry.hostPath : `${entry.hostPath}/`;
    for (const name of names) {
      const rel = entry.rel === '.' ? name : `${entry.rel}/${name}`;
      const hostPath = dir + name;
      const stat = lstatSync(hostPath);
      if (this.isIgnored(rel)) {
        if (stat.isDirectory() && !this.matcher!.canSkipDir(rel)) yield* this.walk({ hostPath, rel, stat });
        continue;
      }
      yield { hostPath, rel, stat };
      if (stat.isDirectory()) yield* this.walk({ hostPath, rel, stat });
    }
  }
}

/**
 * Content hash of the sources a COPY/ADD uses: names relative to each source, file modes,
 * symlink targets and file contents. mtimes and owners do not count (COPY resets owners).
 */
export async function hashSources(tree: SourceTree, entries: SourceEntry[]): Promise<string> {
  // Names, modes and the files' digests: a small input, hashed without loading node:crypto.
  const h = createSha256();
  for (const e of entries) {
    h.update(`source ${e.rel}\0`);
    await hashEntry(h, e, '.', tree.hashCache);
    if (e.stat.isDirectory()) {
      // A child's rel is always `${e.rel}/…` (walk builds it so): a slice, not path.relative.
      const cut = e.rel === '.' ? 0 : e.rel.length + 1;
      // Synchronous walk, and an await only for a file the hash cache does not know: a cached
      // context of a few hundred entries costs no promise per entry.
      for (const child of tree.walk(e)) {
        const pending = hashEntry(h, child, child.rel.slice(cut), tree.hashCache);
        if (pending) await pending;
      }
    }
  }
  return h.digest('hex');
}

/** Hashes one entry; returns a promise only when the file's content must be read. */
function hashEntry(h: Sha256Hash, e: SourceEntry, name: string, cache: HashCache): Promise<void> | undefined {
  const st = e.stat;
  h.update(`${name}\0${st.mode.toString(8)}\0`);
  if (st.isSymbolicLink()) h.update(`link ${readlinkSync(e.hostPath)}\0`);
  else if (st.isFile()) {
    const stamp = `${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`;
    const known = cache.get(e.hostPath, stamp);
    if (known) h.update(`file ${st.size} ${known}\0`);
    else return hashFile(h, e, stamp, cache);
  }
  return undefined;
}

async function hashFile(h: Sha256Hash, e: SourceEntry, stamp: string, cache: HashCache): Promise<void> {
  const fh = createHash('sha256');
  for await (const chunk of createReadStream(e.hostPath, { highWaterMark: STREAM_CHUNK })) fh.update(chunk as Buffer);
  const fileHash = fh.digest('hex');
  cache.set(e.hostPath, stamp, fileHash);
  h.update(`file ${e.stat.size} ${fileHash}\0`);
}
