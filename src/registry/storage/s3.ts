// The S3-compatible storage driver, after distribution's s3-aws driver: every storage path is
// one object key under an optional rootdirectory prefix; "directories" are key prefixes.
//
// The hard part is the writer. The registry appends an upload in several requests (PATCH chunks,
// each with its own writer instance, possibly in another server process behind the same bucket)
// and only then commits it. Like distribution, an in-progress file is an S3 multipart upload whose
// parts are all >= chunksize (S3 refuses to complete an upload with a non-final part under 5 MiB),
// buffered in memory up to one chunk per writer. What is left over when a writer closes (the tail,
// shorter than a chunk) cannot go into the multipart upload: distribution (2.x) then completes the
// upload and restarts it with UploadPartCopy, and (3.x) finds the upload again with
// ListMultipartUploads/ListParts. Neither works on every S3-compatible server: s3rver, the server
// the tests run against, has no ListMultipartUploads, ListParts, AbortMultipartUpload or
// UploadPartCopy. So drydock keeps an in-progress file's state in one small sibling object,
// `.drydock-inprogress.<name>`: a JSON line (upload id, part numbers, ETags, sizes) followed by the
// tail bytes. One PutObject replaces it atomically, so parts and tail never disagree after a crash,
// and it needs only CreateMultipartUpload/UploadPart/CompleteMultipartUpload, which AWS S3, MinIO,
// Ceph RGW, R2 and s3rver all have. Small files (config blobs, most chunks of small layers) never
// start a multipart upload at all: commit is one PutObject.
//
// The AWS SDK is imported on first use, so a filesystem-backed `drydock serve` never loads it.
import { createHash } from 'node:crypto';
import https from 'node:https';
import http from 'node:http';
import { Readable } from 'node:stream';
import type {
  S3Client, S3ClientConfig, CompletedPart, ListObjectsV2CommandOutput, PutObjectCommandInput, _Object as S3Object,
} from '@aws-sdk/client-s3';
import { UserError } from '../../util/errors.js';
import { PathNotFoundError, type FileInfo, type FileWriter, type StorageDriver } from './driver.js';
import { acquireLease, conditionalWritesHonoured, LEASE_TTL_MS, MAX_LEASE_TTL_MS, MIN_LEASE_TTL_MS } from './s3-lease.js';
import { parseDuration } from '../duration.js';
import { randomUUID } from 'node:crypto';

type Sdk = typeof import('@aws-sdk/client-s3');

export const MIN_CHUNK_SIZE = 5 << 20;
export const DEFAULT_CHUNK_SIZE = 10 << 20;
/** CopyObject's limit; larger objects need a multipart copy (UploadPartCopy). */
export const MAX_COPY_SIZE = 5 * 1024 ** 3;
const MAX_DELETE_BATCH = 1000;
/** S3's limit on parts per multipart upload: with 10 MiB parts, files up to ~100 GiB. */
const MAX_PARTS = 10_000;
const HIDDEN_PREFIX = '.drydock-inprogress.';

export interface S3DriverOptions {
  bucket: string;
  /** Default us-east-1 (what S3-compatible servers expect when an endpoint is given). */
  region?: string;
  /** S3-compatible endpoint, e.g. http://127.0.0.1:9000 or minio.internal:9000 (distribution's regionendpoint). */
  regionEndpoint?: string;
  /** Static credentials; without them the SDK's default chain (AWS_ACCESS_KEY_ID..., ~/.aws, instance role) is used. */
  accessKey?: string;
  secretKey?: string;
  sessionToken?: string;
  /** Key prefix for everything the registry stores. */
  rootDirectory?: string;
  /** https (default true) when the endpoint has no scheme. */
  secure?: boolean;
  /** Skip TLS certificate verification (self-signed test endpoints). */
  skipVerify?: boolean;
  /** Path-style URLs (http://host/bucket/key); default true when regionEndpoint is set. */
  forcePathStyle?: boolean;
  /** Multipart part size, >= 5 MiB; default 10 MiB. Each open writer buffers at most one. */
  chunkSize?: number;
  /** Server-side encryption: encrypt (AES256) or keyId (aws:kms). */
  encrypt?: boolean;
  keyId?: string;
  storageClass?: string;
  /** ListObjectsV2 page size (1..1000); small values exercise pagination in tests. */
  listPageSize?: number;
  /** Parallel uploads/requests per client; default 50. */
  maxSockets?: number;
  /** Lifetime of a lockFile lease without renewal (s3-lease.ts; storage.s3.leaselifetime); default 30 s. */
  leaseTtlMs?: number;
}

interface PartRecord { n: number; etag: string; size: number }
interface InProgressState { v: 1; uploadId?: string; parts: PartRecord[] }

export class S3Driver implements StorageDriver {
  readonly name = 's3';
  readonly bucket: string;
  readonly chunkSize: number;
  private readonly prefix: string;
  private readonly pageSize: number;
  private clientPromise: Promise<{ sdk: Sdk; client: S3Client }> | undefined;

