// UEFI boot for the ISO: GRUB as EFI/BOOT/BOOTX64.EFI (the removable-media path every x86-64
// UEFI firmware tries) inside a small FAT image, which the ISO names as its El Torito EFI entry
// and, for USB sticks, as a GPT partition. GRUB finds the ISO by its volume label and boots the
// same kernel, initramfs and command line as isolinux.
//
// BOOTX64.EFI is what `grub-mkstandalone` makes (a core image with an embedded memdisk holding
// grub.cfg), but built with grub-mkimage directly: grub-mkstandalone tars copies of its files
// with the current time as mtime, so its output changes every second. Here every module the
// config needs is linked into the core image and the memdisk tar is written with fixed
// mtimes and owners, so the same config gives a byte-identical BOOTX64.EFI.
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { UserError } from '../util/errors.js';
import { runTool } from './exec.js';
import { DEPLOYMENT_MENU, MENU_TIMEOUT } from './osstate.js';

export type Firmware = 'bios' | 'uefi' | 'both';
export const FIRMWARES: readonly Firmware[] = ['bios', 'uefi', 'both'];

export const GRUB_EFI_DIR = '/usr/lib/grub/x86_64-efi';

/**
 * Linked into BOOTX64.EFI: memdisk + tar read the embedded grub.cfg, normal runs it, iso9660 and
 * search_label find the ISO (on a CD drive, or a USB stick through its GPT/MBR), fat finds a
 * disk's ESP by volume id, linux boots the kernel through the EFI handover, serial + terminal
 * give the console, efi_gop/efi_uga a framebuffer for the kernel's efifb on real screens.
 */
export const GRUB_EFI_MODULES = [
  'memdisk', 'tar', 'normal', 'configfile', 'echo', 'test', 'search', 'search_label', 'iso9660',
  'part_gpt', 'part_msdos', 'fat', 'linux', 'serial', 'terminal', 'efi_gop', 'efi_uga', 'video',
];

/** The ISO path of the El Torito EFI image (a FAT filesystem holding EFI/BOOT/BOOTX64.EFI). */
export const EFI_IMAGE_PATH = 'boot/efiboot.img';

/** Quotes one word for GRUB's shell-like script parser; plain words stay as they are. */
export function grubQuote(word: string): string {
  if (/^[A-Za-z0-9_.,:=/+@%^-]+$/.test(word)) return word;
  if (!word.includes("'")) return `'${word}'`;
  // Inside double quotes GRUB treats \ " $ specially (as sh does).
  return `"${word.replace(/[\\"$]/g, '\\$&')}"`;
}

/**
 * GRUB's linux command joins its arguments with single spaces, so quoting each space-separated
 * word on its own keeps $, ; and friends intact. It also puts a backslash before every ", ' and
 * \ it passes on (grub-core/lib/cmdline.c), which the kernel does not undo: command lines with
 * those characters are refused for UEFI (see grubUnsafeArgs) rather than booted altered.
 */
export function grubKernelArgs(cmdline: string): string {
  return cmdline.split(/\s+/).filter(Boolean).map(grubQuote).join(' ');
}

