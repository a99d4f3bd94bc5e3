// Containers at boot (--service IMAGE[=NAME], YAML services:): other images from the local store
// run as containers in the booted machine through runc, LinuxKit's services: and boot2docker's
// start.sh use case. Everything is prepared at build time, so the machine needs no Node: each
// service's rootfs and OCI runtime spec (from the runtime package's createRuntimeSpec) form a
// bundle in /var/lib/drydock/services/NAME, and runc (with its libraries, patched to load from
// /.drydock/runc) is on the medium. /.drydock/drydock-service starts, stops and lists them.
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import type { ContentStore } from '../store/content-store.js';
import { resolveImage } from '../store/images.js';
import { unpackImage } from '../layer/unpack.js';
import { createRuntimeSpec } from '../runtime/spec.js';
import { UserError } from '../util/errors.js';
import { runTool } from './exec.js';
import { shQuote } from './scripts.js';
import { sharedLibraries } from './sshd.js';

export type RestartPolicy = 'no' | 'always' | 'on-failure' | 'unless-stopped';
export const RESTART_POLICIES: readonly RestartPolicy[] = ['no', 'always', 'on-failure', 'unless-stopped'];

export interface BootService {
  image: string;
  name: string;
  /** Replaces the image's CMD (ENTRYPOINT stays), as `docker run IMAGE COMMAND…`. */
  command?: string[];
  env: string[];
  /** MACHINE_PATH:CONTAINER_PATH[:ro] bind mounts. */
  volumes: string[];
  restart: RestartPolicy;
}

/** Where the bundles live in the booted machine. */
export const SERVICES_DIR = 'var/lib/drydock/services';
export const RUNC = '/usr/sbin/runc';

const NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$/;

/** The default name: the image's last path component without tag or digest (docker.io/library/nginx:1 → nginx). */
export function defaultServiceName(image: string): string {
  return image.split('@')[0]!.split('/').pop()!.replace(/:[^:]*$/, '').replace(/[^a-zA-Z0-9_.-]/g, '-');
}

/** `--service IMAGE[=NAME]`. */
export function parseServiceFlag(spec: string): BootService {
  const i = spec.lastIndexOf('=');
  const image = i > 0 ? spec.slice(0, i) : spec;
  const name = i > 0 ? spec.slice(i + 1) : defaultServiceName(spec);
  return checkService({ image, name, env: [], volumes: [], restart: 'always' }, `--service ${spec}`);
}

function checkService(s: BootService, where: string): BootService {
  if (!s.image || /\s/.test(s.image)) throw new UserError(`${where}: an image name is required (IMAGE[=NAME])`);
  if (!NAME.test(s.name)) throw new UserError(`${where}: invalid service name "${s.name}" (letters, digits, _ . -)`);
  if (!RESTART_POLICIES.includes(s.restart)) throw new UserError(`${where}: invalid restart policy "${s.restart}" (${RESTART_POLICIES.join(', ')})`);
  for (const e of s.env) if (!/^[A-Za-z_][A-Za-z0-9_]*=/.test(e)) throw new UserError(`${where}: env "${e}" is not NAME=VALUE`);
  for (const v of s.volumes) {
    const [src, dst, mode, more] = v.split(':');
    if (!src?.startsWith('/') || !dst?.startsWith('/') || (mode !== undefined && mode !== 'ro' && mode !== 'rw') || more !== undefined) {
      throw new UserError(`${where}: volume "${v}" is not /machine/path:/container/path[:ro]`);
    }
  }
  return s;
}

/** One entry of YAML `services:`: an image name, or {image, name, command, env, volumes, restart}. */
export function parseServiceEntry(v: unknown, where: string): BootService {
  if (typeof v === 'string') return parseServiceFlag(v);
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new UserError(`${where}: a service is an image name or a mapping with image:`);
  const o = v as Record<string, unknown>;
  const known = ['image', 'name', 'command', 'env', 'volumes', 'restart'];
  for (const k of Object.keys(o)) if (!known.includes(k)) throw new UserError(`${where}: unknown key "${k}" (known: ${known.join(', ')})`);
  const list = (x: unknown, k: string): string[] => {
    if (x === undefined || x === null) return [];
    if (Array.isArray(x)) return x.map(String);
    if (k === 'env' && typeof x === 'object') return Object.entries(x as Record<string, unknown>).map(([a, b]) => `${a}=${b}`);
    throw new UserError(`${where}: ${k} must be a list`);
  };
  const image = String(o.image ?? '');
  const command = o.command === undefined ? undefined : typeof o.command === 'string' ? ['/bin/sh', '-c', o.command] : list(o.command, 'command');
  return checkService({
    image, name: o.name === undefined ? defaultServiceName(image) : String(o.name), command,
    env: list(o.env, 'env'), volumes: list(o.volumes, 'volumes'), restart: (o.restart === undefined ? 'always' : String(o.restart)) as RestartPolicy,
  }, `${where} ${image}`);
}

