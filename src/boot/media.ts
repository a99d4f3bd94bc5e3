// Boot media from the shared artifacts:
//  - ISO: ISO9660 with isolinux, made hybrid (isohdpfx MBR) so it boots from a CD drive and
//    when written to a USB stick; volume label = the boot label the initramfs searches for.
//  - Disk: MBR with syslinux's mbr.bin; partition 1 FAT (syslinux, kernel, initramfs),
//    partition 2 ext4 labelled with the boot label (the squashfs images, room to grow).
// Neither needs loop devices or mounts: xorriso, mkfs.vfat + mtools + `syslinux --install` and
// `mkfs.ext4 -d` all work on plain files, so builds run unprivileged and in parallel.
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { UserError } from '../util/errors.js';
import { fsyncDir, tempName } from '../util/fs.js';
import type { BootArtifacts } from './artifacts.js';
import { sourceDateEpoch } from './artifacts.js';
import type { DiskFormat } from './config.js';
import { runTool } from './exec.js';
import { DEPLOYMENT_MENU, MENU_TIMEOUT } from './osstate.js';
import { buildBootx64, EFI_IMAGE_PATH, grubConfig, requireGrubEfi, writeEfiBootImage, type Firmware } from './uefi.js';

export const SYSLINUX_FILES = {
  isolinuxBin: '/usr/lib/ISOLINUX/isolinux.bin',
  isohybridMbr: '/usr/lib/ISOLINUX/isohdpfx.bin',
  ldlinux: '/usr/lib/syslinux/modules/bios/ldlinux.c32',
  mbr: '/usr/lib/syslinux/mbr/mbr.bin',
  gptMbr: '/usr/lib/syslinux/mbr/gptmbr.bin',
};

/** GPT partition type GUIDs (UEFI spec; the Discoverable Partitions spec for Linux data). */
const GPT_TYPE = { esp: 'C12A7328-F81F-11D2-BA4B-00A0C93EC93B', linux: '0FC63DAF-8483-4772-8E79-3D69D8477DE4' };

/**
 * Boot loader config shared by isolinux and syslinux: serial + VGA console, no prompt; with
 * `menu`, a boot: prompt offering the default and the rollback deployment.
 */
export function syslinuxConfig(a: BootArtifacts, kernelPath: string, initrdPath: string, opts: { menu?: boolean } = {}): string {
  if (opts.menu) {
    return [
      'SERIAL 0 115200',
      'DEFAULT drydock',
      'PROMPT 1',
      `TIMEOUT ${MENU_TIMEOUT}`,
      `SAY drydock: type ${DEPLOYMENT_MENU.map((m) => `"${m.label}" (${m.title})`).join(' or ')}; default in ${MENU_TIMEOUT / 10}s`,
      ...DEPLOYMENT_MENU.flatMap((m) => [
        `LABEL ${m.label}`,
        `  KERNEL ${kernelPath}`,
        `  INITRD ${initrdPath}`,
        `  APPEND ${[a.cmdline, m.arg].filter(Boolean).join(' ')}`,
      ]),
      '',
    ].join('\n');
  }
  return [
    'SERIAL 0 115200',
    'DEFAULT drydock',
    'PROMPT 0',
    'TIMEOUT 0',
    'LABEL drydock',
    `  KERNEL ${kernelPath}`,
    `  INITRD ${initrdPath}`,
    `  APPEND ${a.cmdline}`,
    '',
  ].join('\n');
}

async function requireFiles(files: string[]): Promise<void> {
  for (const f of files) {
    if (!(await fsp.stat(f).catch(() => undefined))) throw new UserError(`${f} is missing (apt-get install isolinux syslinux syslinux-common)`);
  }
}

/** Moves a finished file into place: fsync, rename, fsync the directory. */
async function commit(tmp: string, target: string): Promise<void> {
  const fh = await fsp.open(tmp, 'r');
  try { await fh.sync(); } finally { await fh.close(); }
  await fsp.rename(tmp, target);
  await fsyncDir(path.dirname(target));
}

/**
 * Writes the ISO. BIOS: isolinux from the El Torito catalogue (CD) and the isohdpfx MBR (USB).
 * UEFI: an alternate El Torito entry for the FAT image with GRUB's BOOTX64.EFI, which the
 * hybrid GPT also lists as a partition so firmware finds it on a USB stick.
 */
