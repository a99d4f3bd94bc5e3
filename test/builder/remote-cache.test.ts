// --cache-to / --cache-from through the CLI against a real `drydock serve` on 127.0.0.1. Every
// RUN fetches a URL from a marker server, so a RUN that executes is counted; the registry's
// access log shows which blobs a fresh runner downloads. A fresh runner is a new DRYDOCK_ROOT.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { execFileSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { tempDir, requireRoot, requireTool, runCli } from '../helpers/env.js';
import { busyboxImage } from '../helpers/images.js';
import { runImage } from '../helpers/run-image.js';
import { startServe, type ServeProcess } from '../registry/serve.js';
import { startS3Server } from '../helpers/s3.js';
import { startCeph } from '../helpers/ceph.js';
import { startRecordingProxy, maxInFlight, type ProxiedRequest } from '../helpers/recording-proxy.js';
import { ContentStore, resolveImage } from '../../src/store/index.js';
import { push } from '../../src/client/index.js';
import { CACHE_CONFIG_MEDIA_TYPE, INLINE_CACHE_KEY, type CacheConfig } from '../../src/builder/remote-cache/index.js';

const base = tempDir('drydock-remote-cache-');
const rootA = path.join(base, 'runner-a');
let serve: ServeProcess;
let host: string;
let marker: Server;
let markerPort: number;
const hits: string[] = [];
let fresh = 0;

before(async () => {
  requireRoot();
  requireTool('runc');
  requireTool('skopeo');
  await busyboxImage(rootA);
  serve = await startServe(['--root', path.join(base, 'registry'), '--addr', '127.0.0.1:0', '--access-log-format', 'combined']);
  host = new URL(serve.url).host;
  await push(await ContentStore.open(rootA), 'busybox:latest', `${host}/library/busybox:latest`);
  // The build stage's base: busybox plus one layer the final image does not have.
  const builderCtx = path.join(base, 'ctx-builder-base');
  await fsp.mkdir(builderCtx, { recursive: true });
  await fsp.writeFile(path.join(builderCtx, 'Dockerfile'), 'FROM busybox\nRUN echo toolchain > /toolchain\n');
  const b = await runCli(['build', '-q', '-t', `${host}/library/builder:1`, builderCtx], { root: rootA, timeoutMs: 300_000 });
  assert.equal(b.code, 0, b.stderr);
  await push(await ContentStore.open(rootA), `${host}/library/builder:1`);
  marker = createServer((req, res) => { hits.push(req.url!); res.end(`ran ${req.url}\n`); });
  await new Promise<void>((r) => marker.listen(0, '127.0.0.1', r));
  markerPort = (marker.address() as { port: number }).port;
});
after(async () => {
  await serve?.stop();
  await new Promise((r) => marker?.close(r));
});

/** A multi-stage Dockerfile: the build stage's layers are not in the final image. */
function dockerfile(tag: string): string {
  const url = (p: string) => `http://127.0.0.1:${markerPort}/${tag}/${p}`;
  return `FROM ${host}/library/builder:1 AS build
RUN wget -q -O /built.txt ${url('build')}
RUN wget -q -O /unused.txt ${url('unused')}
FROM ${host}/library/busybox:latest
COPY --from=build /built.txt /app/built.txt
COPY app.txt /app/
RUN wget -q -O /app/final.txt ${url('final')}
CMD ["cat", "/app/built.txt"]
`;
}

async function contextDir(tag: string): Promise<string> {
  const dir = path.join(base, `ctx-${tag}`);
  await fsp.mkdir(dir, { recursive: true });
  await fsp.writeFile(path.join(dir, 'Dockerfile'), dockerfile(tag));
  await fsp.writeFile(path.join(dir, 'app.txt'), `app ${tag}\n`);
  return dir;
}

interface Built { id: string; steps: { step: number; cached: boolean; instruction: string }[]; stderr: string; stdout: string; ran: string[]; blobGets: string[] }

