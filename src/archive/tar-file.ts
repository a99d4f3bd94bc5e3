// Random access to an uncompressed tar file (docker-archive, oci-archive): one pass reads only
// the 512-byte headers, seeking over entry data, and records where each entry's data lives;
// entries are then streamed with ranged reads. tar-stream cannot seek, so a sequential parser
// would read every layer once just to find manifest.json.
// Also the writing side: a tar written entry by entry to a file (atomically) or a stream.
import { createReadStream, createWriteStream, promises as fsp, type WriteStream } from 'node:fs';
import { once } from 'node:events';
import { Readable, type Writable } from 'node:stream';
import path from 'node:path';
import { STREAM_CHUNK, tempName, fsyncDir, discardStreamedFile } from '../util/fs.js';
import { UserError } from '../util/errors.js';
import { encodeHeader, paddingFor, END_OF_ARCHIVE, BLOCK, type TarHeader } from '../layer/tar-writer.js';
import { checksumMatches, headerBlockName, headerSize, paxSize } from '../layer/tar-fields.js';
import { MAX_META, parsePaxRecords } from '../layer/pax-tap.js';
import { LayerError } from '../layer/errors.js';
import { normalizeEntryPath } from '../layer/apply.js';

export class ArchiveError extends UserError {
  override name = 'ArchiveError';
}

export interface TarIndexEntry {
  name: string;
  type: string;
  /** Byte offset of the entry's data in the file. */
  offset: number;
  size: number;
  linkname?: string;
}

function cstring(buf: Buffer, off: number, len: number): string {
  const end = buf.indexOf(0, off);
  return buf.toString('utf8', off, end < 0 || end > off + len ? off + len : end);
}

/** An uncompressed tar file with an index of its entries by normalised name. */
export class TarFile {
  private constructor(readonly file: string, readonly entries: Map<string, TarIndexEntry>) {}

  static async open(file: string): Promise<TarFile> {
    try {
      return await TarFile.index(file);
    } catch (e) {
      // Size and record refusals name the entry; say which archive too.
      if (e instanceof LayerError) throw new ArchiveError(`${file}: ${e.message}`);
      throw e;
    }
  }

  private static async index(file: string): Promise<TarFile> {
    const fh = await fsp.open(file, 'r');
    const entries = new Map<string, TarIndexEntry>();
    try {
      const { size: fileSize } = await fh.stat();
      const header = Buffer.alloc(BLOCK);
      let pos = 0;
      let longName: string | undefined;
      let longLink: string | undefined;
      let pax = new Map<string, Buffer>();
      const readMeta = async (at: number, size: number) => {
        if (size > MAX_META) throw new ArchiveError(`tar extended header at offset ${at} is ${size} bytes (cap ${MAX_META})`);
        const buf = Buffer.alloc(size);
        const { bytesRead } = await fh.read(buf, 0, size, at);
        if (bytesRead !== size) throw new ArchiveError(`${file}: truncated tar archive`);
        return buf;
      };
      for (;;) {
        const { bytesRead } = await fh.read(header, 0, BLOCK, pos);
        if (bytesRead === 0) break; // no end-of-archive marker: tolerated, as GNU tar does
        if (bytesRead < BLOCK) throw new ArchiveError(`${file}: truncated tar archive (partial header at offset ${pos})`);
        if (header.every((b) => b === 0)) break;
        if (!checksumMatches(header)) throw new ArchiveError(`${file}: not a tar archive or corrupt (bad header checksum at offset ${pos})`);
        const typeflag = String.fromCharCode(header[156] || 0x30);
        const blockName = headerBlockName(header);
        const dataAt = pos + BLOCK;
        if (typeflag === 'x' || typeflag === 'g' || typeflag === 'L' || typeflag === 'K') {
          const size = headerSize(header, blockName);
          const meta = await readMeta(dataAt, size);
          if (typeflag === 'x') pax = parsePaxRecords(meta, blockName);
          else if (typeflag === 'L') longName = cstring(meta, 0, meta.length);
          else if (typeflag === 'K') longLink = cstring(meta, 0, meta.length);
          pos = dataAt + size + paddingFor(size);
          continue;
        }
        let name = blockName;
        if (longName !== undefined) name = longName;
        if (pax.has('path')) name = pax.get('path')!.toString('utf8');
        // Strict sizes (tar-fields.ts): a negative one would move `pos` backwards, forever.
        let size = headerSize(header, name);
        if (pax.has('size')) size = paxSize(pax.get('size')!.toString('latin1'), name);
        const linkname = pax.get('linkpath')?.toString('utf8') ?? longLink ?? (header[157] ? cstring(header, 157, 100) : undefined);
        if (dataAt + (typeflag === '0' || typeflag === '\0' || typeflag === '7' ? size : 0) > fileSize) {
          throw new ArchiveError(`${file}: truncated tar archive (entry "${name}" needs ${size} bytes)`);
        }
        const type = typeflag === '0' || typeflag === '7' ? 'file' : typeflag === '5' ? 'directory' : typeflag === '2' ? 'symlink' : typeflag === '1' ? 'link' : typeflag;
        const key = normalizeEntryPath(name);
        entries.set(key, { name: key, type, offset: dataAt, size: type === 'file' ? size : 0, linkname });
        // Links, directories, devices and fifos carry no data whatever their size field says.
        const dataSize = '123456'.includes(typeflag) ? 0 : size;
        pos = dataAt + dataSize + paddingFor(dataSize);
        longName = longLink = undefined;
        pax = new Map();
      }
    } finally {
      await fh.close();
    }
    return new TarFile(file, entries);
  }

