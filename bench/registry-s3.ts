// drydock serve vs distribution 2.8 (Debian's docker-registry, its s3-aws driver) on one Ceph RADOS
// Gateway bucket (a one-node cluster from test/helpers/ceph.ts), each under its own rootdirectory,
// side by side in one run, both as child processes with access logs off:
//   blob push+pull MB/s: N distinct blobs (POST, one PUT with the body, GET verified) from C clients;
//   distribution with storage.redirect.disable, so its blob GETs go through it as drydock's do
//   manifest GET requests/s (autocannon, 8 connections)
// Run: node --import tsx bench/registry-s3.ts [--blobs 16] [--blob-mib 16] [--clients 4] [--seconds 5] [--json]
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createHash } from 'node:crypto';
import autocannon from 'autocannon';
import { Pool } from 'undici';
import { digestOf } from '../src/image/digest.js';
import { startCeph, type CephCluster } from '../test/helpers/ceph.js';
import { freePort } from '../test/helpers/docker-registry.js';
import { requireTool, tempDir } from '../test/helpers/env.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const fromSource = import.meta.url.endsWith('.ts');
const projectRoot = fromSource ? path.resolve(here, '..') : path.resolve(here, '../..');
const cliMain = fromSource ? path.join(projectRoot, 'src/cli/main.ts') : path.join(projectRoot, 'dist/src/cli/main.js');

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

interface Server { name: string; url: string; proc: ChildProcess; stderr: () => string }

async function waitReady(s: Server): Promise<void> {
  const deadline = Date.now() + 90_000;
  for (;;) {
    if (s.proc.exitCode !== null) throw new Error(`${s.name} exited: ${s.stderr()}`);
    try {
      const r = await fetch(`${s.url}/v2/`);
      await r.arrayBuffer();
      return;
    } catch {
      if (Date.now() > deadline) throw new Error(`${s.name} did not start: ${s.stderr()}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

function launch(name: string, cmd: string, args: string[], env: NodeJS.ProcessEnv, url: string): Server {
  const merged: NodeJS.ProcessEnv = { ...process.env, ...env };
  for (const [k, v] of Object.entries(env)) if (v === undefined) delete merged[k];
  const proc = spawn(cmd, args, { cwd: projectRoot, env: merged, stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  proc.stderr!.on('data', (d) => (err += d));
  return { name, url, proc, stderr: () => err };
}

async function startDistribution(ceph: CephCluster): Promise<Server> {
  const bin = requireTool('docker-registry', 'apt-get install docker-registry');
  const port = await freePort();
  const config = path.join(tempDir('drydock-bench-s3-dist-'), 'config.yml');
  writeFileSync(config, `version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  cache:
    blobdescriptor: inmemory
  s3:
    accesskey: ${ceph.accessKey}
    secretkey: ${ceph.secretKey}
    region: us-east-1
    regionendpoint: ${ceph.endpoint}
    forcepathstyle: true
    secure: false
    bucket: ${ceph.bucket}
    rootdirectory: /distribution
  maintenance:
    uploadpurging:
      enabled: false
  redirect:
    disable: true
http:
  addr: 127.0.0.1:${port}
`);
  // aws-sdk-go v1 refuses to start when AWS_CA_BUNDLE is set and it cannot wrap the HTTP transport
  // ("LoadCustomCABundleError"); the endpoint is plain http on loopback anyway.
  const s = launch('distribution', bin, ['serve', config], { AWS_CA_BUNDLE: undefined }, `http://127.0.0.1:${port}`);
  await waitReady(s);
  return s;
}

async function startDrydock(ceph: CephCluster): Promise<Server> {
  const port = await freePort();
  const config = path.join(tempDir('drydock-bench-s3-drydock-'), 'config.yml');
  writeFileSync(config, `version: 0.1
storage:
  s3:
    regionendpoint: ${ceph.endpoint}
    bucket: ${ceph.bucket}
    rootdirectory: /drydock
http:
  addr: 127.0.0.1:${port}
`);
  const s = launch('drydock', process.execPath, [...(fromSource ? ['--import', 'tsx'] : []), cliMain, 'serve', '--config', config, '--no-access-log'],
    { AWS_ACCESS_KEY_ID: ceph.accessKey, AWS_SECRET_ACCESS_KEY: ceph.secretKey }, `http://127.0.0.1:${port}`);
  await waitReady(s);
  return s;
}

async function pushBlob(pool: Pool, repo: string, data: Buffer, digest: string): Promise<void> {
  const post = await pool.request({ path: `/v2/${repo}/blobs/uploads/`, method: 'POST' });
  await post.body.dump();
  if (post.statusCode !== 202) throw new Error(`POST upload: HTTP ${post.statusCode}`);
  const loc = new URL(String(post.headers.location), 'http://x');
  loc.searchParams.set('digest', digest);
  const put = await pool.request({ path: `${loc.pathname}${loc.search}`, method: 'PUT', body: data, headers: { 'content-type': 'application/octet-stream', 'content-length': String(data.length) } });
  const text = await put.body.text();
  if (put.statusCode !== 201) throw new Error(`PUT upload: HTTP ${put.statusCode} ${text}`);
}

async function seedImage(url: string): Promise<void> {
  const pool = new Pool(url, { connections: 1 });
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } }));
  const layer = randomBytes(4096);
  await pushBlob(pool, 'bench/app', config, digestOf(config));
  await pushBlob(pool, 'bench/app', layer, digestOf(layer));
  const manifest = JSON.stringify({
    schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: digestOf(config), size: config.length },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: digestOf(layer), size: layer.length }],
  });
  const r = await pool.request({ path: '/v2/bench/app/manifests/latest', method: 'PUT', body: manifest, headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json' } });
  await r.body.dump();
  if (r.statusCode !== 201) throw new Error(`seed manifest: HTTP ${r.statusCode}`);
  await pool.close();
}

async function manifestGets(url: string, seconds: number): Promise<number> {
  const result = await autocannon({ url: `${url}/v2/bench/app/manifests/latest`, connections: 8, duration: seconds, headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } });
  if (result.non2xx > 0 || result.errors > 0) throw new Error(`manifest GET: ${result.non2xx} non-2xx, ${result.errors} errors`);
  return result.requests.average;
}

