// The rules a layer's entries must follow, in one place for the two sides that enforce them:
// the extractor (apply.ts) and the validation that import and load run before a layer is
// stored (validate.ts). Whatever the extractor would refuse, the validation refuses from the
// same code with the same message, so no store holds a layer that cannot run.
//
// The rules keep a model of the tree this layer builds (path -> directory, symlink or other),
// which is all the archive itself can tell: a hardlink whose target's parent is a symlink
// planted earlier, a hardlink to a symlink with entries beneath the link, an entry beneath a
// file. What a lower layer left on disk only the extractor can see; it checks that with lstat
// and words its refusals with the same helpers below.
import path from 'node:path';
import type { Header } from 'tar-stream';
import { LayerError } from './errors.js';
import { WHITEOUT_PREFIX, OPAQUE_WHITEOUT } from './create.js';

/** tar-stream's header with the PAX records it parses (missing from @types/tar-stream). */
export type EntryHeader = Omit<Header, 'pax' | 'type'> & {
  type: string;
  pax?: Record<string, string> | null;
  /** SCHILY.xattr.* values as raw bytes, from TarHeaderTap (tar-stream's are UTF-8 decoded). */
  rawXattrs?: Map<string, Buffer>;
};

/** Longest entry name or link target accepted (Linux PATH_MAX). */
export const MAX_PATH_LENGTH = 4096;
/** Cap on one entry's PAX records: real archives use a few hundred bytes. */
export const MAX_PAX_BYTES = 1 << 20;

const SUPPORTED_TYPES = new Set(['directory', 'file', 'contiguous-file', 'symlink', 'link', 'character-device', 'block-device', 'fifo']);

/** Refuses an entry whose PAX records exceed MAX_PAX_BYTES. */
export function checkPaxSize(h: EntryHeader): void {
  const paxBytes = Object.entries(h.pax ?? {}).reduce((n, [k, v]) => n + k.length + String(v).length + 16, 0);
  if (paxBytes > MAX_PAX_BYTES) throw new LayerError(`entry "${h.name.slice(0, 200)}": PAX header of ${paxBytes} bytes exceeds the ${MAX_PAX_BYTES}-byte cap`);
}

/**
 * Normalises an archive path to a clean relative one ("./a//b/" -> "a/b"), or throws naming the
 * entry when it is absolute or climbs out of the root. Returns "" for the root itself.
 */
export function normalizeEntryPath(name: string, what = 'entry'): string {
  if (name.length > MAX_PATH_LENGTH) throw new LayerError(`${what} "${name.slice(0, 80)}...": path longer than ${MAX_PATH_LENGTH} bytes`);
  if (name.includes('\0')) throw new LayerError(`${what} "${name}": path contains a NUL byte`);
  if (name.startsWith('/')) throw new LayerError(`${what} "${name}": absolute paths are refused (would escape the root)`);
  const parts: string[] = [];
  for (const part of name.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') throw new LayerError(`${what} "${name}": ".." path components are refused (would escape the root)`);
    parts.push(part);
  }
  return parts.join('/');
}

// The refusals both sides raise, worded once.
export const refuse = {
  parentSymlink: (entry: string, parent: string) => new LayerError(`entry "${entry}": parent "${parent}" is a symlink; refusing to follow it (could escape the root)`),
  parentNotDirectory: (entry: string, parent: string) => new LayerError(`entry "${entry}": parent "${parent}" is not a directory`),
  linkTargetMissing: (entry: string, target: string) => new LayerError(`entry "${entry}": hardlink target "${target}" does not exist in the layer stack`),
  linkTargetDirectory: (entry: string, target: string) => new LayerError(`entry "${entry}": hardlink target "${target}" is a directory`),
};

export type EntryKind = 'directory' | 'symlink' | 'other';

/** What the rules made of an entry, for the extractor. */
export interface CheckedEntry {
  /** Normalised path ("" for the root, which is skipped). */
  rel: string;
  /** Set for a whiteout: the name it deletes in its directory, or "" for an opaque marker. */
  whiteout?: { victim: string };
  /** Set for a hardlink: its normalised target. */
  linkTarget?: string;
}

interface TreeNode { kind: EntryKind; children?: Map<string, TreeNode> }

export class LayerEntryRules {
  /**
   * The tree this layer builds. A tree rather than a map of paths, so replacing or whiting out
   * a directory drops its subtree in one step: a layer of many directories, each later
   * replaced, must not cost a scan of every path per entry.
   */
  private readonly root: TreeNode = { kind: 'directory', children: new Map() };

