// Config files (registry:2's config.yml keys), CLI flags, the htpasswd helper, and the
// pull-through cache mode against real upstreams (distribution 2.8 and a token-auth drydock).
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { CLI_MAIN, PROJECT_ROOT, runCli, tempDir } from '../helpers/env.js';
import { htpasswdLine, startDistribution, type DistributionRegistry } from '../helpers/docker-registry.js';
import { loadConfigFile, parseDuration, splitAddr, startRegistry, type StartedRegistry } from '../../src/registry/index.js';
import { assertError, http, pushImage } from './util.js';

describe('config', () => {
  const durations: [string, number][] = [['168h', 168 * 3_600_000], ['30m', 1_800_000], ['1h30m', 5_400_000], ['10s', 10_000], ['500ms', 500], ['15', 15_000]];
  for (const [s, ms] of durations) test(`parseDuration ${s}`, () => assert.equal(parseDuration(s, 0), ms));
  test('parseDuration rejects junk', () => assert.throws(() => parseDuration('3 days', 0), /invalid duration/));

  const addrs: [string, string, number][] = [['127.0.0.1:5000', '127.0.0.1', 5000], [':5000', '0.0.0.0', 5000], ['[::1]:443', '::1', 443], ['localhost:0', 'localhost', 0]];
  for (const [a, host, port] of addrs) test(`splitAddr ${a}`, () => assert.deepEqual(splitAddr(a), { host, port }));
  test('splitAddr rejects a missing port', () => assert.throws(() => splitAddr('localhost'), /host:port/));

  test("a registry:2 config.yml loads, with paths relative to the file", async () => {
    const dir = tempDir('drydock-registry-config-');
    const file = path.join(dir, 'config.yml');
    writeFileSync(file, `version: 0.1
log:
  fields:
    service: registry
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: data
  delete:
    enabled: true
http:
  addr: :5000
  headers:
    X-Content-Type-Options: [nosniff]
  tls:
    certificate: certs/domain.crt
    key: certs/domain.key
auth:
  htpasswd:
    realm: basic-realm
    path: auth/htpasswd
health:
  storagedriver:
    enabled: true
`);
    const c = await loadConfigFile(file);
    assert.equal(c.storage.filesystem.rootdirectory, path.join(dir, 'data'));
    assert.equal(c.storage.delete?.enabled, true);
    assert.equal(c.http.addr, ':5000');
    assert.equal(c.http.tls?.certificate, path.join(dir, 'certs/domain.crt'));
    assert.equal(c.auth?.htpasswd?.path, path.join(dir, 'auth/htpasswd'));
    assert.equal(c.auth?.htpasswd?.realm, 'basic-realm');
  });

  const invalid: [string, string, RegExp][] = [
    ['unknown storage driver', 'storage:\n  azure:\n    accountname: x\n', /storage driver "azure" is not supported/],
    ['s3 without bucket', 'storage:\n  s3:\n    region: us-east-1\n', /storage\.s3\.bucket is required/],
    ['bad YAML', 'storage: [\n', /invalid YAML/],
    ['half TLS', 'http:\n  addr: 127.0.0.1:1\n  tls:\n    certificate: a.crt\n', /both certificate and key/],
    ['bad addr', 'http:\n  addr: nowhere\n', /host:port/],
    ['external token without realm', 'auth:\n  token:\n    rootcertbundle: x.pem\n', /realm is required/],
    ['accessControl without auth', 'accessControl:\n  repositories:\n    "**": { defaultPolicy: [pull] }\n', /accessControl is set but auth names no method/],
    ['accessControl under http (Zot\'s place)', 'http:\n  addr: 127.0.0.1:1\n  accessControl: {}\n', /drydock reads accessControl at the top level/],
    ['accessControl and auth.access', 'auth:\n  htpasswd:\n    path: htpasswd\n  access:\n    - { users: [a], repositories: ["*"], actions: [pull] }\naccessControl:\n  repositories: {}\n', /auth\.access and accessControl both set/],
    ['accessControl bad action', 'auth:\n  htpasswd:\n    path: htpasswd\naccessControl:\n  repositories:\n    "team/**":\n      policies:\n        - { users: [a], actions: [write] }\n', /accessControl\.repositories\["team\/\*\*"\]\.policies\[0\]\.actions: unknown action "write"/],
    ['bad access action', 'auth:\n  htpasswd:\n    path: htpasswd\n  access:\n    - users: [a]\n      repositories: ["*"]\n      actions: [write]\n', /unknown action "write"/],
  ];
  for (const [what, yaml, re] of invalid) {
    test(`config error: ${what}`, async () => {
      const f = path.join(tempDir('drydock-registry-badconfig-'), 'config.yml');
      writeFileSync(f, yaml);
      await assert.rejects(loadConfigFile(f), re);
    });
  }
  test('a missing config file is a clear error', async () => {
    await assert.rejects(loadConfigFile('/nonexistent/config.yml'), /config file \/nonexistent\/config.yml not found/);
  });
});

