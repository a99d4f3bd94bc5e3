// `drydock mkimage busybox|debian|rootfs`: base images from scratch. Thin: flags and output
// here, the work in src/mkimage (imported lazily so `drydock --help` stays fast).
import { Command, Option } from 'commander';
import { collect, formatSize, printJson } from '../output.js';
import { UserError } from '../../util/errors.js';
import { familiarString, parseReference } from '../../image/reference.js';
import type { MkimageCommonOptions, MkimageResult } from '../../mkimage/index.js';

interface CommonFlags {
  tag?: string[];
  change?: string[];
  timezone?: string;
  sourceDateEpoch?: string;
  quiet?: boolean;
  format?: string;
}

function addCommonOptions(cmd: Command, defaultTag: string): Command {
  return cmd
    .option('-t, --tag <name>', `name and optionally a tag for the image (repeatable; default ${defaultTag})`, collect)
    .option('-c, --change <instruction>', 'apply a Dockerfile instruction to the config: CMD, ENTRYPOINT, ENV, LABEL, EXPOSE, USER, WORKDIR, VOLUME, STOPSIGNAL (repeatable)', collect)
    .option('--timezone <zone>', 'set /etc/localtime and /etc/timezone (IANA name, e.g. Europe/Berlin)')
    .option('--source-date-epoch <seconds>', 'timestamp for files, config and history, for reproducible images (default $SOURCE_DATE_EPOCH)')
    .option('-q, --quiet', 'print only the image ID')
    .addOption(new Option('--format <format>', 'print the result as JSON').choices(['json']));
}

function parseEpoch(flag: string | undefined): number | undefined {
  const raw = flag ?? process.env.SOURCE_DATE_EPOCH;
  if (raw === undefined || raw === '') return undefined;
  if (!/^\d+$/.test(raw)) throw new UserError(`SOURCE_DATE_EPOCH must be a whole number of seconds since 1970, got "${raw}"`);
  return Number(raw);
}

function commonOptions(flags: CommonFlags, defaultTag: string): MkimageCommonOptions {
  const progress = flags.quiet || flags.format === 'json' ? undefined : (line: string) => process.stderr.write(`${line}\n`);
  return {
    tags: flags.tag?.length ? flags.tag : [defaultTag],
    changes: flags.change ?? [],
    timezone: flags.timezone,
    sourceDateEpoch: parseEpoch(flags.sourceDateEpoch),
    onProgress: progress,
  };
}

function report(result: MkimageResult, flags: CommonFlags): void {
  if (flags.format === 'json') { printJson(result); return; }
  if (flags.quiet) { process.stdout.write(`${result.id}\n`); return; }
  const lines = [`${result.id}`];
  for (const t of result.tags) lines.push(`Tagged ${familiarString(parseReference(t))}`);
  const contents = result.packages
    ? `${result.packages.count} ${result.packages.manager} packages`
    : result.busybox ? `busybox ${result.busybox.version}, ${result.busybox.applets} applets` : 'no package database';
  lines.push(`Size: ${formatSize(result.size)} (${formatSize(result.compressedSize)} compressed), ${contents}`);
  process.stdout.write(lines.join('\n') + '\n');
}