  /**
   * @param lower 'none' when the layer must stand alone (import, load: it is unpacked into
   *   an empty directory of its own to serve as an overlay lower dir); 'unknown' when it is
   *   applied onto a tree the rules cannot see (extraction, which checks that tree itself).
   */
  constructor(private readonly lower: 'none' | 'unknown') {}

  /** Checks one entry against the rules and records what it adds to the tree; throws LayerError. */
  check(h: EntryHeader): CheckedEntry {
    checkPaxSize(h);
    const rel = normalizeEntryPath(h.name);
    if (rel === '') return { rel };
    if (!SUPPORTED_TYPES.has(h.type)) throw new LayerError(`entry "${h.name}": unsupported tar entry type "${h.type}"`);
    const base = path.posix.basename(rel);
    const dirRel = path.posix.dirname(rel) === '.' ? '' : path.posix.dirname(rel);
    this.checkParents(rel, h.name);

    if (base.startsWith(WHITEOUT_PREFIX)) {
      if (base === OPAQUE_WHITEOUT) return { rel, whiteout: { victim: '' } };
      const victim = base.slice(WHITEOUT_PREFIX.length);
      if (!victim || victim === '.' || victim === '..' || victim.startsWith(WHITEOUT_PREFIX)) {
        throw new LayerError(`entry "${h.name}": invalid whiteout name`);
      }
      this.remove(dirRel ? `${dirRel}/${victim}` : victim);
      return { rel, whiteout: { victim } };
    }

    switch (h.type) {
      case 'directory':
        if (this.lookup(rel)?.kind !== 'directory') this.replace(rel, 'directory');
        return { rel };
      case 'symlink': {
        const target = h.linkname ?? '';
        if (!target) throw new LayerError(`entry "${h.name}": symlink without a target`);
        if (target.length > MAX_PATH_LENGTH) throw new LayerError(`entry "${h.name}": symlink target longer than ${MAX_PATH_LENGTH} bytes`);
        this.replace(rel, 'symlink');
        return { rel };
      }
      case 'link': {
        const linkname = h.linkname ?? '';
        if (linkname.startsWith('/')) throw new LayerError(`entry "${h.name}": hardlink to absolute path "${linkname}" is refused (would escape the root)`);
        const linkTarget = normalizeEntryPath(linkname, `hardlink "${h.name}" target`);
        if (!linkTarget) throw new LayerError(`entry "${h.name}": hardlink to the root directory`);
        this.checkParents(linkTarget, h.name);
        const kind = this.lookup(linkTarget)?.kind;
        if (kind === 'directory') throw refuse.linkTargetDirectory(h.name, linkname);
        if (!kind && this.lower === 'none') throw refuse.linkTargetMissing(h.name, linkname);
        // link(2) does not follow a symlink: a hardlink to one is another symlink.
        if (linkTarget !== rel) this.replace(rel, kind ?? 'other');
        return { rel, linkTarget };
      }
      default:
        this.replace(rel, 'other');
        return { rel };
    }
  }

  /** Refuses a path beneath a symlink or a non-directory this layer put in the way. */
  private checkParents(rel: string, entry: string): void {
    const parts = rel.split('/');
    let node = this.root;
    for (let i = 0; i < parts.length - 1; i++) {
      const next = node.children!.get(parts[i]!);
      if (!next) return; // not in this layer: nothing of ours beneath it either
      if (next.kind === 'symlink') throw refuse.parentSymlink(entry, parts.slice(0, i + 1).join('/'));
      if (next.kind === 'other') throw refuse.parentNotDirectory(entry, parts.slice(0, i + 1).join('/'));
      node = next;
    }
  }

  private lookup(rel: string): TreeNode | undefined {
    let node: TreeNode | undefined = this.root;
    for (const part of rel.split('/')) {
      node = node.children?.get(part);
      if (!node) return undefined;
    }
    return node;
  }

  /** Sets `rel` to a fresh node of `kind` (dropping what was there), creating parent directories. */
  private replace(rel: string, kind: EntryKind): void {
    const parts = rel.split('/');
    let node = this.root;
    for (const part of parts.slice(0, -1)) {
      let next = node.children!.get(part);
      // checkParents ran first: an existing parent here is a directory.
      if (!next) node.children!.set(part, next = { kind: 'directory', children: new Map() });
      node = next;
    }
    node.children!.set(parts.at(-1)!, kind === 'directory' ? { kind, children: new Map() } : { kind });
  }

  /** Forgets `rel` and everything beneath it. */
  private remove(rel: string): void {
    const slash = rel.lastIndexOf('/');
    const parent = slash < 0 ? this.root : this.lookup(rel.slice(0, slash));
    parent?.children?.delete(rel.slice(slash + 1));
  }
}
