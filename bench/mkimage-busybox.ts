// Benchmark: the busybox base image. drydock mkimage busybox (layout + layer + config + tag in
// one command) against the usual shell pipeline with podman: lay out the same rootfs, then
// `tar --numeric-owner -c . | podman import --change 'CMD ["sh"]' -`. Prints medians and ratios.
//
//   node --import tsx bench/mkimage-busybox.ts [runs]      (default 5 runs each)
import path from 'node:path';
import { promises as fsp } from 'node:fs';
import { buildBusyboxRootfs } from '../src/mkimage/busybox-rootfs.js';
import os from 'node:os';
import { drydockCommand, measure, quote, median, scratchDir, isolatedPodman, printTable, cleanupDir, type Timing } from './mkimage-common.js';

export async function main(runs = Number(process.argv[2] ?? 5)): Promise<void> {
  const dir = scratchDir('drydock-bench-mkimage-bb-');
  const podman = await isolatedPodman(dir);
  const drydock = drydockCommand();
  const rootfs = path.join(dir, 'rootfs');
  await fsp.mkdir(rootfs);
  await buildBusyboxRootfs(rootfs);
  const t: Record<string, Timing[]> = { full: [], rootfs: [], podman: [], podmanFull: [] };
  const p = quote(podman.argv);
  try {
    for (let i = 0; i < runs; i++) {
      const store = path.join(dir, `store${i}`);
      t.full!.push(measure(quote([...drydock, '--root', store, 'mkimage', 'busybox', '-q'])));
      t.rootfs!.push(measure(quote([...drydock, '--root', store, 'mkimage', 'rootfs', rootfs, '-t', 'bb:dir', '-q', '-c', 'CMD ["sh"]'])));
      t.podman!.push(measure(`tar -C ${rootfs} --numeric-owner -c . | ${p} import -q --change 'CMD ["sh"]' - bb:${i}`));
      // The peer's equivalent of the whole command: lay out the rootfs with busybox --install, then import.
      const manual = path.join(dir, `manual${i}`);
      t.podmanFull!.push(measure(
        `mkdir -p ${manual}/bin ${manual}/etc ${manual}/tmp && cp /bin/busybox ${manual}/bin/ && chroot ${manual} /bin/busybox --install -s `
        + `&& printf 'root:x:0:0:root:/root:/bin/sh\\n' > ${manual}/etc/passwd && printf 'root:x:0:\\n' > ${manual}/etc/group && chmod 1777 ${manual}/tmp `
        + `&& tar -C ${manual} --numeric-owner -c . | ${p} import -q --change 'CMD ["sh"]' - bbfull:${i}`));
    }
    const wall = (k: string) => median(t[k]!.map((x) => x.wall));
    const cpu = (k: string) => median(t[k]!.map((x) => x.cpu));
    const row = (label: string, k: string, peer: string): [string, ...string[]] =>
      [label, `${wall(k).toFixed(2)} s`, `${cpu(k).toFixed(2)} s`, k === peer ? '1.00x' : `${(wall(k) / wall(peer)).toFixed(2)}x`, k === peer ? '1.00x' : `${(cpu(k) / cpu(peer)).toFixed(2)}x`];
    printTable(`mkimage busybox, median of ${runs} runs (${drydock.includes('--import') ? 'drydock from source via tsx' : `compiled drydock: ${drydock[1]}`}); load average ${os.loadavg()[0]!.toFixed(1)}`, [
      row('drydock mkimage busybox', 'full', 'podmanFull'),
      row('busybox --install + tar | podman import', 'podmanFull', 'podmanFull'),
      row('drydock mkimage rootfs DIR', 'rootfs', 'podman'),
      row('tar DIR | podman import', 'podman', 'podman'),
    ], ['command', 'wall', 'cpu (user+sys)', 'wall vs podman', 'cpu vs podman']);
  } finally {
    podman.cleanup();
    cleanupDir(dir);
  }
}

if (process.argv[1]?.endsWith('mkimage-busybox.ts') || process.argv[1]?.endsWith('mkimage-busybox.js')) await main();
