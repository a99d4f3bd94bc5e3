// Counts the packages a root filesystem has installed, for the mkimage report. Reads the
// package manager's database directly (dpkg status, apk installed), so it works on any
// architecture without running anything from the image.
import { promises as fsp } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import path from 'node:path';
import tarStream from 'tar-stream';
import { decompress } from '../layer/compression.js';
import { openRootfsTarball } from './import.js';

export interface PackageCount {
  manager: 'dpkg' | 'apk';
  count: number;
}

/** Installed packages in a dpkg status file: stanzas whose Status ends in "installed". */
export function countDpkgStatus(text: string): number {
  let n = 0;
  for (const stanza of text.split(/\n\s*\n/)) {
    const m = /^Status:\s*(.*)$/m.exec(stanza);
    if (m && /\sinstalled$/.test(m[1]!.trim())) n++;
  }
  return n;
}

/** Installed packages in an apk database: one "P:" (package name) line per package. */
export function countApkInstalled(text: string): number {
  return text.split('\n').filter((l) => l.startsWith('P:')).length;
}

export async function countPackages(rootfs: string): Promise<PackageCount | undefined> {
  const dpkg = await fsp.readFile(path.join(rootfs, 'var/lib/dpkg/status'), 'utf8').catch(() => undefined);
  if (dpkg !== undefined) return { manager: 'dpkg', count: countDpkgStatus(dpkg) };
  const apk = await fsp.readFile(path.join(rootfs, 'lib/apk/db/installed'), 'utf8').catch(() => undefined);
  if (apk !== undefined) return { manager: 'apk', count: countApkInstalled(apk) };
  return undefined;
}

const DB_PATHS: Record<string, PackageCount['manager']> = { 'var/lib/dpkg/status': 'dpkg', 'lib/apk/db/installed': 'apk' };

export interface TarballScan {
  packages?: PackageCount;
}

/**
 * Reads a rootfs tarball (plain, gzip, zstd or xz) in one streaming pass: counts packages (only the
 * package database entry is held in memory).
 */
export async function scanRootfsTarball(file: string): Promise<TarballScan> {
  const { stream } = await decompress(await openRootfsTarball(file));
  const extract = tarStream.extract();
  let found: PackageCount | undefined;
  const done = new Promise<void>((resolve, reject) => {
    extract.on('entry', (header, body, next) => {
      // A broken archive fails the pipeline below; the entry's own error needs a listener too.
      body.on('error', () => {});
      const name = header.name.replace(/^(\.\/|\/)+/, '');
      const manager = DB_PATHS[name];
      if (!manager || header.type !== 'file' || (header.size ?? 0) > 256 * 1024 * 1024) {
        body.on('end', next).resume();
        return;
      }
      const chunks: Buffer[] = [];
      body.on('data', (c: unknown) => { chunks.push(c as Buffer); });
      body.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        found = { manager, count: manager === 'dpkg' ? countDpkgStatus(text) : countApkInstalled(text) };
        next();
      });
    });
    extract.on('finish', resolve);
    extract.on('error', reject);
  });
  await Promise.all([pipeline(stream, extract), done]);
  return { packages: found };
}
