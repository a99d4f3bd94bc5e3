// distribution's REGISTRY_* environment overrides (env over file, flags over env), the seed-004
// command line (REGISTRY_AUTH=htpasswd ... drydock serve must require auth), refusal to start an
// open registry when auth was asked for and cannot be applied, and the 401 body's `detail`,
// each compared with distribution 2.8 (Debian's docker-registry) run with the same environment.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { runCli, tempDir } from '../helpers/env.js';
import { htpasswdLine, startDistribution, type DistributionRegistry } from '../helpers/docker-registry.js';
import { applyEnvOverrides, loadConfigFile } from '../../src/registry/index.js';
import { http, pushImage } from './util.js';
import { startServe, type ServeProcess } from './serve.js';

const basic = (u: string, p: string) => ({ Authorization: `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}` });

describe('applyEnvOverrides', () => {
  // [what, file document, environment, expected document, unrecognised variables]
  const cases: [string, Record<string, unknown>, Record<string, string>, Record<string, unknown>, string[]][] = [
    ['seed 004 htpasswd', {}, { REGISTRY_AUTH: 'htpasswd', REGISTRY_AUTH_HTPASSWD_REALM: 'Registry Realm', REGISTRY_AUTH_HTPASSWD_PATH: '/auth/htpasswd' },
      { auth: { htpasswd: { realm: 'Registry Realm', path: '/auth/htpasswd' } } }, []],
    ['env over file', { http: { addr: ':5000' }, storage: { filesystem: { rootdirectory: '/a' } } },
      { REGISTRY_HTTP_ADDR: '127.0.0.1:5001', REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY: '/b' },
      { http: { addr: '127.0.0.1:5001' }, storage: { filesystem: { rootdirectory: '/b' } } }, []],
    ['REGISTRY_STORAGE=s3 selects the driver before its parameters', { storage: { filesystem: { rootdirectory: '/a' } } },
      { REGISTRY_STORAGE_S3_BUCKET: 'images', REGISTRY_STORAGE: 's3', REGISTRY_STORAGE_S3_REGIONENDPOINT: 'http://minio:9000', REGISTRY_STORAGE_S3_SECURE: 'false' },
      { storage: { s3: { bucket: 'images', regionendpoint: 'http://minio:9000', secure: false } } }, []],
    ['the S3 lease lifetime (a drydock key) is an S3 parameter like the others', { storage: { s3: { bucket: 'images' } } },
      { REGISTRY_STORAGE_S3_LEASELIFETIME: '90s' }, { storage: { s3: { bucket: 'images', leaselifetime: '90s' } } }, []],
    ['booleans, integers and durations get their types', {},
      { REGISTRY_STORAGE_DELETE_ENABLED: 'true', REGISTRY_LIMITS_MAXCONCURRENTUPLOADS: '3', REGISTRY_HTTP_DRAINTIMEOUT: '60s', REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_ENABLED: 'false' },
      { storage: { delete: { enabled: true }, maintenance: { uploadpurging: { enabled: false } } }, limits: { maxconcurrentuploads: 3 }, http: { draintimeout: '60s' } }, []],
    ['tls, secret, proxy, log, token', {},
      { REGISTRY_HTTP_TLS_CERTIFICATE: '/c.crt', REGISTRY_HTTP_TLS_KEY: '/c.key', REGISTRY_HTTP_SECRET: 's', REGISTRY_PROXY_REMOTEURL: 'https://up', REGISTRY_LOG_ACCESSLOG_FORMAT: 'combined', REGISTRY_AUTH_TOKEN_REALM: 'https://auth/token', REGISTRY_AUTH_TOKEN_SERVICE: 'reg' },
      { http: { tls: { certificate: '/c.crt', key: '/c.key' }, secret: 's' }, proxy: { remoteurl: 'https://up' }, log: { accesslog: { format: 'combined' } }, auth: { token: { realm: 'https://auth/token', service: 'reg' } } }, []],
    ['a realm that looks like a number stays a string', {}, { REGISTRY_AUTH_HTPASSWD_REALM: '2024' }, { auth: { htpasswd: { realm: '2024' } } }, []],
    ['headers keep existing keys, case-insensitively', { http: { headers: { 'X-Content-Type-Options': ['nosniff'] } } },
      { 'REGISTRY_HTTP_HEADERS_X-CONTENT-TYPE-OPTIONS': '[sniff]' }, { http: { headers: { 'X-Content-Type-Options': ['sniff'] } } }, []],
    ['orchestrator variables are only warnings', {},
      { REGISTRY_PORT: 'tcp://10.0.0.1:5000', REGISTRY_PORT_5000_TCP_ADDR: '10.0.0.1', REGISTRY_SERVICE_HOST: '10.0.0.1', REGISTRY_HTTP_ADDR_X: '1', REGISTRY_: 'x' },
      {}, ['REGISTRY_', 'REGISTRY_HTTP_ADDR_X', 'REGISTRY_PORT', 'REGISTRY_PORT_5000_TCP_ADDR', 'REGISTRY_SERVICE_HOST']],
    ['an unknown auth kind is kept (and refused later)', {}, { REGISTRY_AUTH: 'silly' }, { auth: { silly: {} } }, []],
    ['accessControl: the repository map as YAML, admin users as a list', {},
      { REGISTRY_ACCESSCONTROL_REPOSITORIES: '{"team/**": {defaultPolicy: [pull]}}', REGISTRY_ACCESSCONTROL_ADMINPOLICY_USERS: '[root]', REGISTRY_ACCESSCONTROL_ADMINPOLICY_ACTIONS: '[pull, push, delete]' },
      { accessControl: { repositories: { 'team/**': { defaultPolicy: ['pull'] } }, adminPolicy: { users: ['root'], actions: ['pull', 'push', 'delete'] } } }, []],
    ['other prefixes are not ours', {}, { DOCKER_REGISTRY: 'x', REGISTRYX: 'y' }, {}, []],
  ];
  for (const [what, doc, env, want, unknown] of cases) {
    test(what, () => {
      const d = structuredClone(doc);
      assert.deepEqual(applyEnvOverrides(d, env), unknown);
      assert.deepEqual(d, want);
    });
  }
  test('a value of the wrong type is an error naming the variable', () => {
    assert.throws(() => applyEnvOverrides({}, { REGISTRY_STORAGE_DELETE_ENABLED: 'yes please' }), /REGISTRY_STORAGE_DELETE_ENABLED: "yes please" is not a boolean/);
    assert.throws(() => applyEnvOverrides({}, { REGISTRY_LIMITS_MAXUPLOADBYTES: '1e3x' }), /REGISTRY_LIMITS_MAXUPLOADBYTES: "1e3x" is not an integer/);
  });
  test('loadConfigFile applies env over the file, with paths relative to the file', async () => {
    const dir = tempDir('drydock-registry-envfile-');
    writeFileSync(path.join(dir, 'config.yml'), 'version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: data\nhttp:\n  addr: :5000\n');
    const c = await loadConfigFile(path.join(dir, 'config.yml'), { env: { REGISTRY_HTTP_ADDR: '127.0.0.1:0', REGISTRY_AUTH: 'htpasswd', REGISTRY_AUTH_HTPASSWD_PATH: 'auth/htpasswd' } });
    assert.equal(c.http.addr, '127.0.0.1:0');
    assert.equal(c.auth?.htpasswd?.path, path.join(dir, 'auth/htpasswd'));
    assert.equal(c.storage.filesystem.rootdirectory, path.join(dir, 'data'));
  });
});

