// Commands about the whole installation, as Docker users type them: version, info and
// system df|info|prune. drydock has no daemon, so "Server" facts describe the local store and
// the OCI runtime it drives.
import type { Command } from 'commander';
import { confirm, formatEach, formatRows, formatSize } from '../output.js';

async function runcVersion(): Promise<string> {
  const { execFile } = await import('node:child_process');
  return new Promise((resolve) => execFile('runc', ['--version'], (err, stdout) => resolve(err ? '' : (/runc version (\S+)/.exec(stdout)?.[1] ?? ''))));
}

function hostArch(): string {
  return process.arch === 'x64' ? 'amd64' : process.arch;
}

async function versionInfo() {
  const { goStruct } = await import('../../util/gotemplate/index.js');
  return goStruct('types.Version', {
    Client: goStruct('*types.ClientVersion', {
      Platform: { Name: 'drydock' },
      Version: process.env.npm_package_version ?? '0.1.0',
      ApiVersion: '1.41',
      NodeVersion: process.version,
      Os: 'linux',
      Arch: hostArch(),
    }),
    Server: goStruct('*types.ServerVersion', {
      Platform: { Name: 'drydock (daemonless: the local store and runc)' },
      Version: process.env.npm_package_version ?? '0.1.0',
      ApiVersion: '1.41',
      Os: 'linux',
      Arch: hostArch(),
      Components: [{ Name: 'runc', Version: await runcVersion() }],
    }),
  });
}

async function systemInfo() {
  const os = await import('node:os');
  const { promises: fsp } = await import('node:fs');
  const { ContentStore, listImages, defaultRoot } = await import('../../store/index.js');
  const { listContainers } = await import('../../runtime/containers.js');
  const { goStruct } = await import('../../util/gotemplate/index.js');
  const store = await ContentStore.open();
  const containers = await listContainers();
  const images = new Set((await listImages(store)).map((i) => i.id).filter(Boolean));
  const running = containers.filter((c) => c.state.Status === 'running' || c.state.Status === 'restarting').length;
  const osRelease = await fsp.readFile('/etc/os-release', 'utf8').catch(() => '');
  return goStruct('types.Info', {
    ID: '',
    Containers: containers.length,
    ContainersRunning: running,
    ContainersPaused: 0,
    ContainersStopped: containers.length - running,
    Images: images.size,
    Driver: 'overlay',
    DockerRootDir: defaultRoot(),
    Runtimes: { runc: { path: 'runc' } },
    DefaultRuntime: 'runc',
    RuncVersion: await runcVersion(),
    KernelVersion: os.release(),
    OperatingSystem: /^PRETTY_NAME="?([^"\n]*)"?/m.exec(osRelease)?.[1] ?? 'Linux',
    OSType: 'linux',
    Architecture: os.machine(),
    NCPU: os.cpus().length,
    MemTotal: os.totalmem(),
    Name: os.hostname(),
    ServerVersion: process.env.npm_package_version ?? '0.1.0',
  });
}

