// A lease object: the S3 driver's lockFile, so `drydock serve` replicas sharing a bucket give an
// upload one writer at a time, as the filesystem's O_EXCL lock file does for processes on one disk.
//
// Acquire is a conditional create, PutObject with `If-None-Match: *`: of any number of replicas
// racing for one key, exactly one gets 200 and the others 412. The holder renews the lease every
// third of its lifetime with a conditional replace (`If-Match: <its ETag>`), so a lease whose
// holder died (a replica killed mid-PATCH) is stale after the lifetime and is taken over, again by
// a conditional replace of the stale ETag, so of two replicas taking over one wins. Ages are
// measured on the S3 server's clock alone (the lease's Last-Modified against the Date of the
// response that read it), so replicas need no synchronized clocks. The lifetime is the config's
// storage.s3.leaselifetime; the lease records its holder's, and a taker waits for the longer of the
// two, so replicas part-way through a rolling change of the setting never cut a live holder short.
//
// What servers do: AWS S3 has both conditions on PutObject (since 2024), Ceph RGW 16.2 too but
// compares If-Match literally against the unquoted ETag (the quoted form, as HTTP writes it,
// always fails; hence the retry without quotes), MinIO has both. A server that ignores the
// headers (s3rver) grants every lease: replicas are then serialized only within each process.
import { randomUUID } from 'node:crypto';
import type { S3Client } from '@aws-sdk/client-s3';
import { PathNotFoundError } from './driver.js';

type Sdk = typeof import('@aws-sdk/client-s3');

/** A holder silent this long (no renewal) has lost its lease (storage.s3.leaselifetime's default). */
export const LEASE_TTL_MS = 30_000;
/**
 * The shortest lifetime accepted: Last-Modified and Date have one-second resolution, so an age
 * can read up to a second long, and a holder renewing every third of the lifetime must get a
 * renewal through well inside it.
 */
export const MIN_LEASE_TTL_MS = 5_000;
/** The longest: also the cap on a lifetime read from a lease, so no lease object can block an upload for longer. */
export const MAX_LEASE_TTL_MS = 3_600_000;

/** How often a holder renews: a third of the lifetime, so two renewals in a row may fail or stall. */
export function leaseRenewalMs(ttlMs: number): number {
  return Math.max(1000, Math.floor(ttlMs / 3));
}

export interface LeaseTarget {
  s3(): Promise<{ sdk: Sdk; client: S3Client }>;
  readonly bucket: string;
}

