// accessControl over real HTTP against `drydock serve` child processes: a table of
// (user, method, path) → status covering manifests, blobs, uploads, tags, referrers and deletes;
// _catalog filtered per caller; cross-repository mount falling back to an upload without pull on
// the source; token mode issuing only the scopes the policy grants; SIGHUP reloading the policy
// and the htpasswd file while a slow upload stays open; skopeo pushing as an allowed and a refused user.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { request } from 'node:http';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { requireTool, tempDir } from '../helpers/env.js';
import { busyboxImage } from '../helpers/images.js';
import { htpasswdLine } from '../helpers/docker-registry.js';
import { startServe, type ServeProcess } from './serve.js';
import { assertError, http, pushBlob, pushImage, type PushedImage } from './util.js';

const PASSWORDS: Record<string, string> = { alice: 'a-pw', bob: 'b-pw', carol: 'c-pw', dave: 'd-pw', olga: 'o-pw' };
const basic = (u: string, p = PASSWORDS[u]!) => ({ Authorization: `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}` });
const credsFor = (u: string): Record<string, string> => (u === 'anonymous' ? {} : basic(u));

const TEAM_POLICY = {
  groups: { devs: { users: ['alice', 'bob'] }, admins: { users: ['olga'] } },
  repositories: {
    '**': { defaultPolicy: ['pull'] },
    'team/**': { policies: [{ groups: ['devs'], actions: ['pull', 'push'] }, { users: ['carol'], actions: ['pull'] }] },
    'team/secret/*': { policies: [{ users: ['alice'], actions: ['pull', 'push'] }] },
    'public/**': { anonymousPolicy: ['pull'], defaultPolicy: ['pull'] },
  },
  adminPolicy: { groups: ['admins'], actions: ['pull', 'push', 'delete'] },
};

function writeHtpasswd(file: string, users: string[]): void {
  writeFileSync(file, users.map((u) => htpasswdLine(u, PASSWORDS[u]!)).join('\n') + '\n');
}

function writeConfig(file: string, root: string, htpasswd: string, accessControl: unknown, token = false): void {
  writeFileSync(file, YAML.stringify({
    version: '0.1',
    storage: { filesystem: { rootdirectory: root }, delete: { enabled: true } },
    http: { addr: '127.0.0.1:0' },
    auth: { htpasswd: { realm: 'team registry', path: htpasswd }, ...(token ? { token: { service: 'drydock-registry', issuer: 'drydock' } } : {}) },
    accessControl,
  }));
}