export async function writeIso(a: BootArtifacts, output: string, opts: { firmware?: Firmware } = {}): Promise<void> {
  const firmware = opts.firmware ?? 'both';
  const bios = firmware !== 'uefi';
  const uefi = firmware !== 'bios';
  if (bios) await requireFiles([SYSLINUX_FILES.isolinuxBin, SYSLINUX_FILES.isohybridMbr, SYSLINUX_FILES.ldlinux]);
  if (uefi) await requireGrubEfi();
  const epoch = sourceDateEpoch();
  const biosArgs: string[] = [];
  if (bios) {
    const iso = path.join(a.dir, 'isolinux');
    await fsp.mkdir(iso, { recursive: true });
    await fsp.copyFile(SYSLINUX_FILES.isolinuxBin, path.join(iso, 'isolinux.bin'));
    await fsp.copyFile(SYSLINUX_FILES.ldlinux, path.join(iso, 'ldlinux.c32'));
    await fsp.writeFile(path.join(iso, 'isolinux.cfg'), syslinuxConfig(a, '/boot/vmlinuz', '/boot/initrd.img'));
    biosArgs.push('-isohybrid-mbr', SYSLINUX_FILES.isohybridMbr,
      '-c', 'isolinux/boot.cat', '-b', 'isolinux/isolinux.bin', '-no-emul-boot', '-boot-load-size', '4', '-boot-info-table');
  }
  const uefiArgs: string[] = [];
  if (uefi) {
    const efiWork = path.join(a.dir, '..', 'efi');
    await fsp.mkdir(efiWork, { recursive: true });
    await writeEfiBootImage(a, efiWork, path.join(a.dir, EFI_IMAGE_PATH), epoch ?? Math.floor(Date.now() / 1000));
    // With isolinux this is the second El Torito entry; -isohybrid-gpt-basdat (which needs the
    // isohybrid MBR) lists it in a GPT. UEFI-only ISOs get that GPT from -efi-boot-part.
    uefiArgs.push(...(bios ? ['-eltorito-alt-boot'] : ['-c', 'boot/boot.cat']), '-e', EFI_IMAGE_PATH, '-no-emul-boot',
      ...(bios ? ['-isohybrid-gpt-basdat'] : ['-efi-boot-part', '--efi-boot-image']));
  }
  const tmp = tempName(path.resolve(output));
  try {
    await runTool('xorriso', [
      '-as', 'mkisofs', '-quiet', '-o', tmp, '-V', a.label, '-R', '-J', '-joliet-long',
      ...biosArgs, ...uefiArgs,
      ...(epoch !== undefined ? ['--set_all_file_dates', `=${epoch}`, '--modification-date=' + isoDate(epoch)] : []),
      a.dir,
    ]);
    await commit(tmp, output);
  } catch (e) {
    await fsp.rm(tmp, { force: true });
    throw e;
  }
}

function isoDate(epoch: number): string {
  // YYYYMMDDhhmmsscc, as mkisofs --modification-date wants.
  return new Date(epoch * 1000).toISOString().replace(/[-:T]/g, '').replace(/\.(\d\d)\dZ$/, '$1');
}

const MiB = 1024 * 1024;
const alignUp = (n: number, to: number): number => Math.ceil(n / to) * to;

async function fileSize(p: string): Promise<number> {
  return (await fsp.stat(p)).size;
}

export interface DiskLayout { total: number; bootStart: number; bootSize: number; dataStart: number; dataSize: number }

/**
 * 1 MiB aligned partitions: FAT boot sized for kernel + initramfs, ext4 data gets the rest, less
 * `reserveEnd` (1 MiB for GPT's backup header and table).
 */
export function diskLayout(kernelAndInitrd: number, squashfs: number, requested?: number, reserveEnd = 0): DiskLayout {
  const bootStart = MiB;
  const bootSize = alignUp(Math.max(32 * MiB, kernelAndInitrd * 1.5 + 8 * MiB), MiB);
  const dataStart = bootStart + bootSize;
  // ext4 metadata (inode tables, journal) plus headroom for persist/data use.
  const minData = alignUp(squashfs * 1.1 + 48 * MiB, MiB);
  const total = requested ?? alignUp(dataStart + minData + reserveEnd, MiB);
  const dataSize = Math.floor((total - dataStart - reserveEnd) / MiB) * MiB;
  if (dataSize < minData) {
    const need = Math.ceil((dataStart + minData + reserveEnd) / MiB);
    throw new UserError(`--size ${Math.floor(total / MiB)}M is too small for this image: it needs at least ${need}M`);
  }
  return { total, bootStart, bootSize, dataStart, dataSize };
}

