// Container lifecycle operations used by the CLI: run (foreground or detached via the monitor),
// stop, kill, rm, exec, commit, inspect (cp is in cp.ts).
import { spawn } from 'node:child_process';
import { promises as fsp, openSync, closeSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { UserError } from '../util/errors.js';
import { readJsonIfExists } from '../util/fs.js';
import {
  type Container, findContainer, loadContainer, updateState, runnerAlive,
} from './containers.js';
import { createContainer, type CreateOptions, mergeEnv, parseEnvList } from './create.js';
import { runContainer } from './runner.js';
import { destroyContainer } from './destroy.js';
import { killContainer, containerState, execInContainer, type ExecOptions } from './runc.js';
import { inspectVolume } from './volumes.js';
import { resolveUser } from './user.js';
import { checkWorkdir } from './rootfs-path.js';
import { sweepOrphans } from './orphans.js';
import type { OciSpec } from './spec.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface RunOptions extends CreateOptions {
  detach?: boolean;
  /** Docker's --detach-keys for a terminal session (default ctrl-p,ctrl-q). */
  detachKeys?: string;
}

/** `drydock run`: create, then run in the foreground (returns the exit code) or via the monitor. */
export async function runNew(o: RunOptions): Promise<{ id: string; exitCode: number }> {
  // Build steps whose drydock was killed leave a runc container and mounts; sweep them first.
  await sweepOrphans();
  const rec = await createContainer(o);
  const c = (await loadContainer(rec.Id))!;
  if (o.detach) {
    await startDetached(c);
    return { id: rec.Id, exitCode: 0 };
  }
  // `-it` on a terminal: the monitor runs the container and this process attaches to it, as
  // Docker's CLI attaches to its daemon, so the detach keys leave the container running.
  if (rec.Config.Tty && rec.Config.OpenStdin && process.stdin.isTTY) {
    const { attachContainer } = await import('./attach.js');
    await startDetached(c, { attach: true });
    const exitCode = await attachContainer(c, { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr, detachKeys: o.detachKeys, justStarted: true });
    return { id: rec.Id, exitCode };
  }
  // --rm output is not kept (the record disappears), so the fast path skips log capture.
  const code = await runContainer(c, { mode: 'foreground', log: !rec.HostConfig.AutoRemove });
  return { id: rec.Id, exitCode: code };
}

/** Starts the monitor for a created/exited container and waits until the container runs. */
export async function startDetached(c: Container, o: { attach?: boolean } = {}): Promise<void> {
  if (c.state.Status === 'running') return;
  const here = fileURLToPath(import.meta.url);
  const entry = path.join(path.dirname(here), `monitor-main${path.extname(here)}`);
  const logFd = openSync(c.paths.monitorLog, 'a');
  const child = spawn(process.execPath, [...process.execArgv, entry, c.record.Id, ...(o.attach ? ['--attach'] : [])], {
    detached: true,
    stdio: ['ignore', logFd, logFd, 'pipe'],
    env: process.env,
  });
  closeSync(logFd);
  const pipe = child.stdio[3] as NodeJS.ReadableStream;
  let text = '';
  pipe.on('data', (d) => (text += d));
  const outcome = await new Promise<{ ok?: boolean; error?: string; exitCode?: number }>((resolve) => {
    const done = () => { try { resolve(JSON.parse(text.split('\n')[0]!)); } catch { resolve({ error: `the container monitor failed to start (see ${c.paths.monitorLog})`, exitCode: 125 }); } };
    pipe.on('end', done);
    pipe.on('error', done);
  });
  child.unref();
  (pipe as unknown as { destroy(): void }).destroy();
  if (outcome.error) throw new UserError(outcome.error, outcome.exitCode ?? 125);
}

export async function startExisting(ref: string): Promise<Container> {
  const c = await findContainer(ref);
  if (c.state.Status === 'running') return c;
  await updateState(c.paths, (s) => { s.StopRequested = false; });
  await startDetached((await loadContainer(c.record.Id))!);
  return c;
}

