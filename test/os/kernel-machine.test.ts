// Kernel upgrades under QEMU (TCG here): v1 has no kernel, so the disk boots the test kernel
// (--kernel); v2 brings another real Debian cloud kernel (scripts/fetch-kernel.sh --other) as
// /boot/vmlinuz-<ver> with its modules (the boot modules, depmod'ed) in /lib/modules/<ver>.
//  1. v1 runs in the disk's kernel; its startup script upgrades to v2: kernel, initramfs and
//     modules are staged in os/kernels/.
//  2. The disk's initramfs kexecs into v2's kernel: `uname -r` is the other version and
//     /proc/cmdline has drydock.kexec=<v2>. The startup script rolls back.
//  3. v1 runs in the disk's kernel again; its upgrade to v3 (another kernel file) is under way,
//     staging the kernel, when QEMU is SIGKILLed.
//  4. v1 runs in the disk's kernel: what booted before the kill.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { requireRoot, requireTool, runCli, tempDir } from '../helpers/env.js';
import { startServe, type ServeProcess } from '../registry/serve.js';
import { fetchKernel } from '../boot/kernel.js';
import { bootVm } from '../boot/qemu.js';
import { bundleRuntime } from '../../src/os/index.js';
import { busyboxTree, kernelTree, ociLayout, pushWithSkopeo, statusOf, tarLayer, writeTree } from './fixture-image.js';

let serve: ServeProcess | undefined;
after(async () => { await serve?.stop(); });

const STARTUP = `#!/bin/sh
n=$(( $(cat /var/lib/boots 2>/dev/null || echo 0) + 1 )); mkdir -p /var/lib; echo $n > /var/lib/boots
echo "MACHINE boot=$n version=$(cat /etc/version) kernel=$(cat /proc/sys/kernel/osrelease) kexec=$(grep -o 'drydock.kexec=[^ ]*' /proc/cmdline) modules=$(ls /lib/modules)"
D=/.drydock/drydock/bin/drydock
case $n in
  1|3) $D os upgrade; echo "UPGRADE-EXIT $?" ;;
  2) $D os rollback; echo "ROLLBACK-EXIT $?" ;;
esac
echo "STATUS $($D os status --json | tr -d '\n')"; echo STATUS-END
`;

