// Layers: deterministic tar creation, compression, escape-proof extraction with whiteouts, and
// the checks every tar reader shares (strict sizes, entry rules, the expanded-size cap).
export { createLayer, storeLayerStream, tarDirectory, WHITEOUT_PREFIX, OPAQUE_WHITEOUT } from './create.js';
export type { LayerInfo, CreateLayerOptions } from './create.js';
export { applyLayer, normalizeEntryPath, LayerError, MAX_PATH_LENGTH, MAX_PAX_BYTES } from './apply.js';
export type { ApplyLayerOptions, ApplyLayerResult } from './apply.js';
export { LayerEntryRules } from './entry-rules.js';
export type { EntryHeader, CheckedEntry } from './entry-rules.js';
export { TarValidator, describeTarError } from './validate.js';
export { layerLimits, ExpansionBudget, DEFAULT_MAX_LAYER_SIZE, parseByteSize } from './limits.js';
export type { LayerLimits } from './limits.js';
export { unpackImage } from './unpack.js';
export type { UnpackResult } from './unpack.js';
export { decompress, decompressor, compressor, detectCompression, peekStream, explainCompressionError, CompressionError, openWithExternalDecompressor } from './compression.js';
export type { CompressionOption } from './compression.js';
export { encodeHeader, paddingFor, END_OF_ARCHIVE } from './tar-writer.js';
export type { TarHeader, TarEntryType } from './tar-writer.js';
export { ParallelGzip } from './parallel-gzip.js';