/** Runs `drydock build --format json` in `root`; reports RUNs executed and blob GETs made. */
async function build(root: string, dir: string, args: string[], opts: { quietJson?: boolean } = {}): Promise<Built> {
  const before = hits.length;
  const logBefore = serve.stdout().length;
  const r = await runCli(['build', ...(opts.quietJson === false ? [] : ['--format', 'json']), ...args, dir], { root, timeoutMs: 300_000 });
  assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
  await new Promise((res) => setTimeout(res, 200)); // the access log line is written after the response
  const log = serve.stdout().slice(logBefore);
  // drydock's own requests only (the test's fetch() calls may be logged late, inside the window).
  const blobGets = [...log.matchAll(/"GET \/v2\/[^ ]+\/blobs\/(sha256:[a-f0-9]{64}) HTTP\/[\d.]+" \d+ \d+ "[^"]*" "drydock\//g)].map((m) => m[1]!);
  const parsed = opts.quietJson === false ? { id: '', steps: [] } : JSON.parse(r.stdout) as { id: string; steps: Built['steps'] };
  return { ...parsed, stderr: r.stderr, stdout: r.stdout, ran: hits.slice(before), blobGets };
}

const freshRoot = () => path.join(base, `fresh-${fresh++}`);

async function imageOf(root: string, id: string) {
  return resolveImage(await ContentStore.open(root), id);
}

async function registryManifest(ref: string): Promise<{ mediaType: string; config: { mediaType: string; digest: string }; layers: { digest: string; annotations?: Record<string, string> }[] }> {
  const [repo, tag] = ref.split(':');
  const res = await fetch(`${serve.url}/v2/${repo}/manifests/${tag}`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } });
  assert.equal(res.status, 200, ref);
  return res.json() as never;
}

async function registryBlob<T>(repo: string, digest: string): Promise<T> {
  const res = await fetch(`${serve.url}/v2/${repo}/blobs/${digest}`);
  assert.equal(res.status, 200);
  return res.json() as Promise<T>;
}

test('registry, mode=max: a fresh runner executes no RUN and downloads only the final image\'s layers', async (t) => {
  const dir = await contextDir('max');
  const first = await build(rootA, dir, ['--cache-to', `type=registry,ref=${host}/cache/app:max,mode=max`]);
  assert.deepEqual(first.ran.sort(), ['/max/build', '/max/final', '/max/unused']);

  const m = await registryManifest('cache/app:max');
  assert.equal(m.mediaType, 'application/vnd.oci.image.manifest.v1+json');
  assert.equal(m.config.mediaType, CACHE_CONFIG_MEDIA_TYPE);
  for (const l of m.layers) assert.match(l.annotations?.['containerd.io/uncompressed'] ?? '', /^sha256:/);
  const cfg = await registryBlob<CacheConfig>('cache/app', m.config.digest);
  assert.equal(cfg.records!.length, 8, 'a record per step, both stages');

  const root = freshRoot();
  const second = await build(root, dir, ['--cache-from', `type=registry,ref=${host}/cache/app:max`]);
  assert.deepEqual(second.ran, [], 'no RUN step executed');
  assert.ok(second.steps.every((s) => s.cached), JSON.stringify(second.steps));
  assert.equal(second.id, first.id, 'the same image ID as the runner that built it (history times come from the cache)');
  const img = await imageOf(root, second.id);
  const finalLayers = img.manifest.layers.map((l) => l.digest);
  const aImg = await imageOf(rootA, first.id);
  assert.deepEqual(finalLayers, aImg.manifest.layers.map((l) => l.digest), 'the same layers as the runner that built it');
  const layerGets = second.blobGets.filter((d) => m.layers.some((l) => l.digest === d) || finalLayers.includes(d));
  assert.deepEqual([...new Set(layerGets)].sort(), [...finalLayers].sort(), `layer blobs downloaded: ${second.blobGets.join(' ')}`);
  assert.equal(layerGets.length, new Set(layerGets).size, 'each layer downloaded once');
  t.diagnostic(`fresh runner: ${second.blobGets.length} blob GETs (${layerGets.length} layers of ${m.layers.length} in the cache, the rest the cache config and two base configs)`);
  assert.equal(second.blobGets.length, 7, 'cache config, the two bases\' configs, the final image\'s 4 layers');
  const buildStageOnly = m.layers.map((l) => l.digest).filter((d) => !finalLayers.includes(d));
  assert.equal(buildStageOnly.length, 3, 'the build stage\'s base layer and two RUN layers are in the cache');
  for (const d of buildStageOnly) assert.ok(!second.blobGets.includes(d), `build-stage layer ${d} was not downloaded`);
  // The lazily fetched layers make the image the exporting runner built.
  assert.equal((await runImage(root, second.id)).out, 'ran /max/build\n');

  // The downloaded hits became local cache entries: building again downloads no layer at all.
  const third = await build(root, dir, ['--cache-from', `type=registry,ref=${host}/cache/app:max`]);
  assert.deepEqual(third.ran, []);
  assert.deepEqual(third.blobGets.filter((d) => m.layers.some((l) => l.digest === d)), []);
});

