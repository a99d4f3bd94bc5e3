// `drydock os status | upgrade | switch | rollback | confirm`: run inside a machine booted from a
// disk made with `drydock disk --updates-from`, on its data partition (--root, default
// /run/drydock/os). Thin: flags and output here, the work in src/os (imported lazily).
import { Command } from 'commander';
import { formatSize, printJson } from '../output.js';
import { UserError } from '../../util/errors.js';
import type { OsStatus, StageEvent, UpgradeResult } from '../../os/index.js';

const ROOT_HELP = 'data partition of the machine (default /run/drydock/os)';

interface OsFlags { root?: string; json?: boolean; apply?: boolean; tries?: string; deadline?: string; quiet?: boolean }

async function rootOf(flags: OsFlags): Promise<string> {
  const { DEFAULT_OS_ROOT } = await import('../../os/index.js');
  return flags.root ?? DEFAULT_OS_ROOT;
}

function positiveInt(v: string | undefined, flag: string): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v) || Number(v) < 1) throw new UserError(`${flag} must be a positive whole number, got "${v}"`);
  return Number(v);
}

function addStageOptions(cmd: Command): Command {
  return cmd
    .option('--root <dir>', ROOT_HELP)
    .option('--apply', 'reboot into the new deployment when one was staged')
    .option('--tries <n>', 'boots the new deployment gets to reach "service started" before it is abandoned (default: the disk\'s --boot-tries, else 3)')
    .option('--deadline <seconds>', 'seconds each of those boots has to get there (default: the disk\'s --boot-deadline, else 300)')
    .option('-q, --quiet', 'print only the result line');
}

const short = (digest: string) => digest.replace(/^sha256:/, '').slice(0, 12);

/** docker pull's lines: "<id>: Already exists", "<id>: Pull complete". */
function progressPrinter(quiet: boolean | undefined): (e: StageEvent) => void {
  return (e) => {
    if (quiet) return;
    if (e.type === 'kernel') {
      const say: Record<string, string> = {
        staging: 'staging its kernel, initramfs and modules', done: 'kernel staged', exists: 'kernel already staged',
        disk: 'the kernel the disk boots', ignored: `ignored: ${'reason' in e ? e.reason : ''}`,
      };
      if (e.status !== 'none') process.stderr.write(`kernel ${e.version}: ${say[e.status]}\n`);
      return;
    }
    if (e.type !== 'layer' || e.status === 'fetching') return;
    process.stderr.write(`${short(e.digest)}: ${e.status === 'exists' ? 'Already exists' : `Pull complete (${formatSize(e.size)})`}\n`);
  };
}

async function reboot(): Promise<void> {
  const { spawnSync } = await import('node:child_process');
  process.stdout.write('Rebooting…\n');
  const r = spawnSync('reboot', [], { stdio: 'inherit' });
  if (r.error || r.status !== 0) throw new UserError(`--apply: reboot failed (${r.error?.message ?? `exit ${r.status}`}); the deployment is staged for the next boot`);
}

async function stage(flags: OsFlags, ref?: string): Promise<void> {
  const os = await import('../../os/index.js');
  const root = await rootOf(flags);
  if (!flags.quiet) {
    const state = await new os.OsLayout(root).readState();
    process.stderr.write(`Pulling ${ref ?? state.ref}\n`);
  }
  const r: UpgradeResult = await os.upgrade(root, {
    ref, tries: positiveInt(flags.tries, '--tries'), deadlineSeconds: positiveInt(flags.deadline, '--deadline'), onEvent: progressPrinter(flags.quiet),
  });
  if (r.status === 'no-update') {
    process.stdout.write(`no update: ${r.state.ref} is still ${r.deployment.manifestDigest} (deployment ${r.deployment.id})\n`);
    return;
  }
  if (!flags.quiet) process.stderr.write(`Digest: ${r.deployment.manifestDigest}\n`);
  const rec = r.record;
  process.stdout.write(`Staged deployment ${r.deployment.id} (${r.state.ref}): fetched ${rec.layersFetched} layer${rec.layersFetched === 1 ? '' : 's'} (${formatSize(rec.bytes)}), reused ${rec.layersReused}; it boots next${flags.apply ? '' : ' (reboot to apply)'}\n`);
  if (flags.apply) await reboot();
}

