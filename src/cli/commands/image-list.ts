// `drydock images` (and `image ls`, which image.ts registers with the other `image` subcommands):
// a module of its own, so the bundle the quick listing starts (dist/cli/image-list.cjs) holds
// main.ts, commander, the store's reading side and the template engine, not import, save, load and
// export with their tar and layer code (bench/startup.ts).
import type { Command } from 'commander';
import { collect, dockerTime, formatRows, formatSize, timeAgo } from '../output.js';
import { writeStdout } from '../stdout.js';

/** "docker.io/library/busybox:latest" -> { repo: "busybox", tag: "latest" }, as Docker shows names. */
export async function displayName(full: string): Promise<{ repository: string; tag: string; familiar: string }> {
  if (full === '<none>:<none>') return { repository: '<none>', tag: '<none>', familiar: '<none>:<none>' };
  const { parseReference, familiarName } = await import('../../image/index.js');
  const ref = parseReference(full);
  const repository = familiarName(ref);
  return { repository, tag: ref.tag ?? '<none>', familiar: `${repository}:${ref.tag ?? '<none>'}` };
}

const IMAGE_HEADERS = {
  Containers: 'CONTAINERS', CreatedAt: 'CREATED AT', CreatedSince: 'CREATED', Digest: 'DIGEST', ID: 'IMAGE ID', Repository: 'REPOSITORY',
  SharedSize: 'SHARED SIZE', Size: 'SIZE', Tag: 'TAG', UniqueSize: 'UNIQUE SIZE', VirtualSize: 'VIRTUAL SIZE',
};

/** The options and action of `images`, on `cmd` (`images` or `image ls`). */
export const imagesCommand = (cmd: Command) => cmd
  .description('List images in the local store, newest first')
  .argument('[repository]', 'only show images of this repository (e.g. busybox, localhost:5000/app)')
  .option('-a, --all', 'show all images (accepted: a daemonless store keeps no intermediate images)')
  .option('-q, --quiet', 'only show image IDs')
  .option('--digests', 'show manifest digests')
  .option('--no-trunc', "don't truncate IDs")
  .option('-f, --filter <key=value>', 'filter: dangling=true|false, reference=PATTERN, label=KEY[=VALUE], before=IMAGE, since=IMAGE (repeatable)', collect)
  .option('--format <format>', '"table", "json" (one object per line) or a Go template like "{{.Repository}}:{{.Tag}}"')
  .addHelpText('after', `
Examples:
  drydock images
  drydock images busybox --digests
  drydock images -f dangling=true -q
  drydock images --format json | jq -r .Repository
  drydock images --format 'table {{.Repository}}\\t{{.Tag}}\\t{{.Size}}'`)
  .action(async (repository: string | undefined, flags: { quiet?: boolean; digests?: boolean; trunc: boolean; filter?: string[]; format?: string }) => {
    const { ContentStore, listImages } = await import('../../store/index.js');
    const { shortId, parseReference, fullName } = await import('../../image/index.js');
    const { filterImages } = await import('./image-filters.js');
    // Only read: a store that does not exist yet lists as empty, and is not made.
    const store = ContentStore.forReading();
    let images = await listImages(store, { sizes: !flags.quiet });
    if (repository) {
      const want = fullName(parseReference(repository, { defaultTag: false }));
      const wantTag = parseReference(repository, { defaultTag: false }).tag;
      images = images.filter((i) => i.repository === want && (!wantTag || i.tag === wantTag));
    }
    images = await filterImages(store, images, flags.filter ?? []);
    // Docker lists newest first; images of the same age by name.
    images.sort((a, b) => (Date.parse(b.created ?? '') || 0) - (Date.parse(a.created ?? '') || 0) || a.name.localeCompare(b.name));
    const id = (d: string) => (flags.trunc ? shortId(d) : d);
    if (flags.quiet) {
      const seen = new Set<string>();
      let out = '';
      for (const i of images) if (i.id && !seen.has(i.id)) { seen.add(i.id); out += `${id(i.id)}\n`; }
      writeStdout(out);
      return;
    }
    const { goStruct } = await import('../../util/gotemplate/index.js');
    const rows = await Promise.all(images.map(async (i) => {
      const d = await displayName(i.name);
      return goStruct('*formatter.imageContext', {
        Containers: 'N/A',
        CreatedAt: dockerTime(i.created),
        CreatedSince: timeAgo(i.created),
        Digest: i.manifestDigest,
        ID: i.id ? id(i.id) : '<missing>',
        Repository: d.repository,
        SharedSize: 'N/A',
        Size: formatSize(i.size),
        Tag: d.tag,
        UniqueSize: 'N/A',
        VirtualSize: formatSize(i.size),
      });
    }));
    const defaultFormat = flags.digests
      ? 'table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}'
      : 'table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}';
    writeStdout(await formatRows(flags.format, rows, { defaultFormat, headers: IMAGE_HEADERS }));
  });

export function register(program: Command, only?: string): void {
  if (only === undefined || only === 'images' || only === 'image-ls') imagesCommand(program.command('images').alias('image-ls'));
}
