// The boot builder's parts without QEMU: module dependency resolution against the real Debian
// kernel's modules.dep, the newc writer checked by the real cpio(1) and the kernel's format,
// option validation (flags and YAML), init selection, service config quoting run by busybox sh,
// and the disk layout arithmetic.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import { execFileSync, spawnSync } from 'node:child_process';
import path from 'node:path';
import { tempDir, requireTool } from '../helpers/env.js';
import { fetchKernel } from './kernel.js';
import {
  parseModulesDep, parseSoftdeps, resolveModules, loadModuleIndex, moduleName, copyModule, BOOT_MODULES, EXTRA_MODULES,
} from '../../src/boot/modules.js';
import { cpioStream, writeGzipCpio, type CpioEntry } from '../../src/boot/cpio.js';
import { loadBootConfigFile, mergeRaw, networkConf, parseMount, parseNetwork, parseSize, validateBootOptions, type NetworkConfig } from '../../src/boot/config.js';
import { bzImageVersion, resolveKernel } from '../../src/boot/kernel.js';
import { chooseInit, buildTopLayer, refuseSymlinkReplacement, resolveUser } from '../../src/boot/toplayer.js';
import { checkUniqueNames, parseServiceEntry, parseServiceFlag, type BootService } from '../../src/boot/services.js';
import { serviceConf } from '../../src/boot/scripts.js';
import { diskLayout, syslinuxConfig, writeIso } from '../../src/boot/media.js';
import { grubConfig, grubKernelArgs, grubUnsafeArgs, requireGrubEfi, writeEfiBootImage, type Firmware } from '../../src/boot/uefi.js';
import type { BootArtifacts } from '../../src/boot/artifacts.js';
import { buildBusyboxRootfs } from '../../src/mkimage/busybox-rootfs.js';

const work = tempDir('drydock-boot-parts-');
const MiB = 1024 * 1024;

test('modules.dep and softdep parsing', () => {
  const dep = parseModulesDep([
    'kernel/fs/isofs/isofs.ko.xz: kernel/drivers/cdrom/cdrom.ko.xz',
    'kernel/drivers/cdrom/cdrom.ko.xz:',
    'kernel/drivers/scsi/sr_mod.ko.zst: kernel/drivers/scsi/scsi_mod.ko.zst kernel/drivers/cdrom/cdrom.ko.xz',
    'kernel/lib/crc-itu-t.ko:',
    '',
  ].join('\n'));
  assert.deepEqual(dep.get('isofs'), { name: 'isofs', file: 'kernel/fs/isofs/isofs.ko.xz', deps: ['cdrom'] });
  assert.deepEqual(dep.get('crc_itu_t')?.deps, []);
  assert.deepEqual(dep.get('sr_mod')?.deps, ['scsi_mod', 'cdrom']);
  const soft = parseSoftdeps('softdep btrfs pre: sha256 crypto-crc32c post: foo\nsoftdep libcrc32c pre: crc32c\n# comment\n');
  assert.deepEqual(soft.get('btrfs'), ['sha256', 'crypto-crc32c']);
  assert.deepEqual(soft.get('libcrc32c'), ['crc32c']);
});

test('module names normalise like the kernel', () => {
  for (const [file, name] of [
    ['kernel/fs/nls/nls_iso8859-1.ko', 'nls_iso8859_1'],
    ['a/b/virtio_pci.ko.xz', 'virtio_pci'],
    ['x/crc32c-intel.ko.zst', 'crc32c_intel'],
    ['x/y.ko.gz', 'y'],
  ]) assert.equal(moduleName(file!), name);
});

test('resolveModules orders dependencies first, once each, and fails on missing required modules', () => {
  const index = {
    dir: '/k',
    modules: parseModulesDep([
      'a.ko: b.ko c.ko', 'b.ko: c.ko', 'c.ko:', 'd.ko: c.ko', 'x.ko:',
    ].join('\n')),
    builtin: new Set(['ext4']),
    softdepPre: new Map([['d', ['x', 'crypto-alias']]]),
  };
  const order = (wanted: string[]) => resolveModules(index, wanted, []).map((m) => m.name);
  assert.deepEqual(order(['a']), ['c', 'b', 'a']);
  assert.deepEqual(order(['a', 'd']), ['c', 'b', 'a', 'x', 'd']);
  assert.deepEqual(order(['ext4', 'nonexistent', 'd']), ['x', 'c', 'd']);
  assert.throws(() => resolveModules(index, ['a'], ['a', 'overlay']), /lack overlay/);
  assert.doesNotThrow(() => resolveModules(index, ['a'], ['ext4']));
});

test('the Debian cloud kernel: every boot module resolves, deps precede users, version matches', async () => {
  const kernel = fetchKernel();
  const index = await loadModuleIndex(path.join(kernel, 'modules'));
  const order = resolveModules(index, [...BOOT_MODULES, ...EXTRA_MODULES]);
  const names = order.map((m) => m.name);
  for (const must of ['squashfs', 'overlay', 'isofs', 'loop', 'sr_mod', 'ata_piix', 'virtio_blk', 'btrfs']) assert.ok(names.includes(must), must);
  for (const m of order) for (const d of m.deps) assert.ok(names.indexOf(d) < names.indexOf(m.name), `${d} before ${m.name}`);
  assert.equal(new Set(names).size, names.length);
  const version = (await fsp.readFile(path.join(kernel, 'version'), 'utf8')).trim();
  assert.equal(await bzImageVersion(path.join(kernel, 'vmlinuz')), version);
  const k = await resolveKernel(work, { kernel });
  assert.equal(k.version, version);
  assert.equal(k.origin, 'user');
});

