// Seed 001's workflow end to end under QEMU (TCG here): a registry on the host (drydock serve on
// 127.0.0.1, which the guest reaches as 10.0.2.2), an updatable disk made from v1 with erofs
// layer files, and the real `drydock os` inside the machine, run by the bundled node from the top
// layer (the image has no node). v2 changes its CMD too. Boots of one disk:
//  1. v1 runs, with v1's command; its startup script runs `drydock os upgrade` after v2 was pushed
//     under the same tag: only v2's top layer is downloaded (the access log shows that one layer
//     GET) and converted to erofs by the bundled mkfs.erofs.
//  2. v2 runs, with v2's command (the deployment's image config, not the disk's); the startup
//     script runs `drydock os rollback`.
//  3. v1 runs again, with v1's command.
//  4. v3 (a bigger new layer) was pushed; the startup script's upgrade is under way when QEMU
//     is SIGKILLed: the guest reaches the registry through a proxy that holds v3's new layer
//     half sent, and QEMU is killed once it does (a kill on a timer raced the download: on a
//     fast run the upgrade had staged v3 before it).
//  5. v1 runs: the deployment booted before the kill, with state.json intact.
// /var (a boot counter) and the top layer (/etc/top.txt) are the same machine's in all three.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { requireRoot, requireTool, runCli, tempDir } from '../helpers/env.js';
import { startServe, type ServeProcess } from '../registry/serve.js';
import { fetchKernel } from '../boot/kernel.js';
import { bootVm } from '../boot/qemu.js';
import { bundleRuntime } from '../../src/os/index.js';
import { busyboxTree, ociLayout, pushWithSkopeo, statusOf, tarLayer, writeTree } from './fixture-image.js';

let serve: ServeProcess | undefined;
let proxy: StallingProxy | undefined;
after(async () => { proxy?.close(); await serve?.stop(); });

interface StallingProxy {
  port: number;
  /** From now on, a GET of this blob gets its headers and half its body, then nothing; resolves when one has. */
  stallOn(digest: string): Promise<void>;
  close(): void;
}

