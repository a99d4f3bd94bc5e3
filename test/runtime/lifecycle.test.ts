// The container lifecycle across separate drydock processes (each CLI call is its own process):
// a detached web server with a published port, logs, exec, stop, cp, commit, restart policy and
// crash detection when the monitor dies.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp, existsSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { runtimeFixture, freePort, waitFor, readState, type RuntimeFixture } from './helpers.js';
import { tempDir } from '../helpers/env.js';

let fx: RuntimeFixture;
before(async () => { fx = await runtimeFixture('life'); });
after(async () => { await fx?.cleanup(); });

test('busybox httpd -d -p 127.0.0.1:PORT:80 answers from the host; logs, exec, ps, inspect, stop', async () => {
  const port = await freePort();
  const site = tempDir('drydock-runtime-site-');
  await fsp.writeFile(path.join(site, 'index.html'), '<h1>drydock</h1>\n');
  // --init: httpd as pid 1 would ignore SIGTERM (no handler), tini forwards it.
  const id = (await fx.ok(['run', '-d', '--init', '--name', 'web', '-p', `127.0.0.1:${port}:80`, '-v', `${site}:/var/www:ro`,
    'busybox', 'sh', '-c', 'echo web starting; exec httpd -f -v -p 80 -h /var/www'])).trim();
  assert.match(id, /^[a-f0-9]{64}$/);
  const body = await waitFor('HTTP answer', async () => {
    const res = await fetch(`http://127.0.0.1:${port}/`);
    return res.ok ? res.text() : undefined;
  });
  assert.equal(body, '<h1>drydock</h1>\n');

  // A second process sees the detached container.
  const ps = await fx.ok(['ps']);
  assert.match(ps, new RegExp(`${id.slice(0, 12)}\\s+busybox\\s+.*Up .*127\\.0\\.0\\.1:${port}->80/tcp\\s+web`));
  assert.equal((await fx.ok(['port', 'web'])).trim(), `80/tcp -> 127.0.0.1:${port}`);
  const info = JSON.parse(await fx.ok(['container', 'inspect', 'web']))[0];
  assert.equal(info.State.Status, 'running');
  assert.ok(info.State.Pid > 0);
  assert.match(info.NetworkSettings.IPAddress, /^10\.89\./);

  const logs = await waitFor('access log line', async () => {
    const r = await fx.cli(['logs', 'web']);
    return r.stderr.includes('response:200') ? r : undefined;
  });
  assert.equal(logs.stdout, 'web starting\n');
  const stamped = await fx.cli(['logs', '-t', '--tail', '2', 'web']);
  assert.match(stamped.stdout, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z web starting\n$/);
  assert.match(stamped.stderr, /^\d{4}-\d\d-\d\dT\S+Z .*response:200\n$/);

  assert.equal(await fx.ok(['exec', 'web', 'cat', '/var/www/index.html']), '<h1>drydock</h1>\n');
  assert.equal(await fx.ok(['exec', '-u', 'www-data', '-w', '/tmp', '-e', 'X=1', 'web', 'sh', '-c', 'echo $(id -u) $(pwd) $X']), '33 /tmp 1\n');
  const failing = await fx.cli(['exec', 'web', 'sh', '-c', 'exit 5']);
  assert.equal(failing.code, 5);

  // tini forwards SIGTERM to httpd, which dies of it: stop must not need the full timeout.
  const t0 = Date.now();
  await fx.ok(['stop', '-t', '20', 'web']);
  assert.ok(Date.now() - t0 < 10_000, `stop took ${Date.now() - t0} ms`);
  const stopped = JSON.parse(await fx.ok(['inspect', 'web']))[0];
  assert.equal(stopped.State.Status, 'exited');
  await assert.rejects(fetch(`http://127.0.0.1:${port}/`));
  await fx.ok(['rm', 'web']);
});

