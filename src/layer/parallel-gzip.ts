// Parallel gzip, the pigz way: the input is cut into fixed 1 MiB blocks, each block is raw-
// deflated on the libuv thread pool with the previous block's last 32 KiB as its dictionary
// (so the ratio matches single-stream gzip), blocks end with a sync flush so they concatenate
// into one valid deflate stream, and the CRC is computed on the main thread (crc32.ts). Output is
// deterministic for a given level: block boundaries do not depend on timing.
import { Transform, type TransformCallback } from 'node:stream';
import os from 'node:os';
import zlib from 'node:zlib';
import { promisify } from 'node:util';
import { STREAM_CHUNK } from '../util/fs.js';
import { crc32 } from './crc32.js';

const deflateRaw = promisify(zlib.deflateRaw) as (buf: Buffer, opts: zlib.ZlibOptions) => Promise<Buffer>;
/** The input block: each is deflated (or stored) on its own, so output depends on this size. */
export const GZIP_BLOCK = STREAM_CHUNK;
const BLOCK = GZIP_BLOCK;
const WINDOW = 32 * 1024;
// ID1 ID2 CM=deflate FLG=0 MTIME=0 XFL=0 OS=3 (unix), as node's and GNU gzip's headers.
export const GZIP_HEADER = Buffer.from([0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0x03]);

/** Samples per block, and their size, for the incompressibility probe. */
const PROBES = 4;
const PROBE = 8 * 1024;
/** The largest stored deflate block (LEN is 16 bits). */
const STORED_MAX = 0xffff;

/**
 * True when the block's samples, together, shrink by less than 10% at level 1: random or already
 * compressed data (archives, images, media). Such blocks are written as stored deflate blocks,
 * which costs a copy instead of 20-40 ms of CPU per MiB; what they lose, under 100 KiB per MiB,
 * takes less time to send at 50 Mbit/s than the deflate would have taken. The samples count
 * together, not one by one: a layer of compressed files has a tar header (512 bytes, mostly
 * zeros) every few samples, and that alone must not send the whole MiB through deflate. The
 * first block of a tree's tar starts with a run of them (the directories', then the first
 * file's): three in the first sample made a 1 MiB block of random files shrink by 4% there.
 * The decision depends only on the bytes, so the output stays deterministic.
 */
async function incompressible(block: Buffer): Promise<boolean> {
  const samples = probeSamples(block);
  if (samples === undefined) return false;
  return flatBytes(samples) || shrinksTooLittle(samples, await deflateRaw(samples, PROBE_OPTIONS));
}

/** incompressible() on this thread: in the snapshot worker, the pool's round trips cost more. */
export function incompressibleSync(block: Buffer): boolean {
  const samples = probeSamples(block);
  return samples !== undefined && (flatBytes(samples) || shrinksTooLittle(samples, zlib.deflateRawSync(samples, PROBE_OPTIONS)));
}

/**
 * True when the samples' byte values are spread almost evenly: their collision entropy (Renyi
 * order 2, never above the Shannon entropy) is at least 7.7 bits a byte, so a Huffman code can
 * save at most 3.75% of them and only repeated strings could make them shrink by 10%. Random
 * and already compressed data (the common incompressible blocks) are told this way in ~30 us,
 * instead of the level-1 deflate's ~0.5 ms a MiB block; a block of repeats of the same noise
 * (rare: LZ matches within 8 KiB samples of evenly spread bytes) is stored where the deflate
 * probe would have compressed it. Integer arithmetic only (the sums stay below 2^53): the
 * decision is a function of the bytes on every machine.
 */
export function flatBytes(samples: Buffer): boolean {
  const counts = new Uint32Array(256);
  for (let i = 0; i < samples.length; i++) counts[samples[i]!]!++;
  let collisions = 0;
  for (let v = 0; v < 256; v++) collisions += counts[v]! * counts[v]!;
  // sum(c^2) / n^2 <= 2^-7.7, i.e. 256 * sum(c^2) <= 1.23 * n^2 (2^0.3 = 1.2311). Noise is at
  // ~1.008; a tar header among the samples (~400 zero bytes) adds ~0.06, two add ~0.2 (the
  // zeros' count is squared), three ~0.42: those blocks go through the deflate probe.
  const n = samples.length;
  return 256 * 100 * collisions <= 123 * n * n;
}

/** Level 1; one output buffer for the whole result (only its length counts) instead of 16 KiB rounds. */
const PROBE_OPTIONS: zlib.ZlibOptions = { level: 1, chunkSize: 64 * 1024 };

function probeSamples(block: Buffer): Buffer | undefined {
  if (block.length < PROBES * PROBE) return undefined;
  const step = Math.floor((block.length - PROBE) / (PROBES - 1));
  // One deflate over the samples side by side: a deflate stream's set-up costs more than 8 KiB
  // of level-1 work, so four separate probes would cost four times as much.
  return Buffer.concat(Array.from({ length: PROBES }, (_, i) => block.subarray(i * step, i * step + PROBE)));
}