/** A plain HTTP proxy to `upstream` on 127.0.0.1 (the guest's way to the registry), which can hold one blob half sent. */
async function stallingProxy(upstream: string): Promise<StallingProxy> {
  const target = new URL(upstream);
  let stall: { digest: string; reached: () => void } | undefined;
  const server = http.createServer((req, res) => {
    const up = http.request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers }, (upRes) => {
      res.writeHead(upRes.statusCode!, upRes.headers);
      const held = stall && req.method === 'GET' && req.url?.endsWith(`/blobs/${stall.digest}`) ? stall : undefined;
      if (!held) { upRes.pipe(res); return; }
      const half = Math.floor(Number(upRes.headers['content-length']) / 2);
      let sent = 0;
      upRes.on('data', (chunk: Buffer) => {
        if (sent >= half) return;
        const part = chunk.subarray(0, half - sent);
        res.write(part);
        sent += part.length;
        if (sent >= half) { upRes.destroy(); held.reached(); }
      });
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    stallOn: (digest) => new Promise<void>((reached) => { stall = { digest, reached }; }),
    close: () => { server.closeAllConnections(); server.close(); },
  };
}

const STARTUP = `#!/bin/sh
n=$(( $(cat /var/lib/boots 2>/dev/null || echo 0) + 1 )); mkdir -p /var/lib; echo $n > /var/lib/boots
echo "MACHINE boot=$n version=$(cat /etc/version) top=$(cat /etc/top.txt)"
echo "LAYERS $(ls /run/drydock/os/os/layers | tr '\n' ' ')"
D=/.drydock/drydock/bin/drydock
case $n in
  1) $D os upgrade; echo "UPGRADE-EXIT $?" ;;
  2) $D os rollback; echo "ROLLBACK-EXIT $?" ;;
  4) $D os upgrade; echo "UPGRADE-EXIT $?" ;;
esac
echo "STATUS $($D os status --json | tr -d '\n')"; echo STATUS-END
`;

test('boots of one disk: upgrade to v2 in boot 1, rollback in boot 2, v1 in boot 3; QEMU killed mid-upgrade in boot 4, v1 in boot 5', { timeout: 1_800_000 }, async (t) => {
  requireRoot();
  for (const tool of ['mksquashfs', 'mkfs.erofs', 'mkfs.ext4', 'syslinux', 'sfdisk', 'skopeo', 'patchelf', 'qemu-system-x86_64']) requireTool(tool);
  const kernel = fetchKernel();
  const dir = tempDir('drydock-os-machine-');
  const store = path.join(dir, 'store');
  serve = await startServe(['--root', path.join(dir, 'registry'), '--addr', '127.0.0.1:0', '--access-log-format', 'combined']);
  const port = new URL(serve.url).port;
  const host = `127.0.0.1:${port}`;
  proxy = await stallingProxy(serve.url);
  const guestRef = `10.0.2.2:${proxy.port}/os/app:stable`;

  // v1 and v2: the same busybox base layer, a top layer that says which version it is.
  const base = tarLayer(busyboxTree(writeTree(path.join(dir, 'base'), { 'etc/hostname': 'app\n' })), path.join(dir, 'base.tgz'), 'gzip');
  const app = (v: string) => tarLayer(writeTree(path.join(dir, v), { 'etc/version': `${v}\n` }), path.join(dir, `${v}.tgz`), 'gzip');
  const cmd = (v: string) => ['sh', '-c', `echo SERVICE-UP ${v} as $GREETING; sleep 3600`];
  const v1 = ociLayout(path.join(dir, 'oci1'), 'v1', [base, app('v1')], cmd('v1'), ['GREETING=one']);
  const v2 = ociLayout(path.join(dir, 'oci2'), 'v2', [base, app('v2')], cmd('v2'), ['GREETING=two']);
  pushWithSkopeo(v1, `${host}/os/app:stable`);
  const pulled = await runCli(['pull', '-q', `${host}/os/app:stable`], { root: store });
  assert.equal(pulled.code, 0, pulled.stderr);

  // The top layer: this machine's file, and the runtime for `drydock os` (the image has no node).
  const top = path.join(dir, 'top');
  writeTree(top, { 'etc/top.txt': 'machine-7\n' });
  const bundle = await bundleRuntime(path.join(top, '.drydock/drydock'), { layerFormat: 'erofs' });
  writeFileSync(path.join(dir, 'startup.sh'), STARTUP);
  const disk = path.join(dir, 'disk.img');
  const made = await runCli(['disk', `${host}/os/app:stable`, '-o', disk, '--kernel', kernel, '--updates-from', guestRef, '--insecure-registry', `10.0.2.2:${proxy.port}`,
    '--startup-script', path.join(dir, 'startup.sh'), '--top-layer', top, '--boot-deadline', '1200', '--layer-format', 'erofs', '-q'], { root: store, timeoutMs: 600_000 });
  assert.equal(made.code, 0, made.stderr);
  pushWithSkopeo(v2, `${host}/os/app:stable`);

  const qemu = ['-drive', `file=${disk},format=raw,if=virtio`, '-nic', 'user,model=virtio-net-pci'];
  const id = (m: string) => m.slice(7, 19);
  const logBefore = serve.stdout().length;
  const b1 = await bootVm(qemu, { until: /STATUS-END[\s\S]*SERVICE-UP v\d as \w*\r?\n/, timeoutMs: 900_000, memory: 1024 });
  assert.match(b1.console, /MACHINE boot=1 version=v1 top=machine-7/);
  assert.match(b1.console, /SERVICE-UP v1 as one/);
  const layerFiles = (c: string) => /^LAYERS (.*)$/m.exec(c)![1]!.trim().split(/\s+/).sort();
  assert.deepEqual(layerFiles(b1.console), v1.layers.map((l) => `${l.diffID.slice(7)}.erofs`).sort(), 'the disk holds erofs layer files');
  assert.match(b1.console, /Staged deployment [0-9a-f]{12} \(10\.0\.2\.2:\d+\/os\/app:stable\): fetched 1 layer .* reused 1; it boots next/);
  assert.match(b1.console, /UPGRADE-EXIT 0/);
  const s1 = statusOf(b1.console);
  assert.deepEqual([s1.default, s1.staged?.id], [id(v1.manifestDigest), id(v2.manifestDigest)]);
  const top2 = v2.layers[1]!;
  assert.ok(s1.lastUpgrade.bytes >= top2.size && s1.lastUpgrade.bytes < top2.size + 4096, `${s1.lastUpgrade.bytes} bytes for a ${top2.size}-byte layer`);
  const gets = [...serve.stdout().slice(logBefore).matchAll(/"GET \/v2\/os\/app\/blobs\/(sha256:[0-9a-f]{64}) HTTP/g)].map((m) => m[1]);
  assert.deepEqual(gets.sort(), [top2.digest, v2.configDigest].sort(), 'the machine fetched the config and the one new layer');

  const b2 = await bootVm(qemu, { until: /STATUS-END[\s\S]*SERVICE-UP v\d as \w*\r?\n[\s\S]*(reached service started|cannot be confirmed)/, timeoutMs: 900_000, memory: 1024 });
  assert.match(b2.console, new RegExp(`deployment ${id(v2.manifestDigest)}: pending deployment, try 1`));
  assert.match(b2.console, /MACHINE boot=2 version=v2 top=machine-7/);
  // v2's own command: its deployment's image config decides the service, not the disk's v1.
  assert.match(b2.console, /SERVICE-UP v2 as two/);
  assert.doesNotMatch(b2.console, /SERVICE-UP v1 as one/);
  // The new layer was converted in the machine, by the bundled mkfs.erofs.
  assert.ok(layerFiles(b2.console).includes(`${v2.layers[1]!.diffID.slice(7)}.erofs`), layerFiles(b2.console).join(' '));
  assert.match(b2.console, /Rolled back from [0-9a-f]{12} \(kept as the rollback\); the default [0-9a-f]{12} boots next/);
  assert.match(b2.console, /ROLLBACK-EXIT 0/);

  const b3 = await bootVm(qemu, { until: /STATUS-END[\s\S]*SERVICE-UP v\d as \w*\r?\n/, timeoutMs: 900_000, memory: 1024 });
  assert.match(b3.console, /MACHINE boot=3 version=v1 top=machine-7/);
  assert.match(b3.console, /SERVICE-UP v1 as one/);
  assert.doesNotMatch(b3.console, /SERVICE-UP v2 as two/);
  const s3 = statusOf(b3.console);
  assert.deepEqual([s3.booted, s3.default, s3.rollback, s3.staged], [id(v1.manifestDigest), id(v1.manifestDigest), id(v2.manifestDigest), null]);

  // 4 and 5: SIGKILL of QEMU while the machine downloads and converts v3's new layer.
  const v3 = ociLayout(path.join(dir, 'oci3'), 'v3', [base, tarLayer(writeTree(path.join(dir, 'v3'), { 'etc/version': 'v3\n', 'opt/big': randomBytes(3 << 20).toString('hex') }), path.join(dir, 'v3.tgz'), 'gzip')], cmd('v3'));
  pushWithSkopeo(v3, `${host}/os/app:stable`);
  // Killed while v3's new layer is half downloaded (the proxy holds the rest back).
  const stalled = proxy.stallOn(v3.layers[1]!.digest);
  const b4 = await bootVm(qemu, { until: /MACHINE boot=4/, timeoutMs: 900_000, memory: 1024, whileRunning: () => stalled });
  assert.match(b4.console, /MACHINE boot=4 version=v1/);
  assert.doesNotMatch(b4.console, /UPGRADE-EXIT/);
  const b5 = await bootVm(qemu, { until: /STATUS-END/, timeoutMs: 900_000, memory: 1024 });
  assert.match(b5.console, new RegExp(`deployment ${id(v1.manifestDigest)}: the default deployment`));
  assert.match(b5.console, /MACHINE boot=5 version=v1 top=machine-7/);
  const s5 = statusOf(b5.console);
  assert.deepEqual([s5.booted, s5.default, s5.rollback, s5.staged], [id(v1.manifestDigest), id(v1.manifestDigest), id(v2.manifestDigest), null]);
  t.diagnostic(`boots (${b1.accel}): ${[b1, b2, b3, b4, b5].map((b) => `${(b.elapsedMs / 1000).toFixed(0)} s`).join(', ')}; upgrade downloaded ${s1.lastUpgrade.bytes} bytes; runtime bundle ${(bundle.bytes / 1e6).toFixed(0)} MB`);
  await fsp.rm(disk, { force: true });
});
