// Registry server benchmark: drydock serve vs distribution 2.8 (/usr/bin/docker-registry), side by
// side in one run, both as child processes with access logs off and filesystem storage in /tmp.
//   manifest GET requests/s (autocannon) at 1, 8, 32 connections
//   blob push+pull MB/s (undici, monolithic POST+PUT then GET) at 1, 8, 32 clients
//   peak RSS of each server (VmHWM)
// Run: node --import tsx bench/registry.ts [--seconds 5] [--blob-mib 8] [--total-mib 256] [--client-threads 2] [--rounds 1] [--only-blobs]
//        [--clients 1,8,32] [--baseline OTHER-CHECKOUT] [--no-variants]
// Prints a table and the drydock/distribution ratio per row; --json prints machine-readable results.
// --access-control instead measures what accessControl costs the manifest GET hot path: drydock
// with htpasswd auth alone vs the same with a team accessControl policy, Basic auth on every request.
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import autocannon from 'autocannon';
import { Pool } from 'undici';
import { parse as YAMLparse } from 'yaml';
import { digestOf } from '../src/image/digest.js';
import { freePort, startDistribution as startDistributionRegistry } from '../test/helpers/docker-registry.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const fromSource = import.meta.url.endsWith('.ts');
const projectRoot = fromSource ? path.resolve(here, '..') : path.resolve(here, '../..');
// Compiled, the servers run as installed: bin/drydock.js (the CommonJS bundles of `npm run build`;
// only there does `serve` size its threadpool, src/registry/threadpool.ts).
const cliEntry = (root: string) => (existsSync(path.join(root, 'dist/cli/drydock.cjs')) ? path.join(root, 'bin/drydock.js') : path.join(root, 'dist/src/cli/main.js'));
const cliMain = fromSource ? path.join(projectRoot, 'src/cli/main.ts') : cliEntry(projectRoot);

interface Server { name: string; url: string; proc: ChildProcess; dir: string }

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

async function waitReady(url: string, proc: ChildProcess, stderr: () => string): Promise<void> {
  const deadline = Date.now() + 90_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`server exited: ${stderr()}`);
    try {
      const r = await fetch(`${url}/v2/`);
      await r.arrayBuffer();
      return;
    } catch {
      if (Date.now() > deadline) throw new Error(`server did not start: ${stderr()}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

async function startDistribution(): Promise<Server> {
  const r = await startDistributionRegistry({ blobDescriptorCache: true });
  return { name: 'distribution', url: r.url, proc: r.process, dir: r.dir };
}

/** `baseline`: another checkout's compiled CLI (its dist/), for old build vs new build in one run. */
async function startDrydock(variant: string[], baseline?: string, env: Record<string, string> = {}): Promise<Server> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'drydock-bench-drydock-'));
  const port = await freePort();
  let err = '';
  const args = ['serve', '--root', `${dir}/data`, '--addr', `127.0.0.1:${port}`, '--no-access-log', ...variant];
  const main = baseline ? cliEntry(path.resolve(baseline)) : cliMain;
  const proc = spawn(process.execPath, [...(fromSource && !baseline ? ['--import', 'tsx'] : []), main, ...args], { cwd: baseline ?? projectRoot, stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...env } });
  proc.stderr!.on('data', (d) => (err += d));
  const url = `http://127.0.0.1:${port}`;
  await waitReady(url, proc, () => err);
  return { name: [baseline ? 'baseline' : 'drydock', ...variant, ...Object.entries(env).map(([k, v]) => `${k}=${v}`)].join(' '), url, proc, dir };
}

/** Server CPU seconds, worker processes included. */
function serverCpuSeconds(pid: number): number {
  return cpuSeconds(pid) + childPids(pid).reduce((a, p) => a + cpuSeconds(p), 0);
}

function vmHwmKiB(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : 0;
}

/** Worker processes (drydock --workers): their peak RSS counts too. */
function childPids(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}


async function pushBlob(pool: Pool, repo: string, data: Buffer, digest: string, auth: Record<string, string> = {}): Promise<void> {
  const post = await pool.request({ path: `/v2/${repo}/blobs/uploads/`, method: 'POST', headers: auth });
  await post.body.dump();
  if (post.statusCode !== 202) throw new Error(`POST upload: HTTP ${post.statusCode}`);
  const loc = new URL(String(post.headers.location), 'http://x');
  loc.searchParams.set('digest', digest);
  const put = await pool.request({ path: `${loc.pathname}${loc.search}`, method: 'PUT', body: data, headers: { ...auth, 'content-type': 'application/octet-stream', 'content-length': String(data.length) } });
  await put.body.dump();
  if (put.statusCode !== 201) throw new Error(`PUT upload: HTTP ${put.statusCode}`);
}

async function seedImage(url: string, auth: Record<string, string> = {}): Promise<void> {
  const pool = new Pool(url, { connections: 1 });
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } }));
  const layer = randomBytes(4096);
  await pushBlob(pool, 'bench/app', config, digestOf(config), auth);
  await pushBlob(pool, 'bench/app', layer, digestOf(layer), auth);
  const manifest = JSON.stringify({
    schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: digestOf(config), size: config.length },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: digestOf(layer), size: layer.length }],
  });
  const r = await pool.request({ path: '/v2/bench/app/manifests/latest', method: 'PUT', body: manifest, headers: { ...auth, 'content-type': 'application/vnd.oci.image.manifest.v1+json' } });
  await r.body.dump();
  if (r.statusCode !== 201) throw new Error(`seed manifest: HTTP ${r.statusCode}`);
  await pool.close();
}