function status(e: unknown): number | undefined {
  return (e as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
}

/** PutObject with If-Match; RGW 16.2 only matches the bare ETag, so a 412 for the quoted form is retried bare. */
async function replaceIfMatch(t: LeaseTarget, key: string, etag: string, body: string): Promise<string | undefined> {
  const { sdk, client } = await t.s3();
  const forms = etag.startsWith('"') ? [etag, etag.replace(/^"|"$/g, '')] : [etag];
  for (const form of forms) {
    try {
      const out = await client.send(new sdk.PutObjectCommand({ Bucket: t.bucket, Key: key, Body: body, IfMatch: form }));
      return out.ETag;
    } catch (e) {
      if (status(e) !== 412) throw e;
    }
  }
  return undefined;
}

/**
 * The lifetime a lease's body says its holder renews for, capped at MAX_LEASE_TTL_MS: a lease
 * written by a replica with a bad setting, or by something else, blocks an upload for at most an
 * hour. undefined when the body names none (the taker's own lifetime applies).
 */
export function holderLifetimeMs(body: string): number | undefined {
  try {
    const v = (JSON.parse(body) as { ttlMs?: unknown } | null)?.ttlMs;
    if (typeof v === 'number' && Number.isFinite(v) && v > 0) return Math.min(v, MAX_LEASE_TTL_MS);
  } catch { /* not JSON */ }
  return undefined;
}

/** Whether a lease this old (on the S3 server's clock) has lost its holder: past the longer of the taker's and the holder's lifetime. */
export function leaseStale(ageMs: number, takerTtlMs: number, holderTtlMs: number | undefined): boolean {
  return ageMs > Math.max(takerTtlMs, holderTtlMs ?? 0);
}

/** The lease's ETag, age in ms on the server's clock and the lifetime its holder runs with; undefined when it is gone. */
async function leaseAge(t: LeaseTarget, key: string): Promise<{ etag: string; ageMs: number; holderTtlMs?: number } | undefined> {
  const { sdk, client } = await t.s3();
  // GET rather than HEAD: the body says what lifetime the holder renews for.
  const get = new sdk.GetObjectCommand({ Bucket: t.bucket, Key: key });
  let serverDate: number | undefined;
  get.middlewareStack.add((next) => async (args) => {
    const out = await next(args);
    const date = (out.response as { headers?: Record<string, string> }).headers?.date;
    if (date) serverDate = Date.parse(date);
    return out;
  }, { step: 'deserialize', name: 'drydockLeaseServerDate' });
  try {
    const out = await client.send(get);
    const text = (await out.Body?.transformToString()) ?? '';
    const modified = out.LastModified?.getTime() ?? 0;
    return { etag: out.ETag ?? '', ageMs: (serverDate ?? Date.now()) - modified, holderTtlMs: holderLifetimeMs(text) };
  } catch (e) {
    if (status(e) === 404) return undefined;
    throw e;
  }
}

/**
 * Takes the lease at `key` in directory `dirPrefix` (a key prefix that must hold some other
 * object, else PathNotFoundError). Resolves to its release function, or undefined while a live
 * holder has it.
 */
export async function acquireLease(t: LeaseTarget, key: string, dirPrefix: string, ttlMs = LEASE_TTL_MS): Promise<(() => Promise<void>) | undefined> {
  const { sdk, client } = await t.s3();
  const body = JSON.stringify({ holder: randomUUID(), pid: process.pid, ttlMs });
  const create = async (): Promise<string | undefined> => {
    try {
      return (await client.send(new sdk.PutObjectCommand({ Bucket: t.bucket, Key: key, Body: body, IfNoneMatch: '*' }))).ETag ?? '';
    } catch (e) {
      if (status(e) === 412 || status(e) === 409) return undefined; // 409: a concurrent conditional create (AWS)
      throw e;
    }
  };
  // The directory check runs alongside the create; the lease itself does not count.
  const [created, listing] = await Promise.all([
    create(),
    client.send(new sdk.ListObjectsV2Command({ Bucket: t.bucket, Prefix: dirPrefix, MaxKeys: 2 })),
  ]);
  let etag = created;
  if (!(listing.Contents ?? []).some((o) => o.Key !== key)) {
    if (etag !== undefined) await client.send(new sdk.DeleteObjectCommand({ Bucket: t.bucket, Key: key }));
    throw new PathNotFoundError(key);
  }
  if (etag === undefined) {
    const held = await leaseAge(t, key);
    if (!held) etag = await create(); // released meanwhile
    else if (leaseStale(held.ageMs, ttlMs, held.holderTtlMs)) etag = await replaceIfMatch(t, key, held.etag, body); // its holder stopped renewing
    if (etag === undefined) return undefined;
  }
  let current = etag;
  let lost = false;
  let renewing: Promise<void> = Promise.resolve();
  const timer = setInterval(() => {
    renewing = renewing.then(async () => {
      if (lost) return;
      const next = await replaceIfMatch(t, key, current, body).catch(() => current); // a failed request: try again next time
      if (next === undefined) lost = true;
      else current = next;
    });
  }, leaseRenewalMs(ttlMs));
  timer.unref();
  return async () => {
    clearInterval(timer);
    await renewing;
    // A lease taken over (this holder stalled past its lifetime) belongs to its new holder.
    // RGW 16.2 ignores If-Match on DeleteObject, so the check is this process's own.
    if (!lost) await client.send(new sdk.DeleteObjectCommand({ Bucket: t.bucket, Key: key }));
  };
}

/**
 * Whether the server refuses a second create-if-absent of one key: two conditional PUTs of a
 * fresh key, then its delete. False for servers that ignore If-None-Match (s3rver), where leases
 * cannot exclude other processes.
 */
export async function conditionalWritesHonoured(t: LeaseTarget, key: string): Promise<boolean> {
  const { sdk, client } = await t.s3();
  const put = () => client.send(new sdk.PutObjectCommand({ Bucket: t.bucket, Key: key, Body: 'probe', IfNoneMatch: '*' }));
  try {
    await put();
    try {
      await put();
      return false;
    } catch (e) {
      if (status(e) === 412 || status(e) === 409) return true;
      throw e;
    }
  } finally {
    await client.send(new sdk.DeleteObjectCommand({ Bucket: t.bucket, Key: key }));
  }
}
