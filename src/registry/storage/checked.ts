// Every driver is reached through checkedDriver(), which refuses a path that is not absolute,
// '/'-separated, and made of distribution's path characters, before the driver sees it (like
// distribution's base.Base and its PathRegexp). The layout logic only builds paths from
// validated names and digests; this is the second wall, so a bug there cannot become a path
// outside the driver's root ('..', an empty component) on disk or in a bucket.
import type { Readable, Writable } from 'node:stream';
import type { FileInfo, FileWriter, StorageDriver } from './driver.js';

/** distribution's storagedriver.PathRegexp: one or more "/component" of [A-Za-z0-9._-]. */
const PATH = /^(\/[A-Za-z0-9._-]+)+$/;

export class InvalidPathError extends Error {
  override name = 'InvalidPathError';
  constructor(readonly path: string, readonly driver: string) {
    super(`${driver}: invalid path ${JSON.stringify(path)}`);
  }
}

export function isValidPath(p: string): boolean {
  return PATH.test(p) && !p.split('/').some((c) => c === '.' || c === '..');
}

/** Wraps `d` so every call checks its paths (a refusal is a rejected promise, like the driver's own errors); stat, list and walk also take the root, "/". */
export function checkedDriver(d: StorageDriver): StorageDriver {
  if (d instanceof CheckedDriver) return d;
  return new CheckedDriver(d);
}

// The optional capabilities are forwarded only where the inner driver has them: callers test
// for them (`if (driver.lockFile)`), and a wrapper that hid one would silently turn a
// cross-process upload lock into none.
class CheckedDriver implements StorageDriver {
  readonly checkReady?: () => Promise<string[] | void>;
  readonly lockFile?: (p: string) => Promise<(() => Promise<void>) | undefined>;
  readonly touch?: (p: string) => Promise<void>;
  readonly deleteEmptyDir?: (p: string) => Promise<void>;
  readonly sender?: (p: string, offset?: number, end?: number) => Promise<(dest: Writable) => Promise<void>>;

  constructor(private readonly d: StorageDriver) {
    if (d.checkReady) this.checkReady = () => d.checkReady!();
    if (d.lockFile) this.lockFile = async (p) => d.lockFile!(this.check(p));
    if (d.touch) this.touch = async (p) => d.touch!(this.check(p));
    if (d.deleteEmptyDir) this.deleteEmptyDir = async (p) => d.deleteEmptyDir!(this.check(p));
    if (d.sender) this.sender = async (p, offset, end) => d.sender!(this.check(p), offset, end);
  }

  get name(): string { return this.d.name; }

  private check(p: string, rootOk = false): string {
    if (typeof p !== 'string' || !(isValidPath(p) || (rootOk && p === '/'))) throw new InvalidPathError(String(p), this.d.name);
    return p;
  }

  async getContent(p: string): Promise<Buffer> {
    return this.d.getContent(this.check(p));
  }
  async putContent(p: string, content: Buffer | string, opts?: { sync?: boolean }): Promise<void> {
    return this.d.putContent(this.check(p), content, opts);
  }
  async reader(p: string, offset?: number, end?: number): Promise<Readable> {
    return this.d.reader(this.check(p), offset, end);
  }
  async writer(p: string, append: boolean): Promise<FileWriter> {
    return this.d.writer(this.check(p), append);
  }
  async stat(p: string): Promise<FileInfo> {
    return this.d.stat(this.check(p, true));
  }
  async list(p: string): Promise<string[]> {
    return this.d.list(this.check(p.length > 1 ? p.replace(/\/$/, '') : p, true));
  }
  async move(source: string, dest: string): Promise<void> {
    return this.d.move(this.check(source), this.check(dest));
  }
  async delete(p: string): Promise<void> {
    return this.d.delete(this.check(p));
  }
  async walk(p: string, fn: (info: FileInfo) => Promise<void | 'skip'> | void | 'skip'): Promise<void> {
    return this.d.walk(this.check(p, true), fn);
  }
}
