// A Transform that hashes and counts what passes: layer creation, apply, load and copies hash a
// stream on its way to somewhere else. Not in content-store.ts: a class that extends Transform
// loads node:stream when its module runs, and a listing (`drydock images`) imports the store but
// streams nothing (scripts/bundle-cli.mjs makes node:stream load on first use).
import { Transform, type TransformCallback } from 'node:stream';
import { Digester, type DigestAlgorithm } from '../image/digest.js';
import { STREAM_CHUNK } from '../util/fs.js';
import { BlobVerificationError } from './errors.js';

/** Counts and hashes bytes as they pass, failing fast when more arrive than expected. */
export class HashingTransform extends Transform {
  readonly digester: Digester;
  constructor(algorithm: DigestAlgorithm, private readonly limit?: number) {
    super({ highWaterMark: STREAM_CHUNK });
    this.digester = new Digester(algorithm);
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.digester.update(chunk);
    if (this.limit !== undefined && this.digester.size > this.limit) {
      cb(new BlobVerificationError(`blob is larger than the expected ${this.limit} bytes`));
      return;
    }
    cb(null, chunk);
  }
}