function shrinksTooLittle(samples: Buffer, deflated: Buffer): boolean {
  return deflated.length >= samples.length * 0.9;
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

/**
 * The gzip member ParallelGzip writes, block by block: each block is compressed on the thread pool
 * (or stored) with the previous one's last 32 KiB as its dictionary, and the CRC and length are
 * kept for the trailer. ParallelGzip cuts a stream into BLOCK-sized blocks for it; the snapshot
 * worker fills its blocks itself (tar-blocks.ts). Same blocks in, same bytes out.
 */
export class GzipBlocks {
  private dictionary: Buffer | undefined;
  private crc = 0;
  private total = 0;

  /** `syncProbe`: judge each block on the calling thread (see incompressibleSync). */
  constructor(private readonly level = zlib.constants.Z_DEFAULT_COMPRESSION, private readonly syncProbe = false) {}

  /**
   * Starts compressing `block`: GZIP_BLOCK bytes, fewer only when it is the `last` (which may be
   * empty). The promise gives its deflate output, in pieces that may be views of `block`, which
   * must not change until the promise has resolved and those pieces have been used.
   */
  start(block: Buffer, last: boolean): Promise<Buffer | Buffer[]> {
    const opts = this.advance(block, last);
    const stored = this.syncProbe ? Promise.resolve(incompressibleSync(block)) : incompressible(block);
    const p = stored.then(async (yes): Promise<Buffer | Buffer[]> => (yes ? storedBlocks(block, last) : deflateRaw(block, opts)));
    p.catch(() => { /* awaited by the caller */ });
    return p;
  }

  /** start() on the calling thread: for a layer of a few KiB the pool's round trips cost more than the deflate. */
  startSync(block: Buffer, last: boolean): Buffer | Buffer[] {
    const opts = this.advance(block, last);
    return incompressibleSync(block) ? storedBlocks(block, last) : zlib.deflateRawSync(block, opts);
  }

  /** Takes `block` into the CRC, the length and the next block's dictionary; its deflate options. */
  private advance(block: Buffer, last: boolean): zlib.ZlibOptions {
    this.crc = crc32(block, this.crc);
    this.total += block.length;
    const opts: zlib.ZlibOptions = { level: this.level, finishFlush: last ? zlib.constants.Z_FINISH : zlib.constants.Z_SYNC_FLUSH };
    if (this.dictionary) opts.dictionary = this.dictionary;
    // A copy, not a view: the deflate of the next block reads it only after that block's probe,
    // and a caller may refill this block as soon as its own output is written.
    this.dictionary = Buffer.from(block.length >= WINDOW ? block.subarray(block.length - WINDOW) : Buffer.concat([this.dictionary ?? Buffer.alloc(0), block]).subarray(-WINDOW));
    return opts;
  }

  /** CRC-32 and length of everything started (the member's last 8 bytes). */
  trailer(): Buffer {
    const trailer = Buffer.alloc(8);
    trailer.writeUInt32LE(this.crc >>> 0, 0);
    trailer.writeUInt32LE(this.total % 0x1_0000_0000, 4);
    return trailer;
  }
}

/**
 * ParallelGzip's output for `data`, byte for byte, computed on this thread: the same 1 MiB
 * blocks (every full block but the last, which holds the final 1 to BLOCK bytes), dictionaries,
 * flushes and stored-block decisions. For a layer of a few KiB (a late RUN's) the stream's
 * thread-pool round trips and ticks cost more than the deflate itself.
 */
export function gzipSync(data: Buffer, level: number = zlib.constants.Z_DEFAULT_COMPRESSION): Buffer {
  const blocks = new GzipBlocks(level, true);
  const out: Buffer[] = [GZIP_HEADER];
  let offset = 0;
  do {
    const last = data.length - offset <= BLOCK;
    const block = data.subarray(offset, last ? data.length : offset + BLOCK);
    const piece = blocks.startSync(block, last);
    if (Array.isArray(piece)) out.push(...piece);
    else out.push(piece);
    offset += block.length;
  } while (offset < data.length);
  out.push(blocks.trailer());
  return Buffer.concat(out);
}

export class ParallelGzip extends Transform {
  private pending: Buffer[] = [];
  private pendingLength = 0;
  private readonly blocks: GzipBlocks;
  private headerSent = false;
  /** Compressions in flight, oldest first; output is pushed strictly in this order. */
  private readonly inFlight: Promise<Buffer | Buffer[]>[] = [];
  private readonly maxInFlight: number;

  constructor(level = zlib.constants.Z_DEFAULT_COMPRESSION, parallelism = Math.max(1, (os.availableParallelism?.() ?? os.cpus().length))) {
    super({ highWaterMark: STREAM_CHUNK });
    this.blocks = new GzipBlocks(level);
    this.maxInFlight = Math.max(2, parallelism);
  }

  private startBlock(block: Buffer, last: boolean): void {
    this.inFlight.push(this.blocks.start(block, last));
  }

  /** Pushes finished blocks until at most `limit` are still in flight. */
  private async drainTo(limit: number): Promise<void> {
    if (!this.headerSent) { this.push(GZIP_HEADER); this.headerSent = true; }
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
      this.push(this.blocks.trailer());
    })().then(() => cb(), cb);
  }
}
