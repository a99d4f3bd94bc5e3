// End to end through the CLI: build an ISO and a disk image from a busybox image whose CMD is a
// test service, boot them in QEMU with a labelled top-layer disk and a data disk attached, and
// read the serial console: the service ran (as USER, in WORKDIR, with ENV) and was restarted
// after exiting; timezone, proxy, motd, hostname are in place; the startup script ran; the
// top-layer disk overrides the image's file; --mount mounted the data disk; persist= keeps
// the writable layer across boots.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { tempDir, runCli, requireTool } from '../helpers/env.js';
import { ContentStore } from '../../src/store/index.js';
import { buildBusyboxRootfs } from '../../src/mkimage/busybox-rootfs.js';
import { importRootfs } from '../../src/archive/index.js';
import { fetchKernel } from './kernel.js';
import { bootVm } from './qemu.js';
import { busyboxImage } from '../helpers/images.js';

const work = tempDir('drydock-boot-');
const root = path.join(work, 'store');
let kernel = '';

// Runs as USER daemon in WORKDIR /tmp. Exits 3 the first time (the supervisor must restart it),
// then prints what the test checks and syncs (persist= disk) before the test kills the VM.
const SERVICE = `
n=$(( $(cat /tmp/count 2>/dev/null || echo 0) + 1 )); echo $n > /tmp/count
echo "SERVICE-RUN-$n uid=$(id -u) pwd=$(pwd) greeting=$GREETING"
if [ $(( n % 2 )) = 1 ]; then exit 3; fi
echo "TZ $(cat /etc/timezone) $(date +%Z)"
echo "PROXY-ENV $http_proxy $no_proxy"
grep -h '^export http_proxy\\|^http_proxy' /etc/profile.d/proxy.sh /etc/environment | sed 's/^/PROXY-FILE /'
sed 's/^/MOTD /' /etc/motd
echo "STARTUP $(cat /tmp/startup-ran)"
echo "OVERRIDE $(cat /etc/drydock-test.txt)"
echo "BAKED $(cat /etc/baked.txt)"
echo "DATA $(cat /data/hello.txt)"
echo "HOSTNAME $(hostname)"
echo "LOGGED $(grep -c SERVICE-RUN /var/log/drydock-service.log)"
sync
echo ALL-DONE
sleep 600
`;

async function ext4Image(file: string, label: string, files: Record<string, string>): Promise<void> {
  const dir = `${file}.d`;
  for (const [rel, text] of Object.entries(files)) {
    await fsp.mkdir(path.dirname(path.join(dir, rel)), { recursive: true });
    await fsp.writeFile(path.join(dir, rel), text);
  }
  await fsp.mkdir(dir, { recursive: true });
  execFileSync('truncate', ['-s', '16M', file]);
  execFileSync('mkfs.ext4', ['-q', '-F', '-L', label, '-d', dir, file]);
}

before(async () => {
  for (const t of ['xorriso', 'mksquashfs', 'mkfs.ext4', 'mkfs.vfat', 'mcopy', 'syslinux', 'sfdisk', 'qemu-img', 'qemu-system-x86_64']) requireTool(t);
  kernel = fetchKernel();
  const rootfs = path.join(work, 'rootfs');
  await fsp.mkdir(rootfs);
  await buildBusyboxRootfs(rootfs);
  await fsp.writeFile(path.join(rootfs, 'etc/drydock-test.txt'), 'from-image\n');
  await fsp.writeFile(path.join(rootfs, 'etc/baked.txt'), 'from-image\n');
  const store = await ContentStore.open(root);
  await importRootfs(store, rootfs, {
    tag: 'boot-test:latest',
    changes: ['USER daemon', 'WORKDIR /tmp', 'ENV GREETING="hello world"', `CMD ${JSON.stringify(['sh', '-c', SERVICE])}`],
  });
  await fsp.mkdir(path.join(work, 'baked/etc'), { recursive: true });
  await fsp.writeFile(path.join(work, 'baked/etc/baked.txt'), 'from-baked-top-layer\n');
  await fsp.writeFile(path.join(work, 'start.sh'), '#!/bin/sh\necho STARTUP-RAN > /tmp/startup-ran\nchmod 644 /tmp/startup-ran\n');
  await ext4Image(path.join(work, 'toplayer.img'), 'ddtoplayer', { 'machine/etc/drydock-test.txt': 'from-toplayer-disk\n' });
  await ext4Image(path.join(work, 'data.img'), 'dddata', { 'hello.txt': 'hello-data\n' });
});

function bootOptions(extraKernelArgs = ''): string[] {
  return [
    '--kernel', kernel,
    '--timezone', 'Asia/Shanghai',
    '--proxy', 'http://proxy.example:3128', '--no-proxy', 'localhost,127.0.0.1',
    '--motd', 'Welcome to the drydock boot test',
    '--startup-script', path.join(work, 'start.sh'),
    '--hostname', 'drydock-test',
    '--top-layer', path.join(work, 'baked'),
    '--mount', 'dddata:/data',
    '--kernel-args', `toplayer=LABEL=ddtoplayer toplayer_path=/machine ${extraKernelArgs}`.trim(),
  ];
}