/**
 * `drydock container restore`: starts every container whose restart policy says it should run
 * (after a reboot, or after its monitor was killed). Returns the names started and the failures;
 * one container that cannot start does not keep the others down.
 */
export async function restoreContainers(): Promise<{ started: string[]; failed: { name: string; error: string }[] }> {
  const { listContainers } = await import('./containers.js');
  const { shouldRestore } = await import('./systemd.js');
  const started: string[] = [];
  const failed: { name: string; error: string }[] = [];
  for (const c of await listContainers()) {
    if (!shouldRestore(c)) continue;
    try {
      await startExisting(c.record.Id);
      started.push(c.record.Name);
    } catch (e) {
      failed.push({ name: c.record.Name, error: (e as Error).message });
    }
  }
  return { started, failed };
}

/**
 * Waits until the container's process is gone. The runner records the exit a moment later;
 * give it a short grace so a following `ps` is consistent, without depending on it.
 */
async function waitUntilStopped(id: string, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  let goneAt = 0;
  for (;;) {
    const c = await loadContainer(id);
    if (!c || (c.state.Status !== 'running' && c.state.Status !== 'restarting')) return true;
    const pid = c.state.Pid || Number((await fsp.readFile(c.paths.pidFile, 'utf8').catch(() => '0')).trim());
    if (c.state.Status === 'running' && pid && !pidAlive(pid)) {
      goneAt ||= Date.now();
      if (Date.now() - goneAt > 3000) return true;
    }
    if (Date.now() >= deadline) return false;
    await sleep(50);
  }
}

function pidAlive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch (e) { return (e as NodeJS.ErrnoException).code === 'EPERM'; }
}

/** StopSignal, then SIGKILL after `timeoutSec` (Docker's default 10). */
export async function stopContainer(ref: string, timeoutSec = 10, signal?: string): Promise<Container> {
  const c = await findContainer(ref);
  if (c.state.Status !== 'running' && c.state.Status !== 'restarting') return c;
  await updateState(c.paths, (s) => { s.StopRequested = true; });
  const sig = signal ?? c.record.Config.StopSignal ?? 'SIGTERM';
  if (c.state.Status === 'running') await killContainer(c.record.Id, sig, { runtime: c.record.HostConfig.Runtime });
  if (await waitUntilStopped(c.record.Id, Math.max(0, timeoutSec) * 1000)) return c;
  await killContainer(c.record.Id, 'SIGKILL', { all: true, runtime: c.record.HostConfig.Runtime });
  if (!(await waitUntilStopped(c.record.Id, 10_000))) throw new UserError(`container ${c.record.Name} did not stop after SIGKILL`);
  return c;
}

export async function killCtr(ref: string, signal = 'SIGKILL'): Promise<Container> {
  const c = await findContainer(ref);
  if (c.state.Status !== 'running') throw new UserError(`Cannot kill container: ${ref}: container ${c.record.Id} is not running`);
  const sig = /^\d+$/.test(signal) ? signal : signal.toUpperCase().startsWith('SIG') ? signal.toUpperCase() : `SIG${signal.toUpperCase()}`;
  if (!/^\d+$/.test(sig) && !(sig in os.constants.signals)) throw new UserError(`invalid signal: ${signal}`);
  if (sig === 'SIGKILL' || sig === '9') await updateState(c.paths, (s) => { s.StopRequested = true; });
  await killContainer(c.record.Id, sig, { runtime: c.record.HostConfig.Runtime });
  return c;
}

