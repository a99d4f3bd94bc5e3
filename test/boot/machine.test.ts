// Booted images are real machines: QEMU user networking with hostfwd, and the host talks to
// the guest the way a user would. One ISO (cloud kernel, virtio-net) boots twice: with DHCP,
// then with the kernel's ip= static config (direct kernel boot of the ISO's own kernel and
// initramfs). Each time the host fetches the image's CMD (busybox httpd) over HTTP and logs in
// with `ssh -i key root@127.0.0.1 true`; the two boots must show different SSH host keys.
// A second ISO with Debian's generic kernel boots on QEMU's default NIC (e1000) with a 9p
// shared folder, which the cloud kernel lacks (there the missing share is logged and skipped).
// The cloud kernel's boot mounts a virtiofs share (QEMU's virtiofsd); the second boot has no
// such device, and the missing share is logged and skipped.
// The cloud ISO also runs two --service containers (services: in YAML) through runc: one the
// host reaches over HTTP, one whose command does not exist and is reported as failed.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import path from 'node:path';
import { tempDir, runCli, requireTool } from '../helpers/env.js';
import { ContentStore } from '../../src/store/index.js';
import { buildBusyboxRootfs } from '../../src/mkimage/busybox-rootfs.js';
import { importRootfs } from '../../src/archive/index.js';
import { fetchKernel } from './kernel.js';
import { bootVm } from './qemu.js';
import { freePort } from '../helpers/docker-registry.js';

const work = tempDir('drydock-machine-');
const root = path.join(work, 'store');
const key = path.join(work, 'id_ed25519');
const share = path.join(work, 'share');
const VIRTIOFSD = '/usr/lib/qemu/virtiofsd';

/** QEMU's virtiofsd sharing `dir` on a socket, and the QEMU arguments for it (shared guest memory). */
async function virtiofs(dir: string, tag: string, memoryMB = 512): Promise<{ args: string[]; stop: () => void }> {
  const sock = path.join(work, `${tag}.sock`);
  const child = spawn(VIRTIOFSD, [`--socket-path=${sock}`, '-o', `source=${dir}`, '-o', 'cache=none'], { stdio: 'ignore' });
  process.once('exit', () => child.kill('SIGKILL')); // never outlives the test, whatever ends it
  for (let i = 0; i < 100 && !(await fsp.stat(sock).catch(() => undefined)); i++) await new Promise((r) => setTimeout(r, 100));
  return {
    args: ['-object', `memory-backend-memfd,id=mem,size=${memoryMB}M,share=on`, '-numa', 'node,memdev=mem',
      '-chardev', `socket,id=vfs,path=${sock}`, '-device', `vhost-user-fs-pci,chardev=vfs,tag=${tag}`],
    stop: () => { child.kill('SIGKILL'); },
  };
}

// The service: what it saw at start goes to files httpd serves, then httpd runs in the foreground.
const SERVICE = [
  'env > /www/env.txt',
  'cat /run/drydock/network > /www/network.txt',
  'cat /etc/resolv.conf > /www/resolv.txt',
  'cut -d" " -f1 /proc/modules > /www/lsmod.txt',
  'ls /lib/modules/$(uname -r)/modules.dep > /www/modules.txt 2>&1',
  'cat /srv/share/hello.txt > /www/share.txt 2>&1',
  'cat /srv/vfs/hello.txt > /www/vfs.txt 2>&1',
  'exec httpd -f -p 80 -h /www',
].join('; ');


/** GET through hostfwd, retried while the guest's service comes up. */
async function httpGet(port: number, file: string, deadlineMs = 90_000): Promise<string> {
  const until = Date.now() + deadlineMs;
  let last: unknown;
  while (Date.now() < until) {
    try {
      const r = await fetch(`http://127.0.0.1:${port}/${file}`, { signal: AbortSignal.timeout(15_000) });
      const body = await r.text();
      if (r.ok) return body;
      last = new Error(`HTTP ${r.status}: ${body}`);
    } catch (e) { last = e; }
    await new Promise((r) => setTimeout(r, 1000));
  }
  throw new Error(`GET /${file} on 127.0.0.1:${port} failed: ${(last as Error)?.message} ${(last as { cause?: Error })?.cause?.message ?? ''}`);
}

/** `ssh -i key -p PORT root@127.0.0.1 COMMAND`, retried while sshd starts; returns the host key it saw and the output. */
async function ssh(port: number, knownHosts: string, command = 'true', deadlineMs = 90_000): Promise<{ hostKey: string; stdout: string }> {
  const until = Date.now() + deadlineMs;
  let last = '';
  while (Date.now() < until) {
    const r = spawnSync('ssh', ['-i', key, '-p', String(port), '-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=no',
      '-o', `UserKnownHostsFile=${knownHosts}`, '-o', 'ConnectTimeout=20', '-o', 'LogLevel=ERROR', 'root@127.0.0.1', command], { encoding: 'utf8', timeout: 60_000 });
    if (r.status === 0) return { hostKey: (await fsp.readFile(knownHosts, 'utf8')).trim().split(/\s+/).slice(1).join(' '), stdout: r.stdout };
    last = `${r.status} ${r.stderr}`;
    await new Promise((res) => setTimeout(res, 2000));
  }
  throw new Error(`ssh -p ${port} root@127.0.0.1 true failed: ${last}`);
}

