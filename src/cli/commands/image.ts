// Image commands: import, image (ls, inspect, rm, history, prune), inspect, tag, rmi, save, load,
// export, gc, history (`images` is image-list.ts). Thin: flags and Docker-compatible output here;
// the work lives in src/store, src/layer and src/archive.
import { Command, Option } from 'commander';
import { collect, confirm, dockerTime, formatEach, formatRows, formatSize, printJson, timeAgo } from '../output.js';
import { UserError } from '../../util/errors.js';
import { displayName, imagesCommand } from './image-list.js';

async function openStore() {
  const { ContentStore } = await import('../../store/index.js');
  return ContentStore.open();
}


/**
 * Runs a command that streams an archive to stdout: a reader that stops early (`| head`)
 * ends it quietly with status 141, as SIGPIPE ends tar or docker save, not with an error.
 */
async function streamingToStdout(fn: () => Promise<unknown>): Promise<void> {
  try {
    await fn();
  } catch (e) {
    if ((e as NodeJS.ErrnoException)?.code === 'EPIPE') { process.exitCode = 141; return; }
    throw e;
  }
}

function parseEpoch(raw: string | undefined): number | undefined {
  const v = raw ?? process.env.SOURCE_DATE_EPOCH;
  if (v === undefined || v === '') return undefined;
  if (!/^\d+$/.test(v)) throw new UserError(`SOURCE_DATE_EPOCH must be a whole number of seconds since 1970, got "${v}"`);
  return Number(v);
}

/**
 * An image config's `config` as Docker's inspect shows it: every field of Docker's
 * container.Config that has no omitempty, in Docker's order (so `{{.Config.Entrypoint}}` is
 * <nil>, not a missing key), then whatever else the image carries.
 */
function dockerContainerConfig(c: Record<string, unknown>, { nilMap, nilSlice }: { nilMap: unknown; nilSlice: unknown }): Record<string, unknown> {
  const out: Record<string, unknown> = {
    Hostname: '', Domainname: '', User: c.User ?? '', AttachStdin: false, AttachStdout: false, AttachStderr: false,
    ...(c.ExposedPorts ? { ExposedPorts: c.ExposedPorts } : {}),
    Tty: false, OpenStdin: false, StdinOnce: false, Env: c.Env ?? nilSlice, Cmd: c.Cmd ?? nilSlice,
    ...(c.Healthcheck ? { Healthcheck: c.Healthcheck } : {}),
    ...(c.ArgsEscaped ? { ArgsEscaped: c.ArgsEscaped } : {}),
    Image: c.Image ?? '', Volumes: c.Volumes ?? nilMap, WorkingDir: c.WorkingDir ?? '', Entrypoint: c.Entrypoint ?? nilSlice,
    OnBuild: c.OnBuild ?? nilSlice, Labels: c.Labels ?? nilMap,
    ...(c.StopSignal ? { StopSignal: c.StopSignal } : {}),
    ...(c.Shell ? { Shell: c.Shell } : {}),
  };
  for (const [k, v] of Object.entries(c)) if (!(k in out)) out[k] = v;
  return out;
}


/** The container (short ID) that keeps `name`'s image in use when `name` is its last reference. */
async function containerUsing(store: import('../../store/index.js').ContentStore, name: string): Promise<{ container: string; image: string } | undefined> {
  const { resolveImage } = await import('../../store/index.js');
  const img = await resolveImage(store, name).catch(() => undefined);
  if (!img) return undefined;
  const top = img.index?.descriptor.digest ?? img.manifestDescriptor.digest;
  const names = (await store.listTags()).filter((t) => t.descriptor.digest === top);
  const { canonicalName } = await import('../../store/index.js');
  let byName: string | undefined;
  try { byName = canonicalName(name); } catch { /* an ID */ }
  if (byName && names.some((t) => t.name === byName) && names.length > 1) return undefined;
  const { listContainers } = await import('../../runtime/containers.js');
  const user = (await listContainers()).find((c) => c.record.ImageID === img.configDigest);
  return user ? { container: user.record.Id.slice(0, 12), image: img.configDigest.replace(/^sha256:/, '').slice(0, 12) } : undefined;
}

const HISTORY_HEADERS = { ID: 'IMAGE', CreatedSince: 'CREATED', CreatedAt: 'CREATED AT', CreatedBy: 'CREATED BY', Size: 'SIZE', Comment: 'COMMENT' };

