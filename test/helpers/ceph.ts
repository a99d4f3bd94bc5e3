// A single-node Ceph cluster with a RADOS Gateway on 127.0.0.1, for the S3 driver's tests against
// a real distributed object store: one monitor, one bluestore OSD on a sparse file, one radosgw,
// all from Debian's packages, all in a temp dir, no systemd. Each daemon runs in the foreground
// (-f) as a child of the test process, so stop() (or the process exit hook, if a test file dies
// before its after()) ends exactly what was started.
//
// What a one-OSD cluster needs, and why:
// - osd pool default size 1 (+ mon allow pool size one): one copy of each object; there is one OSD.
// - osd pool default pg num 8, autoscaler off: RGW creates ~7 pools; with the default 32 PGs each
//   they would not fit the per-OSD PG limit of one OSD. No mgr runs (nothing here needs one:
//   pools, PG peering and I/O are the monitor's and the OSD's), which saves its python start.
// - mon data avail warn 1: CI disks are often mostly full; the warning would only be noise.
// - bluestore block create with no block path: bluestore makes <osd data>/block itself, a
//   sparse file of bluestore block size (4 GiB here, a few MiB actually written).
// - cephx with one keyring for all: radosgw refuses to start with auth "none".
// Start-up to the first S3 request that succeeds takes ~20 s on the 2-core CI box (docs/registry.md).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { closeSync, mkdirSync, openSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { freePort, requireTool, tempDir } from './env.js';

export interface CephCluster {
  /** http://127.0.0.1:PORT, the radosgw S3 endpoint. */
  endpoint: string;
  /** A bucket created for the test file. */
  bucket: string;
  accessKey: string;
  secretKey: string;
  /** The cluster's temp dir: ceph.conf, keyring, daemon data, log/. */
  dir: string;
  /** Seconds from nothing to the bucket created (the first S3 PUT that succeeded). */
  startSeconds: number;
  /** Runs radosgw-admin (or another ceph tool) against this cluster; returns stdout. */
  admin(tool: string, args: string[]): string;
  stop(): Promise<void>;
}

const TOOLS = ['ceph-mon', 'ceph-osd', 'radosgw', 'radosgw-admin', 'ceph', 'ceph-authtool', 'monmaptool'];

const running = new Set<ChildProcess>();
let exitHook = false;
function track(child: ChildProcess): void {
  running.add(child);
  child.once('exit', () => running.delete(child));
  if (!exitHook) {
    exitHook = true;
    process.on('exit', () => { for (const c of running) c.kill('SIGKILL'); });
  }
}

function stopChild(child: ChildProcess, graceMs = 10_000): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    child.once('exit', () => { clearTimeout(timer); resolve(); });
    child.kill('SIGTERM');
  });
}

