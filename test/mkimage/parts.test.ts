// The pieces of mkimage that do not need the store: mirror detection from apt sources, package
// counting, debootstrap's command line, timezone, and the scratch dir that must vanish (with
// its mounts) on every exit path.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { tempDir, requireRoot, requireTool } from '../helpers/env.js';
import { debianMirrorFrom, debianSecurityMirrorFrom, parseDeb822Sources, parseOneLineSources, hostDebianMirror, FALLBACK_MIRROR } from '../../src/mkimage/mirror.js';
import { aptSourcesFor, securityMirrorFor, writeAptSources } from '../../src/mkimage/apt-sources.js';
import { countDpkgStatus, countApkInstalled, countPackages } from '../../src/mkimage/packages.js';
import { debootstrapArgs, slimDebianRootfs, pinShadowDates } from '../../src/mkimage/debootstrap.js';
import { setTimezone } from '../../src/mkimage/timezone.js';
import { withScratchDir, mountsUnder } from '../../src/mkimage/scratch.js';
import { buildBusyboxRootfs } from '../../src/mkimage/busybox-rootfs.js';

const work = tempDir('drydock-mkimage-parts-');

test('host Debian mirror from apt sources (both formats)', async (t) => {
  const cases: { name: string; list?: string; sources?: string; want: string | undefined }[] = [
    {
      name: 'deb822 with security stanza first',
      sources: 'Types: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\nComponents: main\n\n'
        + 'Types: deb\n# comment\nURIs: http://mirror.internal/debian/\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n',
      want: 'http://mirror.internal/debian',
    },
    {
      name: 'one-line with options and a deb-src line',
      list: 'deb-src http://a.example/debian bookworm main\n# deb http://old/debian buster main\ndeb [arch=amd64 signed-by=/k.gpg] http://apt-cache:3142/debian bookworm main contrib\n',
      want: 'http://apt-cache:3142/debian',
    },
    { name: 'third-party repo only', list: 'deb https://packages.cloud.google.com/apt cloud-sdk-bookworm main\n', want: undefined },
    { name: 'disabled stanza', sources: 'Enabled: no\nTypes: deb\nURIs: http://x/debian\nSuites: bookworm\nComponents: main\n', want: undefined },
    {
      name: 'proxy path without /debian but Debian keyring',
      sources: 'Types: deb\nURIs: http://proxy.local/deb-mirror\nSuites: bookworm\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n',
      want: 'http://proxy.local/deb-mirror',
    },
  ];
  for (const c of cases) {
    await t.test(c.name, async () => {
      const sources = [...parseOneLineSources(c.list ?? ''), ...parseDeb822Sources(c.sources ?? '')];
      assert.equal(debianMirrorFrom(sources), c.want);
      // The same through the files, as hostDebianMirror reads them.
      const apt = path.join(work, `apt-${c.name.replace(/\W+/g, '-')}`);
      await fsp.mkdir(path.join(apt, 'sources.list.d'), { recursive: true });
      if (c.list) await fsp.writeFile(path.join(apt, 'sources.list'), c.list);
      if (c.sources) await fsp.writeFile(path.join(apt, 'sources.list.d/debian.sources'), c.sources);
      assert.equal(await hostDebianMirror(apt), c.want ?? FALLBACK_MIRROR);
    });
  }
});

