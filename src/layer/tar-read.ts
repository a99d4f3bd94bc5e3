// A synchronous reader for a tar archive held in memory, for the layers small enough to hold
// (applyLayer's in-memory path). It reads headers exactly as tar-stream 3 does (the field
// decoding of its headers.js, the sequencing of long names and PAX records of its extract.js),
// so the extractor sees the same entries, with the same names, modes, owners and times, and
// fails on the same inputs with the same messages, whichever path an archive takes:
// test/layer/tar-read.test.ts compares the two on foreign and hostile archives. What it saves
// is tar-stream's machinery: two streamx streams, several callbacks and a promise per entry,
// which cost more than the entry's syscalls for a tree of small files.
// The strict checks (sizes, PAX records, the expansion cap) stay in TarHeaderTap, which the
// caller feeds the same bytes first, as it does in front of tar-stream.
import type { EntryHeader } from './entry-rules.js';

const BLOCK = 512;
/** tar-stream's cap on one extended header ("Header exceeds max size"). */
const MAX_HEADER_SIZE = 4 * 1024 * 1024;

export interface TarEntry {
  header: EntryHeader;
  /** The entry's data: a view into the archive, not a copy. */
  data: Buffer;
}

/** The first `byte` in block[offset, end), else end. */
function indexOf(block: Buffer, byte: number, offset: number, end: number): number {
  const at = block.indexOf(byte, offset);
  return at < 0 || at > end ? end : at;
}

function decodeStr(buf: Buffer, offset: number, length: number): string {
  return buf.toString('utf8', offset, indexOf(buf, 0, offset, offset + length));
}

/** GNU base-256: 0x80 positive, 0xff negative (two's complement); null for any other lead byte. */
function parse256(buf: Buffer): number | null {
  let positive: boolean;
  if (buf[0] === 0x80) positive = true;
  else if (buf[0] === 0xff) positive = false;
  else return null;
  let sum = 0;
  for (let i = buf.length - 1, scale = 1; i > 0; i--, scale *= 256) sum += (positive ? buf[i]! : 0xff - buf[i]!) * scale;
  return positive ? sum : -1 * sum;
}

function decodeOct(block: Buffer, offset: number, length: number): number | null {
  if (block[offset]! & 0x80) return parse256(block.subarray(offset, offset + length));
  const last = offset + length;
  let start = offset;
  // Older tars prefix numbers with spaces.
  while (start < last && block[start] === 32) start++;
  const end = indexOf(block, 32, start, last);
  while (start < end && block[start] === 0) start++;
  if (end === start) return 0;
  // Octal digits only (every writer's case): their value, without a string. Anything else goes
  // through parseInt, whose reading of signs, whitespace and stray bytes tar-stream inherits.
  let value = 0;
  for (let i = start; i < end; i++) {
    const digit = block[i]! - 48;
    if (digit < 0 || digit > 7) return parseInt(block.toString('utf8', start, end), 8);
    value = value * 8 + digit;
  }
  return value;
}

function cksum(block: Buffer): number {
  let sum = 8 * 32;
  for (let i = 0; i < 148; i++) sum += block[i]!;
  for (let j = 156; j < 512; j++) sum += block[j]!;
  return sum;
}

const TYPES: Record<number, string> = {
  0: 'file', 1: 'link', 2: 'symlink', 3: 'character-device', 4: 'block-device', 5: 'directory', 6: 'fifo',
  7: 'contiguous-file', 72: 'pax-header', 55: 'pax-global-header', 27: 'gnu-long-link-path', 28: 'gnu-long-path', 30: 'gnu-long-path',
};

const isUstar = (b: Buffer) => b[257] === 0x75 && b[258] === 0x73 && b[259] === 0x74 && b[260] === 0x61 && b[261] === 0x72 && b[262] === 0x00;
const isGnu = (b: Buffer) => b[257] === 0x75 && b[258] === 0x73 && b[259] === 0x74 && b[260] === 0x61 && b[261] === 0x72 && b[262] === 0x20
  && b[263] === 0x20 && b[264] === 0x00;

