// UEFI end to end: one ISO (default --firmware both) boots under OVMF from a CD drive and, the
// same file, under SeaBIOS; a --firmware uefi ISO attached as a hard disk (the `dd` to a USB
// stick case) boots under OVMF through its GPT; a --firmware both disk (GPT + ESP) boots under
// both firmwares, a --firmware uefi qcow2 disk under OVMF. The service reports which firmware the kernel
// came up on (/sys/firmware/efi) and its /proc/cmdline, which must match between GRUB and
// isolinux, quotes and all. Missing OVMF or GRUB fails the test.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, promises as fsp } from 'node:fs';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { tempDir, runCli, requireTool } from '../helpers/env.js';
import { ContentStore } from '../../src/store/index.js';
import { buildBusyboxRootfs } from '../../src/mkimage/busybox-rootfs.js';
import { importRootfs } from '../../src/archive/index.js';
import { fetchKernel } from './kernel.js';
import { bootVm } from './qemu.js';

const work = tempDir('drydock-uefi-');
const root = path.join(work, 'store');
const OVMF = '/usr/share/ovmf/OVMF.fd';
let kernel = '';

const SERVICE = `
echo "FIRMWARE $([ -d /sys/firmware/efi ] && echo uefi || echo bios)"
echo "CMDLINE $(cat /proc/cmdline)"
echo UEFI-TEST-DONE
sleep 600
`;
// $, ;, braces and % must reach the kernel as the isolinux APPEND line has them. (Quotes and
// backslashes are refused for UEFI: GRUB would escape them, see the last test.)
const KERNEL_ARGS = 'ddtest.d=$HOME;x ddtest.p=a%b{c}&d ddtest.e=';

before(async () => {
  for (const t of ['xorriso', 'mksquashfs', 'mkfs.vfat', 'mcopy', 'mdir', 'sfdisk', 'syslinux', 'mkfs.ext4', 'qemu-img', 'grub-mkimage', 'qemu-system-x86_64']) requireTool(t, t === 'grub-mkimage' ? 'apt-get install grub-common grub-efi-amd64-bin' : undefined);
  assert.ok(existsSync(OVMF), `${OVMF} is missing: apt-get install ovmf`);
  assert.ok(existsSync('/usr/lib/grub/x86_64-efi/moddep.lst'), 'GRUB EFI modules missing: apt-get install grub-efi-amd64-bin');
  kernel = fetchKernel();
  const rootfs = path.join(work, 'rootfs');
  await fsp.mkdir(rootfs);
  await buildBusyboxRootfs(rootfs);
  const store = await ContentStore.open(root);
  await importRootfs(store, rootfs, { tag: 'uefi-test:latest', changes: [`CMD ${JSON.stringify(['sh', '-c', SERVICE])}`] });
});

/** The kernel command line without what each boot loader adds on its own. */
function bootedCmdline(consoleText: string): string {
  const line = /^CMDLINE (.*)$/m.exec(consoleText.replace(/\r/g, ''));
  assert.ok(line, 'the service printed /proc/cmdline');
  return line[1]!.split(' ').filter((w) => !/^(BOOT_IMAGE|initrd)=/.test(w)).join(' ').trim();
}

