// The baked top layer: a directory that becomes top.squashfs, stacked over the image at boot.
// It carries the boot2docker-style customizations (timezone, proxy, motd, hostname, ssh key,
// startup script), the drydock init with its own busybox-static, and the user's --top-layer
// files last, so per-machine files win over everything baked before them.
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import type { ContainerConfig } from '../image/types.js';
import { UserError } from '../util/errors.js';
import { busyboxApplets, DEFAULT_BUSYBOX } from '../mkimage/busybox-rootfs.js';
import { networkConf, type BootOptions } from './config.js';
import { DRYDOCK_INIT, NETLIB, NETWORK_UP, OS_BOOT, RUN_SERVICE, UDHCPC_SCRIPT, serviceConf, shQuote, type ServiceSpec } from './scripts.js';
import { DEPLOYMENT_SERVICE_CONF, OS_FILES, OS_LIB, OS_STATE_AWK } from './osstate.js';
import { installSshd } from './sshd.js';
import { DRYDOCK_SERVICE, installRunc, SERVICES_DIR } from './services.js';
import { runTool } from './exec.js';
import { resolveInRoot, readFileInRoot } from '../runtime/rootfs-path.js';

const INTERACTIVE_SHELLS = new Set(['sh', 'ash', 'bash', 'dash', 'zsh', 'ksh', 'mksh']);

/** The host path of `p` inside the image when it exists (symlinks resolved within the rootfs). */
export async function inImage(rootfs: string, p: string): Promise<string | undefined> {
  const real = await resolveInRoot(rootfs, p).catch(() => undefined);
  return real && (await fsp.stat(real).catch(() => undefined)) ? real : undefined;
}

/** Looks up a Docker USER ("name", "uid", "name:group", "uid:gid") in the image's passwd/group. */
export async function resolveUser(rootfs: string, user: string): Promise<{ uid: number; gid: number; home: string }> {
  const [u, g] = user.split(':', 2) as [string, string | undefined];
  const read = async (f: string) => (await fsp.readFile(path.join(rootfs, f), 'utf8').catch(() => '')).split('\n').map((l) => l.split(':'));
  const passwd = await read('etc/passwd');
  const group = await read('etc/group');
  const entry = passwd.find((e) => e[0] === u || (/^\d+$/.test(u) && e[2] === u));
  let uid: number;
  if (/^\d+$/.test(u)) uid = Number(u);
  else if (entry) uid = Number(entry[2]);
  else throw new UserError(`USER ${user}: no user "${u}" in the image's /etc/passwd`);
  let gid = entry ? Number(entry[3]) : 0;
  if (g !== undefined) {
    if (/^\d+$/.test(g)) gid = Number(g);
    else {
      const ge = group.find((e) => e[0] === g);
      if (!ge) throw new UserError(`USER ${user}: no group "${g}" in the image's /etc/group`);
      gid = Number(ge[2]);
    }
  }
  return { uid, gid, home: entry?.[5] || '/' };
}

async function isBusybox(file: string | undefined): Promise<boolean> {
  if (!file) return false;
  if (path.basename(file) === 'busybox') return true;
  const fh = await fsp.open(file, 'r').catch(() => undefined);
  if (!fh) return false;
  try {
    const st = await fh.stat();
    if (st.size > 4 * 1024 * 1024) return false;
    const buf = Buffer.alloc(st.size);
    await fh.read(buf, 0, st.size, 0);
    return buf.includes('BusyBox v');
  } finally {
    await fh.close();
  }
}

const KNOWN_INITS = ['/sbin/init', '/lib/systemd/systemd', '/usr/lib/systemd/systemd', '/sbin/openrc-init', '/usr/sbin/init', '/init'];

export interface InitChoice { mode: 'image' | 'drydock'; path: string; reason: string }

/**
 * auto: the image's own init when ENTRYPOINT/CMD is an init, or /sbin/init is a real init
 * (systemd, sysvinit, openrc); a container-style image (busybox init, or none) with a command
 * gets the drydock init running that command as a service; an image with busybox init and no
 * command gets busybox init (a console shell, /etc/inittab).
 */
