// The confirm step of an updatable disk whose image boots its own init (docs/boot.md, "Automatic
// fallback"): which file the top layer gets for systemd, OpenRC, sysvinit and busybox init, and
// systemd's own checker on the unit (systemd-analyze verify, in a root holding systemd's units).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync, execFileSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { requireTool, tempDir } from '../helpers/env.js';
import { buildBusyboxRootfs } from '../../src/mkimage/busybox-rootfs.js';
import { buildTopLayer, OS_CONFIRM_UNIT, STARTUP_RC } from '../../src/boot/toplayer.js';
import { validateBootOptions } from '../../src/boot/config.js';

const work = tempDir('drydock-confirm-units-');

test('systemd-analyze verify accepts drydock-os-confirm.service without a warning', async () => {
  requireTool('systemd-analyze', 'apt-get install systemd');
  const root = path.join(work, 'sa-root');
  await fsp.mkdir(path.join(root, 'etc/systemd/system'), { recursive: true });
  await fsp.mkdir(path.join(root, 'usr/lib/systemd'), { recursive: true });
  execFileSync('cp', ['-a', '/usr/lib/systemd/system', path.join(root, 'usr/lib/systemd/')]);
  await fsp.mkdir(path.join(root, '.drydock'));
  await fsp.writeFile(path.join(root, '.drydock/os-boot'), '#!/bin/sh\n', { mode: 0o755 });
  const check = async (unit: string) => {
    await fsp.writeFile(path.join(root, 'etc/systemd/system/drydock-os-confirm.service'), unit);
    return spawnSync('systemd-analyze', ['verify', `--root=${root}`, '/etc/systemd/system/drydock-os-confirm.service'], { encoding: 'utf8' });
  };
  const ok = await check(OS_CONFIRM_UNIT);
  assert.equal(ok.status, 0, ok.stderr);
  assert.equal(ok.stderr.trim(), '');
  // The checker does catch a broken unit.
  const bad = await check(OS_CONFIRM_UNIT.replace('ExecStart=/.drydock/os-boot', 'ExecStart=/.drydock/missing'));
  assert.match(bad.stderr, /not executable/);
});

