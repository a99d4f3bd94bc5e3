// Kernel module selection for the initramfs: resolve the modules the boot flow needs, with their
// dependencies (modules.dep) and "pre:" soft dependencies (modules.softdep), in load order.
// Busybox insmod cannot read compressed modules, so .ko.xz/.ko.zst/.ko.gz are decompressed
// when copied into the initramfs.
import { createReadStream, createWriteStream, promises as fsp } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { spawn } from 'node:child_process';
import { createGunzip } from 'node:zlib';
import path from 'node:path';
import { UserError } from '../util/errors.js';
import { STREAM_CHUNK } from '../util/fs.js';
import { runTool } from './exec.js';

/**
 * What the boot flow needs: block devices (IDE/SATA/SCSI CD-ROM and disks, virtio), the
 * filesystems of the boot medium, the image, the writable layer and labelled data disks.
 * Missing names are fine when built in (modules.builtin) or absent from this kernel config
 * (e.g. ahci in a cloud kernel); only REQUIRED_MODULES must exist one way or the other.
 */
export const BOOT_MODULES = [
  'ata_piix', 'ata_generic', 'ahci', 'sd_mod', 'sr_mod', 'cdrom',
  'virtio_pci', 'virtio_blk', 'virtio_scsi',
  'loop', 'squashfs', 'overlay', 'isofs',
  'crc32c_generic', 'ext4',
  // The layer files of an updatable disk made with --layer-format erofs (required only there).
  'erofs',
];
/**
 * Loaded only when a persist=, toplayer= or --mount disk is asked for: btrfs alone costs
 * ~1.5 s under TCG (raid6 benchmarks at load), a third of a busybox boot.
 */
export const EXTRA_MODULES = ['btrfs', 'vfat', 'nls_cp437', 'nls_iso8859_1', 'nls_ascii'];
export const REQUIRED_MODULES = ['loop', 'squashfs', 'overlay'];

export interface ModuleInfo {
  /** Normalised name: basename without .ko*, "-" → "_" (as the kernel names modules). */
  name: string;
  /** Path relative to the modules dir, as modules.dep spells it. */
  file: string;
  deps: string[];
}

export interface ModuleIndex {
  dir: string;
  modules: Map<string, ModuleInfo>;
  builtin: Set<string>;
  softdepPre: Map<string, string[]>;
}

export function moduleName(file: string): string {
  return path.basename(file).replace(/\.ko(\.(xz|zst|gz))?$/, '').replace(/-/g, '_');
}

/** Parses modules.dep text ("kernel/fs/x.ko: kernel/lib/y.ko ..."). */
export function parseModulesDep(text: string): Map<string, ModuleInfo> {
  const out = new Map<string, ModuleInfo>();
  for (const line of text.split('\n')) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const file = line.slice(0, colon).trim();
    if (!file) continue;
    const deps = line.slice(colon + 1).trim().split(/\s+/).filter(Boolean).map(moduleName);
    out.set(moduleName(file), { name: moduleName(file), file, deps });
  }
  return out;
}

/** Parses modules.softdep / modprobe.d "softdep NAME pre: A B post: C" lines; returns the pre: lists. */
export function parseSoftdeps(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const line of text.split('\n')) {
    const words = line.trim().split(/\s+/);
    if (words[0] !== 'softdep' || !words[1]) continue;
    const name = words[1].replace(/-/g, '_');
    let mode = '';
    for (const w of words.slice(2)) {
      if (w === 'pre:' || w === 'post:') { mode = w; continue; }
      if (mode === 'pre:') out.set(name, [...(out.get(name) ?? []), w]);
    }
  }
  return out;
}

/** Reads modules.dep, modules.builtin and modules.softdep from a lib/modules/<version> dir. */
export async function loadModuleIndex(dir: string): Promise<ModuleIndex> {
  let depText: string;
  try {
    depText = await fsp.readFile(path.join(dir, 'modules.dep'), 'utf8');
  } catch {
    throw new UserError(`${dir} has no modules.dep; run "depmod -b <root> <version>" for that kernel first`);
  }
  const builtinText = await fsp.readFile(path.join(dir, 'modules.builtin'), 'utf8').catch(() => '');
  const softdepText = await fsp.readFile(path.join(dir, 'modules.softdep'), 'utf8').catch(() => '');
  return {
    dir,
    modules: parseModulesDep(depText),
    builtin: new Set(builtinText.split('\n').filter(Boolean).map(moduleName)),
    softdepPre: parseSoftdeps(softdepText),
  };
}