export async function chooseInit(rootfs: string, config: ContainerConfig, mode: BootOptions['init']): Promise<InitChoice> {
  const argv = [...(config.Entrypoint ?? []), ...(config.Cmd ?? [])];
  const first = argv[0];
  if (mode === 'drydock') return { mode: 'drydock', path: '/.drydock/init', reason: '--init drydock' };
  const cmdIsInit = first !== undefined && argv.length <= 2 && KNOWN_INITS.includes(first) && !!(await inImage(rootfs, first));
  if (cmdIsInit) return { mode: 'image', path: first, reason: `the image command ${first} is an init` };
  const sbinInit = await inImage(rootfs, '/sbin/init');
  if (mode === 'image') {
    if (!sbinInit) throw new UserError('--init image: the image has no /sbin/init');
    return { mode: 'image', path: '/sbin/init', reason: '--init image' };
  }
  if (sbinInit && !(await isBusybox(sbinInit))) return { mode: 'image', path: '/sbin/init', reason: 'the image has an init system (/sbin/init)' };
  if (argv.length) return { mode: 'drydock', path: '/.drydock/init', reason: 'the image command runs as a supervised service' };
  if (sbinInit) return { mode: 'image', path: '/sbin/init', reason: 'busybox init (the image has no command)' };
  return { mode: 'drydock', path: '/.drydock/init', reason: 'no init and no command: a console shell' };
}

/** Creates `rel` in the layer with the owner and mode the image gives it, so the layer does not change them. */
async function mkdirLike(layer: string, rootfs: string, rel: string, fallbackMode = 0o755): Promise<string> {
  const parts = rel.split('/').filter(Boolean);
  for (let i = 1; i <= parts.length; i++) {
    const sub = parts.slice(0, i).join('/');
    const dest = path.join(layer, sub);
    if (await fsp.lstat(dest).catch(() => undefined)) continue;
    const real = await inImage(rootfs, sub);
    const st = real ? await fsp.stat(real) : undefined;
    await fsp.mkdir(dest);
    if (st?.isDirectory()) {
      await fsp.chmod(dest, st.mode & 0o7777);
      await fsp.chown(dest, st.uid, st.gid).catch(() => {});
    } else {
      await fsp.chmod(dest, i === parts.length ? fallbackMode : 0o755);
    }
  }
  return path.join(layer, ...parts);
}

/**
 * `rel` with its directories resolved through the image's symlinks, so a file meant for
 * /sbin lands in usr/sbin on merged-/usr images instead of a real sbin/ hiding the symlink.
 */
export async function resolvedInImage(rootfs: string, rel: string): Promise<string> {
  const dir = path.posix.dirname(rel);
  if (dir === '.' || dir === '/') return rel;
  const real = await resolveInRoot(rootfs, dir).catch(() => path.join(rootfs, dir));
  return path.posix.join(path.relative(rootfs, real).split(path.sep).join('/'), path.posix.basename(rel));
}

export async function writeLayerFile(layer: string, rootfs: string, relIn: string, data: string | Buffer, mode = 0o644): Promise<void> {
  const rel = await resolvedInImage(rootfs, relIn);
  await mkdirLike(layer, rootfs, path.posix.dirname(rel));
  const dest = path.join(layer, rel);
  await fsp.rm(dest, { force: true });
  await fsp.writeFile(dest, data, { mode });
  await fsp.chmod(dest, mode);
}

/** The image's copy of a text file (through symlinks), or ''. */
async function imageText(rootfs: string, rel: string): Promise<string> {
  return (await readFileInRoot(rootfs, rel).catch(() => undefined)) ?? '';
}

export function proxyEnv(opts: Pick<BootOptions, 'proxy' | 'noProxy'>): [string, string][] {
  const out: [string, string][] = [];
  if (opts.proxy) for (const k of ['http_proxy', 'https_proxy', 'ftp_proxy', 'HTTP_PROXY', 'HTTPS_PROXY', 'FTP_PROXY']) out.push([k, opts.proxy]);
  if (opts.noProxy) for (const k of ['no_proxy', 'NO_PROXY']) out.push([k, opts.noProxy]);
  return out;
}

export interface TopLayerResult { init: InitChoice; service?: ServiceSpec }

