// A deterministic tar header encoder (POSIX ustar + PAX extended headers).
// Hand-written rather than tar-stream's pack() because layer digests must be byte-stable and
// tar-stream encodes PAX values as UTF-8 strings, which corrupts binary xattrs such as
// security.capability, and does not put large sizes or ids into PAX records.
export type TarEntryType = 'file' | 'link' | 'symlink' | 'character-device' | 'block-device' | 'directory' | 'fifo';

export interface TarHeader {
  name: string;
  type: TarEntryType;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  /** Seconds since the epoch (integer: sub-second times would make digests unstable). */
  mtime: number;
  linkname?: string;
  devmajor?: number;
  devminor?: number;
  /** Extended attributes, written as SCHILY.xattr.<name> records with raw byte values. */
  xattrs?: Map<string, Buffer>;
}

const TYPEFLAG: Record<TarEntryType, string> = {
  file: '0', link: '1', symlink: '2', 'character-device': '3', 'block-device': '4', directory: '5', fifo: '6',
};

export const BLOCK = 512;
export const END_OF_ARCHIVE = Buffer.alloc(2 * BLOCK);
const MAX_OCTAL_7 = 0o7777777;
const MAX_OCTAL_11 = 0o77777777777;

/** Bytes of zero padding after `size` bytes of content. */
export function paddingFor(size: number): number {
  const rem = size % BLOCK;
  return rem === 0 ? 0 : BLOCK - rem;
}

/**
 * `value` as width - 1 zero-padded octal digits and a NUL (width includes it, as GNU tar and
 * Go's archive/tar write it), digit by digit: a layer's tar encodes seven of these per entry,
 * and toString(8), padStart and Buffer#write took most of a cold snapshot's header time (~40 us
 * an entry). `value` fits (the callers clamp it to the field).
 */
function writeOctal(buf: Buffer, offset: number, width: number, value: number): void {
  let v = value;
  for (let i = offset + width - 2; i >= offset; i--) {
    buf[i] = 0x30 + (v % 8);
    v = Math.floor(v / 8);
  }
  buf[offset + width - 1] = 0;
}

const USTAR_MAGIC = Buffer.from('ustar\u000000', 'ascii');

function isPlainAscii(s: string): boolean {
  return /^[\x20-\x7e]*$/.test(s);
}

/** One PAX record: "<len> <key>=<value>\n" where len counts the whole record. */
function paxRecord(key: string, value: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(` ${key}=`), value, Buffer.from('\n')]);
  let len = body.length + 1;
  while (String(len).length + body.length !== len) len = String(len).length + body.length;
  return Buffer.concat([Buffer.from(String(len)), body]);
}

function ustarHeader(h: { name: string; type: string; mode: number; uid: number; gid: number; size: number; mtime: number; linkname: string; devmajor: number; devminor: number }): Buffer {
  const buf = Buffer.alloc(BLOCK);
  buf.write(h.name, 0, 100, 'utf8');
  writeOctal(buf, 100, 8, h.mode);
  writeOctal(buf, 108, 8, h.uid);
  writeOctal(buf, 116, 8, h.gid);
  writeOctal(buf, 124, 12, h.size);
  writeOctal(buf, 136, 12, h.mtime);
  buf.fill(0x20, 148, 156); // checksum field counts as spaces while summing
  buf[156] = h.type.charCodeAt(0);
  if (h.linkname) buf.write(h.linkname, 157, 100, 'utf8');
  USTAR_MAGIC.copy(buf, 257);
  writeOctal(buf, 329, 8, h.devmajor);
  writeOctal(buf, 337, 8, h.devminor);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += buf[i]!;
  // Six digits, a NUL and the space that was already there.
  writeOctal(buf, 148, 7, sum);
  return buf;
}

/**
 * Encodes the header block(s) for one entry: a PAX extended header first when the name, link
 * target, size, ids or xattrs do not fit ustar; uname/gname are always empty (ids are numeric).
 */
export function encodeHeader(h: TarHeader): Buffer {
  const linkname = h.linkname ?? '';
  const size = h.type === 'file' ? h.size : 0;
  const mtime = Math.max(0, Math.floor(h.mtime));
  const pax: [string, Buffer][] = [];
  const fitsName = isPlainAscii(h.name) && h.name.length <= 100;
  if (!fitsName) pax.push(['path', Buffer.from(h.name, 'utf8')]);
  if (!(isPlainAscii(linkname) && linkname.length <= 100)) pax.push(['linkpath', Buffer.from(linkname, 'utf8')]);
  if (size > MAX_OCTAL_11) pax.push(['size', Buffer.from(String(size))]);
  if (h.uid > MAX_OCTAL_7) pax.push(['uid', Buffer.from(String(h.uid))]);
  if (h.gid > MAX_OCTAL_7) pax.push(['gid', Buffer.from(String(h.gid))]);
  if (mtime > MAX_OCTAL_11) pax.push(['mtime', Buffer.from(String(mtime))]);
  if (h.xattrs) {
    for (const name of [...h.xattrs.keys()].sort()) pax.push([`SCHILY.xattr.${name}`, h.xattrs.get(name)!]);
  }
  pax.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const main = ustarHeader({
    name: fitsName ? h.name : asciiPrefix(h.name, 100),
    type: TYPEFLAG[h.type],
    mode: h.mode & 0o7777,
    uid: Math.min(h.uid, MAX_OCTAL_7),
    gid: Math.min(h.gid, MAX_OCTAL_7),
    size: Math.min(size, MAX_OCTAL_11),
    mtime: Math.min(mtime, MAX_OCTAL_11),
    linkname: isPlainAscii(linkname) && linkname.length <= 100 ? linkname : asciiPrefix(linkname, 100),
    devmajor: h.devmajor ?? 0,
    devminor: h.devminor ?? 0,
  });
  if (pax.length === 0) return main;
  const body = Buffer.concat(pax.map(([k, v]) => paxRecord(k, v)));
  const base = h.name.replace(/\/$/, '').split('/').pop() ?? '';
  const paxHead = ustarHeader({
    name: asciiPrefix(`PaxHeaders.0/${base}`, 100),
    type: 'x', mode: 0o644, uid: 0, gid: 0, size: body.length, mtime: Math.min(mtime, MAX_OCTAL_11),
    linkname: '', devmajor: 0, devminor: 0,
  });
  return Buffer.concat([paxHead, body, Buffer.alloc(paddingFor(body.length)), main]);
}

function asciiPrefix(s: string, max: number): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/[^\x20-\x7e]/g, '_').slice(0, max);
}