/** `history`: the config's history, newest first, with each layer's unpacked size. */
function history(cmd: Command): Command {
  return cmd
    .description('Show the history of an image (newest first)')
    .argument('<image>', 'name, ID or digest')
    .option('-H, --human', 'print sizes and dates in human readable format (default true)', true)
    .option('--no-human', 'print sizes in bytes and dates as RFC 3339')
    .option('--no-trunc', "don't truncate output")
    .option('-q, --quiet', 'only show image IDs')
    .option('--format <format>', '"table", "json" or a Go template like "{{.CreatedBy}}"')
    .addHelpText('after', `
Examples:
  drydock history busybox
  drydock history --no-trunc --format '{{.CreatedBy}}' myorg/app:1.0`)
    .action(async (name: string, flags: { human: boolean; trunc: boolean; quiet?: boolean; format?: string }) => {
      const { resolveImage, layerContentSize } = await import('../../store/index.js');
      const { shortId } = await import('../../image/index.js');
      const { goStruct } = await import('../../util/gotemplate/index.js');
      const store = await openStore();
      const img = await resolveImage(store, name);
      const layers = [...img.manifest.layers];
      const entries = (img.config.history ?? []).map((h) => {
        const layer = h.empty_layer ? undefined : layers.shift();
        return { h, layer };
      });
      entries.reverse();
      const id = flags.trunc ? shortId(img.configDigest) : img.configDigest;
      if (flags.quiet) {
        for (let i = 0; i < entries.length; i++) process.stdout.write(`${i === 0 ? id : '<missing>'}\n`);
        return;
      }
      const rows = [];
      for (let i = 0; i < entries.length; i++) {
        const { h, layer } = entries[i]!;
        const size = layer ? await layerContentSize(store, layer.digest).catch(() => layer.size) : 0;
        const createdBy = h.created_by ?? '';
        // Fields in the order Docker's {{json .}} prints them (sorted).
        rows.push(goStruct('*formatter.historyContext', {
          Comment: h.comment ?? '',
          CreatedAt: flags.human ? dockerTime(h.created) : (h.created ?? ''),
          CreatedBy: flags.trunc && [...createdBy].length > 45 ? `${[...createdBy].slice(0, 44).join('')}…` : createdBy,
          CreatedSince: flags.human ? timeAgo(h.created) : (h.created ?? ''),
          ID: i === 0 ? id : '<missing>',
          Size: flags.human ? formatSize(size) : String(size),
        }));
      }
      process.stdout.write(await formatRows(flags.format, rows, {
        defaultFormat: 'table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}',
        headers: HISTORY_HEADERS,
      }));
    });
}

