// The initramfs's deployment choice on an updatable disk, without QEMU: the same awk and sh the
// initramfs runs (src/boot/osstate.ts), run by the host's busybox (its sh, awk, sed, sync and
// mv only: a directory of applet links is the whole PATH) against fixture state files. Each
// case is a state.json, the deployments present and the boot menu's choice; the expected
// result is the deployment booted and the state.json the next boot finds.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import { execFileSync, spawnSync } from 'node:child_process';
import path from 'node:path';
import { tempDir, requireTool } from '../helpers/env.js';
import { OS_LIB, OS_STATE_AWK, DEPLOYMENT_MENU } from '../../src/boot/osstate.js';
import { serviceConf } from '../../src/boot/scripts.js';
import { syslinuxConfig } from '../../src/boot/media.js';
import { chooseInit } from '../../src/boot/toplayer.js';
import { grubConfig } from '../../src/boot/uefi.js';
import type { BootArtifacts } from '../../src/boot/artifacts.js';

const work = tempDir('drydock-osstate-');
const bin = path.join(work, 'bin');
const NOW = '2026-12-01T10:00:00Z';

before(async () => {
  const busybox = requireTool('busybox', 'apt-get install busybox-static');
  await fsp.mkdir(bin);
  execFileSync(busybox, ['--install', '-s', bin]);
  await fsp.writeFile(path.join(work, 'osstate.awk'), OS_STATE_AWK);
  await fsp.writeFile(path.join(work, 'os.sh'), OS_LIB);
});

