// SHA-256 of large data off the event loop. A build's snapshot hashes every byte of a layer
// twice on the main thread (the tar into the diffID, the gzip stream into the blob's digest):
// for the 40 MB bench layer ~50 ms of node:crypto there, while that thread also drives the
// next RUN. Node has no asynchronous streaming hash, so this calls the system's OpenSSL 3
// (libcrypto.so.3, Debian's libssl3, which setup.sh installs) through koffi's asynchronous
// calls: each update runs on a worker thread and the main thread spends microseconds on it.
// koffi is loaded for mount(2) anyway. Without libcrypto (or koffi) the digest is node:crypto's
// on the calling thread: the same value either way (test/util/sha256-pool.test.ts).
import { createHash } from 'node:crypto';
import { loadKoffi } from '../runtime/mount-syscall.js';

/** An incremental SHA-256 whose updates run in order, off the calling thread when they can. */
export interface PooledSha256 {
  /**
   * Hashes `data` after everything given before. Resolves once `data` is no longer read: until
   * then the caller must not change or reuse it.
   */
  update(data: Buffer): Promise<void>;
  /** "sha256:<hex>" of everything updated, once the updates have run; the hash is done after. */
  digest(): Promise<string>;
  /** Frees the hash without a digest (after a failure); waits for the update in flight. */
  close(): Promise<void>;
}

/** Below this, an update with none in flight runs on the calling thread: a thread hop costs more. */
const ASYNC_FROM = 64 * 1024;

type Ptr = unknown;
interface AsyncFn<A extends unknown[], R> {
  (...args: A): R;
  async(...args: [...A, (err: unknown, result: R) => void]): void;
}
interface Evp {
  newCtx: () => Ptr;
  freeCtx: (ctx: Ptr) => void;
  sha256: () => Ptr;
  init: (ctx: Ptr, md: Ptr, engine: null) => number;
  update: AsyncFn<[Ptr, Buffer, number], number>;
  final: (ctx: Ptr, md: Buffer, size: null) => number;
}

const loaded = new Map<string, Evp | null>();

function evp(library: string): Evp | null {
  if (loaded.has(library)) return loaded.get(library)!;
  let found: Evp | null = null;
  try {
    const lib = (loadKoffi() as unknown as { load(name: string): { func(decl: string): never } }).load(library);
    found = {
      newCtx: lib.func('void *EVP_MD_CTX_new()'),
      freeCtx: lib.func('void EVP_MD_CTX_free(void *ctx)'),
      sha256: lib.func('const void *EVP_sha256()'),
      init: lib.func('int EVP_DigestInit_ex(void *ctx, const void *type, void *engine)'),
      update: lib.func('int EVP_DigestUpdate(void *ctx, const void *data, size_t count)'),
      final: lib.func('int EVP_DigestFinal_ex(void *ctx, void *md, void *size)'),
    };
  } catch { /* no libcrypto.so.3 or no koffi: node:crypto's */ }
  loaded.set(library, found);
  return found;
}

/** `library`: the libcrypto to load (tests name a missing one to get the fallback). */
export function createPooledSha256(library = 'libcrypto.so.3'): PooledSha256 {
  const lib = evp(library);
  if (lib) {
    const ctx = lib.newCtx();
    if (ctx && lib.init(ctx, lib.sha256(), null) === 1) return new EvpSha256(lib, ctx);
    if (ctx) lib.freeCtx(ctx);
  }
  return new InlineSha256();
}

class EvpSha256 implements PooledSha256 {
  /** The last update queued: each runs after the one before (one EVP context, in order). */
  private tail: Promise<void> = Promise.resolve();
  private inFlight = 0;
  private freed = false;

  constructor(private readonly lib: Evp, private readonly ctx: Ptr) {}

  update(data: Buffer): Promise<void> {
    if (this.freed) return Promise.reject(new Error('sha256: update after digest'));
    if (this.inFlight === 0 && data.length < ASYNC_FROM) {
      if (this.lib.update(this.ctx, data, data.length) !== 1) return Promise.reject(new Error('sha256: EVP_DigestUpdate failed'));
      return this.tail;
    }
    this.inFlight++;
    const run = this.tail.then(() => new Promise<void>((resolve, reject) => {
      // `data` stays referenced by this closure until the worker thread is done with it.
      this.lib.update.async(this.ctx, data, data.length, (err, ok) => {
        if (err || ok !== 1) reject(err instanceof Error ? err : new Error('sha256: EVP_DigestUpdate failed'));
        else resolve();
      });
    })).finally(() => { this.inFlight--; });
    this.tail = run;
    return run;
  }

  async digest(): Promise<string> {
    try {
      await this.tail;
      const md = Buffer.alloc(32);
      if (this.lib.final(this.ctx, md, null) !== 1) throw new Error('sha256: EVP_DigestFinal_ex failed');
      return `sha256:${md.toString('hex')}`;
    } finally {
      this.free();
    }
  }

  async close(): Promise<void> {
    await this.tail.catch(() => {});
    this.free();
  }

  private free(): void {
    if (this.freed) return;
    this.freed = true;
    this.lib.freeCtx(this.ctx);
  }
}

class InlineSha256 implements PooledSha256 {
  private readonly hash = createHash('sha256');

  update(data: Buffer): Promise<void> {
    this.hash.update(data);
    return Promise.resolve();
  }

  digest(): Promise<string> {
    return Promise.resolve(`sha256:${this.hash.digest('hex')}`);
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