  constructor(readonly options: S3DriverOptions) {
    if (!options.bucket) throw new UserError('storage.s3.bucket is required');
    this.bucket = options.bucket;
    this.chunkSize = options.chunkSize ?? DEFAULT_CHUNK_SIZE;
    if (!Number.isSafeInteger(this.chunkSize) || this.chunkSize < MIN_CHUNK_SIZE) {
      throw new UserError(`storage.s3.chunksize must be at least ${MIN_CHUNK_SIZE} bytes (S3's minimum part size), got ${options.chunkSize}`);
    }
    this.pageSize = Math.max(1, Math.min(1000, options.listPageSize ?? 1000));
    // distribution: s3Path = TrimLeft(TrimRight(rootdirectory, "/") + path, "/").
    this.prefix = (options.rootDirectory ?? '').replace(/^\/+|\/+$/g, '');
  }

  /** The SDK and client, created on first use. */
  async s3(): Promise<{ sdk: Sdk; client: S3Client }> {
    this.clientPromise ??= (async () => {
      // The SDK warns on every start that versions from 2027 on will need Node 22; drydock pins
      // its SDK version and supports Node 20, so the operator has nothing to act on.
      process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
      const sdk = await import('@aws-sdk/client-s3');
      const client = new sdk.S3Client(this.clientConfig());
      // DeleteObjects must carry a body checksum. The SDK now sends CRC32, which AWS takes but
      // several S3-compatible servers (Ceph RGW, older MinIO) answer with MissingContentMD5.
      client.middlewareStack.add((next, context) => async (args) => {
        const req = args.request as { headers?: Record<string, string>; body?: unknown };
        if (context.commandName === 'DeleteObjectsCommand' && req.headers && (typeof req.body === 'string' || req.body instanceof Uint8Array)) {
          req.headers['content-md5'] = createHash('md5').update(req.body).digest('base64');
        }
        return next(args);
      }, { step: 'build', name: 'drydockDeleteObjectsContentMd5' });
      return { sdk, client };
    })();
    return this.clientPromise;
  }

  private clientConfig(): S3ClientConfig {
    const o = this.options;
    let endpoint = o.regionEndpoint;
    if (endpoint && !/^https?:\/\//.test(endpoint)) endpoint = `${o.secure === false ? 'http' : 'https'}://${endpoint}`;
    if (!endpoint && o.secure === false) endpoint = `http://s3.${o.region ?? 'us-east-1'}.amazonaws.com`;
    const maxSockets = o.maxSockets ?? 50;
    return {
      region: o.region ?? 'us-east-1',
      endpoint,
      forcePathStyle: o.forcePathStyle ?? !!o.regionEndpoint,
      credentials: o.accessKey && o.secretKey ? { accessKeyId: o.accessKey, secretAccessKey: o.secretKey, sessionToken: o.sessionToken } : undefined,
      // Flexible checksums (CRC32 trailers, aws-chunked bodies) are on by default in new SDKs but
      // not understood by many S3-compatible servers; S3 itself only requires them where the API
      // does (DeleteObjects), which WHEN_REQUIRED still sends.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      requestHandler: {
        httpAgent: new http.Agent({ keepAlive: true, maxSockets }),
        httpsAgent: new https.Agent({ keepAlive: true, maxSockets, rejectUnauthorized: !o.skipVerify }),
        connectionTimeout: 10_000,
      },
    };
  }

  /** The bucket and credentials; warns when the server ignores conditional writes (replicas then share uploads unserialized). */
  async checkReady(): Promise<string[]> {
    await this.checkBucket();
    if (await conditionalWritesHonoured(this, this.key(`/docker/registry/v2/_drydock/lease-probe-${randomUUID()}`))) return [];
    return [`${s3Location(this.options)} ignores If-None-Match on PutObject: uploads are serialized within this process only, so do not run several replicas on this bucket`];
  }

