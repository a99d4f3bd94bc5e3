// The detached container monitor (like conmon): started by `drydock run -d`, in its own session,
// it outlives the CLI, runs `runc run`, writes the log and the exit code, serves published ports
// and applies the restart policy. It reports "started" or the start error on fd 3.
import { createWriteStream } from 'node:fs';
import { loadContainer } from './containers.js';
import { runContainer } from './runner.js';

async function main(): Promise<void> {
  const [id, flag] = process.argv.slice(2);
  let ready = createWriteStream('', { fd: 3 }) as ReturnType<typeof createWriteStream> | undefined;
  ready!.on('error', () => { ready = undefined; });
  const report = (msg: object) => { if (ready) { ready.end(JSON.stringify(msg) + '\n'); ready = undefined; } };
  process.on('SIGPIPE', () => {});
  const c = id ? await loadContainer(id) : undefined;
  if (!c) { report({ error: `no such container: ${id}`, exitCode: 125 }); process.exitCode = 125; return; }
  const code = await runContainer(c, {
    mode: 'monitor',
    holdOutput: flag === '--attach',
    ready: (e) => report(e ? { error: e.message, exitCode: (e as { exitCode?: number }).exitCode ?? 125 } : { ok: true }),
  });
  report({ ok: true });
  process.exitCode = code;
}

main().catch((e) => {
  process.stderr.write(`drydock monitor: ${(e as Error).stack ?? e}\n`);
  process.exitCode = 125;
});