/** Removes a container: its runc state, overlay mount, network, anonymous volumes (-v) and files. */
export async function removeContainer(ref: string, o: { force?: boolean; volumes?: boolean } = {}): Promise<Container> {
  const c = await findContainer(ref);
  const id = c.record.Id;
  if (c.state.Status === 'running' || c.state.Status === 'restarting') {
    if (!o.force) throw new UserError(`You cannot remove a running container ${id}. Stop the container before attempting removal or force remove`);
    await updateState(c.paths, (s) => { s.StopRequested = true; });
    await killContainer(id, 'SIGKILL', { all: true, runtime: c.record.HostConfig.Runtime });
    await waitUntilStopped(id, 10_000);
  }
  await destroyContainer((await loadContainer(id)) ?? c, o);
  return c;
}

export interface ExecOpts { interactive?: boolean; tty?: boolean; env?: string[]; user?: string; workdir?: string; detach?: boolean; detachKeys?: string }

export async function execIn(ref: string, args: string[], o: ExecOpts = {}): Promise<number> {
  const c = await findContainer(ref);
  if (c.state.Status !== 'running') throw new UserError(`container ${c.record.Name} is not running`, 1);
  if (!args.length) throw new UserError('exec needs a command');
  const spec = await readJsonIfExists<OciSpec>(path.join(c.paths.bundle, 'config.json'));
  if (!spec) throw new UserError(`container ${c.record.Name} has no runtime spec (was it started by this drydock?)`);
  if (o.workdir) await checkWorkdir(c.paths.merged, o.workdir);
  const user = o.user ? await resolveUser(c.paths.merged, o.user) : undefined;
  let env = mergeEnv(spec.process.env, parseEnvList(o.env ?? []));
  if (user) env = mergeEnv(env, [`HOME=${user.home}`]);
  if (o.tty && !env.some((e) => e.startsWith('TERM='))) env.push('TERM=xterm');
  const exec = {
    id: c.record.Id,
    args,
    env,
    cwd: o.workdir,
    user: user ? { uid: user.uid, gid: user.gid, ...(user.additionalGids.length ? { additionalGids: user.additionalGids } : {}) } : undefined,
    tty: o.tty,
    interactive: o.interactive,
    base: spec.process,
    processFile: path.join(c.paths.dir, `exec-${process.pid}-${Date.now()}.json`),
    runtime: c.record.HostConfig.Runtime,
  };
  if (o.tty && o.interactive && process.stdin.isTTY) return execAttached(c, exec, o.detachKeys);
  return execInContainer(exec);
}

/**
 * `exec -it` on a terminal: a detached exec monitor (exec-monitor-main.ts) runs the process and
 * this CLI attaches to it, so the detach keys leave it running; otherwise the exit code is its.
 */
async function execAttached(c: Container, exec: ExecOptions, detachKeys?: string): Promise<number> {
  const { prepareExec } = await import('./runc.js');
  const { attachSocket } = await import('./attach.js');
  const runcExec = await prepareExec(exec);
  const socket = `${path.basename(exec.processFile, '.json')}.sock`;
  const here = fileURLToPath(import.meta.url);
  const entry = path.join(path.dirname(here), `exec-monitor-main${path.extname(here)}`);
  // Its own errors go to the monitor log: it must not hold the user's terminal open.
  const logFd = openSync(c.paths.monitorLog, 'a');
  const child = spawn(process.execPath, [...process.execArgv, entry, c.paths.dir, socket, exec.processFile, ...runcExec], {
    detached: true, stdio: ['ignore', logFd, logFd, 'pipe'], env: process.env,
  });
  closeSync(logFd);
  const pipe = child.stdio[3] as NodeJS.ReadableStream;
  let text = '';
  pipe.on('data', (d) => (text += d));
  await new Promise<void>((resolve) => { pipe.on('end', resolve); pipe.on('error', resolve); });
  child.unref();
  if (!text.includes('"ok":true')) throw new UserError(`the exec session for ${c.record.Name} failed to start`, 126);
  const r = await attachSocket(c.paths.dir, socket, {
    stdin: process.stdin, stdout: process.stdout, stderr: process.stderr, detachKeys,
    tty: true, openStdin: true, missing: `the exec session for ${c.record.Name} went away`,
  });
  return r.detached ? 0 : r.exitCode ?? 0;
}

