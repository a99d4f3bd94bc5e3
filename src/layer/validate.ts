// Validation of a layer tar before it is stored (import, load): the stream passes through
// unchanged while the same readers and rules as extraction parse it on the side (the header
// tap's strict sizes and expansion cap, tar-stream, LayerEntryRules), so an archive that is
// truncated, corrupt, escaping, over the cap or otherwise unrunnable fails before its blob
// becomes visible in the store.
import { Transform, type TransformCallback } from 'node:stream';
import tar from 'tar-stream';
import { STREAM_CHUNK } from '../util/fs.js';
import { UserError } from '../util/errors.js';
import { explainCompressionError } from './compression.js';
import { LayerEntryRules, type EntryHeader } from './entry-rules.js';
import { LayerError } from './errors.js';
import { ExpansionBudget } from './limits.js';
import { TarHeaderTap } from './pax-tap.js';

/** Turns zlib and tar-stream failures into errors that say what was wrong with the input. */
export function describeTarError(e: unknown): unknown {
  e = explainCompressionError(e);
  if (e instanceof UserError) return e;
  const msg = (e as Error)?.message ?? String(e);
  if (/Unexpected end of data/i.test(msg)) return new LayerError('truncated tar archive (unexpected end of data)');
  if (/Invalid tar header|Invalid header|unknown format/i.test(msg)) return new LayerError(`not a valid tar archive: ${msg}`);
  if (/Header exceeds max size/i.test(msg)) return new LayerError('tar extended header exceeds the size cap');
  return e;
}

export class TarValidator extends Transform {
  private readonly extract = tar.extract();
  private readonly tap: TarHeaderTap;
  private readonly parsed: Promise<void>;
  entries = 0;

  /** `budget` counts this layer's bytes; pass the one that also counts its compressed input. */
  constructor(budget: ExpansionBudget = new ExpansionBudget()) {
    super({ highWaterMark: STREAM_CHUNK });
    this.tap = new TarHeaderTap(budget);
    this.parsed = (async () => {
      const rules = new LayerEntryRules('none');
      for await (const entry of this.extract) {
        this.entries++;
        rules.check(entry.header as EntryHeader);
        entry.resume();
      }
    })();
    this.parsed.catch(() => { /* reported from _transform/_flush */ });
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    let settled = false;
    const done = (e?: unknown) => { if (!settled) { settled = true; e ? cb(describeTarError(e) as Error) : cb(null, chunk); } };
    try {
      this.tap.feed(chunk);
    } catch (e) {
      done(e);
      return;
    }
    this.parsed.catch(done);
    if (this.extract.write(chunk)) done();
    else this.extract.once('drain', () => done(undefined));
  }

  override _flush(cb: TransformCallback): void {
    (this.extract as unknown as { end(): void }).end();
    this.parsed.then(() => cb(), (e) => cb(describeTarError(e) as Error));
  }
}
