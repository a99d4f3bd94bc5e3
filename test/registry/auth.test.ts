// Authentication and authorization over HTTP: htpasswd (bcrypt, as `htpasswd -Bbn` writes it),
// per-user rules, anonymous read, the built-in token endpoint, an external issuer with a pinned
// key set, forged tokens, and equal timing for unknown users and wrong passwords.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { appendFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { SignJWT, exportJWK } from 'jose';
import { requireTool, tempDir } from '../helpers/env.js';
import { htpasswdLine } from '../helpers/docker-registry.js';
import { startRegistry, type StartedRegistry } from '../../src/registry/index.js';
import { parseHtpasswd, htpasswdLine as ourHtpasswdLine } from '../../src/registry/auth/htpasswd.js';
import { parseScopes } from '../../src/registry/auth/access.js';
import { assertError, http, pushImage } from './util.js';

const basic = (u: string, p: string) => ({ Authorization: `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}` });
const bearer = (t: string) => ({ Authorization: `Bearer ${t}` });

let dir: string;
let htpasswdFile: string;

before(() => {
  requireTool('htpasswd', 'apt-get install apache2-utils');
  dir = tempDir('drydock-registry-auth-');
  htpasswdFile = path.join(dir, 'htpasswd');
  writeFileSync(htpasswdFile, [htpasswdLine('alice', 's3cret'), htpasswdLine('bob', 'hunter2'), htpasswdLine('carol', 'pw')].join('\n') + '\n');
});

