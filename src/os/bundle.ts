// What a machine needs to run `drydock os` when its image has no Node: this host's node,
// mksquashfs or mkfs.erofs (the disk's layer format) and zstd, each with the shared libraries ldd names and the dynamic loader, patched (patchelf)
// to load them from the bundle; drydock itself as one esbuild bundle whose #! line names that
// node; the native xattr addon drydock's layer code loads; and a static busybox for the mknod
// the layer code runs and the mount/umount of the kernel staging (src/os/kernel.ts). Nothing in it depends on what /lib or /usr the image has.
import { promises as fsp, existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { sharedLibraries } from '../boot/sshd.js';
import { runTool } from '../boot/exec.js';
import { UserError } from '../util/errors.js';
import { DEFAULT_LAYER_FORMAT, type LayerFormat } from './layout.js';

export interface BundleRuntimeOptions {
  /**
   * The absolute path the bundle has on the machine (default "/.drydock/drydock", where the drydock init looks for it): an ELF
   * interpreter and a #! line cannot be relative, so the binaries are patched for that place.
   */
  installedAt?: string;
  /** Programs to carry besides node (default: layerFormat's packer, and zstd, which unpacks zstd layers). */
  programs?: string[];
  /** The disk's layer format (default DEFAULT_LAYER_FORMAT): mkfs.erofs or mksquashfs converts new layers on the machine. */
  layerFormat?: LayerFormat;
  /** Static busybox for mknod, mount and umount (default /bin/busybox; skipped when absent). */
  busybox?: string;
}

export interface RuntimeBundle {
  dir: string;
  installedAt: string;
  /** Run this on the machine: `<installedAt>/bin/drydock os status`. */
  drydock: string;
  node: string;
  libraries: string[];
  bytes: number;
}

const LOADER = 'ld-linux-x86-64.so.2';
/** The Debian package of a program whose name is not its package's. */
const APT_PACKAGE: Record<string, string> = { mksquashfs: 'squashfs-tools', 'mkfs.erofs': 'erofs-utils' };

async function duBytes(dir: string): Promise<number> {
  let n = 0;
  for (const e of await fsp.readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) n += await duBytes(p);
    else if (e.isFile()) n += (await fsp.stat(p)).size;
  }
  return n;
}

/** The drydock CLI entry beside this module: dist/src/cli/main.js, or main.ts under tsx. */
function cliEntry(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  for (const name of ['main.js', 'main.ts']) {
    const p = path.join(here, '..', 'cli', name);
    if (existsSync(p)) return p;
  }
  throw new UserError(`cannot find drydock's CLI entry next to ${here} to bundle it`);
}

/** One .mjs of the whole CLI; native addons stay outside (copied to node_modules beside it). */
async function bundleCli(out: string, nodePath: string, binDir: string): Promise<void> {
  let esbuild: typeof import('esbuild');
  try { esbuild = await import('esbuild'); } catch (e) {
    throw new UserError('bundling drydock for the machine needs esbuild (npm install in the drydock checkout installs it)', { cause: e });
  }
  await esbuild.build({
    entryPoints: [cliEntry()],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    outfile: out,
    external: ['@napi-rs/xattr'],
    logLevel: 'error',
    banner: {
      js: [
        `#!${nodePath}`,
        // Bundled CommonJS dependencies call require(); the bundle's own tools come first on PATH.
        "import { createRequire as __drydockRequire } from 'node:module';",
        'const require = __drydockRequire(import.meta.url);',
        `process.env.PATH = ${JSON.stringify(binDir)} + (process.env.PATH ? ':' + process.env.PATH : '');`,
      ].join('\n'),
    },
  });
  await fsp.chmod(out, 0o755);
}

/** Copies `@napi-rs/xattr` and its platform package (the .node file) into `modulesDir`. */
async function copyXattrAddon(modulesDir: string): Promise<string[]> {
  const require = createRequire(import.meta.url);
  const pkg = path.dirname(require.resolve('@napi-rs/xattr/package.json'));
  const scope = path.dirname(pkg);
  const copied: string[] = [];
  for (const name of await fsp.readdir(scope)) {
    if (!name.startsWith('xattr')) continue;
    await fsp.cp(path.join(scope, name), path.join(modulesDir, '@napi-rs', name), { recursive: true, dereference: true });
    copied.push(path.join(scope, name));
  }
  return copied;
}