export async function buildTopLayer(layer: string, rootfs: string, config: ContainerConfig, opts: BootOptions,
  tools: { busybox?: string; zoneinfo?: string; servicesDir?: string } = {}): Promise<TopLayerResult> {
  const busybox = tools.busybox ?? DEFAULT_BUSYBOX;
  const zoneinfo = tools.zoneinfo ?? '/usr/share/zoneinfo';
  await fsp.mkdir(layer, { recursive: true });
  const init = await chooseInit(rootfs, config, opts.init);

  if (opts.timezone) {
    // Copied, not linked: container images rarely ship zoneinfo.
    await writeLayerFile(layer, rootfs, 'etc/localtime', await fsp.readFile(path.join(zoneinfo, opts.timezone)));
    await writeLayerFile(layer, rootfs, 'etc/timezone', `${opts.timezone}\n`);
  }
  const proxy = proxyEnv(opts);
  if (proxy.length) {
    await writeLayerFile(layer, rootfs, 'etc/profile.d/proxy.sh',
      '# written by drydock (--proxy)\n' + proxy.map(([k, v]) => `export ${k}=${shQuote(v)}`).join('\n') + '\n');
    const keys = new Set(proxy.map(([k]) => k));
    const kept = (await imageText(rootfs, 'etc/environment')).split('\n').filter((l) => l && !keys.has(l.split('=')[0]!.trim()));
    await writeLayerFile(layer, rootfs, 'etc/environment', [...kept, ...proxy.map(([k, v]) => `${k}="${v}"`)].join('\n') + '\n');
  }
  if (opts.motd !== undefined) await writeLayerFile(layer, rootfs, 'etc/motd', opts.motd);
  if (opts.hostname) {
    await writeLayerFile(layer, rootfs, 'etc/hostname', `${opts.hostname}\n`);
    const hosts = (await imageText(rootfs, 'etc/hosts')) || '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n';
    const short = opts.hostname.split('.')[0];
    const kept = hosts.split('\n').filter((l) => l && !/^127\.0\.1\.1\s/.test(l));
    await writeLayerFile(layer, rootfs, 'etc/hosts', [...kept, `127.0.1.1\t${opts.hostname}${short !== opts.hostname ? ` ${short}` : ''}`].join('\n') + '\n');
  }
  if (opts.sshKeys.length) {
    const root = await resolveUser(rootfs, 'root').catch(() => ({ home: '/root' }));
    const home = root.home.replace(/^\/+/, '') || 'root';
    await mkdirLike(layer, rootfs, home, 0o700);
    await mkdirLike(layer, rootfs, `${home}/.ssh`, 0o700);
    const existing = await imageText(rootfs, `${home}/.ssh/authorized_keys`);
    await writeLayerFile(layer, rootfs, `${home}/.ssh/authorized_keys`, existing + opts.sshKeys.join('\n') + '\n', 0o600);
  }

  // The drydock runtime: busybox-static with applet links, the init, and the service config.
  const dd = await mkdirLike(layer, rootfs, '.drydock', 0o755);
  await fsp.copyFile(busybox, path.join(dd, 'busybox'));
  await fsp.chmod(path.join(dd, 'busybox'), 0o755);
  await fsp.mkdir(path.join(dd, 'bin'), { recursive: true });
  for (const applet of await busyboxApplets(busybox)) {
    const name = path.posix.basename(applet);
    await fsp.symlink('../busybox', path.join(dd, 'bin', name)).catch((e: NodeJS.ErrnoException) => { if (e.code !== 'EEXIST') throw e; });
  }

  // The network: DHCP on every wired NIC unless --network / ip= say otherwise.
  await fsp.writeFile(path.join(dd, 'network.conf'), networkConf(opts.network), { mode: 0o644 });
  await fsp.writeFile(path.join(dd, 'netlib.sh'), NETLIB, { mode: 0o644 });
  await fsp.writeFile(path.join(dd, 'udhcpc.script'), UDHCPC_SCRIPT, { mode: 0o755 });
  await fsp.writeFile(path.join(dd, 'network-up'), NETWORK_UP, { mode: 0o755 });
  if (opts.sshKeys.length) await installSshd(dd, rootfs);

  // Updatable disks: the watchdog and confirm step of a new deployment (src/boot/osstate.ts).
  if (opts.updatesFrom !== undefined) {
    await fsp.writeFile(path.join(dd, OS_FILES.awk), OS_STATE_AWK, { mode: 0o644 });
    await fsp.writeFile(path.join(dd, OS_FILES.lib), OS_LIB, { mode: 0o644 });
    await fsp.writeFile(path.join(dd, 'os-boot'), OS_BOOT, { mode: 0o755 });
  }

  // Containers at boot: runc, the bundles and drydock-service (also on the PATH for startup scripts).
  if (tools.servicesDir) {
    await installRunc(path.join(dd, 'runc'));
    await fsp.writeFile(path.join(dd, 'drydock-service'), DRYDOCK_SERVICE, { mode: 0o755 });
    const rel = await resolvedInImage(rootfs, SERVICES_DIR);
    await mkdirLike(layer, rootfs, path.posix.dirname(rel));
    await fsp.rename(tools.servicesDir, path.join(layer, rel)).catch(() => runTool('cp', ['-a', tools.servicesDir!, path.join(layer, rel)]));
    const link = await resolvedInImage(rootfs, 'sbin/drydock-service');
    await mkdirLike(layer, rootfs, path.posix.dirname(link));
    await fsp.symlink('/.drydock/drydock-service', path.join(layer, link)).catch((e: NodeJS.ErrnoException) => { if (e.code !== 'EEXIST') throw e; });
  }

  // poweroff, reboot and halt on the PATH of every image (busybox's signal PID 1).
  for (const name of ['poweroff', 'reboot', 'halt']) {
    let present = false;
    for (const dir of ['sbin', 'usr/sbin', 'bin', 'usr/bin']) if (await inImage(rootfs, `${dir}/${name}`)) present = true;
    if (present) continue;
    const rel = await resolvedInImage(rootfs, `sbin/${name}`);
    await mkdirLike(layer, rootfs, path.posix.dirname(rel));
    await fsp.symlink('/.drydock/busybox', path.join(layer, rel)).catch((e: NodeJS.ErrnoException) => { if (e.code !== 'EEXIST') throw e; });
  }

  let startup: string[] | undefined;
  if (opts.startupScript) {
    await fsp.copyFile(opts.startupScript, path.join(dd, 'startup'));
    await fsp.chmod(path.join(dd, 'startup'), 0o755);
    startup = await startupArgv(rootfs, opts.startupScript);
  }

  // An updatable disk boots each deployment in its own image's mode (the initramfs's os_init):
  // its top layer carries the drydock init and the confirm step of the image's own init, both,
  // whichever the disk's image uses, so a v2 can switch between a CMD and an init of its own.
  const updatable = opts.updatesFrom !== undefined;
  let service: ServiceSpec | undefined;
  if (init.mode === 'drydock' || updatable) {
    const argv = [...(config.Entrypoint ?? []), ...(config.Cmd ?? [])];
    const env = [...(config.Env ?? [])];
    // Booted with its own init, the image's USER is not the service's: a bad one is no error here
    // (a deployment booted with the drydock init has its USER resolved at boot, os_service_conf).
    const user = config.User ? await resolveUser(rootfs, config.User).catch((e) => { if (init.mode === 'drydock') throw e; return undefined; }) : undefined;
    const homeUser = user ?? (await resolveUser(rootfs, 'root').catch(() => ({ uid: 0, gid: 0, home: '/root' })));
    if (!env.some((e) => e.startsWith('PATH='))) env.unshift('PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin');
    if (!env.some((e) => e.startsWith('HOME='))) env.push(`HOME=${homeUser.home}`);
    const diskEnv = [...(opts.hostname ? [`HOSTNAME=${opts.hostname}`] : []), ...proxy.map(([k, v]) => `${k}=${v}`)];
    // boot2docker semantics: the proxy applies to the service too.
    for (const e of diskEnv) if (!env.some((x) => x.startsWith(e.slice(0, e.indexOf('=') + 1)))) env.push(e);
    // No command, or a bare shell (busybox's CMD ["sh"]): a console shell, respawned like a getty.
    const console = argv.length === 0 || (argv.length <= 2 && INTERACTIVE_SHELLS.has(path.posix.basename(argv[0]!)) && argv.slice(1).every((a) => a === '-l' || a === '-i'));
    if (argv.length === 0) argv.push((await inImage(rootfs, '/bin/sh')) ? '/bin/sh' : '/.drydock/bin/sh');
    // The console shell is on a terminal: TERM as a getty would set it.
    if (console && !env.some((e) => e.startsWith('TERM='))) env.push('TERM=linux');
    const spec: ServiceSpec = {
      argv, env, workdir: config.WorkingDir || '/', uid: user?.uid, gid: user?.gid, startup, console,
      ...(updatable ? { deploymentConf: DEPLOYMENT_SERVICE_CONF, diskEnv } : {}),
    };
    await fsp.writeFile(path.join(dd, 'service.conf'), serviceConf(spec), { mode: 0o644 });
    await fsp.writeFile(path.join(dd, 'run-service'), RUN_SERVICE, { mode: 0o755 });
    await fsp.writeFile(path.join(dd, 'init'), DRYDOCK_INIT, { mode: 0o755 });
    if (init.mode === 'drydock') service = spec;
  }
  // An updatable disk's later deployment may bring an init of its own: the startup script is
  // hooked into every kind of init, not just the disk image's (the drydock init runs it from
  // service.conf above).
  if (startup && (init.mode === 'image' || updatable)) await hookStartupIntoImageInit(layer, rootfs, startup, updatable);
  // The image's own init confirms a new deployment once it reaches its default target; the
  // initramfs arms the kernel's softdog for the fallback (docs/boot.md, "Automatic fallback").
  if (updatable) await hookConfirmIntoImageInit(layer, rootfs);

  if (opts.topLayer) {
    await refuseSymlinkReplacement(opts.topLayer, rootfs);
    await runTool('cp', ['-a', `${opts.topLayer}/.`, `${layer}/`]);
  }
  return { init, service };
}