test('a registry export uploads several layers at once (as a push does), each only once', async () => {
  // Each upload request held 400 ms at a proxy in front of the registry: one at a time, they
  // never overlap; the destination takes 5 at once.
  const isUpload = (r: ProxiedRequest) => r.url.includes('/blobs/uploads/') && r.method !== 'POST';
  const proxy = await startRecordingProxy(serve.url, { holdMs: (r) => (isUpload(r) ? 400 : 0) });
  try {
    const dir = await contextDir('parallel');
    await build(rootA, dir, ['--cache-to', `type=registry,ref=${proxy.host}/cache/parallel:1,mode=max`]);
    const uploads = proxy.requests.filter(isUpload);
    const m = await registryManifest('cache/parallel:1');
    assert.equal(uploads.filter((r) => /[?&]digest=/.test(r.url)).length, m.layers.length + 1, 'each layer and the config uploaded once');
    const most = maxInFlight(uploads);
    assert.ok(most >= 2 && most <= 5, `layers uploaded at once, at most 5 (${most} in flight)`);
    const fromIt = await build(freshRoot(), dir, ['--cache-from', `type=registry,ref=${host}/cache/parallel:1`]);
    assert.deepEqual(fromIt.ran, [], 'the cache is complete');
  } finally {
    await proxy.stop();
  }
});

test('mode=min exports the final image\'s records and layers only; mode=max every stage', async () => {
  const dir = await contextDir('max'); // the same build as above: all cached in runner A
  const r = await build(rootA, dir, ['--cache-to', `type=registry,ref=${host}/cache/app:min,mode=min`]);
  assert.deepEqual(r.ran, []);
  const min = await registryManifest('cache/app:min');
  const max = await registryManifest('cache/app:max');
  const img = await imageOf(rootA, r.id);
  assert.deepEqual(min.layers.map((l) => l.digest).sort(), img.manifest.layers.map((l) => l.digest).sort(), 'min: exactly the final image\'s layers');
  assert.equal(max.layers.length, min.layers.length + 3, 'max adds the build stage\'s base layer and RUN layers');
  const minCfg = await registryBlob<CacheConfig>('cache/app', min.config.digest);
  const maxCfg = await registryBlob<CacheConfig>('cache/app', max.config.digest);
  // min: FROM, COPY --from, COPY, RUN, CMD of the final stage; max adds the build stage's 3 steps.
  assert.equal(minCfg.records!.length, 5);
  assert.equal(maxCfg.records!.length, 8);

  // Fresh runner from min: the final stage is cached, so the build stage it copies from is not
  // needed and never runs (BuildKit's behaviour); its steps are not even reported.
  const fromMin = await build(freshRoot(), dir, ['--cache-from', `${host}/cache/app:min`]);
  assert.deepEqual(fromMin.ran, []);
  assert.deepEqual(fromMin.steps.map((s) => s.step), [4, 5, 6, 7, 8]);
  assert.ok(fromMin.steps.every((s) => s.cached));
});

