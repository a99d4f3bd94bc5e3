// The writable streams a build's progress output goes through: a step's RUN output held behind
// its header line, and the prefixed lines of concurrent stages and platforms. A module of its
// own, imported only when there is progress output: a class that extends Writable loads
// node:stream (~1 ms) when its module runs, and a quiet build (-q) needs no stream before its
// first RUN's container has started.
import { Writable } from 'node:stream';

/** A step's RUN output, held until `gate` (its header line is written), then passed through. */
export class HeldOutput extends Writable {
  constructor(private readonly target: Writable, private readonly gate: Promise<void>) { super(); }
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (e?: Error | null) => void): void {
    void this.gate.then(() => { this.target.write(chunk); cb(); });
  }
}

/** RUN output of concurrent stages: whole lines, each with its stage's prefix. */
export class PrefixedLines extends Writable {
  private partial = '';
  constructor(private readonly target: Writable, private readonly prefix: string) { super(); }
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (e?: Error | null) => void): void {
    const text = this.partial + chunk.toString('utf8');
    const lines = text.split('\n');
    this.partial = lines.pop()!;
    if (lines.length) this.target.write(lines.map((l) => `${this.prefix}${l}\n`).join(''));
    cb();
  }
  override _final(cb: (e?: Error | null) => void): void {
    if (this.partial) this.target.write(`${this.prefix}${this.partial}\n`);
    this.partial = '';
    cb();
  }
}
