// Hostile tars made by Python's tarfile, which writes what GNU tar refuses to (negative PAX
// sizes, hardlinks through symlinks, whiteout names like ".wh..."), plus byte patches for the
// header fields no writer produces (negative base-256 sizes, non-octal text). And the two
// archive formats `load` reads, wrapped around such a layer.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { createHash } from 'node:crypto';
import { makeTar, gzip } from './tars.js';

export interface PyEntry {
  name: string;
  type?: 'file' | 'dir' | 'symlink' | 'link';
  body?: string;
  linkname?: string;
  /** PAX records for this entry; tarfile lets them override size, path and linkpath. */
  pax?: Record<string, string>;
}

const PROGRAM = `
import base64, io, json, sys, tarfile
types = {'file': tarfile.REGTYPE, 'dir': tarfile.DIRTYPE, 'symlink': tarfile.SYMTYPE, 'link': tarfile.LNKTYPE}
def make(entries):
  buf = io.BytesIO()
  pax = any('pax' in e for e in entries)
  with tarfile.open(fileobj=buf, mode='w', format=tarfile.PAX_FORMAT if pax else tarfile.USTAR_FORMAT) as t:
    for e in entries:
      ti = tarfile.TarInfo(e['name'])
      ti.type = types[e.get('type', 'file')]
      ti.mode = 0o755 if ti.type == tarfile.DIRTYPE else 0o644
      ti.mtime = 1700000000
      ti.linkname = e.get('linkname', '')
      body = e.get('body', '').encode()
      if ti.type == tarfile.REGTYPE:
        ti.size = len(body)
      if 'pax' in e:
        ti.pax_headers = e['pax']
      t.addfile(ti, io.BytesIO(body) if ti.type == tarfile.REGTYPE else None)
  return base64.b64encode(buf.getvalue()).decode()
print(json.dumps([make(entries) for entries in json.load(sys.stdin)]))
`;

/** Debian's python3 (scripts/setup.sh installs it): a pyenv shim first on PATH costs a second a call. */
const PYTHON = '/usr/bin/python3';

/**
 * Tars written by Python's tarfile, one per entry list, in one interpreter run (PAX format
 * when any entry has PAX records, else ustar).
 */
export function pythonTars(specs: PyEntry[][]): Buffer[] {
  if (!existsSync(PYTHON)) throw new Error(`required tool ${PYTHON} is not installed (apt-get install python3; .ci/run installs it)`);
  const r = spawnSync(PYTHON, ['-c', PROGRAM], { input: JSON.stringify(specs), maxBuffer: 256 << 20 });
  if (r.status !== 0) throw new Error(`python3 tarfile failed: ${r.stderr}`);
  return (JSON.parse(r.stdout.toString()) as string[]).map((b) => Buffer.from(b, 'base64'));
}

export function pythonTar(entries: PyEntry[]): Buffer {
  return pythonTars([entries])[0]!;
}

/**
 * Replaces the 12-byte size field of the header block at `offset` and fixes its checksum, so
 * only the size is wrong. `field` is the raw bytes (octal text or base-256).
 */
export function patchSizeField(tar: Buffer, offset: number, field: Buffer): Buffer {
  const out = Buffer.from(tar);
  Buffer.alloc(12).copy(out, offset + 124);
  field.copy(out, offset + 124, 0, 12);
  out.fill(0x20, offset + 148, offset + 156);
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += out[offset + i]!;
  out.write(`${sum.toString(8).padStart(6, '0')}\0 `, offset + 148, 8, 'latin1');
  return out;
}

const sha256 = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** A legacy docker-archive (podman's shape) holding one image with `layer` as its only layer. */
export function dockerArchive(layer: Buffer, opts: { tag?: string; compress?: boolean; gzipped?: { diffID: string } } = {}): Buffer {
  // `gzipped`: `layer` is already compressed and uncompresses to `diffID`.
  const config = Buffer.from(JSON.stringify({
    architecture: 'amd64', os: 'linux', config: {}, rootfs: { type: 'layers', diff_ids: [opts.gzipped?.diffID ?? sha256(layer)] },
  }));
  const blob = opts.compress ? gzip(layer) : layer;
  const manifest = [{ Config: 'config.json', RepoTags: [opts.tag ?? 'hostile:1'], Layers: ['layer/layer.tar'] }];
  return makeTar([
    { name: 'manifest.json', body: JSON.stringify(manifest) },
    { name: 'config.json', body: config },
    { name: 'layer/layer.tar', body: blob },
  ]);
}

/** An oci-archive holding one image whose only layer is `layer`, gzip-compressed. */
export function ociArchive(layer: Buffer, opts: { tag?: string } = {}): Buffer {
  const blob = gzip(layer);
  const config = Buffer.from(JSON.stringify({
    architecture: 'amd64', os: 'linux', config: {}, rootfs: { type: 'layers', diff_ids: [sha256(layer)] },
  }));
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(config), size: config.length },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: sha256(blob), size: blob.length }],
  }));
  const index = {
    schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json',
    manifests: [{
      mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: sha256(manifest), size: manifest.length,
      annotations: { 'io.containerd.image.name': `docker.io/library/${opts.tag ?? 'hostile:1'}`, 'org.opencontainers.image.ref.name': opts.tag?.split(':')[1] ?? '1' },
    }],
  };
  const blobEntry = (b: Buffer) => ({ name: `blobs/sha256/${sha256(b).slice(7)}`, body: b });
  return makeTar([
    { name: 'oci-layout', body: '{"imageLayoutVersion":"1.0.0"}' },
    { name: 'index.json', body: JSON.stringify(index) },
    blobEntry(config), blobEntry(manifest), blobEntry(blob),
  ]);
}

/**
 * A gzip bomb: a tar (header by Python's tarfile) holding one file of `bytes` zeros, gzip'd as
 * concatenated gzip members (one per MiB of zeros, compressed once), which every gunzip reads
 * as one stream. 1 GiB of zeros comes to about 1 MiB and takes milliseconds to make.
 */
export function gzipBomb(bytes: number, name = 'zeros'): Buffer {
  const MiB = 1 << 20;
  if (bytes % MiB !== 0) throw new Error('gzipBomb: a whole number of MiB');
  const header = patchSizeField(pythonTar([{ name }]).subarray(0, 512), 0, Buffer.from(`${bytes.toString(8).padStart(11, '0')}\0`));
  const zeros = gzipSync(Buffer.alloc(MiB), { level: 9 });
  return Buffer.concat([gzipSync(header), ...Array.from({ length: bytes / MiB }, () => zeros), gzipSync(Buffer.alloc(1024))]);
}