describe('htpasswd', () => {
  let reg: StartedRegistry;
  before(async () => {
    // The timing test below fails 22 logins on purpose: no rate limit here (auth-limits.test.ts tests it).
    reg = await startRegistry({ root: tempDir('drydock-registry-auth-basic-'), htpasswd: htpasswdFile, realm: 'test realm', anonymousRead: true, config: { auth: { ratelimit: { failures: 0 } } }, access: [
      { users: ['alice'], repositories: ['*'], actions: ['*'] },
      { users: ['bob'], repositories: ['team/*'], actions: ['pull', 'push'] },
      { users: ['carol'], repositories: ['team/app'], actions: ['pull'] },
    ] });
    await pushImage(reg.url, 'team/app', 'v1', { headers: basic('alice', 's3cret') });
    await pushImage(reg.url, 'secret/app', 'v1', { headers: basic('alice', 's3cret') });
  });
  after(async () => { await reg.close(); });

  test('/v2/ challenges without credentials; accepts right ones; rejects wrong ones', async () => {
    const r = await http(`${reg.url}/v2/`);
    assertError(r, 401, 'UNAUTHORIZED');
    assert.equal(r.headers.get('www-authenticate'), 'Basic realm="test realm"');
    assert.equal((await http(`${reg.url}/v2/`, { headers: basic('alice', 's3cret') })).status, 200);
    assertError(await http(`${reg.url}/v2/`, { headers: basic('alice', 'nope') }), 401, 'UNAUTHORIZED');
    assertError(await http(`${reg.url}/v2/`, { headers: basic('mallory', 's3cret') }), 401, 'UNAUTHORIZED');
    assertError(await http(`${reg.url}/v2/`, { headers: { Authorization: 'Basic !!!notbase64' } }), 401, 'UNAUTHORIZED');
  });

  const rules: [string, string, string, string, number, string | undefined][] = [
    // user, method, path, what, status, code
    ['anonymous', 'GET', '/v2/team/app/manifests/v1', 'anonymous read', 200, undefined],
    ['anonymous', 'POST', '/v2/team/app/blobs/uploads/', 'anonymous push', 401, 'UNAUTHORIZED'],
    ['bob', 'POST', '/v2/team/new/blobs/uploads/', 'bob pushes under team/', 202, undefined],
    ['bob', 'POST', '/v2/secret/app/blobs/uploads/', 'bob pushes outside team/', 403, 'DENIED'],
    ['bob', 'DELETE', '/v2/team/app/manifests/v1', 'bob deletes', 403, 'DENIED'],
    ['carol', 'GET', '/v2/team/app/tags/list', 'carol reads team/app', 200, undefined],
    ['carol', 'POST', '/v2/team/app/blobs/uploads/', 'carol pushes', 403, 'DENIED'],
    ['alice', 'GET', '/v2/secret/app/tags/list', 'alice reads anything', 200, undefined],
  ];
  const creds: Record<string, Record<string, string>> = { anonymous: {}, alice: basic('alice', 's3cret'), bob: basic('bob', 'hunter2'), carol: basic('carol', 'pw') };
  for (const [user, method, p, what, status, code] of rules) {
    test(`${what}: ${status}`, async () => {
      const r = await http(`${reg.url}${p}`, { method, headers: creds[user] });
      if (code) assertError(r, status, code);
      else assert.equal(r.status, status, r.body.toString());
    });
  }

  test('_catalog needs a user and lists only repositories the user can pull', async () => {
    assertError(await http(`${reg.url}/v2/_catalog`), 401, 'UNAUTHORIZED');
    assert.deepEqual((await http(`${reg.url}/v2/_catalog`, { headers: creds.carol })).json().repositories, ['team/app']);
    assert.deepEqual((await http(`${reg.url}/v2/_catalog`, { headers: creds.alice })).json().repositories, ['secret/app', 'team/app']);
  });

  test('cross-repository mount needs pull on the source; otherwise it falls back to an upload', async () => {
    const img = await pushImage(reg.url, 'secret/other', 'v1', { headers: creds.alice });
    const r = await http(`${reg.url}/v2/team/bobs/blobs/uploads/?mount=${img.layers[0]}&from=secret/other`, { method: 'POST', headers: creds.bob });
    assert.equal(r.status, 202, 'bob cannot read secret/other, so no mount');
    const a = await http(`${reg.url}/v2/team/alices/blobs/uploads/?mount=${img.layers[0]}&from=secret/other`, { method: 'POST', headers: creds.alice });
    assert.equal(a.status, 201);
  });

  test('users added to the file while serving can log in', async () => {
    assertError(await http(`${reg.url}/v2/`, { headers: basic('dave', 'new') }), 401, 'UNAUTHORIZED');
    appendFileSync(htpasswdFile, `${htpasswdLine('dave', 'new')}\n`);
    await new Promise((r) => setTimeout(r, 2200));
    assert.equal((await http(`${reg.url}/v2/`, { headers: basic('dave', 'new') })).status, 200);
  });

  test('unknown users and wrong passwords take the same time', async () => {
    // Interleaved samples, so load from other processes hits both series alike.
    const wrongMs: number[] = [];
    const unknownMs: number[] = [];
    const once = async (u: string, p: string) => {
      const t = process.hrtime.bigint();
      const r = await http(`${reg.url}/v2/`, { headers: basic(u, p) });
      assert.equal(r.status, 401);
      return Number(process.hrtime.bigint() - t) / 1e6;
    };
    for (let i = 0; i < 11; i++) {
      wrongMs.push(await once('alice', `wrong${i}`));
      unknownMs.push(await once('nobody', `wrong${i}`));
    }
    const median = (a: number[]) => a.sort((x, y) => x - y)[Math.floor(a.length / 2)]!;
    const wrong = median(wrongMs);
    const unknown = median(unknownMs);
    const ratio = unknown / wrong;
    assert.ok(ratio > 0.5 && ratio < 2, `unknown user ${unknown.toFixed(1)} ms vs wrong password ${wrong.toFixed(1)} ms`);
  });
});

