// Container commands Docker users type beyond run/ps/exec: wait, rename, top, pause and unpause
// (they read container records and ask runc, as `ps` and `inspect` do), attach and stats.
import type { Command } from 'commander';
import { UserError } from '../../util/errors.js';

async function runc(args: string[]): Promise<string> {
  const { execFile } = await import('node:child_process');
  const { runcStateRoot } = await import('../../runtime/runc.js');
  return new Promise((resolve, reject) => execFile('runc', ['--root', runcStateRoot(), ...args], (err, stdout, stderr) => {
    if (err) reject(new UserError((stderr || err.message).trim().replace(/^time="[^"]*" level=\w+ msg="?|"$/g, '').replace(/\\n$/, '')));
    else resolve(stdout);
  }));
}

async function running(ref: string) {
  const { findContainer } = await import('../../runtime/containers.js');
  const c = await findContainer(ref);
  if (c.state.Status !== 'running' && c.state.Status !== 'restarting') throw new UserError(`Container ${c.record.Id} is not running`);
  return c;
}

export function register(program: Command, only?: string): void {
  // Only the command being run (its word, from main.ts), or every command (help, unknown words).
  const wants = (...names: string[]) => only === undefined || names.includes(only);
  if (wants('stats')) program.command('stats')
    .description('Show running containers\' CPU, memory, network, block I/O and pids (from their cgroups)')
    .argument('[container...]', 'container names or IDs (default: all running)')
    .option('-a, --all', 'show all containers (default shows just running)')
    .option('--no-stream', 'print one sample and exit')
    .option('--no-trunc', 'do not truncate output')
    .option('--format <format>', 'Go template, "table ..." or "json"')
    .action(async (refs: string[], f: { all?: boolean; stream: boolean; trunc: boolean; format?: string }) => {
      const { findContainer, listContainers, loadContainer } = await import('../../runtime/containers.js');
      const { sampleStats, statsRow, bytesSize } = await import('../../runtime/stats.js');
      const { formatSize } = await import('../../util/format.js');
      const { goStruct } = await import('../../util/gotemplate/index.js');
      const { formatRows } = await import('../output.js');
      const list = refs.length ? await Promise.all(refs.map((r) => findContainer(r)))
        : (await listContainers()).filter((c) => f.all || c.state.Status === 'running');
      const pct = (n: number) => `${n.toFixed(2)}%`;
      for (;;) {
        const current = await Promise.all(list.map(async (c) => (await loadContainer(c.record.Id)) ?? c));
        const before = await Promise.all(current.map(sampleStats));
        // CPU % needs an interval; Docker's daemon samples once a second.
        await new Promise((r) => setTimeout(r, 1000));
        const after = await Promise.all(current.map(sampleStats));
        const rows = current.map((c, i) => {
          const { cpuPercent, memPercent, sample: s } = statsRow(before[i]!, after[i]!);
          const running = c.state.Status === 'running';
          return goStruct('*formatter.statsContext', {
            BlockIO: running ? `${formatSize(s.blkRead)} / ${formatSize(s.blkWrite)}` : '0B / 0B',
            CPUPerc: pct(cpuPercent),
            Container: refs.length ? refs[i]! : (f.trunc ? c.record.Id.slice(0, 12) : c.record.Id),
            ID: f.trunc ? c.record.Id.slice(0, 12) : c.record.Id,
            MemPerc: pct(memPercent),
            MemUsage: running ? `${bytesSize(s.memUsage)} / ${bytesSize(s.memLimit)}` : '0B / 0B',
            Name: c.record.Name,
            NetIO: `${formatSize(s.netRx)} / ${formatSize(s.netTx)}`,
            PIDs: String(s.pids),
          });
        });
        const out = await formatRows(f.format, rows, {
          defaultFormat: 'table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}',
          headers: { BlockIO: 'BLOCK I/O', CPUPerc: 'CPU %', Container: 'CONTAINER', ID: 'CONTAINER ID', MemPerc: 'MEM %', MemUsage: 'MEM USAGE / LIMIT', Name: 'NAME', NetIO: 'NET I/O', PIDs: 'PIDS' },
        }, 'failed to execute template');
        // Streaming redraws the screen like docker stats.
        process.stdout.write(f.stream ? `\x1b[2J\x1b[H${out}` : out);
        if (!f.stream) return;
      }
    });

  if (wants('attach')) program.command('attach')
    .description("Attach your terminal to a running detached container's input and output")
    .argument('<container>', 'container name or ID')
    .option('--no-stdin', 'do not attach STDIN')
    .option('--detach-keys <keys>', 'key sequence that detaches (terminal containers)', 'ctrl-p,ctrl-q')
    .option('--sig-proxy [bool]', 'forward received signals to the container (non-terminal containers)', (v) => v !== 'false', true)
    .addHelpText('after', `
Containers started with \`drydock run -d\` (their monitor serves the attach socket). Output from
before you attach is in \`drydock logs\`. With a terminal (-t), Ctrl-P Ctrl-Q detaches and leaves
the container running.`)
    .action(async (ref: string, f: { stdin: boolean; detachKeys: string; sigProxy: boolean }) => {
      const { findContainer } = await import('../../runtime/containers.js');
      const { attachContainer, parseDetachKeys } = await import('../../runtime/attach.js');
      parseDetachKeys(f.detachKeys);
      const c = await findContainer(ref);
      process.exitCode = await attachContainer(c, { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr, noStdin: !f.stdin, detachKeys: f.detachKeys, sigProxy: f.sigProxy });
    });

  if (wants('wait')) program.command('wait')
    .description('Block until one or more containers stop, then print their exit codes')
    .argument('<container...>', 'container names or IDs')
    .action(async (refs: string[]) => {
      const { findContainer, loadContainer } = await import('../../runtime/containers.js');
      for (const ref of refs) {
        const id = (await findContainer(ref)).record.Id;
        for (;;) {
          const c = await loadContainer(id);
          if (!c) throw new UserError(`No such container: ${ref}`);
          if (c.state.Status === 'exited') { process.stdout.write(`${c.state.ExitCode}\n`); break; }
          await new Promise((r) => setTimeout(r, 200));
        }
      }
    });

  if (wants('rename')) program.command('rename')
    .description('Rename a container')
    .argument('<container>', 'container name or ID')
    .argument('<new-name>', 'new name')
    .action(async (ref: string, newName: string) => {
      const { findContainer, nameInUse, validateName, withContainersLock } = await import('../../runtime/containers.js');
      const { writeJson } = await import('../../util/fs.js');
      await withContainersLock(async () => {
        const c = await findContainer(ref);
        const name = validateName(newName.replace(/^\//, ''));
        if (name === c.record.Name) throw new UserError(`Renaming a container with the same name as its current name`);
        const other = await nameInUse(name);
        if (other) throw new UserError(`Conflict. The container name "/${name}" is already in use by container "${other}". You have to remove (or rename) that container to be able to reuse that name.`);
        await writeJson(c.paths.config, { ...c.record, Name: name });
      });
    });

  if (wants('top')) program.command('top')
    .description('Show the processes of a running container (ps -ef columns, or your ps options)')
    .argument('<container>', 'container name or ID')
    .argument('[ps-options...]', 'options for ps (default -ef)')
    .action(async (ref: string, psOptions: string[]) => {
      const c = await running(ref);
      const pids = JSON.parse(await runc(['ps', '--format', 'json', c.record.Id])) as number[];
      if (pids.length === 0) return;
      const { execFile } = await import('node:child_process');
      const opts = psOptions.length ? psOptions : ['-f'];
      const out = await new Promise<string>((resolve, reject) => execFile('ps', [...opts, '-p', pids.join(',')], (err, stdout, stderr) => (err && !stdout ? reject(new UserError(stderr.trim() || err.message)) : resolve(stdout))));
      // Docker's columns are tab-aligned like its other tables.
      const { tabwrite } = await import('../output.js');
      const lines = out.trimEnd().split('\n');
      const header = lines[0]!.trim().split(/\s+/);
      const rows = lines.slice(1).map((l) => {
        const cells = l.trim().split(/\s+/);
        return [...cells.slice(0, header.length - 1), cells.slice(header.length - 1).join(' ')];
      });
      process.stdout.write(`${tabwrite([header, ...rows].map((r) => r.join('\t')).join('\n'))}\n`);
    });

  for (const [verb, desc] of [['pause', 'Suspend all processes of one or more containers (cgroup freezer)'], ['unpause', 'Resume the processes of paused containers']] as const) {
    if (wants(verb)) program.command(verb)
      .description(desc)
      .argument('<container...>', 'container names or IDs')
      .action(async (refs: string[]) => {
        for (const ref of refs) {
          const c = await running(ref);
          const state = JSON.parse(await runc(['state', c.record.Id])) as { status: string };
          if (verb === 'pause' && state.status === 'paused') throw new UserError(`Container ${c.record.Id} is already paused`);
          if (verb === 'unpause' && state.status !== 'paused') throw new UserError(`Container ${c.record.Id} is not paused`);
          // runc calls unpausing "resume".
          await runc([verb === 'pause' ? 'pause' : 'resume', c.record.Id]);
          const { updateState } = await import('../../runtime/containers.js');
          await updateState(c.paths, (s) => { s.Paused = verb === 'pause'; });
          process.stdout.write(`${ref}\n`);
        }
      });
  }
}
