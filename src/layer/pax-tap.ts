// The header tap: a strict tar header reader that sees every byte of a tar stream just before
// tar-stream does (it is fed each chunk first), tracking only header structure. It does three
// things tar-stream cannot:
// - keeps each entry's SCHILY.xattr.* values as raw bytes (tar-stream decodes PAX values as
//   UTF-8, which destroys binary values such as security.capability). Entries are numbered in
//   archive order, the order tar-stream emits them in, so entry n's xattrs are ready when
//   tar-stream hands out entry n;
// - refuses negative, fractional, NaN and oversized sizes (tar-fields.ts), malformed PAX records
//   and oversized extended headers, naming the entry, before tar-stream can misread them;
// - counts the uncompressed bytes against the layer's ExpansionBudget (limits.ts), checking a
//   file's declared size when its header arrives.
// Extraction, import/load validation and export all read tars through it.
import { BLOCK } from './tar-writer.js';
import { checksumMatches, headerBlockName, headerSize, paxSize } from './tar-fields.js';
import { LayerError } from './errors.js';
import type { ExpansionBudget } from './limits.js';

const XATTR_PREFIX = 'SCHILY.xattr.';
const ZERO_BLOCK = Buffer.alloc(BLOCK);
/** Cap on one extended header (PAX records, GNU long name): real ones are a few hundred bytes. */
export const MAX_META = 1 << 20;

/**
 * Binary-safe PAX record parser: keys are UTF-8, values stay bytes. A record whose length
 * field is not a number, overruns the data or lacks "=" is refused, so no reader of the same
 * bytes can find records this one skipped.
 */
export function parsePaxRecords(data: Buffer, entry = 'PAX header'): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  let pos = 0;
  while (pos < data.length) {
    // Some writers pad the records with NULs.
    if (data[pos] === 0) { if (data.subarray(pos).every((b) => b === 0)) break; }
    const sp = data.indexOf(0x20, pos);
    const lenText = sp < 0 ? '' : data.toString('latin1', pos, sp);
    const len = /^[0-9]{1,7}$/.test(lenText) ? Number(lenText) : NaN;
    const eq = sp < 0 ? -1 : data.indexOf(0x3d, sp + 1);
    if (!(len > 0) || pos + len > data.length || eq < 0 || eq >= pos + len || data[pos + len - 1] !== 0x0a) {
      throw new LayerError(`entry ${JSON.stringify(entry)}: malformed PAX record at byte ${pos} of its extended header`);
    }
    out.set(data.toString('utf8', sp + 1, eq), data.subarray(eq + 1, pos + len - 1));
    pos += len;
  }
  return out;
}

export class TarHeaderTap {
  /** Per entry (archive order): its xattrs with raw values, or undefined. */
  readonly entries: (Map<string, Buffer> | undefined)[] = [];
  private header: Buffer[] = [];
  private headerLength = 0;
  /** Bytes of entry data (plus padding) still to skip or capture. */
  private remaining = 0;
  private capture: Buffer[] | undefined;
  private captureSize = 0;
  private captureType = '';
  private captureName = '';
  private pending: Map<string, Buffer> | undefined;
  private longName: string | undefined;
  /** The entry whose data is being read, for errors. */
  private current = '';
  /** Bytes followed so far (header offsets for errors). */
  private offset = 0;

  constructor(private readonly budget?: ExpansionBudget) {}

  /** Follows `chunk`; throws a LayerError naming the entry when a header is refused. */
  feed(chunk: Buffer): void {
    try {
      this.follow(chunk);
    } finally {
      this.offset += chunk.length;
    }
  }