/** CPU seconds (user + system) a process has used, from /proc/PID/stat (clock ticks of 1/100 s). */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

async function manifestGets(url: string, connections: number, seconds: number, auth: Record<string, string> = {}): Promise<number> {
  return (await manifestRun(url, connections, seconds, auth)).perSecond;
}

async function manifestRun(url: string, connections: number, seconds: number, auth: Record<string, string> = {}): Promise<{ perSecond: number; total: number }> {
  const result = await autocannon({
    url: `${url}/v2/bench/app/manifests/latest`,
    connections,
    duration: seconds,
    headers: { ...auth, accept: 'application/vnd.oci.image.manifest.v1+json' },
  });
  if (result.non2xx > 0 || result.errors > 0) throw new Error(`manifest GET: ${result.non2xx} non-2xx, ${result.errors} errors`);
  return { perSecond: result.requests.average, total: result.requests.total };
}

/** The blobs one client pushes and pulls: distinct (no dedup shortcuts), digests computed before the clock starts. */
function makeBlobs(clientIds: number[], perClient: number, blobMiB: number, round: number): { c: number; list: { data: Buffer; digest: string }[] }[] {
  const base = randomBytes(blobMiB * 1024 * 1024);
  return clientIds.map((c) => ({
    c,
    list: Array.from({ length: perClient }, (_, i) => {
      const data = Buffer.from(base);
      data.writeUInt32BE(round, 0); data.writeUInt32BE(c, 4); data.writeUInt32BE(i, 8);
      return { data, digest: digestOf(data) };
    }),
  }));
}

/** Each client in turn: push a blob (POST + PUT), GET it back and check its digest. Returns bytes moved. */
async function runClients(url: string, clients: { c: number; list: { data: Buffer; digest: string }[] }[]): Promise<number> {
  const pool = new Pool(url, { connections: clients.length, pipelining: 1 });
  let bytes = 0;
  await Promise.all(clients.map(async ({ c, list }) => {
    for (const b of list) {
      await pushBlob(pool, `bench/blobs${c}`, b.data, b.digest);
      const r = await pool.request({ path: `/v2/bench/blobs${c}/blobs/${b.digest}`, method: 'GET' });
      const h = createHash('sha256');
      for await (const chunk of r.body) h.update(chunk as Buffer);
      if (`sha256:${h.digest('hex')}` !== b.digest) throw new Error('blob GET returned different content');
      bytes += 2 * b.data.length;
    }
  }));
  await pool.close();
  return bytes;
}

/**
 * Blob push+pull MB/s with `clients` concurrent clients. The load is generated by `threads`
 * worker threads, each driving its share of the clients: the client hashes every blob it pulls
 * and sends and receives as many bytes as the server, so one load-generating thread tops out at
 * about one core (~300 MB/s on the 2-core VM) and would measure itself rather than the server.
 * The clock runs from the moment every thread has its blobs ready until the last one is done.
 */