  /** Fails with a clear message when the bucket is missing or the credentials are refused. */
  async checkBucket(): Promise<void> {
    const { sdk, client } = await this.s3();
    try {
      await client.send(new sdk.ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.dirPrefix('/'), MaxKeys: 1 }));
    } catch (e) {
      const err = e as { name?: string; message?: string; $metadata?: { httpStatusCode?: number } };
      const where = this.options.regionEndpoint ?? `region ${this.options.region ?? 'us-east-1'}`;
      if (err.name === 'NoSuchBucket') throw new UserError(`S3 bucket "${this.bucket}" does not exist (${where})`);
      throw new UserError(`S3 bucket "${this.bucket}" at ${where} is not usable: ${err.name ?? 'error'}: ${err.message ?? String(e)}`);
    }
  }

  // ---- keys ----

  /** The object key of a storage path. */
  key(p: string): string {
    if (!p.startsWith('/') || p.split('/').includes('..')) throw new Error(`invalid storage path ${p}`);
    const k = p.replace(/\/+$/, '');
    return this.prefix ? `${this.prefix}${k}` : k.slice(1);
  }

  /** The key prefix that lists a directory's contents ('' for the bucket root). */
  private dirPrefix(p: string): string {
    const k = this.key(p);
    return k ? `${k}/` : '';
  }

  private stateKey(p: string): string {
    const k = this.key(p);
    const slash = k.lastIndexOf('/');
    return `${k.slice(0, slash + 1)}${HIDDEN_PREFIX}${k.slice(slash + 1)}`;
  }

  /** The storage path of a key below the root. */
  private pathOf(key: string): string {
    return this.prefix ? key.slice(this.prefix.length) : `/${key}`;
  }

  // ---- StorageDriver ----

  async getContent(p: string): Promise<Buffer> {
    const { sdk, client } = await this.s3();
    try {
      const out = await client.send(new sdk.GetObjectCommand({ Bucket: this.bucket, Key: this.key(p) }));
      return Buffer.from(await out.Body!.transformToByteArray());
    } catch (e) {
      throw mapError(e, p);
    }
  }

  async putContent(p: string, content: Buffer | string): Promise<void> {
    // A PUT is atomic and durable on S3 once it returns; the sync option has nothing to skip.
    const { sdk, client } = await this.s3();
    const body = typeof content === 'string' ? Buffer.from(content) : content;
    await client.send(new sdk.PutObjectCommand({ Bucket: this.bucket, Key: this.key(p), Body: body, ContentLength: body.length, ...this.putExtras() }));
  }

  async reader(p: string, offset = 0, end?: number): Promise<Readable> {
    const { sdk, client } = await this.s3();
    const range = offset > 0 || end !== undefined ? `bytes=${offset}-${end ?? ''}` : undefined;
    try {
      const out = await client.send(new sdk.GetObjectCommand({ Bucket: this.bucket, Key: this.key(p), Range: range }));
      // The response body is the HTTP socket stream: nothing is buffered beyond its window.
      return out.Body as Readable;
    } catch (e) {
      // Reading at or past the end is an empty stream, as for a file (distribution does the same).
      if ((e as { name?: string }).name === 'InvalidRange') {
        await this.stat(p);
        return Readable.from([]);
      }
      throw mapError(e, p);
    }
  }

  async writer(p: string, append: boolean): Promise<FileWriter> {
    const { sdk, client } = await this.s3();
    const key = this.key(p);
    const stateKey = this.stateKey(p);
    let [state, object] = await Promise.all([this.readState(p), this.headObject(key, p)]);
    if (!append) {
      // Truncate, like open(O_TRUNC): drop an unfinished upload and the old content.
      if (state) await this.dropState(stateKey, state.state);
      if (object) await client.send(new sdk.DeleteObjectCommand({ Bucket: this.bucket, Key: key }));
      return new S3Writer(this, p, key, stateKey, { parts: [], tail: Buffer.alloc(0) });
    }
    if (state && object && object.modTime >= state.modTime) {
      // A commit completed the upload but died before removing its state: the object is the truth.
      await this.dropState(stateKey, state.state);
      state = undefined;
    }
    if (state) return new S3Writer(this, p, key, stateKey, { uploadId: state.state.uploadId, parts: state.state.parts, tail: state.tail });
    if (object) return new S3Writer(this, p, key, stateKey, { parts: [], tail: Buffer.alloc(0), committedSize: object.size });
    return new S3Writer(this, p, key, stateKey, { parts: [], tail: Buffer.alloc(0) });
  }

  private async headObject(key: string, p: string): Promise<{ size: number; modTime: Date } | undefined> {
    const { sdk, client } = await this.s3();
    try {
      const head = await client.send(new sdk.HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      return { size: head.ContentLength ?? 0, modTime: head.LastModified ?? new Date(0) };
    } catch (e) {
      if (mapError(e, p) instanceof PathNotFoundError) return undefined;
      throw e;
    }
  }

  async stat(p: string): Promise<FileInfo> {
    const { sdk, client } = await this.s3();
    const key = this.key(p);
    if (key !== '' && key !== this.prefix) {
      try {
        const head = await client.send(new sdk.HeadObjectCommand({ Bucket: this.bucket, Key: key }));
        return { path: p, size: head.ContentLength ?? 0, modTime: head.LastModified ?? new Date(0), isDir: false };
      } catch (e) {
        if (!(mapError(e, p) instanceof PathNotFoundError)) throw e;
      }
    }
    // Not an object: an in-progress file, or a "directory" (a prefix with at least one key).
    const [inProgress, listing] = await Promise.all([
      key === '' ? undefined : this.headState(p),
      client.send(new sdk.ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.dirPrefix(p), MaxKeys: 1 })),
    ]);
    if (inProgress) return inProgress;
    const first = listing.Contents?.[0];
    if (first) return { path: p, size: 0, modTime: first.LastModified ?? new Date(0), isDir: true };
    throw new PathNotFoundError(p);
  }

  async list(p: string): Promise<string[]> {
    const { sdk, client } = await this.s3();
    const prefix = this.dirPrefix(p);
    const base = p.endsWith('/') ? p : `${p}/`;
    const names = new Set<string>();
    let token: string | undefined;
    do {
      const out: ListObjectsV2CommandOutput = await client.send(new sdk.ListObjectsV2Command({
        Bucket: this.bucket, Prefix: prefix, Delimiter: '/', MaxKeys: this.pageSize, ContinuationToken: token,
      }));
      for (const cp of out.CommonPrefixes ?? []) names.add(cp.Prefix!.slice(prefix.length, -1));
      for (const obj of out.Contents ?? []) {
        const name = unhide(obj.Key!.slice(prefix.length));
        if (name) names.add(name);
      }
      token = out.IsTruncated ? out.NextContinuationToken : undefined;
    } while (token);
    if (names.size === 0 && p !== '/') throw new PathNotFoundError(p);
    return [...names].sort().map((n) => base + n);
  }

  /**
   * CopyObject, then DeleteObject: S3 has no rename. Not atomic, but safe for the registry's
   * layout (distribution makes the same argument): the source is an upload nobody else writes,
   * and the destination is content-addressed, so a reader sees either no blob or the whole blob,
   * and a crash in between leaves an extra copy that upload purging removes.
   */
  async move(source: string, dest: string): Promise<void> {
    const { sdk, client } = await this.s3();
    const from = this.key(source);
    const to = this.key(dest);
    let size: number;
    try {
      size = (await client.send(new sdk.HeadObjectCommand({ Bucket: this.bucket, Key: from }))).ContentLength ?? 0;
    } catch (e) {
      throw mapError(e, source);
    }
    if (size > MAX_COPY_SIZE) {
      await this.multipartCopy(from, to, size);
    } else {
      await client.send(new sdk.CopyObjectCommand({ Bucket: this.bucket, Key: to, CopySource: copySource(this.bucket, from), ...this.putExtras() }));
    }
    await client.send(new sdk.DeleteObjectCommand({ Bucket: this.bucket, Key: from }));
  }

  /**
   * Server-side copy of an object over CopyObject's 5 GiB limit, in 1 GiB UploadPartCopy ranges.
   * Not exercised by the tests: s3rver has no UploadPartCopy (AWS, MinIO and Ceph do).
   */
  private async multipartCopy(from: string, to: string, size: number): Promise<void> {
    const { sdk, client } = await this.s3();
    const partSize = 1024 ** 3;
    const { UploadId } = await client.send(new sdk.CreateMultipartUploadCommand({ Bucket: this.bucket, Key: to, ...this.putExtras() }));
    try {
      const parts: CompletedPart[] = [];
      for (let n = 1, off = 0; off < size; n++, off += partSize) {
        const last = Math.min(size, off + partSize) - 1;
        const out = await client.send(new sdk.UploadPartCopyCommand({
          Bucket: this.bucket, Key: to, UploadId, PartNumber: n, CopySource: copySource(this.bucket, from), CopySourceRange: `bytes=${off}-${last}`,
        }));
        parts.push({ PartNumber: n, ETag: out.CopyPartResult!.ETag });
      }
      await client.send(new sdk.CompleteMultipartUploadCommand({ Bucket: this.bucket, Key: to, UploadId, MultipartUpload: { Parts: parts } }));
    } catch (e) {
      await this.abortUpload(to, UploadId!);
      throw e;
    }
  }

  /** Recursive by prefix, in DeleteObjects batches of 1000; also aborts unfinished multipart uploads below. */
  async delete(p: string): Promise<void> {
    const { sdk, client } = await this.s3();
    const key = this.key(p);
    let batch: string[] = key ? [key] : [];
    const states: string[] = key ? [this.stateKey(p)] : [];
    const flush = async () => {
      if (batch.length === 0) return;
      const out = await client.send(new sdk.DeleteObjectsCommand({
        Bucket: this.bucket, Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true },
      }));
      batch = [];
      const failed = (out.Errors ?? []).filter((e) => e.Code !== 'NoSuchKey');
      if (failed.length > 0) throw new Error(`S3 delete of ${failed[0]!.Key} failed: ${failed[0]!.Code} ${failed[0]!.Message ?? ''}`);
    };
    let token: string | undefined;
    do {
      const out: ListObjectsV2CommandOutput = await client.send(new sdk.ListObjectsV2Command({
        Bucket: this.bucket, Prefix: this.dirPrefix(p), MaxKeys: this.pageSize, ContinuationToken: token,
      }));
      for (const obj of out.Contents ?? []) {
        if (isHidden(obj.Key!)) states.push(obj.Key!);
        else batch.push(obj.Key!);
        if (batch.length >= MAX_DELETE_BATCH) await flush();
      }
      token = out.IsTruncated ? out.NextContinuationToken : undefined;
    } while (token);
    await flush();
    // In-progress files last: their multipart uploads are aborted before the state goes. The
    // upload id is in the state's metadata, so a HEAD does (no need to fetch the buffered tail).
    for (const sk of states) {
      let uploadId: string | undefined;
      try {
        uploadId = (await client.send(new sdk.HeadObjectCommand({ Bucket: this.bucket, Key: sk }))).Metadata?.uploadid || undefined;
      } catch (e) {
        if (mapError(e, sk) instanceof PathNotFoundError) continue;
        throw e;
      }
      await this.dropState(sk, { v: 1, uploadId, parts: [] });
    }
  }

  /**
   * One flat ListObjectsV2 over the prefix (a request per 1000 keys, not per directory). Keys come
   * back in byte order, so a directory's keys are contiguous: parents are reported before their
   * children and a skipped directory's keys are jumped over with StartAfter.
   */
  async walk(p: string, fn: (info: FileInfo) => Promise<void | 'skip'> | void | 'skip'): Promise<void> {
    const { sdk, client } = await this.s3();
    const prefix = this.dirPrefix(p);
    const base = p.replace(/\/+$/, '');
    const open: string[] = []; // directories reported so far on the current branch
    let skip: string | undefined; // path prefix ("/a/b/") of a directory fn skipped
    let token: string | undefined;
    let startAfter: string | undefined;
    for (;;) {
      const out: ListObjectsV2CommandOutput = await client.send(new sdk.ListObjectsV2Command({
        Bucket: this.bucket, Prefix: prefix, MaxKeys: this.pageSize, ContinuationToken: token, StartAfter: token ? undefined : startAfter,
      }));
      const contents: S3Object[] = out.Contents ?? [];
      for (const obj of contents) {
        const rel = obj.Key!.slice(prefix.length);
        const slash = rel.lastIndexOf('/');
        const name = unhide(rel.slice(slash + 1));
        if (!name) continue; // a "folder/" marker object made by another tool
        const filePath = `${base}/${rel.slice(0, slash + 1)}${name}`;
        if (skip && filePath.startsWith(skip)) continue;
        skip = undefined;
        while (open.length > 0 && !filePath.startsWith(`${open[open.length - 1]}/`)) open.pop();
        const modTime = obj.LastModified ?? new Date(0);
        let skipped = false;
        for (let i = filePath.indexOf('/', base.length + 1); i > 0; i = filePath.indexOf('/', i + 1)) {
          const dir = filePath.slice(0, i);
          if (open.includes(dir)) continue;
          open.push(dir);
          if ((await fn({ path: dir, size: 0, modTime, isDir: true })) === 'skip') {
            skip = `${dir}/`;
            open.pop();
            skipped = true;
            break;
          }
        }
        if (skipped) continue;
        const info = name === rel.slice(slash + 1)
          ? { path: filePath, size: obj.Size ?? 0, modTime, isDir: false }
          : await this.headState(filePath); // in progress: its size is in the state's metadata
        if (info) await fn(info);
      }
      if (!out.IsTruncated) return;
      const lastKey = contents[contents.length - 1]?.Key;
      if (skip && lastKey && this.pathOf(lastKey).startsWith(skip)) {
        // Everything under the skipped directory sorts before "<dir>/" + U+10FFFF.
        startAfter = `${this.key(skip)}/\u{10FFFF}`;
        token = undefined;
      } else {
        token = out.NextContinuationToken;
      }
    }
  }

  /**
   * A lease object at `p` (s3-lease.ts): conditional writes make it exclusive between every
   * process on the bucket, where the server honours If-None-Match (AWS, Ceph RGW, MinIO).
   */
  async lockFile(p: string): Promise<(() => Promise<void>) | undefined> {
    const dir = p.slice(0, p.lastIndexOf('/')) || '/';
    try {
      return await acquireLease(this, this.key(p), this.dirPrefix(dir), this.options.leaseTtlMs ?? LEASE_TTL_MS);
    } catch (e) {
      if (e instanceof PathNotFoundError) throw new PathNotFoundError(p);
      throw e;
    }
  }

  // ---- in-progress state ----

  /** Encryption and storage class, for every request that creates an object. */
  putExtras(): Pick<PutObjectCommandInput, 'ServerSideEncryption' | 'SSEKMSKeyId' | 'StorageClass'> {
    const o = this.options;
    const extras: Pick<PutObjectCommandInput, 'ServerSideEncryption' | 'SSEKMSKeyId' | 'StorageClass'> = {};
    if (o.keyId) { extras.ServerSideEncryption = 'aws:kms'; extras.SSEKMSKeyId = o.keyId; }
    else if (o.encrypt) extras.ServerSideEncryption = 'AES256';
    // distribution's "NONE" means: send no storage class header (servers that reject it).
    if (o.storageClass && o.storageClass.toUpperCase() !== 'NONE') extras.StorageClass = o.storageClass as PutObjectCommandInput['StorageClass'];
    return extras;
  }

  private async headState(p: string): Promise<FileInfo | undefined> {
    const { sdk, client } = await this.s3();
    try {
      const head = await client.send(new sdk.HeadObjectCommand({ Bucket: this.bucket, Key: this.stateKey(p) }));
      return { path: p, size: Number(head.Metadata?.size ?? 0), modTime: head.LastModified ?? new Date(0), isDir: false };
    } catch (e) {
      if (mapError(e, p) instanceof PathNotFoundError) return undefined;
      throw e;
    }
  }

  private async readState(p: string): Promise<{ state: InProgressState; tail: Buffer; modTime: Date } | undefined> {
    const stateKey = this.stateKey(p);
    const { sdk, client } = await this.s3();
    let bytes: Buffer;
    let modTime: Date;
    try {
      const out = await client.send(new sdk.GetObjectCommand({ Bucket: this.bucket, Key: stateKey }));
      bytes = Buffer.from(await out.Body!.transformToByteArray());
      modTime = out.LastModified ?? new Date(0);
    } catch (e) {
      if (mapError(e, stateKey) instanceof PathNotFoundError) return undefined;
      throw e;
    }
    const nl = bytes.indexOf(0x0a);
    if (nl < 0) throw new Error(`corrupt in-progress state ${stateKey}`);
    return { state: JSON.parse(bytes.subarray(0, nl).toString('utf8')) as InProgressState, tail: bytes.subarray(nl + 1), modTime };
  }

  async writeState(stateKey: string, state: InProgressState, tail: Buffer, size: number): Promise<void> {
    const { sdk, client } = await this.s3();
    const body = Buffer.concat([Buffer.from(`${JSON.stringify(state)}\n`), tail]);
    await client.send(new sdk.PutObjectCommand({
      Bucket: this.bucket, Key: stateKey, Body: body, ContentLength: body.length,
      Metadata: { size: String(size), uploadid: state.uploadId ?? '' }, ...this.putExtras(),
    }));
  }

  async dropState(stateKey: string, state: InProgressState): Promise<void> {
    const { sdk, client } = await this.s3();
    if (state.uploadId) {
      const slash = stateKey.lastIndexOf('/');
      await this.abortUpload(stateKey.slice(0, slash + 1) + stateKey.slice(slash + 1 + HIDDEN_PREFIX.length), state.uploadId);
    }
    await client.send(new sdk.DeleteObjectCommand({ Bucket: this.bucket, Key: stateKey }));
  }

  /**
   * Best effort: servers without AbortMultipartUpload (s3rver) keep the parts; on AWS a bucket
   * lifecycle rule (AbortIncompleteMultipartUpload) is the backstop for uploads lost in a crash.
   */
  async abortUpload(key: string, uploadId: string): Promise<void> {
    const { sdk, client } = await this.s3();
    try {
      await client.send(new sdk.AbortMultipartUploadCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId }));
    } catch (e) {
      const name = (e as { name?: string }).name;
      if (name === 'NoSuchUpload' || name === 'MethodNotAllowed' || name === 'NotImplemented') return;
      throw e;
    }
  }
}

