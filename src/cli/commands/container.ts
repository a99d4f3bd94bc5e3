// Container commands: run, create, start, ps, logs, stop, kill, rm, exec, inspect, commit, cp,
// port, volume. Docker-compatible flags and output; the work lives in src/runtime.
import { Command, Option } from 'commander';
import { collect, confirm, printJson, table } from '../output.js';
import { UserError } from '../../util/errors.js';
import { writeStdout } from '../stdout.js';

const rt = () => import('../../runtime/lifecycle.js');
const containers = () => import('../../runtime/containers.js');

interface RunFlags {
  detach?: boolean; detachKeys?: string; rm?: boolean; interactive?: boolean; tty?: boolean; name?: string; env?: string[]; envFile?: string[];
  user?: string; workdir?: string; entrypoint?: string; volume?: string[]; tmpfs?: string[]; publish?: string[]; publishAll?: boolean;
  network?: string; net?: string; hostname?: string; readOnly?: boolean; memory?: string; cpus?: string; restart?: string; init?: boolean;
  runtime?: string; groupAdd?: string[]; addHost?: string[]; dns?: string[]; label?: string[]; stopSignal?: string; quiet?: boolean;
  pull: 'missing' | 'always' | 'never'; platform?: string;
  privileged?: boolean; capAdd?: string[]; capDrop?: string[]; securityOpt?: string[];
}

function addRunOptions(cmd: Command): Command {
  return cmd
    .option('-d, --detach', 'run in the background and print the container ID')
    .option('--detach-keys <keys>', 'key sequence that detaches from a terminal session (default ctrl-p,ctrl-q)')
    .option('--rm', 'remove the container (and its anonymous volumes) when it exits')
    .option('-i, --interactive', 'keep STDIN open')
    .option('-t, --tty', 'allocate a pseudo-TTY')
    .option('--name <name>', 'assign a name to the container')
    .option('-e, --env <KEY=VALUE>', 'set an environment variable; KEY alone copies it from this shell (repeatable)', collect)
    .option('--env-file <file>', 'read KEY=VALUE lines from a file (repeatable)', collect)
    .option('-u, --user <user[:group]>', 'user name or uid (and group), looked up in the image')
    .option('-w, --workdir <dir>', 'working directory inside the container')
    .option('--entrypoint <cmd>', 'override the image ENTRYPOINT ("" clears it)')
    .option('-v, --volume <src:dst[:ro]>', 'bind mount a host path, or mount a named volume; /dst alone makes an anonymous volume (repeatable)', collect)
    .option('--tmpfs <dst[:opts]>', 'mount a tmpfs, e.g. /run:size=64m (repeatable)', collect)
    .option('-p, --publish <[ip:][hostPort:]ctrPort[/proto]>', 'publish a container port on the host (repeatable)', collect)
    .option('-P, --publish-all', 'publish every EXPOSEd port on a free host port')
    .addOption(new Option('--network <mode>', 'network: bridge (own namespace on drydock0, NAT), host, or none').choices(['bridge', 'host', 'none']).default('bridge'))
    .addOption(new Option('--net <mode>').hideHelp().choices(['bridge', 'host', 'none']))
    .option('-h, --hostname <name>', 'container host name (default: the short container ID)')
    .option('--read-only', 'mount the root filesystem read-only')
    .option('-m, --memory <bytes>', 'memory limit, e.g. 256m or 1g')
    .option('--cpus <n>', 'number of CPUs, e.g. 0.5')
    .option('--restart <policy>', 'restart policy: no, on-failure[:max-retries], always, unless-stopped', 'no')
    .option('--init', 'run tini as PID 1 to reap zombies and forward signals')
    .option('--runtime <path>', 'OCI runtime binary with runc\'s CLI (default runc)')
    .option('--group-add <group>', 'additional group for the process (repeatable)', collect)
    .option('--add-host <host:ip>', 'add a line to /etc/hosts (repeatable)', collect)
    .option('--dns <ip>', 'nameserver for /etc/resolv.conf (repeatable)', collect)
    .option('-l, --label <key=value>', 'set a label (repeatable)', collect)
    .option('--stop-signal <signal>', 'signal sent by `drydock stop` (default: the image STOPSIGNAL or SIGTERM)')
    .addOption(new Option('--pull <policy>', 'pull the image before running: missing (when not in the store), always, never').choices(['missing', 'always', 'never']).default('missing'))
    .option('--platform <os/arch[/variant]>', "platform to pull and run (default: the host's)")
    .option('--privileged', 'every capability, no seccomp filter, the host\'s devices, writable /sys')
    .option('--cap-add <cap>', 'add a Linux capability, e.g. NET_ADMIN, or ALL (repeatable)', collect)
    .option('--cap-drop <cap>', 'drop a Linux capability, or ALL (repeatable)', collect)
    .option('--security-opt <opt>', 'seccomp=unconfined, seccomp=PROFILE.json, no-new-privileges (repeatable)', collect)
    .passThroughOptions();
}

