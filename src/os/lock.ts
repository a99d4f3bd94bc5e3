// One `drydock os` writer at a time: confirm's cleanup must not delete the layers an upgrade has
// converted but not yet named in a deployment. The lock is a file made with link(2), which fails
// when it exists; one left by a killed process (its pid gone, or another boot's) is taken over.
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { tempName } from '../util/fs.js';
import { UserError } from '../util/errors.js';
import { bootId } from '../util/boot-id.js';

function alive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch (e) { return (e as NodeJS.ErrnoException).code === 'EPERM'; }
}

async function holder(lock: string): Promise<{ pid: number; boot: string } | undefined> {
  const text = await fsp.readFile(lock, 'utf8').catch(() => undefined);
  if (text === undefined) return undefined;
  const [pid, boot] = text.trim().split(' ');
  return { pid: Number(pid), boot: boot ?? '' };
}

/** Runs `fn` holding `lockPath`; refuses when a live process of this boot holds it. */
export async function withLock<T>(lockPath: string, fn: () => Promise<T>): Promise<T> {
  await fsp.mkdir(path.dirname(lockPath), { recursive: true });
  const mine = tempName(lockPath);
  await fsp.writeFile(mine, `${process.pid} ${bootId()}\n`);
  try {
    for (let attempt = 0; ; attempt++) {
      try {
        await fsp.link(mine, lockPath);
        break;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST' || attempt >= 3) throw e;
        const h = await holder(lockPath);
        if (h && h.boot === bootId() && alive(h.pid) && h.pid !== process.pid) {
          throw new UserError(`another drydock os command (pid ${h.pid}) is running on ${path.dirname(path.dirname(lockPath))}`);
        }
        await fsp.rm(lockPath, { force: true });
      }
    }
  } finally {
    await fsp.rm(mine, { force: true });
  }
  try {
    return await fn();
  } finally {
    await fsp.rm(lockPath, { force: true });
  }
}