function line(label: string, d: OsStatus['deployments'][number] | undefined, extra = ''): string {
  if (!d) return `  ${label.padEnd(9)} none`;
  const kernel = d.kernel ? `  kernel ${d.kernel.version ?? d.kernel.vmlinuz}` : '';
  return `  ${label.padEnd(9)} ${d.id}  ${d.ref}@${d.manifestDigest}  ${d.created.slice(0, 19).replace('T', ' ')}${kernel}${extra}`;
}

function printStatus(s: OsStatus): void {
  const byId = (id: string | null | undefined) => s.deployments.find((d) => d.id === id);
  const out = [`Tracking: ${s.ref}`, `Data: ${s.root}`, 'Deployments:'];
  out.push(line('booted', byId(s.booted) ?? undefined, s.booted ? '' : ' (not recorded: no boot from this data partition yet)'));
  if (s.staged) out.push(line('staged', s.staged, `  (boots next; ${s.staged.triesLeft} tr${s.staged.triesLeft === 1 ? 'y' : 'ies'} left, ${s.staged.deadlineSeconds}s to reach service started)`));
  out.push(line('default', byId(s.default), s.staged ? '' : '  (boots next)'));
  out.push(line('rollback', byId(s.rollback) ?? undefined));
  for (const a of s.abandoned) out.push(`Abandoned: ${a.id} at ${a.at}: ${a.reason}`);
  const u = s.lastUpgrade;
  if (u) out.push(`Last upgrade: ${u.at} ${u.deployment ? `staged ${u.deployment}` : 'no update'}; ${formatSize(u.bytes)} downloaded, ${u.layersFetched} layer${u.layersFetched === 1 ? '' : 's'} fetched, ${u.layersReused} reused`);
  process.stdout.write(out.join('\n') + '\n');
}

