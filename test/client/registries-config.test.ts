// Where content comes from: registries.conf mirrors (unreachable or missing -> upstream),
// --registry-mirror and daemon.json for Docker Hub, insecure registries, certs.d CAs over TLS.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync, copyFileSync } from 'node:fs';
import path from 'node:path';
import { ContentStore } from '../../src/store/index.js';
import * as client from '../../src/client/index.js';
import { startRegistry } from '../../src/registry/index.js';
import { requireTool, runCli, tempDir } from '../helpers/env.js';
import { startDistribution, freePort, type DistributionRegistry } from '../helpers/docker-registry.js';
import { buildImage, storeImage, type TestImage } from './fixtures.js';

describe('registries.conf parsing', () => {
  it('maps mirrors with and without path prefixes, like containers-registries.conf(5)', async () => {
    const dir = tempDir();
    const conf = path.join(dir, 'registries.conf');
    writeFileSync(conf, `
[[registry]]
location = "docker.io"
[[registry.mirror]]
location = "mirror.example.com:5000/hub"
[[registry.mirror]]
location = "plain.example.com"
insecure = true

[[registry]]
location = "quay.io/team"
[[registry.mirror]]
location = "cache.local/quay-team"

[[registry]]
location = "evil.example.com"
blocked = true

[registries.insecure]
registries = ["old.example.com"]
`);
    const cfg = await client.RegistriesConfig.load({ registriesConf: conf, daemonJson: path.join(dir, 'none.json'), certsDirs: [] });
    const hub = cfg.forRepository('docker.io', 'library/busybox');
    assert.deepEqual(hub.pullEndpoints.map((e) => [e.host, client.repositoryOn(e, 'library/busybox'), e.insecure]), [
      ['mirror.example.com:5000', 'hub/library/busybox', false],
      ['plain.example.com', 'library/busybox', true],
      ['registry-1.docker.io', 'library/busybox', false],
    ]);
    assert.equal(hub.pushEndpoint.host, 'registry-1.docker.io');
    const quay = cfg.forRepository('quay.io', 'team/app');
    assert.equal(client.repositoryOn(quay.pullEndpoints[0]!, 'team/app'), 'quay-team/app');
    assert.equal(cfg.forRepository('quay.io', 'other/app').pullEndpoints.length, 1, 'prefix does not match other namespaces');
    assert.equal(cfg.forRepository('evil.example.com', 'x').blocked, true);
    assert.equal(cfg.isInsecure('old.example.com'), true);
    assert.equal(cfg.isInsecure('new.example.com'), false);
  });

  const badCases: { name: string; file: string; text: string; error: RegExp }[] = [
    { name: 'invalid TOML', file: 'registries.conf', text: '[[registry]\nlocation=', error: /registries\.conf: invalid TOML/ },
    { name: 'registry entry without location', file: 'registries.conf', text: '[[registry]]\ninsecure = true\n', error: /needs a "location"/ },
    { name: 'daemon.json not JSON', file: 'daemon.json', text: '{registry-mirrors: []}', error: /daemon\.json: invalid JSON/ },
    { name: 'daemon.json mirrors not an array', file: 'daemon.json', text: '{"registry-mirrors": "https://m"}', error: /must be arrays/ },
  ];
  for (const c of badCases) {
    it(`rejects ${c.name} with the file name`, async () => {
      const dir = tempDir();
      writeFileSync(path.join(dir, c.file), c.text);
      await assert.rejects(client.RegistriesConfig.load({ registriesConf: path.join(dir, 'registries.conf'), daemonJson: path.join(dir, 'daemon.json'), certsDirs: [] }), c.error);
    });
  }

  it('daemon.json insecure-registries accepts CIDRs', async () => {
    const dir = tempDir();
    writeFileSync(path.join(dir, 'daemon.json'), JSON.stringify({ 'insecure-registries': ['10.1.0.0/16', 'reg.lan:5000'], 'registry-mirrors': ['https://m.lan'] }));
    const cfg = await client.RegistriesConfig.load({ registriesConf: path.join(dir, 'none'), daemonJson: path.join(dir, 'daemon.json'), certsDirs: [] });
    assert.equal(cfg.isInsecure('10.1.2.3:5000'), true);
    assert.equal(cfg.isInsecure('10.2.0.1:5000'), false);
    assert.equal(cfg.isInsecure('reg.lan:5000'), true);
    assert.equal(cfg.forRepository('docker.io', 'library/x').pullEndpoints[0]!.host, 'm.lan');
  });
});