interface WriterStart {
  uploadId?: string;
  parts: PartRecord[];
  tail: Buffer;
  /** Set when append-opening a finished object: its content becomes the start of the new file. */
  committedSize?: number;
}

class S3Writer implements FileWriter {
  private uploadId: string | undefined;
  private readonly parts: PartRecord[];
  private partBytes: number;
  private buf: Buffer[];
  private bufBytes: number;
  private committedSize: number | undefined;
  private dirty = false;
  private done = false;
  // One part may be uploading while the next chunk arrives from the client, so receiving and
  // sending overlap; memory stays bounded at two chunks per writer.
  private inflight: Promise<void> | undefined;
  private inflightBytes = 0;

  /** Set once content of a finished object moved into this writer: the old object must go at close. */
  private replacesObject = false;

  private readonly openedUploadId: string | undefined;

  constructor(private readonly driver: S3Driver, private readonly path: string, private readonly key: string, private readonly stateKey: string, start: WriterStart) {
    this.uploadId = start.uploadId;
    this.openedUploadId = start.uploadId;
    this.parts = [...start.parts];
    this.partBytes = this.parts.reduce((n, part) => n + part.size, 0);
    this.buf = start.tail.length > 0 ? [start.tail] : [];
    this.bufBytes = start.tail.length;
    this.committedSize = start.committedSize;
    // A writer on a path that has nothing yet creates an empty file on close, like open(O_CREAT).
    this.dirty = start.committedSize === undefined && start.uploadId === undefined && start.parts.length === 0 && start.tail.length === 0;
  }