const cases: { name: string; setup: (rootfs: string) => Promise<void>; files: Record<string, RegExp>; links: Record<string, string> }[] = [
  {
    name: 'systemd',
    setup: async (r) => {
      await fsp.mkdir(path.join(r, 'lib/systemd'), { recursive: true });
      await fsp.writeFile(path.join(r, 'lib/systemd/systemd'), 'not busybox');
      await fsp.rm(path.join(r, 'sbin/init'));
      await fsp.symlink('/lib/systemd/systemd', path.join(r, 'sbin/init'));
    },
    files: { 'etc/systemd/system/drydock-os-confirm.service': /^ExecStart=\/\.drydock\/os-boot confirm$/m },
    links: { 'etc/systemd/system/multi-user.target.wants/drydock-os-confirm.service': '../drydock-os-confirm.service' },
  },
  {
    name: 'openrc',
    setup: async (r) => {
      await fsp.writeFile(path.join(r, 'sbin/openrc'), 'not busybox');
      await fsp.mkdir(path.join(r, 'etc/runlevels/default'), { recursive: true });
    },
    files: { 'etc/init.d/drydock-os-confirm': /^#!\/sbin\/openrc-run\n[\s\S]*depend\(\) \{ after \*; \}/ },
    links: { 'etc/runlevels/default/drydock-os-confirm': '/etc/init.d/drydock-os-confirm' },
  },
  {
    name: 'sysvinit',
    setup: async (r) => { for (const l of ['2', '3', '4', '5']) await fsp.mkdir(path.join(r, `etc/rc${l}.d`), { recursive: true }); },
    files: { 'etc/init.d/drydock-os-confirm': /^# Default-Start: +2 3 4 5$/m },
    links: Object.fromEntries(['2', '3', '4', '5'].map((l) => [`etc/rc${l}.d/S99drydock-os-confirm`, '../init.d/drydock-os-confirm'])),
  },
  {
    name: 'busybox init',
    setup: async (r) => { await fsp.mkdir(path.join(r, 'etc/init.d'), { recursive: true }); await fsp.writeFile(path.join(r, 'etc/init.d/rcS'), '#!/bin/sh\necho image rcS\n', { mode: 0o755 }); },
    // rcS itself is left alone: the initramfs appends the call to the booted deployment's rcS.
    files: { 'etc/init.d/drydock-os-confirm': /start\) \/\.drydock\/os-boot confirm/ },
    links: {},
  },
];

for (const c of cases) {
  test(`own init (${c.name}): the updatable disk's top layer confirms at the end of the boot`, async () => {
    const rootfs = path.join(work, `rootfs-${c.name.replace(/ /g, '-')}`);
    await fsp.mkdir(rootfs);
    await buildBusyboxRootfs(rootfs);
    await c.setup(rootfs);
    const layer = path.join(work, `layer-${c.name.replace(/ /g, '-')}`);
    const r = await buildTopLayer(layer, rootfs, {}, await validateBootOptions({ 'updates-from': '10.0.2.2:5000/os/x:1', init: 'image' }));
    assert.equal(r.init.mode, 'image');
    for (const [f, re] of Object.entries(c.files)) assert.match(await fsp.readFile(path.join(layer, f), 'utf8'), re, f);
    for (const [l, target] of Object.entries(c.links)) assert.equal(await fsp.readlink(path.join(layer, l)), target, l);
    assert.ok((await fsp.stat(path.join(layer, '.drydock/os-boot'))).mode & 0o111, 'os-boot is executable');
    // The same image without --updates-from: nothing to confirm.
    const plain = path.join(work, `plain-${c.name.replace(/ /g, '-')}`);
    await buildTopLayer(plain, rootfs, {}, await validateBootOptions({ init: 'image' }));
    await assert.rejects(fsp.lstat(path.join(plain, Object.keys(c.files)[0]!)));
    if (c.name === 'busybox init') {
      await assert.rejects(fsp.lstat(path.join(layer, 'etc/init.d/rcS')), 'no top-layer copy of rcS');
      await assert.rejects(fsp.lstat(path.join(layer, 'etc/rc2.d')), 'no rc dirs: the initramfs takes their absence for busybox init');
    }
  });
}

// An updatable disk boots each deployment in its own image's mode (the initramfs's os_init), so
// its top layer carries the drydock init and every confirm step, whichever mode the disk's own
// image boots in: a v2 may switch from a CMD to systemd or busybox init, or back.
const BOTH_MODES: { name: string; setup: (rootfs: string) => Promise<void>; config: Record<string, unknown>; mode: 'image' | 'drydock'; rcScript: boolean }[] = [
  { name: 'a CMD-style image', setup: async () => {}, config: { Cmd: ['sh', '-c', 'httpd -f'] }, mode: 'drydock', rcScript: true },
  { name: 'an image with systemd', setup: cases[0]!.setup, config: {}, mode: 'image', rcScript: false },
  { name: 'an image with busybox init', setup: cases[3]!.setup, config: { Cmd: ['/sbin/init'] }, mode: 'image', rcScript: true },
];

for (const c of BOTH_MODES) {
  test(`updatable disk of ${c.name}: the top layer has the drydock init and the confirm steps of the image's own init`, async () => {
    const slug = c.name.replace(/\W+/g, '-');
    const rootfs = path.join(work, `both-rootfs-${slug}`);
    await fsp.mkdir(rootfs);
    await buildBusyboxRootfs(rootfs);
    await c.setup(rootfs);
    const layer = path.join(work, `both-layer-${slug}`);
    const r = await buildTopLayer(layer, rootfs, c.config, await validateBootOptions({ 'updates-from': '10.0.2.2:5000/os/x:1' }));
    assert.equal(r.init.mode, c.mode);
    for (const f of ['.drydock/init', '.drydock/run-service', '.drydock/os-boot']) assert.ok((await fsp.stat(path.join(layer, f))).mode & 0o111, `${f} is executable`);
    // The service.conf falls back to the disk's image; the booted deployment's replaces it at boot.
    assert.match(await fsp.readFile(path.join(layer, '.drydock/service.conf'), 'utf8'), /^\[ -f \/run\/drydock\/os-service\.conf \] && \. \/run\/drydock\/os-service\.conf$/m);
    assert.equal(await fsp.readFile(path.join(layer, 'etc/systemd/system/drydock-os-confirm.service'), 'utf8'), OS_CONFIRM_UNIT);
    assert.equal(await fsp.readlink(path.join(layer, 'etc/systemd/system/multi-user.target.wants/drydock-os-confirm.service')), '../drydock-os-confirm.service');
    const rc = await fsp.readFile(path.join(layer, 'etc/init.d/drydock-os-confirm'), 'utf8').catch(() => undefined);
    if (c.rcScript) assert.match(rc ?? '', /start\) \/\.drydock\/os-boot confirm/);
    else assert.equal(rc, undefined, 'no /etc/init.d script for systemd-sysv-generator to turn into a second unit');
    // Not updatable: only the mode the disk boots in.
    const plain = path.join(work, `both-plain-${slug}`);
    await buildTopLayer(plain, rootfs, c.config, await validateBootOptions({}));
    assert.equal(!!(await fsp.lstat(path.join(plain, '.drydock/init')).catch(() => undefined)), c.mode === 'drydock');
    await assert.rejects(fsp.lstat(path.join(plain, 'etc/systemd/system/drydock-os-confirm.service')));
  });
}