/** A version-4-shaped UUID derived from a seed: stable across rebuilds, unique per boot label. */
function stableUuid(seed: string): string {
  const h = createHash('sha256').update(seed).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

/**
 * Writes the disk. BIOS (default): MBR with syslinux's mbr.bin, FAT partition marked active.
 * UEFI or both: GPT; partition 1 is the EFI system partition with GRUB's BOOTX64.EFI (and, for
 * both, syslinux, with gptmbr.bin in the boot sector and the LegacyBIOSBootable attribute).
 */
export async function writeDisk(a: BootArtifacts, output: string, opts: { size?: number; format: DiskFormat; firmware?: Firmware; osTree?: string }): Promise<DiskLayout> {
  const firmware = opts.firmware ?? 'bios';
  const bios = firmware !== 'uefi';
  const gpt = firmware !== 'bios';
  if (bios) await requireFiles([gpt ? SYSLINUX_FILES.gptMbr : SYSLINUX_FILES.mbr, SYSLINUX_FILES.ldlinux]);
  if (gpt) await requireGrubEfi();
  const layout = diskLayout(
    (await fileSize(a.vmlinuz)) + (await fileSize(a.initrd)),
    (opts.osTree ? await treeSize(opts.osTree) : (await fileSize(a.rootfsSquashfs!)) + (await fileSize(a.topSquashfs!))) + (await fileSize(a.modulesSquashfs)),
    opts.size,
    gpt ? MiB : 0,
  );
  const work = path.join(a.dir, '..', 'disk');
  await fsp.mkdir(work, { recursive: true });
  const cfg = path.join(work, 'syslinux.cfg');
  await fsp.writeFile(cfg, syslinuxConfig(a, '/vmlinuz', '/initrd.img', { menu: !!opts.osTree }));
  // An updatable disk's data partition is the os/ tree (src/boot/updatable.ts) plus the modules.
  const dataDir = opts.osTree ?? path.join(work, 'data');
  await fsp.mkdir(path.join(dataDir, 'drydock'), { recursive: true });
  if (!opts.osTree) {
    await fsp.rename(a.rootfsSquashfs!, path.join(dataDir, 'drydock/rootfs.squashfs'));
    await fsp.rename(a.topSquashfs!, path.join(dataDir, 'drydock/top.squashfs'));
  }
  await fsp.rename(a.modulesSquashfs, path.join(dataDir, 'drydock/modules.squashfs'));
  const epoch = sourceDateEpoch();
  if (epoch !== undefined && !opts.osTree) {
    // mcopy -m and mkfs.ext4 -d copy file times; pin them for reproducible disks.
    for (const p of [a.vmlinuz, a.initrd, cfg, dataDir, path.join(dataDir, 'drydock'), path.join(dataDir, 'drydock/rootfs.squashfs'), path.join(dataDir, 'drydock/top.squashfs'), path.join(dataDir, 'drydock/modules.squashfs')]) {
      await fsp.utimes(p, epoch, epoch);
    }
  }

  // Both filesystems are made in place at their partition offsets of one sparse file: no
  // intermediate images, so the image data is written once.
  const raw = opts.format === 'raw' ? tempName(path.resolve(output)) : path.join(work, 'disk.raw');
  try {
    const fh = await fsp.open(raw, 'w');
    await fh.truncate(layout.total);
    await fh.close();
    const table = (gpt ? [
      'label: gpt',
      `label-id: ${stableUuid(`${a.label}:disk`)}`,
      `start=${layout.bootStart / 512}, size=${layout.bootSize / 512}, type=${GPT_TYPE.esp}, uuid=${stableUuid(`${a.label}:esp`)}, name="EFI system partition"${bios ? ', attrs="LegacyBIOSBootable"' : ''}`,
      `start=${layout.dataStart / 512}, size=${layout.dataSize / 512}, type=${GPT_TYPE.linux}, uuid=${stableUuid(`${a.label}:data`)}, name="drydock"`,
    ] : [
      'label: dos',
      `label-id: 0x${a.label.slice(2).toLowerCase()}`,
      `start=${layout.bootStart / 512}, size=${layout.bootSize / 512}, type=c, bootable`,
      `start=${layout.dataStart / 512}, size=${layout.dataSize / 512}, type=83`,
    ]).join('\n') + '\n';
    await runSfdisk(raw, table);
    if (bios) await runTool('dd', [`if=${gpt ? SYSLINUX_FILES.gptMbr : SYSLINUX_FILES.mbr}`, `of=${raw}`, 'bs=440', 'count=1', 'conv=notrunc', 'status=none']);

    // Partition 1: FAT with syslinux, kernel and initramfs.
    // The FAT size is explicit: mkfs.vfat otherwise picks it from the whole file's size, FAT32 for
    // a disk of 512 MiB or more, which refuses a partition of this size (too few clusters).
    await runTool('mkfs.vfat', ['-F', layout.bootSize >= 512 * MiB ? '32' : '16', `--offset=${layout.bootStart / 512}`, '-n', 'DRYDOCKBOOT', '-i', a.label.slice(2), raw, String(layout.bootSize / 1024)]);
    const fat = `${raw}@@${layout.bootStart}`;
    await runTool('mcopy', ['-m', '-i', fat, a.vmlinuz, '::/vmlinuz']);
    await runTool('mcopy', ['-m', '-i', fat, a.initrd, '::/initrd.img']);
    if (bios) {
      await runTool('mcopy', ['-m', '-i', fat, cfg, '::/syslinux.cfg']);
      await runTool('syslinux', ['--offset', String(layout.bootStart), '--install', raw]);
    }
    if (gpt) {
      // GRUB finds this FAT partition by the volume id given to mkfs.vfat above (as GRUB prints it).
      const volId = a.label.slice(2).toLowerCase();
      const grubCfg = grubConfig(a, '/vmlinuz', '/initrd.img', { fsUuid: `${volId.slice(0, 4)}-${volId.slice(4)}` }, { menu: !!opts.osTree });
      const { espDir } = await buildBootx64(grubCfg, path.join(work, 'efi'), epoch ?? Math.floor(Date.now() / 1000));
      await runTool('mcopy', ['-s', '-m', '-i', fat, path.join(espDir, 'EFI'), '::/']);
    }

    // Partition 2: ext4 holding the squashfs images, labelled for the initramfs.
    // UUID and hash seed from the label (itself from image + options): reproducible disks.
    const uuid = stableUuid(a.label);
    await runTool('mkfs.ext4', ['-q', '-F', '-L', a.label, '-U', uuid, '-d', dataDir,
      '-E', `offset=${layout.dataStart},root_owner=0:0,hash_seed=${uuid}`, raw, `${layout.dataSize / 1024}k`],
      { env: epoch !== undefined ? { E2FSPROGS_FAKE_TIME: String(epoch) } : {} });

    if (opts.format === 'qcow2') {
      const tmp = tempName(path.resolve(output));
      try {
        await runTool('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, tmp]);
        await commit(tmp, output);
      } catch (e) {
        await fsp.rm(tmp, { force: true });
        throw e;
      }
    } else {
      await commit(raw, output);
    }
  } finally {
    await fsp.rm(raw, { force: true });
  }
  return layout;
}

/** Bytes of a directory tree (apparent sizes, as mkfs.ext4 -d will store them, roughly). */
async function treeSize(dir: string): Promise<number> {
  let total = 0;
  for (const e of await fsp.readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) total += 4096 + (await treeSize(p));
    else total += Math.max(4096, (await fsp.lstat(p)).size);
  }
  return total;
}

async function runSfdisk(file: string, table: string): Promise<void> {
  const { spawn } = await import('node:child_process');
  await new Promise<void>((resolve, reject) => {
    const child = spawn('sfdisk', ['--quiet', '--no-reread', '--no-tell-kernel', file], { stdio: ['pipe', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d) => (err += d));
    child.on('error', (e) => reject(new UserError(`sfdisk: ${e.message} (apt-get install fdisk)`, { cause: e })));
    child.on('close', (code) => (code === 0 ? resolve() : reject(new UserError(`sfdisk failed: ${err.trim()}`))));
    child.stdin.end(table);
  });
}