/**
 * Writes the runtime bundle into `destDir` (which must not exist or be empty). Put its contents
 * at `opts.installedAt` (default /.drydock/drydock) on the boot medium or in the top layer; then
 * `<installedAt>/bin/drydock os …` runs with no Node, libc or squashfs-tools in the image.
 */
export async function bundleRuntime(destDir: string, opts: BundleRuntimeOptions = {}): Promise<RuntimeBundle> {
  const at = opts.installedAt ?? '/.drydock/drydock';
  if (!path.isAbsolute(at)) throw new UserError(`bundleRuntime: installedAt must be absolute, got "${at}"`);
  const bin = path.join(destDir, 'bin');
  const lib = path.join(destDir, 'lib');
  await fsp.mkdir(bin, { recursive: true });
  await fsp.mkdir(lib, { recursive: true });
  const packer = (opts.layerFormat ?? DEFAULT_LAYER_FORMAT) === 'erofs' ? '/usr/bin/mkfs.erofs' : '/usr/bin/mksquashfs';
  // mksquashfs on every disk: a staged kernel's module tree is squashfs (src/os/kernel.ts).
  const programs = [process.execPath, ...(opts.programs ?? [...new Set([packer, '/usr/bin/mksquashfs', '/usr/bin/zstd'])])];
  const addons = await copyXattrAddon(path.join(destDir, 'node_modules'));
  const libs = new Set<string>();
  for (const p of programs) {
    if (!existsSync(p)) throw new UserError(`${p} is missing on this host; the machine's runtime bundle needs it (apt-get install ${APT_PACKAGE[path.basename(p)] ?? path.basename(p)})`);
    for (const l of await sharedLibraries(p)) libs.add(l);
  }
  for (const a of addons) {
    for (const f of await fsp.readdir(a)) if (f.endsWith('.node')) for (const l of await sharedLibraries(path.join(a, f))) libs.add(l);
  }
  if (![...libs].some((l) => path.basename(l) === LOADER)) throw new UserError(`ldd names no ${LOADER} for ${programs.join(', ')}; cannot carry them`);
  for (const l of libs) {
    const dest = path.join(lib, path.basename(l));
    await fsp.copyFile(await fsp.realpath(l), dest);
    await fsp.chmod(dest, 0o755);
  }
  // DT_RPATH (--force-rpath), not RUNPATH: RPATH also serves the libraries' own dependencies.
  const names = ['node'];
  for (const p of programs) {
    const name = p === process.execPath ? 'node' : path.basename(p);
    if (name !== 'node') names.push(name);
    const dest = path.join(bin, name);
    await fsp.copyFile(p, dest);
    await fsp.chmod(dest, 0o755);
    await runTool('patchelf', ['--set-interpreter', path.posix.join(at, 'lib', LOADER), '--force-rpath', '--set-rpath', path.posix.join(at, 'lib'), dest]);
  }
  const busybox = opts.busybox ?? '/bin/busybox';
  if (existsSync(busybox)) {
    await fsp.copyFile(busybox, path.join(bin, 'busybox'));
    await fsp.chmod(path.join(bin, 'busybox'), 0o755);
    // mknod for whiteouts; mount and umount to look for a kernel in a new deployment's layers.
    for (const applet of ['mknod', 'mount', 'umount']) await fsp.symlink('busybox', path.join(bin, applet));
  }
  await bundleCli(path.join(bin, 'drydock'), path.posix.join(at, 'bin', 'node'), path.posix.join(at, 'bin'));
  return {
    dir: destDir, installedAt: at, drydock: path.posix.join(at, 'bin', 'drydock'), node: path.posix.join(at, 'bin', 'node'),
    libraries: [...libs].map((l) => path.basename(l)).sort(), bytes: await duBytes(destDir),
  };
}