// The startup script on an updatable disk runs under whichever init a deployment boots: the
// drydock init's service.conf, systemd's unit, OpenRC's local.d, and for busybox init the call in
// /.drydock/startup.rc that the initramfs appends to the booted deployment's own rcS (a top-layer
// rcS would hide every later deployment's). Without --updates-from, only the disk image's init.
for (const c of BOTH_MODES) {
  test(`updatable disk of ${c.name} with --startup-script: every init runs it, no top-layer rcS`, async () => {
    const slug = c.name.replace(/\W+/g, '-');
    const rootfs = path.join(work, `startup-rootfs-${slug}`);
    await fsp.mkdir(rootfs);
    await buildBusyboxRootfs(rootfs);
    await c.setup(rootfs);
    const script = path.join(work, `startup-${slug}.sh`);
    await fsp.writeFile(script, '#!/bin/sh\necho started\n');
    const layer = path.join(work, `startup-layer-${slug}`);
    await buildTopLayer(layer, rootfs, c.config, await validateBootOptions({ 'updates-from': '10.0.2.2:5000/os/x:1', 'startup-script': script }));
    assert.match(await fsp.readFile(path.join(layer, '.drydock/service.conf'), 'utf8'), /^STARTUP\(\) \{ '\/\.drydock\/startup'; \}$/m);
    assert.match(await fsp.readFile(path.join(layer, 'etc/systemd/system/drydock-startup.service'), 'utf8'), /^ExecStart=\/\.drydock\/startup$/m);
    assert.equal(await fsp.readlink(path.join(layer, 'etc/systemd/system/multi-user.target.wants/drydock-startup.service')), '../drydock-startup.service');
    assert.equal(await fsp.readFile(path.join(layer, 'etc/local.d/drydock.start'), 'utf8'), "#!/bin/sh\n'/.drydock/startup'\n");
    assert.equal(await fsp.readFile(path.join(layer, `.drydock/${STARTUP_RC}`), 'utf8'), "'/.drydock/startup'\n");
    const imageRcS = await fsp.readFile(path.join(rootfs, 'etc/init.d/rcS'), 'utf8').catch(() => undefined);
    await assert.rejects(fsp.lstat(path.join(layer, 'etc/init.d/rcS')), `no top-layer rcS (the image's: ${JSON.stringify(imageRcS)})`);
    // Not updatable, busybox init: the disk's own rcS gets the call, once and for all.
    if (c.name === 'an image with busybox init') {
      const plain = path.join(work, `startup-plain-${slug}`);
      await buildTopLayer(plain, rootfs, c.config, await validateBootOptions({ 'startup-script': script }));
      assert.equal(await fsp.readFile(path.join(plain, 'etc/init.d/rcS'), 'utf8'), "#!/bin/sh\necho image rcS\n'/.drydock/startup'\n");
      await assert.rejects(fsp.lstat(path.join(plain, `.drydock/${STARTUP_RC}`)));
    }
  });
}
