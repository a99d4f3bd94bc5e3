// docker-archive: what `docker save` writes. Two layouts are read: Docker 25+ (an OCI layout
// plus manifest.json pointing into blobs/sha256/) and the legacy one podman and older Docker
// write (<id>/layer.tar or <hex>.tar, uncompressed, plus <hex>.json configs). drydock writes the
// Docker 25+ shape, so its archives are also valid oci-archives.
import { Readable, type Writable } from 'node:stream';
import { createHash } from 'node:crypto';
import { digestOf, parseDigest } from '../image/digest.js';
import { MediaType, ociLayerMediaType } from '../image/media-types.js';
import { parseReference, familiarName, formatReference } from '../image/reference.js';
import type { Descriptor, ImageConfig, ImageManifest } from '../image/types.js';
import type { ImageSource, RawManifest } from '../image/source.js';
import { detectCompression } from '../layer/compression.js';
import { ArchiveError, TarFile, TarWriter } from './tar-file.js';
import { OciLayoutDestination, TarLayoutSink, blobEntryName } from './oci.js';

export interface DockerArchiveEntry {
  Config: string;
  RepoTags?: string[] | null;
  Layers: string[];
}

export interface DockerArchiveImage {
  configPath: string;
  configBytes: Buffer;
  config: ImageConfig;
  repoTags: string[];
  layerPaths: string[];
}

/** Parses and checks manifest.json: every config and layer it names must be in the archive. */
export async function readDockerArchive(tar: TarFile): Promise<DockerArchiveImage[]> {
  const entries = await tar.readJson<DockerArchiveEntry[]>('manifest.json');
  if (!Array.isArray(entries)) throw new ArchiveError(`${tar.file}: manifest.json is not a list of images`);
  const out: DockerArchiveImage[] = [];
  for (const [i, e] of entries.entries()) {
    if (typeof e?.Config !== 'string' || !Array.isArray(e.Layers)) throw new ArchiveError(`${tar.file}: manifest.json entry ${i} lacks Config or Layers`);
    for (const p of [e.Config, ...e.Layers]) {
      if (typeof p !== 'string' || !tar.has(p)) throw new ArchiveError(`${tar.file}: archive is missing "${p}" referenced by manifest.json (incomplete or corrupt archive)`);
    }
    const configBytes = await tar.read(e.Config);
    let config: ImageConfig;
    try { config = JSON.parse(configBytes.toString('utf8')) as ImageConfig; } catch (err) {
      throw new ArchiveError(`${tar.file}: config ${e.Config} is not valid JSON: ${(err as Error).message}`);
    }
    const diffIDs = config.rootfs?.diff_ids ?? [];
    if (diffIDs.length !== e.Layers.length) {
      throw new ArchiveError(`${tar.file}: config ${e.Config} lists ${diffIDs.length} layers, manifest.json ${e.Layers.length}`);
    }
    for (const d of diffIDs) {
      try { parseDigest(d); } catch (err) { throw new ArchiveError(`${tar.file}: config ${e.Config}: ${(err as Error).message}`); }
    }
    out.push({ configPath: e.Config, configBytes, config, repoTags: e.RepoTags ?? [], layerPaths: e.Layers });
  }
  return out;
}

/** The blob digest a "blobs/<alg>/<hex>" path names, if it is one. */
export function digestFromBlobPath(p: string): string | undefined {
  const m = /^(?:\.\/)?blobs\/(sha256|sha512)\/([a-f0-9]+)$/.exec(p);
  if (!m) return undefined;
  try { return parseDigest(`${m[1]}:${m[2]}`).value; } catch { return undefined; }
}

async function hashEntry(tar: TarFile, name: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of tar.open(name)) h.update(chunk as Buffer);
  return `sha256:${h.digest('hex')}`;
}

/**
 * A docker-archive image as an ImageSource: presents an OCI manifest whose layers are the
 * archive's layer files as they are (uncompressed for legacy archives).
 */
export class DockerArchiveSource implements ImageSource {
  readonly description: string;
  private built?: { raw: RawManifest; paths: Map<string, string> };

  /** `ref` picks an image by RepoTag ("busybox:latest") or index ("@0"). */
  constructor(private readonly tar: TarFile, private readonly ref?: string) {
    this.description = `docker-archive:${tar.file}${ref ? `:${ref}` : ''}`;
  }