export function register(program: Command, only?: string): void {
  // Only the command being run (its word, from main.ts), or every command (help, unknown words).
  const wants = (...names: string[]) => only === undefined || names.includes(only);
  if (wants('import')) program
    .command('import')
    .description('Create an image from a root filesystem tarball (plain, gzip or zstd), a directory, or - for stdin')
    .argument('<rootfs>', 'tar, tar.gz, tar.zst, a directory, or - to read the tar from stdin')
    .argument('[repository]', 'REPOSITORY[:TAG] to tag the image with (like docker import)')
    .option('-t, --tag <name>', 'name[:tag] for the image (repeatable)', collect)
    .option('-c, --change <instruction>', 'apply a Dockerfile instruction to the config: CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR (repeatable)', collect)
    .option('-m, --message <text>', 'commit message recorded in the image history')
    .option('--platform <os/arch[/variant]>', 'platform recorded in the config (default: the host)')
    .addOption(new Option('--compression <alg>', 'layer compression').choices(['gzip', 'zstd', 'none']).default('gzip'))
    .option('--source-date-epoch <seconds>', 'timestamp for the config and (for directories) file mtimes (default $SOURCE_DATE_EPOCH)')
    .option('-q, --quiet', 'print only the image ID')
    .addOption(new Option('--format <format>', 'print the result as JSON').choices(['json']))
    .addHelpText('after', `
Examples:
  drydock import rootfs.tar.gz -t myorg/base:1.0
  drydock import rootfs.tar myorg/base:1.0 --change 'CMD ["/bin/sh"]' --change 'ENV LANG=C.UTF-8'
  tar -C ./rootfs -c . | drydock import - -t scratchy:latest -m "built by CI"`)
    .action(async (rootfs: string, repository: string | undefined, flags: { tag?: string[]; change?: string[]; message?: string; platform?: string; compression: 'gzip' | 'zstd' | 'none'; sourceDateEpoch?: string; quiet?: boolean; format?: string }) => {
      const { importRootfs } = await import('../../archive/index.js');
      const { parsePlatform } = await import('../../image/index.js');
      const store = await openStore();
      const tags = [...(repository ? [repository] : []), ...(flags.tag ?? [])];
      const result = await importRootfs(store, rootfs === '-' ? process.stdin : rootfs, {
        tag: tags,
        changes: flags.change ?? [],
        message: flags.message,
        platform: flags.platform ? parsePlatform(flags.platform) : undefined,
        compression: flags.compression,
        sourceDateEpoch: parseEpoch(flags.sourceDateEpoch),
      });
      if (flags.format === 'json') {
        printJson({ id: result.configDigest, manifestDigest: result.manifestDigest, names: result.names, layer: result.layer });
      } else if (flags.quiet) {
        process.stdout.write(`${result.configDigest}\n`);
      } else {
        process.stdout.write(`${result.configDigest}\n`);
        for (const n of result.names) process.stderr.write(`Tagged ${(await displayName(n)).familiar}\n`);
      }
    });


  const inspect = (cmd: Command) => cmd
    .description('Show low-level information on images as a JSON array, like docker image inspect')
    .argument('<image...>', 'image names, IDs or digests')
    .option('-f, --format <template>', 'Go-style template, e.g. "{{.Id}}" or "{{json .Config}}"')
    .addHelpText('after', `
Examples:
  drydock inspect busybox
  drydock inspect -f '{{.Config.Cmd}}' busybox
  drydock inspect --format '{{json .RootFS}}' myorg/base:1.0`)
    .action(async (names: string[], flags: { format?: string }) => {
      const { resolveImage } = await import('../../store/index.js');
      const { parseReference, familiarName } = await import('../../image/index.js');
      const store = await openStore();
      const out: unknown[] = [];
      for (const name of names) {
        let img;
        try {
          img = await resolveImage(store, name);
        } catch (e) {
          // Like `docker inspect`: a name that is no image may be a container.
          const { NotFoundError } = await import('../../util/errors.js');
          if (!(e instanceof NotFoundError)) throw e;
          const { inspectContainer } = await import('../../runtime/lifecycle.js');
          out.push(await inspectContainer(name).catch(() => { throw e; }));
          continue;
        }
        // Every name of the image, not only the one typed, as docker inspect shows RepoTags.
        const tags = (await store.listTags()).filter((t) => t.descriptor.digest === (img.index?.descriptor.digest ?? img.manifestDescriptor.digest)).map((t) => t.name);
        const repoTags = await Promise.all(tags.map(async (t) => (await displayName(t)).familiar));
        const topDigest = img.index?.descriptor.digest ?? img.manifestDescriptor.digest;
        const repoDigests = [...new Set(tags.map((t) => `${familiarName(parseReference(t))}@${topDigest}`))];
        const last = img.config.history?.filter((h) => h.comment).pop();
        out.push({
          Id: img.configDigest,
          Digest: topDigest,
          RepoTags: repoTags,
          RepoDigests: repoDigests,
          Parent: '',
          Comment: last?.comment ?? '',
          Created: img.config.created ?? '',
          DockerVersion: '',
          Author: img.config.author ?? '',
          Config: dockerContainerConfig((img.config.config ?? {}) as Record<string, unknown>, await import('../../util/gotemplate/index.js')),
          Architecture: img.config.architecture,
          ...(img.config.variant ? { Variant: img.config.variant } : {}),
          Os: img.config.os,
          Size: img.manifest.layers.reduce((n, l) => n + l.size, 0),
          RootFS: { Type: 'layers', Layers: img.config.rootfs?.diff_ids ?? [] },
          Manifest: { MediaType: img.manifestDescriptor.mediaType, Digest: img.manifestDescriptor.digest, Layers: img.manifest.layers },
          History: img.config.history ?? [],
        });
      }
      if (flags.format) {
        process.stdout.write(await formatEach(flags.format, out));
      } else {
        printJson(out);
      }
    });
  if (wants('inspect')) inspect(program.command('inspect'));

  if (wants('tag')) program
    .command('tag')
    .description('Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE')
    .argument('<source>', 'SOURCE_IMAGE[:TAG], ID or digest')
    .argument('<target>', 'TARGET_IMAGE[:TAG]')
    .addHelpText('after', `
Examples:
  drydock tag busybox localhost:5000/tools/busybox:1.36`)
    .action(async (source: string, target: string) => {
      const { resolveImage, canonicalName } = await import('../../store/index.js');
      const store = await openStore();
      const img = await resolveImage(store, source);
      const name = canonicalName(target);
      await store.setTag(name, img.index?.descriptor ?? img.manifestDescriptor);
    });

  const rmi = (cmd: Command) => cmd
    .description('Remove one or more images (untag; blobs nothing else uses are deleted)')
    .argument('<image...>', 'names, IDs or digests')
    .option('-f, --force', 'remove an image ID even when several names refer to it, or one a container uses')
    .addHelpText('after', `
Examples:
  drydock rmi busybox
  drydock rmi -f 3f57d9401f8d`)
    .action(async (names: string[], flags: { force?: boolean }) => {
      const { removeImage } = await import('../../store/index.js');
      const store = await openStore();
      let failed: unknown;
      for (const name of names) {
        try {
          const conflict = flags.force ? undefined : await containerUsing(store, name);
          if (conflict) {
            // Docker's words, so scripts that match on them keep working.
            process.stderr.write(`Error response from daemon: conflict: unable to remove repository reference ${JSON.stringify(name)} (must force) - container ${conflict.container} is using its referenced image ${conflict.image}\n`);
            failed = true;
            continue;
          }
          const r = await removeImage(store, name, { force: flags.force });
          for (const u of r.untagged) process.stdout.write(`Untagged: ${(await displayName(u)).familiar}\n`);
          for (const d of r.deleted) process.stdout.write(`Deleted: ${d}\n`);
        } catch (e) {
          // Docker removes what it can and reports each failure.
          failed = e;
          process.stderr.write(`Error: ${(e as Error).message}\n`);
        }
      }
      if (failed) process.exitCode = 1;
    });
  if (wants('rmi')) rmi(program.command('rmi'));

  if (wants('save')) program
    .command('save')
    .description('Save one or more images to a tar archive (docker-archive by default, like docker save)')
    .argument('<image...>', 'names, IDs or digests')
    .option('-o, --output <file>', 'write to a file (or a directory for oci-dir) instead of STDOUT')
    .addOption(new Option('--format <format>', 'archive format').choices(['docker-archive', 'oci-archive', 'oci-dir']).default('docker-archive'))
    .option('-q, --quiet', 'print nothing on success')
    .addHelpText('after', `
Examples:
  drydock save busybox -o busybox.tar
  drydock save --format oci-archive -o app.oci.tar myorg/app:1.0 myorg/app:1.1
  drydock save --format oci-dir -o ./layout busybox      # then: umoci unpack --image ./layout:latest
  drydock save busybox | gzip > busybox.tar.gz`)
    .action(async (names: string[], flags: { output?: string; format: 'docker-archive' | 'oci-archive' | 'oci-dir'; quiet?: boolean }) => {
      const { saveImages } = await import('../../archive/index.js');
      if (!flags.output && process.stdout.isTTY) throw new UserError('cowardly refusing to write a tar archive to a terminal: use -o FILE or redirect');
      const store = await openStore();
      await streamingToStdout(() => saveImages(store, names, flags.output ?? process.stdout, { format: flags.format }));
    });

  if (wants('load')) program
    .command('load')
    .description('Load images from a docker-archive or oci-archive (plain, gzip or zstd; format detected)')
    .option('-i, --input <file>', 'read from a file instead of STDIN')
    .option('-q, --quiet', 'suppress the load output')
    .addHelpText('after', `
Examples:
  drydock load -i busybox.tar
  podman save --format oci-archive alpine | drydock load
  drydock load < images.tar.gz`)
    .action(async (flags: { input?: string; quiet?: boolean }) => {
      const { loadArchive } = await import('../../archive/index.js');
      if (!flags.input && process.stdin.isTTY) throw new UserError('requested load from stdin, but stdin is a terminal: use -i FILE or pipe an archive');
      const store = await openStore();
      const r = await loadArchive(store, flags.input ?? process.stdin);
      if (flags.quiet) return;
      for (const img of r.images) {
        if (img.names.length === 0) process.stdout.write(`Loaded image: ${img.manifestDigest}\n`);
        for (const n of img.names) process.stdout.write(`Loaded image: ${(await displayName(n)).familiar}\n`);
      }
    });

  if (wants('export')) program
    .command('export')
    .description("Export an image's flattened filesystem as a tar archive (whiteouts applied)")
    .argument('<image>', 'name, ID or digest')
    .option('-o, --output <file>', 'write to a file instead of STDOUT')
    .addHelpText('after', `
Examples:
  drydock export busybox -o busybox-rootfs.tar
  drydock export myorg/base:1.0 | tar -t | head`)
    .action(async (name: string, flags: { output?: string }) => {
      const { resolveImage } = await import('../../store/index.js');
      const { exportImage } = await import('../../archive/index.js');
      const store = await openStore();
      const img = await resolveImage(store, name);
      if (!flags.output && process.stdout.isTTY) throw new UserError('cowardly refusing to write a tar archive to a terminal: use -o FILE or redirect');
      await streamingToStdout(() => exportImage(store, img, flags.output ?? process.stdout));
    });

  const image = wants('image') ? program
    .command('image')
    .description('Manage images: ls, inspect, rm, history, prune (see also: images, rmi, tag)') : undefined;
  if (image) imagesCommand(image.command('ls'));
  if (image) inspect(image.command('inspect'));
  if (image) rmi(image.command('rm'));
  if (image) history(image.command('history'));
  if (wants('history')) history(program.command('history'));
  image
    ?.command('prune')
    .description('Remove untagged images (<none>:<none>: builds without -t, pulls by digest, untagged loads)')
    .option('-f, --force', 'do not prompt for confirmation')
    .addHelpText('after', `
Examples:
  drydock image prune -f
  drydock image prune -f && drydock gc     # then sweep what nothing references any more`)
    .action(async (flags: { force?: boolean }) => {
      const { pruneUntaggedImages } = await import('../../store/index.js');
      if (!flags.force && !(await confirm('WARNING! This will remove all dangling images.'))) return;
      const store = await openStore();
      const r = await pruneUntaggedImages(store);
      if (r.images.length) process.stdout.write('Deleted Images:\n');
      for (const d of r.images) process.stdout.write(`untagged: ${d}\n`);
      for (const d of r.deleted) process.stdout.write(`deleted: ${d}\n`);
      process.stdout.write(`\nTotal reclaimed space: ${formatSize(r.bytes)}\n`);
    });

  if (wants('gc')) program
    .command('gc')
    .description('Delete blobs and unpacked layers that no tag, build cache entry or container references')
    .option('--dry-run', 'only list what would be deleted')
    .option('--grace <seconds>', 'keep unreferenced blobs younger than this (protects pulls and builds in progress)', '600')
    .option('-q, --quiet', 'print only the summary')
    .addHelpText('after', `
Examples:
  drydock gc --dry-run
  drydock gc --grace 0`)
    .action(async (flags: { dryRun?: boolean; grace: string; quiet?: boolean }) => {
      const { gcStore } = await import('../../store/index.js');
      if (!/^\d+$/.test(flags.grace)) throw new UserError(`--grace must be a whole number of seconds, got "${flags.grace}"`);
      const store = await openStore();
      const opts = { dryRun: flags.dryRun, graceMs: Number(flags.grace) * 1000 };
      // First the build steps of killed drydock processes: their mounts hold layers in use.
      const { sweepOrphans, scratchRoot } = await import('../../runtime/orphans.js');
      const orphans = flags.dryRun ? undefined : await sweepOrphans(scratchRoot(store.root));
      const r = await gcStore(store, opts);
      // Unpacked layers second: the sweep above decides which images still exist.
      const { gcLayerCache } = await import('../../runtime/layers.js');
      const l = await gcLayerCache(store, opts);
      if (!flags.quiet) {
        for (const d of r.removed) process.stdout.write(`${flags.dryRun ? 'Would delete' : 'Deleted'}: ${d}\n`);
        for (const d of l.removed) process.stdout.write(`${flags.dryRun ? 'Would delete' : 'Deleted'} unpacked layer: ${d}\n`);
        for (const d of orphans?.dirs ?? []) process.stdout.write(`Removed the leftovers of a killed build step: ${d}\n`);
      }
      process.stdout.write(`${flags.dryRun ? 'Would reclaim' : 'Total reclaimed space'}: ${formatSize(r.bytes + l.bytes)} (${r.removed.length} blobs and ${l.removed.length} unpacked layers${flags.dryRun ? '' : ' removed'}, ${r.kept + l.kept} kept)\n`);
    });
}