/**
 * Load order for `wanted`: dependencies first (depth-first post-order), each module once.
 * Soft dependencies are followed when they name a module (crypto aliases such as
 * "crypto-crc32c" are not module names and are skipped). Throws when a REQUIRED module is
 * neither a module nor built in.
 */
export function resolveModules(index: ModuleIndex, wanted: string[], required: string[] = REQUIRED_MODULES): ModuleInfo[] {
  const order: ModuleInfo[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (raw: string): void => {
    const name = raw.replace(/-/g, '_');
    if (state.get(name)) return; // done, or a cycle (modules.dep has none; soft deps might)
    const info = index.modules.get(name);
    if (!info) { state.set(name, 'done'); return; }
    state.set(name, 'visiting');
    for (const pre of index.softdepPre.get(name) ?? []) visit(pre);
    // modules.dep lists the full transitive closure, deepest last; visiting each keeps order right.
    for (const dep of info.deps) visit(dep);
    state.set(name, 'done');
    order.push(info);
  };
  for (const name of wanted) visit(name);
  const missing = required.filter((n) => !index.modules.has(n) && !index.builtin.has(n));
  if (missing.length) {
    throw new UserError(`the kernel modules in ${index.dir} lack ${missing.join(', ')} (neither a module nor built in); drydock boot needs them`);
  }
  return order;
}

/** Copies one module to `dest`, decompressing .xz/.zst/.gz so busybox insmod can load it. */
export async function copyModule(src: string, dest: string): Promise<void> {
  await fsp.mkdir(path.dirname(dest), { recursive: true });
  const out = createWriteStream(dest, { highWaterMark: STREAM_CHUNK });
  if (src.endsWith('.gz')) {
    await pipeline(createReadStream(src, { highWaterMark: STREAM_CHUNK }), createGunzip(), out);
    return;
  }
  const tool = src.endsWith('.xz') ? 'xz' : src.endsWith('.zst') ? 'zstd' : undefined;
  if (!tool) {
    await pipeline(createReadStream(src, { highWaterMark: STREAM_CHUNK }), out);
    return;
  }
  const child = spawn(tool, ['-dc', src], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<void>((resolve, reject) => {
    child.on('error', (e) => reject(new UserError(`cannot decompress ${src}: ${tool}: ${e.message} (apt-get install ${tool === 'xz' ? 'xz-utils' : tool})`, { cause: e })));
    child.on('close', (code) => (code === 0 ? resolve() : reject(new UserError(`cannot decompress ${src}: ${stderr.trim()}`))));
  });
  await Promise.all([pipeline(child.stdout, out), exited]);
}

/**
 * Copies the resolved modules into `<root>/lib/modules/` (flat, uncompressed "<name>.ko") and
 * returns the load list (file names in order) for the init script.
 */
export async function installModules(index: ModuleIndex, modules: ModuleInfo[], root: string): Promise<string[]> {
  const list: string[] = [];
  for (const m of modules) {
    const file = `${m.name}.ko`;
    await copyModule(path.join(index.dir, m.file), path.join(root, 'lib/modules', file));
    list.push(file);
  }
  return list;
}

/**
 * The module tree the booted system gets at /lib/modules/<version>: `dir` itself when its
 * modules are plain .ko (busybox modprobe reads only those), else a decompressed copy in `work`
 * re-indexed by depmod. Returns the directory to put in modules.squashfs.
 */
export async function buildModulesTree(dir: string, work: string): Promise<string> {
  const dep = await fsp.readFile(path.join(dir, 'modules.dep'), 'utf8').catch(() => '');
  if (!/\.ko\.(xz|zst|gz):/m.test(dep)) return dir;
  const version = path.basename(dir);
  const root = path.join(work, 'root');
  const tree = path.join(root, 'lib/modules', version);
  for (const m of parseModulesDep(dep).values()) {
    await copyModule(path.join(dir, m.file), path.join(tree, m.file.replace(/\.(xz|zst|gz)$/, '')));
  }
  for (const f of ['modules.builtin', 'modules.builtin.modinfo', 'modules.order']) {
    await fsp.copyFile(path.join(dir, f), path.join(tree, f)).catch(() => {});
  }
  await runTool('depmod', ['-b', root, version]);
  return tree;
}
