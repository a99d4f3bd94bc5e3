// Podman as an interop peer: every test gets its own --root/--runroot (so it never touches the
// host's images or other tests'), and the sandbox's containers.conf (no ulimits, runc) is
// written when missing, as scripts/setup.sh does.
import { execFile } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { requireTool, tempDir } from './env.js';

const CONF = '/etc/containers/containers.conf';
const CONF_TEXT = '[containers]\ndefault_ulimits = []\n\n[engine]\nruntime = "runc"\n';

export async function ensurePodmanConf(): Promise<void> {
  const text = await fsp.readFile(CONF, 'utf8').catch(() => '');
  if (/default_ulimits\s*=\s*\[\]/.test(text) && /runtime\s*=\s*"runc"/.test(text)) return;
  await fsp.mkdir(path.dirname(CONF), { recursive: true });
  await fsp.writeFile(CONF, CONF_TEXT);
}

/** Global flags that give podman private storage under `dir` (and no systemd/journald needs). */
export function podmanStorageArgs(dir: string): string[] {
  return ['--root', path.join(dir, 'root'), '--runroot', path.join(dir, 'runroot'), '--storage-driver', 'overlay', '--cgroup-manager', 'cgroupfs', '--events-backend', 'none'];
}

export interface Podman {
  /** Runs podman with this instance's storage; rejects with stderr on a non-zero exit. */
  run(args: string[], opts?: { timeoutMs?: number }): Promise<{ stdout: string; stderr: string }>;
  /** Removes containers and storage (podman's overlay mounts included). */
  cleanup(): Promise<void>;
  /** The --root/--runroot/--storage-driver flags, so buildah can share this storage. */
  readonly storageArgs: string[];
}

export async function podman(prefix = 'drydock-podman-'): Promise<Podman> {
  requireTool('podman');
  requireTool('runc');
  await ensurePodmanConf();
  const dir = tempDir(prefix);
  const base = podmanStorageArgs(dir);
  const run = (args: string[], opts: { timeoutMs?: number } = {}) => new Promise<{ stdout: string; stderr: string }>((resolve, reject) => {
    execFile('podman', [...base, ...args], { timeout: opts.timeoutMs ?? 120_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`podman ${args.join(' ')} failed: ${stderr || err.message}`));
      else resolve({ stdout, stderr });
    });
  });
  return {
    run,
    storageArgs: base.slice(0, 6),
    cleanup: async () => {
      await run(['rm', '-a', '-f']).catch(() => undefined);
      // `system reset` unmounts podman's overlay layers before the dir is deleted.
      await run(['system', 'reset', '-f']).catch(() => undefined);
      await fsp.rm(dir, { recursive: true, force: true }).catch(() => undefined);
    },
  };
}