async function blobThroughput(url: string, clients: number, blobMiB: number, totalMiB: number, round: number, threads: number): Promise<{ mbPerSecond: number; mb: number }> {
  const perClient = Math.max(1, Math.round(totalMiB / blobMiB / clients));
  const n = Math.max(1, Math.min(threads, clients));
  if (n === 1) {
    const blobs = makeBlobs(Array.from({ length: clients }, (_, c) => c), perClient, blobMiB, round);
    const started = process.hrtime.bigint();
    const bytes = await runClients(url, blobs);
    return { mbPerSecond: bytes / 1024 / 1024 / (Number(process.hrtime.bigint() - started) / 1e9), mb: bytes / 1024 / 1024 };
  }
  // From source, a worker must register tsx itself: `--import tsx` in execArgv does not reach it.
  const entry = fromSource
    ? `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}).then((m) => { m.register(); return import(${JSON.stringify(import.meta.url)}); })`
    : new URL(import.meta.url);
  const workers = Array.from({ length: n }, (_, t) => new Worker(entry, {
    eval: fromSource,
    workerData: { url, clientIds: Array.from({ length: clients }, (_, c) => c).filter((c) => c % n === t), perClient, blobMiB, round },
    execArgv: [],
  }));
  const message = (w: Worker) => new Promise<{ bytes?: number }>((resolve, reject) => { w.once('message', resolve); w.once('error', reject); });
  try {
    await Promise.all(workers.map(message)); // ready
    const done = workers.map(message);
    const started = process.hrtime.bigint();
    for (const w of workers) w.postMessage('go');
    const bytes = (await Promise.all(done)).reduce((a, m) => a + (m.bytes ?? 0), 0);
    return { mbPerSecond: bytes / 1024 / 1024 / (Number(process.hrtime.bigint() - started) / 1e9), mb: bytes / 1024 / 1024 };
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
  }
}

/** A load-generating thread of blobThroughput. */
async function blobWorker(): Promise<void> {
  const d = workerData as { url: string; clientIds: number[]; perClient: number; blobMiB: number; round: number };
  const blobs = makeBlobs(d.clientIds, d.perClient, d.blobMiB, d.round);
  const go = new Promise((resolve) => parentPort!.once('message', resolve));
  parentPort!.postMessage({});
  await go;
  parentPort!.postMessage({ bytes: await runClients(d.url, blobs) });
}

/**
 * The price of accessControl on the hot path: the same server with htpasswd alone and with a team
 * policy (groups, several globs, the longest one matching bench/app), measured in alternating
 * rounds so load on a shared machine hits both alike.
 */