  private async select(): Promise<DockerArchiveImage> {
    const images = await readDockerArchive(this.tar);
    if (this.ref?.startsWith('@')) {
      const img = images[Number(this.ref.slice(1))];
      if (!img) throw new ArchiveError(`${this.description}: no image at index ${this.ref.slice(1)} (archive holds ${images.length})`);
      return img;
    }
    if (this.ref) {
      const want = formatReference(parseReference(this.ref));
      const img = images.find((i) => i.repoTags.some((t) => formatReference(parseReference(t)) === want));
      if (!img) throw new ArchiveError(`${this.description}: no image tagged ${this.ref} (has ${images.flatMap((i) => i.repoTags).join(', ') || 'untagged images'})`);
      return img;
    }
    if (images.length !== 1) throw new ArchiveError(`${this.description}: archive holds ${images.length} images; name one with :REPO:TAG or :@N`);
    return images[0]!;
  }

  private async build(): Promise<{ raw: RawManifest; paths: Map<string, string> }> {
    if (this.built) return this.built;
    const img = await this.select();
    const paths = new Map<string, string>();
    const configDigest = digestOf(img.configBytes);
    paths.set(configDigest, img.configPath);
    const layers: Descriptor[] = [];
    for (const [i, p] of img.layerPaths.entries()) {
      const compression = detectCompression(await this.tar.head(p, 6));
      const digest = digestFromBlobPath(p) ?? (compression === 'none' ? img.config.rootfs.diff_ids[i]! : await hashEntry(this.tar, p));
      paths.set(digest, p);
      layers.push({ mediaType: ociLayerMediaType(compression), digest, size: this.tar.get(p)!.size });
    }
    const manifest: ImageManifest = {
      schemaVersion: 2,
      mediaType: MediaType.OciManifest,
      config: { mediaType: MediaType.OciConfig, digest: configDigest, size: img.configBytes.length },
      layers,
    };
    const bytes = Buffer.from(JSON.stringify(manifest));
    this.built = { raw: { bytes, mediaType: MediaType.OciManifest, digest: digestOf(bytes) }, paths };
    return this.built;
  }

  async getManifest(): Promise<RawManifest> {
    return (await this.build()).raw;
  }

  async getManifestByDigest(digest: string): Promise<RawManifest> {
    const { raw } = await this.build();
    if (raw.digest !== digest) throw new ArchiveError(`${this.description}: no manifest ${digest}`);
    return raw;
  }

  async openBlob(desc: Descriptor): Promise<Readable> {
    const p = (await this.build()).paths.get(desc.digest);
    if (!p) throw new ArchiveError(`${this.description}: no blob ${desc.digest}`);
    return this.tar.open(p);
  }
}

/** "docker.io/library/busybox:latest" -> "busybox:latest", as Docker writes RepoTags. */
export function familiarTag(name: string): string {
  const ref = parseReference(name);
  return `${familiarName(ref)}:${ref.tag ?? 'latest'}`;
}

/**
 * Writes a docker-archive in the Docker 25+ shape: OCI layout + manifest.json + repositories.
 * Layers stay as stored (gzip); `docker load` and `podman load` decompress them.
 */
export class DockerArchiveDestination extends OciLayoutDestination {
  constructor(file: string | Writable, ref?: string) {
    const holder: { self?: DockerArchiveDestination } = {};
    const name = typeof file === 'string' ? file : '-';
    super(new TarLayoutSink(new TarWriter(file), async () => holder.self!.dockerFiles()), `docker-archive:${name}${ref ? `:${ref}` : ''}`, ref);
    holder.self = this;
  }

  private dockerFiles(): [string, Buffer][] {
    const byConfig = new Map<string, DockerArchiveEntry>();
    const repositories: Record<string, Record<string, string>> = {};
    for (const t of this.tops) {
      const doc = JSON.parse(t.manifest.bytes.toString('utf8')) as ImageManifest & { manifests?: unknown };
      if (Array.isArray(doc.manifests)) throw new ArchiveError('docker-archive holds single-platform images only; save a platform-specific image or use --format oci-archive');
      const entry = byConfig.get(doc.config.digest) ?? { Config: blobEntryName(doc.config.digest), RepoTags: [], Layers: doc.layers.map((l) => blobEntryName(l.digest)) };
      byConfig.set(doc.config.digest, entry);
      const tagName = t.fullName ?? (t.ref && /[:/]/.test(t.ref) ? t.ref : undefined);
      if (tagName) {
        const tag = familiarTag(tagName);
        if (!entry.RepoTags!.includes(tag)) entry.RepoTags!.push(tag);
        const colon = tag.lastIndexOf(':');
        const last = doc.layers.at(-1);
        (repositories[tag.slice(0, colon)] ??= {})[tag.slice(colon + 1)] = last ? parseDigest(last.digest).hex : parseDigest(doc.config.digest).hex;
      }
    }
    const files: [string, Buffer][] = [['manifest.json', Buffer.from(JSON.stringify([...byConfig.values()]))]];
    if (Object.keys(repositories).length) files.push(['repositories', Buffer.from(JSON.stringify(repositories))]);
    return files;
  }
}

