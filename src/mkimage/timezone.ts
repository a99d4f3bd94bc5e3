// --timezone: sets /etc/localtime and /etc/timezone the way Debian's tzdata does. When the
// image has no zoneinfo database (busybox, debian minbase) the one zone file is copied from the
// host's /usr/share/zoneinfo, so the image gains ~1 kB instead of tzdata's 3 MB.
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { UserError } from '../util/errors.js';
import { resolveInRoot } from '../runtime/rootfs-path.js';
import { insideRootfs, symlinkInRootfs, writeRootfsFile } from './rootfs-path.js';

export const HOST_ZONEINFO = '/usr/share/zoneinfo';

const ZONE_NAME = /^[A-Za-z0-9_+-]+(\/[A-Za-z0-9_+-]+){0,3}$/;

export function validateTimezone(name: string): void {
  if (!ZONE_NAME.test(name)) throw new UserError(`invalid timezone "${name}" (expected an IANA name such as Europe/Berlin or UTC)`);
}

/** TZif files start with the magic "TZif"; anything else (a directory, posixrules text) is refused. */
async function isZoneFile(p: string): Promise<boolean> {
  const fh = await fsp.open(p, 'r').catch(() => undefined);
  if (!fh) return false;
  try {
    const st = await fh.stat();
    if (!st.isFile()) return false;
    const buf = Buffer.alloc(4);
    await fh.read(buf, 0, 4, 0);
    return buf.toString('latin1') === 'TZif';
  } finally {
    await fh.close();
  }
}

export async function setTimezone(rootfs: string, name: string, hostZoneinfo = HOST_ZONEINFO): Promise<{ copiedFromHost: boolean }> {
  validateTimezone(name);
  const rel = path.posix.join('usr/share/zoneinfo', name);
  let copiedFromHost = false;
  if (!(await isZoneFile(await resolveInRoot(rootfs, rel)))) {
    const inImage = await insideRootfs(rootfs, rel);
    const hostFile = path.join(hostZoneinfo, name);
    if (!(await isZoneFile(hostFile))) {
      throw new UserError(`unknown timezone "${name}": neither the image nor the host (${hostZoneinfo}) has zoneinfo for it (apt-get install tzdata)`);
    }
    await fsp.rm(inImage, { force: true });
    await fsp.copyFile(hostFile, inImage);
    await fsp.chmod(inImage, 0o644);
    copiedFromHost = true;
  }
  await symlinkInRootfs(rootfs, 'etc/localtime', `/${rel}`);
  await writeRootfsFile(rootfs, 'etc/timezone', `${name}\n`);
  return { copiedFromHost };
}