  /** The entry for `name`, following hardlinks (docker-archive dedups layers with them). */
  get(name: string): TarIndexEntry | undefined {
    let e = this.entries.get(normalizeEntryPath(name));
    for (let hops = 0; e && (e.type === 'link' || e.type === 'symlink') && hops < 8; hops++) {
      const target = e.type === 'symlink' ? path.posix.join(path.posix.dirname(e.name), e.linkname ?? '') : e.linkname ?? '';
      e = this.entries.get(normalizeEntryPath(target));
    }
    return e && e.type === 'file' ? e : undefined;
  }

  has(name: string): boolean {
    return this.get(name) !== undefined;
  }

  open(name: string): Readable {
    const e = this.get(name);
    if (!e) throw new ArchiveError(`${this.file}: archive has no file "${name}"`);
    if (e.size === 0) return Readable.from([]);
    return createReadStream(this.file, { start: e.offset, end: e.offset + e.size - 1, highWaterMark: STREAM_CHUNK });
  }

  async read(name: string, max = 16 << 20): Promise<Buffer> {
    const e = this.get(name);
    if (!e) throw new ArchiveError(`${this.file}: archive has no file "${name}"`);
    if (e.size > max) throw new ArchiveError(`${this.file}: "${name}" is ${e.size} bytes, more than the ${max} expected for metadata`);
    const fh = await fsp.open(this.file, 'r');
    try {
      const buf = Buffer.alloc(e.size);
      await fh.read(buf, 0, e.size, e.offset);
      return buf;
    } finally {
      await fh.close();
    }
  }

  /** The first `n` bytes of an entry (compression sniffing). */
  async head(name: string, n: number): Promise<Buffer> {
    const e = this.get(name);
    if (!e) throw new ArchiveError(`${this.file}: archive has no file "${name}"`);
    const fh = await fsp.open(this.file, 'r');
    try {
      const buf = Buffer.alloc(Math.min(n, e.size));
      await fh.read(buf, 0, buf.length, e.offset);
      return buf;
    } finally {
      await fh.close();
    }
  }

  async readJson<T>(name: string): Promise<T> {
    const bytes = await this.read(name);
    try {
      return JSON.parse(bytes.toString('utf8')) as T;
    } catch (e) {
      throw new ArchiveError(`${this.file}: "${name}" is not valid JSON: ${(e as Error).message}`);
    }
  }
}

/**
 * Writes a tar entry by entry with backpressure. To a path, it writes a temp file next to it
 * and renames it into place on finish(); abort() removes the temp file.
 */
