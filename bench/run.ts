// `drydock run --rm IMAGE true` latency beside `podman run --rm IMAGE true` on the same image,
// in one run, with hyperfine. Target: drydock <= 0.8x podman.
//
//   node --import tsx bench/run.ts          # DRYDOCK_BENCH_RUNS=100 (per tool and network mode)
//   npm run bench                           # compiled (dist/bench/run.js)
//
// The busybox test image is built in a temp store, saved as a docker-archive and loaded into a
// private podman store (--root/--runroot in a temp dir), so both run the same layers. Both
// default to bridge networking (drydock: drydock0 + veth; podman: netavark); `--network none`
// is measured too. drydock runs compiled JavaScript (tsc into a temp dir when run from source),
// so neither side pays for a TypeScript loader.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, symlinkSync, writeFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { busyboxImage } from '../test/helpers/images.js';
import { tempDir, requireTool, requireRoot, PROJECT_ROOT } from '../test/helpers/env.js';

const RUNS = Number(process.env.DRYDOCK_BENCH_RUNS ?? 100);

function sh(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', env: { ...process.env, ...env }, maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  return r.stdout;
}

/** The compiled CLI: dist/ when this file is compiled, else a tsc build into a temp dir. */
function drydockMain(): string {
  const here = fileURLToPath(import.meta.url);
  if (!here.endsWith('.ts')) return path.join(PROJECT_ROOT, 'dist/src/cli/main.js');
  const out = tempDir('drydock-bench-run-dist-');
  // Type errors elsewhere in the tree must not stop the emit, so the exit status is ignored.
  spawnSync(path.join(PROJECT_ROOT, 'node_modules/.bin/tsc'), ['-p', PROJECT_ROOT, '--outDir', out], { stdio: 'ignore' });
  const main = path.join(out, 'src/cli/main.js');
  if (!existsSync(main)) throw new Error('tsc produced no src/cli/main.js');
  symlinkSync(path.join(PROJECT_ROOT, 'node_modules'), path.join(out, 'node_modules'));
  return main;
}

function ensurePodmanConf(): void {
  const conf = '/etc/containers/containers.conf';
  if (existsSync(conf)) return;
  mkdirSync(path.dirname(conf), { recursive: true });
  writeFileSync(conf, '[containers]\ndefault_ulimits = []\n\n[engine]\nruntime = "runc"\n');
}

interface HyperfineResult { results: { command: string; mean: number; stddev: number; median: number; min: number; max: number }[] }

async function main(): Promise<void> {
  requireRoot();
  for (const t of ['runc', 'podman', 'hyperfine']) requireTool(t);
  ensurePodmanConf();
  const root = tempDir('drydock-bench-run-');
  const store = path.join(root, 'store');
  const podmanDir = path.join(root, 'podman');
  const env = { DRYDOCK_ROOT: store, DRYDOCK_BRIDGE: 'ddbench0', DRYDOCK_SUBNET: '10.89.250.0' };
  await busyboxImage(store, 'bench/busybox:latest');
  const cli = drydockMain();
  const archive = path.join(root, 'busybox.tar');
  sh(process.execPath, [cli, 'save', 'bench/busybox:latest', '-o', archive], env);
  const podman = ['podman', '--root', path.join(podmanDir, 'root'), '--runroot', path.join(podmanDir, 'runroot')];
  sh(podman[0]!, [...podman.slice(1), 'load', '-i', archive]);
  const image = 'localhost/bench/busybox:latest';
  const podmanImages = sh(podman[0]!, [...podman.slice(1), 'images', '--format', '{{.Repository}}:{{.Tag}}']);
  const podmanImage = podmanImages.split('\n').find((l) => l.includes('bench/busybox')) ?? image;

  const rows: string[] = [];
  for (const network of ['bridge', 'none']) {
    // NODE_EXTRA_CA_CERTS (set in some CI sandboxes) makes every node start parse a CA bundle;
    // drydock run never talks TLS, so the bench measures it without that tax.
    const dry = `env -u NODE_EXTRA_CA_CERTS DRYDOCK_ROOT=${store} DRYDOCK_BRIDGE=${env.DRYDOCK_BRIDGE} DRYDOCK_SUBNET=${env.DRYDOCK_SUBNET} ${process.execPath} ${cli} run --rm --network ${network} bench/busybox:latest true`;
    const pod = `${podman.join(' ')} run --rm --network ${network} ${podmanImage} true`;
    const json = path.join(root, `hyperfine-${network}.json`);
    const hf = spawnSync('hyperfine', ['-N', '-w', '3', '-r', String(RUNS), '--export-json', json, '-n', `drydock (${network})`, dry, '-n', `podman (${network})`, pod], { stdio: 'inherit' });
    const res = existsSync(json) ? JSON.parse(readFileSync(json, 'utf8')) as HyperfineResult : { results: [] };
    const [d, p] = res.results;
    if (hf.status !== 0 || !d || !p) {
      // A failed run (either tool) is reported, not turned into a number.
      rows.push(`| ${network} | ${d ? `${(d.mean * 1000).toFixed(0)} ms` : 'failed'} | ${p ? `${(p.mean * 1000).toFixed(0)} ms` : 'failed'} | n/a (hyperfine exit ${hf.status}) |`);
      continue;
    }
    const ratio = d.mean / p.mean;
    rows.push(`| ${network} | ${(d.mean * 1000).toFixed(0)} ± ${(d.stddev * 1000).toFixed(0)} ms | ${(p.mean * 1000).toFixed(0)} ± ${(p.stddev * 1000).toFixed(0)} ms | ${ratio.toFixed(2)}x ${ratio <= 0.8 ? '(target <= 0.8x met)' : '(target <= 0.8x NOT met)'} |`);
  }
  process.stdout.write(`\n\`run --rm IMAGE true\`, ${RUNS} runs each (mean ± stddev), ${new Date().toISOString()}, load ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}\n\n`);
  process.stdout.write('| network | drydock | podman | drydock/podman |\n|---|---|---|---|\n');
  process.stdout.write(rows.join('\n') + '\n');
  const { removeBridge } = await import('../src/runtime/network.js');
  await removeBridge({ name: env.DRYDOCK_BRIDGE, subnet: env.DRYDOCK_SUBNET });
}

main().catch((e) => { process.stderr.write(`${(e as Error).stack ?? e}\n`); process.exitCode = 1; });
