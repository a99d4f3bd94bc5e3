// Benchmark: which layer format boots an updatable disk faster? One image (a busybox base, a
// layer with the host's /usr/lib/python3.11, ~5000 files and 54 MB, and the app) made into two
// disks with `drydock disk --updates-from --layer-format squashfs|erofs`, each booted `rounds`
// times under QEMU with the test kernel (TCG here). Measured from QEMU's start: the drydock
// init's "service started", and the app's READY after it has read 300 of the tree's files (a
// service's start-up reads like that). The machine's load average is printed with the table:
// the boots share the host's CPUs with whatever else runs.
//
//   scripts/fetch-kernel.sh && node --import tsx bench/boot-layer-formats.ts [rounds]   (default 2)
import { spawn } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ContentStore } from '../src/store/index.js';
import { buildBusyboxRootfs } from '../src/mkimage/busybox-rootfs.js';
import { importRootfs } from '../src/archive/index.js';
import { accelArgs, chooseQemuAccel } from '../src/boot/qemu-accel.js';
import { drydockCommand, sh, scratchDir, printTable, cleanupDir, PROJECT_ROOT } from './mkimage-common.js';

const rounds = Number(process.argv[2] ?? 2);
const TREE = '/usr/lib/python3.11';
const FORMATS = ['squashfs', 'erofs'] as const;
const work = scratchDir('drydock-bench-formats-');
const kernel = process.env.DRYDOCK_KERNEL_CACHE ?? path.join(PROJECT_ROOT, 'test/.cache/kernel');

const APP = `#!/bin/sh
find /usr/lib/python3.11 -name '*.py' | head -n 300 | xargs cat > /dev/null
echo "APP-READY uptime=$(cut -d' ' -f1 /proc/uptime)"
sleep 600
`;

interface Boot { serviceStarted: number; ready: number; guestReady: number }

function boot(disk: string, accel: Awaited<ReturnType<typeof chooseQemuAccel>>): Promise<Boot> {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const child = spawn('qemu-system-x86_64', [...accelArgs(accel), '-m', '512', '-nographic', '-no-reboot', '-monitor', 'none', '-serial', 'stdio',
      '-drive', `file=${disk},format=raw,if=virtio`, '-nic', 'none'], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    let started = 0;
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`no APP-READY within 15 min:\n${out.slice(-3000)}`)); }, 15 * 60_000);
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d: string) => {
      out += d;
      if (!started && /service started \(pid/.test(out)) started = Date.now() - t0;
      const m = /APP-READY uptime=([\d.]+)\s/.exec(out);
      if (m && started) {
        clearTimeout(timer);
        child.kill('SIGKILL');
        resolve({ serviceStarted: started / 1000, ready: (Date.now() - t0) / 1000, guestReady: Number(m[1]) });
      }
    });
  });
}

async function main(): Promise<void> {
  const root = path.join(work, 'store');
  const store = await ContentStore.open(root);
  const rootfs = path.join(work, 'rootfs');
  await fsp.mkdir(rootfs);
  await buildBusyboxRootfs(rootfs);
  await importRootfs(store, rootfs, { tag: 'bench-base:latest' });
  const ctx = path.join(work, 'ctx');
  await fsp.mkdir(ctx);
  sh(['cp', '-a', TREE, path.join(ctx, 'py')]);
  await fsp.writeFile(path.join(ctx, 'app.sh'), APP);
  await fsp.writeFile(path.join(ctx, 'Dockerfile'), 'FROM bench-base\nCOPY py /usr/lib/python3.11\nCOPY app.sh /app.sh\nCMD ["sh", "/app.sh"]\n');
  const env = { ...process.env, DRYDOCK_ROOT: root };
  sh([...drydockCommand(), 'build', '-q', '-t', 'bench-formats:1', ctx], { env });
  // A stand-in for the node runtime (the top layer is a directory either way, not a layer file).
  const top = path.join(work, 'top');
  await fsp.mkdir(path.join(top, '.drydock/drydock/bin'), { recursive: true });
  await fsp.writeFile(path.join(top, '.drydock/drydock/bin/drydock'), '#!/bin/sh\nexit 0\n', { mode: 0o755 });

  const disks: Record<string, { disk: string; bytes: number }> = {};
  for (const f of FORMATS) {
    const disk = path.join(work, `${f}.img`);
    sh([...drydockCommand(), 'disk', 'bench-formats:1', '-o', disk, '--kernel', kernel, '--updates-from', '10.0.2.2:5000/bench:1',
      '--layer-format', f, '--top-layer', top, '-q'], { env });
    const layers = sh(['debugfs', '-R', 'ls -l /os/layers', ...(await dataPartition(disk))]);
    const bytes = [...layers.matchAll(/\s(\d+)\s+\S+\s+\S+\s+[0-9a-f]{64}\.\w+/g)].reduce((n, m) => n + Number(m[1]), 0);
    disks[f] = { disk, bytes };
  }
  const accel = await chooseQemuAccel(path.join(kernel, 'vmlinuz'));
  const rows: [string, ...string[]][] = [];
  for (let r = 1; r <= rounds; r++) {
    for (const f of FORMATS) {
      const load = os.loadavg()[0]!.toFixed(1);
      const b = await boot(disks[f]!.disk, accel);
      rows.push([`${f} #${r}`, b.serviceStarted.toFixed(1), b.ready.toFixed(1), b.guestReady.toFixed(1), load, (disks[f]!.bytes / 1048576).toFixed(1)]);
    }
  }
  printTable(`updatable disk boot by layer format (${accel}), image = busybox + ${TREE} + app`, rows,
    ['format', 'service started s', 'app ready s', 'guest uptime at ready s', 'load avg', 'layer files MB']);
  await cleanupDir(work);
}

/** debugfs arguments for the disk's data partition (partition 2), via a partition offset image. */
async function dataPartition(disk: string): Promise<string[]> {
  const table = JSON.parse(sh(['sfdisk', '--json', disk])) as { partitiontable: { sectorsize?: number; partitions: { start: number; size: number }[] } };
  const p = table.partitiontable.partitions[1]!;
  const sector = table.partitiontable.sectorsize ?? 512;
  const part = `${disk}.data`;
  sh(['dd', `if=${disk}`, `of=${part}`, `bs=${sector}`, `skip=${p.start}`, `count=${p.size}`, 'status=none']);
  return [part];
}

await main();
