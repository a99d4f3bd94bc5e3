// tar-stream decodes PAX values as UTF-8 strings, which destroys binary xattr values such as
// security.capability. This tap follows the same byte stream alongside tar-stream, tracking
// only header structure, and keeps each entry's SCHILY.xattr.* values as raw bytes. Entries are
// numbered in archive order, the order tar-stream emits them in; the tap sees every header
// before tar-stream does (it is fed each chunk first), so entry n's xattrs are ready when
// tar-stream hands out entry n.
import { BLOCK, parseTarNumber } from './tar-writer.js';

const XATTR_PREFIX = 'SCHILY.xattr.';
const MAX_META = 1 << 20;

/** Binary-safe PAX record parser: keys are ASCII, values stay bytes. */
export function parsePaxRecords(data: Buffer): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  let pos = 0;
  while (pos < data.length) {
    const sp = data.indexOf(0x20, pos);
    if (sp < 0) break;
    const len = parseInt(data.toString('ascii', pos, sp), 10);
    if (!(len > 0) || pos + len > data.length) break;
    const eq = data.indexOf(0x3d, sp + 1);
    if (eq < 0 || eq >= pos + len) break;
    out.set(data.toString('utf8', sp + 1, eq), data.subarray(eq + 1, pos + len - 1));
    pos += len;
  }
  return out;
}

export class RawXattrTap {
  /** Per entry (archive order): its xattrs with raw values, or undefined. */
  readonly entries: (Map<string, Buffer> | undefined)[] = [];
  private header: Buffer[] = [];
  private headerLength = 0;
  /** Bytes of entry data (plus padding) still to skip or capture. */
  private remaining = 0;
  private capture: Buffer[] | undefined;
  private captureSize = 0;
  private pending: Map<string, Buffer> | undefined;

  feed(chunk: Buffer): void {
    let off = 0;
    while (off < chunk.length) {
      if (this.remaining > 0) {
        const n = Math.min(this.remaining, chunk.length - off);
        if (this.capture) this.capture.push(chunk.subarray(off, off + n));
        this.remaining -= n;
        off += n;
        if (this.remaining === 0 && this.capture) this.finishMeta();
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
        this.onHeader(block);
      }
    }
  }

  private onHeader(block: Buffer): void {
    if (block.every((b) => b === 0)) return; // end-of-archive blocks
    const type = String.fromCharCode(block[156] || 0x30);
    let size = parseTarNumber(block, 124, 12);
    if (type === 'x' || type === 'g' || type === 'L' || type === 'K') {
      if (type === 'x' && size <= MAX_META) { this.capture = []; this.captureSize = size; }
      this.remaining = size + ((BLOCK - (size % BLOCK)) % BLOCK);
      if (this.remaining === 0 && this.capture) this.finishMeta();
      return;
    }
    const sizeOverride = this.pending?.get('size');
    if (sizeOverride) size = Number(sizeOverride.toString('ascii'));
    let xattrs: Map<string, Buffer> | undefined;
    for (const [k, v] of this.pending ?? []) {
      if (k.startsWith(XATTR_PREFIX)) (xattrs ??= new Map()).set(k.slice(XATTR_PREFIX.length), v);
    }
    this.entries.push(xattrs);
    this.pending = undefined;
    // Like tar-stream: every type but a directory carries `size` bytes of data.
    const data = type === '5' ? 0 : size;
    this.remaining = data + ((BLOCK - (data % BLOCK)) % BLOCK);
  }

  private finishMeta(): void {
    const data = Buffer.concat(this.capture!).subarray(0, this.captureSize);
    this.capture = undefined;
    this.pending = parsePaxRecords(data);
  }
}