/** The script's own interpreter when the image has it, else busybox sh. */
async function startupArgv(rootfs: string, script: string): Promise<string[]> {
  const head = (await fsp.readFile(script)).subarray(0, 256).toString('utf8').split('\n')[0]!;
  if (head.startsWith('#!')) {
    const [interp, ...rest] = head.slice(2).trim().split(/\s+/);
    if (interp && (await inImage(rootfs, interp))) return ['/.drydock/startup'];
    void rest;
  }
  return ['/.drydock/bin/sh', '/.drydock/startup'];
}

/**
 * With the image's own init, run the startup script the way that init runs local scripts. On an
 * updatable disk (`anyInit`) the files for systemd and OpenRC are written whatever the disk's
 * image uses (inert without that init), and busybox init's rcS is left to the initramfs, which
 * appends the call (STARTUP_RC) to the booted deployment's own rcS: a top-layer rcS would hide
 * every later deployment's.
 */
async function hookStartupIntoImageInit(layer: string, rootfs: string, startup: string[], anyInit: boolean): Promise<void> {
  const call = startup.map(shQuote).join(' ');
  const systemd = await inImage(rootfs, '/lib/systemd/systemd') || await inImage(rootfs, '/usr/lib/systemd/systemd');
  // systemd: a oneshot unit wanted by multi-user.target.
  if (systemd || anyInit) {
    await writeLayerFile(layer, rootfs, 'etc/systemd/system/drydock-startup.service',
      `[Unit]\nDescription=drydock startup script\nAfter=local-fs.target network.target\n\n[Service]\nType=oneshot\nExecStart=${startup.join(' ')}\nStandardOutput=journal+console\n\n[Install]\nWantedBy=multi-user.target\n`);
    await mkdirLike(layer, rootfs, 'etc/systemd/system/multi-user.target.wants');
    await fsp.symlink('../drydock-startup.service', path.join(layer, 'etc/systemd/system/multi-user.target.wants/drydock-startup.service')).catch(() => {});
  }
  // OpenRC's local service.
  if (anyInit || await inImage(rootfs, '/etc/local.d')) await writeLayerFile(layer, rootfs, 'etc/local.d/drydock.start', `#!/bin/sh\n${call}\n`, 0o755);
  if (anyInit) {
    await fsp.writeFile(path.join(layer, '.drydock', STARTUP_RC), `${call}\n`, { mode: 0o644 });
    return;
  }
  // busybox init without an inittab runs /etc/init.d/rcS; sysvinit runs /etc/rc.local.
  const rcS = await imageText(rootfs, 'etc/init.d/rcS');
  await writeLayerFile(layer, rootfs, 'etc/init.d/rcS', `${rcS || '#!/bin/sh\n'}${rcS.endsWith('\n') || !rcS ? '' : '\n'}${call}\n`, 0o755);
}

