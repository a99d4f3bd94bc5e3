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

export class LayerEntryRules {
  private readonly kinds = new Map<string, EntryKind>();

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

    for (let i = rel.indexOf('/'); i >= 0; i = rel.indexOf('/', i + 1)) {
      const parent = rel.slice(0, i);
      if (!this.kinds.has(parent)) this.kinds.set(parent, 'directory');
    }
    switch (h.type) {
      case 'directory':
        if (this.kinds.get(rel) !== 'directory') this.replace(rel, 'directory');
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
        const kind = this.kinds.get(linkTarget);
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
    for (let i = rel.indexOf('/'); i >= 0; i = rel.indexOf('/', i + 1)) {
      const parent = rel.slice(0, i);
      const kind = this.kinds.get(parent);
      if (kind === 'symlink') throw refuse.parentSymlink(entry, parent);
      if (kind === 'other') throw refuse.parentNotDirectory(entry, parent);
    }
  }

  private replace(rel: string, kind: EntryKind): void {
    this.remove(rel);
    this.kinds.set(rel, kind);
  }

  /** Forgets `rel` and, when it was a directory, everything beneath it. */
  private remove(rel: string): void {
    const was = this.kinds.get(rel);
    this.kinds.delete(rel);
    if (was !== 'directory') return;
    const prefix = `${rel}/`;
    for (const p of this.kinds.keys()) if (p.startsWith(prefix)) this.kinds.delete(p);
  }
}
