// CLI start-up: the wall time of one `drydock` process for quick commands, against a bare
// `node -e 0` measured in the same run (target: <= 1.3x). Runs are interleaved (node, then each
// drydock command, repeated) so load on the machine hits every column alike; the median is reported.
//
//   npm run build && node dist/bench/startup.js [RUNS]      # RUNS defaults to 20
//
// The drydock measured is the installed bin (bin/drydock.js, which runs the esbuild bundle of the
// command that `npm run build` writes to dist/cli/, with V8's code cache); DRYDOCK_STARTUP_CLI=path
// measures another entry instead. DRYDOCK_STARTUP_BASE=path/to/other/bin/drydock.js (an older
// build: copy bin/ and dist/cli/ aside, with a node_modules link) adds its quick commands to the
// same interleaved rounds, for an A/B on a busy machine.
import { spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { tempDir, PROJECT_ROOT } from '../test/helpers/env.js';

const RUNS = Number(process.argv[2] ?? 20);
const cli = process.env.DRYDOCK_STARTUP_CLI ?? path.join(PROJECT_ROOT, 'bin/drydock.js');
if (!existsSync(cli)) throw new Error(`${cli} does not exist (run npm run build)`);

const root = tempDir('drydock-startup-');
const env: NodeJS.ProcessEnv = { ...process.env, DRYDOCK_ROOT: root };
// A CA bundle makes every Node start parse it; neither side needs one here.
delete env.NODE_EXTRA_CA_CERTS;

// An empty ES module shows the floor: Node 20 starts its ESM loader for any .js file of a
// "type": "module" package, which `node -e 0` never does.
const emptyModule = path.join(root, 'empty.mjs');
writeFileSync(emptyModule, 'export {};\n');

const cases: { name: string; argv: string[]; env?: NodeJS.ProcessEnv }[] = [
  { name: 'node -e 0', argv: ['-e', '0'] },
  { name: 'node empty.mjs', argv: [emptyModule] },
  { name: 'drydock --version', argv: [cli, '--version'] },
  { name: 'drydock images -q', argv: [cli, 'images', '-q'] },
  // The same without V8's code cache (src/cli/launch.ts): what the cache is worth.
  { name: 'images -q, no cache', argv: [cli, 'images', '-q'], env: { DRYDOCK_CODE_CACHE: '0' } },
  { name: 'drydock ps -q', argv: [cli, 'ps', '-q'] },
  // The table: its header, even for an empty store.
  { name: 'drydock images', argv: [cli, 'images'] },
];
const base = process.env.DRYDOCK_STARTUP_BASE;
if (base) {
  if (!existsSync(base)) throw new Error(`DRYDOCK_STARTUP_BASE=${base} does not exist`);
  cases.push(
    { name: 'base --version', argv: [base, '--version'] },
    { name: 'base images -q', argv: [base, 'images', '-q'] },
    { name: 'base ps -q', argv: [base, 'ps', '-q'] },
    { name: 'base images', argv: [base, 'images'] },
  );
}

function once(argv: string[], extra: NodeJS.ProcessEnv = {}): number {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(process.execPath, argv, { env: { ...env, ...extra }, stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.status !== 0) throw new Error(`node ${argv.join(' ')} failed (${r.status}): ${r.stderr}`);
  return ms;
}

const median = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2; };

for (const c of cases) once(c.argv, c.env); // warm the page cache (and write the code caches)
const times = cases.map(() => [] as number[]);
for (let i = 0; i < RUNS; i++) cases.forEach((c, j) => times[j]!.push(once(c.argv, c.env)));
const node = median(times[0]!);
console.log(`${RUNS} runs each, median wall time; load average ${(await import('node:os')).loadavg().map((l) => l.toFixed(1)).join(' ')}`);
for (const [j, c] of cases.entries()) {
  const m = median(times[j]!);
  console.log(`${c.name.padEnd(20)} ${m.toFixed(1).padStart(7)} ms  ${(m / node).toFixed(2)}x node -e 0`);
}
