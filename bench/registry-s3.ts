// Blob push/pull through the registry's S3 driver vs its filesystem driver, in one run.
// The S3 side is s3rver on 127.0.0.1 (test/helpers/s3.ts); the peer that would belong here,
// distribution 2.8's s3-aws driver, cannot run against it: its first PATCH calls
// ListMultipartUploads, which s3rver does not implement (501). So this measures the driver's own
// overhead plus s3rver's, on the same disk — not what AWS S3 would do.
//   one blob per round: POST, one streamed PATCH, PUT ?digest=, then GET (verified)
// Run: node --import tsx bench/registry-s3.ts [--blob-mib 256] [--rounds 2] [--json]
import { createHash, randomBytes } from 'node:crypto';
import { startRegistry, type RegistryConfig, type StartedRegistry } from '../src/registry/index.js';
import { startS3Server } from '../test/helpers/s3.js';
import { tempDir } from '../test/helpers/env.js';

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

const MiB = 1 << 20;
const blobBytes = arg('blob-mib', 256) * MiB;
const rounds = arg('rounds', 2);

async function pushPull(reg: StartedRegistry, blob: Buffer, digest: string): Promise<{ push: number; pull: number }> {
  const t0 = performance.now();
  const post = await fetch(`${reg.url}/v2/bench/blob/blobs/uploads/`, { method: 'POST' });
  await post.arrayBuffer();
  const patch = await fetch(new URL(post.headers.get('location')!, reg.url), { method: 'PATCH', body: blob as unknown as BodyInit, headers: { 'content-type': 'application/octet-stream' } });
  await patch.arrayBuffer();
  const put = new URL(patch.headers.get('location')!, reg.url);
  put.searchParams.set('digest', digest);
  const done = await fetch(put, { method: 'PUT' });
  if (done.status !== 201) throw new Error(`push failed: ${done.status} ${await done.text()}`);
  const t1 = performance.now();
  const get = await fetch(`${reg.url}/v2/bench/blob/blobs/${digest}`);
  const h = createHash('sha256');
  for await (const chunk of get.body as unknown as AsyncIterable<Uint8Array>) h.update(chunk);
  const t2 = performance.now();
  if (`sha256:${h.digest('hex')}` !== digest) throw new Error('pulled blob does not match');
  return { push: blob.length / MiB / ((t1 - t0) / 1000), pull: blob.length / MiB / ((t2 - t1) / 1000) };
}

const s3 = await startS3Server();
const results: Record<string, { push: number[]; pull: number[] }> = { filesystem: { push: [], pull: [] }, s3: { push: [], pull: [] } };
try {
  for (let r = 0; r < rounds; r++) {
    const blob = randomBytes(blobBytes);
    const digest = `sha256:${createHash('sha256').update(blob).digest('hex')}`;
    for (const name of ['filesystem', 's3'] as const) {
      const reg = name === 'filesystem'
        ? await startRegistry({ root: tempDir('drydock-bench-s3-fs-') })
        : await startRegistry({ root: '/unused', config: { storage: { s3: { bucket: s3.bucket, regionendpoint: s3.endpoint, accesskey: s3.accessKey, secretkey: s3.secretKey, rootdirectory: `bench-${r}` } } as unknown as RegistryConfig['storage'] } });
      try {
        const m = await pushPull(reg, blob, digest);
        results[name]!.push.push(m.push);
        results[name]!.pull.push(m.pull);
      } finally {
        await reg.close();
      }
    }
  }
} finally {
  await s3.stop();
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
if (process.argv.includes('--json')) {
  process.stdout.write(`${JSON.stringify({ blobMiB: blobBytes / MiB, rounds, results })}\n`);
} else {
  const fs = results.filesystem!;
  const s = results.s3!;
  process.stdout.write(`blob ${blobBytes / MiB} MiB, ${rounds} rounds (median MB/s)\n`);
  process.stdout.write(`         filesystem   s3 (s3rver)   s3/filesystem\n`);
  process.stdout.write(`push     ${median(fs.push).toFixed(0).padStart(10)}   ${median(s.push).toFixed(0).padStart(11)}   ${(median(s.push) / median(fs.push)).toFixed(2).padStart(13)}\n`);
  process.stdout.write(`pull     ${median(fs.pull).toFixed(0).padStart(10)}   ${median(s.pull).toFixed(0).padStart(11)}   ${(median(s.pull) / median(fs.pull)).toFixed(2).padStart(13)}\n`);
}
