// A private Docker Engine (Debian's docker.io, 20.10) as the oracle for test/compat/: its own
// --config-file, --data-root, --exec-root, --pidfile and unix socket under a temp dir, no
// iptables, no bridge, no IP forwarding. It never reads or writes /etc/docker/daemon.json (drydock
// reads that file for mirrors) nor the host's /var/run/docker.sock. A dockerd that cannot start
// fails the test (never a skip). Containers run with --network none; builds use --network host.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, promises as fsp, readFileSync } from 'node:fs';
import path from 'node:path';
import { requireRoot, requireTool, tempDir } from './env.js';

/** The client from the docker.io package: the machine's PATH may hold a newer one. */
export const DOCKER_CLIENT = '/usr/bin/docker';

export interface DockerResult { code: number; stdout: string; stderr: string }

export interface Dockerd {
  /** DOCKER_HOST for this daemon. */
  readonly host: string;
  readonly dir: string;
  /** Runs the docker client against this daemon. */
  docker(args: string[], opts?: { input?: string | Buffer; timeoutMs?: number }): Promise<DockerResult>;
  /** Stops dockerd by its pidfile and removes its state. */
  stop(): Promise<void>;
}

const running = new Set<number>();
let exitHook = false;

function onExitKill(pid: number): void {
  running.add(pid);
  if (exitHook) return;
  exitHook = true;
  // A test that dies still stops its daemon (dockerd stops the containerd it started).
  process.on('exit', () => { for (const p of running) { try { process.kill(p, 'SIGKILL'); } catch { /* gone */ } } });
}

export async function startDockerd(opts: { timeoutMs?: number } = {}): Promise<Dockerd> {
  requireRoot();
  const dockerd = requireTool('dockerd', 'apt-get install docker.io');
  if (!existsSync(DOCKER_CLIENT)) throw new Error(`${DOCKER_CLIENT} is missing (apt-get install docker.io; .ci/run installs it)`);
  const dir = tempDir('dd-');
  const configFile = path.join(dir, 'daemon.json');
  await fsp.writeFile(configFile, JSON.stringify({ iptables: false, ip6tables: false, 'ip-forward': false, 'ip-masq': false, bridge: 'none' }));
  const sock = path.join(dir, 'docker.sock');
  const pidfile = path.join(dir, 'docker.pid');
  const log = await fsp.open(path.join(dir, 'dockerd.log'), 'w');
  const child: ChildProcess = spawn(dockerd, [
    '--config-file', configFile,
    '--data-root', path.join(dir, 'data'),
    '--exec-root', path.join(dir, 'exec'),
    '--pidfile', pidfile,
    '-H', `unix://${sock}`,
    '--containerd-namespace', `drydock-compat-${process.pid}`,
    '--containerd-plugins-namespace', `drydock-compat-${process.pid}-plugins`,
  ], { stdio: ['ignore', log.fd, log.fd], detached: true });
  await log.close();
  child.unref();
  if (child.pid) onExitKill(child.pid);
  const host = `unix://${sock}`;
  const env = { ...process.env, DOCKER_HOST: host, DOCKER_CONFIG: path.join(dir, 'client'), DOCKER_BUILDKIT: '0', DOCKER_CLI_HINTS: 'false' };
  delete (env as Record<string, string | undefined>).DOCKER_CONTEXT;

  const docker = (args: string[], o: { input?: string | Buffer; timeoutMs?: number } = {}): Promise<DockerResult> => new Promise((resolve, reject) => {
    const c = spawn(DOCKER_CLIENT, args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    c.stdout.on('data', (d) => (stdout += d));
    c.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => c.kill('SIGKILL'), o.timeoutMs ?? 120_000);
    c.on('error', reject);
    c.on('close', (code) => { clearTimeout(timer); resolve({ code: code ?? 1, stdout, stderr }); });
    c.stdin.end(o.input ?? '');
  });

  const stop = async () => {
    const pid = existsSync(pidfile) ? Number(readFileSync(pidfile, 'utf8').trim()) : child.pid;
    if (pid) {
      try { process.kill(pid, 'SIGTERM'); } catch { /* already gone */ }
      const deadline = Date.now() + 30_000;
      while (Date.now() < deadline && alive(pid)) await sleep(200);
      if (alive(pid)) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
      running.delete(pid);
    }
    // dockerd unmounts its overlays on a clean stop; anything left is unmounted before removal.
    spawnSync('sh', ['-c', `grep -o " ${dir}[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l`]);
    await fsp.rm(dir, { recursive: true, force: true }).catch(() => {});
  };

  const deadline = Date.now() + (opts.timeoutMs ?? 60_000);
  for (;;) {
    if (child.exitCode !== null || (child.pid && !alive(child.pid))) {
      const text = await fsp.readFile(path.join(dir, 'dockerd.log'), 'utf8').catch(() => '');
      await stop();
      throw new Error(`dockerd exited during start-up:\n${text.split('\n').slice(-15).join('\n')}`);
    }
    if (existsSync(sock)) {
      const v = await docker(['version', '--format', '{{.Server.Version}}'], { timeoutMs: 10_000 });
      if (v.code === 0 && v.stdout.trim()) break;
    }
    if (Date.now() > deadline) {
      const text = await fsp.readFile(path.join(dir, 'dockerd.log'), 'utf8').catch(() => '');
      await stop();
      throw new Error(`dockerd did not answer on ${sock} within ${opts.timeoutMs ?? 60_000} ms:\n${text.split('\n').slice(-15).join('\n')}`);
    }
    await sleep(250);
  }
  return { host, dir, docker, stop };
}

function alive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch { return false; }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * A busybox-static root filesystem as GNU tar writes it (not drydock): /bin/busybox and applet
 * links, for `docker import` and `drydock import` of the very same bytes.
 */
export async function busyboxRootfsTar(): Promise<string> {
  const busybox = requireTool('busybox', 'apt-get install busybox-static');
  requireTool('tar');
  const dir = tempDir('bbroot-');
  const root = path.join(dir, 'rootfs');
  await fsp.mkdir(path.join(root, 'bin'), { recursive: true });
  await fsp.mkdir(path.join(root, 'etc'));
  await fsp.copyFile(busybox, path.join(root, 'bin', 'busybox'));
  await fsp.chmod(path.join(root, 'bin', 'busybox'), 0o755);
  for (const applet of ['sh', 'id', 'env', 'hostname', 'echo', 'true', 'false', 'sleep', 'cat', 'ls', 'ps', 'top']) {
    await fsp.symlink('busybox', path.join(root, 'bin', applet));
  }
  await fsp.writeFile(path.join(root, 'etc', 'passwd'), 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n');
  await fsp.writeFile(path.join(root, 'etc', 'group'), 'root:x:0:\nnogroup:x:65534:\n');
  const tarFile = path.join(dir, 'rootfs.tar');
  const r = spawnSync('tar', ['--numeric-owner', '--owner=0', '--group=0', '--mtime=@1700000000', '--sort=name', '-C', root, '-cf', tarFile, '.']);
  if (r.status !== 0) throw new Error(`tar failed: ${r.stderr}`);
  return tarFile;
}