describe('seed 004: drydock serve with REGISTRY_AUTH=htpasswd', () => {
  let serve: ServeProcess | undefined;
  let dist: DistributionRegistry | undefined;
  after(async () => { await serve?.stop(); await dist?.stop(); });

  test('requires auth, warns about REGISTRY_PORT, stores under REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY, and answers 401s as registry:2 does', async () => {
    const dir = tempDir('drydock-registry-seed004-');
    mkdirSync(path.join(dir, 'auth'));
    writeFileSync(path.join(dir, 'auth/htpasswd'), `${htpasswdLine('testuser', 'testpassword')}\n`);
    const env = {
      REGISTRY_AUTH: 'htpasswd',
      REGISTRY_AUTH_HTPASSWD_REALM: 'Registry Realm',
      REGISTRY_AUTH_HTPASSWD_PATH: path.join(dir, 'auth/htpasswd'),
      REGISTRY_PORT: 'tcp://10.0.0.7:5000',
    };
    serve = await startServe([], { ...env, REGISTRY_HTTP_ADDR: '127.0.0.1:0', REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY: path.join(dir, 'data'), REGISTRY_LOG_ACCESSLOG_DISABLED: 'true' });
    dist = await startDistribution({ env: { ...env, REGISTRY_LOG_LEVEL: 'warn' } });
    assert.match(serve.stderr(), /warning: ignoring unrecognized environment variable REGISTRY_PORT\n/);
    assert.match(dist.output(), /Ignoring unrecognized environment variable REGISTRY_PORT/);

    // The same requests to both: status, challenge and body must be equal.
    const probes: [string, string][] = [
      ['GET', '/v2/'], ['GET', '/v2/_catalog'], ['GET', '/v2/foo/bar/manifests/latest'], ['HEAD', '/v2/foo/manifests/latest'],
      ['GET', '/v2/foo/tags/list'], ['POST', '/v2/foo/blobs/uploads/'],
      ['DELETE', '/v2/foo/manifests/sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'],
    ];
    for (const creds of [{}, basic('testuser', 'wrong'), basic('nobody', 'testpassword')]) {
      for (const [method, p] of probes) {
        const ours = await http(`${serve.url}${p}`, { method, headers: creds });
        const theirs = await http(`${dist.url}${p}`, { method, headers: creds });
        const what = `${method} ${p} ${JSON.stringify(creds)}`;
        assert.equal(ours.status, 401, what);
        assert.equal(ours.status, theirs.status, what);
        assert.equal(ours.headers.get('www-authenticate'), 'Basic realm="Registry Realm"', what);
        assert.equal(ours.headers.get('www-authenticate'), theirs.headers.get('www-authenticate'), what);
        if (method !== 'HEAD') assert.deepEqual(ours.json(), theirs.json(), what);
      }
    }
    assert.equal((await http(`${serve.url}/v2/_catalog`)).body.toString(),
      '{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":[{"Type":"registry","Class":"","Name":"catalog","Action":"*"}]}]}');

    await pushImage(serve.url, 'seed/app', 'v1', { headers: basic('testuser', 'testpassword') });
    assert.deepEqual((await http(`${serve.url}/v2/_catalog`, { headers: basic('testuser', 'testpassword') })).json(), { repositories: ['seed/app'] });
    assert.ok(readdirSync(path.join(dir, 'data/docker/registry/v2/repositories')).includes('seed'));
  });
});

