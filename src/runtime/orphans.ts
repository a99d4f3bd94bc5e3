// Scratch directories owned by one drydock process: a build step's overlay mounts and its runc
// container. A process killed with SIGKILL cannot clean up, so each such directory records its
// owner (pid + the process's start time from /proc/PID/stat, which a reused pid does not share)
// and the runc containers it starts; the next build, run or gc sweeps the directories whose
// owner is gone: kill and delete the containers, unmount what is mounted beneath, remove.
import { promises as fsp, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmdir, unlink, writeFileSync, type Dirent } from 'node:fs';
import path from 'node:path';
import { defaultRoot } from '../store/content-store.js';
import { processStartTime } from './containers.js';
import { killContainer, deleteContainer, runcStateRoot } from './runc.js';
import { unmountPath } from './overlay.js';

const OWNER_FILE = 'owner.json';

interface Owner { pid: number; start: string; containers: { id: string; stateRoot: string }[] }

/** Where build steps keep their scratch dirs (one per step, swept when orphaned). */
export function scratchRoot(root = defaultRoot()): string {
  return path.join(root, 'builder');
}

/**
 * Creates `dir` owned by this process. Write before mounting or starting anything in it, so a
 * kill at any later point leaves a record behind.
 */
export async function createOwnedDir(dir: string): Promise<void> {
  // Synchronous, as addOwnedContainer: a mkdir and a small write and rename before every build
  // step's mount, each a thread-pool round trip as fs.promises calls (not fsynced either way:
  // the record only has to outlive this process, not the machine).
  mkdirSync(dir, { recursive: true });
  writeOwner(dir, ownerRecord());
}

/** This process as a dir's owner, with no container started yet. */
function ownerRecord(): Owner {
  return { pid: process.pid, start: processStartTime(process.pid) ?? '', containers: [] };
}

/** The names createOwnedTempDir's callers give: `<kind>-<pid>-`, then mkdtemp's characters. */
const OWNED_TEMP_NAME = /^[a-z]+-(\d+)-/;

/**
 * Creates a new dir named `prefix` and six random characters under `parent` (mkdtemp: a name
 * no dir had), owned by this process as createOwnedDir's; returns its path. The name's
 * randomness comes from libuv (getrandom), not node:crypto, which a build step would otherwise
 * load before its container starts (src/util/sha256.ts).
 */
export function createOwnedTempDir(parent: string, prefix: string): string {
  let dir: string;
  try {
    dir = mkdtempSync(path.join(parent, prefix));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    mkdirSync(parent, { recursive: true });
    dir = mkdtempSync(path.join(parent, prefix));
  }
  writeOwner(dir, ownerRecord());
  return dir;
}

/**
 * Removes what an owned dir holds but its owner record and the entries named in `keep`: the
 * bulk of a dir whose owner is about to remove it, while the record still claims it. Never fails.
 */
export async function clearOwnedDir(dir: string, keep: string[] = []): Promise<void> {
  let entries: Dirent[];
  try { entries = readdirSync(dir, { withFileTypes: true }); } catch { return; }
  await Promise.all(entries.filter((e) => e.name !== OWNER_FILE && !keep.includes(e.name)).map((e) => removeEntry(path.join(dir, e.name), e).catch(() => {})));
}

/**
 * Removes a directory entry and, for a directory, everything below it; a symlink is removed,
 * never followed (the Dirent's type is the entry's own, as lstat's). The tree is listed with
 * synchronous readdirs (microseconds, no journal), and only the unlinks and rmdirs go to the
 * thread pool, a directory's entries at once: a scratch dir's deepest chain (the overlay's work
 * dir, five levels) is five round trips, where fs.rm's lstat, failed rmdir and readdir per level
 * made it ~17, each queued behind the fsyncs a build's export runs meanwhile.
 */
async function removeEntry(p: string, entry: Dirent): Promise<void> {
  if (!entry.isDirectory()) return onPool(unlink, p);
  const entries = readdirSync(p, { withFileTypes: true });
  await Promise.all(entries.map((e) => removeEntry(path.join(p, e.name), e)));
  await onPool(rmdir, p);
}

