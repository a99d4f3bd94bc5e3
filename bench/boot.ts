// Benchmark: `drydock iso` / `drydock disk` on a ~200 MB image, and QEMU (TCG) boot to the
// service's first output. Reported beside LinuxKit-style targets (ISO <= 30 s, boot <= 10 s) and
// the floor: the same rootfs through bare mksquashfs + xorriso, which any ISO builder must pay.
// A second, small ISO whose CMD is busybox httpd boots on virtio-net with hostfwd: time to the
// first console output, and to the first HTTP answer from the service through the network.
//
//   scripts/fetch-kernel.sh && node --import tsx bench/boot.ts [runs] [MB]   (default 2 runs, 200 MB)
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

if (process.argv[1]?.endsWith('boot.ts') || process.argv[1]?.endsWith('boot.js')) await main();