export interface CommitOptions { tag?: string; message?: string; author?: string; changes?: string[]; pause?: boolean }

/** The container's upper dir becomes a new layer on top of its image (docker commit). */
export async function commitContainer(ref: string, o: CommitOptions = {}): Promise<{ id: string; manifestDigest: string; names: string[] }> {
  const c = await findContainer(ref);
  const { ContentStore } = await import('../store/content-store.js');
  const { resolveImage, writeImage } = await import('../store/index.js');
  const { createLayer } = await import('../layer/index.js');
  const store = await ContentStore.open();
  const parent = await resolveImage(store, c.record.ImageManifest);
  const frozen = c.state.Status === 'running' && o.pause !== false;
  // Pause (freezer) so the layer is a consistent snapshot, like docker commit's default.
  if (frozen) await runcSimple(['pause', c.record.Id], c).catch(() => {});
  let layer;
  try {
    layer = await createLayer(store, { dir: c.paths.upper }, { overlayUpper: true });
  } finally {
    if (frozen) await runcSimple(['resume', c.record.Id], c).catch(() => {});
  }
  const base = parent.config;
  let config = { ...(base.config ?? {}) };
  if (o.changes?.length) {
    const { applyConfigChanges } = await import('../builder/changes.js');
    config = applyConfigChanges(config, o.changes);
  }
  const created = new Date().toISOString();
  const written = await writeImage(store, {
    config: {
      ...base,
      created,
      ...(o.author ? { author: o.author } : {}),
      config,
      rootfs: { type: 'layers', diff_ids: [...base.rootfs.diff_ids, layer.diffID] },
      history: [...(base.history ?? []), { created, created_by: `${c.record.Path} ${c.record.Args.join(' ')}`.trim(), ...(o.author ? { author: o.author } : {}), ...(o.message ? { comment: o.message } : {}) }],
    },
    layers: [...parent.manifest.layers.map((l, i) => ({ digest: l.digest, size: l.size, mediaType: l.mediaType, diffID: base.rootfs.diff_ids[i]! })), layer],
    ...(o.tag ? { tag: o.tag } : {}),
  });
  return { id: written.configDigest, manifestDigest: written.manifestDigest, names: written.names };
}

async function runcSimple(args: string[], c: Container): Promise<void> {
  const { execFile } = await import('node:child_process');
  const { promisify } = await import('node:util');
  const { runcStateRoot } = await import('./runc.js');
  await promisify(execFile)(c.record.HostConfig.Runtime || 'runc', ['--root', runcStateRoot(), ...args]);
}

