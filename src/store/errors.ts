// Errors of the content store, in a module of their own so the stream classes that throw them
// (hashing-transform.ts, blob-file-writer.ts) need not import content-store.ts.

export class BlobVerificationError extends Error {
  override name = 'BlobVerificationError';
}