async function accessControlCost(seconds: number, rounds: number): Promise<void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'drydock-bench-acl-'));
  const htpasswd = path.join(dir, 'htpasswd');
  // bcrypt cost 5: the first request per connection pays it once, then the verified-credentials cache answers.
  const { default: bcrypt } = await import('bcryptjs');
  writeFileSync(htpasswd, `bench:${bcrypt.hashSync('bench', 5)}\nother:${bcrypt.hashSync('other', 5)}\n`);
  const cfg = path.join(dir, 'config.yml');
  const cfgText = [
    'version: 0.1',
    `auth: { htpasswd: { realm: bench, path: ${htpasswd} } }`,
    'accessControl:',
    '  groups: { devs: { users: [bench, alice, bob] }, ops: { users: [olga] } }',
    '  repositories:',
    '    "**": { defaultPolicy: [pull] }',
    '    "bench/**": { policies: [{ groups: [devs], actions: [pull, push] }, { users: [carol], actions: [pull] }] }',
    '    "bench/secret/*": { policies: [{ users: [alice], actions: [pull] }] }',
    '    "public/**": { anonymousPolicy: [pull], defaultPolicy: [pull] }',
    '  adminPolicy: { groups: [ops], actions: [pull, push, delete] }',
    '',
  ].join('\n');
  writeFileSync(cfg, cfgText);
  const auth = { authorization: `Basic ${Buffer.from('bench:bench').toString('base64')}` };
  const plain = await startDrydock(['--htpasswd', htpasswd]);
  const policy = await startDrydock(['--config', cfg]);
  plain.name = 'htpasswd only';
  policy.name = 'htpasswd + accessControl';
  const servers = [plain, policy];
  const sums: Record<string, Record<number, number[]>> = { [plain.name]: {}, [policy.name]: {} };
  // Server CPU per request is what a check adds; it is far less disturbed by other load on a
  // shared machine than requests per second are.
  const cpu: Record<string, Record<number, number[]>> = { [plain.name]: {}, [policy.name]: {} };
  try {
    for (const s of servers) await seedImage(s.url, auth);
    for (const s of servers) await manifestGets(s.url, 8, 1, auth);
    for (let r = 0; r < rounds; r++) {
      for (const c of [1, 8, 32]) {
        // Alternate which goes first, so neither always runs on the warmer or quieter half.
        for (const s of r % 2 === 0 ? servers : [...servers].reverse()) {
          const before = cpuSeconds(s.proc.pid!);
          const run = await manifestRun(s.url, c, seconds, auth);
          (sums[s.name]![c] ??= []).push(run.perSecond);
          (cpu[s.name]![c] ??= []).push(((cpuSeconds(s.proc.pid!) - before) / run.total) * 1e6);
        }
      }
    }
  } finally {
    for (const s of [...servers]) {
      s.proc.kill('SIGTERM');
      await new Promise((r) => (s.proc.exitCode !== null ? r(null) : s.proc.once('exit', r)));
      rmSync(s.dir, { recursive: true, force: true });
    }
    rmSync(dir, { recursive: true, force: true });
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  process.stdout.write(`manifest GET (median of ${rounds} rounds of ${seconds}s), Basic auth on every request: req/s and server CPU µs per request\n`);
  process.stdout.write(`${'conns'.padEnd(6)}${plain.name.padStart(22)}${policy.name.padStart(30)}  cost (req/s)  cost (CPU/req)\n`);
  for (const c of [1, 8, 32]) {
    const a = median(sums[plain.name]![c]!);
    const b = median(sums[policy.name]![c]!);
    const ca = median(cpu[plain.name]![c]!);
    const cb = median(cpu[policy.name]![c]!);
    const cell = (rps: number, us: number, w: number) => `${rps.toFixed(0)} req/s ${us.toFixed(1)} µs`.padStart(w);
    process.stdout.write(`${String(c).padEnd(6)}${cell(a, ca, 22)}${cell(b, cb, 30)}  ${`${(((a - b) / a) * 100).toFixed(1)}%`.padStart(12)}  ${`${(((cb - ca) / ca) * 100).toFixed(1)}%`.padStart(14)}\n`);
  }
  // The check itself, in process: what one manifest GET pays for it, against the CPU a request costs.
  const { AccessPolicy } = await import('../src/registry/auth/access-control.js');
  const doc = (YAMLparse(cfgText) as { accessControl: unknown }).accessControl;
  const p = AccessPolicy.parse(doc);
  const id = { user: 'bench' };
  let ok = 0;
  for (let i = 0; i < 1e5; i++) if (p.can(id, 'pull', 'bench/app')) ok++;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < 1e6; i++) if (p.can(id, 'pull', 'bench/app')) ok++;
  const ns = Number(process.hrtime.bigint() - t0) / 1e6;
  const perRequest = median(cpu[plain.name]![8]!);
  process.stdout.write(`one can(bench, pull, bench/app): ${ns.toFixed(0)} ns = ${((ns / 1000 / perRequest) * 100).toFixed(3)}% of a manifest GET's ${perRequest.toFixed(0)} µs (${ok > 0 ? 'allowed' : 'denied'})\n`);
  process.stdout.write(`(${os.cpus().length} CPUs, load ${os.loadavg()[0]!.toFixed(1)})\n`);
}