describe('CLI', () => {
  test('serve --help shows examples', async () => {
    const r = await runCli(['serve', '--help']);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /Examples:/);
    assert.match(r.stdout, /--htpasswd <file>/);
    const alias = await runCli(['registry', 'serve', '--help']);
    assert.equal(alias.code, 0);
  });

  test('registry htpasswd writes lines apache htpasswd verifies', async () => {
    const r = await runCli(['registry', 'htpasswd', 'alice', '--password-stdin', '--cost', '5'], { input: 's3cret\n' });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^alice:\$2y\$05\$/);
    const f = path.join(tempDir('drydock-registry-cli-'), 'htpasswd');
    writeFileSync(f, r.stdout);
    execFileSync('htpasswd', ['-vb', f, 'alice', 's3cret'], { stdio: 'ignore' });
    const bad = await runCli(['registry', 'htpasswd', 'al:ice', '--password', 'x']);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /must not contain ":"/);
  });

  test('serve refuses half a TLS pair and a missing htpasswd file', async () => {
    const root = tempDir('drydock-registry-cli-root-');
    const tls = await runCli(['serve', '--root', root, '--addr', '127.0.0.1:0', '--tls-cert', '/tmp/x.crt']);
    assert.equal(tls.code, 1);
    assert.match(tls.stderr, /Error: http.tls needs both certificate and key/);
    const ht = await runCli(['serve', '--root', root, '--addr', '127.0.0.1:0', '--htpasswd', '/nonexistent/htpasswd']);
    assert.equal(ht.code, 1);
    assert.match(ht.stderr, /htpasswd file \/nonexistent\/htpasswd not found/);
  });

  test('serve --config with a registry:2 config file serves, with an access log', async () => {
    const dir = tempDir('drydock-registry-cli-config-');
    writeFileSync(path.join(dir, 'htpasswd'), `${htpasswdLine('ci', 'pw')}\n`);
    writeFileSync(path.join(dir, 'config.yml'), `version: 0.1
storage:
  filesystem:
    rootdirectory: ./data
http:
  addr: 127.0.0.1:0
auth:
  htpasswd:
    realm: ci-realm
    path: htpasswd
`);
    const fromSource = CLI_MAIN.endsWith('.ts');
    const proc = spawn(process.execPath, [...(fromSource ? ['--import', 'tsx'] : []), CLI_MAIN, 'serve', '--config', path.join(dir, 'config.yml')], { cwd: PROJECT_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    try {
      let out = '';
      let err = '';
      proc.stdout.on('data', (d) => (out += d));
      const url = await new Promise<string>((resolve, reject) => {
        proc.stderr.on('data', (d) => {
          err += d;
          const m = /listening on (\S+)/.exec(err);
          if (m) resolve(m[1]!);
        });
        proc.on('exit', (c) => reject(new Error(`exited ${c}: ${err}`)));
      });
      const r = await http(`${url}/v2/`);
      assert.equal(r.headers.get('www-authenticate'), 'Basic realm="ci-realm"');
      await pushImage(url, 'cfg/app', 'v1', { headers: { Authorization: `Basic ${Buffer.from('ci:pw').toString('base64')}` } });
      await new Promise((r2) => setTimeout(r2, 300));
      const lines = out.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
      const put = lines.find((l) => l.route === 'manifest' && l.method === 'PUT');
      assert.ok(put, out);
      assert.equal(put.status, 201);
      assert.equal(put.user, 'ci');
      assert.equal(typeof put.duration_ms, 'number');
    } finally {
      proc.kill('SIGTERM');
    }
  });
});

