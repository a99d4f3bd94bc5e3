// Strict readers for the numbers in tar headers, shared by every tar reader in drydock: the
// archive index (archive/tar-file.ts), the header tap that runs in front of tar-stream
// (pax-tap.ts: extraction, import validation, export) and so tar-stream's view as well.
// A size decides where the next header starts. A negative one made the archive index seek
// backwards and re-read the same headers forever; a fractional or "1e3" one is read as 1 by
// parseInt and as 1000 by Number, so two readers of one archive disagreed about which bytes
// are headers. A size is therefore accepted only as a whole number of bytes that a JS number
// holds exactly (GNU tar and Go's archive/tar refuse the same inputs).
import { LayerError } from './errors.js';

/** Largest size accepted: past it offsets are no longer exact in a JS number. */
export const MAX_TAR_SIZE = Number.MAX_SAFE_INTEGER;

/** Reads a numeric header field leniently (mode, ids, mtime, checksum): octal text or GNU base-256. */
export function parseTarNumber(buf: Buffer, off: number, len: number): number {
  if (buf[off]! & 0x80) {
    let v = 0;
    for (let i = off + 1; i < off + len; i++) v = v * 256 + buf[i]!;
    return v;
  }
  // Octal digits up to a NUL, a space or the field's end (every writer's case), without a string.
  let v = 0;
  for (let i = off; i < off + len; i++) {
    const b = buf[i]!;
    if (b === 0 || b === 0x20) return v;
    if (b < 0x30 || b > 0x37) return parseTarNumberText(buf, off, len);
    v = v * 8 + (b - 0x30);
  }
  return v;
}

function parseTarNumberText(buf: Buffer, off: number, len: number): number {
  const s = buf.toString('ascii', off, off + len).replace(/[\0 ].*$/s, '').trim();
  return s ? parseInt(s, 8) : 0;
}

/** True when the header block's checksum field matches its bytes (the field summed as spaces). */
export function checksumMatches(block: Buffer): boolean {
  let sum = 8 * 0x20;
  for (let i = 0; i < 148; i++) sum += block[i]!;
  for (let i = 156; i < 512; i++) sum += block[i]!;
  return sum === parseTarNumber(block, 148, 8);
}

function cstring(buf: Buffer, off: number, len: number): string {
  const end = buf.indexOf(0, off);
  return buf.toString('utf8', off, end < 0 || end > off + len ? off + len : end);
}

/** The name a header block gives its entry (ustar prefix joined), before PAX or GNU overrides. */
export function headerBlockName(block: Buffer): string {
  const name = cstring(block, 0, 100);
  if (block.toString('ascii', 257, 262) === 'ustar' && block[345]) return `${cstring(block, 345, 155)}/${name}`;
  return name;
}

function quote(name: string): string {
  return JSON.stringify(name.length > 200 ? `${name.slice(0, 200)}...` : name);
}

function invalidSize(entry: string, shown: string, where: string): LayerError {
  return new LayerError(`entry ${quote(entry)}: invalid size ${shown} in its ${where} (a size must be a whole number of bytes from 0 to ${MAX_TAR_SIZE})`);
}

/**
 * The size field (offset 124, 12 bytes) of a header block: octal digits (leading spaces, then
 * NUL or space terminated) or GNU base-256. Negative base-256, non-octal text and sizes past
 * MAX_TAR_SIZE are refused with an error naming `entry`.
 */
export function headerSize(block: Buffer, entry: string): number {
  const off = 124;
  const len = 12;
  const first = block[off]!;
  if (first & 0x80) {
    const hex = block.toString('hex', off, off + len);
    // 0x80 marks a positive base-256 number; 0xff a negative (two's complement) one.
    if (first !== 0x80) throw invalidSize(entry, `0x${hex}`, 'header (base-256, negative)');
    let v = 0;
    for (let i = off + 1; i < off + len; i++) v = v * 256 + block[i]!;
    if (v > MAX_TAR_SIZE) throw invalidSize(entry, `0x${hex}`, 'header (base-256)');
    return v;
  }
  // Octal digits, then NULs or the field's end (every writer's case): the value, without a string.
  let fast = 0;
  let i = off;
  while (i < off + len && block[i]! >= 0x30 && block[i]! <= 0x37) fast = fast * 8 + (block[i++]! - 0x30);
  if (i > off && fast <= MAX_TAR_SIZE && block.subarray(i, off + len).every((b) => b === 0)) return fast;
  const raw = block.toString('latin1', off, off + len);
  const text = raw.replace(/\0.*$/s, '').replace(/^ +| +$/g, '');
  if (!/^[0-7]*$/.test(text)) throw invalidSize(entry, JSON.stringify(raw.replace(/\0+$/, '')), 'header (not octal)');
  const v = text ? parseInt(text, 8) : 0;
  if (v > MAX_TAR_SIZE) throw invalidSize(entry, JSON.stringify(text), 'header');
  return v;
}

/** A PAX `size` record's value: decimal digits only (no sign, point, exponent or spaces). */
export function paxSize(value: string, entry: string): number {
  if (!/^[0-9]{1,16}$/.test(value) || Number(value) > MAX_TAR_SIZE) {
    throw invalidSize(entry, JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}...` : value), 'PAX header');
  }
  return Number(value);
}