export async function main(): Promise<void> {
  const seconds = arg('seconds', 5);
  if (process.argv.includes('--access-control')) return accessControlCost(seconds, arg('rounds', 3));
  const blobMiB = arg('blob-mib', 8);
  const totalMiB = arg('total-mib', 256);
  const clientThreads = arg('client-threads', 2);
  // --only-blobs: just the blob rows (and peak RSS), for short runs interleaved with other work.
  const onlyBlobs = process.argv.includes('--only-blobs');
  const blobRounds = arg('rounds', 1);
  const levels = (process.argv.includes('--clients') ? String(process.argv[process.argv.indexOf('--clients') + 1]) : '1,8,32').split(',').map(Number);
  // drydock as configured by default, without fsync (distribution fsyncs file data but never a
  // directory), and with two worker processes (distribution's Go runtime uses every core).
  // --baseline CHECKOUT adds that checkout's build (old vs new, interleaved in the same run);
  // --no-variants leaves out --no-fsync and --workers 2, for shorter A/B runs.
  const baselineAt = process.argv.indexOf('--baseline');
  const servers = [await startDistribution(), await startDrydock([])];
  if (baselineAt >= 0) servers.push(await startDrydock([], process.argv[baselineAt + 1]));
  // --env-variant K=V adds this build run with that environment variable.
  const envAt = process.argv.indexOf('--env-variant');
  if (envAt >= 0) {
    const [k, ...v] = String(process.argv[envAt + 1]).split('=');
    servers.push(await startDrydock([], undefined, { [k!]: v.join('=') }));
  }
  if (!process.argv.includes('--no-variants')) servers.push(await startDrydock(['--no-fsync']), await startDrydock(['--workers', '2']));
  const rows: { metric: string; values: Record<string, number> }[] = [];
  try {
    for (const s of servers) await seedImage(s.url);
    // Warm-up (JIT, page cache) for both.
    for (const s of servers) await manifestGets(s.url, 8, 1);
    for (const c of onlyBlobs ? [] : levels) {
      const values: Record<string, number> = {};
      for (const s of servers) values[s.name] = await manifestGets(s.url, c, seconds);
      rows.push({ metric: `manifest GET req/s, ${c} conn`, values });
    }
    // --rounds N: each level N times, the servers' order alternating, and the median kept, so
    // load from other work on a shared machine hits every server alike.
    let round = 0;
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    // Server CPU per MB moved (user + system, from /proc) is printed too: on a shared machine it is
    // far less disturbed by other load than MB/s is.
    for (const c of levels) {
      const runs: Record<string, number[]> = {};
      const cpu: Record<string, number[]> = {};
      for (let r = 0; r < blobRounds; r++) {
        for (const s of r % 2 === 0 ? servers : [...servers].reverse()) {
          const before = serverCpuSeconds(s.proc.pid!);
          const run = await blobThroughput(s.url, c, blobMiB, totalMiB, round++, clientThreads);
          (runs[s.name] ??= []).push(run.mbPerSecond);
          (cpu[s.name] ??= []).push(((serverCpuSeconds(s.proc.pid!) - before) * 1000) / run.mb);
        }
      }
      const values: Record<string, number> = {};
      const cpuValues: Record<string, number> = {};
      for (const s of servers) {
        values[s.name] = median(runs[s.name]!);
        cpuValues[s.name] = median(cpu[s.name]!);
      }
      rows.push({ metric: `blob push+pull MB/s, ${c} clients`, values });
      rows.push({ metric: `  server CPU ms/MB, ${c} clients (lower is better)`, values: cpuValues });
    }
    const rss: Record<string, number> = {};
    for (const s of servers) rss[s.name] = (vmHwmKiB(s.proc.pid!) + childPids(s.proc.pid!).reduce((a, p) => a + vmHwmKiB(p), 0)) / 1024;
    rows.push({ metric: 'peak RSS MiB, all processes (lower is better)', values: rss });
  } finally {
    for (const s of servers) {
      s.proc.kill('SIGTERM');
      await new Promise((r) => (s.proc.exitCode !== null ? r(null) : s.proc.once('exit', r)));
      rmSync(s.dir, { recursive: true, force: true });
    }
  }
  if (process.argv.includes('--json')) {
    process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
    return;
  }
  const w = Math.max(...rows.map((r) => r.metric.length));
  const names = servers.map((s) => s.name);
  const others = names.slice(1);
  process.stdout.write(`${'metric'.padEnd(w)}  ${names.map((n) => n.padStart(18)).join('  ')}  ${others.map((n) => `ratio ${n}/distribution`).join('  ')}\n`);
  for (const r of rows) {
    const d = r.values.distribution!;
    const cells = names.map((n) => r.values[n]!.toFixed(1).padStart(18)).join('  ');
    const ratios = others.map((n) => `${(r.values[n]! / d).toFixed(2)}x`.padStart(`ratio ${n}/distribution`.length)).join('  ');
    process.stdout.write(`${r.metric.padEnd(w)}  ${cells}  ${ratios}\n`);
  }
  process.stdout.write(`(${os.cpus().length} CPUs, load ${os.loadavg()[0]!.toFixed(1)}; manifest GETs ${seconds}s per level; blobs ${blobMiB} MiB, ~${totalMiB} MiB pushed per level, ${clientThreads} load-generating threads, median of ${blobRounds} round(s))\n`);
}

const invokedDirectly = process.argv[1] && /bench[\\/]registry\.[jt]s$/.test(process.argv[1]);
if (!isMainThread && (workerData as { url?: string } | null)?.url) {
  blobWorker().catch((e) => { throw e; });
} else if (invokedDirectly) {
  main().catch((e) => { process.stderr.write(`${(e as Error).stack ?? e}\n`); process.exitCode = 1; });
}
