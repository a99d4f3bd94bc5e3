// Runs a created container to completion: mount the rootfs, set up the network, generate the
// spec, `runc run`, capture logs, publish ports, record state, apply the restart policy, and
// clean up. The same code runs in the foreground `drydock run` and in the detached monitor.
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import type { StdioOptions } from 'node:child_process';
import { UserError } from '../util/errors.js';
import { type Container, type ContainerState, processStartTime, updateState, writeState, ZERO_TIME, loadContainer } from './containers.js';
import { mountRootfs, isMountPoint, unmountPath } from './overlay.js';
import { createRuntimeSpec, type OciMount, type OciResources, type NetworkSpec } from './spec.js';
import { startRuncRun, deleteContainer, type RunResult } from './runc.js';
import { setupBridgeNetwork, teardownBridgeNetwork, removeStaleNetns, type ContainerNetwork } from './network.js';
import { startPortProxy, type RunningProxy } from './ports.js';
import { JsonLogWriter } from './logs.js';
import { serveAttach, type AttachServer } from './attach.js';
import { createVolume, seedVolume } from './volumes.js';
import { resolveInRoot, checkWorkdir } from './rootfs-path.js';
import { destroyContainer } from './destroy.js';
import { effectiveCapabilities, parseSecurityOpts } from './capabilities.js';

export type RunnerIO =
  /** Foreground: attach to our terminal. `log` tees output into the container log (no tty). */
  | { mode: 'foreground'; log: boolean }
  /** Detached monitor: output goes to the log only; `ready` reports the start (or its failure). */
  | { mode: 'monitor'; ready(error?: Error): void; /** a foreground `run -it` attaches: hold its output */ holdOutput?: boolean };

/** Mounts the container's overlay rootfs unless it is mounted already (e.g. after a reboot). */
export async function ensureMounted(c: Container): Promise<string> {
  if (!(await isMountPoint(c.paths.merged))) await mountRootfs({ lowerDirs: c.record.LowerDirs, workDir: c.paths.dir, volatile: c.record.HostConfig.AutoRemove });
  return c.paths.merged;
}

