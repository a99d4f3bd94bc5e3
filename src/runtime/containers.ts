// Container records on disk: $DRYDOCK_ROOT/containers/<id>/ holds config.json (what to run, fixed
// at create), state.json (written by whoever runs the container: the foreground `drydock run` or
// the detached monitor), container.log (json-file lines), bundle/ (OCI spec) and the overlay dirs.
// Any drydock process can read them; a runner that died is detected by pid + start time.
import { promises as fsp, readdirSync, readFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
// proper-lockfile (with graceful-fs and signal-exit) loads on the first lock, not at CLI start-up.
const loadLockfile = async () => (await import('proper-lockfile')).default;
import { defaultRoot } from '../store/content-store.js';
import { readJsonIfExists, readJsonIfExistsSync, writeJson } from '../util/fs.js';
import { NotFoundError, UserError } from '../util/errors.js';
import type { ContainerConfig } from '../image/types.js';
import type { PortBinding } from './ports.js';
import type { ContainerNetwork } from './network.js';
import { containerState as runcState } from './runc.js';

export interface MountSpec {
  Type: 'bind' | 'volume' | 'tmpfs';
  /** Host path (bind), volume name (volume), or "" (tmpfs). */
  Source: string;
  Destination: string;
  RW: boolean;
  /** tmpfs options / bind propagation. */
  Options?: string[];
  /** Anonymous volumes are removed with `rm -v` and `--rm`. */
  Anonymous?: boolean;
}

export interface HostConfig {
  AutoRemove: boolean;
  NetworkMode: 'bridge' | 'host' | 'none';
  PortBindings: PortBinding[];
  PublishAllPorts: boolean;
  Mounts: MountSpec[];
  ReadonlyRootfs: boolean;
  Memory: number;
  NanoCpus: number;
  RestartPolicy: { Name: 'no' | 'on-failure' | 'always' | 'unless-stopped'; MaximumRetryCount: number };
  Init: boolean;
  Runtime: string;
  GroupAdd: string[];
  ExtraHosts: string[];
  Dns: string[];
  /** Security settings; absent in records written before they existed (= Docker's defaults). */
  Privileged?: boolean;
  CapAdd?: string[];
  CapDrop?: string[];
  /** As given: seccomp=unconfined|FILE (FILE made absolute), no-new-privileges. */
  SecurityOpt?: string[];
}

export interface ContainerRecord {
  Id: string;
  Name: string;
  Created: string;
  /** What the user typed. */
  Image: string;
  ImageID: string;
  ImageManifest: string;
  Architecture: string;
  Path: string;
  Args: string[];
  Config: ContainerConfig & { Hostname: string; Tty: boolean; OpenStdin: boolean; Image: string };
  HostConfig: HostConfig;
  /** Unpacked layer dirs, bottom to top. */
  LowerDirs: string[];
}

export type ContainerStatus = 'created' | 'running' | 'restarting' | 'exited' | 'removing';

export interface ContainerState {
  Status: ContainerStatus;
  Pid: number;
  /** The process that runs `runc run` for this container (monitor or foreground drydock). */
  RunnerPid: number;
  /** Its start time (clock ticks since boot), so a reused pid is not mistaken for it. */
  RunnerStart: string;
  ExitCode: number;
  Error: string;
  StartedAt: string;
  FinishedAt: string;
  RestartCount: number;
  Ports: PortBinding[];
  Network?: ContainerNetwork;
  /** Set by stop/kill so the restart policy does not bring the container back. */
  StopRequested?: boolean;
  OOMKilled?: boolean;
  /** Set by pause, cleared by unpause and by every start (runc's freezer state, kept for ps). */
  Paused?: boolean;
}

export const ZERO_TIME = '0001-01-01T00:00:00Z';

export function containersDir(root = defaultRoot()): string {
  return path.join(root, 'containers');
}

export class ContainerPaths {
  constructor(readonly dir: string) {}
  get config() { return path.join(this.dir, 'config.json'); }
  get state() { return path.join(this.dir, 'state.json'); }
  get log() { return path.join(this.dir, 'container.log'); }
  get bundle() { return path.join(this.dir, 'bundle'); }
  get pidFile() { return path.join(this.dir, 'container.pid'); }
  get merged() { return path.join(this.dir, 'merged'); }
  get upper() { return path.join(this.dir, 'upper'); }
  get monitorLog() { return path.join(this.dir, 'monitor.log'); }
}

export function pathsFor(id: string, root = defaultRoot()): ContainerPaths {
  if (!/^[a-f0-9]{64}$/.test(id)) throw new UserError(`invalid container id ${id}`);
  return new ContainerPaths(path.join(containersDir(root), id));
}

export function newContainerId(): string {
  return randomBytes(32).toString('hex');
}

const ADJECTIVES = ['brave', 'calm', 'eager', 'fancy', 'gentle', 'happy', 'jolly', 'keen', 'lucid', 'merry', 'nifty', 'proud', 'quirky', 'sharp', 'sleepy', 'tender', 'vivid', 'witty', 'zen', 'bold'];
const NOUNS = ['anchor', 'barge', 'buoy', 'cutter', 'dinghy', 'ferry', 'galley', 'harbor', 'hull', 'keel', 'mast', 'pier', 'quay', 'rudder', 'sloop', 'tug', 'wharf', 'yawl', 'schooner', 'skiff'];

export function randomName(): string {
  const pick = <T>(a: T[]) => a[Math.floor(Math.random() * a.length)]!;
  return `${pick(ADJECTIVES)}_${pick(NOUNS)}`;
}

export function validateName(name: string): string {
  const n = name.replace(/^\//, '');
  if (!/^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/.test(n)) throw new UserError(`invalid container name "${name}": only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed`);
  return n;
}

/** Serialises name allocation across processes. */
export async function withContainersLock<T>(fn: () => Promise<T>, root = defaultRoot()): Promise<T> {
  const dir = containersDir(root);
  await fsp.mkdir(dir, { recursive: true });
  const lock = path.join(dir, '.lock');
  await fsp.writeFile(lock, '', { flag: 'a' });
  const release = await (await loadLockfile()).lock(lock, { retries: { retries: 300, minTimeout: 5, maxTimeout: 50 }, stale: 20_000, realpath: false });
  try { return await fn(); } finally { await release(); }
}

// The container listing reads its directory and small JSON files synchronously: `drydock ps`
// then loads no fs.promises (store/content-store.ts forReading says why).
export async function listContainerIds(root = defaultRoot()): Promise<string[]> {
  let names: string[];
  try { names = readdirSync(containersDir(root)); } catch { return []; }
  return names.filter((n) => /^[a-f0-9]{64}$/.test(n));
}

/** readJsonIfExistsSync, undefined for a file that cannot be read or parsed (removed meanwhile). */
function readRecord<T>(file: string): T | undefined {
  try { return readJsonIfExistsSync<T>(file); } catch { return undefined; }
}

export interface Container { record: ContainerRecord; state: ContainerState; paths: ContainerPaths }

export async function loadContainer(id: string, root = defaultRoot()): Promise<Container | undefined> {
  const paths = pathsFor(id, root);
  const record = readRecord<ContainerRecord>(paths.config);
  if (!record) return undefined;
  const state = readRecord<ContainerState>(paths.state) ?? initialState();
  return { record, state: await reconcile(paths, state), paths };
}

export function initialState(): ContainerState {
  return { Status: 'created', Pid: 0, RunnerPid: 0, RunnerStart: '', ExitCode: 0, Error: '', StartedAt: ZERO_TIME, FinishedAt: ZERO_TIME, RestartCount: 0, Ports: [] };
}

export async function listContainers(root = defaultRoot()): Promise<Container[]> {
  const out: Container[] = [];
  for (const id of await listContainerIds(root)) {
    const c = await loadContainer(id, root);
    if (c) out.push(c);
  }
  return out.sort((a, b) => (a.record.Created < b.record.Created ? 1 : -1));
}

/** Finds a container by full id, unique id prefix, or name (with or without a leading "/"). */
export async function findContainer(ref: string, root = defaultRoot()): Promise<Container> {
  const name = ref.replace(/^\//, '');
  const ids = await listContainerIds(root);
  if (ids.includes(ref)) return (await loadContainer(ref, root)) ?? notFound(ref);
  for (const id of ids) {
    const rec = await readJsonIfExists<ContainerRecord>(pathsFor(id, root).config).catch(() => undefined);
    if (rec?.Name === name) return (await loadContainer(id, root)) ?? notFound(ref);
  }
  if (/^[a-f0-9]+$/.test(ref)) {
    const matches = ids.filter((id) => id.startsWith(ref));
    if (matches.length > 1) throw new UserError(`multiple containers match the id prefix "${ref}"`);
    if (matches.length === 1) return (await loadContainer(matches[0]!, root)) ?? notFound(ref);
  }
  return notFound(ref);
}

function notFound(ref: string): never {
  throw new NotFoundError(`No such container: ${ref}`);
}

export async function nameInUse(name: string, root = defaultRoot()): Promise<string | undefined> {
  for (const id of await listContainerIds(root)) {
    const rec = await readJsonIfExists<ContainerRecord>(pathsFor(id, root).config).catch(() => undefined);
    if (rec?.Name === name) return id;
  }
  return undefined;
}

export async function writeState(paths: ContainerPaths, state: ContainerState, durable = true): Promise<void> {
  await writeJson(paths.state, state, durable);
}

/** Reads, modifies and writes state.json (single writer in practice: the runner; others only on crash recovery). */
export async function updateState(paths: ContainerPaths, fn: (s: ContainerState) => void): Promise<ContainerState> {
  const state = (await readJsonIfExists<ContainerState>(paths.state)) ?? initialState();
  fn(state);
  // A container removed meanwhile (rm -f) must not be resurrected as a bare state file.
  if (!existsSync(paths.config)) return state;
  await writeState(paths, state);
  return state;
}

/** Start time of a process (field 22 of /proc/PID/stat), or undefined when it is gone. */
export function processStartTime(pid: number): string | undefined {
  if (!pid) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

export function runnerAlive(state: ContainerState): boolean {
  return !!state.RunnerPid && processStartTime(state.RunnerPid) === state.RunnerStart;
}

/**
 * Crash detection: a container recorded as running whose runner is gone is checked against
 * runc; if its process is gone too it is marked exited (255, like Docker after a daemon crash).
 */
async function reconcile(paths: ContainerPaths, state: ContainerState): Promise<ContainerState> {
  if (state.Status !== 'running' && state.Status !== 'restarting') return state;
  if (runnerAlive(state)) return state;
  const id = path.basename(paths.dir);
  const rs = await runcState(id);
  if (rs && (rs.status === 'running' || rs.status === 'paused')) return state;
  const fixed: ContainerState = {
    ...state,
    Status: 'exited',
    ExitCode: 255,
    Pid: 0,
    Error: 'the container monitor exited unexpectedly (crash); the container is no longer running',
    FinishedAt: new Date().toISOString(),
  };
  await writeState(paths, fixed).catch(() => {});
  return fixed;
}

/** "Up 5 minutes", "Exited (0) 2 seconds ago", "Created" — Docker's STATUS column. */
export function describeStatus(state: ContainerState, now = Date.now()): string {
  const ago = (iso: string) => humanDuration(now - Date.parse(iso));
  switch (state.Status) {
    case 'running': return `Up ${ago(state.StartedAt)}${state.Paused ? ' (Paused)' : ''}`;
    case 'restarting': return `Restarting (${state.ExitCode}) ${ago(state.FinishedAt)} ago`;
    case 'exited': return `Exited (${state.ExitCode}) ${ago(state.FinishedAt)} ago`;
    case 'removing': return 'Removal In Progress';
    default: return 'Created';
  }
}

export function humanDuration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 1) return 'Less than a second';
  if (s === 1) return '1 second';
  if (s < 60) return `${s} seconds`;
  const m = Math.round(s / 60);
  if (m < 60) return m === 1 ? 'About a minute' : `${m} minutes`;
  const h = Math.round(s / 3600);
  if (h < 48) return h === 1 ? 'About an hour' : `${h} hours`;
  return `${Math.round(h / 24)} days`;
}
