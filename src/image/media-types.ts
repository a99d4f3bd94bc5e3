// Media types of the OCI image spec and Docker's schema2, the two families every registry speaks.
export const MediaType = {
  OciManifest: 'application/vnd.oci.image.manifest.v1+json',
  OciIndex: 'application/vnd.oci.image.index.v1+json',
  OciConfig: 'application/vnd.oci.image.config.v1+json',
  OciLayer: 'application/vnd.oci.image.layer.v1.tar',
  OciLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  OciLayerZstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  OciEmpty: 'application/vnd.oci.empty.v1+json',
  DockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  DockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  DockerConfig: 'application/vnd.docker.container.image.v1+json',
  DockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  DockerForeignLayerGzip: 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
  DockerSchema1Signed: 'application/vnd.docker.distribution.manifest.v1+prettyjws',
} as const;

export type Compression = 'none' | 'gzip' | 'zstd';

export function isIndexMediaType(mt: string | undefined): boolean {
  return mt === MediaType.OciIndex || mt === MediaType.DockerManifestList;
}

export function isManifestMediaType(mt: string | undefined): boolean {
  return mt === MediaType.OciManifest || mt === MediaType.DockerManifest;
}

/** Media types a registry or store accepts as a top-level manifest. */
export const MANIFEST_MEDIA_TYPES: readonly string[] = [
  MediaType.OciManifest, MediaType.OciIndex, MediaType.DockerManifest, MediaType.DockerManifestList,
];

export function isLayerMediaType(mt: string): boolean {
  return mt.startsWith('application/vnd.oci.image.layer.') || mt.startsWith('application/vnd.docker.image.rootfs.');
}

export function layerCompression(mt: string): Compression {
  if (mt.endsWith('+zstd') || mt.endsWith('.zstd')) return 'zstd';
  if (mt.endsWith('gzip')) return 'gzip';
  return 'none';
}

export function ociLayerMediaType(c: Compression): string {
  return c === 'gzip' ? MediaType.OciLayerGzip : c === 'zstd' ? MediaType.OciLayerZstd : MediaType.OciLayer;
}

/** Docker schema2 only knows gzip layers; uncompressed ones use the OCI type (as Docker itself does). */
export function dockerLayerMediaType(c: Compression): string {
  return c === 'gzip' ? MediaType.DockerLayerGzip : ociLayerMediaType(c);
}
