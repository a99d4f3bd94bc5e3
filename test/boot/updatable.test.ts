// An updatable disk (`drydock disk --updates-from`) booted in QEMU (TCG here), five boots of one
// disk. The disk is made from app:v0 with squashfs layer files; then, as `drydock os upgrade`
// would after a change to erofs, the host adds the layers (as erofs files: the disk then holds
// both kinds, and v1 stacks a squashfs layer under an erofs one) and deployments of app:v1 and of app:v2bad (whose service exits at once, so it never
// reaches "service started") to the data partition with debugfs, and makes v1 pending.
//  1. v1 is tried, reaches "service started" and is confirmed (default v1, rollback v0); its
//     service then makes v2bad pending (state.json rewritten by rename, as upgrade does).
//  2. v2bad is tried; its watchdog reboots the machine at the deadline.
//  3. v2bad has used its tries: abandoned with the reason, v1 boots. Its service simulates an
//     upgrade's writes (a layer file, a deployment, state.json.tmp) and QEMU is SIGKILLed.
//  4. v1 boots again (the previous deployment), state.json intact.
//  5. "rollback" typed at the boot menu: v0 boots.
// Every boot sees /run/drydock/os with state.json, the same top layer, /var and /etc changes;
// `drydock os status` runs in the machine from the Node runtime the disk carries.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { tempDir, runCli, requireTool } from '../helpers/env.js';
import { busyboxImage } from '../helpers/images.js';
import { ContentStore, resolveImage } from '../../src/store/index.js';
import { StoreImageSource } from '../../src/client/store-transport.js';
import { OsLayout, stageImage } from '../../src/os/index.js';
import { fetchKernel } from './kernel.js';
import { bootVm } from './qemu.js';

const work = tempDir('drydock-updatable-');
const root = path.join(work, 'store');
const REF = '10.0.2.2:5000/os/app:stable';
const DEADLINE = 150;
const MiB = 1024 * 1024;
let kernel = '';
const ids: Record<string, string> = {};

// Shared by every version: the machine's view, one line the test reads.
const SEEN = `
R=/run/drydock/os
n=$(( $(cat /var/lib/app-count 2>/dev/null || echo 0) + 1 )); mkdir -p /var/lib; echo $n > /var/lib/app-count
[ -f /etc/note ] || echo "written-at-boot-$n" > /etc/note
sync   # the test kills some boots: what it checks later must be on the disk
echo "APP $VERSION count=$n top=$(cat /etc/top.txt) note=$(cat /etc/note) state-file=$(ls $R/os/state.json)"
`;

const v1Script = (v2: string) => `VERSION=v1
${SEEN}
. /run/drydock/os-boot.conf
# A try of a pending deployment: wait for the confirm step (it runs once "service started").
if [ -n "$OS_PENDING" ]; then i=0; while [ ! -e /run/drydock/os-confirmed ] && [ $i -lt 240 ]; do sleep 1; i=$((i + 1)); done; fi
echo "STATE $(tr -d '\\n' < $R/os/state.json)"
case $n in
  1)
    # As an upgrade does: the new files first (under their final names), then the switch.
    mv $R/incoming/layers/* $R/os/layers/ && mv $R/incoming/deployments/* $R/os/deployments/ && sync
    OS_AWK=/.drydock/osstate.awk; . /.drydock/os.sh
    os_write $R/os/state.json 'pending={"id":"${v2}","triesLeft":1,"deadlineSeconds":${DEADLINE}}'
    echo "STAGED $(tr -d '\\n' < $R/os/state.json)"
    echo STAGED-DONE ;;
  2)
    # An upgrade being written: a layer, a deployment, the next state.json, over and over.
    L=$(ls $R/os/layers | head -n 1)
    k=0
    while :; do
      cp $R/os/layers/$L $R/os/layers/.0123456789ab.squashfs.tmp
      echo '{"id":"0123456789ab","layers":["sha256:0123456789ab"]}' > $R/os/deployments/0123456789ab.json.tmp
      sed 's/"pending":null/"pending":{"id":"0123456789ab","triesLeft":3,"deadlineSeconds":60}/' $R/os/state.json > $R/os/state.json.tmp
      [ $k = 0 ] && echo UPGRADE-WRITING
      k=$((k + 1))
    done ;;
  *)
    # drydock os on the machine: the bundled Node runtime (the image has no node).
    /usr/local/bin/drydock os status --json > /tmp/status.json 2>&1
    echo "OS-STATUS $(tr -d '\n' < /tmp/status.json)"
    echo READY ;;
esac
sleep 600
`;