export function checkUniqueNames(services: BootService[]): void {
  const seen = new Set<string>();
  for (const s of services) {
    if (seen.has(s.name)) throw new UserError(`two services are named "${s.name}"; give one another name (--service IMAGE=NAME)`);
    seen.add(s.name);
  }
}

/**
 * Unpacks each service image into `dir/NAME/rootfs` and writes its config.json (host
 * networking, the machine's /etc/hosts, hostname and resolv.conf) and service.conf.
 */
export async function prepareServiceBundles(store: ContentStore, services: BootService[], dir: string, extraEnv: [string, string][] = []): Promise<void> {
  for (const s of services) {
    const img = await resolveImage(store, s.image, { os: 'linux', architecture: 'amd64' }).catch((e: Error) => {
      throw new UserError(`--service ${s.image}: ${e.message}`, { cause: e });
    });
    const bundle = path.join(dir, s.name);
    const rootfs = path.join(bundle, 'rootfs');
    await fsp.mkdir(rootfs, { recursive: true, mode: 0o755 });
    await unpackImage(store, img, rootfs);
    const c = img.config.config ?? {};
    const args = [...(c.Entrypoint ?? []), ...(s.command ?? c.Cmd ?? [])];
    if (!args.length) throw new UserError(`--service ${s.image}: the image has no ENTRYPOINT or CMD; give a command`);
    const hostFiles = path.join(bundle, '.hostfiles');
    const spec = await createRuntimeSpec({
      rootfs, args, env: withEnv([...(c.Env ?? []), ...s.env], extraEnv), cwd: c.WorkingDir || '/', user: c.User || '0',
      network: 'host', hostFilesDir: hostFiles,
      mounts: s.volumes.map((v) => {
        const [src, dst, mode] = v.split(':') as [string, string, string | undefined];
        return { destination: dst, type: 'bind', source: src, options: ['rbind', mode === 'ro' ? 'ro' : 'rw'] };
      }),
    });
    // Paths as the machine sees them: the bundle's rootfs, and the machine's own host files.
    spec.root.path = 'rootfs';
    for (const m of spec.mounts) if (m.source?.startsWith(hostFiles + path.sep)) m.source = `/etc/${path.basename(m.source)}`;
    await fsp.rm(hostFiles, { recursive: true, force: true });
    await fsp.writeFile(path.join(bundle, 'config.json'), JSON.stringify(spec, null, 2) + '\n');
    await fsp.writeFile(path.join(bundle, 'service.conf'), `# generated by drydock\nIMAGE=${shQuote(s.image)}\nRESTART=${s.restart}\n`);
  }
}

/** `env` plus each of `extra` (the --proxy variables) it does not set itself. */
function withEnv(env: string[], extra: [string, string][]): string[] {
  return [...env, ...extra.filter(([k]) => !env.some((e) => e.startsWith(`${k}=`))).map(([k, v]) => `${k}=${v}`)];
}

/** runc and its libraries into `dest` (/.drydock/runc), with the interpreter and rpath patched to point there. */
export async function installRunc(dest: string, runc = RUNC): Promise<void> {
  if (!(await fsp.stat(runc).catch(() => undefined))) throw new UserError(`--service needs runc on this host to carry it (apt-get install runc)`);
  await fsp.mkdir(path.join(dest, 'lib'), { recursive: true });
  let loader = '';
  for (const lib of await sharedLibraries(runc)) {
    const name = /ld-linux/.test(path.basename(lib)) ? 'ld-linux-x86-64.so.2' : path.basename(lib);
    if (name === 'ld-linux-x86-64.so.2') loader = name;
    await fsp.copyFile(await fsp.realpath(lib), path.join(dest, 'lib', name));
    await fsp.chmod(path.join(dest, 'lib', name), 0o755);
  }
  const out = path.join(dest, 'runc');
  await fsp.copyFile(runc, out);
  await fsp.chmod(out, 0o755);
  // runc re-executes /proc/self/exe, so it must start without a loader wrapper: patch it instead.
  if (loader) {
    await runTool('patchelf', ['--set-interpreter', '/.drydock/runc/lib/ld-linux-x86-64.so.2', '--set-rpath', '/.drydock/runc/lib', out]);
  }
}