test('copyModule decompresses xz, zstd and gzip modules', async () => {
  requireTool('xz', 'apt-get install xz-utils');
  requireTool('zstd');
  const plain = path.join(work, 'm.ko');
  const content = Buffer.alloc(3 * MiB + 17, 7);
  await fsp.writeFile(plain, content);
  for (const [tool, ext] of [['xz', 'xz'], ['zstd', 'zst'], ['gzip', 'gz']]) {
    execFileSync(tool!, ['-kf', plain]);
    const out = path.join(work, `out-${ext}.ko`);
    await copyModule(`${plain}.${ext}`, out);
    assert.ok((await fsp.readFile(out)).equals(content), ext);
  }
  await assert.rejects(copyModule(path.join(work, 'missing.ko.xz'), path.join(work, 'x.ko')), /cannot decompress/);
});

test('newc archive: cpio(1) lists and extracts it, device nodes and symlinks included', async () => {
  requireTool('cpio');
  const big = path.join(work, 'big.bin');
  await fsp.writeFile(big, Buffer.alloc(2 * MiB + 3, 1));
  const entries: CpioEntry[] = [
    { type: 'dir', name: 'bin' },
    { type: 'file', name: 'bin/big', source: big, size: 2 * MiB + 3, mode: 0o755 },
    { type: 'data', name: 'init', data: Buffer.from('#!/bin/sh\n'), mode: 0o755 },
    { type: 'symlink', name: 'bin/sh', target: 'big' },
    { type: 'char', name: 'dev/console', major: 5, minor: 1 },
  ];
  const chunks: Buffer[] = [];
  for await (const c of cpioStream(entries, 1700000000)) chunks.push(c);
  const archive = Buffer.concat(chunks);
  assert.equal(archive.length % 4, 0);
  const listing = spawnSync('cpio', ['-itv'], { input: archive, encoding: 'utf8' });
  assert.equal(listing.status, 0, listing.stderr);
  assert.match(listing.stdout, /^drwxr-xr-x .* bin$/m);
  assert.match(listing.stdout, /^-rwxr-xr-x .* 2097155 .* bin\/big$/m);
  assert.match(listing.stdout, /^lrwxrwxrwx .* bin\/sh -> big$/m);
  assert.match(listing.stdout, /^crw------- .* 5, +1 .* dev\/console$/m);
  const gz = path.join(work, 'initrd.img');
  await writeGzipCpio(gz, entries);
  const dest = path.join(work, 'unpacked');
  await fsp.mkdir(dest);
  execFileSync('sh', ['-c', `zcat '${gz}' | cpio -id --quiet`], { cwd: dest });
  assert.equal((await fsp.stat(path.join(dest, 'bin/big'))).size, 2 * MiB + 3);
  assert.equal(await fsp.readlink(path.join(dest, 'bin/sh')), 'big');
  // A source file that changes size mid-archive is an error, not a corrupt initramfs.
  await assert.rejects(writeGzipCpio(path.join(work, 'bad.img'), [{ type: 'file', name: 'x', source: big, size: 5 }]), /changed size/);
  await assert.rejects(fsp.stat(path.join(work, 'bad.img')));
});

test('option validation: good values pass, bad ones name the option', async () => {
  const script = path.join(work, 'start.sh');
  await fsp.writeFile(script, '#!/bin/sh\necho hi\n');
  const ok = await validateBootOptions({
    timezone: 'Asia/Shanghai', proxy: 'http://proxy:3128', 'no-proxy': 'localhost,10.0.0.0/8', motd: 'hi\\nthere',
    'startup-script': script, hostname: 'box-1.lan', 'ssh-key': ['ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGx test@x'],
    'kernel-args': 'quiet', mount: ['data:/srv/data'], size: '2G', format: 'qcow2',
  });
  assert.equal(ok.motd, 'hi\nthere\n');
  assert.deepEqual(ok.mounts, [{ type: 'label', label: 'data', path: '/srv/data' }]);
  assert.equal(ok.size, 2 * 1024 * MiB);
  assert.equal(ok.init, 'auto');
  assert.equal(ok.compression, 'zstd');
  const priv = path.join(work, 'id_rsa');
  await fsp.writeFile(priv, '-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n');
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ timezone: 'Mars/Olympus' }, /unknown --timezone/],
    [{ timezone: '../etc/passwd' }, /invalid timezone/],
    [{ proxy: 'not a url' }, /invalid --proxy/],
    [{ proxy: 'ftp://x' }, /scheme/],
    [{ 'no-proxy': 'a b' }, /--no-proxy/],
    [{ hostname: '-bad-' }, /--hostname/],
    [{ 'startup-script': path.join(work, 'nope.sh') }, /--startup-script .* does not exist/],
    [{ 'ssh-key': [priv] }, /private key/],
    [{ 'ssh-key': ['garbage'] }, /not a public key/],
    [{ mount: ['data'] }, /invalid --mount/],
    [{ mount: ['data:relative'] }, /invalid --mount/],
    [{ mount: ['data:/a/../b'] }, /invalid --mount/],
    [{ 'top-layer': script }, /not a directory/],
    [{ init: 'systemd' }, /invalid --init/],
    [{ size: 'lots' }, /invalid size/],
    [{ format: 'vmdk' }, /invalid --format/],
    [{ 'kernel-args': 'a\nb' }, /one line/],
    [{ firmware: 'coreboot' }, /invalid --firmware "coreboot": bios, uefi or both/],
  ];
  for (const [raw, err] of cases) await assert.rejects(validateBootOptions(raw), err, JSON.stringify(raw));
});