test('kernel upgrade: v2 boots its own kernel (kexec), rollback boots the disk kernel, SIGKILL while staging v3\'s kernel boots v1', { timeout: 2_400_000 }, async (t) => {
  requireRoot();
  for (const tool of ['mksquashfs', 'mkfs.ext4', 'syslinux', 'sfdisk', 'skopeo', 'patchelf', 'qemu-system-x86_64', 'kexec', 'depmod']) requireTool(tool);
  const kernel = fetchKernel();
  const other = fetchKernel('other');
  const diskVersion = readFileSync(path.join(kernel, 'version'), 'utf8').trim();
  const otherVersion = readFileSync(path.join(other, 'version'), 'utf8').trim();
  assert.notEqual(otherVersion, diskVersion);
  const dir = tempDir('drydock-os-kernel-');
  const store = path.join(dir, 'store');
  serve = await startServe(['--root', path.join(dir, 'registry'), '--addr', '127.0.0.1:0']);
  const port = new URL(serve.url).port;
  const host = `127.0.0.1:${port}`;
  const guestRef = `10.0.2.2:${port}/os/app:stable`;

  const base = tarLayer(busyboxTree(writeTree(path.join(dir, 'base'), { 'etc/hostname': 'app\n' })), path.join(dir, 'base.tgz'), 'gzip');
  const app = (v: string) => tarLayer(writeTree(path.join(dir, v), { 'etc/version': `${v}\n` }), path.join(dir, `${v}.tgz`), 'gzip');
  const kernelLayer = async (name: string, tail: string) => tarLayer(await kernelTree(path.join(dir, name), other, otherVersion, tail), path.join(dir, `${name}.tgz`), 'gzip');
  const cmd = ['sh', '-c', 'echo SERVICE-UP; sleep 3600'];
  const v1 = ociLayout(path.join(dir, 'oci1'), 'v1', [base, app('v1')], cmd);
  const v2 = ociLayout(path.join(dir, 'oci2'), 'v2', [base, await kernelLayer('k2', ''), app('v2')], cmd);
  // v3's kernel file differs from v2's by trailing bytes: its own sha256, so it is staged anew.
  const v3 = ociLayout(path.join(dir, 'oci3'), 'v3', [base, await kernelLayer('k3', 'drydock-v3'), app('v3')], cmd);
  pushWithSkopeo(v1, `${host}/os/app:stable`);
  const pulled = await runCli(['pull', '-q', `${host}/os/app:stable`], { root: store });
  assert.equal(pulled.code, 0, pulled.stderr);

  const top = path.join(dir, 'top');
  writeTree(top, { 'etc/top.txt': 'machine-7\n' });
  await bundleRuntime(path.join(top, '.drydock/drydock'), { layerFormat: 'erofs' });
  writeFileSync(path.join(dir, 'startup.sh'), STARTUP);
  const disk = path.join(dir, 'disk.img');
  const made = await runCli(['disk', `${host}/os/app:stable`, '-o', disk, '--kernel', kernel, '--updates-from', guestRef, '--insecure-registry', `10.0.2.2:${port}`,
    '--startup-script', path.join(dir, 'startup.sh'), '--top-layer', top, '--boot-deadline', '1200', '--size', '1G', '--layer-format', 'erofs', '-q'], { root: store, timeoutMs: 600_000 });
  assert.equal(made.code, 0, made.stderr);
  pushWithSkopeo(v2, `${host}/os/app:stable`);

  const qemu = ['-drive', `file=${disk},format=raw,if=virtio`, '-nic', 'user,model=virtio-net-pci'];
  const id = (m: string) => m.slice(7, 19);
  const b1 = await bootVm(qemu, { until: /STATUS-END/, timeoutMs: 900_000, memory: 1024 });
  assert.match(b1.console, new RegExp(`MACHINE boot=1 version=v1 kernel=${diskVersion} kexec= modules=${diskVersion}`));
  assert.match(b1.console, new RegExp(`kernel ${otherVersion}: staging its kernel, initramfs and modules`));
  assert.match(b1.console, /UPGRADE-EXIT 0/);
  const s1 = statusOf(b1.console);
  assert.equal(s1.staged?.id, id(v2.manifestDigest));
  assert.equal(s1.staged.kernel.version, otherVersion);
  assert.match(s1.staged.kernel.vmlinuz, /^os\/kernels\/[0-9a-f]{64}\.vmlinuz$/);

  const b2 = await bootVm(qemu, { until: /STATUS-END[\s\S]*(reached service started|cannot be confirmed)/, timeoutMs: 900_000, memory: 1024 });
  assert.match(b2.console, new RegExp(`deployment ${id(v2.manifestDigest)}: pending deployment, try 1`));
  assert.match(b2.console, new RegExp(`deployment ${id(v2.manifestDigest)} brings kernel ${otherVersion}: starting it \\(kexec\\)`));
  assert.match(b2.console, new RegExp(`MACHINE boot=2 version=v2 kernel=${otherVersion} kexec=drydock.kexec=${id(v2.manifestDigest)} modules=${otherVersion}`));
  assert.match(b2.console, /ROLLBACK-EXIT 0/);

  pushWithSkopeo(v3, `${host}/os/app:stable`);
  // Killed 1 s into the staging of v3's kernel (a copy, an initramfs build and a mksquashfs under TCG).
  const b3 = await bootVm(qemu, { until: /MACHINE boot=3[\s\S]*(kernel \S+: staging|UPGRADE-EXIT)/, timeoutMs: 900_000, memory: 1024, whileRunning: () => new Promise((r) => setTimeout(r, 1000)) });
  assert.match(b3.console, new RegExp(`MACHINE boot=3 version=v1 kernel=${diskVersion} kexec= `));
  assert.doesNotMatch(b3.console, /UPGRADE-EXIT/);

  const b4 = await bootVm(qemu, { until: /STATUS-END/, timeoutMs: 900_000, memory: 1024 });
  assert.match(b4.console, new RegExp(`deployment ${id(v1.manifestDigest)}: the default deployment`));
  assert.doesNotMatch(b4.console, /\(kexec\)/);
  assert.match(b4.console, new RegExp(`MACHINE boot=4 version=v1 kernel=${diskVersion} kexec= modules=${diskVersion}`));
  const s4 = statusOf(b4.console);
  assert.deepEqual([s4.booted, s4.default, s4.rollback, s4.staged], [id(v1.manifestDigest), id(v1.manifestDigest), id(v2.manifestDigest), null]);
  t.diagnostic(`boots (${b1.accel}): ${[b1, b2, b3, b4].map((b) => `${(b.elapsedMs / 1000).toFixed(0)} s`).join(', ')}`);
  await fsp.rm(disk, { force: true });
});