async function buildApp(tag: string, script: string): Promise<void> {
  const dir = path.join(work, `ctx-${tag}`);
  await fsp.mkdir(dir, { recursive: true });
  await fsp.writeFile(path.join(dir, 'run.sh'), script);
  await fsp.writeFile(path.join(dir, 'Dockerfile'), 'FROM busybox\nCOPY run.sh /app/run.sh\nCMD ["sh", "/app/run.sh"]\n');
  const r = await runCli(['build', '-q', '-t', tag, dir], { root });
  assert.equal(r.code, 0, r.stderr);
  const store = await ContentStore.open(root);
  ids[tag] = (await resolveImage(store, tag)).manifestDescriptor.digest.slice('sha256:'.length, 'sha256:'.length + 12);
}

const debugfs = (part: string, cmds: string[], write = false): string =>
  execFileSync('debugfs', [...(write ? ['-w'] : []), '-f', '-', part], { input: cmds.join('\n') + '\n', encoding: 'utf8', stdio: ['pipe', 'pipe', 'ignore'] });

let disk = '';

before(async () => {
  for (const t of ['mksquashfs', 'mkfs.erofs', 'mkfs.ext4', 'mkfs.vfat', 'mcopy', 'syslinux', 'sfdisk', 'debugfs', 'qemu-system-x86_64']) requireTool(t);
  kernel = fetchKernel();
  await busyboxImage(root);
  await buildApp('app:v0', `VERSION=v0\n${SEEN}\necho READY\nsleep 600\n`);
  await buildApp('app:v2bad', 'echo "APP v2bad: exiting at once"\nexit 1\n');
  await buildApp('app:v1', v1Script(ids['app:v2bad']!));
});

