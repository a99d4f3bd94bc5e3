// Hand-crafted tar archives for tests, including the malicious ones a real tar tool refuses to
// write (../ names, absolute hardlinks). Built with drydock's own header encoder.
import { gzipSync } from 'node:zlib';
import { spawnSync } from 'node:child_process';
import { encodeHeader, paddingFor, END_OF_ARCHIVE, type TarEntryType } from '../../src/layer/tar-writer.js';

export interface TarSpec {
  name: string;
  type?: TarEntryType;
  body?: string | Buffer;
  linkname?: string;
  mode?: number;
  uid?: number;
  gid?: number;
  mtime?: number;
  devmajor?: number;
  devminor?: number;
  xattrs?: Record<string, string | Buffer>;
}

export function makeTar(entries: TarSpec[], opts: { end?: boolean } = {}): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    const body = e.body === undefined ? Buffer.alloc(0) : Buffer.from(e.body);
    const type = e.type ?? 'file';
    parts.push(encodeHeader({
      name: e.name, type, mode: e.mode ?? (type === 'directory' ? 0o755 : 0o644), uid: e.uid ?? 0, gid: e.gid ?? 0,
      size: body.length, mtime: e.mtime ?? 1700000000, linkname: e.linkname, devmajor: e.devmajor, devminor: e.devminor,
      xattrs: e.xattrs ? new Map(Object.entries(e.xattrs).map(([k, v]) => [k, Buffer.from(v)])) : undefined,
    }));
    if (type === 'file' && body.length) {
      parts.push(body, Buffer.alloc(paddingFor(body.length)));
    }
  }
  if (opts.end !== false) parts.push(END_OF_ARCHIVE);
  return Buffer.concat(parts);
}

export const gzip = (b: Buffer): Buffer => gzipSync(b);

export function zstd(b: Buffer): Buffer {
  const r = spawnSync('zstd', ['-c', '-q'], { input: b, maxBuffer: 1 << 30 });
  if (r.status !== 0) throw new Error(`zstd failed: ${r.stderr}`);
  return r.stdout;
}
