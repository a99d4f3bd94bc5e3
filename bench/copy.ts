// Registry-to-registry copy and pull-into-store of a ~200 MB multi-layer image, drydock side by
// side with `skopeo copy` in the same run, printing time ratios (target: drydock <= 0.9x skopeo).
//
//   node --import tsx bench/copy.ts            # DRYDOCK_BENCH_MB=200 DRYDOCK_BENCH_LAYERS=8 DRYDOCK_BENCH_ROUNDS=3
//
// Both tools run as CLI processes (drydock bundled with esbuild first, so neither pays for a
// TypeScript loader), against distribution 2.8 registries on 127.0.0.1. Every timed run gets a
// fresh destination (new registry / empty store / empty dir), so nothing is skipped or mounted.
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { ContentStore } from '../src/store/index.js';
import { digestOf, MediaType, type ImageConfig, type ImageManifest } from '../src/image/index.js';
import * as client from '../src/client/index.js';
import { startDistribution, type DistributionRegistry } from '../test/helpers/docker-registry.js';
import { tarOf } from '../test/client/fixtures.js';
import { tempDir, requireTool, PROJECT_ROOT } from '../test/helpers/env.js';

const MB = Number(process.env.DRYDOCK_BENCH_MB ?? 200);
const LAYERS = Number(process.env.DRYDOCK_BENCH_LAYERS ?? 8);
const ROUNDS = Number(process.env.DRYDOCK_BENCH_ROUNDS ?? 3);

/**
 * A runnable drydock CLI: compiled, the installed bin (bin/drydock.js, which runs the bundles of
 * `npm run build` with their code cache; dist/src when only tsc ran), else an esbuild bundle next
 * to node_modules.
 */
function drydockCommand(): string[] {
  const here = fileURLToPath(import.meta.url);
  if (!here.endsWith('.ts')) {
    if (existsSync(path.join(PROJECT_ROOT, 'dist/cli/drydock.cjs'))) return [process.execPath, path.join(PROJECT_ROOT, 'bin/drydock.js')];
    return [process.execPath, path.join(PROJECT_ROOT, 'dist/src/cli/main.js')];
  }
  // Split at the CLI's lazy imports, like the compiled dist/ (only the command's modules load).
  const outdir = path.join(PROJECT_ROOT, 'node_modules/.cache/drydock-bench');
  rmSync(outdir, { recursive: true, force: true });
  const r = spawnSync(path.join(PROJECT_ROOT, 'node_modules/.bin/esbuild'), [
    path.join(PROJECT_ROOT, 'src/cli/main.ts'), '--bundle', '--splitting', '--platform=node', '--format=esm', '--target=node20',
    '--packages=external', `--outdir=${outdir}`, '--log-level=error',
  ], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`esbuild failed: ${r.stderr}`);
  writeFileSync(path.join(outdir, 'package.json'), '{"type":"module"}\n');
  // main.ts runs only when invoked as .../drydock(.js) or cli/main.js; give the entry that name.
  const entry = path.join(outdir, 'drydock.js');
  renameSync(path.join(outdir, 'main.js'), entry);
  const check = spawnSync(process.execPath, [entry, '--version'], { encoding: 'utf8' });
  if (check.status !== 0 || !check.stdout.trim()) throw new Error(`bundled drydock does not run: ${check.stderr}`);
  return [process.execPath, entry];
}

function run(cmd: string[], env: NodeJS.ProcessEnv = {}): Promise<number> {
  const t0 = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    const childEnv = { ...process.env, ...env };
    // NODE_EXTRA_CA_CERTS (set globally on some CI machines) makes every Node start parse a CA
    // bundle (~50 ms here) although these registries are plain HTTP; skopeo pays nothing similar.
    if (cmd[0] === process.execPath) delete childEnv.NODE_EXTRA_CA_CERTS;
    const child = spawn(cmd[0]!, cmd.slice(1), { stdio: ['ignore', 'ignore', 'pipe'], env: childEnv });
    let err = '';
    child.stderr.on('data', (d) => (err += d));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0) reject(new Error(`${cmd.join(' ')} failed (${code}): ${err}`));
      else resolve(Number(process.hrtime.bigint() - t0) / 1e9);
    });
  });
}

async function makeImage(store: ContentStore, name: string): Promise<{ bytes: number; manifestDigest: string }> {
  const per = Math.floor((MB * 1e6) / LAYERS);
  const layers = [];
  const diffIds = [];
  let total = 0;
  for (let i = 0; i < LAYERS; i++) {
    // Half random, half repetitive: "random-ish" content that gzip compresses somewhat.
    const data = Buffer.concat([randomBytes(Math.floor(per * 0.8)), Buffer.alloc(per - Math.floor(per * 0.8), i)]);
    const tar = await tarOf({ [`layer${i}/blob.bin`]: data });
    diffIds.push(digestOf(tar));
    const gz = gzipSync(tar, { level: 1 });
    const w = await store.writeBlob(gz, { digest: digestOf(gz), size: gz.length });
    layers.push({ mediaType: MediaType.OciLayerGzip, digest: w.digest, size: w.size });
    total += w.size;
  }
  const config: ImageConfig = { architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: diffIds } };
  const c = await store.writeJson(config, MediaType.OciConfig);
  const manifest: ImageManifest = { schemaVersion: 2, mediaType: MediaType.OciManifest, config: { mediaType: c.mediaType, digest: c.digest, size: c.size }, layers };
  const m = await store.writeJson(manifest, MediaType.OciManifest);
  await store.setTag(name, { mediaType: m.mediaType, digest: m.digest, size: m.size });
  return { bytes: total, manifestDigest: m.digest };
}