/** In /.drydock of an updatable disk: the startup script's call, which the initramfs appends to a busybox init's rcS. */
export const STARTUP_RC = 'startup.rc';

/** systemd: confirm once the default target is reached (ordered after it, pulled in by multi-user.target). */
export const OS_CONFIRM_UNIT = `[Unit]
Description=drydock: confirm this deployment (it reached the default target)
Documentation=https://github.com/drydock/drydock/blob/main/docs/boot.md
After=default.target multi-user.target
ConditionPathExists=/run/drydock/os-boot.conf

[Service]
Type=oneshot
ExecStart=/.drydock/os-boot confirm
StandardOutput=journal+console

[Install]
WantedBy=multi-user.target
`;

/** OpenRC: after every other service of the runlevel. */
export const OS_CONFIRM_OPENRC = `#!/sbin/openrc-run
description="drydock: confirm this deployment (it reached its runlevel)"
depend() { after *; }
start() { /.drydock/os-boot confirm; }
`;

/** sysvinit: the last S script of runlevels 2-5. */
export const OS_CONFIRM_SYSV = `#!/bin/sh
### BEGIN INIT INFO
# Provides:          drydock-os-confirm
# Required-Start:    $all
# Required-Stop:
# Default-Start:     2 3 4 5
# Default-Stop:
# Short-Description: drydock: confirm this deployment (it reached its runlevel)
### END INIT INFO
case "$1" in
  start) /.drydock/os-boot confirm ;;
  stop|restart|force-reload|status) ;;
  *) echo "Usage: $0 start" >&2; exit 3 ;;
esac
`;