/** Why `cmdline` cannot reach the kernel unchanged through GRUB, or undefined when it can. */
export function grubUnsafeArgs(cmdline: string): string | undefined {
  const bad = [...new Set(cmdline.match(/["'\\]/g) ?? [])];
  return bad.length ? `GRUB (the UEFI boot loader) escapes ${bad.join(' ')} in kernel arguments with a backslash, so the kernel would see different arguments` : undefined;
}

/** How GRUB finds the filesystem with the kernel: the ISO's volume label, or a FAT volume id. */
export type GrubFind = { label: string } | { fsUuid: string };

/** grub.cfg embedded in BOOTX64.EFI: serial + screen console, no menu delay, boot by label. */
export function grubConfig(boot: { label: string; cmdline: string }, kernelPath: string, initrdPath: string, find: GrubFind = { label: boot.label },
  opts: { menu?: boolean } = {}): string {
  if (!/^[A-Za-z0-9_-]{1,32}$/.test(boot.label)) throw new Error(`boot label ${boot.label} is not a plain ISO volume id`);
  const search = 'label' in find ? `--label ${find.label}` : `--fs-uuid ${find.fsUuid}`;
  const what = 'label' in find ? `volume labelled ${find.label}` : `filesystem with UUID ${find.fsUuid}`;
  return [
    'serial --unit=0 --speed=115200',
    'terminal_input console serial',
    'terminal_output console serial',
    'set default=0',
    'set timeout=0',
    // root starts as (memdisk); cleared, it tells whether search found the medium.
    'set root=',
    `search --no-floppy --set=root ${search}`,
    `if [ -z "$root" ]; then echo "drydock: no ${what}; is the boot medium attached?"; fi`,
    ...(opts.menu
      // Updatable disks: default and rollback deployment (the initramfs resolves "rollback").
      ? [`set timeout=${MENU_TIMEOUT / 10}`, ...DEPLOYMENT_MENU.flatMap((m) => [
        `menuentry 'drydock: ${m.title}' --id ${m.label} {`,
        `  linux ${kernelPath} ${grubKernelArgs([boot.cmdline, m.arg].filter(Boolean).join(' '))}`,
        `  initrd ${initrdPath}`,
        '}',
      ])]
      : [
        "menuentry 'drydock' {",
        `  linux ${kernelPath} ${grubKernelArgs(boot.cmdline)}`,
        `  initrd ${initrdPath}`,
        '}',
      ]),
    '',
  ].join('\n');
}

/** Fails with the Debian package (and the BIOS-only way out) when GRUB's EFI modules are missing. */
export async function requireGrubEfi(dir = GRUB_EFI_DIR): Promise<void> {
  const ok = await fsp.stat(path.join(dir, 'moddep.lst')).then(() => true, () => false);
  if (!ok) {
    throw new UserError(`UEFI boot needs GRUB's x86_64-efi modules (${dir} is missing): apt-get install grub-efi-amd64-bin, or build a BIOS-only ISO with --firmware bios`);
  }
}

const KiB = 1024;

/**
 * Builds <dir>/EFI/BOOT/BOOTX64.EFI with `cfg` as its embedded grub.cfg; every timestamp (the
 * memdisk tar, the files) is `mtime`, so the same config gives the same bytes.
 */
export async function buildBootx64(cfg: string, work: string, mtime: number): Promise<{ espDir: string; efi: string }> {
  await requireGrubEfi();
  const memdisk = path.join(work, 'memdisk');
  await fsp.mkdir(path.join(memdisk, 'boot/grub'), { recursive: true });
  await fsp.writeFile(path.join(memdisk, 'boot/grub/grub.cfg'), cfg);
  const tar = path.join(work, 'memdisk.tar');
  await runTool('tar', ['--format=ustar', '--sort=name', `--mtime=@${mtime}`, '--owner=0', '--group=0', '--numeric-owner', '-C', memdisk, '-cf', tar, 'boot']);

  const espDir = path.join(work, 'esp');
  const bootDir = path.join(espDir, 'EFI/BOOT');
  await fsp.mkdir(bootDir, { recursive: true });
  const efi = path.join(bootDir, 'BOOTX64.EFI');
  await runTool('grub-mkimage', ['-O', 'x86_64-efi', '-d', GRUB_EFI_DIR, '-o', efi, '-p', '(memdisk)/boot/grub', '-m', tar, ...GRUB_EFI_MODULES]);
  for (const p of [efi, bootDir, path.dirname(bootDir)]) await fsp.utimes(p, mtime, mtime);
  return { espDir, efi };
}

/**
 * Writes the El Torito EFI image: a FAT filesystem made to measure around BOOTX64.EFI, whose
 * GRUB finds the ISO by label. The volume id comes from the boot label: reproducible.
 */
export async function writeEfiBootImage(boot: { label: string; cmdline: string }, work: string, target: string, mtime: number): Promise<void> {
  const { espDir, efi } = await buildBootx64(grubConfig(boot, '/boot/vmlinuz', '/boot/initrd.img'), work, mtime);
  // FAT12/16 overhead (boot sector, two FATs, root dir) stays well under 128 KiB at these sizes.
  const efiKiB = Math.ceil((await fsp.stat(efi)).size / KiB);
  const sizeKiB = Math.ceil((efiKiB + 256) / 64) * 64;
  await fsp.rm(target, { force: true });
  await runTool('mkfs.vfat', ['--invariant', '-i', boot.label.slice(-8), '-n', 'EFIBOOT', '-C', target, String(sizeKiB)]);
  await runTool('mcopy', ['-s', '-m', '-i', target, path.join(espDir, 'EFI'), '::/']);
}