test('sizes and mounts parse like the examples in --help', () => {
  for (const [s, n] of [['2G', 2 * 1024 ** 3], ['512M', 512 * MiB], ['1.5GiB', 1.5 * 1024 ** 3], ['4096', 4096], ['64k', 65536]] as const) {
    assert.equal(parseSize(s), n, s);
  }
  assert.deepEqual(parseMount('LABEL=shared:/mnt/shared/'), { type: 'label', label: 'shared', path: '/mnt/shared/' });
  assert.deepEqual(parseMount('9p:hostshare:/srv/share'), { type: '9p', label: 'hostshare', path: '/srv/share' });
  assert.deepEqual(parseMount('virtiofs:fs0:/mnt/fs/'), { type: 'virtiofs', label: 'fs0', path: '/mnt/fs/' });
  for (const bad of ['9p::/x', '9p:tag:relative', 'virtiofs:tag:/', '9p:a b:/x', 'data:/a:b']) assert.throws(() => parseMount(bad), /invalid --mount/, bad);
});

test('--network: dhcp, none, static=ADDR/PREFIX,gw=,dns=; bad values name the option', () => {
  const cases: [string, NetworkConfig][] = [
    ['dhcp', { mode: 'dhcp' }],
    ['none', { mode: 'none' }],
    ['static=10.0.2.50/24,gw=10.0.2.2,dns=10.0.2.3', { mode: 'static', address: '10.0.2.50', prefix: 24, gateway: '10.0.2.2', dns: ['10.0.2.3'] }],
    ['static=192.168.1.9/16,dns=1.1.1.1,dns=8.8.8.8,iface=eth1', { mode: 'static', address: '192.168.1.9', prefix: 16, dns: ['1.1.1.1', '8.8.8.8'], iface: 'eth1' }],
  ];
  for (const [spec, want] of cases) assert.deepEqual(parseNetwork(spec), want, spec);
  for (const bad of ['static', 'static=10.0.2.50', 'static=10.0.2.300/24', 'static=10.0.2.5/33', 'static=10.0.2.5/24,gw=x', 'bridge']) {
    assert.throws(() => parseNetwork(bad), /invalid --network/, bad);
  }
  assert.match(networkConf(parseNetwork('static=10.0.2.50/24,gw=10.0.2.2,dns=10.0.2.3')), /^NET_MODE=static\nNET_ADDR=10\.0\.2\.50\nNET_PREFIX=24\nNET_GW=10\.0\.2\.2\nNET_DNS='10\.0\.2\.3'/m);
});