test('the image\'s apt sources: updates and security like the official images', async (t) => {
  const K = 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg';
  const cases: { name: string; opts: Parameters<typeof aptSourcesFor>[0]; file: string; content: string }[] = [
    {
      name: 'bookworm from deb.debian.org: deb822 with updates and security',
      opts: { suite: 'bookworm', mirror: 'http://deb.debian.org/debian/', securityMirror: securityMirrorFor('http://deb.debian.org/debian/', undefined) },
      file: 'etc/apt/sources.list.d/debian.sources',
      content: `Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\nComponents: main\n${K}\n\n`
        + `Types: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\nComponents: main\n${K}\n`,
    },
    {
      name: 'private mirror without a known security archive: no security source',
      opts: { suite: 'trixie', mirror: 'http://mirror.internal/debian', components: ['main', 'contrib'], securityMirror: securityMirrorFor('http://mirror.internal/debian', undefined) },
      file: 'etc/apt/sources.list.d/debian.sources',
      content: `Types: deb\nURIs: http://mirror.internal/debian\nSuites: trixie trixie-updates\nComponents: main contrib\n${K}\n`,
    },
    {
      name: 'sid has no updates or security suites',
      opts: { suite: 'sid', mirror: 'http://deb.debian.org/debian', securityMirror: 'http://deb.debian.org/debian-security' },
      file: 'etc/apt/sources.list.d/debian.sources',
      content: `Types: deb\nURIs: http://deb.debian.org/debian\nSuites: sid\nComponents: main\n${K}\n`,
    },
    {
      name: 'buster: one-line sources.list, old security suite name',
      opts: { suite: 'buster', mirror: 'http://archive.debian.org/debian', securityMirror: 'http://sec.local/debian-security' },
      file: 'etc/apt/sources.list',
      content: 'deb http://archive.debian.org/debian buster main\ndeb http://archive.debian.org/debian buster-updates main\ndeb http://sec.local/debian-security buster/updates main\n',
    },
  ];
  for (const c of cases) {
    await t.test(c.name, () => assert.deepEqual(aptSourcesFor(c.opts), { file: c.file, content: c.content }));
  }
  // The host's own security source wins over the deb.debian.org default.
  const host = parseDeb822Sources('Types: deb\nURIs: http://sec.mirror.internal/debian-security/\nSuites: bookworm-security\nComponents: main\n');
  assert.equal(securityMirrorFor('http://mirror.internal/debian', debianSecurityMirrorFrom(host)), 'http://sec.mirror.internal/debian-security');
  // debootstrap's sources.list is replaced by the deb822 file.
  const root = path.join(work, 'aptroot');
  await fsp.mkdir(path.join(root, 'etc/apt'), { recursive: true });
  await fsp.writeFile(path.join(root, 'etc/apt/sources.list'), 'deb http://deb.debian.org/debian bookworm main\n');
  await writeAptSources(root, cases[0]!.opts);
  await assert.rejects(fsp.lstat(path.join(root, 'etc/apt/sources.list')));
  assert.equal(await fsp.readFile(path.join(root, 'etc/apt/sources.list.d/debian.sources'), 'utf8'), cases[0]!.content);
});

test('package counting from dpkg status and apk db', async () => {
  const status = [
    'Package: base-files\nStatus: install ok installed\nVersion: 12.4',
    'Package: gone\nStatus: deinstall ok config-files\nVersion: 1',
    'Package: dash\nStatus: install ok installed\nDescription: x\n multi-line',
    'Package: half\nStatus: install ok half-configured',
  ].join('\n\n') + '\n';
  assert.equal(countDpkgStatus(status), 2);
  assert.equal(countApkInstalled('C:Q1abc\nP:musl\nV:1.2\n\nC:Q1def\nP:busybox\nV:1.36\n'), 2);
  const root = path.join(work, 'pkgroot');
  await fsp.mkdir(path.join(root, 'var/lib/dpkg'), { recursive: true });
  await fsp.writeFile(path.join(root, 'var/lib/dpkg/status'), status);
  assert.deepEqual(await countPackages(root), { manager: 'dpkg', count: 2 });
  assert.equal(await countPackages(path.join(work, 'nothing-here')), undefined);
});

