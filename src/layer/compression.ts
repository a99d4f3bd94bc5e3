// Layer compression: gzip through node's zlib, block-parallel on the libuv thread pool (see
// parallel-gzip.ts) so it overlaps with hashing on the main thread, and zstd through the `zstd`
// binary, because Node 20 has no zstd.
// Every helper is streaming; nothing here holds more than one chunk of a layer in memory.
import { spawn } from 'node:child_process';
import { createReadStream, promises as fsp } from 'node:fs';
import { Duplex, PassThrough, Readable, Writable, pipeline } from 'node:stream';
import zlib from 'node:zlib';
import type { Compression } from '../image/media-types.js';
import { STREAM_CHUNK } from '../util/fs.js';
import { UserError } from '../util/errors.js';
import { ParallelGzip } from './parallel-gzip.js';

export type CompressionOption = Compression | 'auto';

/** Raised for corrupt or unsupported compressed input. */
export class CompressionError extends UserError {
  override name = 'CompressionError';
}

const GZIP_MAGIC = [0x1f, 0x8b];
const ZSTD_MAGIC = [0x28, 0xb5, 0x2f, 0xfd];
const XZ_MAGIC = [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00];
const BZIP2_MAGIC = [0x42, 0x5a, 0x68];

function startsWith(buf: Buffer, magic: number[]): boolean {
  return buf.length >= magic.length && magic.every((b, i) => buf[i] === b);
}

/** Identifies the compression of a stream from its first bytes (6 are enough). */
export function detectCompression(head: Buffer): Compression {
  if (startsWith(head, GZIP_MAGIC)) return 'gzip';
  if (startsWith(head, ZSTD_MAGIC)) return 'zstd';
  if (startsWith(head, XZ_MAGIC)) throw new CompressionError('xz-compressed input is not supported: decompress it first (xz -d) or use gzip/zstd');
  if (startsWith(head, BZIP2_MAGIC) && head.length >= 4 && head[3]! >= 0x31 && head[3]! <= 0x39) {
    throw new CompressionError('bzip2-compressed input is not supported: decompress it first (bunzip2) or use gzip/zstd');
  }
  return 'none';
}

/**
 * Reads at least `n` bytes (or everything, if shorter) from the start of a stream without
 * consuming them: the returned stream still yields the whole content.
 */
export function peekStream(stream: Readable, n: number): Promise<{ head: Buffer; stream: Readable }> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let length = 0;
    let settled = false;
    const cleanup = () => {
      stream.off('readable', onReadable);
      stream.off('end', onEnd);
      stream.off('error', onError);
    };
    const finish = (ended: boolean) => {
      if (settled) return;
      settled = true;
      cleanup();
      const head = Buffer.concat(chunks);
      if (ended) {
        // unshift() is not allowed after 'end': hand back a fresh stream over what was read.
        resolve({ head, stream: Readable.from(head.length ? [head] : []) });
      } else {
        if (head.length) stream.unshift(head);
        resolve({ head, stream });
      }
    };
    const onReadable = () => {
      let chunk: Buffer | null;
      while (length < n && (chunk = stream.read()) !== null) {
        const b = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
        chunks.push(b);
        length += b.length;
      }
      if (length >= n) finish(false);
    };
    const onEnd = () => finish(true);
    const onError = (e: Error) => { if (!settled) { settled = true; cleanup(); reject(e); } };
    stream.on('readable', onReadable);
    stream.on('end', onEnd);
    stream.on('error', onError);
  });
}

/** Wraps a child process filter (stdin -> stdout) as a Duplex whose readable side only ends
 * after the process exited 0, so a failing zstd surfaces as a stream error, never as a short read. */
function processFilter(cmd: string, args: string[], what: string): Duplex {
  const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  const out = new PassThrough({ highWaterMark: STREAM_CHUNK });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => { if (stderr.length < 4096) stderr += d.toString(); });
  child.stdout.pipe(out, { end: false });
  let exited = false;
  child.on('error', (e: NodeJS.ErrnoException) => {
    exited = true;
    out.destroy(e.code === 'ENOENT' ? new UserError(`${cmd} is not installed (apt-get install ${cmd})`) : e);
  });
  child.on('close', (code, signal) => {
    exited = true;
    if (code === 0) out.end();
    else if (!out.destroyed) out.destroy(new CompressionError(`${what} failed: ${stderr.trim() || `exit ${code ?? signal}`}`));
  });
  // A consumer that stops early (error elsewhere) must not leave the process behind.
  out.on('close', () => { if (!exited) child.kill('SIGKILL'); });
  // Writes go through a wrapper: EPIPE after the child died early must not win over the exit
  // status error, which says what was wrong with the data.
  let waiting: (() => void) | undefined;
  child.stdin.on('error', () => { waiting?.(); waiting = undefined; });
  child.on('close', () => { waiting?.(); waiting = undefined; });
  const input = new Writable({
    highWaterMark: STREAM_CHUNK,
    write(chunk: Buffer, _enc, cb) {
      if (exited || child.stdin.destroyed) { cb(); return; }
      if (child.stdin.write(chunk)) cb();
      else {
        let called = false;
        const done = () => { if (!called) { called = true; waiting = undefined; cb(); } };
        waiting = done;
        child.stdin.once('drain', done);
      }
    },
    final(cb) { child.stdin.end(); cb(); },
  });
  return Duplex.from({ writable: input, readable: out });
}