async function buildIso(name: string, kernel: string, extra: string[] = []): Promise<{ iso: string; cmdline: string }> {
  const iso = path.join(work, `${name}.iso`);
  const r = await runCli(['iso', 'web', '-o', iso, '--kernel', kernel, '--firmware', 'bios', '--proxy', 'http://proxy.example:3128',
    '--ssh-key', `${key}.pub`, '--mount', '9p:hostshare:/srv/share', ...extra, '--json'], { root, timeoutMs: 400_000 });
  assert.equal(r.code, 0, r.stderr);
  return { iso, cmdline: JSON.parse(r.stdout).cmdline };
}

before(async () => {
  for (const t of ['xorriso', 'mksquashfs', 'qemu-system-x86_64', 'ssh', 'ssh-keygen', 'depmod']) requireTool(t);
  requireTool(VIRTIOFSD, 'apt-get install qemu-system-x86 (it ships /usr/lib/qemu/virtiofsd)');
  requireTool('dropbear', 'apt-get install dropbear-bin');
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', key]);
  const rootfs = path.join(work, 'rootfs');
  await fsp.mkdir(rootfs);
  await buildBusyboxRootfs(rootfs);
  await fsp.mkdir(path.join(rootfs, 'www'));
  await fsp.writeFile(path.join(rootfs, 'www/index.html'), 'hello from the booted machine\n');
  const store = await ContentStore.open(root);
  await importRootfs(store, rootfs, { tag: 'web:latest', changes: [`CMD ${JSON.stringify(['sh', '-c', SERVICE])}`, 'EXPOSE 80'] });
  // The --service container image: httpd on 8080 (host networking), its environment served too.
  await fsp.mkdir(path.join(rootfs, 'srv'), { recursive: true });
  await importRootfs(store, rootfs, { tag: 'svc:latest', changes: [`CMD ${JSON.stringify(['sh', '-c', 'echo container > /srv/index.html; env > /srv/env.txt; exec httpd -f -p 8080 -h /srv'])}`] });
  await fsp.writeFile(path.join(work, 'services.yml'), [
    'services:',
    '  - image: svc',
    '    name: web2',
    '    env: [ROLE=second]',
    '  - image: svc',
    '    name: broken',
    '    command: [/no/such/binary]',
    '    restart: "no"',
    '',
  ].join('\n'));
  await fsp.mkdir(share);
  await fsp.writeFile(path.join(share, 'hello.txt'), 'hello through 9p\n');
});

