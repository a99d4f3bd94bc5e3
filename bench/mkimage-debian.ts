// Benchmark (downloads ~2 x 40 MB from the Debian mirror, a few minutes): drydock mkimage debian
// against the plain pipeline it replaces:
//   debootstrap --variant=minbase bookworm DIR MIRROR && tar -C DIR --numeric-owner -c . | podman import - debian
// Reports wall time, image size (uncompressed and compressed layer) and package count for both.
//
//   node --import tsx bench/mkimage-debian.ts [--suite bookworm] [--mirror URL]
import path from 'node:path';
import { hostDebianMirror } from '../src/mkimage/mirror.js';
import { drydockCommand, sh, shell, timed, scratchDir, isolatedPodman, printTable, cleanupDir } from './mkimage-common.js';

function flag(name: string, fallback?: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
}

export async function main(): Promise<void> {
  const suite = flag('suite', 'bookworm')!;
  const mirror = flag('mirror') ?? (await hostDebianMirror());
  const dir = scratchDir('drydock-bench-mkimage-deb-');
  const podman = await isolatedPodman(dir);
  const drydock = drydockCommand();
  try {
    const ours = timed(() => JSON.parse(sh([...drydock, '--root', path.join(dir, 'store'), 'mkimage', 'debian', '--suite', suite, '--mirror', mirror, '--format', 'json', '-t', `debian:${suite}`])) as
      { size: number; compressedSize: number; packages?: { count: number } });
    const target = path.join(dir, 'rootfs');
    const peer = timed(() => shell(
      `debootstrap --variant=minbase ${suite} ${target} ${mirror} >/dev/null `
      + `&& tar -C ${target} --numeric-owner -c . | ${podman.argv.join(' ')} import -q --change 'CMD ["bash"]' - debian:${suite}`));
    const peerPackages = Number(shell(`grep -c '^Status: install ok installed' ${target}/var/lib/dpkg/status`).trim());
    const peerSize = Number(sh([...podman.argv, 'image', 'inspect', '--format', '{{.Size}}', `debian:${suite}`]).trim());
    const peerTar = Number(shell(`tar -C ${target} --numeric-owner -c . | wc -c`).trim());
    const peerGz = Number(shell(`tar -C ${target} --numeric-owner -c . | gzip -6 | wc -c`).trim());
    const mb = (n: number) => `${(n / 1e6).toFixed(1)} MB`;
    printTable(`mkimage debian ${suite} (minbase) from ${mirror}`, [
      ['drydock mkimage debian', `${ours.seconds.toFixed(1)} s`, mb(ours.value.size), mb(ours.value.compressedSize), String(ours.value.packages?.count ?? '?')],
      ['debootstrap + tar | podman import', `${peer.seconds.toFixed(1)} s`, `${mb(peerTar)} (podman: ${mb(peerSize)})`, `${mb(peerGz)} (gzip -6 of the tar)`, String(peerPackages)],
    ], ['pipeline', 'time', 'uncompressed', 'compressed layer', 'packages']);
    console.log(`\ntime ratio drydock/peer: ${(ours.seconds / peer.seconds).toFixed(2)}x; size ratio (uncompressed): ${(ours.value.size / peerTar).toFixed(2)}x`);
  } finally {
    podman.cleanup();
    // debootstrap's target may still hold /proc if it was interrupted.
    shell(`for m in $(grep -o " ${dir}[^ ]*" /proc/self/mountinfo | sort -r); do umount -l "$m"; done`, { stdio: 'ignore' });
    cleanupDir(dir);
  }
}

if (process.argv[1]?.endsWith('mkimage-debian.ts') || process.argv[1]?.endsWith('mkimage-debian.js')) await main();