export function register(program: Command): void {
  const os = program.command('os')
    .description('Update, roll back and inspect a machine booted from a disk made with drydock disk --updates-from')
    .addHelpText('after', `
Examples:
  drydock os status
  drydock os upgrade --apply
  drydock os switch 10.0.2.2:5000/os/desktop:testing
  drydock os rollback --apply
  drydock os status --json --root /mnt/data
  drydock os bundle top/.drydock/drydock     # on the build host, for images without node`);
  os.enablePositionalOptions();

  os.command('status')
    .description('Show the booted, staged and rollback deployments, and what the last upgrade fetched')
    .option('--root <dir>', ROOT_HELP)
    .option('--json', 'print the status as JSON')
    .addHelpText('after', `
Examples:
  drydock os status
  drydock os status --json | jq .lastUpgrade.bytes`)
    .action(async (flags: OsFlags) => {
      const { status } = await import('../../os/index.js');
      const s = await status(await rootOf(flags));
      if (flags.json) printJson(s); else printStatus(s);
    });

  addStageOptions(os.command('upgrade')
    .description('Pull the tracked image; stage it for the next boot, fetching only the layers this machine lacks'))
    .addHelpText('after', `
Prints "no update" and exits 0 when the reference still names the running (or staged) image.

Examples:
  drydock os upgrade
  drydock os upgrade --apply
  drydock os upgrade --tries 2 --deadline 120`)
    .action(async (flags: OsFlags) => stage(flags));

  addStageOptions(os.command('switch')
    .description('Like upgrade, but from another image reference, which is tracked from then on')
    .argument('<ref>', 'image reference as this machine reaches it (e.g. 10.0.2.2:5000/os/desktop:testing)'))
    .addHelpText('after', `
Examples:
  drydock os switch 10.0.2.2:5000/os/desktop:testing
  drydock os switch registry.example.com/os/server:2 --apply`)
    .action(async (ref: string, flags: OsFlags) => stage(flags, ref));

  os.command('rollback')
    .description('Boot the previous deployment next (or drop a staged one that has not booted)')
    .option('--root <dir>', ROOT_HELP)
    .option('--apply', 'reboot now')
    .option('--tries <n>', 'boots the rollback deployment gets to reach "service started" (default: the disk\'s --boot-tries, else 3)')
    .option('--deadline <seconds>', 'seconds each of those boots has to get there (default: the disk\'s --boot-deadline, else 300)')
    .addHelpText('after', `
Examples:
  drydock os rollback
  drydock os rollback --apply`)
    .action(async (flags: OsFlags) => {
      const { rollback } = await import('../../os/index.js');
      const r = await rollback(await rootOf(flags), { tries: positiveInt(flags.tries, '--tries'), deadlineSeconds: positiveInt(flags.deadline, '--deadline') });
      const what = r.action === 'staged' ? `Staged the rollback deployment ${r.next}; it boots next`
        : r.action === 'reverted' ? `Rolled back from ${r.state.rollback} (kept as the rollback); the default ${r.next} boots next`
          : `Discarded the staged deployment; the default ${r.next} boots next`;
      process.stdout.write(`${what}${flags.apply ? '' : ' (reboot to apply)'}\n`);
      if (flags.apply) await reboot();
    });

  os.command('bundle')
    .description("On the build host: write the runtime `drydock os` needs on a machine whose image has no Node (node, mksquashfs or mkfs.erofs, zstd with their libraries, drydock)")
    .argument('<dir>', 'directory to write (put its contents at --installed-at on the machine, e.g. through --top-layer)')
    .option('--installed-at <path>', 'absolute path of the bundle on the machine', '/.drydock/drydock')
    .option('--layer-format <format>', 'the disk\'s layer files, squashfs or erofs: which packer the bundle carries', 'erofs')
    .addHelpText('after', `
Examples:
  drydock os bundle top/.drydock/drydock
  drydock disk app:1 -o app.img --updates-from 10.0.2.2:5000/os/app:stable --top-layer top`)
    .action(async (dir: string, flags: { installedAt: string; layerFormat: string }) => {
      const { bundleRuntime, LAYER_FORMATS } = await import('../../os/index.js');
      const layerFormat = LAYER_FORMATS.find((f) => f === flags.layerFormat);
      if (!layerFormat) throw new UserError(`--layer-format ${flags.layerFormat}: must be one of ${LAYER_FORMATS.join(', ')}`);
      const b = await bundleRuntime(dir, { installedAt: flags.installedAt, layerFormat });
      process.stdout.write(`Wrote ${b.dir} (${formatSize(b.bytes)}): run ${b.drydock} on the machine\n`);
    });

  os.command('confirm')
    .description('Mark this boot good (run once "service started"): the staged deployment becomes the default; delete what nothing needs')
    .option('--root <dir>', ROOT_HELP)
    .option('-q, --quiet', 'print nothing')
    .addHelpText('after', `
Examples:
  drydock os confirm`)
    .action(async (flags: OsFlags) => {
      const { confirm } = await import('../../os/index.js');
      const r = await confirm(await rootOf(flags));
      if (flags.quiet) return;
      if (r.promoted) process.stdout.write(`Deployment ${r.promoted} is now the default (rollback: ${r.state.rollback ?? 'none'})\n`);
      else process.stdout.write(`Nothing to confirm: this boot runs ${r.state.booted ?? r.state.default}${r.state.pending ? `; ${r.state.pending.id} stays staged` : ''}\n`);
      if (r.removedDeployments.length || r.removedLayers.length) {
        process.stdout.write(`Removed ${r.removedDeployments.length} deployment${r.removedDeployments.length === 1 ? '' : 's'} and ${r.removedLayers.length} layer${r.removedLayers.length === 1 ? '' : 's'}\n`);
      }
    });
}
