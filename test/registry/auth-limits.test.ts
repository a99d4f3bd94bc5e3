// Auth under attack: equal failure timing when one htpasswd file mixes bcrypt costs (made by
// apache2-utils' htpasswd -C), failed-login rate limiting (429 TOOMANYREQUESTS + Retry-After)
// for Basic auth and the token endpoint, and a token-mode _catalog that lists only what the
// caller may pull.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { requireTool, tempDir } from '../helpers/env.js';
import { startRegistry, type StartedRegistry } from '../../src/registry/index.js';
import { assertError, http, pushImage } from './util.js';

const basic = (u: string, p: string) => ({ Authorization: `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}` });

function htpasswdCost(user: string, password: string, cost: number): string {
  const r = spawnSync(requireTool('htpasswd', 'apt-get install apache2-utils'), ['-Bbn', '-C', String(cost), user, password], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.trim();
}

let file: string;
before(() => {
  file = path.join(tempDir('drydock-registry-authlim-'), 'htpasswd');
  // The cheap line first: before the fix the dummy hash took the first line's cost.
  writeFileSync(file, [htpasswdCost('alice', 'pw-a', 5), htpasswdCost('bob', 'pw-b', 10), htpasswdCost('carol', 'pw-c', 5)].join('\n') + '\n');
});

describe('failure timing with mixed bcrypt costs', () => {
  let reg: StartedRegistry;
  after(async () => { await reg?.close(); });

  test('unknown user, wrong password at cost 5 and wrong password at cost 10 take the same time', async () => {
    assert.match(htpasswdCost('x', 'y', 5), /\$2y\$05\$/);
    reg = await startRegistry({ root: tempDir('drydock-registry-timing-'), htpasswd: file, config: { auth: { ratelimit: { failures: 0 } } } as never });
    const once = async (u: string) => {
      const t = process.hrtime.bigint();
      const r = await http(`${reg.url}/v2/`, { headers: basic(u, 'wrong') });
      assert.equal(r.status, 401);
      return Number(process.hrtime.bigint() - t) / 1e6;
    };
    const series: Record<string, number[]> = { nobody: [], alice: [], bob: [] };
    // Interleaved, so load from other processes hits every series alike.
    for (let i = 0; i < 9; i++) for (const u of Object.keys(series)) series[u]!.push(await once(u));
    const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!;
    const m = Object.fromEntries(Object.entries(series).map(([u, a]) => [u, median(a)]));
    const shown = Object.entries(m).map(([u, v]) => `${u} ${v.toFixed(1)} ms`).join(', ');
    const lo = Math.min(...Object.values(m));
    const hi = Math.max(...Object.values(m));
    assert.ok(hi / lo < 1.5, `medians differ: ${shown}`);
    process.stderr.write(`# failure timing medians: ${shown}\n`);
  });
});

describe('failed-login rate limit', () => {
  let reg: StartedRegistry;
  let tok: StartedRegistry;
  after(async () => { await reg?.close(); await tok?.close(); });

  test('Basic auth: after 5 failures the pair (address, user) gets 429 with Retry-After, right password or not, until the window ends', async () => {
    reg = await startRegistry({ root: tempDir('drydock-registry-rl-'), htpasswd: file, config: { auth: { ratelimit: { failures: 5, window: '6s' } } } as never });
    const started = Date.now();
    for (let i = 0; i < 5; i++) assertError(await http(`${reg.url}/v2/`, { headers: basic('alice', `guess${i}`) }), 401, 'UNAUTHORIZED');
    const limited = await http(`${reg.url}/v2/`, { headers: basic('alice', 'guess5') });
    assertError(limited, 429, 'TOOMANYREQUESTS');
    const retry = Number(limited.headers.get('retry-after'));
    assert.ok(retry >= 1 && retry <= 6, `Retry-After ${retry}`);
    assert.match(limited.json().errors[0].message, /too many failed logins for "alice"/);
    assertError(await http(`${reg.url}/v2/`, { headers: basic('alice', 'pw-a') }), 429, 'TOOMANYREQUESTS');
    // Other users are not locked out by alice's attacker.
    assert.equal((await http(`${reg.url}/v2/`, { headers: basic('carol', 'pw-c') })).status, 200);
    // A bounded wait for the window to end.
    let status = 429;
    for (let i = 0; i < 40 && status === 429; i++) {
      await new Promise((r) => setTimeout(r, 250));
      status = (await http(`${reg.url}/v2/`, { headers: basic('alice', 'pw-a') })).status;
    }
    assert.equal(status, 200, 'alice gets in after the window');
    assert.ok(Date.now() - started >= 6000, 'not before the window ends');
  });

  test('the token endpoint is limited the same way', async () => {
    tok = await startRegistry({ root: tempDir('drydock-registry-rltok-'), htpasswd: file, token: true, config: { auth: { ratelimit: { failures: 3, window: '1m' } } } as never });
    const url = `${tok.url}/token?service=drydock-registry&scope=repository:a/b:pull`;
    for (let i = 0; i < 3; i++) assert.equal((await http(url, { headers: basic('bob', `guess${i}`) })).status, 401);
    const r = await http(url, { headers: basic('bob', 'pw-b') });
    assertError(r, 429, 'TOOMANYREQUESTS');
    assert.ok(Number(r.headers.get('retry-after')) > 0);
    const form = await http(`${tok.url}/token`, { method: 'POST', body: 'grant_type=password&username=bob&password=pw-b&service=drydock-registry&scope=repository:a/b:pull', headers: { 'Content-Type': 'application/x-www-form-urlencoded' } });
    assert.equal(form.status, 429);
    assert.equal((await http(url, { headers: basic('alice', 'pw-a') })).status, 200);
  });
});

describe('token mode _catalog', () => {
  let reg: StartedRegistry;
  after(async () => { await reg?.close(); });

  test('lists only the repositories the caller may pull', async () => {
    reg = await startRegistry({ root: tempDir('drydock-registry-tokcat-'), htpasswd: file, token: true, access: [
      { users: ['alice'], repositories: ['*'], actions: ['*'] },
      { users: ['carol'], repositories: ['team/*'], actions: ['pull'] },
    ] });
    const token = async (u: string, p: string, scope: string) => (await http(`${reg.url}/token?service=drydock-registry&scope=${encodeURIComponent(scope)}`, { headers: basic(u, p) })).json().token as string;
    for (const repo of ['team/app', 'secret/app']) {
      await pushImage(reg.url, repo, 'v1', { headers: { Authorization: `Bearer ${await token('alice', 'pw-a', `repository:${repo}:pull,push`)}` } });
    }
    const catalog = async (u: string, p: string) => {
      const r = await http(`${reg.url}/v2/_catalog`, { headers: { Authorization: `Bearer ${await token(u, p, 'registry:catalog:*')}` } });
      assert.equal(r.status, 200, r.body.toString());
      return r.json().repositories as string[];
    };
    assert.deepEqual(await catalog('carol', 'pw-c'), ['team/app']);
    assert.deepEqual(await catalog('alice', 'pw-a'), ['secret/app', 'team/app']);
    assert.deepEqual(await catalog('bob', 'pw-b'), []);
  });
});
