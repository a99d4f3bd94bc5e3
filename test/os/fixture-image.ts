// Test images for `drydock os` made without drydock: layer tars by GNU tar (compressed by gzip
// and zstd), an OCI image layout written by hand, and skopeo to push it to a registry. Whiteouts
// are plain empty files named `.wh.x` / `.wh..wh..opq`, as docker's own exporter writes them.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { appendFileSync, copyFileSync, mkdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { requireTool } from '../helpers/env.js';
import { BOOT_MODULES, EXTRA_MODULES, loadModuleIndex, resolveModules } from '../../src/boot/modules.js';

export interface LayerBlob { digest: string; diffID: string; size: number; mediaType: string; file: string }

const sha256 = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** Writes `files` (path → content; a trailing '/' is a directory) under a fresh dir. */
export function writeTree(dir: string, files: Record<string, string>): string {
  mkdirSync(dir, { recursive: true });
  for (const [rel, body] of Object.entries(files)) {
    const abs = path.join(dir, rel);
    if (rel.endsWith('/')) { mkdirSync(abs, { recursive: true }); continue; }
    mkdirSync(path.dirname(abs), { recursive: true });
    writeFileSync(abs, body);
  }
  return dir;
}

/** A busybox-static rootfs (bin/busybox and sh/ls/cat/find links): something to run. */
export function busyboxTree(dir: string): string {
  requireTool('busybox', 'apt-get install busybox-static');
  mkdirSync(path.join(dir, 'bin'), { recursive: true });
  copyFileSync('/bin/busybox', path.join(dir, 'bin/busybox'));
  for (const t of ['sh', 'ls', 'cat', 'find', 'sort', 'echo', 'mkdir', 'sleep', 'sed', 'grep', 'tee', 'tr']) symlinkSync('busybox', path.join(dir, 'bin', t));
  return dir;
}

/** GNU tar of `src` (deterministic order, owners and times), compressed as asked. */
export function tarLayer(src: string, out: string, compression: 'gzip' | 'zstd' | 'none'): LayerBlob {
  requireTool('tar');
  const tarFile = `${out}.tar`;
  execFileSync('tar', ['--sort=name', '--numeric-owner', '--owner=0', '--group=0', '--mtime=@1700000000', '--format=gnu', '-C', src, '-cf', tarFile, '.']);
  const tar = readFileSync(tarFile);
  let blob = tar;
  if (compression === 'gzip') blob = execFileSync('gzip', ['-n', '-c', tarFile], { maxBuffer: 1 << 30 });
  if (compression === 'zstd') blob = execFileSync(requireTool('zstd'), ['-q', '-c', tarFile], { maxBuffer: 1 << 30 });
  writeFileSync(out, blob);
  const mediaType = `application/vnd.oci.image.layer.v1.tar${compression === 'none' ? '' : `+${compression}`}`;
  return { digest: sha256(blob), diffID: sha256(tar), size: blob.length, mediaType, file: out };
}

export interface OciImage { dir: string; tag: string; manifestDigest: string; configDigest: string; layers: LayerBlob[]; manifestSize: number; configSize: number }

/** An OCI image layout at `dir` holding one image tagged `tag`. */
export function ociLayout(dir: string, tag: string, layers: LayerBlob[], cmd: string[] = ['sh'], env: string[] = []): OciImage {
  const blobs = path.join(dir, 'blobs', 'sha256');
  mkdirSync(blobs, { recursive: true });
  const put = (b: Buffer) => { const d = sha256(b); writeFileSync(path.join(blobs, d.slice(7)), b); return d; };
  for (const l of layers) put(readFileSync(l.file));
  const config = Buffer.from(JSON.stringify({
    created: '2023-11-14T22:13:20Z', architecture: 'amd64', os: 'linux',
    config: { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', ...env], Cmd: cmd },
    rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffID) },
  }));
  const configDigest = put(config);
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: configDigest, size: config.length },
    layers: layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })),
  }));
  const manifestDigest = put(manifest);
  writeFileSync(path.join(dir, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  writeFileSync(path.join(dir, 'index.json'), JSON.stringify({
    schemaVersion: 2, manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: manifestDigest, size: manifest.length, annotations: { 'org.opencontainers.image.ref.name': tag } }],
  }));
  return { dir, tag, manifestDigest, configDigest, layers, manifestSize: manifest.length, configSize: config.length };
}

/** skopeo copy of the layout to `ref` (a plain-HTTP registry on 127.0.0.1). */
export function pushWithSkopeo(img: OciImage, ref: string): void {
  requireTool('skopeo');
  execFileSync('skopeo', ['copy', '--quiet', '--dest-tls-verify=false', `oci:${img.dir}:${img.tag}`, `docker://${ref}`], { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** The same, with credentials for a password-protected registry. */
export function pushWithSkopeoAuth(img: OciImage, ref: string, auth: { user: string; password: string }): void {
  requireTool('skopeo');
  execFileSync('skopeo', ['copy', '--quiet', '--dest-tls-verify=false', '--dest-creds', `${auth.user}:${auth.password}`, `oci:${img.dir}:${img.tag}`, `docker://${ref}`], { stdio: ['ignore', 'ignore', 'pipe'] });
}

export function fileSize(p: string): number { return statSync(p).size; }

/**
 * A tree with a real kernel, as a distribution image has one: `kernel`'s vmlinuz as
 * /boot/vmlinuz-<version> (with `vmlinuzTail` appended, for a file of another sha256) and its
 * boot and NIC modules in /lib/modules/<version>, indexed by depmod. `kernel` is a
 * scripts/fetch-kernel.sh cache dir (vmlinuz, modules/).
 */
export async function kernelTree(dir: string, kernel: string, version: string, vmlinuzTail = ''): Promise<string> {
  requireTool('depmod', 'apt-get install kmod');
  const mods = path.join(dir, 'lib/modules', version);
  mkdirSync(path.join(dir, 'boot'), { recursive: true });
  copyFileSync(path.join(kernel, 'vmlinuz'), path.join(dir, 'boot', `vmlinuz-${version}`));
  if (vmlinuzTail) appendFileSync(path.join(dir, 'boot', `vmlinuz-${version}`), vmlinuzTail);
  const index = await loadModuleIndex(path.join(kernel, 'modules'));
  for (const m of resolveModules(index, [...BOOT_MODULES, ...EXTRA_MODULES, 'virtio_net'])) {
    mkdirSync(path.dirname(path.join(mods, m.file)), { recursive: true });
    copyFileSync(path.join(kernel, 'modules', m.file), path.join(mods, m.file));
  }
  for (const f of ['modules.builtin', 'modules.builtin.modinfo', 'modules.order']) copyFileSync(path.join(kernel, 'modules', f), path.join(mods, f));
  execFileSync('depmod', ['-b', dir, version]);
  return dir;
}

/** The `drydock os status --json` a machine test's startup script printed as one `STATUS {...}` line. */
export const statusOf = (console: string) => JSON.parse(/^STATUS (\{.*\})\r?$/m.exec(console)![1]!);
