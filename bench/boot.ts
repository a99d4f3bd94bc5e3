// Benchmark: `drydock iso` / `drydock disk` on a ~200 MB image, and QEMU (TCG) boot to the
// service's first output. Reported beside LinuxKit-style targets (ISO <= 30 s, boot <= 10 s) and
// the floor: the same rootfs through bare mksquashfs + xorriso, which any ISO builder must pay.
// A second, small ISO whose CMD is busybox httpd boots on virtio-net with hostfwd: time to the
// first console output, and to the first HTTP answer from the service through the network.
//
//   scripts/fetch-kernel.sh && node --import tsx bench/boot.ts [runs] [MB]   (default 2 runs, 200 MB)
//
// `update` mode: an update that changes one 1 MB layer of a MB-sized image (default 200), on an
// updatable disk: `drydock os upgrade` (run on the host against the disk's data partition,
// loop-mounted, with `--root`: the same code the machine runs, without TCG's slowdown) versus
// rebuilding the disk (`drydock pull` of v2 + `drydock disk` again) and writing it out whole.
// Time and bytes for both; the registry is `drydock serve` on 127.0.0.1, images pushed by skopeo.
//
//   node --import tsx bench/boot.ts update [MB]
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { ContentStore } from '../src/store/index.js';
import { buildBusyboxRootfs } from '../src/mkimage/busybox-rootfs.js';
import { importRootfs } from '../src/archive/index.js';
import { accelArgs, chooseQemuAccel, type QemuAccel } from '../src/boot/qemu-accel.js';
import { drydockCommand, sh, shell, timed, median, scratchDir, printTable, cleanupDir, PROJECT_ROOT } from './mkimage-common.js';
import { freePort } from '../test/helpers/docker-registry.js';
import { startServe } from '../test/registry/serve.js';
import { ociLayout, pushWithSkopeo, tarLayer, writeTree } from '../test/os/fixture-image.js';
import os from 'node:os';

const MB = 1024 * 1024;

/** Half incompressible (binaries, media), half text-like (scripts, docs): a realistic mix. */
async function synthesize(rootfs: string, totalMB: number): Promise<void> {
  await buildBusyboxRootfs(rootfs);
  const words = 'the quick brown fox jumps over lazy dog container image layer kernel module overlay squashfs boot init service'.split(' ');
  let written = 0;
  for (let d = 0; written < totalMB * MB; d++) {
    const dir = path.join(rootfs, 'usr/share/bench', `d${d}`);
    await fsp.mkdir(dir, { recursive: true });
    for (let f = 0; f < 50 && written < totalMB * MB; f++) {
      const size = 64 * 1024 + (f * 7919) % (256 * 1024);
      let data: Buffer;
      if (f % 2) data = randomBytes(size);
      else {
        const parts: string[] = [];
        let len = 0;
        while (len < size) { const w = words[(len * 31 + f) % words.length]!; parts.push(w); len += w.length + 1; }
        data = Buffer.from(parts.join(' ').slice(0, size));
      }
      await fsp.writeFile(path.join(dir, `f${f}.dat`), data);
      written += size;
    }
  }
}

/** Seconds from spawning QEMU until `marker` appears on the serial console. */
function bootToMarker(accel: QemuAccel, args: string[], marker: string, timeoutMs = 180_000): Promise<{ seconds: number; initSeconds?: number; guestSeconds?: number }> {
  const started = process.hrtime.bigint();
  const child = spawn('qemu-system-x86_64', [...accelArgs(accel), '-m', '512', '-nographic', '-no-reboot', '-monitor', 'none', '-serial', 'stdio', ...args], { stdio: ['ignore', 'pipe', 'ignore'] });
  let out = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`no ${marker} within ${timeoutMs} ms:\n${out.slice(-3000)}`)); }, timeoutMs);
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d: string) => {
      out += d;
      if (new RegExp(`${marker} [0-9.]+ END`).test(out)) {
        const seconds = Number(process.hrtime.bigint() - started) / 1e9;
        clearTimeout(timer);
        child.kill('SIGKILL');
        const init = /\[\s*(\d+\.\d+)\] Run \/init as init process/.exec(out);
        const guest = new RegExp(`${marker} ([0-9.]+) END`).exec(out);
        resolve({ seconds, initSeconds: init ? Number(init[1]) : undefined, guestSeconds: guest ? Number(guest[1]) : undefined });
      }
    });
    child.on('error', reject);
    // A VM must never outlive the bench, whatever ends it.
    process.once('exit', () => child.kill('SIGKILL'));
  });
}