/** Runs `script` after sourcing os.sh under busybox sh with only busybox on the PATH. */
function sh(script: string, ...args: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(path.join(bin, 'sh'), ['-c', `. ${work}/os.sh; ${script}`, 'sh', ...args], {
    encoding: 'utf8', env: { PATH: bin, OS_AWK: path.join(work, 'osstate.awk') },
  });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

let n = 0;
async function fixture(state: string, deployments: string[]): Promise<string> {
  const root = path.join(work, `case-${n++}`);
  await fsp.mkdir(path.join(root, 'os/deployments'), { recursive: true });
  for (const d of deployments) await fsp.writeFile(path.join(root, 'os/deployments', `${d}.json`), JSON.stringify({ id: d, layers: [] }));
  await fsp.writeFile(path.join(root, 'os/state.json'), state);
  return root;
}

function select(root: string, want = ''): { code: number; deployment: string; pending: string; deadline: string; note: string; log: string } {
  const r = sh('os_select "$1" "$2" "$3"; rc=$?; echo "rc=$rc"; echo "dep=$OS_DEPLOYMENT"; echo "pending=$OS_PENDING"; echo "deadline=$OS_DEADLINE"; echo "note=$OS_NOTE"', root, want, NOW);
  const get = (k: string) => /^(.*)$/m.exec(r.stdout.split('\n').find((l) => l.startsWith(`${k}=`))?.slice(k.length + 1) ?? '')![1]!;
  assert.equal(r.stderr, '', r.stderr);
  return { code: Number(get('rc')), deployment: get('dep'), pending: get('pending'), deadline: get('deadline'), note: get('note'), log: r.stdout };
}

const base = { version: 1, ref: '10.0.2.2:5000/os/app:stable', default: 'aaa', rollback: 'rrr', pending: null, abandoned: [], insecureRegistries: ['10.0.2.2:5000'], authfile: null };
const pretty = (o: unknown) => JSON.stringify(o, null, 2) + '\n';

interface Case {
  name: string;
  state: string;
  deployments: string[];
  want?: string;
  boots: string;
  pending?: boolean;
  /** What state.json holds afterwards (parsed). */
  after: (s: Record<string, any>) => void;
  note?: RegExp;
}

const CASES: Case[] = [
  {
    name: 'no pending: the default', state: pretty(base), deployments: ['aaa', 'rrr'], boots: 'aaa',
    after: (s) => { assert.equal(s.booted, 'aaa'); assert.equal(s.pending, null); assert.deepEqual(s.insecureRegistries, ['10.0.2.2:5000']); },
  },
  {
    name: 'pending with tries left: tried, one try used', deployments: ['aaa', 'rrr', 'ppp'], boots: 'ppp', pending: true,
    state: pretty({ ...base, pending: { id: 'ppp', triesLeft: 2, deadlineSeconds: 45 } }),
    after: (s) => { assert.deepEqual(s.pending, { id: 'ppp', triesLeft: 1, deadlineSeconds: 45, attempts: 1 }); assert.equal(s.booted, 'ppp'); assert.equal(s.default, 'aaa'); },
  },
  {
    name: 'pending with no tries left: abandoned with the reason, default booted', deployments: ['aaa', 'rrr', 'ppp'], boots: 'aaa',
    state: pretty({ ...base, pending: { id: 'ppp', triesLeft: 0, deadlineSeconds: 45, attempts: 2 }, abandoned: [{ id: 'old', reason: 'x', at: NOW }] }),
    note: /pending ppp abandoned: did not reach service started within 45s on 2 boots/,
    after: (s) => {
      assert.equal(s.pending, null);
      assert.deepEqual(s.abandoned, [{ id: 'old', reason: 'x', at: NOW }, { id: 'ppp', reason: 'did not reach service started within 45s on 2 boots', at: NOW }]);
      assert.equal(s.booted, 'aaa'); assert.equal(s.default, 'aaa'); assert.equal(s.rollback, 'rrr');
    },
  },
  {
    name: 'pending whose deployment file never got written (killed mid-upgrade): abandoned', deployments: ['aaa'], boots: 'aaa',
    state: pretty({ ...base, rollback: null, pending: { id: 'ppp', triesLeft: 3, deadlineSeconds: 60 } }),
    after: (s) => { assert.equal(s.pending, null); assert.match(s.abandoned[0].reason, /os\/deployments\/ppp.json is missing/); },
  },
  {
    name: 'menu: rollback', deployments: ['aaa', 'rrr'], want: 'rollback', boots: 'rrr', state: pretty(base), note: /rollback/,
    after: (s) => { assert.equal(s.booted, 'rrr'); assert.equal(s.default, 'aaa'); },
  },
  {
    name: 'menu: rollback without one: the default', deployments: ['aaa'], want: 'rollback', boots: 'aaa', state: pretty({ ...base, rollback: null }),
    after: (s) => assert.equal(s.booted, 'aaa'),
  },
  {
    name: 'menu: rollback leaves a pending deployment and its tries alone', deployments: ['aaa', 'rrr', 'ppp'], want: 'rollback', boots: 'rrr',
    state: pretty({ ...base, pending: { id: 'ppp', triesLeft: 2, deadlineSeconds: 45 } }),
    after: (s) => assert.deepEqual(s.pending, { id: 'ppp', triesLeft: 2, deadlineSeconds: 45 }),
  },
  {
    name: 'menu: an id', deployments: ['aaa', 'rrr'], want: 'rrr', boots: 'rrr', state: pretty(base), after: (s) => assert.equal(s.booted, 'rrr'),
  },
  {
    name: 'menu: an unknown id: the default', deployments: ['aaa'], want: 'zzz', boots: 'aaa', state: pretty(base), after: (s) => assert.equal(s.booted, 'aaa'),
  },
  {
    name: 'default missing: the rollback', deployments: ['rrr'], boots: 'rrr', state: pretty(base), after: (s) => assert.equal(s.booted, 'rrr'),
  },
  {
    name: 'compact JSON, other key order, escapes and nested values kept', deployments: ['aaa'], boots: 'aaa',
    state: '{"abandoned":[],"default":"aaa","note":"say \\"hi\\" \\\\ [x]: {y}","x":{"a":[1,{"b":true}]},"pending":null,"rollback":null}',
    after: (s) => { assert.equal(s.note, 'say "hi" \\ [x]: {y}'); assert.deepEqual(s.x, { a: [1, { b: true }] }); assert.equal(s.booted, 'aaa'); },
  },
  {
    name: 'a second boot after booted was written replaces it', deployments: ['aaa', 'rrr'], boots: 'aaa', state: pretty({ ...base, booted: 'rrr' }),
    after: (s) => assert.equal(s.booted, 'aaa'),
  },
];

for (const c of CASES) {
  test(`os_select: ${c.name}`, async () => {
    const root = await fixture(c.state, c.deployments);
    const r = select(root, c.want);
    assert.equal(r.code, 0, r.log);
    assert.equal(r.deployment, c.boots, r.log);
    assert.equal(r.pending, c.pending ? '1' : '', r.log);
    if (c.note) assert.match(r.note, c.note);
    const after = JSON.parse(await fsp.readFile(path.join(root, 'os/state.json'), 'utf8'));
    c.after(after);
    assert.deepEqual((await fsp.readdir(path.join(root, 'os'))).sort(), ['deployments', 'state.json'], 'no temp file left');
  });
}

test('os_select: a pending deployment that never confirms is abandoned after its tries, then the default boots for good', async () => {
  const root = await fixture(pretty({ ...base, pending: { id: 'ppp', triesLeft: 2, deadlineSeconds: 30 } }), ['aaa', 'rrr', 'ppp']);
  assert.deepEqual([1, 2, 3, 4].map(() => select(root).deployment), ['ppp', 'ppp', 'aaa', 'aaa']);
  const s = JSON.parse(await fsp.readFile(path.join(root, 'os/state.json'), 'utf8'));
  assert.equal(s.abandoned.length, 1);
  assert.equal(s.abandoned[0].reason, 'did not reach service started within 30s on 2 boots');
});

for (const [name, state] of [
  ['not JSON', 'default=aaa\n'], ['truncated', '{"default":"aaa","pending":{"id":'], ['empty', ''], ['trailing garbage', '{"default":"aaa"} x'],
] as const) {
  test(`os_select: a state.json that is ${name} is refused and left as it was`, async () => {
    const root = await fixture(state, ['aaa']);
    const r = sh('os_select "$1" "" "$2"; echo "rc=$?"', root, NOW);
    assert.match(r.stdout, /rc=1/);
    assert.match(r.stdout, /unreadable or not JSON/);
    assert.equal(await fsp.readFile(path.join(root, 'os/state.json'), 'utf8'), state);
  });
}

test('os_confirm: the booted pending deployment becomes the default, the old default the rollback', async () => {
  const root = await fixture(pretty({ ...base, pending: { id: 'ppp', triesLeft: 1, deadlineSeconds: 30, attempts: 2 } }), ['aaa', 'rrr', 'ppp']);
  assert.equal(select(root).deployment, 'ppp');
  assert.equal(sh('os_confirm "$1"; echo "rc=$?"', root).stdout.trim(), 'rc=0');
  const s = JSON.parse(await fsp.readFile(path.join(root, 'os/state.json'), 'utf8'));
  assert.deepEqual([s.default, s.rollback, s.pending, s.booted], ['ppp', 'aaa', null, 'ppp']);
  // Not the pending deployment booted (the menu's rollback): nothing changes.
  const root2 = await fixture(pretty({ ...base, pending: { id: 'ppp', triesLeft: 1, deadlineSeconds: 30 } }), ['aaa', 'rrr', 'ppp']);
  assert.equal(select(root2, 'rollback').deployment, 'rrr');
  const before2 = await fsp.readFile(path.join(root2, 'os/state.json'), 'utf8');
  sh('os_confirm "$1"', root2);
  assert.equal(await fsp.readFile(path.join(root2, 'os/state.json'), 'utf8'), before2);
});

test('the awk reader flattens what the initramfs needs from a deployment', async () => {
  const file = path.join(work, 'dep.json');
  await fsp.writeFile(file, pretty({ id: 'aaa', layers: ['sha256:11', 'sha256:22', 'sha256:33'], imageConfig: { Cmd: ['sh', '-c', 'echo "a,b"'] } }));
  const r = sh('f="$(os_flat "$1")"; echo "n=$(os_field "$f" layers.length) top=$(os_field "$f" layers.2) cmd=$(os_field "$f" imageConfig.Cmd.2)"', file);
  assert.equal(r.stdout.trim(), 'n=3 top=sha256:33 cmd=echo \\"a,b\\"');
});

test('boot menus of an updatable disk list the default and the rollback deployment', () => {
  const a = { label: 'DD12345678', cmdline: 'console=ttyS0,115200 drydock.label=DD12345678' } as BootArtifacts;
  const sys = syslinuxConfig(a, '/vmlinuz', '/initrd.img', { menu: true });
  assert.match(sys, /^PROMPT 1$/m);
  assert.match(sys, /^LABEL drydock\n {2}KERNEL \/vmlinuz\n {2}INITRD \/initrd.img\n {2}APPEND console=ttyS0,115200 drydock.label=DD12345678$/m);
  assert.match(sys, /^LABEL rollback\n.*\n.*\n {2}APPEND console=ttyS0,115200 drydock.label=DD12345678 drydock.deployment=rollback$/m);
  assert.match(sys, /^SAY drydock: type "drydock" \(default deployment\) or "rollback"/m);
  assert.doesNotMatch(syslinuxConfig(a, '/vmlinuz', '/initrd.img'), /rollback/);
  const grub = grubConfig(a, '/vmlinuz', '/initrd.img', { fsUuid: '1234-5678' }, { menu: true });
  assert.equal(grub.match(/^menuentry /gm)?.length, DEPLOYMENT_MENU.length);
  assert.match(grub, /^menuentry 'drydock: rollback deployment \(the one before\)' --id rollback \{\n {2}linux \/vmlinuz .*drydock\.deployment=rollback\n/m);
  assert.match(grub, /^set timeout=3$/m);
});

test('os_write: two writers at once (the confirm step and a startup script) both land, nothing is truncated', async () => {
  const root = await fixture(pretty({ ...base, pending: { id: 'ppp', triesLeft: 1, deadlineSeconds: 30 }, booted: 'ppp' }), ['aaa', 'rrr', 'ppp']);
  const st = path.join(root, 'os/state.json');
  const r = sh('for i in 1 2 3 4 5 6 7 8; do os_write "$1" "a$i=$i" & done; wait; os_confirm "${1%/os/state.json}"; echo done', st);
  assert.match(r.stdout, /done/);
  assert.doesNotMatch(r.stdout + r.stderr, /cannot rewrite|invalid JSON/);
  const s = JSON.parse(await fsp.readFile(st, 'utf8'));
  for (let i = 1; i <= 8; i++) assert.equal(s[`a${i}`], i, `write ${i} kept`);
  assert.deepEqual([s.default, s.rollback, s.pending], ['ppp', 'aaa', null]);
});

test('os_write: a lock left by a writer killed with the machine does not block the next boot', async () => {
  const root = await fixture(pretty(base), ['aaa', 'rrr']);
  await fsp.mkdir(path.join(root, 'os/state.json.lock'));
  assert.equal(select(root).deployment, 'aaa');
  assert.equal(JSON.parse(await fsp.readFile(path.join(root, 'os/state.json'), 'utf8')).booted, 'aaa');
});

test('os_layer: each layer file by its name\'s ending, so a disk may hold squashfs and erofs layers', async () => {
  const root = path.join(work, 'layers');
  await fsp.mkdir(path.join(root, 'os/layers'), { recursive: true });
  const hex = (c: string) => c.repeat(64);
  // A squashfs disk upgraded after --layer-format erofs: old layers squashfs, new ones erofs;
  // temp files of an interrupted conversion are never picked.
  for (const f of [`${hex('a')}.squashfs`, `${hex('b')}.erofs`, `.${hex('c')}.erofs.tmp`, `${hex('d')}.erofs.tmp`]) {
    await fsp.writeFile(path.join(root, 'os/layers', f), 'x');
  }
  const cases: [string, string, number][] = [
    [hex('a'), `${root}/os/layers/${hex('a')}.squashfs squashfs`, 0],
    [hex('b'), `${root}/os/layers/${hex('b')}.erofs erofs`, 0],
    [hex('c'), '', 1],
    [hex('d'), '', 1],
  ];
  for (const [h, want, code] of cases) {
    const r = sh('os_layer "$1" "$2"', root, h);
    assert.deepEqual([r.stdout.trim(), r.code], [want, code], h);
  }
});

// The service of an updatable disk comes from the booted deployment's image config: the
// initramfs writes os_service_conf's output, and the top layer's service.conf (serviceConf with
// deploymentConf) sources it last. The disk's own additions (startup script, hostname, proxy)
// stay. Each case: the deployment's imageConfig, what the service then runs and sees.
interface ServiceCase {
  name: string;
  imageConfig: Record<string, unknown> | null;
  /** Lines the service prints, and its exit code. */
  output: string;
  code?: number;
  user?: string;
  workdir?: string;
  console?: string;
}

const SHOW = 'echo "cmd=$0 $* GREETING=$GREETING HOSTNAME=$HOSTNAME proxy=$http_proxy HOME=$HOME TERM=$TERM PATH=$PATH"';
const SERVICE_CASES: ServiceCase[] = [
  {
    name: 'v2 changed only its CMD: v2\'s command, its env, the disk\'s hostname and proxy',
    imageConfig: { Cmd: ['sh', '-c', `echo v2; ${SHOW}`, 'v2-arg0'], Env: ['PATH=/bin', 'GREETING=hello v2'] },
    output: 'v2\ncmd=v2-arg0  GREETING=hello v2 HOSTNAME=machine-7 proxy=http://proxy:3128 HOME=/root TERM= PATH=/bin\n',
  },
  {
    name: 'rollback to v1: v1\'s command again',
    imageConfig: { Cmd: ['sh', '-c', `echo v1; ${SHOW}`, 'v1-arg0'], Env: ['PATH=/bin', 'GREETING=hello v1'] },
    output: 'v1\ncmd=v1-arg0  GREETING=hello v1 HOSTNAME=machine-7 proxy=http://proxy:3128 HOME=/root TERM= PATH=/bin\n',
  },
  {
    name: 'ENTRYPOINT + CMD, WORKDIR, USER name:group resolved in the booted system, the image\'s own proxy wins',
    imageConfig: {
      Entrypoint: ['sh', '-c'], Cmd: [`echo "in $(basename "$(pwd)")"; ${SHOW}`, 'it\'s "quoted"\nand two lines'], WorkingDir: '/srv',
      User: 'app:staff', Env: ['GREETING=a=b', 'http_proxy=http://own:1', 'not-sh=x'],
    },
    output: 'in srv\ncmd=it\'s "quoted"\nand two lines  GREETING=a=b HOSTNAME=machine-7 proxy=http://own:1 HOME=/home/app TERM= PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n',
    user: '1000:50', workdir: '/srv',
  },
  {
    name: 'USER the booted system lacks: the service fails with the reason (and is never confirmed)',
    imageConfig: { Cmd: ['sh', '-c', 'echo should not run'], User: 'nobody-here' },
    output: '', code: 126,
  },
  {
    name: 'no command: a console shell, TERM=linux',
    imageConfig: { Env: ['PATH=/bin'] },
    output: '', console: '1',
  },
  {
    name: 'no readable image config: the top layer\'s service (the disk\'s image)',
    imageConfig: null,
    output: 'disk image\ncmd=disk  GREETING=from the disk image HOSTNAME=machine-7 proxy=http://proxy:3128 HOME=/root TERM= PATH=/bin\n',
  },
];

test('os_service_conf: the booted deployment\'s image config decides the service; the disk\'s customisations stay', async () => {
  const root = path.join(work, 'svc-root');
  await fsp.mkdir(path.join(root, 'etc'), { recursive: true });
  await fsp.mkdir(path.join(root, 'srv'), { recursive: true });
  await fsp.writeFile(path.join(root, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n');
  await fsp.writeFile(path.join(root, 'etc/group'), 'root:x:0:\nstaff:x:50:app\n');
  // The top layer's service.conf, as drydock disk writes it for the disk's image.
  const deploymentConf = path.join(work, 'os-service.conf');
  const top = path.join(work, 'service.conf');
  await fsp.writeFile(top, serviceConf({
    argv: ['sh', '-c', `echo disk image; ${SHOW}`, 'disk'], env: ['PATH=/bin', 'GREETING=from the disk image', 'HOSTNAME=machine-7', 'http_proxy=http://proxy:3128', 'HOME=/root'],
    workdir: '/', startup: ['/.drydock/startup'], deploymentConf, diskEnv: ['HOSTNAME=machine-7', 'http_proxy=http://proxy:3128'],
  }));
  for (const c of SERVICE_CASES) {
    await fsp.rm(deploymentConf, { force: true });
    if (c.imageConfig) {
      const dep = path.join(work, 'dep.json');
      await fsp.writeFile(dep, JSON.stringify({ id: 'ddd', layers: [], imageConfig: c.imageConfig }, null, 2));
      const gen = sh('os_service_conf "$1" "$2" ddd > "$3"', dep, root, deploymentConf);
      assert.equal(gen.code, 0, `${c.name}: ${gen.stderr}`);
    }
    // What run-service does (without the chroot and nsenter): source, export the env, cd, run.
    const r = sh(`. "$1"; for k in $(env | sed -n 's/^\\([A-Za-z_][A-Za-z0-9_]*\\)=.*/\\1/p'); do unset "$k" 2>/dev/null; done
for k in $SVC_ENV_NAMES; do eval "export $k=\\"\\$SVC_ENV_$k\\""; done
echo "USER=$SVC_USER WORKDIR=$SVC_WORKDIR CONSOLE=$SVC_CONSOLE STARTUP=$HAS_STARTUP" >&2
cd "$2$SVC_WORKDIR" && [ -z "$SVC_CONSOLE" ] && SVC_CMD`, top, root);
    assert.equal(r.stdout, c.output, c.name);
    if (c.code !== undefined) assert.equal(r.code, c.code, c.name);
    const meta = r.stderr.split('\n').find((l) => l.startsWith('USER='));
    assert.equal(meta, `USER=${c.user ?? ''} WORKDIR=${c.workdir ?? '/'} CONSOLE=${c.console ?? ''} STARTUP=1`, c.name);
    if (c.code === 126) assert.match(r.stderr, /drydock: deployment ddd: USER nobody-here: no user "nobody-here" in the image's \/etc\/passwd/);
    if (c.console) {
      // The root has no /bin/sh: busybox's, as the disk builder picks it.
      const conf = await fsp.readFile(deploymentConf, 'utf8');
      assert.match(conf, /^SVC_CMD\(\) \{ exec '\/\.drydock\/bin\/sh'; \}$/m);
      assert.match(conf, /SVC_ENV_TERM=linux/);
    }
  }
});

// The init of an updatable disk is the booted deployment's: the initramfs's os_init decides it
// from the deployment's image config and the system being booted, as the disk builder's
// chooseInit does for the disk's image, so a v2 that switches from a CMD-style image to one with
// its own init (or back) boots in its own mode. Each case: a root filesystem, the deployment's
// imageConfig and the disk's --init; the init booted and why. The disk builder's choice for the
// same root and config must agree (except where it refuses to build and the boot falls back).
interface InitCase {
  name: string;
  /** path → file content, or '@target' for a symlink. */
  tree: Record<string, string>;
  config: Record<string, unknown>;
  mode?: 'auto' | 'image' | 'drydock';
  init: string;
  reason: RegExp;
  /** chooseInit refuses this one (the disk would not build; a deployment falls back at boot). */
  builderRefuses?: boolean;
}

const BUSYBOX = { 'bin/busybox': '@busybox', 'bin/sh': '@busybox' };
const SYSTEMD_MERGED_USR = { bin: '@usr/bin', sbin: '@usr/sbin', lib: '@usr/lib', 'usr/sbin/init': '@../lib/systemd/systemd', 'usr/lib/systemd/systemd': 'systemd, not busybox', 'usr/bin/bash': 'bash' };
const INIT_CASES: InitCase[] = [
  { name: 'CMD-style busybox image: the drydock init runs the command', tree: { ...BUSYBOX, 'sbin/init': '@../bin/busybox' }, config: { Cmd: ['sh', '-c', 'httpd -f'] }, init: '/.drydock/init', reason: /supervised service/ },
  { name: 'busybox copied to /sbin/init (told by its content): the drydock init runs the command', tree: { 'sbin/init': '@busybox' }, config: { Cmd: ['/bin/app'] }, init: '/.drydock/init', reason: /supervised service/ },
  { name: 'busybox init as the command', tree: { ...BUSYBOX, 'sbin/init': '@/bin/busybox' }, config: { Cmd: ['/sbin/init'] }, init: '/sbin/init', reason: /the image command \/sbin\/init is an init/ },
  { name: 'busybox init, no command', tree: { ...BUSYBOX, 'sbin/init': '@../bin/busybox' }, config: {}, init: '/sbin/init', reason: /busybox init/ },
  { name: 'systemd (merged /usr, /sbin/init through two symlinks) with CMD bash', tree: SYSTEMD_MERGED_USR, config: { Cmd: ['bash'] }, init: '/sbin/init', reason: /has an init system/ },
  { name: 'systemd as ENTRYPOINT with one argument', tree: SYSTEMD_MERGED_USR, config: { Entrypoint: ['/lib/systemd/systemd'], Cmd: ['--log-level=info'] }, init: '/lib/systemd/systemd', reason: /the image command \/lib\/systemd\/systemd is an init/ },
  { name: 'systemd, --init drydock: the command as a service', tree: SYSTEMD_MERGED_USR, config: { Cmd: ['bash'] }, mode: 'drydock', init: '/.drydock/init', reason: /--init drydock/ },
  { name: 'CMD-style image, --init image', tree: { ...BUSYBOX, 'sbin/init': '@../bin/busybox' }, config: { Cmd: ['sh'] }, mode: 'image', init: '/sbin/init', reason: /--init image/ },
  { name: '--init image but the deployment has no /sbin/init: the drydock init', tree: BUSYBOX, config: { Cmd: ['sh', '-c', 'x'] }, mode: 'image', init: '/.drydock/init', reason: /no \/sbin\/init/, builderRefuses: true },
  { name: 'CMD names an init the image lacks: not an init', tree: BUSYBOX, config: { Cmd: ['/sbin/init'] }, init: '/.drydock/init', reason: /supervised service/ },
  { name: 'an init with more than one argument is a command', tree: SYSTEMD_MERGED_USR, config: { Entrypoint: ['/lib/systemd/systemd'], Cmd: ['a', 'b'] }, init: '/sbin/init', reason: /has an init system/ },
  { name: 'a /sbin/init symlink loop is no init', tree: { ...BUSYBOX, 'sbin/init': '@/sbin/init' }, config: { Cmd: ['sh', '-c', 'x'] }, init: '/.drydock/init', reason: /supervised service/ },
  { name: 'a dangling /sbin/init, no command: a console shell', tree: { 'sbin/init': '@/nowhere' }, config: {}, init: '/.drydock/init', reason: /console shell/ },
];

test('os_init: each deployment boots with its own image\'s init, as the disk builder would choose it', async () => {
  const busybox = requireTool('busybox');
  let i = 0;
  for (const c of INIT_CASES) {
    const root = path.join(work, `init-${i++}`);
    for (const [rel, body] of Object.entries(c.tree)) {
      const abs = path.join(root, rel);
      await fsp.mkdir(path.dirname(abs), { recursive: true });
      if (body === '@busybox') await fsp.copyFile(busybox, abs);
      else if (body.startsWith('@')) await fsp.symlink(body.slice(1), abs);
      else await fsp.writeFile(abs, body);
    }
    const dep = path.join(root, '..', `init-${i}.json`);
    await fsp.writeFile(dep, JSON.stringify({ id: 'ddd', layers: [], imageConfig: c.config }, null, 2));
    const r = sh('os_init "$1" "$2" "$3"; echo "rc=$? init=$OS_INIT reason=$OS_INIT_REASON"', dep, root, c.mode ?? 'auto');
    assert.equal(r.stderr, '', c.name);
    const m = /^rc=(\d+) init=(\S*) reason=(.*)$/m.exec(r.stdout);
    assert.ok(m, `${c.name}: ${r.stdout}`);
    assert.deepEqual([m[1], m[2]], ['0', c.init], c.name);
    assert.match(m[3]!, c.reason, c.name);
    const built = chooseInit(root, c.config, c.mode ?? 'auto');
    if (c.builderRefuses) await assert.rejects(built, /--init image: the image has no \/sbin\/init/, c.name);
    else assert.equal((await built).path, c.init, `${c.name}: the disk builder agrees`);
  }
  // An unreadable image config: 1, and the initramfs keeps the disk's init.
  const bad = path.join(work, 'init-bad.json');
  await fsp.writeFile(bad, '{"imageConfig": ');
  assert.notEqual(sh('os_init "$1" "$2" auto 2>/dev/null', bad, work).code, 0);
});
