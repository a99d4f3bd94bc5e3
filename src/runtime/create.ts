// `drydock create`/`run` front half: resolve the image, unpack its layers into the shared cache,
// and write the container record. Nothing runs yet; the runner (foreground or monitor) starts it.
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { ContentStore } from '../store/content-store.js';
import { resolveImage } from '../store/images.js';
import { UserError } from '../util/errors.js';
import { ensureLayersUnpacked } from './layers.js';
import {
  type ContainerRecord, type HostConfig, type MountSpec, initialState, newContainerId, nameInUse, pathsFor, randomName,
  validateName, withContainersLock, writeState,
} from './containers.js';
import { writeJson } from '../util/fs.js';
import { parsePublish, publishAll, type PortBinding } from './ports.js';
import { validateVolumeName } from './volumes.js';
import { formatPlatform, hostPlatform, parsePlatform } from '../image/platform.js';
import { normalizeCapability, parseSecurityOpts } from './capabilities.js';
import { seccompFor } from './seccomp.js';

export interface CreateOptions {
  image: string;
  command: string[];
  /** --entrypoint: a string like Docker ("" clears the image's entrypoint). */
  entrypoint?: string;
  name?: string;
  env?: string[];
  envFiles?: string[];
  user?: string;
  workdir?: string;
  volumes?: string[];
  tmpfs?: string[];
  publish?: string[];
  publishAll?: boolean;
  network?: string;
  hostname?: string;
  readOnly?: boolean;
  memory?: string;
  cpus?: string;
  restart?: string;
  init?: boolean;
  runtime?: string;
  autoRemove?: boolean;
  tty?: boolean;
  interactive?: boolean;
  groupAdd?: string[];
  addHost?: string[];
  dns?: string[];
  labels?: string[];
  stopSignal?: string;
  /** --platform: the image variant to pick from an index; also silences the mismatch warning. */
  platform?: string;
  privileged?: boolean;
  capAdd?: string[];
  capDrop?: string[];
  securityOpt?: string[];
}

/**
 * Docker's warning when the image was built for another platform than this host's and the user
 * did not ask for one (the container may then fail with "exec format error").
 */
export function platformMismatchWarning(image: { os?: string; architecture?: string; variant?: string }): string | undefined {
  const host = hostPlatform();
  if (!image.architecture || ((image.os ?? 'linux') === host.os && image.architecture === host.architecture)) return undefined;
  const wanted = formatPlatform({ os: image.os ?? 'linux', architecture: image.architecture, ...(image.variant ? { variant: image.variant } : {}) });
  return `WARNING: The requested image's platform (${wanted}) does not match the detected host platform (${formatPlatform(host)}) and no specific platform was requested`;
}

/** Parses Docker memory sizes: 512m, 1g, 100k, 1048576 (bytes). */
export function parseMemory(s: string): number {
  const m = s.trim().toLowerCase().match(/^(\d+(?:\.\d+)?)\s*([bkmgt]?)b?$/);
  if (!m) throw new UserError(`invalid --memory "${s}": use a size like 512m or 1g`);
  const mult = { '': 1, b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }[m[2] as '' | 'b' | 'k' | 'm' | 'g' | 't'];
  const bytes = Math.floor(Number(m[1]) * mult);
  if (bytes < 6 * 1024 * 1024) throw new UserError('minimum memory limit allowed is 6MB');
  return bytes;
}

export function parseCpus(s: string): number {
  const n = Number(s);
  if (!Number.isFinite(n) || n <= 0) throw new UserError(`invalid --cpus "${s}": use a positive number like 0.5 or 2`);
  return Math.round(n * 1e9);
}

export function parseRestart(s: string | undefined): HostConfig['RestartPolicy'] {
  if (!s || s === 'no') return { Name: 'no', MaximumRetryCount: 0 };
  const [name, count] = s.split(':');
  if (name === 'on-failure') {
    const n = count === undefined ? 0 : Number(count);
    if (!Number.isInteger(n) || n < 0) throw new UserError(`invalid --restart ${s}: the retry count must be a non-negative integer`);
    return { Name: 'on-failure', MaximumRetryCount: n };
  }
  if ((name === 'always' || name === 'unless-stopped') && count === undefined) return { Name: name, MaximumRetryCount: 0 };
  throw new UserError(`invalid --restart "${s}": use no, on-failure[:max-retries], always or unless-stopped`);
}