/** Seconds from spawning QEMU to its first console byte and to the first HTTP 200 from 127.0.0.1:port. */
async function bootToHttp(accel: QemuAccel, args: string[], port: number, timeoutMs = 180_000): Promise<{ firstOutput: number; reachable: number }> {
  const started = process.hrtime.bigint();
  const since = () => Number(process.hrtime.bigint() - started) / 1e9;
  const child = spawn('qemu-system-x86_64', [...accelArgs(accel), '-m', '512', '-nographic', '-no-reboot', '-monitor', 'none', '-serial', 'stdio', ...args], { stdio: ['ignore', 'pipe', 'ignore'] });
  process.once('exit', () => child.kill('SIGKILL'));
  let firstOutput = 0;
  child.stdout.once('data', () => { firstOutput = since(); });
  child.stdout.resume();
  try {
    while (since() * 1000 < timeoutMs) {
      const ok = await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(2000) }).then((r) => r.ok, () => false);
      if (ok) return { firstOutput, reachable: since() };
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`the service on 127.0.0.1:${port} was not reachable within ${timeoutMs} ms`);
  } finally {
    child.kill('SIGKILL');
  }
}


export async function main(runs = Number(process.argv[2] ?? 2), sizeMB = Number(process.argv[3] ?? 200)): Promise<void> {
  const kernel = sh(['bash', path.join(PROJECT_ROOT, 'scripts/fetch-kernel.sh')]).trim().split('\n').pop()!;
  const accel = await chooseQemuAccel(path.join(kernel, 'vmlinuz'));
  const dir = scratchDir('drydock-bench-boot-');
  const drydock = drydockCommand();
  try {
    const store = path.join(dir, 'store');
    const rootfs = path.join(dir, 'rootfs');
    await fsp.mkdir(rootfs);
    await synthesize(rootfs, sizeMB);
    const imageBytes = Number(shell(`du -sb ${rootfs} | cut -f1`).trim());
    await importRootfs(await ContentStore.open(store), rootfs, {
      tag: 'bench-boot:latest', changes: ['CMD ["sh","-c","read up idle < /proc/uptime; echo BENCH-MARKER $up END; poweroff -f"]'],
    });

    const webRoot = path.join(dir, 'web-rootfs');
    await fsp.mkdir(webRoot);
    await buildBusyboxRootfs(webRoot);
    await fsp.mkdir(path.join(webRoot, 'www'));
    await fsp.writeFile(path.join(webRoot, 'www/index.html'), 'bench\n');
    await importRootfs(await ContentStore.open(store), webRoot, { tag: 'bench-web:latest', changes: ['CMD ["httpd","-f","-p","80","-h","/www"]'] });
    const webIso = path.join(dir, 'web.iso');
    sh([...drydock, '--root', store, 'iso', 'bench-web', '-o', webIso, '--kernel', kernel, '--firmware', 'bios', '-q']);

    const t: Record<string, number[]> = { iso: [], disk: [], floor: [], bootIso: [], bootDisk: [], initIso: [], guestIso: [], guestDisk: [] };
    const iso = path.join(dir, 'bench.iso');
    const img = path.join(dir, 'bench.img');
    for (let i = 0; i < runs; i++) {
      const isoRun = timed(() => JSON.parse(sh([...drydock, '--root', store, 'iso', 'bench-boot', '-o', iso, '--kernel', kernel, '--json'])));
      t.iso!.push(isoRun.seconds);
      for (const [k, v] of Object.entries(isoRun.value.phases as Record<string, number>)) (t[`iso-${k}`] ??= []).push(v);
      t.disk!.push(timed(() => sh([...drydock, '--root', store, 'disk', 'bench-boot', '-o', img, '--kernel', kernel, '-q'])).seconds);
      // The floor: squashfs of the same tree and an ISO around it, nothing else.
      const floorDir = path.join(dir, `floor${i}`);
      await fsp.mkdir(floorDir);
      t.floor!.push(timed(() => shell(`mksquashfs ${rootfs} ${floorDir}/rootfs.squashfs -noappend -no-progress -quiet -comp zstd -Xcompression-level 3 -b 1M `
        + `&& xorriso -as mkisofs -quiet -o ${floorDir}.iso ${floorDir}`)).seconds);
      await fsp.rm(floorDir, { recursive: true, force: true });
      await fsp.rm(`${floorDir}.iso`, { force: true });
      const b = await bootToMarker(accel, ['-cdrom', iso], 'BENCH-MARKER');
      t.bootIso!.push(b.seconds);
      if (b.initSeconds !== undefined) t.initIso!.push(b.initSeconds);
      if (b.guestSeconds !== undefined) t.guestIso!.push(b.guestSeconds);
      const d = await bootToMarker(accel, ['-drive', `file=${img},format=raw`], 'BENCH-MARKER');
      t.bootDisk!.push(d.seconds);
      if (d.guestSeconds !== undefined) t.guestDisk!.push(d.guestSeconds);
      // The same disk as virtio-blk: SeaBIOS and syslinux then read the kernel and initramfs
      // without the emulated IDE port I/O that dominates the default (IDE) boot under TCG.
      const v = await bootToMarker(accel, ['-drive', `file=${img},format=raw,if=virtio`], 'BENCH-MARKER');
      (t.bootDiskVirtio ??= []).push(v.seconds);
      if (v.guestSeconds !== undefined) (t.guestDiskVirtio ??= []).push(v.guestSeconds);
      const port = await freePort();
      const w = await bootToHttp(accel, ['-cdrom', webIso, '-nic', `user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:${port}-:80`], port);
      (t.webFirstOutput ??= []).push(w.firstOutput);
      (t.webReachable ??= []).push(w.reachable);
    }
    const isoSize = (await fsp.stat(iso)).size;
    const f = (s: number) => `${s.toFixed(1)} s`;
    printTable(`boot media from a ${(imageBytes / 1e6).toFixed(0)} MB image (ISO ${(isoSize / 1e6).toFixed(0)} MB), median of ${runs} runs, QEMU ${accel.toUpperCase()}`, [
      ['drydock iso (unpack, squashfs, initramfs, xorriso)', f(median(t.iso!)), '<= 30 s', `${(median(t.iso!) / median(t.floor!)).toFixed(2)}x floor`],
      ['  of which: unpack layers', f(median(t['iso-unpack']!)), '', ''],
      ['  of which: squashfs + initramfs + top layer', f(median(t['iso-artifacts']!)), '', ''],
      ['  of which: xorriso', f(median(t['iso-media']!)), '', ''],
      ['drydock disk (… FAT + syslinux, ext4, MBR)', f(median(t.disk!)), '<= 30 s', `${(median(t.disk!) / median(t.floor!)).toFixed(2)}x floor`],
      ['floor: mksquashfs + xorriso of the same tree', f(median(t.floor!)), '', '1.00x'],
      ['boot ISO: QEMU start → service output', f(median(t.bootIso!)), '<= 10 s', `guest uptime at service ${median(t.guestIso!).toFixed(1)} s, /init at ${median(t.initIso!).toFixed(1)} s`],
      ['boot disk (IDE): QEMU start → service output', f(median(t.bootDisk!)), '<= 10 s', `guest uptime at service ${median(t.guestDisk!).toFixed(1)} s`],
      ['boot disk (if=virtio): QEMU start → service output', f(median(t.bootDiskVirtio!)), '<= 10 s', `guest uptime at service ${median(t.guestDiskVirtio!).toFixed(1)} s`],
      ['boot ISO, virtio-net: QEMU start → first console output', f(median(t.webFirstOutput!)), '', 'busybox httpd as CMD'],
      ['boot ISO, virtio-net: QEMU start → service reachable (HTTP via hostfwd)', f(median(t.webReachable!)), '<= 10 s', 'DHCP included'],
    ], ['step', 'time', 'target', 'note']);
  } finally {
    cleanupDir(dir);
  }
}