/**
 * fs's callback form on the thread pool: a late RUN's build uses fs.promises nowhere else after
 * runc's exit, and loading it there (its first use) costs more than these calls.
 */
function onPool(call: (p: string, cb: (e: NodeJS.ErrnoException | null) => void) => void, p: string): Promise<void> {
  return new Promise((resolve, reject) => { call(p, (e) => (e ? reject(e) : resolve())); });
}

/** Records one more runc container started from `dir` (before it is started). */
export async function addOwnedContainer(dir: string, id: string, stateRoot = runcStateRoot()): Promise<void> {
  const owner = readOwnerSync(dir);
  if (!owner) return;
  owner.containers = [...owner.containers.filter((c) => c.id !== id), { id, stateRoot }];
  writeOwner(dir, owner);
}

/** Temp and rename: a sweep reads the old record or the new one, never half of one. */
function writeOwner(dir: string, owner: Owner): void {
  const tmp = path.join(dir, `.${OWNER_FILE}.tmp`);
  writeFileSync(tmp, JSON.stringify(owner));
  renameSync(tmp, path.join(dir, OWNER_FILE));
}

function readOwnerSync(dir: string): Owner | undefined {
  try { return JSON.parse(readFileSync(path.join(dir, OWNER_FILE), 'utf8')) as Owner; } catch { return undefined; }
}

async function readOwner(dir: string): Promise<Owner | undefined> {
  try { return JSON.parse(await fsp.readFile(path.join(dir, OWNER_FILE), 'utf8')) as Owner; } catch { return undefined; }
}

/** Kills the containers started from `dir` (a step cancelled while its RUN runs); they exit, runc run returns. */
export async function killOwnedContainers(dir: string): Promise<void> {
  for (const { id, stateRoot } of (await readOwner(dir))?.containers ?? []) await killContainer(id, 'SIGKILL', { all: true, stateRoot }).catch(() => {});
}

function ownerAlive(o: Owner): boolean {
  return processStartTime(o.pid) === o.start && !!o.start;
}

export interface SweepResult { dirs: string[]; containers: string[]; unmounted: string[] }

/** Sweeps every scratch dir under `parent` whose owner process is gone. Safe to run concurrently. */
export async function sweepOrphans(parent = scratchRoot()): Promise<SweepResult> {
  const result: SweepResult = { dirs: [], containers: [], unmounted: [] };
  const names = await fsp.readdir(parent).catch(() => [] as string[]);
  if (!names.length) return result;
  for (const name of names) {
    const dir = path.join(parent, name);
    let owner = await readOwner(dir);
    if (!owner) {
      // Written before the owner file existed, or a dir just created (a process killed between
      // createOwnedTempDir's mkdtemp and its owner record): the pid in its name decides
      // (`step-<pid>-`, `kernel-<pid>-`), and a live (or reused) pid keeps it.
      const pid = Number(OWNED_TEMP_NAME.exec(name)?.[1]);
      if (!pid || processStartTime(pid)) continue;
      owner = { pid, start: '', containers: [] };
    } else if (ownerAlive(owner)) continue;
    await sweepDir(dir, owner, result);
  }
  return result;
}

async function sweepDir(dir: string, owner: Owner, result: SweepResult): Promise<void> {
  for (const { id, stateRoot } of owner.containers) {
    await killContainer(id, 'SIGKILL', { all: true, stateRoot }).catch(() => {});
    await deleteContainer(id, { force: true, stateRoot });
    result.containers.push(id);
  }
  const mounts = (await fsp.readFile('/proc/self/mountinfo', 'utf8')).split('\n').map((l) => l.split(' ')[4]).filter((m): m is string => !!m);
  // Deepest first: an overlay mounted inside another step's dir comes off before its parent.
  for (const m of mounts.filter((p) => p === dir || p.startsWith(`${dir}/`)).sort((a, b) => b.length - a.length)) {
    await unmountPath(m).catch(() => {});
    result.unmounted.push(m);
  }
  await fsp.rm(dir, { recursive: true, force: true }).catch(() => {});
  result.dirs.push(dir);
}
