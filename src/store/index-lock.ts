// The lock that serialises index.json's read-modify-write between processes: the directory
// `index.json.lock` (mkdir is atomic), as proper-lockfile made it, which drydock used before and
// other tools on a store may still use: a lock without an owner file is stale once its mtime is
// older than STALE_MS, and a holder touches it every STALE_MS / 2. Besides it, the file
// `index.json.lock.owner` names the holder (pid and process start time): a lock whose holder has
// died (killed while it wrote a tag) is broken at once, not after STALE_MS, which is longer than
// a waiter's retries last. Breaking happens under a second lock (`index.json.lock.break`) and
// only if the lock still names the same dead holder, so two waiters never both break it, nor
// break the live lock the first of them took meanwhile. The calls are synchronous: a few
// microseconds each on a local disk, where each fs.promises call is a thread-pool round trip.
import { promises as fsp, mkdirSync, readFileSync, rmdirSync, rmSync, statSync, writeFileSync } from 'node:fs';

const STALE_MS = 30_000;
/** How long a waiter tries before it gives up (as proper-lockfile's 200 retries of 10–100 ms). */
const WAIT_MS = 20_000;

const ownerText = (pid: number) => `${pid} ${processStartTime(pid) ?? ''}\n`;

/** Field 22 of /proc/<pid>/stat (clock ticks since boot): a pid reused later has another. */
function processStartTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

/** The holder `text` names is gone (or is another process with its pid). */
function holderDead(text: string): boolean {
  const [pidText, start] = text.trim().split(' ');
  const pid = Number(pidText);
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try { process.kill(pid, 0); } catch (e) { if ((e as NodeJS.ErrnoException).code === 'ESRCH') return true; }
  return !!start && processStartTime(pid) !== undefined && processStartTime(pid) !== start;
}

function readOrUndefined(file: string): string | undefined {
  try { return readFileSync(file, 'utf8'); } catch { return undefined; }
}

function mtimeMs(p: string): number | undefined {
  try { return statSync(p).mtimeMs; } catch { return undefined; }
}

/** Takes the lock of `file`; the returned function releases it. */
export async function lockFile(file: string): Promise<() => Promise<void>> {
  const lock = `${file}.lock`;
  const owner = `${lock}.owner`;
  const deadline = Date.now() + WAIT_MS;
  for (let attempt = 0; ; attempt++) {
    try {
      mkdirSync(lock);
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    const holder = readOrUndefined(owner);
    const age = Date.now() - (mtimeMs(lock) ?? Date.now());
    if ((holder !== undefined && holderDead(holder)) || age > STALE_MS) {
      if (await breakLock(lock, owner, holder)) continue;
    }
    if (Date.now() > deadline) {
      throw Object.assign(new Error(`Lock file is already being held: ${lock} (${holder ? `by pid ${holder.split(' ')[0]}` : 'no owner file'}, ${Math.round(age / 1000)} s old)`), { code: 'ELOCKED' });
    }
    await new Promise((r) => setTimeout(r, Math.min(100, 10 * 2 ** Math.min(attempt, 4))));
  }
  // Not fsynced: a lock outlives no crash of the machine that matters (its holder is dead then).
  writeFileSync(owner, ownerText(process.pid));
  const touch = setInterval(() => { const now = new Date(); fsp.utimes(lock, now, now).catch(() => {}); }, STALE_MS / 2);
  touch.unref();
  return async () => {
    clearInterval(touch);
    rmSync(owner, { force: true });
    try { rmdirSync(lock); } catch (e) { if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e; }
  };
}

/** Removes the lock if it is still the one judged stale (same holder, or still old); true if it did. */
async function breakLock(lock: string, owner: string, holder: string | undefined): Promise<boolean> {
  const breaker = `${lock}.break`;
  try {
    mkdirSync(breaker);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    // A breaker that died: its lock goes by age alone.
    if (Date.now() - (mtimeMs(breaker) ?? Date.now()) > STALE_MS) try { rmdirSync(breaker); } catch { /* another waiter's */ }
    return false;
  }
  try {
    const now = readOrUndefined(owner);
    const stillStale = holder !== undefined ? now === holder : now === undefined && Date.now() - (mtimeMs(lock) ?? Date.now()) > STALE_MS;
    if (!stillStale) return false;
    rmSync(owner, { force: true });
    // A lock dir is empty, unless another tool put something in it: the lock is stale either way.
    rmSync(lock, { recursive: true, force: true });
    return true;
  } finally {
    try { rmdirSync(breaker); } catch { /* gone already */ }
  }
}