describe('mirrors against real registries', () => {
  let upstream: DistributionRegistry;
  let mirror: DistributionRegistry;
  let img: TestImage;
  let dir: string;
  let deadPort: number;

  before(async () => {
    [upstream, mirror] = await Promise.all([startDistribution(), startDistribution()]);
    dir = tempDir();
    deadPort = await freePort();
    img = await buildImage([200_000]);
    const store = await ContentStore.open(tempDir());
    await storeImage(store, img, 'local/app:1');
    await client.push(store, 'local/app:1', `${upstream.host}/team/app:1`);
    await client.push(store, 'local/app:1', `${mirror.host}/team/app:1`);
    await client.push(store, 'local/app:1', `${mirror.host}/library/app:1`);
  });
  after(async () => { await upstream.stop(); await mirror.stop(); });

  it('an unreachable mirror falls back to the upstream, with a warning', async () => {
    const conf = path.join(dir, 'unreachable.conf');
    writeFileSync(conf, `[[registry]]\nlocation = "${upstream.host}"\n[[registry.mirror]]\nlocation = "127.0.0.1:${deadPort}"\n`);
    const r = await runCli(['pull', '--progress=plain', `${upstream.host}/team/app:1`], { root: tempDir(), env: { DRYDOCK_REGISTRIES_CONF: conf } });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`Warning: mirror 127\\.0\\.0\\.1:${deadPort} failed .*connection refused.*falling back to ${upstream.host}`));
    assert.match(r.stdout, new RegExp(`Digest: ${img.descriptor.digest}`));
  });

  it('a mirror serves the pull when the upstream does not resolve', async () => {
    const conf = path.join(dir, 'mirror.conf');
    writeFileSync(conf, `[[registry]]\nlocation = "registry.drydock.invalid"\n[[registry.mirror]]\nlocation = "${mirror.host}"\n`);
    const store = await ContentStore.open(tempDir());
    const res = await client.pull(store, 'registry.drydock.invalid/team/app:1', { registriesConf: conf });
    assert.equal(res.digest, img.descriptor.digest);
    assert.ok(await store.resolveTag('registry.drydock.invalid/team/app:1'), 'tagged under the upstream name');
  });

  it('a mirror without the image (404) falls back to the upstream', async () => {
    const conf = path.join(dir, 'missing.conf');
    const empty = await startDistribution();
    try {
      writeFileSync(conf, `[[registry]]\nlocation = "${upstream.host}"\n[[registry.mirror]]\nlocation = "${empty.host}"\n`);
      const warnings: string[] = [];
      const res = await client.pull(await ContentStore.open(tempDir()), `${upstream.host}/team/app:1`, { registriesConf: conf, onWarning: (w) => warnings.push(w) });
      assert.equal(res.digest, img.descriptor.digest);
      assert.match(warnings.join('\n'), /manifest unknown/);
    } finally { await empty.stop(); }
  });

  it('--registry-mirror and daemon.json registry-mirrors serve Docker Hub names offline', async () => {
    const r = await runCli(['pull', '-q', '--registry-mirror', `http://${mirror.host}`, 'app:1'], { root: tempDir() });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), 'docker.io/library/app:1');
    const daemon = path.join(dir, 'daemon.json');
    writeFileSync(daemon, JSON.stringify({ 'registry-mirrors': [`http://${mirror.host}`] }));
    const s = await ContentStore.open(tempDir());
    const res = await client.pull(s, 'docker.io/library/app:1', { daemonJson: daemon });
    assert.equal(res.digest, img.descriptor.digest);
  });
});

describe('TLS with a certs.d CA', () => {
  let reg: Awaited<ReturnType<typeof startRegistry>>;
  let certs: string;
  let cert: string;

  before(async () => {
    requireTool('openssl');
    const dir = tempDir();
    cert = path.join(dir, 'cert.pem');
    const key = path.join(dir, 'key.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'pipe' });
    reg = await startRegistry({ root: path.join(dir, 'data'), tls: { certificate: cert, key } });
    certs = path.join(dir, 'certs.d');
    mkdirSync(path.join(certs, reg.host), { recursive: true });
  });
  after(async () => { await reg.close(); });

  it('refuses an unknown certificate, trusts certs.d/<host>/ca.crt, or skips checks with --insecure-registry', async () => {
    const img = await buildImage([10_000]);
    const store = await ContentStore.open(tempDir());
    await storeImage(store, img, 'tls/app:1');
    await assert.rejects(client.push(store, 'tls/app:1', `${reg.host}/tls/app:1`, { certsDirs: [certs] }), /self-signed|certificate/i);
    copyFileSync(cert, path.join(certs, reg.host, 'ca.crt'));
    const pushed = await client.push(store, 'tls/app:1', `${reg.host}/tls/app:1`, { certsDirs: [certs] });
    assert.equal(pushed.digest, img.descriptor.digest);
    const viaEnv = await runCli(['pull', '-q', `${reg.host}/tls/app:1`], { root: tempDir(), env: { DRYDOCK_CERTS_D: certs } });
    assert.equal(viaEnv.code, 0, viaEnv.stderr);
    const insecure = await runCli(['pull', '-q', '--insecure-registry', reg.host, `${reg.host}/tls/app:1`], { root: tempDir(), env: { DRYDOCK_CERTS_D: path.join(tempDir(), 'empty') } });
    assert.equal(insecure.code, 0, insecure.stderr);
  });
});