export async function startCeph(opts: { bucket?: string } = {}): Promise<CephCluster> {
  for (const t of TOOLS) requireTool(t, 'apt-get install ceph-mon ceph-osd radosgw ceph-common (scripts/setup.sh)');
  const t0 = performance.now();
  const dir = tempDir('drydock-ceph-');
  for (const d of ['mon', 'osd/ceph-0', 'run', 'log', 'rgw']) mkdirSync(path.join(dir, d), { recursive: true });
  const [monPort, rgwPort] = [await freePort(), await freePort()];
  const fsid = randomUUID();
  const conf = path.join(dir, 'ceph.conf');
  const keyring = path.join(dir, 'keyring');
  writeFileSync(conf, `[global]
fsid = ${fsid}
mon host = v2:127.0.0.1:${monPort}
mon initial members = a
public addr = 127.0.0.1
ms bind msgr1 = false
keyring = ${keyring}
auth allow insecure global id reclaim = false
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon data avail warn = 1
mon warn on pool no redundancy = false
osd crush chooseleaf type = 0
run dir = ${dir}/run
admin socket = ${dir}/run/$cluster-$name.asok
log file = ${dir}/log/$cluster-$name.log
mon data = ${dir}/mon/$cluster-$id
osd data = ${dir}/osd/$cluster-$id
osd objectstore = bluestore
bluestore block create = true
bluestore block size = 4294967296
rgw data = ${dir}/rgw
[client.rgw]
rgw frontends = beast endpoint=127.0.0.1:${rgwPort}
`);
  const children: ChildProcess[] = [];
  const stop = async () => {
    // radosgw first (it holds client sessions), the monitor last.
    for (const c of [...children].reverse()) await stopChild(c);
  };
  const sync = (tool: string, args: string[]): string => {
    const r = spawnSync(tool, ['-c', conf, ...args], { encoding: 'utf8', timeout: 120_000 });
    if (r.status !== 0) throw new Error(`${tool} ${args.join(' ')} failed (${r.status ?? r.signal}): ${r.stderr}`);
    return r.stdout;
  };
  const daemon = (tool: string, args: string[]) => {
    const fd = openSync(path.join(dir, 'log', `${tool}.out`), 'a');
    const child = spawn(tool, ['-c', conf, '-f', ...args], { stdio: ['ignore', fd, fd] });
    closeSync(fd);
    track(child);
    children.push(child);
    return child;
  };
  try {
    for (const [name, caps] of [
      ['mon.', ['--cap', 'mon', 'allow *']],
      ['client.admin', ['--cap', 'mon', 'allow *', '--cap', 'osd', 'allow *', '--cap', 'mgr', 'allow *']],
      ['osd.0', ['--cap', 'mon', 'allow profile osd', '--cap', 'osd', 'allow *', '--cap', 'mgr', 'allow profile osd']],
      ['client.rgw', ['--cap', 'mon', 'allow rw', '--cap', 'osd', 'allow rwx']],
    ] as const) {
      const r = spawnSync('ceph-authtool', [...(name === 'mon.' ? ['--create-keyring'] : []), keyring, '--gen-key', '-n', name, ...caps], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`ceph-authtool: ${r.stderr}`);
    }
    const monmap = path.join(dir, 'monmap');
    const mm = spawnSync('monmaptool', ['--create', '--fsid', fsid, '--addv', 'a', `[v2:127.0.0.1:${monPort}]`, monmap], { encoding: 'utf8' });
    if (mm.status !== 0) throw new Error(`monmaptool: ${mm.stderr}`);
    sync('ceph-mon', ['--mkfs', '-i', 'a', '--monmap', monmap, '--keyring', keyring]);
    daemon('ceph-mon', ['-i', 'a']);
    const osdUuid = randomUUID();
    sync('ceph', ['--connect-timeout', '60', 'osd', 'new', osdUuid, '0']);
    sync('ceph-osd', ['-i', '0', '--mkfs', '--osd-uuid', osdUuid]);
    daemon('ceph-osd', ['-i', '0']);
    const rgw = daemon('radosgw', ['-n', 'client.rgw']);
    const accessKey = `DRYDOCK${randomBytes(6).toString('hex').toUpperCase()}`;
    const secretKey = randomBytes(20).toString('hex');
    // radosgw-admin waits for the OSD itself (it creates RGW's pools if radosgw has not yet).
    sync('radosgw-admin', ['user', 'create', '--uid', 'drydock', '--display-name', 'drydock tests', '--access-key', accessKey, '--secret-key', secretKey]);
    const endpoint = `http://127.0.0.1:${rgwPort}`;
    const bucket = opts.bucket ?? 'registry';
    process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true'; // as the driver does (s3.ts)
    const { S3Client, CreateBucketCommand } = await import('@aws-sdk/client-s3');
    const client = new S3Client({ region: 'us-east-1', endpoint, forcePathStyle: true, credentials: { accessKeyId: accessKey, secretAccessKey: secretKey } });
    const deadline = Date.now() + 120_000;
    for (;;) {
      if (rgw.exitCode !== null) throw new Error(`radosgw exited ${rgw.exitCode}; see ${dir}/log`);
      try {
        await client.send(new CreateBucketCommand({ Bucket: bucket }));
        break;
      } catch (e) {
        if (Date.now() > deadline) throw new Error(`radosgw at ${endpoint} did not take a bucket in 120 s: ${(e as Error).message}; see ${dir}/log`);
        await new Promise((r) => setTimeout(r, 250));
      }
    }
    client.destroy();
    return {
      endpoint, bucket, accessKey, secretKey, dir,
      startSeconds: (performance.now() - t0) / 1000,
      admin: (tool, args) => sync(tool, args),
      stop,
    };
  } catch (e) {
    await stop();
    throw e;
  }
}