function run(cmd: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: 120_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

async function waitFor(what: string, cond: () => boolean, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

let dir: string;
let htpasswdFile: string;

before(() => {
  requireTool('htpasswd', 'apt-get install apache2-utils');
  dir = tempDir('drydock-registry-acl-');
  htpasswdFile = path.join(dir, 'htpasswd');
  writeHtpasswd(htpasswdFile, ['alice', 'bob', 'carol', 'dave', 'olga']);
});

describe('accessControl with htpasswd', () => {
  let srv: ServeProcess;
  let app: PushedImage;
  let secret: PushedImage;
  let old: PushedImage;
  let upload: string;
  before(async () => {
    const cfg = path.join(dir, 'basic.yml');
    writeConfig(cfg, path.join(dir, 'basic-data'), htpasswdFile, TEAM_POLICY);
    srv = await startServe(['--config', cfg, '--no-access-log']);
    const admin = basic('olga');
    app = await pushImage(srv.url, 'team/app', 'v1', { headers: admin });
    secret = await pushImage(srv.url, 'team/secret/x', 'v1', { headers: admin });
    old = await pushImage(srv.url, 'team/old', 'v1', { headers: admin });
    await pushImage(srv.url, 'public/base', 'v1', { headers: admin });
    await pushImage(srv.url, 'misc/tool', 'v1', { headers: admin });
    const r = await http(`${srv.url}/v2/team/app/blobs/uploads/`, { method: 'POST', headers: basic('alice') });
    assert.equal(r.status, 202);
    upload = r.headers.get('location')!;
  });
  after(async () => { await srv.stop(); });

  test('_catalog lists only what the caller may pull', async () => {
    const cat = async (u: string) => (await http(`${srv.url}/v2/_catalog`, { headers: credsFor(u) })).json().repositories as string[];
    assert.deepEqual(await cat('anonymous'), ['public/base']);
    assert.deepEqual(await cat('dave'), ['misc/tool', 'public/base']);
    assert.deepEqual(await cat('carol'), ['misc/tool', 'public/base', 'team/app', 'team/old']);
    assert.deepEqual(await cat('bob'), ['misc/tool', 'public/base', 'team/app', 'team/old']);
    assert.deepEqual(await cat('alice'), ['misc/tool', 'public/base', 'team/app', 'team/old', 'team/secret/x']);
    assert.deepEqual(await cat('olga'), ['misc/tool', 'public/base', 'team/app', 'team/old', 'team/secret/x']);
    assertError(await http(`${srv.url}/v2/_catalog`, { headers: basic('dave', 'wrong') }), 401, 'UNAUTHORIZED');
  });

  // user, method, path (with {app}: team/app's manifest digest, {layer}: its layer, {upload}: alice's open upload), status
  const table: [string, string, string, number][] = [
    ['anonymous', 'GET', '/v2/public/base/manifests/v1', 200],
    ['anonymous', 'GET', '/v2/public/base/tags/list', 200],
    ['anonymous', 'GET', '/v2/team/app/manifests/v1', 401],
    ['anonymous', 'HEAD', '/v2/team/app/blobs/{layer}', 401],
    ['anonymous', 'POST', '/v2/public/base/blobs/uploads/', 401],
    ['dave', 'GET', '/v2/misc/tool/manifests/v1', 200],
    ['dave', 'GET', '/v2/public/base/manifests/v1', 200],
    ['dave', 'GET', '/v2/team/app/manifests/v1', 403],
    ['dave', 'HEAD', '/v2/team/app/manifests/v1', 403],
    ['dave', 'GET', '/v2/team/app/blobs/{layer}', 403],
    ['dave', 'GET', '/v2/team/app/tags/list', 403],
    ['dave', 'GET', '/v2/team/app/referrers/{app}', 403],
    ['dave', 'POST', '/v2/misc/tool/blobs/uploads/', 403],
    ['carol', 'GET', '/v2/team/app/manifests/v1', 200],
    ['carol', 'GET', '/v2/team/app/blobs/{layer}', 200],
    ['carol', 'GET', '/v2/team/app/tags/list', 200],
    ['carol', 'GET', '/v2/team/app/referrers/{app}', 200],
    ['carol', 'POST', '/v2/team/app/blobs/uploads/', 403],
    ['carol', 'GET', '{upload}', 403],
    ['carol', 'PATCH', '{upload}', 403],
    ['carol', 'PUT', '/v2/team/app/manifests/carol', 403],
    ['carol', 'DELETE', '/v2/team/app/manifests/{app}', 403],
    ['carol', 'GET', '/v2/team/secret/x/manifests/v1', 403],
    ['bob', 'POST', '/v2/team/new/blobs/uploads/', 202],
    ['bob', 'PUT', '/v2/team/app/manifests/bob', 201],
    ['bob', 'DELETE', '/v2/team/app/manifests/{app}', 403],
    ['bob', 'DELETE', '/v2/team/app/blobs/{layer}', 403],
    ['bob', 'GET', '/v2/team/secret/x/manifests/v1', 403],
    ['bob', 'POST', '/v2/misc/tool/blobs/uploads/', 403],
    ['alice', 'GET', '/v2/team/secret/x/manifests/v1', 200],
    ['alice', 'POST', '/v2/team/secret/x/blobs/uploads/', 202],
    ['alice', 'GET', '{upload}', 204],
    ['alice', 'DELETE', '/v2/team/secret/x/manifests/v1', 403],
    ['olga', 'DELETE', '/v2/team/old/manifests/{old}', 202],
    ['olga', 'GET', '/v2/team/old/manifests/{old}', 404],
  ];
  for (const [user, method, p, status] of table) {
    test(`${user} ${method} ${p} → ${status}`, async () => {
      const url = p.replace('{app}', app.digest).replace('{layer}', app.layers[0]!).replace('{old}', old.digest)
        .replace('{upload}', upload);
      const put = method === 'PUT' ? { body: app.manifest, headers: { ...credsFor(user), 'Content-Type': 'application/vnd.oci.image.manifest.v1+json' } } : {};
      const patch = method === 'PATCH' ? { body: randomBytes(16), headers: { ...credsFor(user), 'Content-Type': 'application/octet-stream' } } : {};
      const r = await http(new URL(url, srv.url).toString(), { method, headers: credsFor(user), ...put, ...patch });
      assert.equal(r.status, status, `${user} ${method} ${url}: ${r.body.toString().slice(0, 300)}`);
      if (status === 401 && method !== 'HEAD') assertError(r, 401, 'UNAUTHORIZED');
      if (status === 403 && method !== 'HEAD') assertError(r, 403, 'DENIED');
    });
  }

  test('cross-repository mount needs pull on the source; without it, a normal upload starts', async () => {
    const layer = secret.layers[0]!;
    const bob = await http(`${srv.url}/v2/team/app/blobs/uploads/?mount=${layer}&from=team/secret/x`, { method: 'POST', headers: basic('bob') });
    assert.equal(bob.status, 202, 'bob may not pull team/secret/x: upload session instead of a mount');
    assert.match(bob.headers.get('location')!, /\/v2\/team\/app\/blobs\/uploads\//);
    assert.equal((await http(`${srv.url}/v2/team/app/blobs/${layer}`, { method: 'HEAD', headers: basic('bob') })).status, 404, 'the blob did not leak into team/app');
    const alice = await http(`${srv.url}/v2/team/app/blobs/uploads/?mount=${layer}&from=team/secret/x`, { method: 'POST', headers: basic('alice') });
    assert.equal(alice.status, 201);
    assert.equal((await http(`${srv.url}/v2/team/app/blobs/${layer}`, { method: 'HEAD', headers: basic('bob') })).status, 200);
  });
});

describe('accessControl with the built-in token issuer', () => {
  let srv: ServeProcess;
  before(async () => {
    const cfg = path.join(dir, 'token.yml');
    writeConfig(cfg, path.join(dir, 'token-data'), htpasswdFile, TEAM_POLICY, true);
    srv = await startServe(['--config', cfg, '--no-access-log']);
  });
  after(async () => { await srv.stop(); });

  async function token(user: string, scopes: string[]): Promise<{ token: string; access: { type: string; name: string; actions: string[] }[] }> {
    const q = new URLSearchParams({ service: 'drydock-registry' });
    for (const s of scopes) q.append('scope', s);
    const r = await http(`${srv.url}/token?${q}`, { headers: credsFor(user) });
    assert.equal(r.status, 200, r.body.toString());
    const t = r.json().token as string;
    return { token: t, access: JSON.parse(Buffer.from(t.split('.')[1]!, 'base64url').toString()).access };
  }

  test('tokens carry only the scopes the policy grants', async () => {
    const carol = await token('carol', ['repository:team/app:pull,push', 'repository:team/secret/x:pull', 'repository:misc/tool:*']);
    assert.deepEqual(carol.access, [
      { type: 'repository', name: 'team/app', actions: ['pull'] },
      { type: 'repository', name: 'misc/tool', actions: ['pull'] },
    ]);
    const up = await http(`${srv.url}/v2/team/app/blobs/uploads/`, { method: 'POST', headers: { Authorization: `Bearer ${carol.token}` } });
    assert.equal(up.status, 401);
    assert.match(up.headers.get('www-authenticate')!, /error="insufficient_scope"/);
    const anon = await token('anonymous', ['repository:public/base:pull,push', 'repository:team/app:pull']);
    assert.deepEqual(anon.access, [{ type: 'repository', name: 'public/base', actions: ['pull'] }]);
    const olga = await token('olga', ['repository:team/app:*']);
    assert.deepEqual(olga.access, [{ type: 'repository', name: 'team/app', actions: ['pull', 'push', 'delete'] }]);
    const bob = await token('bob', ['repository:team/app:pull,push']);
    const pushed = await pushBlob(srv.url, 'team/app', randomBytes(64), { Authorization: `Bearer ${bob.token}` });
    assert.match(pushed, /^sha256:/);
  });

  test('_catalog with a token lists what the policy lets the user pull', async () => {
    const olga = await token('olga', ['repository:team/secret/x:push,pull', 'repository:team/app:push,pull']);
    await pushImage(srv.url, 'team/secret/x', 'v1', { headers: { Authorization: `Bearer ${olga.token}` } });
    await pushImage(srv.url, 'team/app', 'v1', { headers: { Authorization: `Bearer ${olga.token}` } });
    const dave = await token('dave', ['registry:catalog:*']);
    const r = await http(`${srv.url}/v2/_catalog`, { headers: { Authorization: `Bearer ${dave.token}` } });
    assert.deepEqual(r.json().repositories, []);
    const alice = await token('alice', ['registry:catalog:*']);
    const a = await http(`${srv.url}/v2/_catalog`, { headers: { Authorization: `Bearer ${alice.token}` } });
    assert.deepEqual(a.json().repositories, ['team/app', 'team/secret/x']);
  });
});

/** A PATCH whose body arrives in pieces over `ms`; resolves with the response status once the server answers. */
function slowPatch(base: string, location: string, headers: Record<string, string>, data: Buffer, pieces: number, ms: number): { done: Promise<number>; sent: () => number } {
  let sent = 0;
  const done = new Promise<number>((resolve, reject) => {
    const u = new URL(location, base);
    const req = request({ host: u.hostname, port: u.port, path: u.pathname + u.search, method: 'PATCH', headers: { ...headers, 'Content-Type': 'application/octet-stream', 'Content-Length': String(data.length) } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode!));
    });
    req.on('error', reject);
    const size = Math.ceil(data.length / pieces);
    const timer = setInterval(() => {
      const chunk = data.subarray(sent, sent + size);
      sent += chunk.length;
      if (sent >= data.length) { clearInterval(timer); req.end(chunk); } else req.write(chunk);
    }, ms / pieces);
  });
  return { done, sent: () => sent };
}

describe('SIGHUP reloads accessControl and the htpasswd file', () => {
  let srv: ServeProcess;
  let cfg: string;
  let file: string;
  const data = path.join(dir, 'reload-data');
  before(async () => {
    cfg = path.join(dir, 'reload.yml');
    file = path.join(dir, 'reload-htpasswd');
    writeHtpasswd(file, ['alice', 'bob', 'carol', 'dave', 'olga']);
    writeConfig(cfg, data, file, TEAM_POLICY);
    srv = await startServe(['--config', cfg, '--no-access-log']);
  });
  after(async () => { await srv.stop(); });

  test('a slow upload survives the reload; a removed user is refused and new grants apply after it', async () => {
    const reloads = () => (srv.stderr().match(/reloaded access control/g) ?? []).length;
    assert.equal((await http(`${srv.url}/v2/misc/tool/tags/list`, { headers: basic('dave') })).status, 404, 'dave may pull (no such repo yet)');
    assert.equal((await http(`${srv.url}/v2/team/app/blobs/uploads/`, { method: 'POST', headers: basic('carol') })).status, 403);
    const post = await http(`${srv.url}/v2/team/app/blobs/uploads/`, { method: 'POST', headers: basic('bob') });
    assert.equal(post.status, 202);
    const blob = randomBytes(4 << 20);
    const patch = slowPatch(srv.url, post.headers.get('location')!, basic('bob'), blob, 20, 3000);
    await waitFor('half the upload', () => patch.sent() > blob.length / 4);

    writeHtpasswd(file, ['alice', 'bob', 'carol', 'olga']);
    const grown = structuredClone(TEAM_POLICY);
    grown.repositories['team/**'].policies[1]!.actions = ['pull', 'push'];
    writeConfig(cfg, data, file, grown);
    srv.process.kill('SIGHUP');
    await waitFor('the reload', () => reloads() === 1);
    assert.ok(patch.sent() < blob.length, 'the reload happened while the body was still arriving');

    assertError(await http(`${srv.url}/v2/misc/tool/tags/list`, { headers: basic('dave') }), 401, 'UNAUTHORIZED');
    assert.equal((await http(`${srv.url}/v2/team/app/blobs/uploads/`, { method: 'POST', headers: basic('carol') })).status, 202, 'carol got push');

    assert.equal(await patch.done, 202, 'the in-flight PATCH completed');
    const digest = `sha256:${createHash('sha256').update(blob).digest('hex')}`;
    const loc = new URL(post.headers.get('location')!, srv.url);
    const status = await http(loc.toString(), { headers: basic('bob') });
    assert.equal(status.headers.get('range'), `0-${blob.length - 1}`);
    loc.searchParams.set('digest', digest);
    assert.equal((await http(loc.toString(), { method: 'PUT', headers: basic('bob') })).status, 201);
    const back = await http(`${srv.url}/v2/team/app/blobs/${digest}`, { headers: basic('bob') });
    assert.equal(back.status, 200);
    assert.ok(back.body.equals(blob));
  });

  test('a config that does not load on reload keeps the old one and says why', async () => {
    const before = srv.stderr().length;
    const broken = structuredClone(TEAM_POLICY) as { repositories: Record<string, { policies?: { actions: string[] }[] }> };
    broken.repositories['team/**']!.policies![0]!.actions = ['pull', 'shove'];
    writeConfig(cfg, data, file, broken);
    srv.process.kill('SIGHUP');
    await waitFor('the reload error', () => /error: reload failed/.test(srv.stderr().slice(before)));
    assert.match(srv.stderr().slice(before), /accessControl\.repositories\["team\/\*\*"\]\.policies\[0\]\.actions: unknown action "shove"/);
    // Still the policy of the last good reload: carol pushes, dave is gone.
    assert.equal((await http(`${srv.url}/v2/team/app/blobs/uploads/`, { method: 'POST', headers: basic('carol') })).status, 202);
    assert.equal((await http(`${srv.url}/v2/team/app/blobs/uploads/`, { method: 'POST', headers: basic('bob') })).status, 202);
    writeFileSync(file, 'not a valid line\n');
    writeConfig(cfg, data, file, TEAM_POLICY);
    srv.process.kill('SIGHUP');
    await waitFor('the second reload error', () => (srv.stderr().slice(before).match(/error: reload failed/g) ?? []).length === 2);
    assert.match(srv.stderr().slice(before), /expected "user:hash"/);
    assert.equal((await http(`${srv.url}/v2/team/app/blobs/uploads/`, { method: 'POST', headers: basic('carol') })).status, 202, 'old policy and users kept');
    assert.equal(srv.process.exitCode, null, 'still serving');
  });
});

describe('SIGHUP with --workers', () => {
  test('the primary passes it to every worker and keeps running', async () => {
    const cfg = path.join(dir, 'workers.yml');
    const data = path.join(dir, 'workers-data');
    writeConfig(cfg, data, htpasswdFile, TEAM_POLICY);
    const srv = await startServe(['--config', cfg, '--no-access-log', '--workers', '2']);
    try {
      const carolPosts = async () => Promise.all(Array.from({ length: 8 }, async () => (await http(`${srv.url}/v2/team/app/blobs/uploads/`, { method: 'POST', headers: basic('carol') })).status));
      assert.deepEqual(new Set(await carolPosts()), new Set([403]));
      const grown = structuredClone(TEAM_POLICY);
      grown.repositories['team/**'].policies[1]!.actions = ['pull', 'push'];
      writeConfig(cfg, data, htpasswdFile, grown);
      srv.process.kill('SIGHUP');
      // Both workers answer on the shared port; new connections reach either.
      const deadline = Date.now() + 15_000;
      let statuses = await carolPosts();
      while (statuses.some((st) => st !== 202) && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 200));
        statuses = await carolPosts();
      }
      assert.deepEqual(new Set(statuses), new Set([202]));
      assert.equal(srv.process.exitCode, null, 'the primary survived SIGHUP');
    } finally {
      await srv.stop();
    }
  });
});

