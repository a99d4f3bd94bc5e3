// Credentials: where they are read from (--authfile, REGISTRY_AUTH_FILE, DOCKER_CONFIG, ~/.docker),
// how keys are matched, atomic writes that keep unknown keys, docker-credential-* helpers (a real
// executable speaking the helper protocol), and that skopeo and podman accept what `login` wrote.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { ContentStore } from '../../src/store/index.js';
import * as client from '../../src/client/index.js';
import { requireTool, runCli, tempDir } from '../helpers/env.js';
import { startDistribution, type DistributionRegistry } from '../helpers/docker-registry.js';
import { podman } from '../helpers/podman.js';
import { buildImage, storeImage, type TestImage } from './fixtures.js';

describe('auth config files', () => {
  const pathCases: { name: string; opts: client.AuthConfigOptions; want: string }[] = [
    { name: '--authfile wins', opts: { authFile: '/x/a.json', env: { REGISTRY_AUTH_FILE: '/y/b.json', DOCKER_CONFIG: '/z', HOME: '/h' } }, want: '/x/a.json' },
    { name: 'REGISTRY_AUTH_FILE (podman)', opts: { env: { REGISTRY_AUTH_FILE: '/y/b.json', DOCKER_CONFIG: '/z', HOME: '/h' } }, want: '/y/b.json' },
    { name: 'DOCKER_CONFIG dir', opts: { env: { DOCKER_CONFIG: '/z', HOME: '/h' } }, want: '/z/config.json' },
    { name: '~/.docker/config.json', opts: { env: { HOME: '/h' } }, want: '/h/.docker/config.json' },
  ];
  for (const c of pathCases) it(`path: ${c.name}`, () => assert.equal(client.authFilePath(c.opts), c.want));

  const keyCases: [string, string][] = [
    ['https://index.docker.io/v1/', 'docker.io'],
    ['index.docker.io', 'docker.io'],
    ['registry-1.docker.io', 'docker.io'],
    ['http://127.0.0.1:5000', '127.0.0.1:5000'],
    ['https://Registry.Example.com/v2/', 'registry.example.com'],
    ['quay.io/team/app', 'quay.io/team/app'],
  ];
  for (const [key, want] of keyCases) it(`key ${key} -> ${want}`, () => assert.equal(client.normalizeAuthKey(key), want));

  it('matches Docker Hub, URL-style and repository-scoped (podman) keys', async () => {
    const file = path.join(tempDir(), 'auth.json');
    const b64 = (s: string) => Buffer.from(s).toString('base64');
    writeFileSync(file, JSON.stringify({ auths: {
      'https://index.docker.io/v1/': { auth: b64('hub:1') },
      'http://127.0.0.1:5000': { auth: b64('local:2') },
      'quay.io': { auth: b64('quay:3') },
      'quay.io/team': { auth: b64('team:4') },
    } }));
    const get = (r: string, repo?: string) => client.getCredentials(r, repo, { authFile: file }).then((c) => c && `${c.username}:${c.password}`);
    assert.equal(await get('docker.io'), 'hub:1');
    assert.equal(await get('127.0.0.1:5000'), 'local:2');
    assert.equal(await get('quay.io', 'other/app'), 'quay:3');
    assert.equal(await get('quay.io', 'team/app'), 'team:4');
    assert.equal(await get('ghcr.io'), undefined);
  });

  it('writes atomically with mode 0600 and keeps keys it does not know', async () => {
    const dir = tempDir();
    const file = path.join(dir, 'config.json');
    writeFileSync(file, JSON.stringify({ psFormat: 'table {{.ID}}', HttpHeaders: { 'X-Meta': '1' }, auths: { 'other.io': { auth: 'eDp5', email: 'a@b' } } }));
    await client.saveCredentials('127.0.0.1:5000', { username: 'u', password: 'p:w' }, { authFile: file });
    const saved = JSON.parse(readFileSync(file, 'utf8'));
    assert.equal(saved.psFormat, 'table {{.ID}}');
    assert.deepEqual(saved.HttpHeaders, { 'X-Meta': '1' });
    assert.deepEqual(saved.auths['other.io'], { auth: 'eDp5', email: 'a@b' });
    assert.equal(Buffer.from(saved.auths['127.0.0.1:5000'].auth, 'base64').toString(), 'u:p:w');
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.deepEqual(readdirSync(dir), ['config.json'], 'no temp files left');
    assert.equal(await client.removeCredentials('127.0.0.1:5000', { authFile: file }), true);
    assert.equal(JSON.parse(readFileSync(file, 'utf8')).auths['other.io'].email, 'a@b');
  });

  it('a corrupt config.json is a clear error, not a crash', async () => {
    const file = path.join(tempDir(), 'config.json');
    writeFileSync(file, '{"auths": ');
    await assert.rejects(client.getCredentials('x.io', undefined, { authFile: file }), /config\.json is not valid JSON/);
  });
});

