// A manifest is served with the media type it was pushed with, never relabelled: Docker schema2
// bodies without their `mediaType` field are refused as distribution 2.8 refuses them (the same
// request is sent to both), OCI ones without it are OCI, and those with it keep it.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { tempDir } from '../helpers/env.js';
import { startDistribution, type DistributionRegistry } from '../helpers/docker-registry.js';
import { startRegistry, type StartedRegistry } from '../../src/registry/index.js';
import { http, pushBlob } from './util.js';

const DOCKER = 'application/vnd.docker.distribution.manifest.v2+json';
const DOCKER_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json';
const OCI = 'application/vnd.oci.image.manifest.v1+json';

describe('manifest media types (differential against distribution 2.8)', () => {
  let ours: StartedRegistry;
  let dist: DistributionRegistry;
  const config = Buffer.from('{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}');
  let cfgDigest = '';
  before(async () => {
    ours = await startRegistry({ root: tempDir('drydock-registry-mt-') });
    dist = await startDistribution();
    for (const base of [ours.url, dist.url]) cfgDigest = await pushBlob(base, 'mt/app', config);
  });
  after(async () => { await ours?.close(); await dist?.stop(); });

  const image = (mediaType?: string, configType = 'application/vnd.docker.container.image.v1+json') => Buffer.from(JSON.stringify({
    schemaVersion: 2, ...(mediaType ? { mediaType } : {}), config: { mediaType: configType, digest: cfgDigest, size: config.length }, layers: [],
  }));

  // [what, Content-Type, body, expected status, expected served Content-Type]
  const cases: [string, string, () => Buffer, number, string | undefined][] = [
    ['schema2 Content-Type, no mediaType field', DOCKER, () => image(), 400, undefined],
    ['schema2 with its mediaType field', DOCKER, () => image(DOCKER), 201, DOCKER],
    ['OCI Content-Type, no mediaType field', OCI, () => image(undefined, 'application/vnd.oci.image.config.v1+json'), 201, OCI],
    ['schema2 list Content-Type, no mediaType field', DOCKER_LIST, () => Buffer.from(JSON.stringify({ schemaVersion: 2, manifests: [] })), 400, undefined],
  ];
  for (const [what, contentType, body, status, served] of cases) {
    test(what, async () => {
      for (const [who, base] of [['drydock', ours.url], ['distribution', dist.url]] as const) {
        const tag = `t${cases.findIndex((c) => c[0] === what)}`;
        const r = await http(`${base}/v2/mt/app/manifests/${tag}`, { method: 'PUT', body: body(), headers: { 'Content-Type': contentType } });
        assert.equal(r.status, status, `${who}: ${r.body.toString()}`);
        if (status === 400) {
          assert.equal(r.json().errors[0].code, 'MANIFEST_INVALID', who);
          assert.equal((await http(`${base}/v2/mt/app/manifests/${tag}`)).status, 404, `${who}: nothing stored`);
          continue;
        }
        for (const method of ['GET', 'HEAD']) {
          const g = await http(`${base}/v2/mt/app/manifests/${tag}`, { method, headers: { Accept: [DOCKER, OCI, DOCKER_LIST].join(', ') } });
          assert.equal(g.status, 200, who);
          assert.equal(g.headers.get('content-type'), served, `${who} ${method}`);
        }
      }
    });
  }
  test('drydock names the missing field as distribution does', async () => {
    const r = await http(`${ours.url}/v2/mt/app/manifests/x`, { method: 'PUT', body: image(), headers: { 'Content-Type': DOCKER } });
    assert.equal(r.json().errors[0].message, `mediaType in manifest should be '${DOCKER}' not ''`);
  });
});
