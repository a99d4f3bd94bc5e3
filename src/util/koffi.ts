// koffi (an FFI to libc) for the few syscalls node has no binding for: mount(2)/umount2(2)
// (runtime/mount-syscall.ts) and sync_file_range(2) (util/writeback.ts).
import { createRequire } from 'node:module';

export type Koffi = Pick<typeof import('koffi'), 'load' | 'errno'>;

let koffi: Koffi | undefined;

/**
 * koffi's addon. Its package index first reads node's ELF headers to tell glibc from musl and
 * then picks the platform package's binary (10-15 ms, more than a one-step build's two mount
 * execs cost); on glibc Linux that binary is linux_<arch>/koffi.node, loaded directly here (3-5 ms).
 * Anywhere else, or if that path ever moves, the package index finds it.
 */
export function loadKoffi(): Koffi {
  if (koffi) return koffi;
  // koffi is CommonJS with a native addon; the CLI bundles keep it external.
  const require = createRequire(import.meta.url);
  if (process.platform === 'linux') {
    try { return (koffi = require(`@koromix/koffi-linux-${process.arch}/linux_${process.arch}/koffi.node`) as Koffi); } catch { /* musl, or another layout */ }
  }
  return (koffi = require('koffi') as Koffi);
}
