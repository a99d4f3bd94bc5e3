// The expanded-size cap on layers. A layer is a compressed tar, and gzip turns 1 GiB of zeros
// into about 1 MiB (zstd into far less), so whoever writes a layer (an archive author, a push
// user, an upstream registry) can make whoever unpacks it write a thousand times what they sent.
// Every reader of layer tars in drydock (extraction for run, build and ADD; the import and load
// validation; export) counts the uncompressed bytes through one ExpansionBudget and stops at:
//
// - DRYDOCK_MAX_LAYER_SIZE (default 64 GiB): the uncompressed tar of one layer. The biggest
//   real layers (CUDA toolkits, model weights) are a few GiB to a few tens; 64 GiB leaves them
//   room and still stops a bomb before it fills a typical disk. "0" turns the cap off.
// - DRYDOCK_MAX_LAYER_RATIO (default off): uncompressed bytes per compressed byte, checked once a
//   layer is past 64 MiB. Off by default because legitimate layers can exceed any ratio that
//   would catch a bomb: deflate tops out near 1032:1, which a sparse /var/log/lastlog (the
//   `useradd` without --no-log-init classic) reaches, and zstd compresses zeros far further.
//
// A file entry is checked against the cap when its header arrives, so a 1 TiB entry is refused
// before any of it is written; the byte count catches the rest (padding, trailing garbage).
import { Transform, type Readable } from 'node:stream';
import { UserError } from '../util/errors.js';
import { STREAM_CHUNK } from '../util/fs.js';
import { LayerError } from './errors.js';

export const DEFAULT_MAX_LAYER_SIZE = 64 * 1024 ** 3;
/** The ratio check starts past this many uncompressed bytes: small layers may compress very well. */
export const RATIO_FLOOR = 64 * 1024 ** 2;

export interface LayerLimits {
  /** Uncompressed bytes one layer may expand to; Infinity for no cap. */
  maxBytes: number;
  /** Uncompressed bytes per compressed byte past RATIO_FLOOR; 0 for no ratio check. */
  maxRatio: number;
}

const UNITS: Record<string, number> = { '': 1, b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };

/** "64g", "512m", "1073741824", "1.5g" (binary units, as Docker's --memory takes them). */
export function parseByteSize(text: string, what: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([bkmgt]?)(?:i?b)?\s*$/i.exec(text);
  if (!m) throw new UserError(`${what}: "${text}" is not a size (bytes, or a number with k, m, g or t)`);
  return Math.floor(Number(m[1]) * UNITS[m[2]!.toLowerCase()]!);
}

/** The limits in force: DRYDOCK_MAX_LAYER_SIZE and DRYDOCK_MAX_LAYER_RATIO, else the defaults. */
export function layerLimits(env: NodeJS.ProcessEnv = process.env): LayerLimits {
  const size = env.DRYDOCK_MAX_LAYER_SIZE;
  const ratio = env.DRYDOCK_MAX_LAYER_RATIO;
  let maxBytes = DEFAULT_MAX_LAYER_SIZE;
  if (size !== undefined && size !== '') {
    maxBytes = parseByteSize(size, 'DRYDOCK_MAX_LAYER_SIZE');
    if (maxBytes === 0) maxBytes = Number.POSITIVE_INFINITY;
  }
  let maxRatio = 0;
  if (ratio !== undefined && ratio !== '') {
    maxRatio = Number(ratio);
    if (!Number.isFinite(maxRatio) || maxRatio < 0) throw new UserError(`DRYDOCK_MAX_LAYER_RATIO: "${ratio}" is not a non-negative number`);
  }
  return { maxBytes, maxRatio };
}

function formatBytes(n: number): string {
  for (const [unit, size] of [['TiB', 1024 ** 4], ['GiB', 1024 ** 3], ['MiB', 1024 ** 2], ['KiB', 1024]] as const) {
    if (n >= size) return `${Number((n / size).toFixed(2))} ${unit}`;
  }
  return `${n} bytes`;
}

/** Counts one layer's compressed and uncompressed bytes against LayerLimits. */
export class ExpansionBudget {
  private expandedBytes = 0;
  private compressedBytes = 0;
  private compressedSeen = false;

  constructor(readonly limits: LayerLimits = layerLimits()) {}

  get expanded(): number { return this.expandedBytes; }

  /** Counts bytes read from the compressed stream (enables the ratio check). */
  compressed(n: number): void {
    this.compressedSeen = true;
    this.compressedBytes += n;
  }

  /** Counts uncompressed tar bytes; `entry` names the entry being read, for the error. */
  expand(n: number, entry?: string): void {
    this.expandedBytes += n;
    this.check(this.expandedBytes, entry);
  }

  /** Checks an entry's declared data size as soon as its header is read. */
  declare(size: number, entry: string): void {
    // Only the absolute cap: the ratio compares bytes actually read with bytes read so far.
    this.check(this.expandedBytes + size, entry, false);
  }

  private check(total: number, entry: string | undefined, ratio = true): void {
    const { maxBytes, maxRatio } = this.limits;
    if (total <= maxBytes && !(ratio && maxRatio > 0)) return; // called per header and per chunk: the usual case first
    const at = entry === undefined ? '' : `entry ${JSON.stringify(entry.slice(0, 200))}: `;
    if (total > maxBytes) {
      throw new LayerError(`${at}layer expands beyond the ${formatBytes(maxBytes)} cap on uncompressed layer size (DRYDOCK_MAX_LAYER_SIZE; 0 turns it off)`);
    }
    if (ratio && maxRatio > 0 && this.compressedSeen && total > RATIO_FLOOR && total > maxRatio * Math.max(this.compressedBytes, 1)) {
      throw new LayerError(`${at}layer expands more than ${maxRatio} times its compressed size (${formatBytes(this.compressedBytes)} to over ${formatBytes(total)}; DRYDOCK_MAX_LAYER_RATIO): refusing a decompression bomb`);
    }
  }
}

/** Passes `input` through, counting its bytes as the budget's compressed input. */
export function countCompressed(input: Readable, budget: ExpansionBudget): Readable {
  const counter = new Transform({
    highWaterMark: STREAM_CHUNK,
    transform(chunk: Buffer, _enc, cb) { budget.compressed(chunk.length); cb(null, chunk); },
  });
  input.on('error', (e) => counter.destroy(e));
  return input.pipe(counter);
}