/** A timed copy must really have happened: the destination serves the manifest. */
async function verifyCopied(dest: DistributionRegistry, digest: string): Promise<void> {
  const r = spawnSync('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${dest.host}/bench/app@${digest}`], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`copy to ${dest.host} is missing: ${r.stderr}`);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

export async function main(): Promise<void> {
  requireTool('skopeo');
  const drydock = drydockCommand();
  const source = await startDistribution();
  const work = tempDir('drydock-bench-copy-');
  const store = await ContentStore.open(path.join(work, 'seed'));
  const ref = `${source.host}/bench/app:1`;
  process.stderr.write(`generating a ${MB} MB image in ${LAYERS} layers and pushing it to ${source.host} ...\n`);
  const { bytes, manifestDigest } = await makeImage(store, ref);
  await client.push(store, ref);

  const times: Record<string, { drydock: number[]; skopeo: number[]; library: number[] }> = {
    'registry -> registry': { drydock: [], skopeo: [], library: [] },
    'pull into local store': { drydock: [], skopeo: [], library: [] },
  };
  const seconds = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e9;
  const tls = ['--src-tls-verify=false', '--dest-tls-verify=false'];
  for (let round = 0; round < ROUNDS; round++) {
    // Alternate who goes first, so page cache and CPU boost do not favour one tool.
    const order = round % 2 === 0 ? ['drydock', 'skopeo'] as const : ['skopeo', 'drydock'] as const;
    for (const tool of order) {
      let dest: DistributionRegistry | undefined;
      try {
        dest = await startDistribution();
        const to = `docker://${dest.host}/bench/app:1`;
        const t = tool === 'drydock'
          ? await run([...drydock, 'copy', '-q', `docker://${ref}`, to])
          : await run(['skopeo', 'copy', '-q', ...tls, `docker://${ref}`, to]);
        times['registry -> registry']![tool].push(t);
        await verifyCopied(dest, manifestDigest);
      } finally { await dest?.stop(); if (dest) rmSync(dest.dir, { recursive: true, force: true }); }
      const target = path.join(work, `${tool}-${round}`);
      mkdirSync(target, { recursive: true });
      const t = tool === 'drydock'
        ? await run([...drydock, 'pull', '-q', ref], { DRYDOCK_ROOT: target })
        : await run(['skopeo', 'copy', '-q', '--src-tls-verify=false', `docker://${ref}`, `oci:${target}/layout:1`]);
      times['pull into local store']![tool].push(t);
      if (tool === 'drydock') {
        const tag = await (await ContentStore.open(target)).resolveTag(ref);
        if (tag?.digest !== manifestDigest) throw new Error('drydock pull did not store the image');
      }
      rmSync(target, { recursive: true, force: true });
    }
    // The same transfers through the library in this process: the engine without CLI start-up.
    let dest: DistributionRegistry | undefined;
    try {
      dest = await startDistribution();
      const t0 = process.hrtime.bigint();
      await client.copy(`docker://${ref}`, `docker://${dest.host}/bench/app:1`);
      times['registry -> registry']!.library.push(seconds(t0));
      await verifyCopied(dest, manifestDigest);
    } finally { await dest?.stop(); if (dest) rmSync(dest.dir, { recursive: true, force: true }); }
    const target = path.join(work, `library-${round}`);
    const t0 = process.hrtime.bigint();
    await client.pull(await ContentStore.open(target), ref);
    times['pull into local store']!.library.push(seconds(t0));
    rmSync(target, { recursive: true, force: true });
  }
  await source.stop();
  if (existsSync(work)) rmSync(work, { recursive: true, force: true });

  process.stdout.write(`\ncopy bench: ${(bytes / 1e6).toFixed(0)} MB compressed in ${LAYERS} layers, ${ROUNDS} rounds, median seconds\n`);
  process.stdout.write(`${'operation'.padEnd(24)}${'drydock'.padStart(10)}${'skopeo'.padStart(10)}${'ratio'.padStart(8)}${'library'.padStart(12)}${'ratio'.padStart(8)}\n`);
  for (const [op, t] of Object.entries(times)) {
    const d = median(t.drydock);
    const s = median(t.skopeo);
    const l = median(t.library);
    process.stdout.write(`${op.padEnd(24)}${d.toFixed(2).padStart(10)}${s.toFixed(2).padStart(10)}${(d / s).toFixed(2).padStart(7)}x${l.toFixed(2).padStart(12)}${(l / s).toFixed(2).padStart(7)}x  ${d / s <= 0.9 ? 'CLI ok (<= 0.9x)' : 'CLI missed 0.9x'}\n`);
  }
  process.stdout.write('drydock/skopeo: both as CLI processes; library: drydock\'s copy()/pull() in this process (no start-up).\n');
  const load = (await import('node:os')).loadavg()[0]!;
  process.stdout.write(`load average during the run: ${load.toFixed(1)} on ${(await import('node:os')).cpus().length} CPUs\n`);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  main().catch((e) => { console.error(e); process.exitCode = 1; });
}