/** The confirm step as the image's own init runs it: a systemd unit, an OpenRC service or a sysvinit rc script. */
async function hookConfirmIntoImageInit(layer: string, rootfs: string): Promise<void> {
  // systemd's unit always: a later deployment may bring systemd (it is inert files without it).
  await writeLayerFile(layer, rootfs, 'etc/systemd/system/drydock-os-confirm.service', OS_CONFIRM_UNIT);
  await mkdirLike(layer, rootfs, 'etc/systemd/system/multi-user.target.wants');
  await fsp.symlink('../drydock-os-confirm.service', path.join(layer, 'etc/systemd/system/multi-user.target.wants/drydock-os-confirm.service')).catch(() => {});
  // A systemd image's /etc/init.d scripts become units (systemd-sysv-generator): none there.
  if (await inImage(rootfs, '/lib/systemd/systemd') || await inImage(rootfs, '/usr/lib/systemd/systemd')) return;
  if (await inImage(rootfs, '/sbin/openrc') || await inImage(rootfs, '/sbin/openrc-init') || await inImage(rootfs, '/etc/runlevels')) {
    await writeLayerFile(layer, rootfs, 'etc/init.d/drydock-os-confirm', OS_CONFIRM_OPENRC, 0o755);
    await mkdirLike(layer, rootfs, 'etc/runlevels/default');
    await fsp.symlink('/etc/init.d/drydock-os-confirm', path.join(layer, 'etc/runlevels/default/drydock-os-confirm')).catch(() => {});
    return;
  }
  await writeLayerFile(layer, rootfs, 'etc/init.d/drydock-os-confirm', OS_CONFIRM_SYSV, 0o755);
  // sysvinit's rc dirs; busybox init has none (and the initramfs tells the two apart by them).
  if (!(await inImage(rootfs, '/etc/rc2.d'))) return;
  for (const level of ['2', '3', '4', '5']) {
    await mkdirLike(layer, rootfs, `etc/rc${level}.d`);
    await fsp.symlink('../init.d/drydock-os-confirm', path.join(layer, `etc/rc${level}.d/S99drydock-os-confirm`)).catch(() => {});
  }
  // busybox init (no rc dirs) has no drop-in place: the initramfs appends the call to the booted
  // deployment's own rcS (a top-layer copy would hide every later deployment's rcS).
}

/**
 * A --top-layer directory where the image has a symlink (lib/ over merged-/usr's /lib -> usr/lib)
 * would hide the symlink and everything behind it (the dynamic loader). Refused, naming the path.
 */
export async function refuseSymlinkReplacement(topLayer: string, rootfs: string, rel = ''): Promise<void> {
  for (const entry of await fsp.readdir(path.join(topLayer, rel), { withFileTypes: true })) {
    const sub = rel ? `${rel}/${entry.name}` : entry.name;
    const inImg = await fsp.lstat(path.join(rootfs, sub)).catch(() => undefined);
    if (!inImg) continue;
    if (inImg.isSymbolicLink() && !entry.isSymbolicLink()) {
      const target = await fsp.readlink(path.join(rootfs, sub));
      throw new UserError(`--top-layer ${topLayer}: ${sub}${entry.isDirectory() ? '/' : ''} would replace the image's symlink /${sub} -> ${target}; put the files under ${path.posix.join(path.posix.dirname('/' + sub), target).replace(/^\/+/, '')}/ in the top layer instead`);
    }
    if (entry.isDirectory() && inImg.isDirectory()) await refuseSymlinkReplacement(topLayer, rootfs, sub);
  }
}
