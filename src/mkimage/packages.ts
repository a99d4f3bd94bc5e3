// Counts the packages a root filesystem has installed, for the mkimage report. Reads the
// package manager's database directly (dpkg status, apk installed), so it works on any
// architecture without running anything from the image.
import { promises as fsp } from 'node:fs';
import path from 'node:path';

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
