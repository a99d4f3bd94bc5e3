// Runs the host tools the boot builder drives (mksquashfs, xorriso, mkfs.*, syslinux, qemu-img)
// with errors that name the tool, its stderr and the Debian package that provides it.
import { spawn } from 'node:child_process';
import { UserError } from '../util/errors.js';

/** Debian package per tool, for "not installed" hints. */
const PACKAGE_OF: Record<string, string> = {
  mksquashfs: 'squashfs-tools',
  xorriso: 'xorriso',
  'mkfs.ext4': 'e2fsprogs',
  'mkfs.vfat': 'dosfstools',
  mcopy: 'mtools',
  mmd: 'mtools',
  syslinux: 'syslinux',
  sfdisk: 'fdisk',
  'qemu-img': 'qemu-utils',
  xz: 'xz-utils',
  zstd: 'zstd',
  dd: 'coreutils',
  tar: 'tar',
  'grub-mkimage': 'grub-common',
};

export interface RunResult { stdout: string; stderr: string }

/** Spawns `cmd args`, collecting output; rejects with a UserError naming the tool on failure. */
export function runTool(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...opts.env }, cwd: opts.cwd });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => { if (stderr.length < 64 * 1024) stderr += d; });
    child.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') reject(new UserError(`${cmd} is not installed (apt-get install ${PACKAGE_OF[cmd] ?? cmd})`));
      else reject(e);
    });
    child.on('close', (code, signal) => {
      if (code === 0) resolve({ stdout, stderr });
      else reject(new UserError(`${cmd} failed (${signal ?? `exit ${code}`}): ${(stderr || stdout).trim().split('\n').slice(-8).join('\n')}`));
    });
  });
}