describe('auth that was asked for and cannot be applied stops the start', () => {
  const dir = tempDir('drydock-registry-authfail-');
  mkdirSync(path.join(dir, 'adir'));
  writeFileSync(path.join(dir, 'htpasswd'), `${htpasswdLine('u', 'p')}\n`);
  writeFileSync(path.join(dir, 'access-only.yml'), 'auth:\n  access:\n    - users: ["*"]\n      repositories: ["*"]\n      actions: ["*"]\n');
  writeFileSync(path.join(dir, 'empty-auth.yml'), 'auth:\n');
  // [what, args, env, stderr pattern]
  const cases: [string, string[], Record<string, string>, RegExp][] = [
    ['unknown kind', [], { REGISTRY_AUTH: 'silly' }, /auth "silly" is not supported \(drydock has: htpasswd, token\): refusing to start an open registry/],
    ['htpasswd without a path', [], { REGISTRY_AUTH: 'htpasswd', REGISTRY_AUTH_HTPASSWD_REALM: 'r' }, /auth\.htpasswd\.path is required \(REGISTRY_AUTH_HTPASSWD_PATH\)/],
    ['only a realm', [], { REGISTRY_AUTH_HTPASSWD_REALM: 'Registry Realm' }, /auth\.htpasswd\.path is required/],
    ['a missing htpasswd file', [], { REGISTRY_AUTH: 'htpasswd', REGISTRY_AUTH_HTPASSWD_PATH: path.join(dir, 'nope') }, /htpasswd file \S+nope not found/],
    ['an htpasswd path that is a directory', [], { REGISTRY_AUTH: 'htpasswd', REGISTRY_AUTH_HTPASSWD_PATH: path.join(dir, 'adir') }, /htpasswd file \S+adir cannot be read: it is a directory/],
    ['auth: with rules but no method', ['--config', path.join(dir, 'access-only.yml')], {}, /auth is set but names no method \(htpasswd or token\)/],
    ['an empty auth: section', ['--config', path.join(dir, 'empty-auth.yml')], {}, /auth is set but names no method/],
    ['a malformed boolean', [], { REGISTRY_STORAGE_DELETE_ENABLED: 'maybe' }, /REGISTRY_STORAGE_DELETE_ENABLED: "maybe" is not a boolean/],
  ];
  for (const [what, args, env, re] of cases) {
    test(what, async () => {
      const r = await runCli(['serve', '--root', path.join(dir, 'root'), '--addr', '127.0.0.1:0', ...args], { env, timeoutMs: 30_000 });
      assert.equal(r.code, 1, `${what}: ${r.stderr}`);
      assert.match(r.stderr, re);
      assert.doesNotMatch(r.stderr, /listening on/);
    });
  }
  test('flags override the environment', async () => {
    const s = await startServe(['--addr', '127.0.0.1:0', '--root', path.join(dir, 'root2'), '--no-access-log'], { REGISTRY_HTTP_ADDR: '127.0.0.1:1', REGISTRY_AUTH: 'htpasswd', REGISTRY_AUTH_HTPASSWD_PATH: path.join(dir, 'htpasswd') });
    try {
      assert.notEqual(new URL(s.url).port, '1');
      assert.equal((await http(`${s.url}/v2/`)).status, 401);
      assert.equal((await http(`${s.url}/v2/`, { headers: basic('u', 'p') })).status, 200);
    } finally { await s.stop(); }
  });
});