describe('serve --workers', () => {
  test('two worker processes share the port, serve pushes and pulls, and stop together', async () => {
    const root = tempDir('drydock-registry-workers-');
    const fromSource = CLI_MAIN.endsWith('.ts');
    const proc = spawn(process.execPath, [...(fromSource ? ['--import', 'tsx'] : []), CLI_MAIN, 'serve', '--root', root, '--addr', '127.0.0.1:0', '--workers', '2', '-q'], { cwd: PROJECT_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    try {
      let err = '';
      proc.stderr.on('data', (d) => (err += d));
      const url = await new Promise<string>((resolve, reject) => {
        let out = '';
        proc.stdout.on('data', (d) => {
          out += d;
          const m = /^(http:\/\/\S+)\n/m.exec(out);
          if (m) resolve(m[1]!);
        });
        proc.on('exit', (c) => reject(new Error(`exited ${c}: ${err}`)));
      });
      const imgs = await Promise.all([0, 1, 2, 3].map((i) => pushImage(url, `w/app${i}`, 'v1')));
      for (const [i, img] of imgs.entries()) {
        const r = await http(`${url}/v2/w/app${i}/manifests/v1`);
        assert.equal(r.status, 200);
        assert.equal(r.headers.get('docker-content-digest'), img.digest);
      }
    } finally {
      proc.kill('SIGTERM');
    }
    const code = await new Promise((r) => (proc.exitCode !== null ? r(proc.exitCode) : proc.once('exit', r)));
    assert.equal(code, 0);
  });
});

describe('pull-through cache (proxy.remoteurl)', () => {
  let upstream: DistributionRegistry | undefined;
  let tokenUpstream: StartedRegistry | undefined;
  let mirror: StartedRegistry | undefined;
  after(async () => { await mirror?.close(); await upstream?.stop(); await tokenUpstream?.close(); });

  test('mirrors a distribution 2.8 upstream with htpasswd auth, and serves the cache when it is down', async () => {
    upstream = await startDistribution({ users: { up: 'stream' } });
    const auth = { Authorization: `Basic ${Buffer.from('up:stream').toString('base64')}` };
    const img = await pushImage(upstream.url, 'lib/app', 'v1', { headers: auth, layers: 2 });
    mirror = await startRegistry({ root: tempDir('drydock-registry-mirror-'), proxy: { remoteurl: upstream.url, username: 'up', password: 'stream' } });
    const m = await http(`${mirror.url}/v2/lib/app/manifests/v1`);
    assert.equal(m.status, 200, m.body.toString());
    assert.equal(m.headers.get('docker-content-digest'), img.digest);
    for (const l of img.layers) {
      const b = await http(`${mirror.url}/v2/lib/app/blobs/${l}`);
      assert.equal(b.status, 200);
      assert.equal(b.headers.get('docker-content-digest'), l);
    }
    assert.deepEqual((await http(`${mirror.url}/v2/lib/app/tags/list`)).json().tags, ['v1']);
    assertError(await http(`${mirror.url}/v2/lib/app/manifests/nope`), 404, 'MANIFEST_UNKNOWN');
    assertError(await http(`${mirror.url}/v2/lib/app/blobs/uploads/`, { method: 'POST' }), 405, 'UNSUPPORTED');
    // stop() waits for an 'exit' that has already happened when called twice, so forget it here.
    const stopping = upstream;
    upstream = undefined;
    await stopping.stop();
    const cached = await http(`${mirror.url}/v2/lib/app/manifests/v1`);
    assert.equal(cached.status, 200);
    assert.equal((await http(`${mirror.url}/v2/lib/app/blobs/${img.layers[0]}`)).status, 200);
  });

  test('mirrors an upstream that uses bearer tokens', async () => {
    const dir = tempDir('drydock-registry-mirror-token-');
    writeFileSync(path.join(dir, 'htpasswd'), `${htpasswdLine('up', 'stream')}\n`);
    tokenUpstream = await startRegistry({ root: path.join(dir, 'root'), htpasswd: path.join(dir, 'htpasswd'), token: true });
    const t = await http(`${tokenUpstream.url}/token?service=drydock-registry&scope=repository:tok/app:pull,push`, { headers: { Authorization: `Basic ${Buffer.from('up:stream').toString('base64')}` } });
    const img = await pushImage(tokenUpstream.url, 'tok/app', 'v1', { headers: { Authorization: `Bearer ${t.json().token}` } });
    const m2 = await startRegistry({ root: tempDir('drydock-registry-mirror2-'), proxy: { remoteurl: tokenUpstream.url, username: 'up', password: 'stream' } });
    try {
      const m = await http(`${m2.url}/v2/tok/app/manifests/v1`);
      assert.equal(m.status, 200, m.body.toString());
      assert.deepEqual(m.body, img.manifest);
      assert.equal((await http(`${m2.url}/v2/tok/app/blobs/${img.config}`)).status, 200);
    } finally { await m2.close(); }
  });
});