export class TarWriter {
  private readonly out: Writable;
  private readonly tmp?: string;
  private bytes = 0;
  private readonly dirs = new Set<string>();

  constructor(private readonly target: string | Writable, private readonly mtime = 0) {
    if (typeof target === 'string') {
      this.tmp = tempName(path.resolve(target));
      this.out = createWriteStream(this.tmp, { flags: 'wx', highWaterMark: STREAM_CHUNK });
    } else {
      this.out = target;
    }
    this.out.on('error', () => { /* surfaced by write()/finish() */ });
  }

  get size(): number { return this.bytes; }

  private async write(chunk: Buffer): Promise<void> {
    this.bytes += chunk.length;
    if (this.out.destroyed) throw new ArchiveError('archive output was closed');
    if (!this.out.write(chunk)) {
      await Promise.race([once(this.out, 'drain'), once(this.out, 'error').then(([e]) => { throw e; })]);
    }
  }

  /** Adds parent directory entries once, so extractors create them with sane modes. */
  private async parents(name: string): Promise<void> {
    const parts = name.split('/').slice(0, -1);
    for (let i = 1; i <= parts.length; i++) {
      const dir = parts.slice(0, i).join('/');
      if (this.dirs.has(dir)) continue;
      this.dirs.add(dir);
      await this.write(encodeHeader({ name: `${dir}/`, type: 'directory', mode: 0o755, uid: 0, gid: 0, size: 0, mtime: this.mtime }));
    }
  }

  /** Writes a header as given (any type) and, for files, exactly `header.size` bytes of body. */
  async addEntry(header: TarHeader, body?: AsyncIterable<Buffer>): Promise<void> {
    await this.write(encodeHeader(header));
    if (header.type !== 'file') return;
    let n = 0;
    if (body) {
      for await (const chunk of body) {
        n += chunk.length;
        if (n > header.size) throw new ArchiveError(`"${header.name}" is longer than its ${header.size}-byte header says`);
        await this.write(chunk);
      }
    }
    if (n !== header.size) throw new ArchiveError(`"${header.name}" is ${n} bytes, its header says ${header.size}`);
    const pad = paddingFor(header.size);
    if (pad) await this.write(Buffer.alloc(pad));
  }

  async addBuffer(name: string, data: Buffer, mode = 0o644): Promise<void> {
    await this.parents(name);
    await this.write(encodeHeader({ name, type: 'file', mode, uid: 0, gid: 0, size: data.length, mtime: this.mtime }));
    await this.write(data);
    const pad = paddingFor(data.length);
    if (pad) await this.write(Buffer.alloc(pad));
  }

  /** Streams `size` bytes from `content` as one entry; a length mismatch aborts the archive. */
  async addStream(name: string, size: number, content: Readable, mode = 0o644): Promise<void> {
    await this.parents(name);
    await this.write(encodeHeader({ name, type: 'file', mode, uid: 0, gid: 0, size, mtime: this.mtime }));
    let n = 0;
    for await (const chunk of content) {
      n += (chunk as Buffer).length;
      if (n > size) throw new ArchiveError(`"${name}" is longer than the expected ${size} bytes`);
      await this.write(chunk as Buffer);
    }
    if (n !== size) throw new ArchiveError(`"${name}" is ${n} bytes, expected ${size}`);
    const pad = paddingFor(size);
    if (pad) await this.write(Buffer.alloc(pad));
  }

  async finish(): Promise<void> {
    await this.write(END_OF_ARCHIVE);
    if (this.tmp) {
      const ws = this.out as WriteStream;
      ws.end();
      await once(ws, 'close');
      const fh = await fsp.open(this.tmp, 'r');
      try { await fh.sync(); } finally { await fh.close(); }
      await fsp.rename(this.tmp, this.target as string);
      await fsyncDir(path.dirname(path.resolve(this.target as string)));
    } else if (this.out !== process.stdout) {
      this.out.end();
    }
  }

  async abort(): Promise<void> {
    if (this.tmp) await discardStreamedFile(this.out as WriteStream, this.tmp);
  }
}