  get size(): number {
    return this.committedSize ?? this.partBytes + this.inflightBytes + this.bufBytes;
  }

  async write(chunk: Buffer): Promise<void> {
    if (this.done) throw new Error('write after close');
    if (chunk.length === 0) return;
    if (this.committedSize !== undefined) await this.reopenCommitted();
    this.dirty = true;
    this.buf.push(chunk);
    this.bufBytes += chunk.length;
    if (this.bufBytes >= this.driver.chunkSize) await this.startPart();
  }

  /**
   * Appending to a finished object: stream it back through the part buffer (UploadPartCopy would
   * save the transfer on AWS, but not every S3-compatible server has it). The registry only does
   * this when a client resumes an upload after the final commit failed, so it is rare.
   */
  private async reopenCommitted(): Promise<void> {
    this.committedSize = undefined;
    this.replacesObject = true;
    const body = await this.driver.reader(this.path);
    for await (const chunk of body as AsyncIterable<Buffer>) {
      this.buf.push(chunk);
      this.bufBytes += chunk.length;
      if (this.bufBytes >= this.driver.chunkSize) await this.startPart();
    }
  }

  /** Waits for the part in flight (and surfaces its error), then starts uploading the buffer as the next part. */
  private async startPart(): Promise<void> {
    await this.drain();
    if (this.parts.length >= MAX_PARTS - 1) {
      // The last part number is kept for commit's final part.
      throw new UserError(`upload exceeds S3's ${MAX_PARTS} parts of ${this.driver.chunkSize} bytes; raise storage.s3.chunksize`);
    }
    const bufs = this.buf;
    const bytes = this.bufBytes;
    this.buf = [];
    this.bufBytes = 0;
    this.inflightBytes = bytes;
    this.inflight = this.uploadPart(bufs, bytes).finally(() => { this.inflightBytes = 0; });
    this.inflight.catch(() => {}); // reported by the next drain()
  }