async function blobThroughput(url: string, tag: string, blobs: number, blobMiB: number, clients: number): Promise<number> {
  const base = randomBytes(blobMiB << 20);
  const work: { data: Buffer; digest: string }[] = [];
  for (let i = 0; i < blobs; i++) {
    const data = Buffer.from(base);
    data.write(`${tag}-${i}-`, 0);
    work.push({ data, digest: digestOf(data) });
  }
  const pool = new Pool(url, { connections: clients });
  const started = process.hrtime.bigint();
  let bytes = 0;
  let next = 0;
  await Promise.all(Array.from({ length: clients }, async (_, c) => {
    for (let i = next++; i < work.length; i = next++) {
      const b = work[i]!;
      await pushBlob(pool, `bench/blobs${c}`, b.data, b.digest);
      const r = await pool.request({ path: `/v2/bench/blobs${c}/blobs/${b.digest}`, method: 'GET', maxRedirections: 0 } as Parameters<Pool['request']>[0]);
      const h = createHash('sha256');
      for await (const chunk of r.body) h.update(chunk as Buffer);
      if (`sha256:${h.digest('hex')}` !== b.digest) throw new Error(`blob GET returned different content (HTTP ${r.statusCode})`);
      bytes += 2 * b.data.length;
    }
  }));
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  await pool.close();
  return bytes / 1024 / 1024 / seconds;
}

const blobs = arg('blobs', 16);
const blobMiB = arg('blob-mib', 16);
const clients = arg('clients', 4);
const seconds = arg('seconds', 5);
const ceph = await startCeph();
const servers: Server[] = [];
const rows: { metric: string; values: Record<string, number> }[] = [];
try {
  servers.push(await startDistribution(ceph), await startDrydock(ceph));
  for (const s of servers) await seedImage(s.url);
  for (const s of servers) await manifestGets(s.url, 1); // warm-up
  const gets: Record<string, number> = {};
  for (const s of servers) gets[s.name] = await manifestGets(s.url, seconds);
  rows.push({ metric: 'manifest GET req/s, 8 conn', values: gets });
  const single: Record<string, number> = {};
  for (const s of servers) single[s.name] = await blobThroughput(s.url, `${s.name}-1`, Math.max(2, blobs / 4), blobMiB, 1);
  rows.push({ metric: `blob push+pull MB/s, 1 client, ${blobMiB} MiB blobs`, values: single });
  const many: Record<string, number> = {};
  for (const s of servers) many[s.name] = await blobThroughput(s.url, `${s.name}-n`, blobs, blobMiB, clients);
  rows.push({ metric: `blob push+pull MB/s, ${clients} clients, ${blobMiB} MiB blobs`, values: many });
} finally {
  for (const s of servers) {
    s.proc.kill('SIGTERM');
    await new Promise((r) => (s.proc.exitCode !== null ? r(null) : s.proc.once('exit', r)));
  }
  await ceph.stop();
}
if (process.argv.includes('--json')) {
  process.stdout.write(`${JSON.stringify({ cephStartSeconds: ceph.startSeconds, rows }, null, 2)}\n`);
} else {
  const w = Math.max(...rows.map((r) => r.metric.length));
  process.stdout.write(`${'metric'.padEnd(w)}  ${'distribution'.padStart(12)}  ${'drydock'.padStart(12)}  drydock/distribution\n`);
  for (const r of rows) {
    process.stdout.write(`${r.metric.padEnd(w)}  ${r.values.distribution!.toFixed(1).padStart(12)}  ${r.values.drydock!.toFixed(1).padStart(12)}  ${(r.values.drydock! / r.values.distribution!).toFixed(2)}x\n`);
  }
  process.stdout.write(`(Ceph RGW up in ${ceph.startSeconds.toFixed(1)} s; ${os.cpus().length} CPUs, load ${os.loadavg()[0]!.toFixed(1)}; ${blobs} blobs)\n`);
}