export function register(program: Command): void {
  const mkimage = program
    .command('mkimage')
    .description('Create a base image from scratch: static busybox, debootstrap, or a prepared root filesystem')
    .addHelpText('after', `
Examples:
  drydock mkimage busybox -t busybox:latest
  drydock mkimage debian --suite bookworm --include ca-certificates,curl -t debian:bookworm
  drydock mkimage rootfs alpine-minirootfs-3.20.3-x86_64.tar.gz -t alpine:3.20 -c 'CMD ["/bin/sh"]'

Reproducible output: with SOURCE_DATE_EPOCH set (or --source-date-epoch), the same inputs give
the same image digest. Device nodes in a prepared rootfs are kept as they are (like docker
import); at run time the runtime's own /dev covers them.`);

  addCommonOptions(
    mkimage.command('busybox')
      .description("Minimal image from the host's static busybox (Debian's busybox-static): applet links, /etc/passwd and /etc/group, /tmp, CMD [\"sh\"]. No network needed.")
      .option('--busybox <path>', 'statically linked busybox binary to use', '/bin/busybox'),
    'busybox:latest',
  )
    .addHelpText('after', `
Examples:
  drydock mkimage busybox
  drydock mkimage busybox -t registry.example.com/base/busybox:1.36 --timezone Europe/Berlin
  SOURCE_DATE_EPOCH=0 drydock mkimage busybox -q      # same digest on every machine with the same busybox`)
    .action(async (flags: CommonFlags & { busybox: string }) => {
      const { mkimageBusybox } = await import('../../mkimage/index.js');
      report(await mkimageBusybox({ ...commonOptions(flags, 'busybox:latest'), busybox: flags.busybox }), flags);
    });

  addCommonOptions(
    mkimage.command('debian')
      .description('Debian image with debootstrap: caches, lists and logs removed, apt tuned for containers (downloads ~50 MB for minbase)')
      .option('--suite <suite>', 'Debian suite or codename', 'bookworm')
      .addOption(new Option('--variant <variant>', 'debootstrap variant ("standard" for debootstrap\'s default)').choices(['minbase', 'buildd', 'fakechroot', 'standard']).default('minbase'))
      .option('--include <packages>', 'extra packages, comma separated (repeatable)', collect)
      .option('--exclude <packages>', 'packages to leave out, comma separated (repeatable)', collect)
      .option('--components <list>', 'archive components, comma separated (default main)')
      .option('--mirror <url>', "Debian mirror (default: the host's apt mirror, else http://deb.debian.org/debian)")
      .option('--arch <arch>', 'Debian architecture (default: the host\'s)'),
    'debian:<suite>',
  )
    .addHelpText('after', `
Examples:
  drydock mkimage debian -t debian:bookworm
  drydock mkimage debian --suite trixie --include ca-certificates,curl -t mydebian:trixie
  drydock mkimage debian --mirror http://mirror.internal/debian --timezone UTC -c 'ENV LANG=C.UTF-8'

The temporary root filesystem lives under $DRYDOCK_ROOT/tmp and is removed on success, failure and Ctrl-C.`)
    .action(async (flags: CommonFlags & { suite: string; variant: string; include?: string[]; exclude?: string[]; components?: string; mirror?: string; arch?: string }) => {
      const { mkimageDebian } = await import('../../mkimage/index.js');
      report(await mkimageDebian({
        ...commonOptions(flags, `debian:${flags.suite}`),
        suite: flags.suite,
        variant: flags.variant,
        include: flags.include,
        exclude: flags.exclude,
        components: flags.components ? [flags.components] : undefined,
        mirror: flags.mirror,
        arch: flags.arch,
      }), flags);
    });

  addCommonOptions(
    mkimage.command('rootfs')
      .description('Image from a prepared root filesystem: a directory or a tarball (.tar, .tar.gz, .tar.zst, .tar.xz), e.g. an Alpine minirootfs')
      .argument('<source>', 'directory, tarball, or - for a tarball on stdin')
      .option('--platform <os/arch[/variant]>', "platform the rootfs is built for, e.g. linux/arm64 (default: the host's)"),
    '(required)',
  )
    .addHelpText('after', `
Examples:
  drydock mkimage rootfs ./alpine-minirootfs-3.20.3-x86_64.tar.gz -t alpine:3.20 -c 'CMD ["/bin/sh"]'
  drydock mkimage rootfs /srv/rootfs -t myapp:base -c 'ENV PATH=/usr/local/bin:/usr/bin:/bin'
  tar --numeric-owner -c -C "$target" . | drydock mkimage rootfs - -t centos:7
  drydock mkimage rootfs alpine-minirootfs-3.20.3-aarch64.tar.gz --platform linux/arm64/v8 -t alpine:3.20-arm64`)
    .action(async (source: string, flags: CommonFlags & { platform?: string }) => {
      if (!flags.tag?.length) throw new UserError('mkimage rootfs needs a name: -t NAME[:TAG]');
      const { mkimageRootfs } = await import('../../mkimage/index.js');
      const { parsePlatform } = await import('../../image/platform.js');
      report(await mkimageRootfs(source, { ...commonOptions(flags, ''), platform: flags.platform ? parsePlatform(flags.platform) : undefined }), flags);
    });
}
