// A pull-through mirror whose upstream fails: the client (drydock pull, as a user runs it) sees
// the upstream's own error — connection refused, or the spec error the upstream answered — and
// the mirror logs a warning; a cached tag is still served, with a warning.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { runCli, tempDir } from '../helpers/env.js';
import { startDistribution, type DistributionRegistry } from '../helpers/docker-registry.js';
import { http, pushImage } from './util.js';
import { startServe, type ServeProcess } from './serve.js';

const warnings = (s: ServeProcess) => s.stdout().split('\n').filter(Boolean).map((l) => JSON.parse(l) as { level: number; msg: string }).filter((l) => l.level === 40).map((l) => l.msg);

async function until(f: () => boolean): Promise<void> {
  for (let i = 0; i < 50 && !f(); i++) await new Promise((r) => setTimeout(r, 100));
}

describe('mirror with a failing upstream', () => {
  let upstream: DistributionRegistry | undefined;
  const mirrors: ServeProcess[] = [];
  after(async () => { for (const m of mirrors) await m.stop(); await upstream?.stop(); });

  test('wrong upstream credentials: the client sees the upstream UNAUTHORIZED; the mirror warns', async () => {
    upstream = await startDistribution({ users: { up: 'stream' } });
    const m = await startServe(['--root', tempDir('drydock-mirror-badcreds-'), '--addr', '127.0.0.1:0', '--proxy', upstream.url, '--proxy-username', 'up', '--proxy-password', 'wrong']);
    mirrors.push(m);
    const host = new URL(m.url).host;
    const r = await runCli(['pull', '--insecure-registry', host, `${host}/lib/app:v1`], { root: tempDir('drydock-mirror-store-'), timeoutMs: 120_000 });
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, new RegExp(`upstream ${upstream.url.replace(/[.]/g, '\\.')} answered 401 for lib/app:v1: UNAUTHORIZED: authentication required`));
    await until(() => warnings(m).length > 0);
    assert.ok(warnings(m).some((w) => /answered 401 for lib\/app:v1: UNAUTHORIZED/.test(w)), m.stdout());
  });

  test('upstream down: uncached pulls show the connection error, cached tags are served with a warning', async () => {
    const auth = { Authorization: `Basic ${Buffer.from('up:stream').toString('base64')}` };
    const img = await pushImage(upstream!.url, 'lib/app', 'v1', { headers: auth });
    const m = await startServe(['--root', tempDir('drydock-mirror-down-'), '--addr', '127.0.0.1:0', '--proxy', upstream!.url, '--proxy-username', 'up', '--proxy-password', 'stream']);
    mirrors.push(m);
    assert.equal((await http(`${m.url}/v2/lib/app/manifests/v1`)).headers.get('docker-content-digest'), img.digest);
    const upUrl = upstream!.url;
    const stopping = upstream!;
    upstream = undefined;
    await stopping.stop();
    const host = new URL(m.url).host;
    const r = await runCli(['pull', '--insecure-registry', host, `${host}/lib/other:v1`], { root: tempDir('drydock-mirror-store2-'), timeoutMs: 120_000 });
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, new RegExp(`upstream ${upUrl.replace(/[.]/g, '\\.')} unreachable: connect ECONNREFUSED`));
    assert.doesNotMatch(r.stderr, /manifest unknown/);
    const cached = await http(`${m.url}/v2/lib/app/manifests/v1`);
    assert.equal(cached.status, 200);
    await until(() => warnings(m).some((w) => /serving the cached copy/.test(w)));
    const w = warnings(m);
    assert.ok(w.some((x) => /unreachable: connect ECONNREFUSED/.test(x)), m.stdout());
    assert.ok(w.some((x) => /upstream unavailable: serving the cached copy/.test(x)), m.stdout());
  });
});
