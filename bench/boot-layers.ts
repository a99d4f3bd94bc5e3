// Benchmark: squashfs or erofs for an updatable disk's layer files (os/layers/<diffid>.*)?
// One tree (the host's /usr/lib/python3.11: ~5000 files, 54 MB, many small ones, like a layer
// of a real image) packed both ways: squashfs as drydock packs layers (zstd level 3, 1 MiB
// blocks), squashfs with lz4 (to tell the format from the compressor) and erofs (lz4hc).
// Timed inside a VM with the test kernel (QEMU, TCG here), page cache dropped before each step:
// loop mount, reading the first 200 files (a boot reads a few), reading every file.
//
//   scripts/fetch-kernel.sh && node --import tsx bench/boot-layers.ts [rounds]   (default 2)
import { spawn } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { ContentStore } from '../src/store/index.js';
import { buildBusyboxRootfs } from '../src/mkimage/busybox-rootfs.js';
import { importRootfs } from '../src/archive/index.js';
import { accelArgs, chooseQemuAccel } from '../src/boot/qemu-accel.js';
import { drydockCommand, sh, scratchDir, printTable, cleanupDir, PROJECT_ROOT } from './mkimage-common.js';

const rounds = Number(process.argv[2] ?? 2);
const TREE = '/usr/lib/python3.11';
const work = scratchDir('drydock-bench-layers-');
const kernel = process.env.DRYDOCK_KERNEL_CACHE ?? path.join(PROJECT_ROOT, 'test/.cache/kernel');

const STARTUP = `#!/bin/sh
modprobe erofs
t() { cut -d' ' -f1 /proc/uptime; }
d() { awk "BEGIN { printf \\"%.2f\\", $2 - $1 }"; }
for round in $(seq ${rounds}); do
  for fmt in squashfs squashfs-lz4 erofs; do
    fs=\${fmt%-lz4}
    mkdir -p /mnt/$fmt
    sync; echo 3 > /proc/sys/vm/drop_caches
    a=$(t); mount -t $fs -o loop,ro /data/layer.$fmt /mnt/$fmt || { echo "BENCH $fmt: mount failed"; continue; }; b=$(t)
    find /mnt/$fmt -type f | head -n 200 | xargs cat > /dev/null; c=$(t)
    umount /mnt/$fmt; sync; echo 3 > /proc/sys/vm/drop_caches
    mount -t $fs -o loop,ro /data/layer.$fmt /mnt/$fmt; e=$(t)
    find /mnt/$fmt -type f -exec cat {} + > /dev/null; f=$(t)
    umount /mnt/$fmt
    echo "BENCH $fmt round=$round mount=$(d $a $b) first200=$(d $b $c) all=$(d $e $f)"
  done
done
echo BENCH-DONE
`;

async function main(): Promise<void> {
  const data = path.join(work, 'data');
  await fsp.mkdir(data);
  sh(['mksquashfs', TREE, path.join(data, 'layer.squashfs'), '-noappend', '-no-progress', '-quiet', '-comp', 'zstd', '-Xcompression-level', '3', '-b', '1M']);
  sh(['mksquashfs', TREE, path.join(data, 'layer.squashfs-lz4'), '-noappend', '-no-progress', '-quiet', '-comp', 'lz4', '-Xhc', '-b', '1M']);
  sh(['mkfs.erofs', '-zlz4hc', path.join(data, 'layer.erofs'), TREE]);
  const sizes: Record<string, number> = {};
  for (const f of ['squashfs', 'squashfs-lz4', 'erofs']) sizes[f] = (await fsp.stat(path.join(data, `layer.${f}`))).size;
  const dataImg = path.join(work, 'data.img');
  sh(['truncate', '-s', `${Math.ceil(Object.values(sizes).reduce((a, b) => a + b, 0) / 1048576) + 64}M`, dataImg]);
  sh(['mkfs.ext4', '-q', '-F', '-L', 'ddlayers', '-d', data, dataImg]);

  const rootfs = path.join(work, 'rootfs');
  await fsp.mkdir(rootfs);
  await buildBusyboxRootfs(rootfs);
  const root = path.join(work, 'store');
  const store = await ContentStore.open(root);
  await importRootfs(store, rootfs, { tag: 'bench-layers:latest', changes: ['CMD ["sleep", "600"]'] });
  await fsp.writeFile(path.join(work, 'startup.sh'), STARTUP);
  const iso = path.join(work, 'bench.iso');
  sh([...drydockCommand(), 'iso', 'bench-layers', '-o', iso, '--kernel', kernel, '--firmware', 'bios', '--mount', 'ddlayers:/data',
    '--startup-script', path.join(work, 'startup.sh'), '-q'], { env: { ...process.env, DRYDOCK_ROOT: root } });

  const accel = await chooseQemuAccel(path.join(kernel, 'vmlinuz'));
  const out = await new Promise<string>((resolve, reject) => {
    const child = spawn('qemu-system-x86_64', [...accelArgs(accel), '-m', '512', '-nographic', '-no-reboot', '-monitor', 'none', '-serial', 'stdio',
      '-cdrom', iso, '-drive', `file=${dataImg},format=raw,if=virtio`, '-nic', 'none'], { stdio: ['ignore', 'pipe', 'inherit'] });
    let console = '';
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`no BENCH-DONE within 20 min:\n${console.slice(-3000)}`)); }, 20 * 60_000);
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d: string) => {
      console += d;
      if (/BENCH-DONE/.test(console)) { clearTimeout(timer); child.kill('SIGKILL'); resolve(console); }
    });
  });
  const rows: [string, ...string[]][] = [];
  for (const m of out.matchAll(/BENCH ([\w-]+) round=(\d+) mount=([\d.]+) first200=([\d.]+) all=([\d.]+)/g)) {
    rows.push([`${m[1]} #${m[2]}`, m[3]!, m[4]!, m[5]!, (sizes[m[1]!]! / 1048576).toFixed(1)]);
  }
  printTable(`layer file formats under the test kernel (${accel}), ${TREE}`, rows, ['format', 'mount s', 'first 200 files s', 'all files s', 'size MB']);
  await cleanupDir(work);
}

await main();