test('type=local dest/src is an OCI layout dir; a round trip local -> registry -> fresh runner runs nothing', async () => {
  const dir = await contextDir('local');
  const cacheDir = path.join(base, 'local-cache');
  const first = await build(rootA, dir, ['--cache-to', `type=local,dest=${cacheDir},mode=max`]);
  assert.equal(first.ran.length, 3);
  const index = JSON.parse(await fsp.readFile(path.join(cacheDir, 'index.json'), 'utf8')) as { manifests: { digest: string; annotations?: Record<string, string> }[] };
  assert.equal(index.manifests.length, 1);
  assert.equal(index.manifests[0]!.annotations?.['org.opencontainers.image.ref.name'], 'latest');
  assert.ok(JSON.parse(await fsp.readFile(path.join(cacheDir, 'oci-layout'), 'utf8')).imageLayoutVersion);

  // Runner B imports from the directory and exports to the registry without downloading anything.
  const rootB = freshRoot();
  const b = await build(rootB, dir, ['--cache-from', `type=local,src=${cacheDir}`, '--cache-to', `type=registry,ref=${host}/cache/app:local,mode=max`]);
  assert.deepEqual(b.ran, []);
  const c = await build(freshRoot(), dir, ['--cache-from', `type=registry,ref=${host}/cache/app:local`]);
  assert.deepEqual(c.ran, []);
  assert.ok(c.steps.every((s) => s.cached));

  // skopeo copies the cache manifest (a valid OCI image manifest) registry -> OCI layout.
  const out = path.join(base, 'skopeo-copy');
  execFileSync('skopeo', ['copy', '--src-tls-verify=false', `docker://${host}/cache/app:local`, `oci:${out}:cache`], { stdio: 'pipe' });
  const copied = JSON.parse(await fsp.readFile(path.join(out, 'index.json'), 'utf8')) as { manifests: { digest: string }[] };
  const raw = JSON.parse(await fsp.readFile(path.join(out, 'blobs', 'sha256', copied.manifests[0]!.digest.slice(7)), 'utf8')) as { config: { mediaType: string } };
  assert.equal(raw.config.mediaType, CACHE_CONFIG_MEDIA_TYPE);
  // ... and the copy is itself a cache drydock reads.
  const d = await build(freshRoot(), dir, ['--cache-from', `type=local,src=${out},tag=cache`]);
  assert.deepEqual(d.ran, []);
});

test('type=inline: the records ride in the image config; --cache-from the pushed image', async () => {
  const dir = await path.join(base, 'ctx-inline');
  await fsp.mkdir(dir, { recursive: true });
  await fsp.writeFile(path.join(dir, 'Dockerfile'), `FROM ${host}/library/busybox:latest\nRUN wget -q -O /a.txt http://127.0.0.1:${markerPort}/inline/a\nRUN wget -q -O /b.txt http://127.0.0.1:${markerPort}/inline/b\n`);
  const first = await build(rootA, dir, ['-t', `${host}/app/inline:1`, '--cache-to', 'type=inline']);
  assert.equal(first.ran.length, 2);
  const img = await imageOf(rootA, first.id);
  const field = (img.config as unknown as Record<string, string>)[INLINE_CACHE_KEY];
  assert.ok(field, 'the config has moby.buildkit.cache.v0');
  const records = JSON.parse(Buffer.from(field, 'base64').toString()) as { digest: string; layers?: { layer: number }[] }[];
  // FROM's result is the base's layer (0), each RUN's the chain up to its own layer.
  assert.deepEqual(records.flatMap((r) => r.layers?.map((l) => l.layer) ?? []).sort(), [0, 1, 2], 'result indexes count the image\'s layers');
  await push(await ContentStore.open(rootA), `${host}/app/inline:1`);
  const second = await build(freshRoot(), dir, ['--cache-from', `${host}/app/inline:1`]);
  assert.deepEqual(second.ran, []);
  assert.ok(second.steps.every((s) => s.cached));
});