  private follow(chunk: Buffer): void {
    let off = 0;
    while (off < chunk.length) {
      if (this.remaining > 0) {
        const n = Math.min(this.remaining, chunk.length - off);
        this.budget?.expand(n, this.current);
        if (this.capture) this.capture.push(chunk.subarray(off, off + n));
        this.remaining -= n;
        off += n;
        if (this.remaining === 0 && this.capture) this.finishMeta();
        continue;
      }
      if (this.headerLength === 0 && chunk.length - off >= BLOCK) {
        // The whole block in this chunk (the usual case): no copy.
        off += BLOCK;
        this.budget?.expand(BLOCK, this.current);
        this.onHeader(chunk.subarray(off - BLOCK, off), this.offset + off - BLOCK);
        continue;
      }
      const n = Math.min(BLOCK - this.headerLength, chunk.length - off);
      this.header.push(chunk.subarray(off, off + n));
      this.headerLength += n;
      off += n;
      if (this.headerLength === BLOCK) {
        const block = Buffer.concat(this.header, BLOCK);
        this.header = [];
        this.headerLength = 0;
        this.budget?.expand(BLOCK, this.current);
        this.onHeader(block, this.offset + off - BLOCK);
      }
    }
  }

  private onHeader(block: Buffer, at: number): void {
    if (block[0] === 0 && block.equals(ZERO_BLOCK)) return; // end-of-archive blocks
    // As tar-stream would: a block that is not a header says nothing about sizes.
    if (!checksumMatches(block)) throw new LayerError(`not a valid tar archive: bad header checksum at byte ${at} (corrupt, or compressed with something drydock does not read)`);
    const type = String.fromCharCode(block[156] || 0x30);
    const blockName = headerBlockName(block);
    if (type === 'x' || type === 'g' || type === 'L' || type === 'K') {
      const size = headerSize(block, blockName);
      if (size > MAX_META) throw new LayerError(`entry ${JSON.stringify(blockName)}: extended header of ${size} bytes exceeds the ${MAX_META}-byte cap`);
      // No writer makes one; tar-stream skips it without clearing its state and then reads the
      // next entry's padding as that header's data, so the entries after it differ by reader.
      if (size === 0) throw new LayerError(`entry ${JSON.stringify(blockName)}: empty extended header (type ${type}), which tar readers disagree on`);
      if (type !== 'K') { this.capture = []; this.captureSize = size; this.captureType = type; this.captureName = blockName; }
      this.current = blockName;
      this.remaining = size + ((BLOCK - (size % BLOCK)) % BLOCK);
      if (this.remaining === 0 && this.capture) this.finishMeta();
      return;
    }
    const paxPath = this.pending?.get('path');
    const name = paxPath ? paxPath.toString('utf8') : this.longName ?? blockName;
    this.current = name;
    let size = headerSize(block, name);
    const sizeOverride = this.pending?.get('size');
    if (sizeOverride) size = paxSize(sizeOverride.toString('latin1'), name);
    let xattrs: Map<string, Buffer> | undefined;
    for (const [k, v] of this.pending ?? []) {
      if (k.startsWith(XATTR_PREFIX)) (xattrs ??= new Map()).set(k.slice(XATTR_PREFIX.length), v);
    }
    this.entries.push(xattrs);
    this.pending = undefined;
    this.longName = undefined;
    // Like tar-stream: every type but a directory carries `size` bytes of data.
    const data = type === '5' ? 0 : size;
    this.budget?.declare(data, name);
    this.remaining = data + ((BLOCK - (data % BLOCK)) % BLOCK);
  }

  private finishMeta(): void {
    const data = Buffer.concat(this.capture!).subarray(0, this.captureSize);
    this.capture = undefined;
    if (this.captureType === 'L') {
      const end = data.indexOf(0);
      this.longName = data.toString('utf8', 0, end < 0 ? data.length : end);
      return;
    }
    const records = parsePaxRecords(data, this.captureName);
    if (this.captureType === 'g') {
      // tar-stream would apply a global size only to entries that also have their own PAX header.
      if (records.has('size')) throw new LayerError(`entry ${JSON.stringify(this.captureName)}: a global PAX header may not set "size"`);
      return;
    }
    this.pending = records;
  }
}
