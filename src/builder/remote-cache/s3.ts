// --cache-to/--cache-from type=s3: BuildKit's S3 cache layout (cache/remotecache/s3), written
// and read through the registry's S3 client (src/registry/storage/s3.ts: the SDK, its
// S3-compatible settings, credentials). The layout:
//   <prefix><blobs_prefix><digest>      each layer blob (blobs_prefix default "blobs/")
//   <prefix><manifests_prefix><name>    the cache config JSON, one object per name (default
//                                       "manifests/" and "buildkit"; name=a;b writes both)
// The cache config is cacheconfig.v0 (format.ts) with each layer's descriptor in its
// `annotations` (mediaType, diffID, size, createdAt), since there is no OCI manifest around it.
import type { Readable, Writable } from 'node:stream';
import type { S3Driver } from '../../registry/storage/s3.js';
import type { CachedLayer } from '../cache.js';
import { decodeCacheConfig, encodeCacheConfig, type CacheConfig, type StepRecord } from './format.js';
import type { ImportedCache } from './format.js';
import type { LayerOrigin } from './origin.js';
import type { S3CacheSpec, S3ExportTuning } from './options.js';
import { eachLimit } from '../../util/concurrency.js';

const MAX_CONFIG_BYTES = 16 << 20;

async function driverFor(spec: S3CacheSpec): Promise<S3Driver> {
  const { S3Driver } = await import('../../registry/storage/s3.js');
  return new S3Driver({
    bucket: spec.bucket, region: spec.region,
    ...(spec.endpointUrl ? { regionEndpoint: spec.endpointUrl } : {}),
    forcePathStyle: spec.usePathStyle,
    ...(spec.accessKeyId && spec.secretAccessKey ? { accessKey: spec.accessKeyId, secretKey: spec.secretAccessKey, sessionToken: spec.sessionToken } : {}),
  });
}

const blobKey = (spec: S3CacheSpec, digest: string) => `${spec.prefix}${spec.blobsPrefix}${digest}`;
const manifestKey = (spec: S3CacheSpec, name: string) => `${spec.prefix}${spec.manifestsPrefix}${name}`;

function where(spec: S3CacheSpec): string {
  return `s3://${spec.bucket}/${manifestKey(spec, spec.names[0]!)}`;
}