/** One header block as tar-stream's headers.decode reads it; null for an end-of-archive block. */
export function decodeHeader(block: Buffer): EntryHeader | null {
  const typeflag = block[156] === 0 ? 0 : block[156]! - 48;
  let name = decodeStr(block, 0, 100);
  const mode = decodeOct(block, 100, 8);
  const uid = decodeOct(block, 108, 8);
  const gid = decodeOct(block, 116, 8);
  const size = decodeOct(block, 124, 12);
  const mtime = decodeOct(block, 136, 12);
  const linkname = block[157] === 0 ? null : decodeStr(block, 157, 100);
  const uname = decodeStr(block, 265, 32);
  const gname = decodeStr(block, 297, 32);
  const devmajor = decodeOct(block, 329, 8);
  const devminor = decodeOct(block, 337, 8);
  const c = cksum(block);
  if (c === 8 * 32) return null; // all zeros but the checksum field
  if (c !== decodeOct(block, 148, 8)) throw new Error('Invalid tar header. Maybe the tar is corrupted or it needs to be gunzipped?');
  if (isUstar(block)) {
    if (block[345]) name = `${decodeStr(block, 345, 155)}/${name}`;
  } else if (!isGnu(block)) {
    throw new Error('Invalid tar header: unknown format.');
  }
  // tar-stream turns an old-style directory ("name/", type 0) into type 5 after it has named the
  // type, so such an entry stays a file (and the entry rules see a file named "name/").
  return {
    name, mode, uid, gid, size, byteOffset: 0, mtime: new Date(1000 * mtime!), type: TYPES[typeflag] ?? (null as unknown as string),
    linkname, uname, gname, devmajor, devminor, pax: null,
  } as unknown as EntryHeader;
}

/** PAX records as tar-stream's headers.decodePax reads them (values as UTF-8 text). */
export function decodePax(data: Buffer): Record<string, string> {
  const result: Record<string, string> = {};
  let buf = data;
  while (buf.length) {
    let i = 0;
    while (i < buf.length && buf[i] !== 32) i++;
    const len = parseInt(buf.toString('utf8', 0, i), 10);
    if (!len) return result;
    const b = buf.toString('utf8', i + 1, Math.max(i + 1, len - 1));
    const keyIndex = b.indexOf('=');
    if (keyIndex === -1) return result;
    result[b.slice(0, keyIndex)] = b.slice(keyIndex + 1);
    buf = buf.subarray(len);
  }
  return result;
}

const padding = (size: number) => { const r = size & 511; return r && BLOCK - r; };

/**
 * The entries of an uncompressed tar in `archive`, in order, with tar-stream's names, PAX
 * records and errors (a truncated archive: "Unexpected end of data").
 */
export function* tarEntries(archive: Buffer): Generator<TarEntry> {
  let pos = 0;
  let pax: Record<string, string> | null = null;
  let paxGlobal: Record<string, string> | null = null;
  let gnuLongPath: string | null = null;
  let gnuLongLinkPath: string | null = null;
  while (archive.length - pos >= BLOCK) {
    const header = decodeHeader(archive.subarray(pos, pos + BLOCK));
    pos += BLOCK;
    if (!header) continue;
    switch (header.type as string) {
      case 'gnu-long-path':
      case 'gnu-long-link-path':
      case 'pax-global-header':
      case 'pax-header': {
        const size = header.size!;
        if (size > MAX_HEADER_SIZE) throw new Error('Header exceeds max size');
        if (archive.length - pos < size) throw new Error('Unexpected end of data');
        const buf = archive.subarray(pos, pos + size);
        pos += size;
        if (header.type === 'gnu-long-path') gnuLongPath = decodeStr(buf, 0, buf.length);
        else if (header.type === 'gnu-long-link-path') gnuLongLinkPath = decodeStr(buf, 0, buf.length);
        else if (header.type === 'pax-global-header') paxGlobal = decodePax(buf);
        else pax = paxGlobal === null ? decodePax(buf) : Object.assign({}, paxGlobal, decodePax(buf));
        // The padding after an extended header is skipped as data, so it may run past the end.
        const pad = padding(size);
        if (archive.length - pos < pad) throw new Error('Unexpected end of data');
        pos += pad;
        continue;
      }
    }
    if (gnuLongPath) { header.name = gnuLongPath; gnuLongPath = null; }
    if (gnuLongLinkPath) { header.linkname = gnuLongLinkPath; gnuLongLinkPath = null; }
    if (pax) {
      if (pax.path) header.name = pax.path;
      if (pax.linkpath) header.linkname = pax.linkpath;
      if (pax.size) header.size = parseInt(pax.size, 10);
      header.pax = pax;
      pax = null;
    }
    if (!(header.size! >= 0)) throw new Error('Invalid header');
    // tar-stream hands a directory no data, whatever its size field says, and reads what
    // follows as the next header.
    const size = header.type === 'directory' ? 0 : header.size!;
    if (archive.length - pos < size) throw new Error('Unexpected end of data');
    const data = archive.subarray(pos, pos + size);
    pos += size;
    yield { header, data };
    const pad = padding(size);
    if (archive.length - pos < pad) throw new Error('Unexpected end of data');
    pos += pad;
  }
  if (pos !== archive.length) throw new Error('Unexpected end of data');
}