/** A compressing Duplex for `compression` (identity for 'none'). */
export function compressor(compression: Compression, opts: { level?: number } = {}): Duplex {
  switch (compression) {
    case 'gzip':
      // Blocks compressed concurrently on the thread pool: gzip is the slowest stage of import.
      return new ParallelGzip(opts.level ?? zlib.constants.Z_DEFAULT_COMPRESSION);
    case 'zstd':
      return processFilter('zstd', ['-c', '-q', '--no-progress', `-${opts.level ?? 3}`, '-T0'], 'zstd compression');
    case 'none':
      return new PassThrough({ highWaterMark: STREAM_CHUNK });
  }
}

/** A decompressing Duplex for a known compression. Corrupt input fails with a CompressionError. */
export function decompressor(compression: Compression): Duplex {
  switch (compression) {
    case 'gzip':
      return zlib.createGunzip({ chunkSize: STREAM_CHUNK });
    case 'zstd':
      return processFilter('zstd', ['-d', '-c', '-q', '--no-progress'], 'zstd decompression');
    case 'none':
      return new PassThrough({ highWaterMark: STREAM_CHUNK });
  }
}

/**
 * Returns the decompressed content of `input`. With 'auto' the compression is detected from the
 * magic bytes (gzip, zstd, or plain); the detected value is returned too.
 */
export async function decompress(input: Readable, compression: CompressionOption = 'auto'):
  Promise<{ stream: Readable; compression: Compression }> {
  let source = input;
  let c: Compression;
  if (compression === 'auto') {
    const peeked = await peekStream(input, 6);
    source = peeked.stream;
    c = detectCompression(peeked.head);
  } else {
    c = compression;
  }
  if (c === 'none') return { stream: source, compression: c };
  const d = decompressor(c);
  const out = pipeline(source, d, () => { /* errors reach the consumer through `d` */ });
  return { stream: out as unknown as Readable, compression: c };
}

/** zlib's messages ("incorrect header check") do not say what was being read; this does. */
export function explainCompressionError(e: unknown): unknown {
  const code = (e as NodeJS.ErrnoException)?.code;
  if (code === 'Z_DATA_ERROR' || code === 'Z_BUF_ERROR' || code === 'Z_STREAM_ERROR') {
    const msg = (e as Error).message === 'unexpected end of file' ? 'truncated gzip data (unexpected end of file)' : `corrupt gzip data: ${(e as Error).message}`;
    return new CompressionError(msg);
  }
  return e;
}

/** True for xz and bzip2 data, which openWithExternalDecompressor hands to their programs. */
export function isExternallyDecompressed(head: Buffer): boolean {
  return startsWith(head, XZ_MAGIC) || startsWith(head, BZIP2_MAGIC);
}

/**
 * Opens a file users hand to ADD or `mkimage rootfs`. Node has no xz or bzip2, so those are
 * decompressed here by their binaries (xz-utils, bzip2), with the same exit-status checks as
 * zstd; anything else comes back as the raw file, for decompress() or the layer code to detect.
 */
export async function openWithExternalDecompressor(file: string): Promise<Readable> {
  const fh = await fsp.open(file, 'r');
  const head = Buffer.alloc(XZ_MAGIC.length);
  try { await fh.read(head, 0, head.length, 0); } finally { await fh.close(); }
  const program = !isExternallyDecompressed(head) ? undefined : startsWith(head, XZ_MAGIC) ? 'xz' : 'bzip2';
  const input = createReadStream(file, { highWaterMark: STREAM_CHUNK });
  if (!program) return input;
  const filter = processFilter(program, ['-dc'], `${program} decompression of ${file}`);
  return pipeline(input, filter, () => { /* errors reach the consumer through the filter */ }) as unknown as Readable;
}