/** Parses `-v`: /host:/ctr[:ro|rw], name:/ctr[:ro], or /ctr (anonymous volume). */
export async function parseVolume(spec: string): Promise<MountSpec> {
  const parts = spec.split(':');
  let opts: string[] = [];
  if (parts.length === 3 || (parts.length === 2 && !parts[1]!.startsWith('/'))) opts = parts.pop()!.split(',');
  const rw = !opts.includes('ro');
  for (const o of opts) if (!['ro', 'rw', 'z', 'Z', 'rprivate', 'private', 'rshared', 'shared', 'rslave', 'slave', 'nocopy'].includes(o)) throw new UserError(`invalid mode "${o}" in -v ${spec}`);
  if (parts.length === 1) {
    if (!parts[0]!.startsWith('/')) throw new UserError(`invalid -v ${spec}: the container path must be absolute`);
    return { Type: 'volume', Source: '', Destination: path.posix.normalize(parts[0]!), RW: rw, Anonymous: true };
  }
  const [src, dst] = parts as [string, string];
  if (!dst.startsWith('/')) throw new UserError(`invalid -v ${spec}: the container path must be absolute`);
  if (src.startsWith('/') || src.startsWith('.')) {
    const host = path.resolve(src);
    // Docker creates a missing bind source directory.
    await fsp.mkdir(host, { recursive: true }).catch(() => {});
    return { Type: 'bind', Source: host, Destination: path.posix.normalize(dst), RW: rw, Options: opts.filter((o) => /shared|slave|private/.test(o)) };
  }
  return { Type: 'volume', Source: validateVolumeName(src), Destination: path.posix.normalize(dst), RW: rw };
}

export function parseTmpfs(spec: string): MountSpec {
  const colon = spec.indexOf(':');
  const dst = colon < 0 ? spec : spec.slice(0, colon);
  if (!dst.startsWith('/')) throw new UserError(`invalid --tmpfs ${spec}: the path must be absolute`);
  const options = colon < 0 ? [] : spec.slice(colon + 1).split(',').filter(Boolean);
  return { Type: 'tmpfs', Source: '', Destination: path.posix.normalize(dst), RW: !options.includes('ro'), Options: options };
}

/** KEY=VALUE lines; KEY alone takes the value from the caller's environment (or is dropped). */
export function parseEnvList(list: string[]): string[] {
  const out: string[] = [];
  for (const raw of list) {
    const e = raw.replace(/\r$/, '');
    if (!e.trim() || e.trimStart().startsWith('#')) continue;
    const eq = e.indexOf('=');
    if (eq === 0) throw new UserError(`invalid environment variable "${e}"`);
    if (eq < 0) { const v = process.env[e.trim()]; if (v !== undefined) out.push(`${e.trim()}=${v}`); continue; }
    out.push(e);
  }
  return out;
}

/** Later entries override earlier ones by key, keeping the first position (like Docker's merge). */
export function mergeEnv(...lists: string[][]): string[] {
  const map = new Map<string, string>();
  for (const l of lists) for (const e of l) { const k = e.split('=', 1)[0]!; map.set(k, e); }
  return [...map.values()];
}