function binarySize(bytes: number): string {
  // docker info prints memory in binary units ("23.47GiB").
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = bytes;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${Number(v.toFixed(2))}${units[i]}`;
}

async function printInfo(format?: string): Promise<void> {
  const info = await systemInfo();
  if (format) { process.stdout.write(await formatEach(format === 'json' ? '{{json .}}' : format, [info])); return; }
  process.stdout.write([
    'Client:',
    ' Context:    default',
    '',
    'Server:',
    ` Containers: ${info.Containers}`,
    `  Running: ${info.ContainersRunning}`,
    `  Paused: ${info.ContainersPaused}`,
    `  Stopped: ${info.ContainersStopped}`,
    ` Images: ${info.Images}`,
    ` Server Version: ${info.ServerVersion} (drydock, daemonless)`,
    ` Storage Driver: ${info.Driver}`,
    ` Runtimes: runc`,
    ` Default Runtime: runc`,
    ` runc version: ${info.RuncVersion}`,
    ` Kernel Version: ${info.KernelVersion}`,
    ` Operating System: ${info.OperatingSystem}`,
    ` OSType: ${info.OSType}`,
    ` Architecture: ${info.Architecture}`,
    ` CPUs: ${info.NCPU}`,
    ` Total Memory: ${binarySize(info.MemTotal)}`,
    ` Name: ${info.Name}`,
    ` Docker Root Dir: ${info.DockerRootDir}`,
    '',
  ].join('\n'));
}

/** Removes stopped containers; returns their IDs (Docker's `container prune`). */
export async function pruneContainers(): Promise<string[]> {
  const { listContainers } = await import('../../runtime/containers.js');
  const { removeContainer } = await import('../../runtime/lifecycle.js');
  const removed: string[] = [];
  for (const c of await listContainers()) {
    if (c.state.Status === 'running' || c.state.Status === 'restarting') continue;
    await removeContainer(c.record.Id);
    removed.push(c.record.Id);
  }
  return removed;
}

export function register(program: Command, only?: string): void {
  // Only the command being run (its word, from main.ts), or every command (help, unknown words).
  const wants = (...names: string[]) => only === undefined || names.includes(only);
  if (wants('version')) program.command('version')
    .description('Show the drydock version and the runtime it drives, like docker version')
    .option('-f, --format <template>', 'Go template, e.g. "{{.Client.Version}}", or json')
    .action(async (f: { format?: string }) => {
      const v = await versionInfo();
      if (f.format) { process.stdout.write(await formatEach(f.format === 'json' ? '{{json .}}' : f.format, [v])); return; }
      process.stdout.write([
        'Client: drydock',
        ` Version:           ${v.Client.Version}`,
        ` API version:       ${v.Client.ApiVersion}`,
        ` Node version:      ${v.Client.NodeVersion}`,
        ` OS/Arch:           ${v.Client.Os}/${v.Client.Arch}`,
        '',
        'Server: none (daemonless; containers run under runc directly)',
        ' runc:',
        `  Version:          ${v.Server.Components[0]!.Version || 'not installed'}`,
        '',
      ].join('\n'));
    });

  if (wants('info')) program.command('info')
    .description('Show system-wide information (store, containers, images, runtime)')
    .option('-f, --format <template>', 'Go template, e.g. "{{.Images}}", or json')
    .action(async (f: { format?: string }) => printInfo(f.format));

  const system = wants('system') ? program.command('system').description('Manage drydock: df, info, prune') : undefined;
  system?.command('info')
    .description('Show system-wide information')
    .option('-f, --format <template>', 'Go template, e.g. "{{.Images}}", or json')
    .action(async (f: { format?: string }) => printInfo(f.format));

  system?.command('df')
    .description('Show disk usage: images, containers, local volumes, build cache')
    .option('--format <format>', '"table", "json" or a Go template like "{{.Type}} {{.Size}}"')
    .action(async (f: { format?: string }) => {
      const { ContentStore, listImages, resolveImage, layerContentSize } = await import('../../store/index.js');
      const { listContainers } = await import('../../runtime/containers.js');
      const { listVolumes } = await import('../../runtime/volumes.js');
      const { goStruct } = await import('../../util/gotemplate/index.js');
      const store = await ContentStore.open();
      const containers = await listContainers();
      const used = new Set(containers.map((c) => c.record.ImageID));
      const ids = new Map<string, string>();
      for (const i of await listImages(store)) if (i.id && !ids.has(i.id)) ids.set(i.id, i.name === '<none>:<none>' ? i.id : i.name);
      // Layers shared by several images count once, as in Docker's SIZE column here.
      const layerSizes = new Map<string, number>();
      const activeLayers = new Set<string>();
      for (const [id, ref] of ids) {
        const img = await resolveImage(store, ref).catch(() => undefined);
        if (!img) continue;
        for (const l of img.manifest.layers) {
          if (!layerSizes.has(l.digest)) layerSizes.set(l.digest, await layerContentSize(store, l.digest).catch(() => l.size));
          if (used.has(id)) activeLayers.add(l.digest);
        }
      }
      const total = [...layerSizes.values()].reduce((a, b) => a + b, 0);
      const reclaim = [...layerSizes].filter(([d]) => !activeLayers.has(d)).reduce((a, [, n]) => a + n, 0);
      const pct = (n: number, of: number) => (of ? `${Math.round((n / of) * 100)}%` : '0%');
      const vols = await listVolumes();
      const running = containers.filter((c) => c.state.Status === 'running').length;
      const row = (Type: string, TotalCount: number, Active: number, Size: string, Reclaimable: string) => goStruct('*formatter.diskUsageImagesContext', { Active: String(Active), Reclaimable, Size, TotalCount: String(TotalCount), Type });
      const rows = [
        row('Images', ids.size, [...ids.keys()].filter((i) => used.has(i)).length, formatSize(total), `${formatSize(reclaim)} (${pct(reclaim, total)})`),
        row('Containers', containers.length, running, '0B', '0B (0%)'),
        row('Local Volumes', vols.length, 0, '0B', '0B'),
        row('Build Cache', 0, 0, '0B', '0B'),
      ];
      process.stdout.write(await formatRows(f.format, rows, {
        defaultFormat: 'table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}',
        headers: { Type: 'TYPE', TotalCount: 'TOTAL', Active: 'ACTIVE', Size: 'SIZE', Reclaimable: 'RECLAIMABLE' },
      }));
    });

  system?.command('prune')
    .description('Remove stopped containers and dangling images, then sweep unreferenced blobs')
    .option('-f, --force', 'do not prompt for confirmation')
    .option('-a, --all', 'accepted for Docker compatibility (unused images are removed by rmi)')
    .action(async (f: { force?: boolean }) => {
      if (!f.force && !(await confirm('WARNING! This will remove:\n  - all stopped containers\n  - all dangling images\n  - all blobs nothing references'))) return;
      const containers = await pruneContainers();
      const { ContentStore, pruneUntaggedImages, gcStore } = await import('../../store/index.js');
      const store = await ContentStore.open();
      const images = await pruneUntaggedImages(store);
      const gc = await gcStore(store);
      const { gcLayerCache } = await import('../../runtime/layers.js');
      const layers = await gcLayerCache(store, {});
      if (containers.length) process.stdout.write(`Deleted Containers:\n${containers.map((c) => `${c}\n`).join('')}\n`);
      if (images.images.length) process.stdout.write(`Deleted Images:\n${images.images.map((d) => `untagged: ${d}\n`).join('')}${images.deleted.map((d) => `deleted: ${d}\n`).join('')}\n`);
      process.stdout.write(`Total reclaimed space: ${formatSize(images.bytes + gc.bytes + layers.bytes)}\n`);
    });
}
