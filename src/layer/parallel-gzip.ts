// Parallel gzip, the pigz way: the input is cut into fixed 1 MiB blocks, each block is raw-
// deflated on the libuv thread pool with the previous block's last 32 KiB as its dictionary
// (so the ratio matches single-stream gzip), blocks end with a sync flush so they concatenate
// into one valid deflate stream, and the CRC is computed on the main thread. Output is
// deterministic for a given level: block boundaries do not depend on timing.
import { Transform, type TransformCallback } from 'node:stream';
import os from 'node:os';
import zlib from 'node:zlib';
import { promisify } from 'node:util';
import { STREAM_CHUNK } from '../util/fs.js';

const deflateRaw = promisify(zlib.deflateRaw) as (buf: Buffer, opts: zlib.ZlibOptions) => Promise<Buffer>;
const BLOCK = STREAM_CHUNK;
const WINDOW = 32 * 1024;
// ID1 ID2 CM=deflate FLG=0 MTIME=0 XFL=0 OS=3 (unix), as node's and GNU gzip's headers.
const HEADER = Buffer.from([0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0x03]);

/** Samples per block, and their size, for the incompressibility probe. */
const PROBES = 4;
const PROBE = 8 * 1024;
/** The largest stored deflate block (LEN is 16 bits). */
const STORED_MAX = 0xffff;

/**
 * True when the block's samples, together, shrink by less than 3% at level 1: random or already
 * compressed data (archives, images, media). Such blocks are written as stored deflate blocks,
 * which costs a copy instead of ~40 ms of CPU per MiB and loses under 0.01% in size. The samples
 * count together, not one by one: a layer of compressed files has a tar header (512 bytes, mostly
 * zeros) every few samples, and that alone must not send the whole MiB through deflate. The
 * decision depends only on the bytes, so the output stays deterministic.
 */
async function incompressible(block: Buffer): Promise<boolean> {
  const samples = probeSamples(block);
  return samples !== undefined && (await deflateRaw(samples, { level: 1 })).length >= samples.length * 0.97;
}

/** incompressible() without the thread pool (gzipSync). */
function incompressibleSync(block: Buffer): boolean {
  const samples = probeSamples(block);
  return samples !== undefined && zlib.deflateRawSync(samples, { level: 1 }).length >= samples.length * 0.97;
}

/** The samples incompressible() deflates, side by side; undefined for a block too short to probe. */
function probeSamples(block: Buffer): Buffer | undefined {
  if (block.length < PROBES * PROBE) return undefined;
  const step = Math.floor((block.length - PROBE) / (PROBES - 1));
  // One deflate over the samples side by side: a deflate stream's set-up costs more than 8 KiB
  // of level-1 work, so four separate probes would cost four times as much.
  return Buffer.concat(Array.from({ length: PROBES }, (_, i) => block.subarray(i * step, i * step + PROBE)));
}

/** A block's deflate options: the previous block's window as dictionary, a sync flush but for the last. */
function blockOptions(level: number, dictionary: Buffer | undefined, last: boolean): zlib.ZlibOptions {
  const opts: zlib.ZlibOptions = { level, finishFlush: last ? zlib.constants.Z_FINISH : zlib.constants.Z_SYNC_FLUSH };
  if (dictionary) opts.dictionary = dictionary;
  return opts;
}

/** The dictionary of the block after `block`: the last 32 KiB of input so far. */
function nextDictionary(dictionary: Buffer | undefined, block: Buffer): Buffer {
  return block.length >= WINDOW ? block.subarray(block.length - WINDOW) : Buffer.concat([dictionary ?? Buffer.alloc(0), block]).subarray(-WINDOW);
}

/** The gzip trailer: CRC-32 and the input size modulo 2^32. */
function trailer(crc: number, total: number): Buffer {
  const t = Buffer.alloc(8);
  t.writeUInt32LE(crc >>> 0, 0);
  t.writeUInt32LE(total % 0x1_0000_0000, 4);
  return t;
}

/**
 * ParallelGzip's output for `data`, byte for byte, computed on this thread: the same 1 MiB
 * blocks (every full block but the last, which holds the final 1 to BLOCK bytes), dictionaries,
 * flushes and stored-block decisions. For a layer of a few KiB (a late RUN's) the stream's
 * thread-pool round trips and ticks cost more than the deflate itself.
 */
