// The access log: registry:2's combined log format (selected by log.accesslog.format or
// --access-log-format), compared line for line with distribution 2.8's for the same curl
// request, and the JSON format that stays the default.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { requireTool, runCli, tempDir } from '../helpers/env.js';
import { htpasswdLine, startDistribution, type DistributionRegistry } from '../helpers/docker-registry.js';
import { combinedLine } from '../../src/registry/access-log.js';
import { startServe, type ServeProcess } from './serve.js';

const CLF = /^(\S+) - (\S+) \[(\d\d\/[A-Z][a-z]{2}\/\d{4}:\d\d:\d\d:\d\d \+0000)\] "((?:[^"\\]|\\.)*)" (\d{3}) (\d+) "((?:[^"\\]|\\.)*)" "((?:[^"\\]|\\.)*)"$/;

function curl(args: string[]): string {
  return execFileSync(requireTool('curl'), ['-s', ...args], { encoding: 'utf8' });
}

async function lines(proc: { stdout(): string }, n: number): Promise<string[]> {
  for (let i = 0; i < 100; i++) {
    const l = proc.stdout().split('\n').filter(Boolean);
    if (l.length >= n) return l;
    await new Promise((r) => setTimeout(r, 50));
  }
  return proc.stdout().split('\n').filter(Boolean);
}

describe('combined access log', () => {
  const dir = tempDir('drydock-registry-accesslog-');
  writeFileSync(path.join(dir, 'htpasswd'), `${htpasswdLine('alice', 'pw')}\n`);
  let serve: ServeProcess | undefined;
  let dist: DistributionRegistry | undefined;
  after(async () => { await serve?.stop(); await dist?.stop(); });

  test('--access-log-format combined writes the line registry:2 writes for the same request', async () => {
    serve = await startServe(['--root', path.join(dir, 'root'), '--addr', '127.0.0.1:0', '--htpasswd', path.join(dir, 'htpasswd'), '--access-log-format', 'combined']);
    dist = await startDistribution({ users: { alice: 'pw' }, accessLog: true });
    const body = curl(['-u', 'alice:pw', '-A', 'curl/7.29.0', `${serve.url}/v2/_catalog`]);
    curl(['-A', 'curl/7.29.0', `${serve.url}/v2/_catalog`]);
    curl(['-u', 'alice:pw', '-A', 'curl/7.29.0', `${dist.url}/v2/_catalog`]);
    curl(['-A', 'curl/7.29.0', `${dist.url}/v2/_catalog`]);
    const ours = await lines(serve, 2);
    assert.equal(ours.length, 2, serve.stdout());
    const ok = CLF.exec(ours[0]!);
    assert.ok(ok, ours[0]);
    assert.deepEqual(ok.slice(1).filter((_, i) => i !== 2), ['127.0.0.1', 'alice', 'GET /v2/_catalog HTTP/1.1', '200', String(Buffer.byteLength(body)), '', 'curl/7.29.0']);
    assert.ok(Math.abs(Date.parse(ok[3]!.replace(/^(\d\d)\/(\w+)\/(\d{4}):/, '$2 $1 $3 ')) - Date.now()) < 60_000, ok[3]);
    // distribution's lines have the same fields; it leaves the user out ("-") and its bodies end in a newline.
    const theirs = dist.output().split('\n').filter((l) => CLF.test(l) && l.includes('curl/7.29.0'));
    assert.equal(theirs.length, 2, dist.output());
    const norm = (l: string) => { const m = CLF.exec(l)!; return [m[1], m[4], m[5], m[7], m[8]]; };
    assert.deepEqual(ours.map(norm), theirs.map(norm));
    assert.equal(CLF.exec(ours[1]!)![2], '-');
    assert.equal(CLF.exec(ours[1]!)![5], '401');
  });

  test('log.accesslog.format: combined in config.yml; JSON stays the default', async () => {
    writeFileSync(path.join(dir, 'config.yml'), `version: 0.1\nlog:\n  accesslog:\n    format: combined\nstorage:\n  filesystem:\n    rootdirectory: ./root3\nhttp:\n  addr: 127.0.0.1:0\n`);
    const s = await startServe(['--config', path.join(dir, 'config.yml')]);
    try {
      curl(['-H', 'Referer: http://x/"a"', '-A', 'evil"agent', `${s.url}/v2/`]);
      const [l] = await lines(s, 1);
      assert.match(l!, CLF);
      assert.match(l!, / "GET \/v2\/ HTTP\/1\.1" 200 2 "http:\/\/x\/\\"a\\"" "evil\\"agent"$/);
    } finally { await s.stop(); }
    const j = await startServe(['--root', path.join(dir, 'root4'), '--addr', '127.0.0.1:0']);
    try {
      curl([`${j.url}/v2/`]);
      const all = await lines(j, 2);
      const req = all.map((l) => JSON.parse(l) as Record<string, unknown>).find((o) => o.msg === 'request');
      assert.ok(req, j.stdout());
      assert.equal(req.status, 200);
    } finally { await j.stop(); }
    const bad = await runCli(['serve', '--root', path.join(dir, 'root5'), '--addr', '127.0.0.1:0', '--access-log-format', 'apache'], { timeoutMs: 30_000 });
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /log\.accesslog\.format "apache" is not supported \(json, combined\)/);
  });

  test('combinedLine escapes what would split or forge a line', () => {
    const l = combinedLine({ remote: '::1', user: 'a b', time: new Date(Date.UTC(2016, 10, 25, 8, 29, 32)), method: 'GET', url: '/v2/_catalog', httpVersion: '1.1', status: 200, bytes: 44, referer: undefined, userAgent: 'x\n::1 - root [..] "GET / HTTP/1.1" 200 1 "" ""' });
    assert.equal(l.split('\n').length, 2);
    assert.ok(l.startsWith('::1 - a\\x20b [25/Nov/2016:08:29:32 +0000] "GET /v2/_catalog HTTP/1.1" 200 44 "" "x\\x0a::1'), l);
  });
});
