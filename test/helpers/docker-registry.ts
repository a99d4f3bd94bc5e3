// A real distribution 2.8 registry (Debian's docker-registry) on 127.0.0.1, for interop tests:
// temp storage, optional htpasswd (bcrypt) auth, ephemeral port. Fails when the binary is missing.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { writeFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { request } from 'undici';
import { freePort, requireTool, tempDir } from './env.js';

export { freePort };

export interface DistributionRegistry {
  /** "127.0.0.1:PORT" */
  host: string;
  url: string;
  dir: string;
  /** The registry process (benchmarks read its peak RSS). */
  process: ChildProcess;
  /** stdout + stderr so far (access log lines, warnings). */
  output(): string;
  stop(): Promise<void>;
}

/** A bcrypt htpasswd line, made by apache2-utils' htpasswd like an operator would. */
export function htpasswdLine(user: string, password: string): string {
  requireTool('htpasswd', 'apt-get install apache2-utils');
  const r = spawnSync('htpasswd', ['-Bbn', user, password], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`htpasswd failed: ${r.stderr}`);
  return r.stdout.trim();
}

export interface DistributionOptions {
  users?: Record<string, string>;
  /** storage.cache.blobdescriptor: inmemory, as production configs (and the benchmark) use. */
  blobDescriptorCache?: boolean;
  /** Extra environment (REGISTRY_* overrides over the generated config.yml). */
  env?: NodeJS.ProcessEnv;
  /** Keep the access log (combined format, on stdout), readable through output(). */
  accessLog?: boolean;
}

export async function startDistribution(opts: DistributionOptions = {}): Promise<DistributionRegistry> {
  const bin = requireTool('docker-registry', 'apt-get install docker-registry');
  const dir = tempDir('drydock-distribution-');
  const storage = path.join(dir, 'storage');
  mkdirSync(storage, { recursive: true });
  const port = await freePort();
  let auth = '';
  if (opts.users) {
    const file = path.join(dir, 'htpasswd');
    writeFileSync(file, Object.entries(opts.users).map(([u, p]) => htpasswdLine(u, p)).join('\n') + '\n');
    auth = `auth:\n  htpasswd:\n    realm: drydock-test\n    path: ${file}\n`;
  }
  const config = path.join(dir, 'config.yml');
  writeFileSync(config, `version: 0.1
log:
  level: error
  accesslog:
    disabled: ${opts.accessLog ? 'false' : 'true'}
storage:
${opts.blobDescriptorCache ? '  cache:\n    blobdescriptor: inmemory\n' : ''}  filesystem:
    rootdirectory: ${storage}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:${port}
  debug:
    addr: ""
${auth}`);
  const child: ChildProcess = spawn(bin, ['serve', config], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...opts.env } });
  let stderr = '';
  child.stderr!.on('data', (d) => { stderr += d; });
  child.stdout!.on('data', (d) => { stderr += d; });
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`docker-registry exited: ${stderr}`);
    try {
      const res = await request(`${url}/v2/`);
      await res.body.dump();
      break;
    } catch {
      if (Date.now() > deadline) { child.kill('SIGKILL'); throw new Error(`docker-registry did not start: ${stderr}`); }
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return {
    host: `127.0.0.1:${port}`,
    url,
    dir,
    process: child,
    output: () => stderr,
    stop: () => new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) { resolve(); return; }
      child.once('exit', () => resolve());
      child.kill('SIGTERM');
    }),
  };
}