const extraDisks = () => [
  '-drive', `file=${path.join(work, 'toplayer.img')},format=raw,if=virtio`,
  '-drive', `file=${path.join(work, 'data.img')},format=raw,if=virtio`,
];

function assertBootedService(consoleText: string, run: number): void {
  const c = consoleText.replace(/\r/g, '');
  assert.match(c, new RegExp(`SERVICE-RUN-${run - 1} uid=1 pwd=/tmp greeting=hello world`));
  assert.match(c, /drydock: service exited with status 3 after \d+s; restarting in 1s/);
  assert.match(c, new RegExp(`SERVICE-RUN-${run} uid=1 pwd=/tmp greeting=hello world`));
  assert.match(c, /^TZ Asia\/Shanghai CST$/m);
  assert.match(c, /^PROXY-ENV http:\/\/proxy\.example:3128 localhost,127\.0\.0\.1$/m);
  assert.match(c, /^PROXY-FILE export http_proxy='http:\/\/proxy\.example:3128'$/m);
  assert.match(c, /^PROXY-FILE http_proxy="http:\/\/proxy\.example:3128"$/m);
  assert.match(c, /^MOTD Welcome to the drydock boot test$/m);
  assert.match(c, /^STARTUP STARTUP-RAN$/m);
  assert.match(c, /drydock: top layer: copied LABEL=ddtoplayer:\/machine over the system/);
  assert.match(c, /^OVERRIDE from-toplayer-disk$/m);
  assert.match(c, /^BAKED from-baked-top-layer$/m);
  assert.match(c, /drydock: mounted LABEL=dddata on \/data/);
  assert.match(c, /^DATA hello-data$/m);
  assert.match(c, /^HOSTNAME drydock-test$/m);
  assert.match(c, /^LOGGED [1-9]\d*$/m);
}

test('drydock iso: boots in QEMU from CD-ROM, runs the service with every customization', async () => {
  const iso = path.join(work, 'boot.iso');
  const r = await runCli(['iso', 'boot-test', '-o', iso, ...bootOptions(), '--json'], { root, timeoutMs: 300_000 });
  assert.equal(r.code, 0, r.stderr);
  const result = JSON.parse(r.stdout);
  assert.equal(result.kind, 'iso');
  assert.equal(result.init.path, '/.drydock/init');
  assert.match(result.label, /^DD[0-9A-F]{8}$/);
  // Hybrid: an MBR boot signature for USB sticks, and an El Torito catalogue for CD drives.
  const head = Buffer.alloc(512);
  const fh = await fsp.open(iso, 'r');
  await fh.read(head, 0, 512, 0);
  await fh.close();
  assert.equal(head.readUInt16LE(510), 0xaa55);
  assert.match(execFileSync('xorriso', ['-indev', iso, '-report_el_torito', 'plain'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }), /El Torito boot img/);

  const run = await bootVm(['-cdrom', iso, ...extraDisks()], { until: /ALL-DONE/ });
  assertBootedService(run.console, 2);
});

test('drydock disk: raw boots from a hard disk; persist= keeps the writable layer across boots (qcow2)', async () => {
  requireTool('mkfs.ext4');
  const persist = path.join(work, 'persist.img');
  await ext4Image(persist, 'ddpersist', {});
  const img = path.join(work, 'boot.img');
  const r = await runCli(['disk', 'boot-test', '-o', img, ...bootOptions('persist=LABEL=ddpersist'), '--json'], { root, timeoutMs: 300_000 });
  assert.equal(r.code, 0, r.stderr);
  const result = JSON.parse(r.stdout);
  assert.equal(result.kind, 'disk');
  const table = execFileSync('sfdisk', ['-J', img], { encoding: 'utf8' });
  const parts = JSON.parse(table).partitiontable.partitions;
  assert.equal(parts.length, 2);
  assert.equal(parts[0].bootable, true);
  assert.equal(execFileSync('blkid', ['-o', 'value', '-s', 'TYPE', '--probe', '--offset', String(parts[1].start * 512), img], { encoding: 'utf8' }).trim(), 'ext4');

  const first = await bootVm(['-drive', `file=${img},format=raw`, ...extraDisks(), '-drive', `file=${persist},format=raw,if=virtio`], { until: /ALL-DONE/ });
  assert.match(first.console, /drydock: writable layer: LABEL=ddpersist \(\/dev\/vd.\), changes persist/);
  assertBootedService(first.console, 2);

  // Second boot from the same build as qcow2: /tmp/count lives on the persist disk, so the
  // service counts on from 2 (runs 3 and 4) instead of starting over.
  const qcow = path.join(work, 'boot.qcow2');
  const q = await runCli(['disk', 'boot-test', '-o', qcow, ...bootOptions('persist=LABEL=ddpersist'), '--quiet'], { root, timeoutMs: 300_000 });
  assert.equal(q.code, 0, q.stderr);
  assert.equal(q.stdout.trim(), qcow);
  assert.match(execFileSync('qemu-img', ['info', qcow], { encoding: 'utf8' }), /file format: qcow2/);
  const second = await bootVm(['-drive', `file=${qcow},format=qcow2`, ...extraDisks(), '-drive', `file=${persist},format=raw,if=virtio`], { until: /ALL-DONE/ });
  assertBootedService(second.console, 4);
  assert.doesNotMatch(second.console, /SERVICE-RUN-1 /);
});