function createOptions(image: string, command: string[], f: RunFlags) {
  return {
    image, command, entrypoint: f.entrypoint, name: f.name, env: f.env, envFiles: f.envFile, user: f.user, workdir: f.workdir,
    volumes: f.volume, tmpfs: f.tmpfs, publish: f.publish, publishAll: f.publishAll, network: f.net ?? f.network, hostname: f.hostname,
    readOnly: f.readOnly, memory: f.memory, cpus: f.cpus, restart: f.restart, init: f.init, runtime: f.runtime, autoRemove: f.rm,
    tty: f.tty, interactive: f.interactive, groupAdd: f.groupAdd, addHost: f.addHost, dns: f.dns, labels: f.label, stopSignal: f.stopSignal,
    platform: f.platform,
    privileged: f.privileged, capAdd: f.capAdd, capDrop: f.capDrop, securityOpt: f.securityOpt,
  };
}

/**
 * `-i -t` needs a terminal on stdin to hand to the container. Docker's CLI refuses it with
 * exactly this line and exit status 1 (a pipe cannot carry terminal modes or Ctrl-C).
 */
function notATty(f: { interactive?: boolean; tty?: boolean; detach?: boolean }): boolean {
  if (!f.interactive || !f.tty || f.detach || process.stdin.isTTY) return false;
  process.stderr.write('the input device is not a TTY\n');
  process.exitCode = 1;
  return true;
}

/**
 * Docker's --pull for run/create: "missing" pulls an image the store does not have (after
 * "Unable to find image 'NAME' locally"), "always" pulls first, "never" fails like Docker.
 * Progress is `drydock pull`'s, on stderr: stdout belongs to the container (or the new ID).
 */
async function ensureImage(image: string, f: RunFlags): Promise<void> {
  const { ContentStore, resolveImage } = await import('../../store/index.js');
  const { NotFoundError } = await import('../../util/errors.js');
  const { parseReference, familiarString } = await import('../../image/reference.js');
  if (f.pull !== 'always') {
    try {
      await resolveImage(await ContentStore.open(), image);
      return;
    } catch (e) {
      if (!(e instanceof NotFoundError)) throw e;
    }
  }
  let ref;
  try { ref = parseReference(image); } catch { ref = undefined; }
  // An image ID (or a digest the store lacks) names nothing a registry could serve under that name.
  if (!ref || /^(sha256:)?[a-f0-9]{64}$/.test(image)) throw new UserError(`No such image: ${image}`, 125);
  if (f.pull === 'never') throw new UserError(`No such image: ${familiarString(ref)}`, 125);
  if (f.pull === 'missing') process.stderr.write(`Unable to find image '${familiarString(ref)}' locally\n`);
  const { pullWithProgress } = await import('./registry-client.js');
  await pullWithProgress(image, { progress: 'auto', platform: f.platform }, process.stderr);
}

const PS_HEADERS = {
  Command: 'COMMAND', CreatedAt: 'CREATED AT', ID: 'CONTAINER ID', Image: 'IMAGE', Labels: 'LABELS', LocalVolumes: 'LOCAL VOLUMES', Mounts: 'MOUNTS',
  Names: 'NAMES', Networks: 'NETWORKS', Ports: 'PORTS', RunningFor: 'CREATED', Size: 'SIZE', State: 'STATE', Status: 'STATUS',
};