describe('built-in token endpoint', () => {
  let reg: StartedRegistry;
  const token = async (scope: string, headers: Record<string, string> = {}) => {
    const r = await http(`${reg.url}/token?service=drydock-registry&scope=${encodeURIComponent(scope)}`, { headers });
    return { status: r.status, token: r.status === 200 ? r.json().token as string : '' };
  };
  before(async () => {
    reg = await startRegistry({ root: tempDir('drydock-registry-auth-token-'), htpasswd: htpasswdFile, token: true, access: [
      { users: ['alice'], repositories: ['*'], actions: ['*'] },
      { users: ['bob'], repositories: ['pub/*'], actions: ['pull'] },
    ] });
  });
  after(async () => { await reg.close(); });

  test('challenge, token, access', async () => {
    const ch = await http(`${reg.url}/v2/pub/x/blobs/uploads/`, { method: 'POST' });
    assertError(ch, 401, 'UNAUTHORIZED');
    assert.equal(ch.headers.get('www-authenticate'), `Bearer realm="${reg.url}/token",service="drydock-registry",scope="repository:pub/x:pull,push"`);
    const t = await token('repository:pub/x:pull,push', basic('alice', 's3cret'));
    assert.equal(t.status, 200);
    assert.equal((await http(`${reg.url}/v2/pub/x/blobs/uploads/`, { method: 'POST', headers: bearer(t.token) })).status, 202);
    assert.equal((await http(`${reg.url}/v2/`, { headers: bearer(t.token) })).status, 200);
  });

  test('tokens carry only the granted actions', async () => {
    const t = await token('repository:pub/x:pull,push', basic('bob', 'hunter2'));
    assert.equal(t.status, 200);
    const r = await http(`${reg.url}/v2/pub/x/blobs/uploads/`, { method: 'POST', headers: bearer(t.token) });
    assert.equal(r.status, 401);
    assert.match(r.headers.get('www-authenticate')!, /error="insufficient_scope"/);
    assert.equal((await http(`${reg.url}/v2/pub/x/tags/list`, { headers: bearer(t.token) })).status, 200, 'pull is granted');
    const other = await http(`${reg.url}/v2/other/tags/list`, { headers: bearer(t.token) });
    assert.equal(other.status, 401);
  });

  test('OAuth2 password grant (POST /token, as docker login tries first)', async () => {
    const post = (form: Record<string, string>) => http(`${reg.url}/token`, { method: 'POST', body: new URLSearchParams(form).toString(), headers: { 'Content-Type': 'application/x-www-form-urlencoded' } });
    const ok = await post({ grant_type: 'password', username: 'alice', password: 's3cret', service: 'drydock-registry', scope: 'repository:pub/y:pull,push', client_id: 'docker' });
    assert.equal(ok.status, 200);
    assert.equal((await http(`${reg.url}/v2/pub/y/blobs/uploads/`, { method: 'POST', headers: bearer(ok.json().access_token) })).status, 202);
    assert.equal((await post({ grant_type: 'password', username: 'alice', password: 'nope', service: 'drydock-registry' })).status, 401);
    assert.equal((await post({ grant_type: 'password', username: 'ghost', password: 'nope', service: 'drydock-registry' })).status, 401);
    assert.equal((await post({ grant_type: 'refresh_token', refresh_token: 'x', service: 'drydock-registry' })).status, 400);
  });

  test('wrong credentials at the token endpoint are 401', async () => {
    assert.equal((await token('repository:pub/x:pull', basic('alice', 'bad'))).status, 401);
    assert.equal((await token('repository:pub/x:pull', basic('ghost', 'bad'))).status, 401);
  });

  test('forged tokens are rejected: other key with embedded jwk, alg none, garbage', async () => {
    const attacker = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const jwk = await exportJWK(attacker.publicKey);
    const claims = { access: [{ type: 'repository', name: 'pub/x', actions: ['pull', 'push'] }] };
    const forged = await new SignJWT(claims).setProtectedHeader({ alg: 'ES256', jwk })
      .setIssuer('drydock').setAudience('drydock-registry').setIssuedAt().setExpirationTime('5m').sign(attacker.privateKey);
    const jku = await new SignJWT(claims).setProtectedHeader({ alg: 'ES256', jku: 'http://127.0.0.1:1/jwks.json', kid: 'x' })
      .setIssuer('drydock').setAudience('drydock-registry').setIssuedAt().setExpirationTime('5m').sign(attacker.privateKey);
    const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const none = `${b64({ alg: 'none' })}.${b64({ ...claims, iss: 'drydock', aud: 'drydock-registry', exp: Math.floor(Date.now() / 1000) + 300 })}.`;
    for (const t of [forged, jku, none, 'garbage']) {
      const r = await http(`${reg.url}/v2/pub/x/blobs/uploads/`, { method: 'POST', headers: bearer(t) });
      assert.equal(r.status, 401);
      assert.match(r.headers.get('www-authenticate')!, /error="invalid_token"/);
    }
  });
});

