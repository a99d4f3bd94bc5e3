// The Docker commands added for Docker habits: version, info, system df|prune, history,
// image ls|history|rm, container prune, wait, rename, top, pause/unpause; and a closed stdout
// pipe ending the CLI quietly.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { busyboxImage } from '../helpers/images.js';
import { CLI_MAIN, requireRoot, requireTool, runCli, tempDir } from '../helpers/env.js';

const ok = async (args: string[], root: string) => {
  const r = await runCli(args, { root });
  assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
};

test('version, info and system df answer with --format templates', async () => {
  const root = tempDir();
  await busyboxImage(root);
  assert.match(await ok(['version', '--format', '{{.Client.Version}} {{.Client.Os}}'], root), /^\d+\.\d+\.\d+ linux\n$/);
  assert.match(await ok(['version'], root), /^Client: drydock\n Version: +\d/);
  assert.equal(await ok(['info', '--format', '{{.Images}} {{.Containers}} {{.OSType}}'], root), '1 0 linux\n');
  assert.match(await ok(['system', 'info'], root), /^ Images: 1$/m);
  const df = await ok(['system', 'df'], root);
  assert.match(df, /^TYPE +TOTAL +ACTIVE +SIZE +RECLAIMABLE\nImages +1 +0 +\d/);
  assert.equal(await ok(['system', 'df', '--format', '{{.Type}}={{.TotalCount}}'], root), 'Images=1\nContainers=0\nLocal Volumes=0\nBuild Cache=0\n');
  const bad = await runCli(['info', '--format', '{{.Nope}}'], { root });
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /^template parsing error: template: :1:2: executing "" at <.Nope>: can't evaluate field Nope in type types.Info\n$/);
});

test('history, image ls and image history; images newest first and filtered', async () => {
  const root = tempDir();
  await busyboxImage(root);
  const h = await ok(['history', 'busybox'], root);
  assert.match(h, /^IMAGE +CREATED +CREATED BY +SIZE +COMMENT\n[0-9a-f]{12} /);
  assert.equal(await ok(['image', 'history', '--format', '{{.Size}}', 'busybox'], root), await ok(['history', '--format', '{{.Size}}', 'busybox'], root));
  assert.equal(await ok(['image', 'ls', '--format', '{{.Repository}}:{{.Tag}}'], root), 'busybox:latest\n');
  await new Promise((r) => setTimeout(r, 1100));
  // A second image, created later, with a label: newest first, label and reference filters.
  const dir = tempDir();
  spawnSync('sh', ['-c', `mkdir -p ${dir}/r/bin && cp /bin/busybox ${dir}/r/bin/ && tar -C ${dir}/r -cf ${dir}/r.tar .`]);
  await ok(['import', '-c', 'LABEL tier=new', `${dir}/r.tar`, 'newer:1'], root);
  assert.equal(await ok(['images', '--format', '{{.Repository}}'], root), 'newer\nbusybox\n');
  assert.equal(await ok(['images', '-f', 'label=tier=new', '--format', '{{.Repository}}'], root), 'newer\n');
  assert.equal(await ok(['images', '-f', 'reference=busy*', '--format', '{{.Repository}}'], root), 'busybox\n');
  assert.equal(await ok(['images', '-f', 'since=busybox', '--format', '{{.Repository}}'], root), 'newer\n');
  assert.equal(await ok(['images', '-f', 'before=newer:1', '--format', '{{.Repository}}'], root), 'busybox\n');
  assert.equal(await ok(['images', '-f', 'dangling=true', '-q'], root), '');
  assert.equal((await runCli(['images', '-f', 'bogus=1'], { root })).stderr, "Error: invalid filter 'bogus'\n");
  assert.match(await ok(['image', 'rm', 'newer:1'], root), /^Untagged: newer:1\n/);
});

test('a closed stdout pipe ends the CLI quietly (no EPIPE stack)', async () => {
  const root = tempDir();
  await busyboxImage(root);
  // 2 MB of output: far more than a pipe holds, so the CLI is still writing when head exits.
  const r = spawnSync('sh', ['-c', `node ${CLI_MAIN} images --format '{{printf "%2000000s" .Repository}}' | head -c 1`], { env: { ...process.env, DRYDOCK_ROOT: root }, encoding: 'utf8' });
  assert.equal(r.stdout, ' ');
  assert.equal(r.stderr, '');
});

test('a full non-blocking stdout pipe is waited on, not an EAGAIN error (images writes fd 1 itself)', async () => {
  requireTool('python3');
  const root = tempDir();
  await busyboxImage(root);
  // The pipe's write end is O_NONBLOCK (as a Node parent that shares it can leave it), and its
  // reader starts late: 2 MB of output cannot go in one write.
  const parent = [
    'import os, subprocess, sys, time',
    'r, w = os.pipe(); os.set_blocking(w, False)',
    'p = subprocess.Popen(sys.argv[1:], stdout=w, stderr=subprocess.PIPE); os.close(w)',
    'time.sleep(0.5); out = b""',
    'while True:',
    '    chunk = os.read(r, 1 << 16)',
    '    if not chunk: break',
    '    out += chunk',
    'err = p.stderr.read(); p.wait()',
    'print(p.returncode, len(out), out[-12:].decode(), repr(err.decode()))',
  ].join('\n');
  const r = spawnSync('python3', ['-c', parent, process.execPath, CLI_MAIN, 'images', '--format', '{{printf "%2000000s" .Repository}}'], { env: { ...process.env, DRYDOCK_ROOT: root }, encoding: 'utf8' });
  assert.equal(r.stdout, "0 2000001     busybox\n ''\n", r.stderr);
});

test('wait, rename, top, pause/unpause and container prune on a real container', async () => {
  requireRoot();
  requireTool('runc');
  const root = tempDir();
  await busyboxImage(root);
  const id = (await ok(['run', '-d', '--network', 'none', '--name', 'sleeper', 'busybox', 'sleep', '60'], root)).trim();
  try {
    assert.match(await ok(['top', 'sleeper'], root), /^UID +PID +PPID +C +STIME +TTY +TIME +CMD\n\S+ +\d+ .*sleep 60\n$/);
    await ok(['pause', 'sleeper'], root);
    assert.match((await runCli(['pause', 'sleeper'], { root })).stderr, /is already paused/);
    assert.match(await ok(['ps', '--format', '{{.Status}}'], root), /^Up .* \(Paused\)\n$/);
    assert.match(await ok(['inspect', '--format', '{{.State.Paused}}', 'sleeper'], root), /^true\n$/);
    await ok(['unpause', 'sleeper'], root);
    assert.doesNotMatch(await ok(['ps', '--format', '{{.Status}}'], root), /Paused/);
    await ok(['rename', 'sleeper', 'dozer'], root);
    assert.equal(await ok(['ps', '--format', '{{.Names}}'], root), 'dozer\n');
    assert.match((await runCli(['rename', 'dozer', 'dozer'], { root })).stderr, /same name/);
    await ok(['kill', 'dozer'], root);
    assert.equal(await ok(['wait', 'dozer'], root), '137\n');
    assert.equal(await ok(['container', 'prune', '-f'], root), `Deleted Containers:\n${id}\n\nTotal reclaimed space: 0B\n`);
    assert.equal(await ok(['ps', '-a', '-q'], root), '');
  } finally {
    await runCli(['rm', '-f', id], { root });
  }
});