/** /.drydock/drydock-service start|stop|restart|status [NAME] — and `supervise NAME`, its restart loop. */
export const DRYDOCK_SERVICE = `#!/.drydock/busybox sh
# drydock-service: the containers of this machine (--service, services:), run by runc.
#   drydock-service start NAME | stop NAME | restart NAME | status [NAME] | list
export PATH=/.drydock/bin
S=/${SERVICES_DIR}
RUN=/run/drydock/services
LOGS=/var/log/drydock
runc() { /.drydock/runc/runc --root /run/runc "$@"; }
say() { echo "drydock: $*" > /dev/console; }
die() { echo "drydock-service: $*" >&2; exit 1; }
mkdir -p $RUN $LOGS
need() { [ -n "$1" ] || die "usage: drydock-service start|stop|restart|status NAME"; [ -f "$S/$1/config.json" ] || die "no service named $1 (have: $(ls $S 2>/dev/null | tr '\\n' ' '))"; }
state() { cat "$RUN/$1.state" 2>/dev/null || echo stopped; }
alive() { [ -f "$RUN/$1.pid" ] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }

supervise() {
  name="$1"; . "$S/$name/service.conf"
  delay=1; runs=0
  while :; do
    runc delete -f "$name" >/dev/null 2>&1
    started=$(cut -d. -f1 /proc/uptime)
    echo "--- drydock: starting $name ($IMAGE) at uptime \${started}s" >> "$LOGS/$name.log"
    echo running > "$RUN/$name.state"
    # "started" once runc reports the container running; failures are told apart below.
    ( i=0; while [ $i -lt 120 ] && [ "$(state "$name")" = running ]; do
        runc state "$name" 2>/dev/null | grep -q '"status": "running"' && { say "service $name started"; break; }
        sleep 1; i=$((i + 1)); done ) &
    runc run --bundle "$S/$name" "$name" < /dev/null >> "$LOGS/$name.log" 2>&1
    rc=$?
    runs=$((runs + 1))
    ran=$(( $(cut -d. -f1 /proc/uptime) - started ))
    [ -e "$RUN/$name.stopping" ] && { echo stopped > "$RUN/$name.state"; break; }
    # runc's own error (no such binary, bad mount…): the container never ran.
    if [ $rc -ne 0 ] && tail -n 3 "$LOGS/$name.log" | grep -q 'runc run failed'; then
      echo "failed (status $rc, see $LOGS/$name.log)" > "$RUN/$name.state"
      say "service $name failed to start (status $rc): $(tail -n 1 "$LOGS/$name.log")"
    else
      echo "exited (status $rc)" > "$RUN/$name.state"
      say "service $name exited with status $rc after \${ran}s"
    fi
    case "$RESTART" in
      no) break ;;
      on-failure) [ $rc -eq 0 ] && break ;;
    esac
    [ $ran -ge 30 ] && delay=1
    sleep $delay
    delay=$((delay * 2)); [ $delay -gt 30 ] && delay=30
  done
  rm -f "$RUN/$name.pid" "$RUN/$name.stopping"
}

cmd="$1"; shift
case "$cmd" in
  start)
    need "$1"
    alive "$1" && { echo "$1 is already running"; exit 0; }
    rm -f "$RUN/$1.stopping"
    setsid /.drydock/drydock-service supervise "$1" < /dev/null > /dev/null 2>&1 &
    echo $! > "$RUN/$1.pid"
    echo "$1 starting (log: $LOGS/$1.log)" ;;
  supervise) supervise "$1" ;;
  stop)
    need "$1"
    alive "$1" || { echo "$1 is not running"; exit 0; }
    touch "$RUN/$1.stopping"
    runc kill "$1" TERM 2>/dev/null
    i=0; while runc state "$1" 2>/dev/null | grep -q '"status": "running"' && [ $i -lt 50 ]; do usleep 200000; i=$((i + 1)); done
    runc kill "$1" KILL 2>/dev/null
    i=0; while alive "$1" && [ $i -lt 50 ]; do usleep 100000; i=$((i + 1)); done
    echo "$1 stopped" ;;
  restart) "$0" stop "$1" && "$0" start "$1" ;;
  status|list|ls|"")
    if [ -n "$1" ]; then need "$1"; set -- "$1"; else set -- $(ls $S 2>/dev/null); fi
    printf '%-20s %s\\n' NAME STATUS
    for n in "$@"; do printf '%-20s %s\\n' "$n" "$(state "$n")"; done ;;
  *) die "unknown command $cmd; usage: drydock-service start|stop|restart|status NAME" ;;
esac
`;