test('virtio-net: DHCP, then ip= static; the CMD is reachable over HTTP, ssh logs in, each boot has its own host key', { timeout: 900_000 }, async () => {
  const { iso, cmdline } = await buildIso('cloud', fetchKernel(), ['--config', path.join(work, 'services.yml'), '--mount', 'virtiofs:hostfs:/srv/vfs']);
  const vfs = await virtiofs(share, 'hostfs');
  const [http, sshPort, svcPort] = [await freePort(), await freePort(), await freePort()];
  const hostKeys: string[] = [];

  const dhcp = await bootVm([...vfs.args, '-cdrom', iso, '-nic', `user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:${http}-:80,hostfwd=tcp:127.0.0.1:${sshPort}-:22,hostfwd=tcp:127.0.0.1:${svcPort}-:8080`], {
    // The CMD's and both --service containers' lines, in whatever order they come: each service
    // says "started" from a poller that looks once a second, possibly after the CMD is serving.
    until: /^(?=[^]*drydock: service started)(?=[^]*drydock: service web2 started)(?=[^]*drydock: service broken failed to start)/, timeoutMs: 240_000,
    whileRunning: async () => {
      assert.equal(await httpGet(http, 'index.html'), 'hello from the booted machine\n');
      assert.match(await httpGet(http, 'env.txt'), /^http_proxy=http:\/\/proxy\.example:3128$/m);
      assert.equal(await httpGet(http, 'network.txt'), 'eth0 10.0.2.15/24 dhcp gateway=10.0.2.2 dns=10.0.2.3\n');
      assert.match(await httpGet(http, 'resolv.txt'), /^nameserver 10\.0\.2\.3$/m);
      assert.match(await httpGet(http, 'lsmod.txt'), /^virtio_net$/m);
      assert.match(await httpGet(http, 'modules.txt'), /^\/lib\/modules\/[^/]+\/modules\.dep$/m);
      assert.equal(await httpGet(http, 'vfs.txt'), 'hello through 9p\n', 'the virtiofs share is mounted');
      hostKeys.push((await ssh(sshPort, path.join(work, 'known1'))).hostKey);
      // The --service container: reachable through hostfwd, with its env and the proxy; listed by drydock-service.
      assert.equal(await httpGet(svcPort, 'index.html'), 'container\n');
      const env = await httpGet(svcPort, 'env.txt');
      assert.match(env, /^ROLE=second$/m);
      assert.match(env, /^http_proxy=http:\/\/proxy\.example:3128$/m);
      const status = (await ssh(sshPort, path.join(work, 'known1'), 'drydock-service status')).stdout;
      assert.match(status, /^web2\s+running$/m);
      assert.match(status, /^broken\s+failed \(status \d+/m);
    },
  });
  vfs.stop();
  assert.match(dhcp.console, /drydock: mounted virtiofs share hostfs on \/srv\/vfs/);
  assert.match(dhcp.console, /drydock: network: eth0 10\.0\.2\.15\/24 \(dhcp\), gateway 10\.0\.2\.2, dns 10\.0\.2\.3/);
  assert.match(dhcp.console, /drydock: 9p share hostshare: this kernel has no 9p support; continuing without \/srv\/share/);
  assert.match(dhcp.console, /drydock: ssh: dropbear listening on port 22, host key SHA256:/);
  assert.match(dhcp.console, /drydock: service web2 started/);
  assert.match(dhcp.console, /drydock: service broken failed to start \(status \d+\)/);

  // The same ISO's kernel and initramfs, with ip= on the command line.
  const boot = path.join(work, 'cloud-boot');
  await fsp.mkdir(boot);
  execFileSync('xorriso', ['-osirrox', 'on', '-indev', iso, '-extract', '/boot/vmlinuz', path.join(boot, 'vmlinuz'), '-extract', '/boot/initrd.img', path.join(boot, 'initrd.img')], { stdio: 'ignore' });
  // Fresh ports: the first machine's forwarded ports may still be held by its closing connections.
  const [http2, ssh2] = [await freePort(), await freePort()];
  const staticRun = await bootVm(['-kernel', path.join(boot, 'vmlinuz'), '-initrd', path.join(boot, 'initrd.img'),
    '-append', `${cmdline} ip=10.0.2.50::10.0.2.2:255.255.255.0::eth0:off:10.0.2.3`, '-cdrom', iso,
    '-nic', `user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:${http2}-10.0.2.50:80,hostfwd=tcp:127.0.0.1:${ssh2}-10.0.2.50:22`], {
    until: /drydock: service started/, timeoutMs: 240_000,
    whileRunning: async () => {
      assert.equal(await httpGet(http2, 'network.txt'), 'eth0 10.0.2.50/24 static gateway=10.0.2.2 dns=10.0.2.3\n');
      assert.match(await httpGet(http2, 'resolv.txt'), /^nameserver 10\.0\.2\.3$/m);
      hostKeys.push((await ssh(ssh2, path.join(work, 'known2'))).hostKey);
    },
  });
  assert.match(staticRun.console, /drydock: virtiofs share hostfs not found \(no virtiofs device with that tag\); continuing without \/srv\/vfs/);
  assert.match(staticRun.console, /drydock: network: eth0 10\.0\.2\.50\/24 \(static\), gateway 10\.0\.2\.2, dns 10\.0\.2\.3/);
  assert.match(hostKeys[0]!, /^ssh-ed25519 \S+$/);
  assert.notEqual(hostKeys[0], hostKeys[1], 'two machines booted from one ISO have different host keys');
});

test('generic kernel: QEMU\'s default NIC (e1000) gets its driver by modalias; a 9p shared folder is mounted', { timeout: 900_000 }, async () => {
  const { iso } = await buildIso('generic', fetchKernel('generic'));
  const http = await freePort();
  const run = await bootVm(['-cdrom', iso, '-nic', `user,model=e1000,hostfwd=tcp:127.0.0.1:${http}-:80`,
    '-virtfs', `local,path=${share},mount_tag=hostshare,security_model=none`], {
    until: /drydock: service started/, timeoutMs: 240_000,
    whileRunning: async () => {
      assert.equal(await httpGet(http, 'index.html'), 'hello from the booted machine\n');
      assert.equal(await httpGet(http, 'share.txt'), 'hello through 9p\n');
      assert.match(await httpGet(http, 'lsmod.txt'), /^e1000$/m);
      assert.equal(await httpGet(http, 'network.txt'), 'eth0 10.0.2.15/24 dhcp gateway=10.0.2.2 dns=10.0.2.3\n');
    },
  });
  assert.match(run.console, /drydock: mounted 9p share hostshare on \/srv\/share/);
});