test('repeated --cache-from: hits come from every source', async () => {
  // Two stages the final one copies from; each has its own cache (a --target build), and the
  // final stage is in neither, so it executes and needs both stages.
  const dir = path.join(base, 'ctx-multi');
  await fsp.mkdir(dir, { recursive: true });
  const url = (p: string) => `http://127.0.0.1:${markerPort}/multi/${p}`;
  await fsp.writeFile(path.join(dir, 'Dockerfile'), `FROM ${host}/library/busybox:latest AS one
RUN wget -q -O /one.txt ${url('one')}
FROM ${host}/library/busybox:latest AS two
RUN wget -q -O /two.txt ${url('two')}
FROM ${host}/library/busybox:latest
COPY --from=one /one.txt /app/
COPY --from=two /two.txt /app/
`);
  const one = path.join(base, 'cache-one');
  await build(rootA, dir, ['--target', 'one', '--cache-to', `type=local,dest=${one}`]);
  await build(rootA, dir, ['--target', 'two', '--cache-to', `type=registry,ref=${host}/cache/app:two`]);
  const onlyOne = await build(freshRoot(), dir, ['--cache-from', `type=local,src=${one}`]);
  assert.deepEqual(onlyOne.ran, ['/multi/two']);
  const root = freshRoot();
  const both = await build(root, dir, ['--cache-from', `type=local,src=${one}`, '--cache-from', `${host}/cache/app:two`]);
  assert.deepEqual(both.ran, [], 'stage one from the directory, stage two from the registry');
  const img = await imageOf(root, both.id);
  assert.equal(img.manifest.layers.length, 3);
  // COPY --from mounted the hits' rootfs, so their layers were fetched when it ran.
  assert.equal((await runImage(root, both.id, { args: ['cat', '/app/one.txt', '/app/two.txt'] })).out, 'ran /multi/one\nran /multi/two\n');
});

test('a missing or corrupt cache is a warning and the build runs normally', async () => {
  const dir = await contextDir('bad');
  const missingDir = path.join(base, 'no-such-cache');
  const corrupt = path.join(base, 'corrupt-cache');
  // A layout whose cache config has a looping layer chain.
  const store = await ContentStore.open(corrupt);
  const cfg = Buffer.from(JSON.stringify({ layers: [{ blob: 'sha256:' + 'a'.repeat(64), parent: 0 }], records: [{ digest: 'sha256:' + 'b'.repeat(64), layers: [{ layer: 0 }] }] }));
  const cfgDesc = await store.writeBytes(cfg, CACHE_CONFIG_MEDIA_TYPE);
  const layer = { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: 'sha256:' + 'a'.repeat(64), size: 1, annotations: { 'containerd.io/uncompressed': 'sha256:' + 'c'.repeat(64) } };
  const man = await store.writeJson({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: cfgDesc, layers: [layer] }, 'application/vnd.oci.image.manifest.v1+json');
  await fsp.writeFile(path.join(corrupt, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: man.mediaType, digest: man.digest, size: man.size, annotations: { 'org.opencontainers.image.ref.name': 'latest' } }] }));

  const r = await build(freshRoot(), dir, [
    '--cache-from', `type=local,src=${missingDir}`,
    '--cache-from', `${host}/cache/nothing:here`,
    '--cache-from', `type=local,src=${corrupt}`,
  ]);
  assert.equal(r.ran.length, 3, 'every RUN executed');
  assert.match(r.stderr, new RegExp(`WARNING: local cache import at ${missingDir} not found due to err: could not read ${missingDir}/index.json: open ${missingDir}/index.json: no such file or directory`));
  assert.match(r.stderr, new RegExp(`WARNING: failed to import cache manifest from ${host}/cache/nothing:here: .*manifest unknown`));
  assert.match(r.stderr, /WARNING: local cache import at .*corrupt-cache failed: invalid looping layer/);
});