test('drydock iso (firmware both): boots under OVMF (UEFI, GRUB) and SeaBIOS (isolinux) with the same command line', async (t) => {
  const iso = path.join(work, 'both.iso');
  const r = await runCli(['iso', 'uefi-test', '-o', iso, '--kernel', kernel, '--kernel-args', KERNEL_ARGS, '--json'], { root, timeoutMs: 300_000 });
  assert.equal(r.code, 0, r.stderr);
  const result = JSON.parse(r.stdout);
  assert.equal(result.firmware, 'both');
  const report = execFileSync('xorriso', ['-indev', iso, '-report_el_torito', 'plain'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  assert.match(report, /El Torito boot img :\s+1\s+BIOS/);
  assert.match(report, /El Torito boot img :\s+2\s+UEFI/);

  const uefi = await bootVm(['-bios', OVMF, '-cdrom', iso], { until: /UEFI-TEST-DONE/, timeoutMs: 240_000 });
  assert.match(uefi.console, /^FIRMWARE uefi\r?$/m);
  const bios = await bootVm(['-cdrom', iso], { until: /UEFI-TEST-DONE/, timeoutMs: 240_000 });
  assert.match(bios.console, /^FIRMWARE bios\r?$/m);

  assert.equal(bootedCmdline(uefi.console), result.cmdline);
  assert.equal(bootedCmdline(bios.console), result.cmdline);
  assert.match(result.cmdline, /ddtest\.d=\$HOME;x ddtest\.p=a%b\{c\}&d ddtest\.e=$/);
  t.diagnostic(`QEMU start to service output (TCG): UEFI/OVMF ${(uefi.elapsedMs / 1000).toFixed(1)} s, BIOS/SeaBIOS ${(bios.elapsedMs / 1000).toFixed(1)} s`);
});

test('drydock iso --firmware uefi: no isolinux; written to a disk (USB stick) it boots under OVMF from its GPT', async () => {
  const iso = path.join(work, 'uefi.iso');
  const r = await runCli(['iso', 'uefi-test', '-o', iso, '--kernel', kernel, '--firmware', 'uefi'], { root, timeoutMs: 300_000 });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^Firmware: UEFI \(GRUB\)$/m);
  const report = execFileSync('xorriso', ['-indev', iso, '-report_el_torito', 'plain', '-report_system_area', 'plain'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  assert.match(report, /El Torito boot img :\s+1\s+UEFI/);
  assert.doesNotMatch(report, /BIOS/);
  assert.match(report, /GPT partition path :\s+\d+\s+\/boot\/efiboot\.img/);

  const run = await bootVm(['-bios', OVMF, '-drive', `file=${iso},format=raw,if=virtio,readonly=on`], { until: /UEFI-TEST-DONE/, timeoutMs: 240_000 });
  assert.match(run.console, /^FIRMWARE uefi\r?$/m);
});

test('drydock disk --firmware both: GPT with an EFI system partition; boots under OVMF (GRUB) and SeaBIOS (syslinux, gptmbr)', async (t) => {
  const img = path.join(work, 'both.img');
  const r = await runCli(['disk', 'uefi-test', '-o', img, '--kernel', kernel, '--firmware', 'both', '--kernel-args', KERNEL_ARGS, '--json'], { root, timeoutMs: 300_000 });
  assert.equal(r.code, 0, r.stderr);
  const result = JSON.parse(r.stdout);
  assert.equal(result.firmware, 'both');
  const table = JSON.parse(execFileSync('sfdisk', ['-J', img], { encoding: 'utf8' })).partitiontable;
  assert.equal(table.label, 'gpt');
  assert.equal(table.partitions[0].type, 'C12A7328-F81F-11D2-BA4B-00A0C93EC93B');
  assert.match(table.partitions[0].attrs, /LegacyBIOSBootable/);
  assert.equal(table.partitions[1].type, '0FC63DAF-8483-4772-8E79-3D69D8477DE4');
  const fat = `${img}@@${table.partitions[0].start * 512}`;
  assert.match(execFileSync('mdir', ['-i', fat, '::/EFI/BOOT'], { encoding: 'utf8' }), /BOOTX64\s+EFI/);

  // Two VMs must not share one writable disk: the BIOS boot gets its own copy.
  const biosCopy = path.join(work, 'both-bios.img');
  await fsp.copyFile(img, biosCopy);
  const uefi = await bootVm(['-bios', OVMF, '-drive', `file=${img},format=raw,if=virtio`], { until: /UEFI-TEST-DONE/, timeoutMs: 240_000 });
  assert.match(uefi.console, /^FIRMWARE uefi\r?$/m);
  assert.equal(bootedCmdline(uefi.console), result.cmdline);
  const bios = await bootVm(['-drive', `file=${biosCopy},format=raw,if=virtio`], { until: /UEFI-TEST-DONE/, timeoutMs: 240_000 });
  assert.match(bios.console, /^FIRMWARE bios\r?$/m);
  assert.equal(bootedCmdline(bios.console), result.cmdline);
  t.diagnostic(`disk, QEMU start to service output (TCG): UEFI/OVMF ${(uefi.elapsedMs / 1000).toFixed(1)} s, BIOS/SeaBIOS ${(bios.elapsedMs / 1000).toFixed(1)} s`);
});

test('drydock disk --firmware uefi (qcow2): GPT, no BIOS boot code or syslinux; boots under OVMF', async () => {
  const qcow = path.join(work, 'uefi.qcow2');
  const r = await runCli(['disk', 'uefi-test', '-o', qcow, '--kernel', kernel, '--firmware', 'uefi', '--quiet'], { root, timeoutMs: 300_000 });
  assert.equal(r.code, 0, r.stderr);
  const raw = path.join(work, 'uefi-check.raw');
  execFileSync('qemu-img', ['convert', '-O', 'raw', qcow, raw]);
  const table = JSON.parse(execFileSync('sfdisk', ['-J', raw], { encoding: 'utf8' })).partitiontable;
  assert.equal(table.label, 'gpt');
  assert.equal(table.partitions[0].attrs, undefined, 'no LegacyBIOSBootable');
  const fat = `${raw}@@${table.partitions[0].start * 512}`;
  const files = execFileSync('mdir', ['-i', fat, '-b', '::/'], { encoding: 'utf8' });
  assert.doesNotMatch(files, /ldlinux|syslinux/i);
  const head = Buffer.alloc(440);
  const fh = await fsp.open(raw, 'r');
  await fh.read(head, 0, 440, 0);
  await fh.close();
  assert.ok(head.every((b) => b === 0), 'no BIOS boot code in the protective MBR');
  await fsp.rm(raw);

  const run = await bootVm(['-bios', OVMF, '-drive', `file=${qcow},format=qcow2,if=virtio`], { until: /UEFI-TEST-DONE/, timeoutMs: 240_000 });
  assert.match(run.console, /^FIRMWARE uefi\r?$/m);
});

test('--firmware: bad values and kernel args GRUB would alter are refused before any work', async () => {
  const out = path.join(work, 'never.img');
  const cases: [string[], RegExp][] = [
    [['iso', 'uefi-test', '-o', out, '--kernel', kernel, '--firmware', 'coreboot'], /--firmware.*(bios, uefi, both|choices)/],
    [['iso', 'uefi-test', '-o', out, '--kernel', kernel, '--kernel-args', 'x="a b"'], /GRUB \(the UEFI boot loader\) escapes ".*--firmware bios/],
    [['disk', 'uefi-test', '-o', out, '--kernel', kernel, '--config', path.join(work, 'uefi.yml')], /GRUB \(the UEFI boot loader\) escapes \\ .*BIOS-only disk with --firmware bios/],
  ];
  // The YAML key works as the flag does.
  await fsp.writeFile(path.join(work, 'uefi.yml'), 'firmware: uefi\nkernel-args: path=C:\\\\boot\n');
  for (const [args, err] of cases) {
    const r = await runCli(args, { root });
    assert.notEqual(r.code, 0, args.join(' '));
    assert.match(r.stderr, err, args.join(' '));
  }
  await assert.rejects(fsp.stat(out));
});