describe('skopeo as the client', () => {
  let srv: ServeProcess;
  let source: string;
  before(async () => {
    requireTool('skopeo');
    const store = tempDir('drydock-registry-acl-store-');
    await busyboxImage(store);
    source = `oci:${store}:latest`;
    const cfg = path.join(dir, 'skopeo.yml');
    writeConfig(cfg, path.join(dir, 'skopeo-data'), htpasswdFile, TEAM_POLICY);
    srv = await startServe(['--config', cfg, '--no-access-log']);
  });
  after(async () => { await srv.stop(); });

  test('a push bob may make succeeds; carol is refused; carol can pull it', async () => {
    const host = new URL(srv.url).host;
    const ok = await run('skopeo', ['copy', '--dest-tls-verify=false', '--dest-creds', `bob:${PASSWORDS.bob}`, source, `docker://${host}/team/busybox:1`]);
    assert.equal(ok.code, 0, ok.stderr);
    const refused = await run('skopeo', ['copy', '--dest-tls-verify=false', '--dest-creds', `carol:${PASSWORDS.carol}`, source, `docker://${host}/team/busybox:2`]);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /denied|unauthorized/i);
    const pulled = await run('skopeo', ['inspect', '--tls-verify=false', '--creds', `carol:${PASSWORDS.carol}`, `docker://${host}/team/busybox:1`]);
    assert.equal(pulled.code, 0, pulled.stderr);
    const hidden = await run('skopeo', ['inspect', '--tls-verify=false', '--creds', `dave:${PASSWORDS.dave}`, `docker://${host}/team/busybox:1`]);
    assert.notEqual(hidden.code, 0);
    assert.match(hidden.stderr, /denied|unauthorized/i);
  });
});
