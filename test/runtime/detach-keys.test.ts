// Foreground `run -it` and `exec -it` on a real terminal (a pty): Ctrl-P Ctrl-Q (or
// --detach-keys) ends the CLI with status 0 and leaves the container / exec'd shell running, as
// in Docker; without detaching, the output (even of a process that exits at once) and the exit
// code reach the terminal, also with --rm.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { runtimeFixture, waitFor, type RuntimeFixture } from './helpers.js';
import { CLI_MAIN } from '../helpers/env.js';
import { runOnPty } from '../helpers/pty.js';

let fx: RuntimeFixture;
before(async () => { fx = await runtimeFixture('detachkeys'); });
after(async () => { await fx?.cleanup(); });

const drydock = (...args: string[]) => runOnPty([process.execPath, CLI_MAIN, ...args], [], fx.env);

test('run -it: Ctrl-P Ctrl-Q detaches and the container keeps running; attach finds it', async () => {
  const r = await runOnPty([process.execPath, CLI_MAIN, 'run', '-it', '--network', 'none', '--name', 'det', 'busybox', 'sh'], [
    { expect: '# ' },
    { send: 'echo at-$((40+2))\n', expect: 'at-42' },
    { send: '\x10\x11' },
  ], fx.env);
  assert.equal(r.code, 0, `${r.error ?? ''} ${r.out}`);
  // The container's own line endings, not \r\r\n: the CLI's raw terminal has no output processing.
  assert.match(r.out, /\r\nat-42\r\n/);
  assert.doesNotMatch(r.out, /\r\r\n/);
  assert.equal(await fx.ok(['inspect', '--format', '{{.State.Running}}', 'det']), 'true\n');
  await fx.ok(['rm', '-f', 'det']);
});

test('run -it --detach-keys: the given sequence detaches, a lone first key is input', async () => {
  const r = await runOnPty([process.execPath, CLI_MAIN, 'run', '-it', '--detach-keys', 'ctrl-a,x', '--network', 'none', '--name', 'det2', 'busybox', 'sh'], [
    { expect: '# ' },
    { send: '\x10\x11echo still-$((1+1))\n', expect: 'still-2' },
    { send: '\x01x' },
  ], fx.env);
  assert.equal(r.code, 0, `${r.error ?? ''} ${r.out}`);
  assert.equal(await fx.ok(['inspect', '--format', '{{.State.Running}}', 'det2']), 'true\n');
  await fx.ok(['rm', '-f', 'det2']);
});

test('run -it --rm: output of a process that exits at once, and its exit code', async () => {
  const r = await drydock('run', '-it', '--rm', '--network', 'none', 'busybox', 'sh', '-c', 'echo early; exit 3');
  assert.equal(r.code, 3, r.out);
  assert.equal(r.out, 'early\r\n');
  assert.equal(await fx.ok(['ps', '-aq']), '');
});

test('exec -it: the detach keys leave the exec\'d shell running; otherwise its exit code', async () => {
  await fx.ok(['run', '-dit', '--network', 'none', '--name', 'host', 'busybox', 'sh']);
  const r = await runOnPty([process.execPath, CLI_MAIN, 'exec', '-it', 'host', 'sh'], [
    { expect: '# ' },
    { send: 'exec sleep 317\n' },
    { send: '\x10\x11' },
  ], fx.env);
  assert.equal(r.code, 0, `${r.error ?? ''} ${r.out}`);
  await waitFor('the exec\'d process still running', async () => (await fx.ok(['top', 'host'])).includes('sleep 317'));
  const quick = await drydock('exec', '-it', 'host', 'sh', '-c', 'echo quick; exit 4');
  assert.equal(quick.code, 4, quick.out);
  assert.equal(quick.out, 'quick\r\n');
  const bad = await drydock('exec', '-it', '--detach-keys', 'ctrl-1', 'host', 'sh');
  assert.equal(bad.code, 1);
  assert.match(bad.out, /Invalid detach keys \(ctrl-1\) provided/);
  await fx.ok(['rm', '-f', 'host']);
});