  private async drain(): Promise<void> {
    const p = this.inflight;
    this.inflight = undefined;
    if (p) await p;
  }

  private async uploadPart(bufs: Buffer[], bytes: number): Promise<void> {
    const { sdk, client } = await this.driver.s3();
    if (!this.uploadId) {
      const out = await client.send(new sdk.CreateMultipartUploadCommand({ Bucket: this.driver.bucket, Key: this.key, ...this.driver.putExtras() }));
      this.uploadId = out.UploadId!;
    }
    const body = bufs.length === 1 ? bufs[0]! : Buffer.concat(bufs, bytes);
    const n = this.parts.length + 1;
    const out = await client.send(new sdk.UploadPartCommand({
      Bucket: this.driver.bucket, Key: this.key, UploadId: this.uploadId, PartNumber: n, Body: body, ContentLength: body.length,
    }));
    this.parts.push({ n, etag: out.ETag!, size: body.length });
    this.partBytes += body.length;
  }

  /** Makes the object visible at its key: one PutObject for a small file, else the final part and CompleteMultipartUpload. */
  async commit(): Promise<void> {
    if (this.done) throw new Error('commit after close');
    this.done = true;
    if (this.committedSize !== undefined) return; // already a finished object, nothing appended
    await this.drain();
    const { sdk, client } = await this.driver.s3();
    const body = this.buf.length === 1 ? this.buf[0]! : Buffer.concat(this.buf, this.bufBytes);
    if (!this.uploadId) {
      await client.send(new sdk.PutObjectCommand({ Bucket: this.driver.bucket, Key: this.key, Body: body, ContentLength: body.length, ...this.driver.putExtras() }));
    } else {
      if (body.length > 0 || this.parts.length === 0) {
        const out = await client.send(new sdk.UploadPartCommand({
          Bucket: this.driver.bucket, Key: this.key, UploadId: this.uploadId, PartNumber: this.parts.length + 1, Body: body, ContentLength: body.length,
        }));
        this.parts.push({ n: this.parts.length + 1, etag: out.ETag!, size: body.length });
        this.partBytes += body.length;
      }
      await client.send(new sdk.CompleteMultipartUploadCommand({
        Bucket: this.driver.bucket, Key: this.key, UploadId: this.uploadId,
        MultipartUpload: { Parts: this.parts.map((part) => ({ PartNumber: part.n, ETag: part.etag })) },
      }));
    }
    this.committedSize = this.uploadId ? this.partBytes : body.length;
    this.buf = [];
    this.bufBytes = 0;
    // The state goes after the object exists: a crash in between leaves a stale state, older than
    // the object, which stat never reads and the next writer or delete removes.
    await client.send(new sdk.DeleteObjectCommand({ Bucket: this.driver.bucket, Key: this.stateKey }));
  }

