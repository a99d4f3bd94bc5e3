// Images in and out of the store: rootfs import/export, docker-archive, oci-archive and OCI
// layout directories (save/load), and those formats as ImageSource/ImageDestination for copy.
import type { ImageDestination, ImageSource } from '../image/source.js';
import { UserError } from '../util/errors.js';
import { TarFile } from './tar-file.js';
import { DirLayoutFiles, OciLayoutDestination, OciLayoutSource, TarLayoutFiles } from './oci.js';
import { DockerArchiveDestination, DockerArchiveSource } from './docker.js';

export { importRootfs, importLayerStream, TarValidator } from './import.js';
export type { ImportOptions, ImportResult } from './import.js';
export { exportImage } from './export.js';
export type { ExportResult } from './export.js';
export { saveImages } from './save.js';
export type { SaveFormat, SaveResult } from './save.js';
export { loadArchive, detectArchiveFormat } from './load.js';
export type { ArchiveFormat, LoadResult, LoadedImage } from './load.js';
export { TarFile, TarWriter, ArchiveError } from './tar-file.js';
export { OciLayoutSource, OciLayoutDestination, DirLayoutFiles, TarLayoutFiles, readLayoutIndex, selectLayoutEntry, blobEntryName } from './oci.js';
export { DockerArchiveSource, DockerArchiveDestination, readDockerArchive, familiarTag } from './docker.js';

export interface ArchiveLocation { transport: string; path: string; tag?: string }

/** Opens `oci:DIR[:ref]`, `oci-archive:FILE[:ref]` or `docker-archive:FILE[:ref|@N]` for reading. */
export async function openArchiveSource(l: ArchiveLocation): Promise<ImageSource> {
  switch (l.transport) {
    case 'oci': return new OciLayoutSource(new DirLayoutFiles(l.path), l.tag, 'oci');
    case 'oci-archive': return new OciLayoutSource(new TarLayoutFiles(await TarFile.open(l.path)), l.tag, 'oci-archive');
    case 'docker-archive': return new DockerArchiveSource(await TarFile.open(l.path), l.tag);
    default: throw new UserError(`unknown archive transport "${l.transport}:"`);
  }
}

/** Opens an archive location for writing; the file appears when the copy commits. */
export async function openArchiveDestination(l: ArchiveLocation): Promise<ImageDestination> {
  switch (l.transport) {
    case 'oci': return OciLayoutDestination.directory(l.path, l.tag);
    case 'oci-archive': return OciLayoutDestination.archive(l.path, l.tag);
    case 'docker-archive': return new DockerArchiveDestination(l.path, l.tag);
    default: throw new UserError(`unknown archive transport "${l.transport}:"`);
  }
}
