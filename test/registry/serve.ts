// `drydock serve` as a child process, as an operator runs it: waits for "listening on URL" on
// stderr and keeps stdout (the access log) and stderr (warnings) for the test to read.
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { MIN_CHUNK_SIZE } from '../../src/registry/storage/s3.js';
import { CLI_MAIN, PROJECT_ROOT } from '../helpers/env.js';

/** Writes the config.yml of a `drydock serve` on an S3 bucket (delete on, smallest chunks), as an operator would. */
export function writeS3ServeConfig(file: string, s3: { endpoint: string; bucket: string }, rootdirectory: string): void {
  writeFileSync(file, `version: 0.1
storage:
  s3:
    regionendpoint: ${s3.endpoint}
    bucket: ${s3.bucket}
    rootdirectory: ${rootdirectory}
    chunksize: ${MIN_CHUNK_SIZE}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:0
`);
}

export interface ServeProcess {
  url: string;
  process: ChildProcess;
  stdout(): string;
  stderr(): string;
  stop(): Promise<number | null>;
}

export async function startServe(args: string[], env: NodeJS.ProcessEnv = {}): Promise<ServeProcess> {
  const fromSource = CLI_MAIN.endsWith('.ts');
  const proc = spawn(process.execPath, [...(fromSource ? ['--import', 'tsx'] : []), CLI_MAIN, 'serve', ...args], {
    cwd: PROJECT_ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  proc.stdout!.on('data', (d) => (out += d));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => { proc.kill('SIGKILL'); reject(new Error(`drydock serve did not start: ${err}`)); }, 30_000);
    proc.stderr!.on('data', (d) => {
      err += d;
      const m = /listening on (\S+)/.exec(err);
      if (m) { clearTimeout(timer); resolve(m[1]!); }
    });
    proc.on('exit', (c) => { clearTimeout(timer); reject(new Error(`drydock serve exited ${c}: ${err}`)); });
  });
  return {
    url,
    process: proc,
    stdout: () => out,
    stderr: () => err,
    stop: () => new Promise((resolve) => {
      if (proc.exitCode !== null) { resolve(proc.exitCode); return; }
      proc.once('exit', (c) => resolve(c));
      proc.kill('SIGTERM');
    }),
  };
}
