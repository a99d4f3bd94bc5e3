// `drydock stats --no-stream` on a real busybox container that spins a CPU and fills a tmpfs:
// Docker's columns, numbers read from the host's cgroups, and --format through the template engine.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { runtimeFixture, type RuntimeFixture } from './helpers.js';
import { bytesSize, statsRow } from '../../src/runtime/stats.js';

let fx: RuntimeFixture;
before(async () => { fx = await runtimeFixture('stats'); });
after(async () => { await fx?.cleanup(); });

const MiB = 1024 * 1024;

test('stats --no-stream: CPU %, memory against the -m limit, PIDS, table and json', async () => {
  await fx.ok(['run', '-d', '--name', 'busy', '-m', '64m', '--tmpfs', '/t', '--network', 'none', 'busybox', 'sh', '-c',
    'dd if=/dev/zero of=/t/x bs=1M count=16 2>/dev/null; sleep 1000 & while :; do :; done']);
  await new Promise((r) => setTimeout(r, 1000));
  const table = await fx.ok(['stats', '--no-stream']);
  const [header, row, ...rest] = table.split('\n');
  assert.match(header!, /^CONTAINER ID +NAME +CPU % +MEM USAGE \/ LIMIT +MEM % +NET I\/O +BLOCK I\/O +PIDS$/);
  assert.match(row!, /^[0-9a-f]{12} +busy +\d+\.\d\d% +[\d.]+MiB \/ 64MiB +\d+\.\d\d% +0B \/ 0B +\S+ \/ \S+ +2$/);
  assert.deepEqual(rest, ['']);
  const j = JSON.parse(await fx.ok(['stats', '--no-stream', '--format', 'json', 'busy'])) as Record<string, string>;
  assert.deepEqual(Object.keys(j), ['BlockIO', 'CPUPerc', 'Container', 'ID', 'MemPerc', 'MemUsage', 'Name', 'NetIO', 'PIDs']);
  // The busy loop takes most of a CPU; the 16 MiB tmpfs file is charged to the container.
  assert.ok(parseFloat(j.CPUPerc!) > 20, j.CPUPerc);
  assert.ok(parseFloat(j.MemUsage!) >= 16 && parseFloat(j.MemUsage!) < 64, j.MemUsage);
  assert.ok(parseFloat(j.MemPerc!) >= 25, j.MemPerc);
  assert.equal(j.Container, 'busy');
  assert.equal(await fx.ok(['stats', '--no-stream', '--format', '{{.Name}}: {{.PIDs}}']), 'busy: 2\n');
  await fx.ok(['rm', '-f', 'busy']);
  assert.equal(await fx.ok(['stats', '--no-stream', '--format', '{{.Name}}']), '');
});

test("bytesSize prints like Docker's units.BytesSize; CPU % like the Docker CLI", () => {
  for (const [n, s] of [[0, '0B'], [1023, '1023B'], [1024, '1KiB'], [1536, '1.5KiB'], [MiB, '1MiB'], [3.42 * 1024 * MiB, '3.42GiB'], [5.372 * 1024 * 1024 * MiB, '5.372TiB'], [7.62939453125 * 1024 * MiB, '7.629GiB']] as const) {
    assert.equal(bytesSize(n), s, String(n));
  }
  const zero = { cpuNs: 0, systemNs: 0, memUsage: 0, memLimit: 100, netRx: 0, netTx: 0, blkRead: 0, blkWrite: 0, pids: 0 };
  // Half of one of 2 CPUs' worth of host time: 1e9 ns of 4e9 host ns × 2 CPUs = 50 %.
  assert.equal(statsRow(zero, { ...zero, cpuNs: 1e9, systemNs: 4e9, memUsage: 25 }, 2).cpuPercent, 50);
  assert.equal(statsRow(zero, { ...zero, memUsage: 25 }, 2).memPercent, 25);
});