test('a failed --cache-to fails the build unless ignore-error=true', async () => {
  const dir = await contextDir('bad'); // cached in runner A: only the export is at stake
  await build(rootA, dir, []);
  const unreachable = '127.0.0.1:1/cache/app:x';
  const failed = await runCli(['build', '--cache-to', `type=registry,ref=${unreachable}`, dir], { root: rootA, timeoutMs: 120_000 });
  assert.notEqual(failed.code, 0);
  assert.match(failed.stderr, new RegExp(`failed to export cache to ${unreachable}: `));
  const ignored = await build(rootA, dir, ['--cache-to', `type=registry,ref=${unreachable},ignore-error=true`]);
  assert.match(ignored.stderr, new RegExp(`WARNING: failed to export cache to ${unreachable}: `));
});

test('--cache-to / --cache-from values are parsed like buildx', async () => {
  const cases: [string[], RegExp][] = [
    [['--cache-to', 'type=s3,ref=x'], /unknown cache exporter attribute "ref" for type=s3/],
    [['--cache-to', 'type=azblob,name=x'], /unknown cache exporter: "azblob"/],
    [['--cache-from', 'type=gha'], /type=gha needs the GitHub Actions cache service/],
    [['--cache-to', 'ref=x'], /type required for "ref=x"/],
    [['--cache-to', 'type=registry,ref=x,junk'], /invalid value junk/],
    [['--cache-to', 'type=registry,ref=x,mode=all'], /invalid mode: all/],
    [['--cache-to', 'type=local'], /local cache exporter requires dest/],
    [['--cache-from', 'type=local,dest=/x'], /unknown cache importer attribute "dest" for type=local/],
    [['--cache-to', 'type=inline,mode=max'], /unknown cache exporter attribute "mode" for type=inline/],
    [['--cache-to', 'type=s3,region=r,bucket=b,upload_parallelism=0'], /upload_parallelism must be a positive integer/],
    [['--cache-to', 'type=s3,region=r,bucket=b,upload_parallelism=two'], /upload_parallelism must be a positive integer/],
    [['--cache-to', 'type=s3,region=r,bucket=b,touch_refresh=1d'], /invalid touch_refresh "1d": a Go duration such as 24h/],
    [['--cache-to', 'type=s3,region=r,bucket=b,retry_mode=adaptive'], /retry_mode is not supported for type=s3/],
    [['--cache-from', 'type=s3,region=r,bucket=b,retry_max_attempts=5'], /retry_max_attempts is not supported for type=s3/],
    [['--cache-to', 'type=s3,region=r,bucket=b,disable_accept_encoding=maybe'], /failed to parse disable_accept_encoding/],
    [['--cache-from', 'type=s3,region=r,bucket=b,upload_parallelism=2'], /unknown cache importer attribute "upload_parallelism" for type=s3/],
  ];
  for (const [args, err] of cases) {
    const r = await runCli(['build', ...args, base], { root: rootA });
    assert.notEqual(r.code, 0, args.join(' '));
    assert.match(r.stderr, err, args.join(' '));
  }
});

// Two real S3 APIs: a one-node Ceph RADOS Gateway (test/helpers/ceph.ts, ~20 s to start on the
// 2-core box) and s3rver (a child process), both on 127.0.0.1.
// s3rver keeps an object's file, and so its Last-Modified, when it is copied onto itself (its
// filesystem store only rewrites the metadata); S3 and RGW give the copy a new one.
const S3_SERVERS: { name: string; copyRefreshesMtime: boolean; start: () => Promise<{ endpoint: string; bucket: string; accessKey: string; secretKey: string; stop(): Promise<void> }> }[] = [
  { name: 'ceph-rgw', copyRefreshesMtime: true, start: () => startCeph({ bucket: 'buildcache' }) },
  { name: 's3rver', copyRefreshesMtime: false, start: () => startS3Server({ bucket: 'buildcache' }) },
];