export function gzipSync(data: Buffer, level: number = zlib.constants.Z_DEFAULT_COMPRESSION): Buffer {
  const out: Buffer[] = [HEADER];
  let dictionary: Buffer | undefined;
  let offset = 0;
  do {
    const last = data.length - offset <= BLOCK;
    const block = data.subarray(offset, last ? data.length : offset + BLOCK);
    if (incompressibleSync(block)) out.push(...storedBlocks(block, last));
    else out.push(zlib.deflateRawSync(block, blockOptions(level, dictionary, last)));
    dictionary = nextDictionary(dictionary, block);
    offset += block.length;
  } while (offset < data.length);
  out.push(trailer(zlib.crc32(data), data.length));
  return Buffer.concat(out);
}

/**
 * `block` as stored deflate blocks (RFC 1951 3.2.4: a byte-aligned header with BTYPE 00, LEN,
 * NLEN, then the bytes), written here rather than by zlib at level 0, which still runs every
 * byte through its window: this is a copy. The previous block ended byte-aligned (sync flush or
 * stored), as a stored header requires, and this one ends byte-aligned too.
 */
function storedBlocks(block: Buffer, last: boolean): Buffer[] {
  const count = Math.max(1, Math.ceil(block.length / STORED_MAX));
  const out: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    const part = block.subarray(i * STORED_MAX, (i + 1) * STORED_MAX);
    const header = Buffer.allocUnsafe(5);
    header[0] = last && i === count - 1 ? 1 : 0;
    header.writeUInt16LE(part.length, 1);
    header.writeUInt16LE(~part.length & 0xffff, 3);
    // The block's own bytes, not a copy: the consumer (a file write) copies them anyway.
    out.push(header, part);
  }
  return out;
}

export class ParallelGzip extends Transform {
  private pending: Buffer[] = [];
  private pendingLength = 0;
  private dictionary: Buffer | undefined;
  private crc = 0;
  private total = 0;
  private headerSent = false;
  /** Compressions in flight, oldest first; output is pushed strictly in this order. */
  private readonly inFlight: Promise<Buffer | Buffer[]>[] = [];
  private readonly maxInFlight: number;

  constructor(private readonly level = zlib.constants.Z_DEFAULT_COMPRESSION, parallelism = Math.max(1, (os.availableParallelism?.() ?? os.cpus().length))) {
    super({ highWaterMark: STREAM_CHUNK });
    this.maxInFlight = Math.max(2, parallelism);
  }

  private startBlock(block: Buffer, last: boolean): void {
    this.crc = zlib.crc32(block, this.crc);
    this.total += block.length;
    const opts = blockOptions(this.level, this.dictionary, last);
    const p = incompressible(block).then(async (stored): Promise<Buffer | Buffer[]> => (stored ? storedBlocks(block, last) : deflateRaw(block, opts)));
    p.catch(() => { /* awaited in drainTo */ });
    this.inFlight.push(p);
    this.dictionary = nextDictionary(this.dictionary, block);
  }

  /** Pushes finished blocks until at most `limit` are still in flight. */
  private async drainTo(limit: number): Promise<void> {
    if (!this.headerSent) { this.push(HEADER); this.headerSent = true; }
    while (this.inFlight.length > limit) {
      const out = await this.inFlight.shift()!;
      if (Array.isArray(out)) for (const b of out) this.push(b);
      else this.push(out);
    }
  }

  private takeBlock(): Buffer {
    const first = this.pending[0];
    if (first && first.length >= BLOCK) {
      // Input in whole blocks (tarDirectory batches 1 MiB): a view, no copy.
      const block = first.subarray(0, BLOCK);
      if (first.length > BLOCK) this.pending[0] = first.subarray(BLOCK);
      else this.pending.shift();
      this.pendingLength -= BLOCK;
      return block;
    }
    const all = this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending, this.pendingLength);
    const block = all.subarray(0, BLOCK);
    const rest = all.subarray(BLOCK);
    this.pending = rest.length ? [rest] : [];
    this.pendingLength = rest.length;
    return block;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.pending.push(chunk);
    this.pendingLength += chunk.length;
    (async () => {
      // Keep one full block back so the last block (the one with the final flag) is known.
      while (this.pendingLength > BLOCK) {
        this.startBlock(this.takeBlock(), false);
        await this.drainTo(this.maxInFlight - 1);
      }
    })().then(() => cb(), cb);
  }

  override _flush(cb: TransformCallback): void {
    (async () => {
      const last = this.pendingLength ? this.takeBlock() : Buffer.alloc(0);
      this.startBlock(last, true);
      await this.drainTo(0);
      this.push(trailer(this.crc, this.total));
    })().then(() => cb(), cb);
  }
}
