// Benchmark: the busybox base image. drydock mkimage busybox (layout + layer + config + tag in
// one command) against the usual shell pipeline with podman: lay out the same rootfs, then
// `tar --numeric-owner -c . | podman import --change 'CMD ["sh"]' -`. Prints medians and ratios.
//
//   node --import tsx bench/mkimage-busybox.ts [runs]      (default 5 runs each)
import path from 'node:path';
import { promises as fsp } from 'node:fs';
import { buildBusyboxRootfs } from '../src/mkimage/busybox-rootfs.js';
import { drydockCommand, sh, shell, timed, median, scratchDir, isolatedPodman, printTable, cleanupDir } from './mkimage-common.js';

export async function main(runs = Number(process.argv[2] ?? 5)): Promise<void> {
  const dir = scratchDir('drydock-bench-mkimage-bb-');
  const podman = isolatedPodman(dir);
  const drydock = drydockCommand();
  const rootfs = path.join(dir, 'rootfs');
  await fsp.mkdir(rootfs);
  await buildBusyboxRootfs(rootfs);
  const t: Record<string, number[]> = { full: [], rootfs: [], podman: [], podmanFull: [] };
  try {
    for (let i = 0; i < runs; i++) {
      const store = path.join(dir, `store${i}`);
      t.full!.push(timed(() => sh([...drydock, '--root', store, 'mkimage', 'busybox', '-q'])).seconds);
      t.rootfs!.push(timed(() => sh([...drydock, '--root', store, 'mkimage', 'rootfs', rootfs, '-t', 'bb:dir', '-q', '-c', 'CMD ["sh"]'])).seconds);
      t.podman!.push(timed(() => shell(`tar -C ${rootfs} --numeric-owner -c . | ${podman.argv.join(' ')} import -q --change 'CMD ["sh"]' - bb:${i}`)).seconds);
      // The peer's equivalent of the whole command: lay out the rootfs with busybox --install, then import.
      const manual = path.join(dir, `manual${i}`);
      t.podmanFull!.push(timed(() => shell(
        `mkdir -p ${manual}/bin ${manual}/etc ${manual}/tmp && cp /bin/busybox ${manual}/bin/ && chroot ${manual} /bin/busybox --install -s `
        + `&& printf 'root:x:0:0:root:/root:/bin/sh\\n' > ${manual}/etc/passwd && printf 'root:x:0:\\n' > ${manual}/etc/group && chmod 1777 ${manual}/tmp `
        + `&& tar -C ${manual} --numeric-owner -c . | ${podman.argv.join(' ')} import -q --change 'CMD ["sh"]' - bbfull:${i}`)).seconds);
    }
    const f = (s: number) => `${s.toFixed(3)} s`;
    printTable(`mkimage busybox, median of ${runs} runs (${drydock.includes('--import') ? 'drydock from source via tsx' : 'compiled drydock'})`, [
      ['drydock mkimage busybox', f(median(t.full!)), `${(median(t.full!) / median(t.podmanFull!)).toFixed(2)}x`],
      ['busybox --install + tar | podman import', f(median(t.podmanFull!)), '1.00x'],
      ['drydock mkimage rootfs DIR', f(median(t.rootfs!)), `${(median(t.rootfs!) / median(t.podman!)).toFixed(2)}x`],
      ['tar DIR | podman import', f(median(t.podman!)), '1.00x'],
    ], ['command', 'time', 'vs podman']);
  } finally {
    podman.cleanup();
    cleanupDir(dir);
  }
}

if (process.argv[1]?.endsWith('mkimage-busybox.ts') || process.argv[1]?.endsWith('mkimage-busybox.js')) await main();