describe('login, helpers and peers against distribution 2.8', () => {
  let reg: DistributionRegistry;
  let root: string;
  let img: TestImage;
  let binDir: string;
  let helperData: string;

  before(async () => {
    reg = await startDistribution({ users: { carol: 'pa55' } });
    root = tempDir();
    const store = await ContentStore.open(root);
    img = await buildImage([100_000]);
    await storeImage(store, img, `${reg.host}/team/app:1`);
    // A real docker-credential-* executable speaking the helper protocol, backed by a JSON file.
    binDir = tempDir();
    helperData = path.join(tempDir(), 'helper.json');
    const helper = path.join(binDir, 'docker-credential-drytest');
    writeFileSync(helper, `#!${process.execPath}
const fs = require('fs');
const file = ${JSON.stringify(helperData)};
const db = fs.existsSync(file) ? JSON.parse(fs.readFileSync(file, 'utf8')) : {};
let input = ''; process.stdin.on('data', (d) => input += d); process.stdin.on('end', () => {
  const action = process.argv[2];
  if (action === 'store') { const c = JSON.parse(input); db[c.ServerURL] = c; fs.writeFileSync(file, JSON.stringify(db)); }
  else if (action === 'get') { const c = db[input.trim()]; if (!c) { process.stdout.write('credentials not found in native keychain'); process.exit(1); } process.stdout.write(JSON.stringify(c)); }
  else if (action === 'erase') { if (!db[input.trim()]) { process.stdout.write('credentials not found in native keychain'); process.exit(1); } delete db[input.trim()]; fs.writeFileSync(file, JSON.stringify(db)); }
  else process.exit(2);
});
`);
    chmodSync(helper, 0o755);
  });
  after(async () => { await reg.stop(); });

  it('login via DOCKER_CONFIG writes config.json there; skopeo and podman read it with --authfile', async () => {
    const dockerConfig = tempDir();
    const r = await runCli(['login', '-u', 'carol', '--password-stdin', reg.host], { root, input: 'pa55', env: { DOCKER_CONFIG: dockerConfig } });
    assert.equal(r.code, 0, r.stderr);
    const file = path.join(dockerConfig, 'config.json');
    assert.ok(JSON.parse(readFileSync(file, 'utf8')).auths[reg.host].auth);
    const push = await runCli(['push', '-q', `${reg.host}/team/app:1`], { root, env: { DOCKER_CONFIG: dockerConfig } });
    assert.equal(push.code, 0, push.stderr);

    requireTool('skopeo');
    const inspect = JSON.parse(execFileSync('skopeo', ['inspect', '--tls-verify=false', '--authfile', file, `docker://${reg.host}/team/app:1`], { encoding: 'utf8' }));
    assert.equal(inspect.Digest, img.descriptor.digest);
    assert.throws(() => execFileSync('skopeo', ['inspect', '--tls-verify=false', '--authfile', path.join(tempDir(), 'none.json'), `docker://${reg.host}/team/app:1`], { stdio: 'pipe' }),
      /unauthorized|authentication required/i, 'the registry really requires the credentials');

    const pm = await podman('drydock-client-podman-');
    try {
      const { stdout } = await pm.run(['login', '--get-login', '--authfile', file, reg.host]);
      assert.equal(stdout.trim(), 'carol');
      await pm.run(['pull', '-q', '--tls-verify=false', '--authfile', file, `${reg.host}/team/app:1`]);
      const { stdout: digest } = await pm.run(['image', 'inspect', '--format', '{{.Digest}}', `${reg.host}/team/app:1`]);
      assert.equal(digest.trim(), img.descriptor.digest);
    } finally { await pm.cleanup(); }
  });

  it('REGISTRY_AUTH_FILE is used for login and pull', async () => {
    const file = path.join(tempDir(), 'containers', 'auth.json');
    const env = { REGISTRY_AUTH_FILE: file };
    const r = await runCli(['login', '-u', 'carol', '--password-stdin', reg.host], { root, input: 'pa55\n', env });
    assert.equal(r.code, 0, r.stderr);
    const pull = await runCli(['pull', '-q', `${reg.host}/team/app:1`], { root: tempDir(), env });
    assert.equal(pull.code, 0, pull.stderr);
    assert.equal(pull.stdout.trim(), `${reg.host}/team/app:1`);
  });

  it('credsStore: login stores through the helper, pull reads from it, logout erases', async () => {
    const dir = tempDir();
    const file = path.join(dir, 'config.json');
    writeFileSync(file, JSON.stringify({ credsStore: 'drytest', currentContext: 'kept' }));
    const env = { DOCKER_CONFIG: dir, PATH: `${binDir}:${process.env.PATH}` };
    const r = await runCli(['login', '-u', 'carol', '--password-stdin', reg.host], { root, input: 'pa55', env });
    assert.equal(r.code, 0, r.stderr);
    const cfg = JSON.parse(readFileSync(file, 'utf8'));
    assert.deepEqual(cfg.auths[reg.host], {}, 'no secret in config.json');
    assert.equal(cfg.currentContext, 'kept');
    assert.deepEqual(JSON.parse(readFileSync(helperData, 'utf8'))[reg.host], { ServerURL: reg.host, Username: 'carol', Secret: 'pa55' });

    const pull = await runCli(['pull', '-q', `${reg.host}/team/app:1`], { root: tempDir(), env });
    assert.equal(pull.code, 0, pull.stderr);

    const out = await runCli(['logout', reg.host], { root, env });
    assert.equal(out.code, 0, out.stderr);
    assert.equal(JSON.parse(readFileSync(helperData, 'utf8'))[reg.host], undefined);
  });

  it('credHelpers picks a helper per registry; a missing helper is a clear error', async () => {
    const dir = tempDir();
    writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ credHelpers: { [reg.host]: 'nosuchhelper' } }));
    const r = await runCli(['pull', `${reg.host}/team/app:1`], { root: tempDir(), env: { DOCKER_CONFIG: dir } });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /docker-credential-nosuchhelper could not run/);

    mkdirSync(path.join(dir, 'x'), { recursive: true });
    writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ credHelpers: { [reg.host]: 'drytest' } }));
    writeFileSync(helperData, JSON.stringify({ [reg.host]: { ServerURL: reg.host, Username: 'carol', Secret: 'pa55' } }));
    const ok = await runCli(['pull', '-q', `${reg.host}/team/app:1`], { root: tempDir(), env: { DOCKER_CONFIG: dir, PATH: `${binDir}:${process.env.PATH}` } });
    assert.equal(ok.code, 0, ok.stderr);
  });
});