async function ociMounts(c: Container, rootfs: string): Promise<OciMount[]> {
  const out: OciMount[] = [];
  for (const m of c.record.HostConfig.Mounts) {
    if (m.Type === 'tmpfs') {
      const opts = m.Options?.length ? m.Options : [];
      out.push({ destination: m.Destination, type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', ...(opts.some((o) => o.startsWith('mode=')) ? [] : ['mode=1777']), ...opts] });
      continue;
    }
    let source = m.Source;
    if (m.Type === 'volume') {
      if (!m.Source) {
        // Anonymous volume: named by a random id at first start, remembered in the record.
        const { volume } = await createVolume(undefined, { anonymous: true });
        m.Source = volume.Name;
        const { writeJsonAtomic } = await import('../util/fs.js');
        await writeJsonAtomic(c.paths.config, c.record);
      }
      const { volume, created } = await createVolume(m.Source);
      source = volume.Mountpoint;
      if (created || m.Anonymous) await seedVolume(source, await resolveInRoot(rootfs, m.Destination));
    }
    const propagation = m.Options?.find((o) => /shared|slave|private/.test(o)) ?? 'rprivate';
    out.push({ destination: m.Destination, type: 'bind', source, options: ['rbind', propagation, ...(m.RW ? [] : ['ro'])] });
  }
  return out;
}

/** The spec's security fields from the record (records without them get Docker's defaults). */
function securitySpec(h: Container['record']['HostConfig']): { privileged: boolean; capabilities: string[]; seccomp: string; noNewPrivileges: boolean } {
  const sec = parseSecurityOpts(h.SecurityOpt);
  return {
    privileged: !!h.Privileged,
    capabilities: effectiveCapabilities({ capAdd: h.CapAdd, capDrop: h.CapDrop, privileged: h.Privileged }),
    seccomp: sec.seccomp,
    noNewPrivileges: sec.noNewPrivileges,
  };
}

function resources(c: Container): OciResources | undefined {
  const h = c.record.HostConfig;
  if (!h.Memory && !h.NanoCpus) return undefined;
  const r: OciResources = {};
  if (h.Memory) r.memory = { limit: h.Memory };
  if (h.NanoCpus) r.cpu = { period: 100000, quota: Math.round((h.NanoCpus / 1e9) * 100000) };
  return r;
}

async function waitForPid(pidFile: string, exited: () => boolean): Promise<number> {
  for (;;) {
    const text = await fsp.readFile(pidFile, 'utf8').catch(() => '');
    if (text.trim()) return Number(text.trim());
    if (exited()) return 0;
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Running containers on the same bridge (name, address, hosts file). */
async function bridgePeers(self: string, bridge: string): Promise<{ name: string; ip: string; hostsFile: string }[]> {
  const { listContainers } = await import('./containers.js');
  return (await listContainers()).filter((c) => c.record.Id !== self && c.state.Status === 'running' && c.state.Network?.bridge === bridge)
    .map((c) => ({ name: c.record.Name, ip: c.state.Network!.ipAddress, hostsFile: path.join(c.paths.dir, 'hostfiles/hosts') }));
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * What a runner that died without cleaning up (kill -9 of the monitor, a crash, a reboot) leaves:
 * its network (netns, veth, address; the state still names it) and runc's state for the ID.
 * Left in place, the next start fails with "Cannot create namespace file … File exists".
 */
async function clearStaleRun(c: Container): Promise<void> {
  if (c.state.Network) {
    await teardownBridgeNetwork(c.state.Network, c.record.Id);
    await updateState(c.paths, (s) => { delete s.Network; });
  }
  await removeStaleNetns(c.record.Id);
  await deleteContainer(c.record.Id, { force: true, runtime: c.record.HostConfig.Runtime });
}

/** Runs the container until it exits for good; returns its last exit code. */
export async function runContainer(initial: Container, io: RunnerIO): Promise<number> {
  let c = initial;
  await clearStaleRun(c);
  const rec = c.record;
  const id = rec.Id;
  let exitCode = 0;
  let readyReported = false;
  const reportReady = (e?: Error) => { if (!readyReported && io.mode === 'monitor') { readyReported = true; io.ready(e); } };
  for (let attempt = 0; ; attempt++) {
    let net: ContainerNetwork | undefined;
    let peers: { name: string; ip: string; hostsFile: string }[] = [];
    let proxy: RunningProxy | undefined;
    let logs: JsonLogWriter | undefined;
    let attach: AttachServer | undefined;
    let startError: Error | undefined;
    let result: RunResult | undefined;
    try {
      const rootfs = await ensureMounted(c);
      await checkWorkdir(rootfs, rec.Config.WorkingDir || '/');
      let network: NetworkSpec = rec.HostConfig.NetworkMode === 'bridge' ? 'none' : rec.HostConfig.NetworkMode;
      const extraHosts = [...rec.HostConfig.ExtraHosts];
      if (rec.HostConfig.NetworkMode === 'bridge') {
        net = await setupBridgeNetwork(id);
        network = { netnsPath: net.netnsPath };
        extraHosts.push(`${net.ipAddress}\t${rec.Config.Hostname} ${rec.Name}`);
        peers = await bridgePeers(id, net.bridge);
        for (const p of peers) extraHosts.push(`${p.ip}\t${p.name}`);
      }
      const spec = await createRuntimeSpec({
        rootfs,
        args: [rec.Path, ...rec.Args],
        env: rec.Config.Env ?? [],
        cwd: rec.Config.WorkingDir || '/',
        user: rec.Config.User ?? '',
        groupAdd: rec.HostConfig.GroupAdd,
        hostname: rec.HostConfig.NetworkMode === 'host' ? undefined : rec.Config.Hostname,
        hostnameEnv: true,
        network,
        mounts: await ociMounts(c, rootfs),
        readonlyRootfs: rec.HostConfig.ReadonlyRootfs,
        terminal: rec.Config.Tty,
        resources: resources(c),
        init: rec.HostConfig.Init,
        ...securitySpec(rec.HostConfig),
        hostFilesDir: path.join(c.paths.dir, 'hostfiles'),
        extraHosts,
        ...(rec.HostConfig.Dns.length ? { dns: rec.HostConfig.Dns } : {}),
      });
      // Containers on one bridge find each other by name: the newcomer's /etc/hosts lists the
      // running peers, and the peers' hosts files (bind mounts, so appended in place) learn it.
      if (net) for (const p of peers) await fsp.appendFile(p.hostsFile, `${net.ipAddress}\t${rec.Name}\n`).catch(() => {});
      if (net && rec.HostConfig.PortBindings.length) proxy = await startPortProxy(rec.HostConfig.PortBindings, net.ipAddress);

      // -t without a terminal of ours (the monitor, or CI): `script` provides the pty. Its stdin
      // is then a pipe we never end, so it does not pass an EOF to the container.
      const ptyWrapper = rec.Config.Tty && (io.mode === 'monitor' || !process.stdin.isTTY);
      // A real terminal is handed to runc as is (no log); otherwise output is teed into the log.
      const tee = io.mode === 'foreground' && io.log && (!rec.Config.Tty || ptyWrapper);
      const capture = io.mode === 'monitor' || tee;
      let stdio: StdioOptions;
      if (io.mode === 'foreground') {
        const stdin = rec.Config.OpenStdin ? 'inherit' : ptyWrapper ? 'pipe' : rec.Config.Tty ? 'inherit' : 'ignore';
        stdio = tee ? [stdin, 'pipe', 'pipe'] : [stdin, 'inherit', 'inherit'];
      }
      // The monitor keeps stdin open (never written) for -i, so shells do not see EOF and exit.
      else stdio = [rec.Config.OpenStdin || rec.Config.Tty ? 'pipe' : 'ignore', 'pipe', 'pipe'];

      const now = new Date().toISOString();
      const state: ContainerState = {
        ...c.state,
        Status: 'running', Pid: 0, RunnerPid: process.pid, RunnerStart: processStartTime(process.pid) ?? '',
        ExitCode: 0, Error: '', StartedAt: now, FinishedAt: ZERO_TIME, 
        Ports: proxy?.bindings ?? [], ...(net ? { Network: net } : { Network: undefined }), StopRequested: false, Paused: false,
      };
      await writeState(c.paths, state, !rec.HostConfig.AutoRemove);
      const h = await startRuncRun({ id, bundleDir: c.paths.bundle, spec, stdio, pidFile: c.paths.pidFile, runtime: rec.HostConfig.Runtime, architecture: rec.Architecture, ptyWrapper });
      if (capture) {
        logs = new JsonLogWriter(c.paths.log);
        h.child.stdout!.pipe(logs.stream('stdout', tee ? process.stdout : undefined));
        h.child.stderr!.pipe(logs.stream('stderr', tee ? process.stderr : undefined));
      }
      // `drydock attach` reaches a detached container's stdio through the monitor.
      if (io.mode === 'monitor') {
        attach = await serveAttach(c.paths.dir, { stdin: rec.Config.OpenStdin ? h.child.stdin : undefined, stdout: h.child.stdout!, stderr: h.child.stderr! },
          { holdForFirstClient: io.holdOutput && attempt === 0 });
      }
      let exited = false;
      h.child.on('exit', () => { exited = true; });
      if (io.mode === 'monitor') {
        const pid = await waitForPid(c.paths.pidFile, () => exited);
        if (pid) { await updateState(c.paths, (s) => { s.Pid = pid; }); reportReady(); }
      }
      try {
        result = await h.wait();
      } catch (e) {
        startError = e as Error;
      }
      if (logs) {
        await Promise.all([once(h.child.stdout!), once(h.child.stderr!)]);
        await logs.close();
      }
      await attach?.close(result?.exitCode);
      attach = undefined;
    } catch (e) {
      startError = e as Error;
    } finally {
      await attach?.close().catch(() => {});
      await proxy?.close().catch(() => {});
      await deleteContainer(id, { force: true, runtime: rec.HostConfig.Runtime });
      if (net) await teardownBridgeNetwork(net, id);
    }
    exitCode = startError ? ((startError as UserError).exitCode ?? 125) : result!.exitCode;
    if (rec.HostConfig.AutoRemove && io.mode === 'foreground') {
      // Removed right below; no need to record the exit.
      if (startError) { await finish(c); throw startError; }
      break;
    }
    const after = await updateState(c.paths, (s) => {
      s.Status = 'exited'; s.Pid = 0; s.ExitCode = exitCode; s.FinishedAt = new Date().toISOString();
      s.Error = startError ? startError.message : ''; s.Ports = []; delete s.Network; s.Paused = false;
    });
    if (startError) {
      reportReady(startError);
      // A start failure is final for the foreground (the user sees it); the monitor retries only by policy.
      if (io.mode === 'foreground') { await finish(c); throw startError; }
    }
    const policy = rec.HostConfig.RestartPolicy;
    // The monitor applies the restart policy; a command that cannot even start is not retried.
    const wantRestart = io.mode === 'monitor' && !after.StopRequested && !(startError && attempt === 0) && (
      (policy.Name === 'on-failure' && exitCode !== 0 && (policy.MaximumRetryCount === 0 || after.RestartCount < policy.MaximumRetryCount)) ||
      policy.Name === 'always' || policy.Name === 'unless-stopped');
    if (!wantRestart) break;
    // Docker's back-off: 100 ms doubling, capped; reset after 10 s of successful running.
    const delay = Math.min(100 * 2 ** Math.min(after.RestartCount, 10), 60_000);
    await updateState(c.paths, (s) => { s.Status = 'restarting'; s.RestartCount += 1; });
    await sleep(delay);
    const reloaded = await loadContainer(id);
    if (!reloaded || reloaded.state.StopRequested) break;
    c = reloaded;
  }
  // Like Docker, a stopped container's rootfs is not kept mounted; cp/commit/start remount it.
  if (!rec.HostConfig.AutoRemove) await unmountPath(c.paths.merged).catch(() => {});
  await finish(c);
  return exitCode;
}

function once(stream: NodeJS.ReadableStream): Promise<void> {
  return new Promise((resolve) => {
    if ((stream as unknown as { readableEnded?: boolean }).readableEnded || (stream as unknown as { destroyed?: boolean }).destroyed) return resolve();
    stream.once('end', () => resolve());
    stream.once('close', () => resolve());
  });
}

async function finish(c: Container): Promise<void> {
  if (c.record.HostConfig.AutoRemove) {
    await destroyContainer(c, { volumes: true });
  }
}