function formatPorts(ports: { hostIp: string; hostPort: number; containerPort: number; protocol: string }[]): string {
  return ports.map((p) => `${p.hostIp}:${p.hostPort}->${p.containerPort}/${p.protocol}`).join(', ');
}

function truncateCommand(cmd: string, full?: boolean): string {
  const quoted = `"${cmd}"`;
  return full || quoted.length <= 22 ? quoted : `${quoted.slice(0, 20)}…"`;
}

export function register(program: Command, only?: string): void {
  // Only the command being run (its word, from main.ts), or every command (help, unknown words).
  const wants = (...names: string[]) => only === undefined || names.includes(only);
  // `run IMAGE sh -c ...`: everything after the image belongs to the container, so options are
  // positional (global options such as --root go before the subcommand).
  program.enablePositionalOptions();

  if (wants('run')) addRunOptions(program.command('run'))
    .description('Create and run a new container from an image (runc, no daemon)')
    .argument('<image>', 'image name, ID or digest in the local store')
    .argument('[command...]', 'command and arguments (default: the image ENTRYPOINT/CMD)')
    .addHelpText('after', `
The container's exit code becomes drydock's exit code. Detached containers (-d) are watched by a
small monitor process that keeps the logs, serves published ports (a userland TCP/UDP proxy) and
applies --restart.

Examples:
  drydock run --rm busybox echo hello
  drydock run -d --init --name web -p 127.0.0.1:8080:80 -v ./site:/var/www:ro busybox httpd -f -h /var/www
  drydock run -it --rm -v data:/data -w /data busybox sh
  drydock run --rm --network none --read-only --tmpfs /tmp busybox sh -c 'ls /sys/class/net'`)
    .action(async (image: string, command: string[], f: RunFlags) => {
      if (notATty(f)) return;
      if (f.detachKeys !== undefined) (await import('../../runtime/attach.js')).parseDetachKeys(f.detachKeys);
      const { runNew } = await rt();
      if (f.detach && f.rm && f.restart && f.restart !== 'no') throw new UserError('conflicting options: --restart and --rm');
      // Docker's convention: 125 when drydock itself fails (126/127 come from the runtime).
      const r = await ensureImage(image, f).then(() => runNew({ ...createOptions(image, command, f), detach: f.detach, detachKeys: f.detachKeys })).catch((e) => {
        if (e instanceof UserError && e.exitCode === 1) throw new UserError(e.message, 125);
        throw e;
      });
      if (f.detach) process.stdout.write(`${r.id}\n`);
      else process.exitCode = r.exitCode;
    });

  if (wants('create')) addRunOptions(program.command('create'))
    .description('Create a container without starting it (start it with `drydock start`)')
    .argument('<image>', 'image name, ID or digest')
    .argument('[command...]', 'command and arguments')
    .action(async (image: string, command: string[], f: RunFlags) => {
      const { createContainer } = await import('../../runtime/create.js');
      await ensureImage(image, f);
      const rec = await createContainer(createOptions(image, command, f));
      process.stdout.write(`${rec.Id}\n`);
    });

  if (wants('start')) program.command('start')
    .description('Start one or more stopped containers (in the background)')
    .argument('<container...>', 'container names or IDs')
    .action(async (refs: string[]) => {
      const { startExisting } = await rt();
      for (const ref of refs) { await startExisting(ref); process.stdout.write(`${ref}\n`); }
    });

  const psCmd = (cmd: Command) => cmd
    .description('List containers')
    .option('-a, --all', 'show all containers (default shows just running)')
    .option('-q, --quiet', 'only display container IDs')
    .option('--no-trunc', 'do not truncate output')
    .option('-n, --last <n>', 'show the n last created containers (includes all states)')
    .option('-f, --filter <key=value>', 'filter: name=, status=, id=, ancestor=, label= (repeatable)', collect)
    .option('--format <format>', '"json" for one JSON object per container')
    .addHelpText('after', `
Examples:
  drydock ps
  drydock ps -a --filter status=exited -q
  drydock ps --format json`)
    .action(async (f: { all?: boolean; quiet?: boolean; trunc: boolean; last?: string; filter?: string[]; format?: string }) => {
      const { listContainers, describeStatus } = await containers();
      const { timeAgo } = await import('../output.js');
      let list = await listContainers();
      if (!f.all && f.last === undefined) list = list.filter((c) => c.state.Status === 'running' || c.state.Status === 'restarting');
      for (const flt of f.filter ?? []) {
        const eq = flt.indexOf('=');
        if (eq < 0) throw new UserError(`bad filter "${flt}": use key=value`);
        const [k, v] = [flt.slice(0, eq), flt.slice(eq + 1)];
        list = list.filter((c) => {
          switch (k) {
            case 'name': return c.record.Name.includes(v);
            case 'id': return c.record.Id.startsWith(v);
            case 'status': return c.state.Status === v;
            case 'ancestor': return c.record.Image === v || c.record.ImageID.includes(v);
            case 'label': { const [lk, lv] = v.split('='); const labels = c.record.Config.Labels ?? {}; return lk! in labels && (lv === undefined || labels[lk!] === lv); }
            default: throw new UserError(`unsupported filter "${k}" (name, id, status, ancestor, label)`);
          }
        });
      }
      if (f.last !== undefined) list = list.slice(0, Number(f.last));
      if (f.quiet) { writeStdout(list.map((c) => `${f.trunc ? c.record.Id.slice(0, 12) : c.record.Id}\n`).join('')); return; }
      const { goStruct } = await import('../../util/gotemplate/index.js');
      const { dockerTime, formatRows } = await import('../output.js');
      // Docker's ContainerContext fields, in the order `{{json .}}` prints them (sorted keys).
      const rows = list.map((c) => goStruct('*formatter.ContainerContext', {
        Command: truncateCommand([c.record.Path, ...c.record.Args].join(' '), !f.trunc),
        CreatedAt: dockerTime(c.record.Created),
        ID: f.trunc ? c.record.Id.slice(0, 12) : c.record.Id,
        Image: c.record.Image,
        Labels: Object.entries(c.record.Config.Labels ?? {}).map(([k, v]) => `${k}=${v}`).join(','),
        LocalVolumes: '0',
        Mounts: '',
        Names: c.record.Name,
        Networks: c.record.HostConfig?.NetworkMode ?? '',
        Ports: formatPorts(c.state.Status === 'running' ? c.state.Ports : []),
        RunningFor: timeAgo(c.record.Created),
        Size: 'N/A',
        State: c.state.Status,
        Status: describeStatus(c.state),
      }));
      writeStdout(await formatRows(f.format, rows, {
        defaultFormat: 'table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}',
        headers: PS_HEADERS,
      }, 'failed to execute template'));
    });
  if (wants('ps')) psCmd(program.command('ps'));

  if (wants('logs')) program.command('logs')
    .description('Show what a container printed (stdout and stderr, from its json log)')
    .argument('<container>', 'container name or ID')
    .option('-f, --follow', 'keep printing output until the container stops')
    .option('-n, --tail <n>', 'number of lines to show from the end ("all" for everything)', 'all')
    .option('-t, --timestamps', 'show timestamps')
    .option('--since <time>', 'only lines since an RFC 3339 time or a duration like 10m')
    .addHelpText('after', `
Examples:
  drydock logs web
  drydock logs -f --tail 20 -t web`)
    .action(async (ref: string, f: { follow?: boolean; tail: string; timestamps?: boolean; since?: string }) => {
      const { findContainer, loadContainer } = await containers();
      const { readLogs } = await import('../../runtime/logs.js');
      const c = await findContainer(ref);
      if (c.record.Config.Tty && c.record.HostConfig.AutoRemove) throw new UserError('this container keeps no logs');
      let tail: number | undefined;
      if (f.tail !== 'all') { tail = Number(f.tail); if (!Number.isInteger(tail) || tail < 0) throw new UserError(`invalid --tail ${f.tail}`); }
      let since: number | undefined;
      if (f.since) {
        const d = f.since.match(/^(\d+)(s|m|h)$/);
        since = d ? Date.now() - Number(d[1]) * { s: 1000, m: 60_000, h: 3_600_000 }[d[2] as 's' | 'm' | 'h'] : Date.parse(f.since);
        if (Number.isNaN(since)) throw new UserError(`invalid --since ${f.since}`);
      }
      await readLogs(c.paths.log, {
        tail, timestamps: f.timestamps, since, follow: f.follow, stdout: process.stdout, stderr: process.stderr,
        stillRunning: async () => { const now = await loadContainer(c.record.Id); return !!now && (now.state.Status === 'running' || now.state.Status === 'restarting'); },
      });
    });

  if (wants('stop')) program.command('stop')
    .description('Stop running containers: the stop signal, then SIGKILL after the timeout')
    .argument('<container...>', 'container names or IDs')
    .option('-t, --time <seconds>', 'seconds to wait before killing', '10')
    .option('-s, --signal <signal>', 'signal to send (default: the container stop signal)')
    .action(async (refs: string[], f: { time: string; signal?: string }) => {
      const { stopContainer } = await rt();
      const t = Number(f.time);
      if (!Number.isFinite(t)) throw new UserError(`invalid --time ${f.time}`);
      await eachRef(refs, async (ref) => { await stopContainer(ref, t, f.signal); process.stdout.write(`${ref}\n`); });
    });

  if (wants('restart')) program.command('restart')
    .description('Stop, then start containers again')
    .argument('<container...>', 'container names or IDs')
    .option('-t, --time <seconds>', 'seconds to wait before killing', '10')
    .action(async (refs: string[], f: { time: string }) => {
      const { stopContainer, startExisting } = await rt();
      await eachRef(refs, async (ref) => { await stopContainer(ref, Number(f.time)); await startExisting(ref); process.stdout.write(`${ref}\n`); });
    });

  if (wants('kill')) program.command('kill')
    .description('Send a signal (default SIGKILL) to running containers')
    .argument('<container...>', 'container names or IDs')
    .option('-s, --signal <signal>', 'signal name or number', 'KILL')
    .action(async (refs: string[], f: { signal: string }) => {
      const { killCtr } = await rt();
      await eachRef(refs, async (ref) => { await killCtr(ref, f.signal); process.stdout.write(`${ref}\n`); });
    });

  if (wants('rm')) program.command('rm')
    .description('Remove containers (their writable layer, mounts and state)')
    .argument('<container...>', 'container names or IDs')
    .option('-f, --force', 'kill and remove a running container')
    .option('-v, --volumes', 'also remove the anonymous volumes of the container')
    .action(async (refs: string[], f: { force?: boolean; volumes?: boolean }) => {
      const { removeContainer } = await rt();
      await eachRef(refs, async (ref) => { await removeContainer(ref, f); process.stdout.write(`${ref}\n`); });
    });

  if (wants('exec')) program.command('exec')
    .description('Run a command in a running container')
    .argument('<container>', 'container name or ID')
    .argument('<command...>', 'command and arguments')
    .option('-i, --interactive', 'keep STDIN open')
    .option('-t, --tty', 'allocate a pseudo-TTY')
    .option('-e, --env <KEY=VALUE>', 'set an environment variable (repeatable)', collect)
    .option('-u, --user <user[:group]>', 'user name or uid (and group)')
    .option('-w, --workdir <dir>', 'working directory')
    .option('--detach-keys <keys>', 'key sequence that detaches from a terminal session (default ctrl-p,ctrl-q)')
    .passThroughOptions()
    .addHelpText('after', `
Examples:
  drydock exec web ls /var/www
  drydock exec -it -u www-data web sh`)
    .action(async (ref: string, command: string[], f: { interactive?: boolean; tty?: boolean; env?: string[]; user?: string; workdir?: string; detachKeys?: string }) => {
      if (notATty(f)) return;
      if (f.detachKeys !== undefined) (await import('../../runtime/attach.js')).parseDetachKeys(f.detachKeys);
      const { execIn } = await rt();
      process.exitCode = await execIn(ref, command, f);
    });

  const inspect = (cmd: Command) => cmd
    .description('Show low-level information on containers as a JSON array, like docker container inspect')
    .argument('<container...>', 'container names or IDs')
    .option('-f, --format <template>', 'Go-style template, e.g. "{{.State.Status}}" or "{{json .NetworkSettings}}"')
    .action(async (refs: string[], f: { format?: string }) => {
      const { inspectContainer } = await rt();
      const out = [];
      for (const ref of refs) out.push(await inspectContainer(ref));
      if (f.format) {
        const { formatEach } = await import('../output.js');
        process.stdout.write(await formatEach(f.format, out));
      } else printJson(out);
    });

  if (wants('commit')) program.command('commit')
    .description("Create a new image from a container's changes (its writable layer)")
    .argument('<container>', 'container name or ID')
    .argument('[repository]', 'REPOSITORY[:TAG] for the new image')
    .option('-m, --message <text>', 'commit message')
    .option('-a, --author <name>', 'author')
    .option('-c, --change <instruction>', 'apply a Dockerfile instruction (CMD, ENV, EXPOSE, ...) to the config (repeatable)', collect)
    .option('--no-pause', 'do not pause the container while committing')
    .option('-q, --quiet', 'suppress output except the image ID')
    .addHelpText('after', `
Examples:
  drydock run --name work busybox sh -c 'echo hi > /greeting'
  drydock commit -m "add greeting" work myorg/greeting:1`)
    .action(async (ref: string, repository: string | undefined, f: { message?: string; author?: string; change?: string[]; pause: boolean }) => {
      const { commitContainer } = await rt();
      const r = await commitContainer(ref, { tag: repository, message: f.message, author: f.author, changes: f.change, pause: f.pause });
      process.stdout.write(`${r.id}\n`);
    });

  if (wants('cp')) program.command('cp')
    .description('Copy files between a container and the host (CTR:PATH on one side; - for a tar stream)')
    .argument('<src>', 'CONTAINER:SRC_PATH, a host path, or - (tar from stdin)')
    .argument('<dst>', 'CONTAINER:DEST_PATH, a host path, or - (tar to stdout)')
    .addHelpText('after', `
Examples:
  drydock cp ./index.html web:/var/www/
  drydock cp web:/etc/passwd ./passwd
  drydock cp web:/var/log - | tar -t`)
    .action(async (src: string, dst: string) => {
      const { copy } = await rt();
      await copy(src, dst);
    });

  if (wants('port')) program.command('port')
    .description('List the published ports of a container')
    .argument('<container>', 'container name or ID')
    .action(async (ref: string) => {
      const { findContainer } = await containers();
      const c = await findContainer(ref);
      for (const p of c.state.Status === 'running' ? c.state.Ports : []) process.stdout.write(`${p.containerPort}/${p.protocol} -> ${p.hostIp}:${p.hostPort}\n`);
    });

  const container = wants('container') ? program.command('container').description('Manage containers') : undefined;
  if (container) inspect(container.command('inspect'));
  if (container) psCmd(container.command('ls'));
  container?.command('restore')
    .description('Start every container whose restart policy says it should run (always; unless-stopped unless stopped; on-failure after a failure): run at boot by drydock-restore.service')
    .addHelpText('after', `
A restart policy is applied by the container's monitor process, which a reboot (or kill -9)
ends. contrib/systemd/drydock-restore.service runs this command at boot.`)
    .action(async () => {
      const { restoreContainers } = await rt();
      const { started, failed } = await restoreContainers();
      for (const name of started) process.stdout.write(`${name}\n`);
      for (const f of failed) process.stderr.write(`Error: ${f.name}: ${f.error}\n`);
      if (failed.length) process.exitCode = 1;
    });

  if (wants('generate')) program.command('generate').description('Generate files for other tools (systemd units)')
    .command('systemd')
    .description('Print a systemd unit that starts the container at boot and stops it with the unit (like podman generate systemd)')
    .argument('<container>', 'container name or ID')
    .option('-t, --time <seconds>', 'stop timeout in seconds', '10')
    .addHelpText('after', `
Examples:
  drydock generate systemd registry > /etc/systemd/system/drydock-registry-ctr.service
  systemctl daemon-reload && systemctl enable --now drydock-registry-ctr.service`)
    .action(async (ref: string, f: { time: string }) => {
      const { findContainer } = await containers();
      const { containerUnit } = await import('../../runtime/systemd.js');
      const { defaultRoot } = await import('../../store/content-store.js');
      const path = await import('node:path');
      const t = Number(f.time);
      if (!Number.isInteger(t) || t < 0) throw new UserError(`invalid --time ${f.time}`);
      const c = await findContainer(ref);
      const env: Record<string, string> = { DRYDOCK_ROOT: defaultRoot() };
      for (const k of ['DRYDOCK_BRIDGE', 'DRYDOCK_SUBNET']) if (process.env[k]) env[k] = process.env[k]!;
      // The unit runs this very drydock (node and its entry script), whatever PATH holds at boot.
      process.stdout.write(containerUnit(c, { drydock: [process.execPath, path.resolve(process.argv[1]!)], env, stopTimeout: t }));
    });

  container?.command('prune')
    .description('Remove all stopped containers')
    .option('-f, --force', 'do not prompt for confirmation')
    .action(async (f: { force?: boolean }) => {
      if (!f.force && !(await confirm('WARNING! This will remove all stopped containers.'))) return;
      const { pruneContainers } = await import('./system.js');
      const removed = await pruneContainers();
      if (removed.length) process.stdout.write(`Deleted Containers:\n${removed.map((id) => `${id}\n`).join('')}\n`);
      process.stdout.write('Total reclaimed space: 0B\n');
    });

  const volume = wants('volume') ? program.command('volume').description('Manage named volumes ($DRYDOCK_ROOT/volumes/NAME/_data)') : undefined;
  volume?.command('create')
    .description('Create a volume')
    .argument('[name]', 'volume name (default: a random ID)')
    .option('-l, --label <key=value>', 'set a label (repeatable)', collect)
    .action(async (name: string | undefined, f: { label?: string[] }) => {
      const { createVolume } = await import('../../runtime/volumes.js');
      const labels = Object.fromEntries((f.label ?? []).map((l) => { const i = l.indexOf('='); return i < 0 ? [l, ''] : [l.slice(0, i), l.slice(i + 1)]; }));
      const { volume: v } = await createVolume(name, { labels });
      process.stdout.write(`${v.Name}\n`);
    });
  volume?.command('ls')
    .description('List volumes')
    .option('-q, --quiet', 'only names')
    .option('--format <format>', '"json" for one JSON object per volume')
    .action(async (f: { quiet?: boolean; format?: string }) => {
      const { listVolumes } = await import('../../runtime/volumes.js');
      const vols = await listVolumes();
      if (f.quiet) { for (const v of vols) process.stdout.write(`${v.Name}\n`); return; }
      if (f.format === 'json') { for (const v of vols) process.stdout.write(`${JSON.stringify(v)}\n`); return; }
      process.stdout.write(table(['DRIVER', 'VOLUME NAME'], vols.map((v) => [v.Driver, v.Name])));
    });
  volume?.command('inspect')
    .description('Show volume details as JSON')
    .argument('<name...>')
    .action(async (names: string[]) => {
      const { inspectVolume } = await import('../../runtime/volumes.js');
      const out = [];
      for (const n of names) { const v = await inspectVolume(n); if (!v) throw new UserError(`no such volume: ${n}`); out.push(v); }
      printJson(out);
    });
  volume?.command('rm')
    .description('Remove volumes (refused while a container uses them unless -f)')
    .argument('<name...>')
    .option('-f, --force', 'remove even if a container references it')
    .action(async (names: string[], f: { force?: boolean }) => {
      const { removeVolume } = await import('../../runtime/volumes.js');
      await eachRef(names, async (n) => { await removeVolume(n, f); process.stdout.write(`${n}\n`); });
    });
}

/** Applies `fn` to every ref, reporting each failure like Docker and failing at the end. */
async function eachRef(refs: string[], fn: (ref: string) => Promise<void>): Promise<void> {
  let failed = 0;
  let last: unknown;
  for (const ref of refs) {
    try { await fn(ref); } catch (e) { failed++; last = e; if (refs.length > 1) process.stderr.write(`Error: ${(e as Error).message}\n`); }
  }
  if (failed === 1 && refs.length === 1) throw last;
  if (failed) throw new UserError(`${failed} of ${refs.length} failed`);
}

