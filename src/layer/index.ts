// Layers: deterministic tar creation, compression, and escape-proof extraction with whiteouts.
export { createLayer, storeLayerStream, tarDirectory, WHITEOUT_PREFIX, OPAQUE_WHITEOUT } from './create.js';
export type { LayerInfo, CreateLayerOptions } from './create.js';
export { applyLayer, normalizeEntryPath, LayerError, MAX_PATH_LENGTH, MAX_PAX_BYTES } from './apply.js';
export type { ApplyLayerOptions, ApplyLayerResult } from './apply.js';
export { unpackImage } from './unpack.js';
export type { UnpackResult } from './unpack.js';
export { decompress, decompressor, compressor, detectCompression, peekStream, explainCompressionError, CompressionError, openWithExternalDecompressor } from './compression.js';
export type { CompressionOption } from './compression.js';
export { encodeHeader, paddingFor, END_OF_ARCHIVE } from './tar-writer.js';
export type { TarHeader, TarEntryType } from './tar-writer.js';
export { ParallelGzip } from './parallel-gzip.js';
