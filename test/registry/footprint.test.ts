// What a plain `drydock serve` keeps in memory: packages only some configurations need (undici
// for the pull-through cache, jose for token auth; ~20 and ~10 MiB of RSS) are loaded on first
// use, not at start. A loader hook lists the packages a child process imports while it starts a
// registry with htpasswd auth and answers requests.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { FIXTURES, PROJECT_ROOT } from '../helpers/env.js';

const fromSource = import.meta.url.endsWith('.ts');
const registryIndex = path.join(PROJECT_ROOT, fromSource ? 'src/registry/index.ts' : 'dist/src/registry/index.js');

function importsOf(script: string): string[] {
  const r = spawnSync(process.execPath, [...(fromSource ? ['--import', 'tsx'] : []), '--import', path.join(FIXTURES, 'registry/record-imports.mjs'), '--input-type=module', '-e', script], { cwd: PROJECT_ROOT, encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.status, 0, r.stderr);
  return [...r.stderr.matchAll(/^IMPORT (\S+)$/gm)].map((m) => m[1]!);
}

test('serving with htpasswd loads neither undici nor jose; a token registry loads jose', () => {
  const serveAndGet = (opts: string, get = '/v2/') => `
    import { mkdtempSync, writeFileSync } from 'node:fs';
    import os from 'node:os';
    const reg = await import(${JSON.stringify(registryIndex)});
    const dir = mkdtempSync(os.tmpdir() + '/drydock-footprint-');
    writeFileSync(dir + '/htpasswd', await reg.htpasswdLine('alice', 'pw', 4) + '\\n');
    const r = await reg.startRegistry({ root: dir + '/data', htpasswd: dir + '/htpasswd', ${opts} });
    const res = await globalThis.fetch(r.url + ${JSON.stringify(get)}, { headers: { authorization: 'Basic ' + Buffer.from('alice:pw').toString('base64') } });
    await res.arrayBuffer();
    await r.close();`;
  const basic = importsOf(serveAndGet(''));
  assert.ok(basic.includes('pino') && basic.includes('bcryptjs'), `the hook sees package imports: ${basic.join(' ')}`);
  assert.ok(!basic.includes('undici'), 'undici loaded without a proxy');
  assert.ok(!basic.includes('jose'), 'jose loaded without token auth');
  const token = importsOf(serveAndGet('token: true', '/token?service=drydock-registry&scope=repository:a:pull'));
  assert.ok(token.includes('jose'), 'token auth loads jose when it issues or checks a token');
});