test('debootstrap command line and its validation', async (t) => {
  const ok: { opts: Parameters<typeof debootstrapArgs>[1]; want: string[] }[] = [
    { opts: { mirror: 'http://m/debian' }, want: ['--force-check-gpg', '--variant=minbase', 'bookworm', '/t', 'http://m/debian'] },
    {
      opts: { mirror: 'http://m/debian', suite: 'trixie', variant: 'standard', include: ['curl,ca-certificates', 'git'], exclude: ['e2fsprogs'], components: ['main,contrib'], arch: 'arm64' },
      want: ['--force-check-gpg', '--include=curl,ca-certificates,git', '--exclude=e2fsprogs', '--components=main,contrib', '--arch=arm64', 'trixie', '/t', 'http://m/debian'],
    },
  ];
  for (const c of ok) assert.deepEqual(debootstrapArgs('/t', c.opts), c.want);
  const bad: { name: string; opts: Parameters<typeof debootstrapArgs>[1]; message: RegExp }[] = [
    { name: 'suite with a slash', opts: { mirror: 'http://m/debian', suite: '../etc' }, message: /invalid suite/ },
    { name: 'unknown variant', opts: { mirror: 'http://m/debian', variant: 'tiny' }, message: /invalid variant/ },
    { name: 'option smuggled as a package', opts: { mirror: 'http://m/debian', include: ['--foo'] }, message: /invalid package name "--foo"/ },
    { name: 'ftp mirror', opts: { mirror: 'ftp://m/debian' }, message: /http\(s\):\/\/ or file:\/\// },
    { name: 'not a URL', opts: { mirror: 'mirror.example' }, message: /invalid mirror URL/ },
  ];
  for (const c of bad) await t.test(c.name, () => assert.throws(() => debootstrapArgs('/t', c.opts), c.message));
});

test('timezone: copies the zone from the host, replaces an existing localtime link', async () => {
  const root = path.join(work, 'tzroot');
  await fsp.mkdir(path.join(root, 'etc'), { recursive: true });
  await fsp.symlink('/usr/share/zoneinfo/Etc/UTC', path.join(root, 'etc/localtime'));
  const r = await setTimezone(root, 'Europe/Berlin');
  assert.equal(r.copiedFromHost, true);
  assert.equal(await fsp.readlink(path.join(root, 'etc/localtime')), '/usr/share/zoneinfo/Europe/Berlin');
  assert.equal(await fsp.readFile(path.join(root, 'etc/timezone'), 'utf8'), 'Europe/Berlin\n');
  const zone = await fsp.readFile(path.join(root, 'usr/share/zoneinfo/Europe/Berlin'));
  assert.equal(zone.subarray(0, 4).toString(), 'TZif');
  // The host's UTC zone file was not touched through the old absolute link.
  assert.equal((await fsp.readFile('/usr/share/zoneinfo/Etc/UTC')).subarray(0, 4).toString(), 'TZif');
  await assert.rejects(setTimezone(root, 'Mars/Olympus_Mons'), /unknown timezone "Mars\/Olympus_Mons"/);
  await assert.rejects(setTimezone(root, '../../etc/passwd'), /invalid timezone/);
});

test('writes into a rootfs never follow its symlinks out of it', async () => {
  const root = path.join(work, 'evilroot');
  const outside = path.join(work, 'outside');
  await fsp.mkdir(outside, { recursive: true });
  await fsp.mkdir(root, { recursive: true });
  // An absolute symlink means "/" of the image; a host-side follow would write into `outside`.
  await fsp.symlink(outside, path.join(root, 'etc'));
  await setTimezone(root, 'UTC');
  assert.deepEqual(await fsp.readdir(outside), []);
  assert.ok((await fsp.lstat(path.join(root, outside, 'timezone'))).isFile());
});

test('debian slimming: caches, lists, logs, device nodes and host files go; apt tuning is added', async () => {
  requireRoot();
  const root = path.join(work, 'debroot');
  const files = [
    'var/cache/apt/pkgcache.bin', 'var/cache/apt/archives/x.deb', 'var/lib/apt/lists/deb.debian.org_dists_bookworm_InRelease',
    'var/log/dpkg.log', 'var/log/apt/history.log', 'etc/resolv.conf', 'etc/hostname', 'var/lib/dpkg/status-old', 'tmp/junk',
    'debootstrap/debootstrap.log', 'var/lib/dpkg/status',
  ];
  for (const f of files) {
    await fsp.mkdir(path.dirname(path.join(root, f)), { recursive: true });
    await fsp.writeFile(path.join(root, f), 'x');
  }
  await fsp.mkdir(path.join(root, 'var/lib/apt/lists/partial'), { recursive: true });
  await fsp.mkdir(path.join(root, 'dev'), { recursive: true });
  execFileSync('mknod', [path.join(root, 'dev/null'), 'c', '1', '3']);
  await fsp.writeFile(path.join(root, 'etc/machine-id'), 'abc\n');
  await slimDebianRootfs(root);
  const gone = files.filter((f) => f !== 'var/lib/dpkg/status');
  for (const f of gone) await assert.rejects(fsp.lstat(path.join(root, f)), `${f} should be removed`);
  assert.deepEqual(await fsp.readdir(path.join(root, 'dev')), []);
  assert.ok((await fsp.stat(path.join(root, 'var/log/apt'))).isDirectory(), 'log directories stay');
  assert.ok((await fsp.stat(path.join(root, 'var/lib/apt/lists/partial'))).isDirectory());
  assert.equal(await fsp.readFile(path.join(root, 'etc/machine-id'), 'utf8'), '');
  assert.match(await fsp.readFile(path.join(root, 'etc/apt/apt.conf.d/docker-clean'), 'utf8'), /pkgcache ""/);
  assert.equal((await fsp.stat(path.join(root, 'usr/sbin/policy-rc.d'))).mode & 0o777, 0o755);
  assert.equal(await fsp.readFile(path.join(root, 'var/lib/dpkg/status'), 'utf8'), 'x');
});

test('SOURCE_DATE_EPOCH pins the password-change day in /etc/shadow', async () => {
  const root = path.join(work, 'shadowroot');
  await fsp.mkdir(path.join(root, 'etc'), { recursive: true });
  await fsp.writeFile(path.join(root, 'etc/shadow'), 'root:*:20412:0:99999:7:::\ndaemon:*:20412:0:99999:7:::\nnolast:*::0:99999:7:::\n', { mode: 0o640 });
  await pinShadowDates(root, 1700000000);
  assert.equal(await fsp.readFile(path.join(root, 'etc/shadow'), 'utf8'), 'root:*:19675:0:99999:7:::\ndaemon:*:19675:0:99999:7:::\nnolast:*::0:99999:7:::\n');
  assert.equal((await fsp.stat(path.join(root, 'etc/shadow'))).mode & 0o777, 0o640, 'mode kept');
});

test('scratch dir: removed after success and failure, mounts inside are unmounted first', async () => {
  requireRoot();
  requireTool('mount');
  const parent = path.join(work, 'scratch');
  let seen = '';
  await withScratchDir(parent, 'ok-', async (s) => { seen = s.dir; await fsp.writeFile(path.join(s.dir, 'f'), 'x'); });
  await assert.rejects(fsp.lstat(seen));
  // A failing build with a live proc mount inside (what debootstrap leaves when killed).
  const sentinel = path.join(work, 'sentinel');
  await fsp.writeFile(sentinel, 'keep');
  await assert.rejects(withScratchDir(parent, 'fail-', async (s) => {
    seen = s.dir;
    await fsp.mkdir(path.join(s.dir, 'rootfs/proc'), { recursive: true });
    execFileSync('mount', ['-t', 'proc', 'proc', path.join(s.dir, 'rootfs/proc')]);
    await fsp.mkdir(path.join(s.dir, 'rootfs/bind'), { recursive: true });
    execFileSync('mount', ['--bind', work, path.join(s.dir, 'rootfs/bind')]);
    assert.equal((await mountsUnder(s.dir)).length, 2);
    throw new Error('boom');
  }), /boom/);
  await assert.rejects(fsp.lstat(seen));
  assert.deepEqual(await mountsUnder(parent), []);
  assert.equal(await fsp.readFile(sentinel, 'utf8'), 'keep', 'nothing deleted through the bind mount');
});

test('busybox rootfs layout: applet links, passwd/group, sticky /tmp, empty /dev', async () => {
  requireTool('busybox', 'apt-get install busybox-static');
  const root = path.join(work, 'bbroot');
  await fsp.mkdir(root);
  const { applets } = await buildBusyboxRootfs(root);
  assert.ok(applets > 100, `busybox has ${applets} applets`);
  assert.equal(await fsp.readlink(path.join(root, 'bin/sh')), '../bin/busybox');
  assert.equal(await fsp.readlink(path.join(root, 'usr/bin/wget')), '../../bin/busybox');
  assert.match(await fsp.readFile(path.join(root, 'etc/passwd'), 'utf8'), /^root:x:0:0:/);
  assert.match(await fsp.readFile(path.join(root, 'etc/group'), 'utf8'), /^root:x:0:/);
  assert.equal((await fsp.stat(path.join(root, 'tmp'))).mode & 0o7777, 0o1777);
  assert.deepEqual(await fsp.readdir(path.join(root, 'dev')), []);
  await assert.rejects(buildBusyboxRootfs(path.join(work, 'bb2'), { busybox: '/bin/true' }), /not statically linked/);
});
