// Where a remote cache hit's layer blob can be fetched from. Its own file because both the
// importer (which finds origins) and the exporter (which may mount from them) name it.
import type { Readable } from 'node:stream';
import type { BlobOrigin } from '../../image/source.js';

/** Where a layer that is not in the store can be read from. */
export interface LayerOrigin {
  open(): Promise<Readable>;
  /** A registry repository holding it (lets a registry export mount instead of copy). */
  blobOrigin?: BlobOrigin;
  description: string;
}
