// Where the kernel comes from: the image itself (/boot/vmlinuz-<ver> with /lib/modules/<ver>),
// else --kernel/--modules (or $DRYDOCK_KERNEL), where --kernel may be a vmlinuz file or a
// directory holding vmlinuz + modules/ (the layout scripts/fetch-kernel.sh produces).
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { UserError } from '../util/errors.js';

export interface KernelSource {
  vmlinuz: string;
  /** The lib/modules/<version> directory (has modules.dep). */
  modulesDir: string;
  version?: string;
  origin: 'image' | 'user';
}

const isFile = async (p: string): Promise<boolean> => (await fsp.stat(p).catch(() => undefined))?.isFile() ?? false;
const isDir = async (p: string): Promise<boolean> => (await fsp.stat(p).catch(() => undefined))?.isDirectory() ?? false;

/** The version string an x86 bzImage embeds in its setup header (boot protocol >= 2.0). */
export async function bzImageVersion(file: string): Promise<string | undefined> {
  const fh = await fsp.open(file, 'r');
  try {
    const head = Buffer.alloc(0x10000); // the version string sits after the setup code, within 64 KiB
    const { bytesRead } = await fh.read(head, 0, head.length, 0);
    if (bytesRead < 0x210 || head.toString('latin1', 0x202, 0x206) !== 'HdrS') return undefined;
    const off = head.readUInt16LE(0x20e) + 0x200;
    if (off >= bytesRead) return undefined;
    const end = head.indexOf(0, off);
    return head.toString('latin1', off, end < 0 ? bytesRead : end).split(' ')[0];
  } finally {
    await fh.close();
  }
}

/** Accepts lib/modules/<ver>, lib/modules (one version), or a root containing lib/modules/<ver>. */
export async function findModulesDir(dir: string, version?: string): Promise<string> {
  if (await isFile(path.join(dir, 'modules.dep'))) return dir;
  for (const base of [dir, path.join(dir, 'lib/modules'), path.join(dir, 'usr/lib/modules'), path.join(dir, 'modules')]) {
    if (!(await isDir(base))) continue;
    if (await isFile(path.join(base, 'modules.dep'))) return base;
    const versions = (await fsp.readdir(base)).filter((v) => !v.startsWith('.'));
    const pick = version && versions.includes(version) ? version : versions.length === 1 ? versions[0] : undefined;
    if (pick && (await isFile(path.join(base, pick, 'modules.dep')))) return path.join(base, pick);
  }
  throw new UserError(`${dir}: no kernel modules (expected lib/modules/<version>/modules.dep${version ? ` for ${version}` : ''})`);
}

const compareVersions = (a: string, b: string): number => a.localeCompare(b, 'en', { numeric: true });

/** Looks for /boot/vmlinuz-<ver> with matching modules inside an unpacked image. */
export async function kernelFromRootfs(rootfs: string): Promise<KernelSource | undefined> {
  const bootDir = path.join(rootfs, 'boot');
  const names = await fsp.readdir(bootDir).catch(() => [] as string[]);
  const versions = names.filter((n) => n.startsWith('vmlinuz-')).map((n) => n.slice('vmlinuz-'.length)).sort(compareVersions).reverse();
  for (const version of versions) {
    for (const mods of ['lib/modules', 'usr/lib/modules']) {
      const dir = path.join(rootfs, mods, version);
      if (await isFile(path.join(dir, 'modules.dep'))) {
        return { vmlinuz: path.join(bootDir, `vmlinuz-${version}`), modulesDir: dir, version, origin: 'image' };
      }
    }
  }
  return undefined;
}

export const KERNEL_HINT =
  'pass --kernel vmlinuz --modules DIR, or set DRYDOCK_KERNEL; get a kernel from Debian with ' +
  '`apt-get download linux-image-cloud-amd64`-style packages (scripts/fetch-kernel.sh does it: --kernel test/.cache/kernel)';

export async function resolveKernel(rootfs: string, opts: { kernel?: string; modules?: string }): Promise<KernelSource> {
  const userKernel = opts.kernel ?? process.env.DRYDOCK_KERNEL;
  if (!userKernel) {
    const fromImage = await kernelFromRootfs(rootfs);
    if (fromImage) return fromImage;
    throw new UserError(`the image has no kernel (/boot/vmlinuz-* with /lib/modules); ${KERNEL_HINT}`);
  }
  let vmlinuz = path.resolve(userKernel);
  let modulesRoot = opts.modules;
  if (await isDir(vmlinuz)) {
    const dir = vmlinuz;
    const candidates = [path.join(dir, 'vmlinuz'), ...(await fsp.readdir(dir)).filter((n) => n.startsWith('vmlinuz-')).sort(compareVersions).reverse().map((n) => path.join(dir, n))];
    const found = [];
    for (const c of candidates) if (await isFile(c)) found.push(c);
    if (!found[0]) throw new UserError(`${dir}: no vmlinuz or vmlinuz-<version> inside`);
    vmlinuz = found[0];
    modulesRoot ??= dir;
  } else if (!(await isFile(vmlinuz))) {
    throw new UserError(`--kernel ${userKernel} does not exist`);
  }
  const version = await bzImageVersion(vmlinuz);
  if (!version) throw new UserError(`${vmlinuz} is not an x86 Linux kernel image (bzImage)`);
  if (!modulesRoot) {
    const fromImage = await kernelFromRootfs(rootfs);
    if (fromImage?.version === version) modulesRoot = fromImage.modulesDir;
    else throw new UserError(`--kernel needs --modules DIR (the lib/modules/${version} tree of that kernel)`);
  }
  const modulesDir = await findModulesDir(path.resolve(modulesRoot), version);
  const dirVersion = path.basename(modulesDir);
  if (/^\d+\.\d+/.test(dirVersion) && dirVersion !== version) {
    throw new UserError(`kernel ${vmlinuz} is ${version} but the modules in ${modulesDir} are for ${dirVersion}`);
  }
  return { vmlinuz, modulesDir, version, origin: 'user' };
}
