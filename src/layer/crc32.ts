// The gzip trailer's CRC-32 of a layer's tar. zlib.crc32 (Node's bundled zlib) runs at ~2 GB/s
// here, ~19 ms for the 40 MB bench layer on the snapshot's gzip thread, its slowest stage;
// libdeflate's (PCLMULQDQ / VPCLMULQDQ folding) does the same sum in ~5 ms. libdeflate is a
// shared library Debian ships as libdeflate0 (setup.sh installs it), called through koffi, which
// drydock loads for mount(2) anyway. Without it, zlib's: the same value either way.
import zlib from 'node:zlib';
import { loadKoffi } from '../runtime/mount-syscall.js';

type Crc32 = (crc: number, data: Buffer, length: number) => number;

/** libdeflate's, once looked for: undefined before, null when it is not there. */
let fast: Crc32 | null | undefined;

/** Below this many bytes zlib's is as quick as a call through the FFI (and loads nothing). */
const FAST_FROM = 64 * 1024;

function libdeflate(): Crc32 | null {
  if (fast !== undefined) return fast;
  fast = null;
  try {
    const koffi = loadKoffi() as unknown as { load(name: string): { func(decl: string): Crc32 } };
    fast = koffi.load('libdeflate.so.0').func('uint32_t libdeflate_crc32(uint32_t crc, const void *buffer, size_t len)');
  } catch { /* not installed (or no koffi): zlib's */ }
  return fast;
}

/** The CRC-32 (gzip's, as zlib.crc32) of `data` continued from `crc` (0 to start). */
export function crc32(data: Buffer, crc = 0): number {
  const f = data.length >= FAST_FROM ? libdeflate() : null;
  return f ? f(crc >>> 0, data, data.length) : zlib.crc32(data, crc) >>> 0;
}

/**
 * Loads libdeflate now (a thread that will sum large blocks: the snapshot worker's gzip thread
 * at its start), so the first block does not wait for it. Which implementation sums large data.
 */
export function preloadCrc32(): 'libdeflate' | 'zlib' {
  return libdeflate() ? 'libdeflate' : 'zlib';
}
