// Images in and out of the store: rootfs import, docker-archive, oci-archive and OCI layouts.
export { importRootfs, importLayerStream, TarValidator } from './import.js';
export type { ImportOptions, ImportResult } from './import.js';
export { exportImage } from './export.js';
export type { ExportResult } from './export.js';
