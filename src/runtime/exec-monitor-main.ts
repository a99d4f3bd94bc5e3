// The detached side of a terminal `exec -it`: started by the CLI in its own session, it runs
// `runc exec` under util-linux `script` (the pseudo-terminal) and serves the session's stdio on a
// socket in the container's directory, so the CLI's detach keys leave the process running, as
// they do under Docker's daemon. Argv: container dir, socket name, then the runc exec command.
// It reports "ready" (or the start error) on fd 3, like the container monitor.
import { spawn } from 'node:child_process';
import { createWriteStream, promises as fsp } from 'node:fs';
import os from 'node:os';
import { serveAttach } from './attach.js';
import { shellQuote } from './runc.js';

async function main(): Promise<void> {
  const [dir, socket, processFile, ...runcExec] = process.argv.slice(2);
  const ready = createWriteStream('', { fd: 3 });
  ready.on('error', () => {});
  process.on('SIGPIPE', () => {});
  const child = spawn('script', ['-q', '-f', '-e', '-c', runcExec.map(shellQuote).join(' '), '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] });
  const server = await serveAttach(dir!, { stdin: child.stdin, stdout: child.stdout, stderr: child.stderr }, { socket, holdForFirstClient: true });
  ready.end(`${JSON.stringify({ ok: true })}\n`);
  const code = await new Promise<number>((resolve) => {
    child.on('error', () => resolve(126));
    child.on('close', (c, s) => resolve(c ?? 128 + (s ? os.constants.signals[s] : 0)));
  });
  await server.close(code);
  await fsp.rm(processFile!, { force: true });
}

main().catch((e) => {
  process.stderr.write(`drydock exec monitor: ${(e as Error).stack ?? e}\n`);
  process.exitCode = 125;
});
