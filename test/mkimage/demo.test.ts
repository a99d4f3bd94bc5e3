// The README's main job, exactly as scripts/demo.sh runs it: mkimage busybox (offline), build
// examples/hello on it, run it with a published port, fetch the page over 127.0.0.1.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { tempDir, requireRoot, requireTool, CLI_MAIN, PROJECT_ROOT } from '../helpers/env.js';
import { freePort } from '../helpers/docker-registry.js';

test('scripts/demo.sh: mkimage busybox → build examples/hello → run -p → curl', { timeout: 300_000 }, async () => {
  requireRoot();
  for (const t of ['runc', 'curl', 'busybox', 'iptables']) requireTool(t);
  const root = path.join(tempDir('drydock-mkimage-demo-'), 'store');
  const port = await freePort();
  const drydock = [process.execPath, ...(CLI_MAIN.endsWith('.ts') ? ['--import', 'tsx'] : []), CLI_MAIN].join(' ');
  const child = spawn('bash', [path.join(PROJECT_ROOT, 'scripts/demo.sh')], {
    cwd: PROJECT_ROOT,
    env: { ...process.env, DRYDOCK: drydock, DRYDOCK_ROOT: root, PORT: String(port) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  assert.equal(code, 0, out);
  assert.match(out, /Tagged busybox:latest/);
  assert.match(out, /<h1>Hello from drydock<\/h1>/);
  assert.match(out, /^built \d{4}-\d\d-\d\dT/m);
  assert.match(out, /response:200/, 'httpd logged the request');
  assert.match(out, /demo: OK/);
});