test('an updatable disk boots, confirms, falls back, survives a kill mid-upgrade and offers the rollback at boot', async () => {
  const top = path.join(work, 'top');
  await fsp.mkdir(path.join(top, 'etc'), { recursive: true });
  await fsp.writeFile(path.join(top, 'etc/top.txt'), 'machine-top\n');
  disk = path.join(work, 'disk.img');
  const r = await runCli(['disk', 'app:v0', '-o', disk, '--kernel', kernel, '--updates-from', REF, '--insecure-registry', '10.0.2.2:5000',
    '--boot-tries', '1', '--boot-deadline', String(DEADLINE), '--top-layer', top, '--layer-format', 'squashfs', '--json'], { root, timeoutMs: 400_000 });
  assert.equal(r.code, 0, r.stderr);
  const built = JSON.parse(r.stdout);
  assert.equal(built.updates.ref, REF);
  assert.equal(built.updates.deployment.id, ids['app:v0']);
  assert.ok(built.updates.runtimeBytes > 10 * MiB, 'node + drydock are on the medium: the image has no node');

  // The data partition as made: the contract's layout.
  const part = path.join(work, 'data.img');
  const { dataStart, dataSize } = built.layout;
  execFileSync('dd', [`if=${disk}`, `of=${part}`, 'bs=1M', `skip=${dataStart / MiB}`, `count=${dataSize / MiB}`, 'status=none']);
  const store = await ContentStore.open(root);
  const v0 = await resolveImage(store, 'app:v0');
  const hexes = v0.config.rootfs!.diff_ids.map((d) => d.replace('sha256:', ''));
  assert.equal(hexes.length, 2, 'busybox + the COPY layer');
  const ls = debugfs(part, ['ls -p /os/layers', 'ls -p /os', 'ls -p /os/deployments']);
  for (const h of hexes) assert.match(ls, new RegExp(`/${h}\\.squashfs/`));
  for (const d of ['top', 'var', 'etc', 'layers', 'deployments', 'state.json']) assert.match(ls, new RegExp(`/${d.replace('.', '\\.')}/`), d);
  assert.match(ls, new RegExp(`/${ids['app:v0']}\\.json/`));
  const state0 = JSON.parse(execFileSync('debugfs', ['-R', 'cat /os/state.json', part], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }));
  assert.deepEqual([state0.default, state0.rollback, state0.pending, state0.ref, state0.insecureRegistries], [ids['app:v0'], null, null, REF, ['10.0.2.2:5000']]);
  assert.equal(state0.layerFormat, 'squashfs', '--layer-format is recorded for the machine\'s upgrades');

  // What `drydock os upgrade` leaves before a reboot: new layers and deployments, then v1 pending.
  // v2bad's files wait in /incoming (v1's confirm deletes what no deployment references), and
  // v1's service moves them in before it stages v2bad.
  const stage = path.join(work, 'stage');
  const layout = new OsLayout(stage);
  await layout.create();
  for (const tag of ['app:v1', 'app:v2bad']) await stageImage(layout, new StoreImageSource(store, tag), REF, { layerFormat: 'erofs', kernel: false });
  const v1Layers = (await resolveImage(store, 'app:v1')).config.rootfs!.diff_ids.map((d) => d.replace('sha256:', ''));
  const cmds: string[] = ['mkdir /incoming', 'mkdir /incoming/layers', 'mkdir /incoming/deployments'];
  let added = 0;
  for (const f of await fsp.readdir(path.join(stage, 'os/layers'))) {
    if (hexes.some((h) => f.startsWith(h))) continue;
    assert.match(f, /^[0-9a-f]{64}\.erofs$/);
    added++;
    cmds.push(`write ${path.join(stage, 'os/layers', f)} /${v1Layers.some((h) => f.startsWith(h)) ? 'os' : 'incoming'}/layers/${f}`);
  }
  assert.equal(added, 2, 'only the COPY layers of v1 and v2bad are new; busybox is shared');
  for (const f of await fsp.readdir(path.join(stage, 'os/deployments'))) {
    cmds.push(`write ${path.join(stage, 'os/deployments', f)} /${f.startsWith(ids['app:v1']!) ? 'os' : 'incoming'}/deployments/${f}`);
  }
  await fsp.writeFile(path.join(work, 'state.json'), JSON.stringify({ ...state0, pending: { id: ids['app:v1'], triesLeft: 1, deadlineSeconds: DEADLINE } }, null, 2));
  cmds.push('rm /os/state.json', `write ${path.join(work, 'state.json')} /os/state.json`);
  debugfs(part, cmds, true);
  execFileSync('dd', [`if=${part}`, `of=${disk}`, 'bs=1M', `seek=${dataStart / MiB}`, 'conv=notrunc', 'status=none']);

  const qemu = ['-drive', `file=${disk},format=raw,if=virtio`, '-nic', 'none'];
  const v1 = ids['app:v1']!, v0id = ids['app:v0']!, v2 = ids['app:v2bad']!;
  const stateOf = (console: string, tag: string) => {
    const m = new RegExp(`^${tag} (\\{.*\\})\\s*$`, 'm').exec(console);
    assert.ok(m, `no ${tag} line on the console:\n${console.slice(-4000)}`);
    return JSON.parse(m[1]!);
  };

  // 1: v1 is tried and confirmed; it then stages v2bad.
  const b1 = await bootVm(qemu, { until: /STAGED-DONE/, timeoutMs: 300_000 });
  assert.match(b1.console, new RegExp(`drydock: deployment ${v1}: pending deployment, try 1`));
  assert.match(b1.console, /APP v1 count=1 top=machine-top note=written-at-boot-1 state-file=\/run\/drydock\/os\/os\/state.json/);
  assert.match(b1.console, new RegExp(`deployment ${v1} reached service started; it is now the default`));
  const s1 = stateOf(b1.console, 'STATE');
  assert.deepEqual([s1.default, s1.rollback, s1.pending, s1.booted], [v1, v0id, null, v1]);
  assert.equal(stateOf(b1.console, 'STAGED').pending.id, v2);

  // 2: v2bad never reaches "service started"; the watchdog reboots at the deadline.
  const b2 = await bootVm(qemu, { timeoutMs: 400_000 });
  assert.ok(b2.poweredOff, 'the machine rebooted itself (QEMU -no-reboot exits)');
  assert.match(b2.console, new RegExp(`drydock: deployment ${v2}: pending deployment, try 1`));
  assert.match(b2.console, /APP v2bad: exiting at once/);
  assert.match(b2.console, new RegExp(`deployment ${v2} did not reach service started within ${DEADLINE}s; rebooting`));
  assert.doesNotMatch(b2.console, /service started \(pid/);

  // 3: v2bad abandoned, v1 runs; killed while an upgrade is being written.
  const b3 = await bootVm(qemu, { until: /UPGRADE-WRITING/, timeoutMs: 300_000 });
  assert.match(b3.console, new RegExp(`abandoning deployment ${v2}: did not reach service started within ${DEADLINE}s on 1 boot`));
  assert.match(b3.console, new RegExp(`drydock: deployment ${v1}: the default deployment`));
  assert.match(b3.console, /APP v1 count=2 top=machine-top note=written-at-boot-1/);
  const s3 = stateOf(b3.console, 'STATE');
  assert.deepEqual([s3.default, s3.rollback, s3.pending], [v1, v0id, null]);
  assert.equal(s3.abandoned.length, 1);
  assert.deepEqual([s3.abandoned[0].id, s3.abandoned[0].reason], [v2, `did not reach service started within ${DEADLINE}s on 1 boot`]);

  // 4: after SIGKILL mid-write, the deployment booted before.
  const b4 = await bootVm(qemu, { until: /READY/, timeoutMs: 300_000 });
  assert.match(b4.console, new RegExp(`drydock: deployment ${v1}: the default deployment`));
  assert.match(b4.console, /APP v1 count=3 top=machine-top note=written-at-boot-1/);
  const s4 = stateOf(b4.console, 'STATE');
  assert.deepEqual([s4.default, s4.rollback, s4.pending, s4.abandoned.length], [v1, v0id, null, 1]);
  // `drydock os status` in the machine, from the Node runtime the disk carries; it says why v2bad was dropped.
  const st = stateOf(b4.console, 'OS-STATUS');
  assert.deepEqual([st.booted, st.default, st.rollback, st.staged], [v1, v1, v0id, null]);
  assert.deepEqual(st.abandoned.map((a: { id: string; reason: string }) => [a.id, a.reason]), [[v2, `did not reach service started within ${DEADLINE}s on 1 boot`]]);

  // 5: the boot menu's rollback entry.
  const b5 = await bootVm(qemu, { until: /READY/, timeoutMs: 300_000, type: [[/boot: /, 'rollback\r']] });
  // syslinux draws the prompt on the screen too, and its cursor moves reach the serial console
  // in the middle of the line: compare the text without escape sequences.
  const prompt = b5.console.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '');
  assert.match(prompt, /type "drydock" \(default deployment\) or "rollback"/);
  assert.match(b5.console, new RegExp(`drydock: deployment ${v0id}: the rollback deployment, picked at boot`));
  assert.match(b5.console, /APP v0 count=4 top=machine-top note=written-at-boot-1/);
});
