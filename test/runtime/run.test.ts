// `drydock run` on real runc: options that shape the container process, table-driven where the
// cases are data (one command, its expected output/exit code).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { runtimeFixture, type RuntimeFixture } from './helpers.js';
import { tempDir } from '../helpers/env.js';

let fx: RuntimeFixture;
before(async () => { fx = await runtimeFixture('run'); });
after(async () => { await fx?.cleanup(); });

interface Case { name: string; args: string[]; code?: number; stdout?: string | RegExp; stderr?: RegExp }

const cases: Case[] = [
  { name: 'exit code propagates', args: ['busybox', 'sh', '-c', 'exit 42'], code: 42 },
  { name: 'default CMD from the image', args: ['-i', 'busybox'], stdout: 'from stdin\n' },
  { name: '-e, -u (name from /etc/passwd), -w', args: ['-e', 'FOO=bar', '-u', 'www-data', '-w', '/tmp', 'busybox', 'sh', '-c', 'echo $FOO $(id -u):$(id -g) $(pwd)'], stdout: 'bar 33:33 /tmp\n' },
  { name: '-u uid:gid not in passwd', args: ['-u', '4242:4343', 'busybox', 'sh', '-c', 'echo $(id -u):$(id -g)'], stdout: '4242:4343\n' },
  { name: '--entrypoint replaces entrypoint and CMD', args: ['--entrypoint', 'echo', 'busybox', 'hi', 'there'], stdout: 'hi there\n' },
  { name: '--read-only refuses writes, --tmpfs is writable', args: ['--read-only', '--tmpfs', '/scratch', 'busybox', 'sh', '-c', 'touch /scratch/ok && echo tmpfs-ok; touch /x'], code: 1, stdout: 'tmpfs-ok\n', stderr: /Read-only file system/ },
  { name: '--network none has only lo', args: ['--network', 'none', 'busybox', 'ls', '/sys/class/net'], stdout: 'lo\n' },
  { name: 'bridge network: eth0 with an address on the bridge subnet', args: ['busybox', 'sh', '-c', 'ls /sys/class/net | tr "\\n" " "; ip -4 addr show eth0 | grep -o "inet 10\\.89\\.[0-9]*\\.[0-9]*"'], stdout: /^eth0 lo inet 10\.89\.\d+\.\d+\n$/ },
  { name: '--hostname and /etc/hosts', args: ['--hostname', 'box1', '--add-host', 'db:10.1.2.3', 'busybox', 'sh', '-c', 'hostname; grep db /etc/hosts'], stdout: 'box1\n10.1.2.3\tdb\n' },
  { name: '--init runs tini as pid 1', args: ['--init', 'busybox', 'cat', '/proc/1/cmdline'], stdout: /drydock-init/ },
  { name: '--memory and --cpus reach the cgroup', args: ['-m', '64m', '--cpus', '0.5', 'busybox', 'sh', '-c', 'cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/cpu/cpu.cfs_quota_us 2>/dev/null || cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/cpu.max'], stdout: /^(67108864\n50000\n|67108864\n50000 100000\n)$/ },
  { name: 'missing executable: 127 and a clear error', args: ['busybox', '/no/such/binary'], code: 127, stderr: /executable file not found/ },
  { name: 'unknown image with --pull never: 125, Docker\'s message', args: ['--pull', 'never', 'no-such-image:1'], code: 125, stderr: /No such image: no-such-image:1/ },
  { name: 'bad -p: 125', args: ['-p', '1:2:3:4', 'busybox', 'true'], code: 125, stderr: /invalid -p/ },
];

for (const c of cases) {
  test(`run --rm: ${c.name}`, async () => {
    const r = await fx.cli(['run', '--rm', ...c.args], { input: 'echo from stdin\n' });
    assert.equal(r.code, c.code ?? 0, `exit code (stderr: ${r.stderr})`);
    if (typeof c.stdout === 'string') assert.equal(r.stdout, c.stdout);
    else if (c.stdout) assert.match(r.stdout, c.stdout);
    if (c.stderr) assert.match(r.stderr, c.stderr);
  });
}

test('--rm leaves nothing behind; without --rm the exited container stays and logs', async () => {
  await fx.ok(['run', '--rm', 'busybox', 'true']);
  assert.equal((await fx.ok(['ps', '-aq'])).trim(), '');
  const out = await fx.ok(['run', '--name', 'kept', 'busybox', 'sh', '-c', 'echo to-out; echo to-err >&2']);
  assert.equal(out, 'to-out\n');
  const ps = await fx.ok(['ps', '-a', '--format', 'json']);
  const row = JSON.parse(ps.trim().split('\n')[0]!);
  assert.equal(row.Names, 'kept');
  assert.equal(row.State, 'exited');
  const logs = await fx.cli(['logs', 'kept']);
  assert.equal(logs.stdout, 'to-out\n');
  assert.equal(logs.stderr, 'to-err\n');
  const dup = await fx.cli(['run', '--name', 'kept', 'busybox', 'true']);
  assert.equal(dup.code, 125);
  assert.match(dup.stderr, /already in use/);
  await fx.ok(['rm', 'kept']);
  assert.deepEqual(await fsp.readdir(path.join(fx.root, 'containers')).then((l) => l.filter((n) => !n.startsWith('.'))), []);
});

test('named volume persists across rm; bind mount :ro is read-only', async () => {
  await fx.ok(['run', '--rm', '-v', 'data:/data', 'busybox', 'sh', '-c', 'echo persisted > /data/f']);
  assert.equal(await fx.ok(['run', '--rm', '-v', 'data:/data', 'busybox', 'cat', '/data/f']), 'persisted\n');
  assert.match(await fx.ok(['volume', 'ls']), /local\s+data/);
  const host = tempDir('drydock-runtime-bind-');
  await fsp.writeFile(path.join(host, 'h.txt'), 'from host\n');
  const r = await fx.cli(['run', '--rm', '-v', `${host}:/mnt:ro`, 'busybox', 'sh', '-c', 'cat /mnt/h.txt; touch /mnt/new']);
  assert.equal(r.stdout, 'from host\n');
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /Read-only file system/);
  await fx.ok(['volume', 'rm', 'data']);
  assert.equal((await fx.ok(['volume', 'ls', '-q'])).trim(), '');
});