/** HEAD: the object's modification time and size, or undefined when there is none. */
async function head(d: S3Driver, key: string): Promise<{ lastModified: Date; size: number } | undefined> {
  const { sdk, client } = await d.s3();
  try {
    const out = await client.send(new sdk.HeadObjectCommand({ Bucket: d.bucket, Key: key }));
    return { lastModified: out.LastModified ?? new Date(0), size: out.ContentLength ?? 0 };
  } catch (e) {
    const status = (e as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
    if (status === 404 || (e as Error).name === 'NotFound' || (e as Error).name === 'NoSuchKey') return undefined;
    throw e;
  }
}

/** CopyObject's limit; bigger objects would need a multipart copy, and are left as they are. */
const MAX_COPY_OBJECT = 5 * 1024 ** 3;

/**
 * x-amz-copy-source is URL-encoded; ':' (every blob key has one) stays as BuildKit sends it,
 * since some servers (s3rver) do not decode %3A there.
 */
const copySource = (bucket: string, key: string) => `${bucket}/${key.split('/').map((p) => encodeURIComponent(p).replace(/%3A/g, ':')).join('/')}`;

/**
 * BuildKit's touch: the blob copied onto itself with new metadata (S3 refuses a copy onto itself
 * that changes nothing), which gives it a new modification time, so a bucket lifecycle rule that
 * expires old objects keeps the blobs caches still use.
 */
async function touch(d: S3Driver, key: string, mediaType: string): Promise<void> {
  const { sdk, client } = await d.s3();
  await client.send(new sdk.CopyObjectCommand({
    Bucket: d.bucket, Key: key, CopySource: copySource(d.bucket, key),
    MetadataDirective: 'REPLACE', Metadata: { 'updated-at': new Date().toISOString() }, ContentType: mediaType,
  }));
}

/**
 * Writes the blobs the records name and the config under each name. Blobs go upload_parallelism
 * at a time; one already in the bucket is not uploaded again, only touched when it is older than
 * touch_refresh. The config is written last, so it never names a blob that is not there.
 */
export async function exportS3Cache(spec: S3CacheSpec & S3ExportTuning, steps: StepRecord[], openLayer: (l: CachedLayer) => Promise<Readable>, progress?: Writable): Promise<void> {
  const d = await driverFor(spec);
  const { sdk, client } = await d.s3();
  const { config, layers } = encodeCacheConfig(steps);
  const created = new Map<string, string>();
  for (const s of steps) if (s.entry.layer && !created.has(s.entry.layer.digest)) created.set(s.entry.layer.digest, s.entry.created);
  const byDigest = new Map(layers.map((l) => [l.digest, l]));
  const annotated: CacheConfig = {
    ...config,
    layers: (config.layers ?? []).map((cl) => {
      const l = byDigest.get(cl.blob)!;
      return { ...cl, annotations: { mediaType: l.mediaType, diffID: l.diffID, size: l.size, ...(created.has(l.digest) ? { createdAt: created.get(l.digest) } : {}) } };
    }),
  };
  try {
    await eachLimit(layers, spec.uploadParallelism, async (l) => {
      const key = blobKey(spec, l.digest);
      const there = await head(d, key);
      if (there) {
        if (Date.now() - there.lastModified.getTime() > spec.touchRefreshMs && there.size < MAX_COPY_OBJECT) await touch(d, key, l.mediaType);
        return;
      }
      progress?.write(`writing layer ${l.digest}\n`);
      await client.send(new sdk.PutObjectCommand({ Bucket: d.bucket, Key: key, Body: await openLayer(l), ContentLength: l.size, ContentType: l.mediaType }));
    });
    const body = Buffer.from(JSON.stringify(annotated));
    for (const name of spec.names) {
      progress?.write(`writing cache manifest s3://${spec.bucket}/${manifestKey(spec, name)}\n`);
      await client.send(new sdk.PutObjectCommand({ Bucket: d.bucket, Key: manifestKey(spec, name), Body: body, ContentLength: body.length, ContentType: 'application/json' }));
    }
  } finally {
    client.destroy();
  }
}

/** Reads the config under the first name; layer blobs are opened only when a hit needs them. */
export async function importS3Cache(spec: S3CacheSpec, progress?: Writable): Promise<ImportedCache> {
  const d = await driverFor(spec);
  const { sdk, client } = await d.s3();
  const description = where(spec);
  progress?.write(`importing cache manifest from ${description}\n`);
  try {
    let text: string;
    try {
      const out = await client.send(new sdk.GetObjectCommand({ Bucket: d.bucket, Key: manifestKey(spec, spec.names[0]!) }));
      if ((out.ContentLength ?? 0) > MAX_CONFIG_BYTES) throw new Error(`cache config is over ${MAX_CONFIG_BYTES} bytes`);
      text = await out.Body!.transformToString('utf8');
    } catch (e) {
      const status = (e as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
      throw new Error(status === 404 || (e as Error).name === 'NoSuchKey' ? 'not found' : (e as Error).message);
    }
    let config: CacheConfig;
    try { config = JSON.parse(text) as CacheConfig; } catch { throw new Error('cache config is not valid JSON'); }
    const blobs = new Map<string, { mediaType: string; size: number; diffID?: string }>();
    const origins = new Map<string, LayerOrigin>();
    for (const l of Array.isArray(config.layers) ? config.layers : []) {
      const a = l.annotations;
      if (!a?.mediaType || typeof a.size !== 'number') throw new Error(`cache config: layer ${l.blob} has no mediaType/size annotations`);
      blobs.set(l.blob, { mediaType: a.mediaType, size: a.size, diffID: a.diffID });
      const key = blobKey(spec, l.blob);
      origins.set(l.blob, {
        description,
        open: async () => (await client.send(new sdk.GetObjectCommand({ Bucket: d.bucket, Key: key }))).Body as Readable,
      });
    }
    return { description, entries: decodeCacheConfig(config, blobs), origins, close: async () => client.destroy() };
  } catch (e) {
    client.destroy();
    throw new Error(`failed to import cache manifest from ${description}: ${(e as Error).message}`);
  }
}