  async cancel(): Promise<void> {
    this.done = true;
    await this.drain().catch(() => {}); // the upload is being thrown away either way
    const { sdk, client } = await this.driver.s3();
    if (this.uploadId) await this.driver.abortUpload(this.key, this.uploadId);
    await client.send(new sdk.DeleteObjectsCommand({
      Bucket: this.driver.bucket, Delete: { Objects: [{ Key: this.key }, { Key: this.stateKey }], Quiet: true },
    }));
    this.buf = [];
    this.bufBytes = 0;
  }

  /**
   * Leaves the state object as this writer found it, so the file reads as it did at open. Parts
   * this writer uploaded are not in that state; the next writer reuses their part numbers, and
   * a multipart upload this writer started is aborted.
   */
  async discard(): Promise<void> {
    if (this.done) return;
    this.done = true;
    await this.drain().catch(() => {});
    if (this.uploadId && this.uploadId !== this.openedUploadId) await this.driver.abortUpload(this.key, this.uploadId).catch(() => {});
    this.buf = [];
    this.bufBytes = 0;
  }

  /** Persists the parts list and the unflushed tail in the state object, so the next writer can resume. */
  async close(): Promise<void> {
    if (this.done) return;
    this.done = true;
    if (!this.dirty) return;
    await this.drain();
    const tail = this.buf.length === 1 ? this.buf[0]! : Buffer.concat(this.buf, this.bufBytes);
    await this.driver.writeState(this.stateKey, { v: 1, uploadId: this.uploadId, parts: this.parts }, tail, this.size);
    this.buf = []; // bufBytes stays: size still counts the tail, which now lives in the state object
    if (this.replacesObject) {
      // stat prefers a finished object over a state, so the old content must not linger.
      const { sdk, client } = await this.driver.s3();
      await client.send(new sdk.DeleteObjectCommand({ Bucket: this.driver.bucket, Key: this.key }));
    }
  }
}

function isHidden(key: string): boolean {
  return key.slice(key.lastIndexOf('/') + 1).startsWith(HIDDEN_PREFIX);
}

/** An in-progress file's state object names the file it stands for. */
function unhide(name: string): string {
  return name.startsWith(HIDDEN_PREFIX) ? name.slice(HIDDEN_PREFIX.length) : name;
}

function copySource(bucket: string, key: string): string {
  return `${bucket}/${key.split('/').map(encodeURIComponent).join('/')}`;
}

function mapError(e: unknown, p: string): Error {
  const err = e as { name?: string; $metadata?: { httpStatusCode?: number } };
  if (err.name === 'NoSuchKey' || err.name === 'NotFound' || (err.$metadata?.httpStatusCode === 404 && err.name !== 'NoSuchBucket' && err.name !== 'NoSuchUpload')) {
    return new PathNotFoundError(p);
  }
  return e as Error;
}