test('stop escalates to SIGKILL after -t when the process ignores the stop signal', async () => {
  await fx.ok(['run', '-d', '--name', 'stubborn', 'busybox', 'sh', '-c', 'trap "" TERM; echo ready; while true; do sleep 1; done']);
  await waitFor('ready', async () => (await fx.ok(['logs', 'stubborn'])).includes('ready'));
  const t0 = Date.now();
  await fx.ok(['stop', '-t', '1', 'stubborn']);
  const took = Date.now() - t0;
  // At least the 1 s grace, and SIGKILL (137) rather than the default 10 s timeout's worth of
  // waiting; the upper bound only guards against hangs on a loaded CI machine.
  assert.ok(took >= 900 && took < 30_000, `stop took ${took} ms`);
  await waitFor('Exited (137)', async () => /Exited \(137\)/.test(await fx.ok(['ps', '-a', '--filter', 'name=stubborn'])));
  await fx.ok(['rm', 'stubborn']);
});

test('commit turns the upper dir into a new layer holding the change', async () => {
  await fx.ok(['run', '--name', 'work', 'busybox', 'sh', '-c', 'echo installed > /etc/motd; rm /etc/nsswitch.conf; mkdir -p /opt/app']);
  const imageId = (await fx.ok(['commit', '-m', 'install motd', '-c', 'CMD ["cat", "/etc/motd"]', 'work', 'committed:1'])).trim();
  assert.match(imageId, /^sha256:[a-f0-9]{64}$/);
  const [img] = JSON.parse(await fx.ok(['inspect', 'committed:1']));
  const [base] = JSON.parse(await fx.ok(['inspect', 'busybox']));
  assert.equal(img.RootFS.Layers.length, base.RootFS.Layers.length + 1);
  assert.deepEqual(img.Config.Cmd, ['cat', '/etc/motd']);
  assert.equal(img.History.at(-1).comment, 'install motd');
  const top = img.Manifest.Layers.at(-1).digest.replace('sha256:', '');
  const listing = execFileSync('tar', ['-tzf', path.join(fx.root, 'blobs/sha256', top)], { encoding: 'utf8' }).split('\n');
  assert.ok(listing.includes('etc/motd'), listing.join(','));
  assert.ok(listing.includes('etc/.wh.nsswitch.conf'), listing.join(','));
  assert.equal(await fx.ok(['run', '--rm', 'committed:1']), 'installed\n');
  assert.notEqual((await fx.cli(['run', '--rm', 'committed:1', 'test', '-e', '/etc/nsswitch.conf'])).code, 0);
  await fx.ok(['rm', 'work']);
});

test('cp in both directions; a symlink planted in the container cannot redirect writes to the host', async () => {
  await fx.ok(['run', '-d', '--name', 'files', 'busybox', 'sh', '-c', 'ln -s /etc /trap; echo inside > /root/in.txt; sleep 1000']);
  await waitFor('symlink', async () => (await fx.cli(['exec', 'files', 'test', '-L', '/trap'])).code === 0);
  const host = tempDir('drydock-runtime-cp-');
  await fsp.writeFile(path.join(host, 'a.txt'), 'from host\n');
  await fsp.mkdir(path.join(host, 'dir/sub'), { recursive: true });
  await fsp.writeFile(path.join(host, 'dir/sub/b.txt'), 'b\n');
  await fx.ok(['cp', path.join(host, 'a.txt'), 'files:/tmp/']);
  await fx.ok(['cp', path.join(host, 'dir'), 'files:/tmp/copied']);
  assert.equal(await fx.ok(['exec', 'files', 'cat', '/tmp/a.txt', '/tmp/copied/sub/b.txt']), 'from host\nb\n');
  await fx.ok(['cp', 'files:/root/in.txt', path.join(host, 'out.txt')]);
  assert.equal(await fsp.readFile(path.join(host, 'out.txt'), 'utf8'), 'inside\n');
  // /trap -> /etc resolves inside the container's root, never the host's /etc.
  await fx.ok(['cp', path.join(host, 'a.txt'), 'files:/trap/drydock-cp-test']);
  assert.equal(existsSync('/etc/drydock-cp-test'), false);
  assert.equal(await fx.ok(['exec', 'files', 'cat', '/etc/drydock-cp-test']), 'from host\n');
  const missing = await fx.cli(['cp', 'files:/nope', host]);
  assert.notEqual(missing.code, 0);
  assert.match(missing.stderr, /Could not find the file \/nope/);
  await fx.ok(['rm', '-f', 'files']);
});