for (const server of S3_SERVERS) {
  test(`type=s3 on ${server.name}: BuildKit's S3 layout (blobs/, manifests/NAME); a fresh runner building from it runs nothing`, async (t) => {
    const t0 = Date.now();
    const s3 = await server.start();
    t.diagnostic(`${server.name} started in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    try {
      const dir = await contextDir(`s3-${server.name}`);
      const attrs = `type=s3,region=us-east-1,bucket=${s3.bucket},endpoint_url=${s3.endpoint},use_path_style=true,access_key_id=${s3.accessKey},secret_access_key=${s3.secretKey},prefix=ci/,name=app;main`;
      const first = await build(rootA, dir, ['--cache-to', `${attrs},mode=max`]);
      assert.equal(first.ran.length, 3);
      // The layout, read with the SDK directly: every blob the config names, under both names.
      const { S3Client, GetObjectCommand, ListObjectsV2Command } = await import('@aws-sdk/client-s3');
      const client = new S3Client({ region: 'us-east-1', endpoint: s3.endpoint, forcePathStyle: true, credentials: { accessKeyId: s3.accessKey, secretAccessKey: s3.secretKey } });
      try {
        const keys = ((await client.send(new ListObjectsV2Command({ Bucket: s3.bucket }))).Contents ?? []).map((o) => o.Key!).sort();
        assert.ok(keys.includes('ci/manifests/app') && keys.includes('ci/manifests/main'), keys.join(' '));
        const config = JSON.parse(await (await client.send(new GetObjectCommand({ Bucket: s3.bucket, Key: 'ci/manifests/app' }))).Body!.transformToString()) as CacheConfig;
        assert.ok(config.records!.length >= 7, 'mode=max: both stages');
        for (const l of config.layers!) {
          assert.ok(keys.includes(`ci/blobs/${l.blob}`), `blob ${l.blob} uploaded`);
          assert.match(l.annotations?.diffID ?? '', /^sha256:[a-f0-9]{64}$/);
          assert.match(l.annotations?.mediaType ?? '', /^application\/vnd\.oci\.image\.layer\.v1\.tar/);
          assert.equal(typeof l.annotations?.size, 'number');
        }
        assert.equal(keys.filter((k) => !k.startsWith('ci/blobs/sha256:') && !k.startsWith('ci/manifests/')).length, 0, 'nothing else in the bucket');
      } finally {
        client.destroy();
      }
      const fromS3 = await build(freshRoot(), dir, ['--cache-from', attrs.replace('name=app;main', 'name=main')]);
      assert.deepEqual(fromS3.ran, [], 'no RUN executed on the fresh runner');
      assert.ok(fromS3.steps.every((st) => st.cached));
      assert.equal(fromS3.id, first.id, 'the same image');
      // A name nobody wrote is a warning, and the build runs without the cache.
      const missing = await build(freshRoot(), dir, ['--cache-from', attrs.replace('name=app;main', 'name=nope')]);
      assert.match(missing.stderr, /WARNING: failed to import cache manifest from s3:\/\/buildcache\/ci\/manifests\/nope: not found/);
      assert.equal(missing.ran.length, 3, 'every RUN, as without a cache');
      await t.test('blobs go upload_parallelism at once; blobs already there are HEADed, not uploaded; touch_refresh touches old ones', () => uploadsAndTouch(s3, server.name, server.copyRefreshesMtime));
    } finally {
      await s3.stop();
    }
  });
}

const isBlob = (r: ProxiedRequest) => /\/blobs(\/|%2F)sha256(:|%3A)/.test(r.url);
const isCopy = (r: ProxiedRequest) => r.method === 'PUT' && !!r.headers['x-amz-copy-source'];
const isUpload = (r: ProxiedRequest) => r.method === 'PUT' && isBlob(r) && !isCopy(r);

/** Exports through a recording proxy that holds each blob upload 400 ms, so overlap shows. */
async function uploadsAndTouch(s3: { endpoint: string; bucket: string; accessKey: string; secretKey: string }, name: string, copyRefreshesMtime: boolean): Promise<void> {
  const proxy = await startRecordingProxy(s3.endpoint, { holdMs: (r) => (isUpload(r) ? 400 : 0) });
  const { S3Client, HeadObjectCommand, GetObjectCommand } = await import('@aws-sdk/client-s3');
  const client = new S3Client({ region: 'us-east-1', endpoint: s3.endpoint, forcePathStyle: true, credentials: { accessKeyId: s3.accessKey, secretAccessKey: s3.secretKey } });
  try {
    const dir = await contextDir(`s3up-${name}`);
    const attrs = `type=s3,region=us-east-1,bucket=${s3.bucket},endpoint_url=${proxy.url},use_path_style=true,access_key_id=${s3.accessKey},secret_access_key=${s3.secretKey},prefix=up/,mode=max`;
    const round = async (extra: string) => {
      const from = proxy.requests.length;
      await build(rootA, dir, ['--cache-to', `${attrs}${extra}`]);
      return proxy.requests.slice(from).filter(isBlob);
    };
    const first = await round(',upload_parallelism=3');
    const uploads = first.filter(isUpload);
    assert.ok(uploads.length >= 6, `every layer of both stages uploaded (${uploads.length})`);
    assert.equal(maxInFlight(uploads), 3, 'three uploads at once, never more');
    assert.ok(uploads.every((r) => r.status === 200), 'each upload succeeded');
    const keyOf = (r: ProxiedRequest) => decodeURIComponent(new URL(r.url, proxy.url).pathname).replace(`/${s3.bucket}/`, '');
    const keys = [...new Set(uploads.map(keyOf))];
    const heads = async (ks: string[]) => Promise.all(ks.map((Key) => client.send(new HeadObjectCommand({ Bucket: s3.bucket, Key }))));
    const before = (await heads(keys)).map((h) => h.LastModified!.getTime());

    // The same cache again (the build stage, cached, is not solved: the final image's chain).
    // Each blob is found with a HEAD; seconds old, the default touch_refresh (24h) leaves it be.
    const again = await round('');
    const found = again.filter((r) => r.method === 'HEAD');
    assert.ok(found.length >= 3 && found.every((r) => keys.includes(keyOf(r))), `one HEAD per blob of the chain: ${found.map(keyOf).join(' ')}`);
    assert.equal(again.filter(isUpload).length, 0, 'nothing uploaded twice');
    assert.equal(again.filter(isCopy).length, 0, 'nothing touched');

    // Last-Modified has whole seconds: wait until the blobs are 2 s old, then touch_refresh=1s.
    await new Promise((r) => setTimeout(r, 2100));
    const touched = await round(',touch_refresh=1s');
    assert.equal(touched.filter(isUpload).length, 0, 'touching is not uploading');
    const copies = touched.filter(isCopy);
    assert.deepEqual(copies.map(keyOf).sort(), found.map(keyOf).sort(), 'each blob older than touch_refresh copied onto itself');
    assert.ok(copies.every((r) => r.status === 200), 'each touch succeeded');
    const touchedKeys = copies.map(keyOf);
    const after = await heads(touchedKeys);
    for (let i = 0; i < touchedKeys.length; i++) {
      assert.match(after[i]!.Metadata?.['updated-at'] ?? '', /^\d{4}-\d\d-\d\dT/, `${touchedKeys[i]}: the touch's metadata`);
      const was = before[keys.indexOf(touchedKeys[i]!)]!;
      const now = after[i]!.LastModified!.getTime();
      if (copyRefreshesMtime) assert.ok(now > was, `${touchedKeys[i]}: modification time refreshed (${new Date(was).toISOString()} -> ${new Date(now).toISOString()})`);
    }
    // The touched blobs are intact: each still hashes to its digest.
    const { createHash } = await import('node:crypto');
    for (const Key of keys) {
      const bytes = await (await client.send(new GetObjectCommand({ Bucket: s3.bucket, Key }))).Body!.transformToByteArray();
      assert.equal(`sha256:${createHash('sha256').update(bytes).digest('hex')}`, Key.replace('up/blobs/', ''));
    }
    const fromTouched = await build(freshRoot(), dir, ['--cache-from', attrs.replace(',mode=max', '').replace(proxy.url, s3.endpoint)]);
    assert.deepEqual(fromTouched.ran, [], 'a fresh runner builds from the touched cache without a RUN');
  } finally {
    client.destroy();
    await proxy.stop();
  }
}