/** `docker inspect`-shaped JSON for a container. */
export async function inspectContainer(ref: string): Promise<Record<string, unknown>> {
  const c = await findContainer(ref);
  const { record: r, state: s } = c;
  let pid = s.Pid;
  if (s.Status === 'running' && !pid) pid = Number((await fsp.readFile(c.paths.pidFile, 'utf8').catch(() => '0')).trim()) || 0;
  const ports: Record<string, { HostIp: string; HostPort: string }[] | null> = {};
  for (const p of Object.keys(r.Config.ExposedPorts ?? {})) ports[p.includes('/') ? p : `${p}/tcp`] = null;
  for (const b of (s.Ports.length ? s.Ports : r.HostConfig.PortBindings)) {
    const key = `${b.containerPort}/${b.protocol}`;
    (ports[key] ??= []).push({ HostIp: b.hostIp, HostPort: String(b.hostPort || '') });
  }
  return {
    Id: r.Id,
    Created: r.Created,
    Path: r.Path,
    Args: r.Args,
    State: {
      Status: s.Status, Running: s.Status === 'running', Paused: !!s.Paused && s.Status === 'running', Restarting: s.Status === 'restarting',
      OOMKilled: !!s.OOMKilled, Dead: false, Pid: pid, ExitCode: s.ExitCode, Error: s.Error,
      StartedAt: s.StartedAt, FinishedAt: s.FinishedAt,
    },
    Image: r.ImageID,
    ResolvConfPath: path.join(c.paths.dir, 'hostfiles/resolv.conf'),
    HostnamePath: path.join(c.paths.dir, 'hostfiles/hostname'),
    HostsPath: path.join(c.paths.dir, 'hostfiles/hosts'),
    LogPath: c.paths.log,
    Name: `/${r.Name}`,
    RestartCount: s.RestartCount,
    Driver: 'overlay',
    Platform: 'linux',
    HostConfig: {
      AutoRemove: r.HostConfig.AutoRemove,
      NetworkMode: r.HostConfig.NetworkMode,
      PortBindings: Object.fromEntries(r.HostConfig.PortBindings.map((b) => [`${b.containerPort}/${b.protocol}`, [{ HostIp: b.hostIp, HostPort: b.hostPort ? String(b.hostPort) : '' }]])),
      PublishAllPorts: r.HostConfig.PublishAllPorts,
      RestartPolicy: r.HostConfig.RestartPolicy,
      ReadonlyRootfs: r.HostConfig.ReadonlyRootfs,
      Memory: r.HostConfig.Memory,
      NanoCpus: r.HostConfig.NanoCpus,
      Init: r.HostConfig.Init,
      Runtime: r.HostConfig.Runtime,
      Binds: r.HostConfig.Mounts.filter((m) => m.Type !== 'tmpfs').map((m) => `${m.Source}:${m.Destination}${m.RW ? '' : ':ro'}`),
      Tmpfs: Object.fromEntries(r.HostConfig.Mounts.filter((m) => m.Type === 'tmpfs').map((m) => [m.Destination, (m.Options ?? []).join(',')])),
      GroupAdd: r.HostConfig.GroupAdd,
      ExtraHosts: r.HostConfig.ExtraHosts,
      Dns: r.HostConfig.Dns,
      Privileged: !!r.HostConfig.Privileged,
      CapAdd: r.HostConfig.CapAdd?.length ? r.HostConfig.CapAdd : null,
      CapDrop: r.HostConfig.CapDrop?.length ? r.HostConfig.CapDrop : null,
      SecurityOpt: r.HostConfig.SecurityOpt?.length ? r.HostConfig.SecurityOpt : null,
    },
    GraphDriver: {
      Name: 'overlay',
      Data: { LowerDir: [...r.LowerDirs].reverse().join(':'), UpperDir: c.paths.upper, MergedDir: c.paths.merged, WorkDir: path.join(c.paths.dir, 'work') },
    },
    Mounts: await Promise.all(r.HostConfig.Mounts.map(async (m) => ({
      Type: m.Type,
      ...(m.Type === 'volume' ? { Name: m.Source, Driver: 'local' } : {}),
      Source: m.Type === 'volume' ? (m.Source ? (await inspectVolume(m.Source))?.Mountpoint ?? '' : '') : m.Source,
      Destination: m.Destination,
      Mode: m.RW ? '' : 'ro',
      RW: m.RW,
      Propagation: m.Type === 'bind' ? 'rprivate' : '',
    }))),
    Config: r.Config,
    NetworkSettings: {
      Ports: ports,
      IPAddress: s.Network?.ipAddress ?? '',
      Gateway: s.Network?.gateway ?? '',
      IPPrefixLen: s.Network ? 24 : 0,
      MacAddress: s.Network?.macAddress ?? '',
      SandboxKey: s.Network?.netnsPath ?? '',
      Networks: s.Network ? { bridge: { IPAddress: s.Network.ipAddress, Gateway: s.Network.gateway, IPPrefixLen: 24, MacAddress: s.Network.macAddress, NetworkID: s.Network.bridge } } : {},
    },
  };
}

export { runnerAlive, containerState };
export { copy, splitContainerPath } from './cp.js';