test('--restart on-failure:2 restarts twice, then stays exited', async () => {
  await fx.ok(['run', '-d', '--name', 'flaky', '--restart', 'on-failure:2', 'busybox', 'sh', '-c', 'echo attempt; exit 3']);
  const info = await waitFor('restarts exhausted', async () => {
    const [i] = JSON.parse(await fx.ok(['inspect', 'flaky']));
    return i.State.Status === 'exited' && i.RestartCount === 2 ? i : undefined;
  }, 30_000);
  assert.equal(info.State.ExitCode, 3);
  assert.equal(await fx.ok(['logs', 'flaky']), 'attempt\nattempt\nattempt\n');
  await fx.ok(['rm', 'flaky']);
});

test('a crashed monitor is detected: the container is reported Exited (255) and rm cleans it', async () => {
  const id = (await fx.ok(['run', '-d', '--name', 'victim', 'busybox', 'sleep', '1000'])).trim();
  const st = await waitFor('pid', async () => { const s = await readState(fx.root, id); return s.Pid ? s : undefined; });
  // Simulate a crash: the monitor and the container die without anyone recording it.
  process.kill(st.RunnerPid, 'SIGKILL');
  process.kill(st.Pid, 'SIGKILL');
  const row = await waitFor('exited status', async () => {
    const line = (await fx.ok(['ps', '-a', '--format', 'json'])).trim().split('\n').map((l) => JSON.parse(l)).find((r) => r.Names === 'victim');
    return line?.State === 'exited' ? line : undefined;
  });
  assert.match(row.Status, /^Exited \(255\)/); // Docker's ps has no ExitCode field; STATUS carries it
  const [info] = JSON.parse(await fx.ok(['inspect', 'victim']));
  assert.match(info.State.Error, /monitor exited unexpectedly/);
  await fx.ok(['rm', 'victim']);
  assert.equal(existsSync(path.join(fx.root, 'containers', id)), false);
  assert.doesNotMatch(await fsp.readFile('/proc/self/mountinfo', 'utf8'), new RegExp(id));
  assert.equal(existsSync(`/run/netns/drydock-${id.slice(0, 12)}`), false);
});

test('rm refuses a running container without -f', async () => {
  await fx.ok(['run', '-d', '--name', 'busy', 'busybox', 'sleep', '1000']);
  const r = await fx.cli(['rm', 'busy']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /cannot remove a running container/);
  await fx.ok(['rm', '-f', 'busy']);
  assert.doesNotMatch(await fx.ok(['ps', '-a']), /\bbusy\b/);
});

test('seed workflow: install, commit with EXPOSE/CMD, run -d -P; containers on the bridge resolve each other by name', async () => {
  await fx.ok(['run', '--name', 'builder', 'busybox', 'sh', '-c', 'mkdir -p /www && echo committed-site > /www/index.html']);
  await fx.ok(['commit', '-c', 'EXPOSE 80', '-c', 'CMD ["httpd", "-f", "-p", "80", "-h", "/www"]', 'builder', 'site:1']);
  await fx.ok(['rm', 'builder']);
  await fx.ok(['run', '-d', '--init', '--name', 'site', '-P', 'site:1']);
  const mapping = (await fx.ok(['port', 'site'])).trim();
  const m = mapping.match(/^80\/tcp -> 0\.0\.0\.0:(\d+)$/);
  assert.ok(m, mapping);
  const body = await waitFor('HTTP on the -P port', async () => {
    const res = await fetch(`http://127.0.0.1:${m![1]}/`);
    return res.ok ? res.text() : undefined;
  });
  assert.equal(body, 'committed-site\n');
  // A second container reaches the first by name over the bridge.
  assert.equal(await fx.ok(['run', '--rm', 'busybox', 'wget', '-q', '-O', '-', 'http://site/']), 'committed-site\n');
  await fx.ok(['stop', 'site']);
  // start brings it back with its port mapping.
  await fx.ok(['start', 'site']);
  const again = (await fx.ok(['port', 'site'])).trim().match(/:(\d+)$/)![1];
  assert.equal(await waitFor('HTTP after start', async () => { const r = await fetch(`http://127.0.0.1:${again}/`); return r.ok ? r.text() : undefined; }), 'committed-site\n');
  await fx.ok(['rm', '-f', 'site']);
});