test('--top-layer that would replace a symlink of the image is refused, naming the path', async () => {
  const rootfs = path.join(work, 'merged-usr');
  await fsp.mkdir(path.join(rootfs, 'usr/lib'), { recursive: true });
  await fsp.mkdir(path.join(rootfs, 'etc'), { recursive: true });
  await fsp.symlink('usr/lib', path.join(rootfs, 'lib'));
  const top = path.join(work, 'top-over-symlink');
  await fsp.mkdir(path.join(top, 'lib/firmware'), { recursive: true });
  await fsp.mkdir(path.join(top, 'etc'), { recursive: true });
  await assert.rejects(refuseSymlinkReplacement(top, rootfs), /--top-layer .*: lib\/ would replace the image's symlink \/lib -> usr\/lib; put the files under usr\/lib\/ /);
  const fine = path.join(work, 'top-fine');
  await fsp.mkdir(path.join(fine, 'usr/lib/firmware'), { recursive: true });
  await fsp.mkdir(path.join(fine, 'etc'), { recursive: true });
  await refuseSymlinkReplacement(fine, rootfs);
});

test('YAML config: same keys as the flags, paths relative to the file, flags win, lists add up', async () => {
  const dir = path.join(work, 'cfg');
  await fsp.mkdir(path.join(dir, 'machine'), { recursive: true });
  await fsp.writeFile(path.join(dir, 'start.sh'), 'echo hi\n');
  await fsp.writeFile(path.join(dir, 'boot.yml'), [
    'timezone: Europe/Berlin',
    'proxy: http://proxy.lan:3128',
    'no_proxy: localhost',
    'startup-script: start.sh',
    'topLayer: machine',
    'mount: [data:/data]',
    'network: static=10.0.2.50/24,gw=10.0.2.2,dns=10.0.2.3',
    'services:',
    '  - web',
    '  - { image: redis, name: cache, restart: on-failure }',
    'motd: |',
    '  Welcome',
  ].join('\n'));
  const file = await loadBootConfigFile(path.join(dir, 'boot.yml'));
  const opts = await validateBootOptions(mergeRaw(file, { timezone: 'UTC', mount: ['logs:/var/log/app'] }));
  assert.equal(opts.timezone, 'UTC');
  assert.equal(opts.proxy, 'http://proxy.lan:3128');
  assert.equal(opts.noProxy, 'localhost');
  assert.equal(opts.startupScript, path.join(dir, 'start.sh'));
  assert.equal(opts.topLayer, path.join(dir, 'machine'));
  assert.equal(opts.motd, 'Welcome\n');
  assert.deepEqual(opts.mounts.map((m) => m.label), ['data', 'logs']);
  assert.deepEqual(opts.network, { mode: 'static', address: '10.0.2.50', prefix: 24, gateway: '10.0.2.2', dns: ['10.0.2.3'] });
  assert.deepEqual(opts.services.map((x) => `${x.name}:${x.image}:${x.restart}`), ['web:web:always', 'cache:redis:on-failure']);
  await fsp.writeFile(path.join(dir, 'bad.yml'), 'timezon: UTC\n');
  await assert.rejects(loadBootConfigFile(path.join(dir, 'bad.yml')), /unknown key "timezon"/);
  await fsp.writeFile(path.join(dir, 'bad2.yml'), 'timezone: [a\n');
  await assert.rejects(loadBootConfigFile(path.join(dir, 'bad2.yml')), /invalid YAML/);
});

test('init selection: image init, busybox init, drydock supervisor', async () => {
  requireTool('busybox', 'apt-get install busybox-static');
  const bb = path.join(work, 'bb');
  await fsp.mkdir(bb);
  await buildBusyboxRootfs(bb);
  await fsp.symlink('../bin/busybox', path.join(bb, 'sbin/init')).catch(() => {});
  const systemd = path.join(work, 'sd');
  await fsp.mkdir(path.join(systemd, 'lib/systemd'), { recursive: true });
  await fsp.mkdir(path.join(systemd, 'sbin'));
  await fsp.writeFile(path.join(systemd, 'lib/systemd/systemd'), '\x7fELF not busybox');
  await fsp.symlink('/lib/systemd/systemd', path.join(systemd, 'sbin/init'));
  const empty = path.join(work, 'empty');
  await fsp.mkdir(empty);
  const cases: [string, string, Parameters<typeof chooseInit>[1], Parameters<typeof chooseInit>[2], string][] = [
    ['busybox + CMD', bb, { Cmd: ['sh', '-c', 'echo hi'] }, 'auto', '/.drydock/init'],
    ['busybox, no CMD', bb, {}, 'auto', '/sbin/init'],
    ['busybox, forced image', bb, { Cmd: ['sh'] }, 'image', '/sbin/init'],
    ['systemd', systemd, { Cmd: ['/bin/bash'] }, 'auto', '/sbin/init'],
    ['systemd forced drydock', systemd, {}, 'drydock', '/.drydock/init'],
    ['CMD is the init', systemd, { Cmd: ['/lib/systemd/systemd'] }, 'auto', '/lib/systemd/systemd'],
    ['nothing at all', empty, {}, 'auto', '/.drydock/init'],
  ];
  for (const [what, root, config, mode, want] of cases) assert.equal((await chooseInit(root, config, mode)).path, want, what);
  await assert.rejects(chooseInit(empty, {}, 'image'), /no \/sbin\/init/);
  assert.deepEqual(await resolveUser(bb, 'www-data'), { uid: 33, gid: 33, home: '/var/www' });
  assert.deepEqual(await resolveUser(bb, '1000:daemon'), { uid: 1000, gid: 1, home: '/' });
  await assert.rejects(resolveUser(bb, 'ghost'), /no user "ghost"/);
});

test('service.conf quoting survives busybox sh: argv, env with quotes, spaces and $', async () => {
  requireTool('busybox', 'apt-get install busybox-static');
  const conf = path.join(work, 'service.conf');
  const argv = ['printf', '[%s]', "it's", 'a b', '$HOME', '`x`'];
  await fsp.writeFile(conf, serviceConf({ argv, env: ['A=x "y" $z', "B=it's", 'bad-name=1', 'EMPTY'], workdir: '/tmp', uid: 1, gid: 2 }));
  const out = spawnSync('busybox', ['sh', '-c', `. '${conf}'; for k in $SVC_ENV_NAMES; do eval "printf '%s=%s;' $k \\"\\$SVC_ENV_$k\\""; done; echo "$SVC_USER $SVC_WORKDIR $SVC_ARGC"; (SVC_CMD)`], { encoding: 'utf8' });
  assert.equal(out.status, 0, out.stderr);
  assert.equal(out.stdout, 'A=x "y" $z;B=it\'s;EMPTY=;1:2 /tmp 6\n[it\'s][a b][$HOME][`x`]');
});

test('top layer: customizations land with the image\'s ownership, user files win', async () => {
  const rootfs = path.join(work, 'tl-rootfs');
  await fsp.mkdir(rootfs);
  await buildBusyboxRootfs(rootfs);
  await fsp.writeFile(path.join(rootfs, 'etc/environment'), 'LANG=C.UTF-8\nhttp_proxy=old\n');
  const user = path.join(work, 'tl-user');
  await fsp.mkdir(path.join(user, 'etc'), { recursive: true });
  await fsp.writeFile(path.join(user, 'etc/motd'), 'per-machine motd\n');
  const layer = path.join(work, 'tl-layer');
  const opts = await validateBootOptions({
    timezone: 'Asia/Shanghai', proxy: 'http://p:1', motd: 'baked', hostname: 'kiosk', 'top-layer': user,
    'ssh-key': ['ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGx me@host'],
  });
  const r = await buildTopLayer(layer, rootfs, { Cmd: ['sh'], Env: ['PATH=/bin'] }, opts);
  assert.equal(r.init.mode, 'drydock');
  assert.equal(await fsp.readFile(path.join(layer, 'etc/timezone'), 'utf8'), 'Asia/Shanghai\n');
  assert.equal((await fsp.readFile(path.join(layer, 'etc/localtime'))).subarray(0, 4).toString(), 'TZif');
  assert.equal(await fsp.readFile(path.join(layer, 'etc/environment'), 'utf8'),
    'LANG=C.UTF-8\nhttp_proxy="http://p:1"\nhttps_proxy="http://p:1"\nftp_proxy="http://p:1"\nHTTP_PROXY="http://p:1"\nHTTPS_PROXY="http://p:1"\nFTP_PROXY="http://p:1"\n');
  assert.match(await fsp.readFile(path.join(layer, 'etc/profile.d/proxy.sh'), 'utf8'), /^export https_proxy='http:\/\/p:1'$/m);
  assert.equal(await fsp.readFile(path.join(layer, 'etc/motd'), 'utf8'), 'per-machine motd\n');
  assert.match(await fsp.readFile(path.join(layer, 'etc/hosts'), 'utf8'), /^127\.0\.1\.1\tkiosk$/m);
  const root = await fsp.stat(path.join(layer, 'root'));
  assert.equal(root.mode & 0o777, 0o700);
  assert.equal((await fsp.stat(path.join(layer, 'root/.ssh/authorized_keys'))).mode & 0o777, 0o600);
  assert.equal((await fsp.stat(path.join(layer, '.drydock/init'))).mode & 0o111, 0o111);
  assert.match(await fsp.readFile(path.join(layer, '.drydock/service.conf'), 'utf8'), /SVC_ENV_http_proxy='http:\/\/p:1'/);
});

test('disk layout: aligned partitions, explicit sizes checked', () => {
  const l = diskLayout(40 * MiB, 100 * MiB);
  assert.equal(l.bootStart, MiB);
  assert.equal(l.bootSize % MiB, 0);
  assert.equal(l.dataStart, l.bootStart + l.bootSize);
  assert.ok(l.dataSize >= 100 * MiB * 1.1);
  assert.equal(l.dataStart + l.dataSize, l.total);
  const big = diskLayout(40 * MiB, 100 * MiB, 2 * 1024 * MiB);
  assert.equal(big.total, 2 * 1024 * MiB);
  assert.equal(big.dataStart + big.dataSize, big.total);
  assert.throws(() => diskLayout(40 * MiB, 100 * MiB, 64 * MiB), /--size 64M is too small for this image: it needs at least \d+M/);
  // GPT keeps its backup table in the last MiB: the data partition stops short of it.
  const gpt = diskLayout(40 * MiB, 100 * MiB, 2 * 1024 * MiB, MiB);
  assert.equal(gpt.dataStart + gpt.dataSize, 2 * 1024 * MiB - MiB);
  assert.equal(diskLayout(40 * MiB, 100 * MiB, undefined, MiB).total, l.total + MiB);
});

test('kernel from the image: /boot/vmlinuz-<ver> with /lib/modules/<ver> wins when no --kernel is given', async () => {
  const kernel = fetchKernel();
  const version = (await fsp.readFile(path.join(kernel, 'version'), 'utf8')).trim();
  const rootfs = path.join(work, 'with-kernel');
  await fsp.mkdir(path.join(rootfs, 'boot'), { recursive: true });
  await fsp.mkdir(path.join(rootfs, 'lib/modules'), { recursive: true });
  await fsp.copyFile(path.join(kernel, 'vmlinuz'), path.join(rootfs, `boot/vmlinuz-${version}`));
  await fsp.symlink(path.join(kernel, 'modules'), path.join(rootfs, 'lib/modules', version));
  const k = await resolveKernel(rootfs, {});
  assert.equal(k.origin, 'image');
  assert.equal(k.version, version);
  assert.equal(k.modulesDir, path.join(rootfs, 'lib/modules', version));
  // --modules of another version is caught before anything is built.
  const wrong = path.join(work, 'lib-wrong/lib/modules/5.10.0-99-amd64');
  await fsp.mkdir(wrong, { recursive: true });
  await fsp.writeFile(path.join(wrong, 'modules.dep'), '');
  await assert.rejects(resolveKernel(rootfs, { kernel: path.join(kernel, 'vmlinuz'), modules: wrong }), /modules .* are for 5\.10\.0-99-amd64/);
});

test('startup script with the image\'s own init: hooked into busybox init\'s rcS and systemd', async () => {
  const rootfs = path.join(work, 'own-init');
  await fsp.mkdir(rootfs);
  await buildBusyboxRootfs(rootfs);
  await fsp.mkdir(path.join(rootfs, 'lib/systemd'), { recursive: true });
  await fsp.writeFile(path.join(rootfs, 'lib/systemd/systemd'), 'not busybox');
  await fsp.rm(path.join(rootfs, 'sbin/init'), { force: true });
  await fsp.symlink('/lib/systemd/systemd', path.join(rootfs, 'sbin/init'));
  const script = path.join(work, 'own-start.sh');
  await fsp.writeFile(script, '#!/bin/sh\necho started\n');
  const layer = path.join(work, 'own-layer');
  const r = await buildTopLayer(layer, rootfs, { Cmd: ['/bin/sh'] }, await validateBootOptions({ 'startup-script': script }));
  assert.equal(r.init.path, '/sbin/init');
  assert.equal(r.service, undefined);
  assert.match(await fsp.readFile(path.join(layer, 'etc/systemd/system/drydock-startup.service'), 'utf8'), /^ExecStart=\/\.drydock\/startup$/m);
  assert.equal(await fsp.readlink(path.join(layer, 'etc/systemd/system/multi-user.target.wants/drydock-startup.service')), '../drydock-startup.service');
  assert.match(await fsp.readFile(path.join(layer, 'etc/init.d/rcS'), 'utf8'), /^'\/\.drydock\/startup'$/m);
  await assert.rejects(fsp.stat(path.join(layer, '.drydock/init')));
});

test('grub.cfg: serial console, no delay, finds the ISO by label, kernel args as isolinux passes them', () => {
  const cases: { label: string; cmdline: string; linux: string }[] = [
    { label: 'DD0123ABCD', cmdline: 'console=ttyS0,115200 drydock.label=DD0123ABCD', linux: 'linux /boot/vmlinuz console=ttyS0,115200 drydock.label=DD0123ABCD' },
    { label: 'DDFFFFFFFF', cmdline: 'a=1  b=2 ', linux: 'linux /boot/vmlinuz a=1 b=2' },
    { label: 'DD00000000', cmdline: 'x.q="a b" y=$HOME;z', linux: `linux /boot/vmlinuz 'x.q="a' 'b"' 'y=$HOME;z'` },
    { label: 'DD00000001', cmdline: "s=it's t=$x", linux: `linux /boot/vmlinuz "s=it's" 't=$x'` },
    { label: 'DD00000002', cmdline: `m=it's$"x\\`, linux: `linux /boot/vmlinuz "m=it's\\$\\"x\\\\"` },
  ];
  for (const c of cases) {
    const cfg = grubConfig(c, '/boot/vmlinuz', '/boot/initrd.img');
    const lines = cfg.split('\n').map((l) => l.trim());
    assert.ok(lines.includes(c.linux), `${c.cmdline}: ${cfg}`);
    assert.ok(lines.indexOf(`search --no-floppy --set=root --label ${c.label}`) > lines.indexOf('set root='), c.label);
    for (const l of ['serial --unit=0 --speed=115200', 'terminal_input console serial', 'terminal_output console serial', 'set timeout=0', 'initrd /boot/initrd.img']) {
      assert.ok(lines.includes(l), l);
    }
  }
  // GRUB's own parser accepts every generated config.
  requireTool('grub-script-check', 'apt-get install grub-common');
  for (const c of cases) {
    const r = spawnSync('grub-script-check', [], { input: grubConfig(c, '/boot/vmlinuz', '/boot/initrd.img'), encoding: 'utf8' });
    assert.equal(r.status, 0, `${c.cmdline}: ${r.stderr}`);
  }
  assert.equal(grubKernelArgs('a  b\tc'), 'a b c');
  assert.match(grubConfig({ label: 'DD00000003', cmdline: 'q' }, '/vmlinuz', '/initrd.img', { fsUuid: 'abcd-0123' }), /^search --no-floppy --set=root --fs-uuid abcd-0123$/m);
  assert.equal(grubUnsafeArgs('console=ttyS0 a=$b;c'), undefined);
  assert.match(grubUnsafeArgs(`x="a b" y=it's`)!, /escapes " ' in kernel arguments/);
  assert.throws(() => grubConfig({ label: 'bad label', cmdline: '' }, '/k', '/i'));
});

test('GRUB EFI modules missing: the error names the package and --firmware bios', async () => {
  await assert.rejects(requireGrubEfi(path.join(work, 'no-grub')), /apt-get install grub-efi-amd64-bin, or build a BIOS-only ISO with --firmware bios/);
});

test('ISO boot entries per --firmware, reproducible EFI image and ISO', async () => {
  for (const t of ['xorriso', 'grub-mkimage', 'mkfs.vfat', 'mcopy', 'mdir']) requireTool(t);
  /** Stand-in artifacts: the boot entries do not look inside the kernel or initramfs. */
  async function artifacts(name: string): Promise<BootArtifacts> {
    const dir = path.join(work, `iso-${name}`, 'media');
    await fsp.mkdir(path.join(dir, 'boot'), { recursive: true });
    await fsp.writeFile(path.join(dir, 'boot/vmlinuz'), 'kernel');
    await fsp.writeFile(path.join(dir, 'boot/initrd.img'), 'initrd');
    const label = 'DD12AB34CD';
    return { dir, vmlinuz: path.join(dir, 'boot/vmlinuz'), initrd: path.join(dir, 'boot/initrd.img'), rootfsSquashfs: '', topSquashfs: '', modulesSquashfs: '', label,
      kernel: { vmlinuz: '', origin: 'user' } as unknown as BootArtifacts['kernel'], init: { path: '/sbin/init', reason: 'test' } as unknown as BootArtifacts['init'], modules: [],
      cmdline: `console=ttyS0,115200 drydock.label=${label}`, bootConf: '', kernelSha256: '' };
  }
  const cases: [Firmware, string[], string[]][] = [
    ['both', ['BIOS', 'UEFI'], ['/isolinux/isolinux.bin', '/boot/efiboot.img']],
    ['bios', ['BIOS'], ['/isolinux/isolinux.bin']],
    ['uefi', ['UEFI'], ['/boot/efiboot.img']],
  ];
  const prev = process.env.SOURCE_DATE_EPOCH;
  process.env.SOURCE_DATE_EPOCH = '1700000000';
  try {
    for (const [firmware, platforms, images] of cases) {
      const sums: string[] = [];
      for (const n of [1, 2]) {
        const a = await artifacts(`${firmware}${n}`);
        const iso = path.join(work, `${firmware}${n}.iso`);
        await writeIso(a, iso, { firmware });
        sums.push(execFileSync('sha256sum', [iso], { encoding: 'utf8' }).split(' ')[0]!);
        if (n === 2) continue;
        const report = execFileSync('xorriso', ['-indev', iso, '-report_el_torito', 'plain'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
        const found = [...report.matchAll(/^El Torito boot img :\s+\d+\s+(\w+)/gm)].map((m) => m[1]);
        assert.deepEqual(found, platforms, firmware);
        const paths = [...report.matchAll(/^El Torito img path :\s+\d+\s+(\S+)/gm)].map((m) => m[1]);
        assert.deepEqual(paths, images, firmware);
        if (firmware !== 'bios') {
          const efiImg = path.join(a.dir, 'boot/efiboot.img');
          assert.match(execFileSync('mdir', ['-i', efiImg, '::/EFI/BOOT'], { encoding: 'utf8' }), /BOOTX64\s+EFI/);
          assert.match(syslinuxConfig(a, '/boot/vmlinuz', '/boot/initrd.img'), new RegExp(`APPEND ${a.cmdline}`));
        }
      }
      assert.equal(sums[0], sums[1], `${firmware}: byte-identical with SOURCE_DATE_EPOCH`);
    }
    // The EFI image alone, too: GRUB core + memdisk + FAT with pinned times.
    const efiSums: string[] = [];
    for (const n of [1, 2]) {
      const dir = path.join(work, `efi${n}`);
      await fsp.mkdir(dir);
      await writeEfiBootImage({ label: 'DD00000000', cmdline: 'quiet' }, dir, path.join(dir, 'efiboot.img'), 1700000000);
      efiSums.push(execFileSync('sha256sum', [path.join(dir, 'efiboot.img')], { encoding: 'utf8' }).split(' ')[0]!);
    }
    assert.equal(efiSums[0], efiSums[1]);
  } finally {
    if (prev === undefined) delete process.env.SOURCE_DATE_EPOCH; else process.env.SOURCE_DATE_EPOCH = prev;
  }
});

test('merged-/usr image without poweroff: links land in usr/sbin through the symlink, no real sbin/ hides it', async () => {
  const rootfs = path.join(work, 'no-poweroff');
  await fsp.mkdir(path.join(rootfs, 'usr/sbin'), { recursive: true });
  await fsp.mkdir(path.join(rootfs, 'usr/bin'), { recursive: true });
  await fsp.symlink('usr/sbin', path.join(rootfs, 'sbin'));
  await fsp.symlink('usr/bin', path.join(rootfs, 'bin'));
  await fsp.copyFile('/bin/busybox', path.join(rootfs, 'usr/bin/busybox'));
  const layer = path.join(work, 'no-poweroff-layer');
  await buildTopLayer(layer, rootfs, { Cmd: ['/usr/bin/busybox', 'httpd', '-f'] }, await validateBootOptions({}));
  for (const name of ['poweroff', 'reboot', 'halt']) assert.equal(await fsp.readlink(path.join(layer, 'usr/sbin', name)), '/.drydock/busybox', name);
  await assert.rejects(fsp.lstat(path.join(layer, 'sbin')), 'the layer must not carry a sbin/ that would hide the image symlink');
  // The network scripts are there whatever the options; DHCP by default.
  assert.match(await fsp.readFile(path.join(layer, '.drydock/network.conf'), 'utf8'), /^NET_MODE=dhcp$/m);
  for (const f of ['network-up', 'udhcpc.script']) assert.equal(((await fsp.stat(path.join(layer, '.drydock', f))).mode & 0o111) !== 0, true, f);
});

test('--service and services: entries parse to bundles-to-be; bad ones name the entry', () => {
  const cases: [unknown, Partial<BootService>][] = [
    ['nginx', { image: 'nginx', name: 'nginx', restart: 'always', env: [], volumes: [] }],
    ['registry.example:5000/team/web:1.2=front', { image: 'registry.example:5000/team/web:1.2', name: 'front' }],
    ['docker.io/library/redis:7@sha256:' + 'a'.repeat(64), { name: 'redis' }],
    [{ image: 'redis:7', command: 'redis-server --save ""', env: { A: 1 }, restart: 'on-failure' },
      { name: 'redis', command: ['/bin/sh', '-c', 'redis-server --save ""'], env: ['A=1'], restart: 'on-failure' }],
    [{ image: 'web', name: 'w2', command: ['httpd', '-f'], volumes: ['/srv/shared:/www:ro'] }, { name: 'w2', command: ['httpd', '-f'], volumes: ['/srv/shared:/www:ro'] }],
  ];
  for (const [raw, want] of cases) {
    const got = typeof raw === 'string' ? parseServiceFlag(raw) : parseServiceEntry(raw, 'services:');
    for (const [k, v] of Object.entries(want)) assert.deepEqual(got[k as keyof BootService], v, `${JSON.stringify(raw)} ${k}`);
  }
  const bad: [unknown, RegExp][] = [
    ['web=bad name', /invalid service name/],
    [{ image: 'web', restart: 'sometimes' }, /invalid restart policy "sometimes"/],
    [{ image: 'web', volumes: ['relative:/x'] }, /volume "relative:\/x" is not/],
    [{ image: 'web', ports: ['80:80'] }, /unknown key "ports"/],
    [{ image: 'web', env: ['1BAD=x'] }, /env "1BAD=x" is not NAME=VALUE/],
  ];
  for (const [raw, err] of bad) assert.throws(() => (typeof raw === 'string' ? parseServiceFlag(raw) : parseServiceEntry(raw, 'services:')), err, JSON.stringify(raw));
  assert.throws(() => checkUniqueNames([parseServiceFlag('web'), parseServiceFlag('other/web')]), /two services are named "web"/);
});

test('updatable-disk options: --updates-from with its companions, clear errors otherwise', async () => {
  const ok = await validateBootOptions({ 'updates-from': '10.0.2.2:5000/os/app:stable', 'insecure-registry': ['10.0.2.2:5000'], 'boot-tries': '2', 'boot-deadline': '0' });
  assert.deepEqual([ok.updatesFrom, ok.insecureRegistries, ok.bootTries, ok.bootDeadline], ['10.0.2.2:5000/os/app:stable', ['10.0.2.2:5000'], 2, 0]);
  const bare = await validateBootOptions({ 'updates-from': true });
  assert.deepEqual([bare.updatesFrom, bare.bootTries, bare.bootDeadline, bare.layerFormat], ['', 3, 300, 'erofs'], 'a bare --updates-from: the image name, default tries, deadline and layer format');
  assert.equal((await validateBootOptions({ 'updates-from': true, 'layer-format': 'squashfs' })).layerFormat, 'squashfs');
  assert.equal((await validateBootOptions({})).updatesFrom, undefined);
  const authfile = path.join(work, 'auth.json');
  await fsp.writeFile(authfile, '{"auths":{}}');
  assert.equal((await validateBootOptions({ 'updates-from': true, authfile })).authfile, authfile);
  const bad: [Record<string, unknown>, RegExp][] = [
    [{ 'updates-from': 'Not A Ref' }, /invalid --updates-from "Not A Ref"/],
    [{ 'updates-from': true, 'boot-tries': '0' }, /invalid --boot-tries "0": a whole number, at least 1/],
    [{ 'updates-from': true, 'boot-deadline': '-5' }, /invalid --boot-deadline/],
    [{ 'updates-from': true, 'insecure-registry': ['http://x:5000'] }, /invalid --insecure-registry "http:\/\/x:5000": expected HOST\[:PORT\]/],
    [{ 'insecure-registry': ['10.0.2.2:5000'] }, /--insecure-registry only applies to an updatable disk \(add --updates-from REF\)/],
    [{ 'boot-tries': '2' }, /--boot-tries only applies to an updatable disk/],
    [{ 'updates-from': true, 'layer-format': 'ext4' }, /invalid --layer-format "ext4": squashfs or erofs/],
    [{ 'layer-format': 'erofs' }, /--layer-format only applies to an updatable disk/],
    [{ 'updates-from': true, authfile: path.join(work, 'nope.json') }, /--authfile .* does not exist/],
  ];
  for (const [raw, error] of bad) await assert.rejects(validateBootOptions(raw), error, JSON.stringify(raw));
  await fsp.writeFile(path.join(work, 'notjson'), 'user:pass\n');
  await assert.rejects(validateBootOptions({ 'updates-from': true, authfile: path.join(work, 'notjson') }), /--authfile .* is not JSON/);
});
