// The cache format and flag parsing without a build: buildx's CSV rules, BuildKit's cache config
// (what we write, what BuildKit writes, what must be refused), and the inline records.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  parseCacheTo, parseCacheFrom, encodeCacheConfig, decodeCacheConfig, entryFor, encodeInlineRecords, decodeInlineCache,
  INLINE_CACHE_KEY, type StepRecord,
} from '../../src/builder/remote-cache/index.js';
import type { CachedLayer } from '../../src/builder/cache.js';

const hex = (c: string) => c.repeat(64);
/** A layer whose blob digest is c…c and diffID d…d. */
const layer = (c: string, d: string): CachedLayer => ({ digest: `sha256:${hex(c)}`, size: 10, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', diffID: `sha256:${hex(d)}` });

test('--cache-to / --cache-from parse like buildx', () => {
  const to: [string[], unknown][] = [
    [['type=registry,ref=r:5000/c:1'], [{ type: 'registry', ref: 'r:5000/c:1', mode: 'min', ignoreError: false }]],
    [['TYPE=registry,Ref=r/c,MODE=max,ignore-error=true'], [{ type: 'registry', ref: 'r/c', mode: 'max', ignoreError: true }]],
    [['type=local,dest=/tmp/c,mode=max'], [{ type: 'local', dest: '/tmp/c', tag: 'latest', mode: 'max', ignoreError: false }]],
    [['type=local,dest=/tmp/c,tag=v1,oci-mediatypes=true,image-manifest=true'], [{ type: 'local', dest: '/tmp/c', tag: 'v1', mode: 'min', ignoreError: false }]],
    [['type=inline'], [{ type: 'inline' }]],
    [['r/a', ''], [{ type: 'registry', ref: 'r/a', mode: 'min', ignoreError: false }]],
    [['"type=local,dest=/a,b"'], 'err'],
  ];
  for (const [args, want] of to) {
    if (want === 'err') assert.throws(() => parseCacheTo(args));
    else assert.deepEqual(parseCacheTo(args), want, args.join(' '));
  }
  // type=s3 takes BuildKit's attributes; region, bucket and credentials fall back to AWS_* variables.
  const s3Defaults = { type: 's3', usePathStyle: false, prefix: '', blobsPrefix: 'blobs/', manifestsPrefix: 'manifests/', names: ['buildkit'] };
  assert.deepEqual(parseCacheTo(['type=s3,region=eu-west-1,bucket=ci'], {}), [{ ...s3Defaults, region: 'eu-west-1', bucket: 'ci', mode: 'min', ignoreError: false, uploadParallelism: 4, touchRefreshMs: 86_400_000 }]);
  assert.deepEqual(parseCacheTo(['type=s3,endpoint_url=http://127.0.0.1:9000,use_path_style=true,prefix=p/,blobs_prefix=b/,manifests_prefix=m/,name=app;main,mode=max,access_key_id=AK,secret_access_key=SK,session_token=T,ignore-error=true'], { AWS_REGION: 'us-east-1', AWS_BUCKET: 'envbucket' }), [{
    type: 's3', region: 'us-east-1', bucket: 'envbucket', endpointUrl: 'http://127.0.0.1:9000', usePathStyle: true, prefix: 'p/', blobsPrefix: 'b/', manifestsPrefix: 'm/',
    names: ['app', 'main'], accessKeyId: 'AK', secretAccessKey: 'SK', sessionToken: 'T', mode: 'max', ignoreError: true,
    uploadParallelism: 4, touchRefreshMs: 86_400_000,
  }]);
  assert.deepEqual(parseCacheFrom(['type=s3,region=r,bucket=b'], { AWS_ACCESS_KEY_ID: 'A', AWS_SECRET_ACCESS_KEY: 'S' }), [{ ...s3Defaults, region: 'r', bucket: 'b', accessKeyId: 'A', secretAccessKey: 'S' }]);
  // A bare list of refs is one registry import each; quoted fields keep their commas.
  assert.deepEqual(parseCacheFrom(['r/a,r/b']), [{ type: 'registry', ref: 'r/a' }, { type: 'registry', ref: 'r/b' }]);
  assert.deepEqual(parseCacheFrom(['type=local,"src=/a,b",tag=x']), [{ type: 'local', src: '/a,b', tag: 'x' }]);
  assert.deepEqual(parseCacheFrom([`type=local,src=/c,digest=sha256:${hex('a')}`]), [{ type: 'local', src: '/c', tag: 'latest', digest: `sha256:${hex('a')}` }]);
  const errors: [() => unknown, RegExp][] = [
    [() => parseCacheTo(['type=gha']), /^type=gha needs the GitHub Actions cache service .*which drydock does not implement; use type=registry, type=s3 or type=local/],
    [() => parseCacheFrom(['type=gha,scope=main']), /^type=gha needs the GitHub Actions cache service/],
    [() => parseCacheTo(['type=azblob,name=x']), /^unknown cache exporter: "azblob"$/],
    [() => parseCacheTo(['type=s3,bucket=b'], {}), /^region \('region'\) not set for s3 cache$/],
    [() => parseCacheFrom(['type=s3,region=r'], {}), /^bucket \('bucket'\) not set for s3 cache$/],
    [() => parseCacheFrom(['type=s3,region=r,bucket=b,mode=max'], {}), /unknown cache importer attribute "mode" for type=s3/],
    [() => parseCacheTo(['type=s3,region=r,bucket=b,use_path_style=yes'], {}), /failed to parse use_path_style/],
    [() => parseCacheFrom(['type=inline']), /^unknown cache importer: "inline"$/],
    [() => parseCacheTo(['ref=x,mode=max']), /^type required for "ref=x,mode=max"$/],
    [() => parseCacheTo(['type=registry,ref=x,nokey']), /^invalid value nokey$/],
    [() => parseCacheTo(['type=registry']), /ref is required for registry cache exporter/],
    [() => parseCacheFrom(['type=local']), /^local cache importer requires src$/],
    [() => parseCacheTo(['type=registry,ref=x,mode=maximum']), /^invalid mode: maximum$/],
    [() => parseCacheTo(['type=registry,ref=x,ignore-error=yes']), /failed to parse ignore-error: strconv.ParseBool: parsing "yes": invalid syntax/],
    [() => parseCacheTo(['type=registry,ref=x,image-manifest=false']), /image-manifest=false is not supported/],
    [() => parseCacheFrom(['type=registry,ref=x,mode=max']), /unknown cache importer attribute "mode" for type=registry \(ref\)/],
    [() => parseCacheTo([`type=local,dest="/a`]), /bare " in non-quoted-field/],
    [() => parseCacheTo([`type=local,"dest=/a`]), /extraneous or missing " in quoted-field/],
  ];
  for (const [fn, re] of errors) assert.throws(fn, (e: Error) => re.test(e.message), String(re));
});

// FROM (base layer A) → RUN (layer B) → ENV (no layer) → COPY (layer C)
const A = layer('a', 'd'); const B = layer('b', 'e'); const C = layer('c', 'f');
const steps: StepRecord[] = [
  { key: hex('1'), entry: { created: '2024-01-01T00:00:00Z' }, layers: [A] },
  { key: hex('2'), parent: hex('1'), entry: { created: '2024-01-02T00:00:00Z', layer: B }, layers: [A, B] },
  { key: hex('3'), parent: hex('2'), entry: { created: '2024-01-03T00:00:00Z' }, layers: [A, B] },
  { key: hex('4'), parent: hex('3'), entry: { created: '2024-01-04T00:00:00Z', layer: C }, layers: [A, B, C] },
];
const blobsOf = (ls: CachedLayer[]) => new Map(ls.map((l) => [l.digest, { mediaType: l.mediaType, size: l.size, diffID: l.diffID }]));

test('our records: one per step, inputs link the parent, results name the rootfs chain', () => {
  const { config, layers } = encodeCacheConfig(steps);
  assert.deepEqual(layers.map((l) => l.digest), [A.digest, B.digest, C.digest]);
  assert.deepEqual(config.layers, [{ blob: A.digest, parent: -1 }, { blob: B.digest, parent: 0 }, { blob: C.digest, parent: 1 }]);
  assert.deepEqual(config.records!.map((r) => [r.digest, r.inputs, r.layers]), [
    [`sha256:${hex('1')}`, undefined, [{ layer: 0, createdAt: '2024-01-01T00:00:00Z' }]],
    [`sha256:${hex('2')}`, [[{ link: 0 }]], [{ layer: 1, createdAt: '2024-01-02T00:00:00Z' }]],
    [`sha256:${hex('3')}`, [[{ link: 1 }]], [{ layer: 1, createdAt: '2024-01-03T00:00:00Z' }]],
    [`sha256:${hex('4')}`, [[{ link: 2 }]], [{ layer: 2, createdAt: '2024-01-04T00:00:00Z' }]],
  ]);
  const back = decodeCacheConfig(JSON.parse(JSON.stringify(config)), blobsOf(layers));
  assert.deepEqual(entryFor(back.get(hex('2'))!, [A.diffID]), { created: '2024-01-02T00:00:00Z', layer: B });
  assert.deepEqual(entryFor(back.get(hex('3'))!, [A.diffID, B.diffID]), { created: '2024-01-03T00:00:00Z' }, 'a metadata step: same chain, no layer');
  assert.deepEqual(entryFor(back.get(hex('4'))!, [A.diffID, B.diffID]), { created: '2024-01-04T00:00:00Z', layer: C });
  assert.equal(entryFor(back.get(hex('4'))!, [A.diffID, C.diffID]), undefined, 'a chain that does not extend the parent is no hit');
  assert.equal(entryFor(back.get(hex('4'))!, [A.diffID]), undefined);
});

test('a config as BuildKit writes it: omitted parent is 0, chains and selectors are read past, LLB digests never match', () => {
  const config = {
    layers: [{ blob: A.digest, parent: -1 }, { blob: B.digest }],
    records: [
      { digest: 'sha256:' + hex('9'), layers: [{ layer: 0, createdAt: '2023-05-05T00:00:00Z' }] },
      { digest: 'sha256:' + hex('8'), inputs: [[{ selector: 'sha256:' + hex('7'), link: 0 }]], layers: [{ layer: 1, createdAt: '2023-05-06T00:00:00Z' }], chains: [{ layers: [0, 1] }] },
      { digest: 'random:' + hex('6'), inputs: [[{ link: 1 }]] },
    ],
  };
  const got = decodeCacheConfig(config, blobsOf([A, B]));
  assert.deepEqual([...got.keys()].sort(), [hex('8'), hex('9')]);
  assert.deepEqual(got.get(hex('8'))!.chain.map((l) => l.digest), [A.digest, B.digest]);
});

test('malformed configs are refused with BuildKit\'s reasons', () => {
  const cases: [unknown, Map<string, { mediaType: string; size: number; diffID?: string }>, RegExp][] = [
    [{ layers: [{ blob: A.digest, parent: 0 }], records: [{ digest: `sha256:${hex('1')}`, layers: [{ layer: 0 }] }] }, blobsOf([A]), /invalid looping layer/],
    [{ layers: [{ blob: A.digest, parent: -1 }], records: [{ digest: `sha256:${hex('1')}`, layers: [{ layer: 5 }] }] }, blobsOf([A]), /invalid layer index 5/],
    [{ layers: [{ blob: A.digest, parent: -1 }], records: [{ digest: `sha256:${hex('1')}`, layers: [{ layer: 0 }] }] }, new Map(), /missing blob for sha256:a+/],
    [{ layers: [{ blob: A.digest, parent: -1 }], records: [{ digest: `sha256:${hex('1')}`, layers: [{ layer: 0 }] }] }, new Map([[A.digest, { mediaType: A.mediaType, size: 1 }]]), /has no uncompressed digest/],
    [{ records: [{ digest: `sha256:${hex('1')}`, inputs: [[{ link: 3 }]] }] }, new Map(), /invalid record ID: 3/],
    [{ records: [{ inputs: [] }] }, new Map(), /record 0 has no digest/],
    [[1, 2], new Map(), /not a JSON object/],
    [{ layers: {} }, new Map(), /must be arrays/],
  ];
  for (const [cfg, blobs, re] of cases) assert.throws(() => decodeCacheConfig(cfg, blobs), (e: Error) => re.test(e.message), String(re));
});

test('inline records count the image\'s layers and read back from the config', () => {
  const records = encodeInlineRecords(steps, [A, B, C]);
  assert.deepEqual(records.map((r) => r.layers?.[0]?.layer), [0, 1, 1, 2]);
  const config = { [INLINE_CACHE_KEY]: Buffer.from(JSON.stringify(records)).toString('base64') };
  const got = decodeInlineCache(config, [A, B, C], [A.diffID, B.diffID, C.diffID]);
  assert.deepEqual(entryFor(got.get(hex('4'))!, [A.diffID, B.diffID]), { created: '2024-01-04T00:00:00Z', layer: C });
  assert.throws(() => encodeInlineRecords(steps, [A, C]), /not in the image/);
  assert.throws(() => decodeInlineCache({ [INLINE_CACHE_KEY]: 'bm90IGpzb24=' }, [], []), /not base64-encoded JSON/);
  assert.equal(decodeInlineCache({}, [], []).size, 0);
});