describe('external token issuer with a pinned certificate bundle', () => {
  let reg: StartedRegistry;
  let key: string;
  before(async () => {
    requireTool('openssl');
    const d = tempDir('drydock-registry-auth-ext-');
    key = path.join(d, 'issuer.key');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1', '-subj', '/CN=issuer', '-keyout', key, '-out', path.join(d, 'issuer.crt')], { stdio: 'ignore' });
    reg = await startRegistry({ root: tempDir('drydock-registry-auth-ext-root-'), token: { realm: 'https://auth.example.test/token', service: 'registry.example.test', issuer: 'auth.example.test', rootcertbundle: path.join(d, 'issuer.crt') } });
  });
  after(async () => { await reg.close(); });

  const sign = async (claims: Record<string, unknown>, iss = 'auth.example.test', aud = 'registry.example.test', exp = '5m') => {
    const { createPrivateKey } = await import('node:crypto');
    const { readFileSync } = await import('node:fs');
    return new SignJWT(claims).setProtectedHeader({ alg: 'ES256' }).setIssuer(iss).setAudience(aud).setIssuedAt().setExpirationTime(exp)
      .sign(createPrivateKey(readFileSync(key)));
  };

  test('tokens signed by the pinned issuer work; wrong issuer, audience or expiry do not', async () => {
    const ch = await http(`${reg.url}/v2/`);
    assert.equal(ch.headers.get('www-authenticate'), 'Bearer realm="https://auth.example.test/token",service="registry.example.test"');
    const good = await sign({ access: [{ type: 'repository', name: 'ext/app', actions: ['pull', 'push'] }] });
    assert.equal((await http(`${reg.url}/v2/ext/app/blobs/uploads/`, { method: 'POST', headers: bearer(good) })).status, 202);
    for (const bad of [
      await sign({ access: [{ type: 'repository', name: 'ext/app', actions: ['pull', 'push'] }] }, 'someone-else'),
      await sign({ access: [{ type: 'repository', name: 'ext/app', actions: ['pull', 'push'] }] }, undefined, 'other-service'),
      await sign({ access: [{ type: 'repository', name: 'ext/app', actions: ['pull', 'push'] }], exp: Math.floor(Date.now() / 1000) - 3600 }, undefined, undefined, '-1h'),
    ]) {
      assert.equal((await http(`${reg.url}/v2/ext/app/blobs/uploads/`, { method: 'POST', headers: bearer(bad) })).status, 401);
    }
    assert.equal((await http(`${reg.url}/token`)).status, 404, 'no built-in endpoint with an external issuer');
  });
});

describe('units', () => {
  test('parseHtpasswd rejects non-bcrypt hashes', () => {
    assert.throws(() => parseHtpasswd('alice:{SHA}abc\n'), /bcrypt/);
    assert.throws(() => parseHtpasswd('nocolon\n'), /user:hash/);
    assert.equal(parseHtpasswd('# c\n\nalice:$2y$05$abcdefghijklmnopqrstuu5s2v8.iXieOjg/.AySBTTZIIVFJeBui\n').size, 1);
  });
  test('our htpasswd lines verify with apache htpasswd', async () => {
    const line = await ourHtpasswdLine('zed', 'pa:ss', 5);
    const f = path.join(dir, 'ours');
    writeFileSync(f, `${line}\n`);
    execFileSync('htpasswd', ['-vb', f, 'zed', 'pa:ss'], { stdio: 'ignore' });
  });
  const scopes: [string, unknown][] = [
    ['repository:a/b:pull,push', [{ type: 'repository', name: 'a/b', actions: ['pull', 'push'] }]],
    ['repository:localhost:5000/x:pull', [{ type: 'repository', name: 'localhost:5000/x', actions: ['pull'] }]],
    ['registry:catalog:*', [{ type: 'registry', name: 'catalog', actions: ['*'] }]],
    ['repository:a:pull repository:b:push', [{ type: 'repository', name: 'a', actions: ['pull'] }, { type: 'repository', name: 'b', actions: ['push'] }]],
    ['bogus', []],
  ];
  for (const [s, want] of scopes) test(`parseScopes ${s}`, () => assert.deepEqual(parseScopes(s), want));
});