/** Bytes of a file as stored (sparse files count what is allocated). */
const allocated = (file: string) => Number(shell(`du -B1 ${file} | cut -f1`).trim());

export async function mainUpdate(sizeMB = Number(process.argv[3] ?? 200)): Promise<void> {
  const kernel = sh(['bash', path.join(PROJECT_ROOT, 'scripts/fetch-kernel.sh')]).trim().split('\n').pop()!;
  const dir = scratchDir('drydock-bench-update-');
  const drydock = drydockCommand();
  const load = os.loadavg().map((l) => l.toFixed(1)).join(' ');
  const serve = await startServe(['--root', path.join(dir, 'registry'), '--addr', '127.0.0.1:0']);
  const mnt = path.join(dir, 'mnt');
  try {
    const host = new URL(serve.url).host;
    const ref = `${host}/bench/os:stable`;
    const store = path.join(dir, 'store');
    // The base: the ~200 MB tree of the boot bench, one layer; then a 1 MB layer that v2 changes.
    const rootfs = path.join(dir, 'rootfs');
    await fsp.mkdir(rootfs);
    await synthesize(rootfs, sizeMB);
    const base = tarLayer(rootfs, path.join(dir, 'base.tgz'), 'gzip');
    const app = (v: string) => tarLayer(writeTree(path.join(dir, v), { 'opt/app/data': randomBytes(MB / 2).toString('hex') }), path.join(dir, `${v}.tgz`), 'gzip');
    const cmd = ['sh', '-c', 'echo up'];
    const v1 = ociLayout(path.join(dir, 'oci1'), 'v1', [base, app('v1')], cmd);
    const v2 = ociLayout(path.join(dir, 'oci2'), 'v2', [base, app('v2')], cmd);
    pushWithSkopeo(v1, ref);
    sh([...drydock, '--root', store, 'pull', '-q', ref]);
    const img = path.join(dir, 'os.img');
    const first = timed(() => JSON.parse(sh([...drydock, '--root', store, 'disk', ref, '-o', img, '--kernel', kernel, '--updates-from', ref, '--insecure-registry', host, '--json'])));
    const imageBytes = v1.layers.reduce((n, l) => n + l.size, 0);
    pushWithSkopeo(v2, ref);

    // drydock os upgrade against the disk's data partition.
    await fsp.mkdir(mnt);
    const dataStart = first.value.layout.dataStart as number;
    sh(['mount', '-o', `loop,offset=${dataStart}`, img, mnt]);
    const usedBefore = Number(shell(`df -B1 --output=used ${mnt} | tail -n 1`).trim());
    const up = timed(() => sh([...drydock, 'os', 'upgrade', '--root', mnt, '-q']));
    shell('sync');
    const usedAfter = Number(shell(`df -B1 --output=used ${mnt} | tail -n 1`).trim());
    const record = JSON.parse(sh([...drydock, 'os', 'status', '--json', '--root', mnt])).lastUpgrade as { bytes: number; layersFetched: number; layersReused: number };
    sh(['umount', mnt]);

    // The other way: pull v2 on the build host (it has the base layer), rebuild the disk, write it out whole.
    const pull = timed(() => sh([...drydock, '--root', store, 'pull', '-q', ref]));
    const img2 = path.join(dir, 'os2.img');
    const rebuild = timed(() => sh([...drydock, '--root', store, 'disk', ref, '-o', img2, '--kernel', kernel, '--updates-from', ref, '--insecure-registry', host, '-q']));
    const target = path.join(dir, 'flashed.img');
    const flash = timed(() => sh(['dd', `if=${img2}`, `of=${target}`, 'bs=4M', 'conv=sparse,fsync', 'status=none']));
    const f = (sec: number) => `${sec.toFixed(1)} s`;
    const mb = (b: number) => `${(b / 1e6).toFixed(1)} MB`;
    printTable(`an update of one 1 MB layer of a ${mb(imageBytes)} (compressed) image; load average ${load} on ${os.cpus().length} CPUs`, [
      ['drydock os upgrade --root (the data partition, loop-mounted)', f(up.seconds), `${mb(record.bytes)} downloaded (${record.layersFetched} layer fetched, ${record.layersReused} reused)`, `${mb(usedAfter - usedBefore)} written to the data partition`],
      ['rebuild: drydock pull v2 (build host has the base)', f(pull.seconds), `${mb(v2.layers[1]!.size)} layer`, ''],
      ['rebuild: drydock disk again', f(rebuild.seconds), '', `disk ${mb(allocated(img2))} allocated`],
      ['rebuild: write the disk out (dd conv=sparse,fsync)', f(flash.seconds), '', `${mb(allocated(img2))} to write to the machine`],
      ['first drydock disk --updates-from (for scale)', f(first.seconds), '', ''],
    ], ['path', 'time', 'network', 'disk']);
  } finally {
    shell(`mountpoint -q ${mnt} && umount ${mnt} || true`);
    await serve.stop();
    cleanupDir(dir);
  }
}

if (process.argv[1]?.endsWith('boot.ts') || process.argv[1]?.endsWith('boot.js')) {
  if (process.argv[2] === 'update') await mainUpdate(); else await main();
}