/** distribution's storage.s3 parameters that drydock reads. */
export interface S3StorageConfig {
  bucket: string;
  region?: string;
  regionendpoint?: string;
  accesskey?: string;
  secretkey?: string;
  sessiontoken?: string;
  rootdirectory?: string;
  secure?: boolean;
  skipverify?: boolean;
  forcepathstyle?: boolean;
  chunksize?: number;
  encrypt?: boolean;
  keyid?: string;
  storageclass?: string;
  /** drydock: how long an upload's lease outlives its holder's last renewal ("30s"). */
  leaselifetime?: string;
}

const S3_KEYS = new Set(['bucket', 'region', 'regionendpoint', 'accesskey', 'secretkey', 'sessiontoken', 'rootdirectory', 'secure', 'skipverify', 'forcepathstyle', 'chunksize', 'encrypt', 'keyid', 'storageclass', 'leaselifetime']);
// Accepted so a registry:2 config.yml loads unchanged, but without effect: SigV4 is always used,
// copies above 5 GiB always go multipart, and logging/ACLs are the bucket's business.
const S3_IGNORED_KEYS = new Set(['v4auth', 'useragent', 'usedualstack', 'accelerate', 'loglevel', 'objectacl', 'multipartcopychunksize', 'multipartcopymaxconcurrency', 'multipartcopythresholdsize', 'maxrequestspersecond', 'maxretries', 'checksumdisabled', 'checksumalgorithm']);

function configBool(value: unknown, key: string): boolean | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  if (typeof value === 'boolean') return value;
  if (value === 'true' || value === 'false') return value === 'true';
  throw new UserError(`storage.s3.${key} must be true or false, got ${JSON.stringify(value)}`);
}

function configString(value: unknown, key: string): string | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  if (typeof value !== 'string' && typeof value !== 'number') throw new UserError(`storage.s3.${key} must be a string`);
  return String(value);
}

/**
 * Checks a `storage: s3:` section and maps it to driver options. Credentials may be left out:
 * the SDK then reads AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (and ~/.aws, instance roles),
 * which is what distribution does too.
 */
export function s3OptionsFromConfig(raw: Record<string, unknown>, env: NodeJS.ProcessEnv = process.env): S3DriverOptions {
  for (const k of Object.keys(raw)) {
    if (!S3_KEYS.has(k) && !S3_IGNORED_KEYS.has(k)) throw new UserError(`storage.s3.${k}: unknown parameter (drydock reads ${[...S3_KEYS].join(', ')})`);
  }
  const bucket = configString(raw.bucket, 'bucket');
  if (!bucket) throw new UserError('storage.s3.bucket is required');
  const regionEndpoint = configString(raw.regionendpoint, 'regionendpoint');
  const region = configString(raw.region, 'region') ?? env.AWS_REGION ?? env.AWS_DEFAULT_REGION ?? (regionEndpoint ? 'us-east-1' : undefined);
  if (!region) throw new UserError('storage.s3.region is required (or set regionendpoint for an S3-compatible server)');
  let chunkSize: number | undefined;
  if (raw.chunksize !== undefined && raw.chunksize !== '') {
    chunkSize = Number(raw.chunksize);
    if (!Number.isSafeInteger(chunkSize) || chunkSize < MIN_CHUNK_SIZE) {
      throw new UserError(`storage.s3.chunksize must be an integer of at least ${MIN_CHUNK_SIZE} (5 MiB, S3's minimum part size), got ${JSON.stringify(raw.chunksize)}`);
    }
  }
  let leaseTtlMs: number | undefined;
  const lifetime = configString(raw.leaselifetime, 'leaselifetime');
  if (lifetime !== undefined) {
    const bad = `storage.s3.leaselifetime must be a duration between ${MIN_LEASE_TTL_MS / 1000}s and 1h (e.g. 30s, 2m), got ${JSON.stringify(raw.leaselifetime)}`;
    try {
      leaseTtlMs = parseDuration(lifetime, LEASE_TTL_MS);
    } catch {
      throw new UserError(bad);
    }
    if (!(leaseTtlMs >= MIN_LEASE_TTL_MS && leaseTtlMs <= MAX_LEASE_TTL_MS)) throw new UserError(bad);
  }
  const accessKey = configString(raw.accesskey, 'accesskey');
  const secretKey = configString(raw.secretkey, 'secretkey');
  if (!!accessKey !== !!secretKey) throw new UserError('storage.s3: give both accesskey and secretkey, or neither (then AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or an instance role are used)');
  return {
    bucket,
    region,
    regionEndpoint,
    accessKey,
    secretKey,
    sessionToken: configString(raw.sessiontoken, 'sessiontoken'),
    rootDirectory: configString(raw.rootdirectory, 'rootdirectory'),
    secure: configBool(raw.secure, 'secure'),
    skipVerify: configBool(raw.skipverify, 'skipverify'),
    forcePathStyle: configBool(raw.forcepathstyle, 'forcepathstyle'),
    chunkSize,
    encrypt: configBool(raw.encrypt, 'encrypt'),
    keyId: configString(raw.keyid, 'keyid'),
    storageClass: configString(raw.storageclass, 'storageclass'),
    leaseTtlMs,
  };
}

/** "s3://bucket/rootdirectory", for logs and messages. */
export function s3Location(o: S3DriverOptions): string {
  const root = (o.rootDirectory ?? '').replace(/^\/+|\/+$/g, '');
  return `s3://${o.bucket}${root ? `/${root}` : ''}${o.regionEndpoint ? ` at ${o.regionEndpoint}` : ''}`;
}