export async function createContainer(o: CreateOptions): Promise<ContainerRecord> {
  const store = await ContentStore.open();
  let platform;
  if (o.platform) {
    try { platform = parsePlatform(o.platform); } catch (e) { throw new UserError((e as Error).message, { cause: e }); }
  }
  const image = await resolveImage(store, o.image, platform);
  if (!platform) {
    const warning = platformMismatchWarning(image.config);
    if (warning) process.stderr.write(`${warning}\n`);
  }
  const cfg = image.config.config ?? {};
  const diffIds = image.config.rootfs?.diff_ids ?? [];
  if (diffIds.length !== image.manifest.layers.length) throw new UserError(`image ${o.image} is inconsistent: ${image.manifest.layers.length} layers but ${diffIds.length} diff_ids`);
  const lowerDirs = await ensureLayersUnpacked(store, image.manifest.layers.map((l, i) => ({ digest: l.digest, mediaType: l.mediaType, diffID: diffIds[i]! })));

  let entrypoint = cfg.Entrypoint ?? [];
  let cmd = cfg.Cmd ?? [];
  if (o.entrypoint !== undefined) { entrypoint = o.entrypoint === '' ? [] : [o.entrypoint]; cmd = []; }
  if (o.command.length) cmd = o.command;
  const args = [...entrypoint, ...cmd];
  if (!args.length) throw new UserError(`no command specified: image ${o.image} has no ENTRYPOINT or CMD; give one after the image name`);

  const envFileLines: string[] = [];
  for (const f of o.envFiles ?? []) {
    const text = await fsp.readFile(f, 'utf8').catch((e) => { throw new UserError(`cannot read --env-file ${f}: ${(e as Error).message}`, { cause: e }); });
    envFileLines.push(...text.split('\n'));
  }
  const env = mergeEnv(cfg.Env ?? [], parseEnvList(envFileLines), parseEnvList(o.env ?? []));

  const network = (o.network ?? 'bridge') as HostConfig['NetworkMode'];
  if (!['bridge', 'host', 'none'].includes(network)) throw new UserError(`unsupported --network "${o.network}" (bridge, host or none)`);
  let ports: PortBinding[] = (o.publish ?? []).flatMap(parsePublish);
  if (o.publishAll) ports = [...ports, ...publishAll(cfg.ExposedPorts).filter((b) => !ports.some((p) => p.containerPort === b.containerPort && p.protocol === b.protocol))];
  if (network !== 'bridge' && ports.length) {
    if (network === 'none') throw new UserError('cannot publish ports with --network none');
    process.stderr.write('WARNING: Published ports are discarded when using host network mode\n');
    ports = [];
  }

  const mounts: MountSpec[] = [];
  for (const v of o.volumes ?? []) mounts.push(await parseVolume(v));
  for (const t of o.tmpfs ?? []) mounts.push(parseTmpfs(t));
  for (const dest of Object.keys(cfg.Volumes ?? {})) {
    const d = path.posix.normalize(dest);
    if (!mounts.some((m) => m.Destination === d)) mounts.push({ Type: 'volume', Source: '', Destination: d, RW: true, Anonymous: true });
  }
  const dests = new Set<string>();
  for (const m of mounts) {
    if (dests.has(m.Destination)) throw new UserError(`duplicate mount point: ${m.Destination}`);
    dests.add(m.Destination);
  }
  const labels: Record<string, string> = { ...(cfg.Labels ?? {}) };
  for (const l of o.labels ?? []) { const eq = l.indexOf('='); labels[eq < 0 ? l : l.slice(0, eq)] = eq < 0 ? '' : l.slice(eq + 1); }
  const restart = parseRestart(o.restart);
  if (o.autoRemove && restart.Name !== 'no') throw new UserError('conflicting options: --restart and --rm');

  const capAdd = (o.capAdd ?? []).map(normalizeCapability);
  const capDrop = (o.capDrop ?? []).map(normalizeCapability);
  const security = parseSecurityOpts(o.securityOpt);
  // A bad profile fails now, not at every start.
  if (security.seccomp !== 'default' && security.seccomp !== 'unconfined') await seccompFor(security.seccomp, []);
  const securityOpt = [...(security.seccomp !== 'default' ? [`seccomp=${security.seccomp}`] : []), ...(security.noNewPrivileges ? ['no-new-privileges'] : [])];

  const id = newContainerId();
  const record: ContainerRecord = {
    Id: id,
    Name: '',
    Created: new Date().toISOString(),
    Image: o.image,
    ImageID: image.configDigest,
    ImageManifest: image.manifestDescriptor.digest,
    Architecture: image.config.architecture,
    Path: args[0]!,
    Args: args.slice(1),
    Config: {
      ...cfg,
      Hostname: o.hostname ?? id.slice(0, 12),
      User: o.user ?? cfg.User ?? '',
      Env: env,
      Cmd: cmd,
      Entrypoint: entrypoint.length ? entrypoint : null,
      WorkingDir: o.workdir ?? cfg.WorkingDir ?? '',
      Labels: labels,
      StopSignal: o.stopSignal ?? cfg.StopSignal ?? 'SIGTERM',
      Tty: !!o.tty,
      OpenStdin: !!o.interactive,
      Image: o.image,
    },
    HostConfig: {
      AutoRemove: !!o.autoRemove,
      NetworkMode: network,
      PortBindings: ports,
      PublishAllPorts: !!o.publishAll,
      Mounts: mounts,
      ReadonlyRootfs: !!o.readOnly,
      Memory: o.memory ? parseMemory(o.memory) : 0,
      NanoCpus: o.cpus ? parseCpus(o.cpus) : 0,
      RestartPolicy: restart,
      Init: !!o.init,
      Runtime: o.runtime ?? 'runc',
      GroupAdd: o.groupAdd ?? [],
      ExtraHosts: (o.addHost ?? []).map((h) => { const i = h.lastIndexOf(':'); if (i < 0) throw new UserError(`invalid --add-host ${h}: use host:ip`); return `${h.slice(i + 1)}\t${h.slice(0, i)}`; }),
      Dns: o.dns ?? [],
      Privileged: !!o.privileged,
      CapAdd: capAdd,
      CapDrop: capDrop,
      SecurityOpt: securityOpt,
    },
    LowerDirs: lowerDirs,
  };
  const paths = pathsFor(id);
  await withContainersLock(async () => {
    const name = o.name ? validateName(o.name) : await uniqueRandomName();
    const taken = await nameInUse(name);
    if (taken) throw new UserError(`Conflict. The container name "/${name}" is already in use by container "${taken}". You have to remove (or rename) that container to be able to reuse that name.`, 125);
    record.Name = name;
    await fsp.mkdir(paths.dir, { recursive: true, mode: 0o700 });
    await writeJson(paths.config, record, !record.HostConfig.AutoRemove);
  });
  await writeState(paths, initialState(), !record.HostConfig.AutoRemove);
  // Keep the image's blobs alive across `drydock gc` while the container exists (commit needs
  // the parent's layers; running needs only the unpacked layer cache, so --rm skips this).
  if (!record.HostConfig.AutoRemove) await store.setRoot(`container/${id}`, [image.manifestDescriptor.digest]);
  return record;
}

async function uniqueRandomName(): Promise<string> {
  for (let i = 0; i < 20; i++) {
    const n = randomName();
    if (!(await nameInUse(n))) return n;
  }
  return `${randomName()}_${Math.floor(Math.random() * 1000)}`;
}