test('a shell image (CMD ["sh"]) gets an interactive console; poweroff stops it cleanly', async () => {
  await busyboxImage(root);
  const iso = path.join(work, 'shell.iso');
  const r = await runCli(['iso', 'busybox', '-o', iso, '--kernel', kernel, '--hostname', 'shellbox'], { root, timeoutMs: 300_000 });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /Init: \/\.drydock\/init/);
  const run = await bootVm(['-cdrom', iso], {
    // poweroff only once the whole line is out: typed earlier, its echo lands on the same line
    // (a loaded TCG guest once printed "term=linuxpoweroff").
    type: [[/drydock: service started/, 'echo CONSOLE-$((6*7)) on $(hostname) tty=$(tty) run=$(ls /run/drydock | tr "\\n" ,) term=$TERM\n'], [/CONSOLE-42 on shellbox[^\n]*\n/, 'poweroff\n']],
  });
  assert.ok(run.poweredOff, 'the VM powered itself off');
  const c = run.console.replace(/\r/g, '');
  assert.match(c, /^CONSOLE-42 on shellbox tty=\/dev\/ttyS0 run=image,medium,modules,network,rw,top,toplayer, term=linux$/m);
  assert.match(c, /drydock: poweroff: stopping the service/);
  assert.match(c, /reboot: Power down/);
});

test('a CMD that cannot even be executed is reported as failed, not started', async () => {
  const rootfs = path.join(work, 'broken-rootfs');
  await fsp.mkdir(rootfs);
  await buildBusyboxRootfs(rootfs);
  const store = await ContentStore.open(root);
  await importRootfs(store, rootfs, { tag: 'broken-cmd:latest', changes: ['CMD ["/no/such/binary"]'] });
  const iso = path.join(work, 'broken.iso');
  const r = await runCli(['iso', 'broken-cmd', '-o', iso, '--kernel', kernel, '--firmware', 'bios', '-q'], { root, timeoutMs: 300_000 });
  assert.equal(r.code, 0, r.stderr);
  const run = await bootVm(['-cdrom', iso], { until: /drydock: service failed to start[^\n]*\n[^]*drydock: service failed to start/, timeoutMs: 240_000 });
  const c = run.console.replace(/\r/g, '');
  assert.match(c, /drydock: service failed to start \(status 127: command or its loader not found\); retrying in 1s/);
  assert.doesNotMatch(c, /drydock: service started/);
});

test('SOURCE_DATE_EPOCH: the same image and options give a byte-identical ISO', async () => {
  const sums: string[] = [];
  for (const n of [1, 2]) {
    const iso = path.join(work, `repro${n}.iso`);
    const r = await runCli(['iso', 'boot-test', '-o', iso, '--kernel', kernel, '--timezone', 'UTC', '-q'], { root, env: { SOURCE_DATE_EPOCH: '1700000000' }, timeoutMs: 300_000 });
    assert.equal(r.code, 0, r.stderr);
    sums.push(execFileSync('sha256sum', [iso], { encoding: 'utf8' }).split(' ')[0]!);
    await fsp.rm(iso);
  }
  assert.equal(sums[0], sums[1]);
});

test('bad input: clear errors, nothing written', async () => {
  const out = path.join(work, 'never.iso');
  const cases: [string[], RegExp][] = [
    [['iso', 'no-such-image', '-o', out, '--kernel', kernel], /no-such-image/],
    [['iso', 'boot-test', '-o', out], /the image has no kernel .*--kernel/],
    [['iso', 'boot-test', '-o', out, '--kernel', path.join(work, 'start.sh')], /not an x86 Linux kernel image/],
    [['iso', 'boot-test', '-o', out, '--kernel', kernel, '--timezone', 'Nowhere/City'], /unknown --timezone/],
    [['disk', 'boot-test', '-o', out, '--kernel', kernel, '--size', '10M'], /--size 10M is too small/],
    [['iso', 'boot-test', '-o', path.join(work, 'missing-dir/x.iso'), '--kernel', kernel], /output directory .* does not exist/],
  ];
  for (const [args, err] of cases) {
    const r = await runCli(args, { root, env: { DRYDOCK_KERNEL: '' } });
    assert.notEqual(r.code, 0, args.join(' '));
    assert.match(r.stderr, err, args.join(' '));
    assert.doesNotMatch(r.stderr, /^\s+at /m, 'no stack trace');
  }
  await assert.rejects(fsp.stat(out));
  const left = (await fsp.readdir(work)).filter((n) => n.startsWith('.tmp-'));
  assert.deepEqual(left, []);
});
