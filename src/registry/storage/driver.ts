// The storage driver interface, after distribution's storagedriver.StorageDriver: a tiny
// path-keyed object store. Everything above it (blobs, links, uploads, tags) is layout logic in
// storage.ts, so an object-store driver (S3 and friends) only has to implement these methods.
// Paths are absolute, '/'-separated, and never contain '..': callers build them from validated
// names and digests, and checkedDriver() (checked.ts) refuses anything else before a driver
// sees it.
import type { Readable, Writable } from 'node:stream';

export interface FileInfo {
  path: string;
  size: number;
  modTime: Date;
  isDir: boolean;
}

/** An append-only writer; nothing is visible at `path` until commit() (and then only after fsync). */
export interface FileWriter {
  /** Bytes in the file so far, including what existed before an append-open. */
  readonly size: number;
  write(chunk: Buffer): Promise<void>;
  /** Flushes and syncs; the content is durable at the path afterwards. */
  commit(): Promise<void>;
  /** Removes the file. */
  cancel(): Promise<void>;
  /** Releases resources without committing durability (content written so far stays). */
  close(): Promise<void>;
  /** Drops everything written through this writer and releases it: the file is as it was when the writer opened. */
  discard(): Promise<void>;
}

export interface StorageDriver {
  readonly name: string;
  /** Whole small object; throws PathNotFoundError. */
  getContent(path: string): Promise<Buffer>;
  /**
   * Atomic replace (readers see old or new, never torn). `sync: false` skips the fsyncs: still
   * atomic against a crashed process, not guaranteed durable across a power loss. Used for
   * bookkeeping that can be recreated (upload start times, layer links a client re-pushes).
   */
  putContent(path: string, content: Buffer | string, opts?: { sync?: boolean }): Promise<void>;
  /** Streams from `offset` (to `end` inclusive, if given). */
  reader(path: string, offset?: number, end?: number): Promise<Readable>;
  writer(path: string, append: boolean): Promise<FileWriter>;
  stat(path: string): Promise<FileInfo>;
  /** Direct children (full paths), sorted; throws PathNotFoundError for a missing directory. */
  list(path: string): Promise<string[]>;
  /** Atomic within the driver; replaces the destination. */
  move(source: string, dest: string): Promise<void>;
  /** Recursive; a missing path is not an error. */
  delete(path: string): Promise<void>;
  /** Verifies the backing store is reachable and usable (S3: the bucket and credentials); throws a clear error, returns warnings. */
  checkReady?(): Promise<string[] | void>;
  /** Depth-first over every file and directory below `path`; return 'skip' to not descend. */
  walk(path: string, fn: (info: FileInfo) => Promise<void | 'skip'> | void | 'skip'): Promise<void>;
  /**
   * Optional: an exclusive lock between processes, as a file created at `path` in an existing
   * directory. Resolves to its release function, or to undefined while another live holder has
   * it; throws PathNotFoundError when the directory does not exist. The filesystem creates the
   * file with O_EXCL; S3 writes a lease object with If-None-Match (storage/s3-lease.ts). Callers
   * of a driver without it serialize only within one process.
   */
  lockFile?(path: string): Promise<(() => Promise<void>) | undefined>;
  /**
   * Optional: opens a file for sending (a missing file throws PathNotFoundError here, before any
   * response headers go out); the returned function copies bytes `offset`..`end` (inclusive) into
   * `dest` through buffers reused from request to request, and ends it. Blob GETs then make no
   * garbage per chunk, so the V8 heap is not collected once per few dozen MiB sent. Else reader().
   */
  sender?(path: string, offset?: number, end?: number): Promise<(dest: Writable) => Promise<void>>;
  /**
   * Optional: removes a directory only if it is empty (a missing or non-empty one is not an
   * error). Drivers with real directories implement it; on an object store a prefix with no
   * objects does not exist, so there is nothing to remove.
   */
  deleteEmptyDir?(path: string): Promise<void>;
  /** Optional: sets a file's modification time to now (PathNotFoundError when it is missing); else callers rewrite it. */
  touch?(path: string): Promise<void>;
}

export class PathNotFoundError extends Error {
  override name = 'PathNotFoundError';
  constructor(readonly path: string) {
    super(`path not found: ${path}`);
  }
}

export function isNotFound(e: unknown): boolean {
  return e instanceof PathNotFoundError;
}
