// Benchmark: import, save, load and export of a ~200 MB root filesystem, drydock against podman
// in the same run on the same input. Prints MB/s (input tar size / wall time, median of N runs)
// and the drydock/podman throughput ratio (> 1 means drydock is faster).
//
//   node --import tsx bench/import-export.ts [runs] [sizeMB]     (default 3 runs, 200 MB)
//   bash bench/import-export.sh                                  (same, from anywhere)
//
// The tree is synthetic but deterministic (seeded PRNG): a mix of large partly compressible
// binaries, mid-size files and many small text files, roughly like a distro rootfs.
import path from 'node:path';
import { promises as fsp, statSync } from 'node:fs';
import { drydockCommand, sh, shell, timed, median, scratchDir, isolatedPodman, printTable, cleanupDir } from './mkimage-common.js';

/** xorshift32: the same bytes on every machine. */
function prng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => { x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0; return x; };
}

/** Half random, half repetitive text: compresses about 2:1, like binaries plus docs. */
function content(size: number, rand: () => number): Buffer {
  const buf = Buffer.alloc(size);
  const words = ['lib', 'usr', 'share', 'config', 'value', 'true', 'false', 'path', '\n', ' ', '=', '0x1f'];
  let i = 0;
  while (i < size) {
    const run = 256 + (rand() % 3840);
    if (rand() & 1) {
      for (let j = 0; j < run && i < size; j += 4) { buf.writeUInt32LE(rand(), Math.min(i, size - 4)); i += 4; }
    } else {
      for (let j = 0; j < run && i < size;) { const w = words[rand() % words.length]!; i += buf.write(w, i); j += w.length; }
    }
  }
  return buf;
}

export async function makeTree(dir: string, totalMB: number): Promise<number> {
  const rand = prng(42);
  const target = totalMB * 1_000_000;
  let bytes = 0;
  let n = 0;
  const sizes = [[0.5, 2_000_000, 8_000_000], [0.35, 16_000, 256_000], [0.15, 100, 4_000]] as const;
  for (const [share, min, max] of sizes) {
    let budget = target * share;
    while (budget > 0) {
      const size = Math.min(Math.ceil(budget), min + (rand() % (max - min)));
      const sub = path.join(dir, `usr/lib/pkg${n % 97}`, `d${n % 7}`);
      await fsp.mkdir(sub, { recursive: true });
      await fsp.writeFile(path.join(sub, `file${n}.bin`), content(size, rand));
      budget -= size;
      bytes += size;
      n++;
    }
  }
  return bytes;
}

export async function main(runs = Number(process.argv[2] ?? 3), sizeMB = Number(process.argv[3] ?? 200)): Promise<void> {
  const dir = scratchDir('drydock-bench-import-export-');
  const podman = await isolatedPodman(dir);
  const pm = podman.argv.join(' ');
  const drydock = drydockCommand();
  const store = path.join(dir, 'store');
  try {
    const tree = path.join(dir, 'tree');
    await fsp.mkdir(tree);
    await makeTree(tree, sizeMB);
    const rootfsTar = path.join(dir, 'rootfs.tar');
    shell(`tar -C ${tree} --numeric-owner -cf ${rootfsTar} .`);
    const mb = statSync(rootfsTar).size / 1e6;
    const t: Record<string, number[]> = { dImport: [], pImport: [], dSave: [], pSave: [], dLoad: [], pLoad: [], dExport: [], pExport: [] };
    for (let i = 0; i < runs; i++) {
      // Fresh stores each run: nothing is deduplicated away.
      shell(`rm -rf ${store}; ${pm} system reset -f >/dev/null 2>&1 || true`);
      t.dImport!.push(timed(() => sh([...drydock, '--root', store, 'import', rootfsTar, 'bench:1', '-q'])).seconds);
      t.pImport!.push(timed(() => shell(`${pm} import -q ${rootfsTar} bench:1 >/dev/null`)).seconds);
      const dOut = path.join(dir, 'd.tar');
      const pOut = path.join(dir, 'p.tar');
      await fsp.rm(dOut, { force: true });
      await fsp.rm(pOut, { force: true });
      t.dSave!.push(timed(() => sh([...drydock, '--root', store, 'save', 'bench:1', '-o', dOut])).seconds);
      t.pSave!.push(timed(() => shell(`${pm} save -q -o ${pOut} bench:1`)).seconds);
      shell(`rm -rf ${store}-load; ${pm} rmi -f bench:1 >/dev/null`);
      t.dLoad!.push(timed(() => sh([...drydock, '--root', `${store}-load`, 'load', '-q', '-i', dOut])).seconds);
      t.pLoad!.push(timed(() => shell(`${pm} load -q -i ${pOut} >/dev/null`)).seconds);
      const dFlat = path.join(dir, 'd-flat.tar');
      await fsp.rm(dFlat, { force: true });
      t.dExport!.push(timed(() => sh([...drydock, '--root', store, 'export', 'bench:1', '-o', dFlat])).seconds);
      // podman exports containers: create one (not started) and export its filesystem.
      t.pExport!.push(timed(() => shell(`cid=$(${pm} create bench:1 true) && ${pm} export -o ${path.join(dir, 'p-flat.tar')} $cid && ${pm} rm $cid >/dev/null`)).seconds);
    }
    const rate = (xs: number[]) => mb / median(xs);
    const row = (label: string, d: number[], p: number[], peer: string): [string, ...string[]][] => [
      [`drydock ${label}`, `${median(d).toFixed(2)} s`, `${rate(d).toFixed(1)} MB/s`, `${(rate(d) / rate(p)).toFixed(2)}x`],
      [peer, `${median(p).toFixed(2)} s`, `${rate(p).toFixed(1)} MB/s`, '1.00x'],
    ];
    printTable(`${mb.toFixed(0)} MB rootfs tar, median of ${runs} runs, ${drydock.includes('--import') ? 'drydock from source via tsx' : 'compiled drydock'}`, [
      ...row('import', t.dImport!, t.pImport!, 'podman import'),
      ...row('save (docker-archive)', t.dSave!, t.pSave!, 'podman save (docker-archive)'),
      ...row('load', t.dLoad!, t.pLoad!, 'podman load'),
      ...row('export', t.dExport!, t.pExport!, 'podman create + export'),
    ], ['command', 'time', 'throughput', 'vs podman']);
  } finally {
    podman.cleanup();
    cleanupDir(dir);
  }
}

if (process.argv[1]?.endsWith('import-export.ts') || process.argv[1]?.endsWith('import-export.js')) await main();
