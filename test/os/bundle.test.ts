// The runtime bundle for machines whose image has no Node: put in a chroot of a busybox-static
// rootfs (no /lib, no /usr, no node, no squashfs-tools), the bundled drydock must run with the
// bundled node: `os status`, and a real `os upgrade` from a registry on 127.0.0.1, which needs
// the bundled mksquashfs (or mkfs.erofs, for an erofs disk), the xattr addon and mknod for a
// whiteout in the new layer.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { requireRoot, requireTool, runCli, tempDir } from '../helpers/env.js';
import { startServe, type ServeProcess } from '../registry/serve.js';
import { RegistryContext } from '../../src/client/context.js';
import { RemoteImageSource } from '../../src/client/remote.js';
import { parseReference } from '../../src/image/reference.js';
import { OsLayout, seedOsRoot } from '../../src/os/index.js';
import { busyboxTree, ociLayout, pushWithSkopeo, tarLayer, writeTree } from './fixture-image.js';

let serve: ServeProcess | undefined;
const mounts: string[] = [];
after(async () => {
  for (const m of mounts.reverse()) spawnSync('umount', ['-l', m]);
  await serve?.stop();
});

function chroot(rootfs: string, args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(requireTool('chroot', 'apt-get install coreutils'), [rootfs, ...args], { encoding: 'utf8', env: { PATH: '/bin', HOME: '/' }, timeout: 300_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr || String(r.error ?? '') };
}

for (const format of ['squashfs', 'erofs'] as const) {
  test(`bundled node + drydock + ${format === 'erofs' ? 'mkfs.erofs' : 'mksquashfs'} run drydock os in a busybox-static chroot (${format} layers)`, async (t) => {
    requireRoot();
    requireTool('patchelf');
    requireTool('mksquashfs', 'apt-get install squashfs-tools');
    requireTool('mkfs.erofs', 'apt-get install erofs-utils');
    const dir = tempDir(`drydock-os-bundle-${format}-`);
    const rootfs = busyboxTree(path.join(dir, 'rootfs'));
    for (const d of ['proc', 'dev', 'tmp', 'data']) mkdirSync(path.join(rootfs, d), { recursive: true });
    const made = await runCli(['os', 'bundle', path.join(rootfs, '.drydock/drydock'), '--layer-format', format]);
    assert.equal(made.code, 0, made.stderr);
    assert.match(made.stdout, /^Wrote .* \(\d+(\.\d+)?MB\): run \/\.drydock\/drydock\/bin\/drydock on the machine\n$/);
    t.diagnostic(made.stdout.trim());
    // The packer of this format (mksquashfs is there on every disk: staged kernels' modules are squashfs).
    const bins = readdirSync(path.join(rootfs, '.drydock/drydock/bin'));
    assert.ok(bins.includes('mksquashfs'), bins.join(' '));
    assert.equal(bins.includes('mkfs.erofs'), format === 'erofs', bins.join(' '));
    // busybox mount/umount for the kernel staging.
    for (const b of ['mount', 'umount']) assert.ok(bins.includes(b), `${b}: ${bins.join(' ')}`);
    const bundle = { drydock: '/.drydock/drydock/bin/drydock' };
    assert.ok(!existsSync(path.join(rootfs, 'lib')) && !existsSync(path.join(rootfs, 'usr')) && !existsSync(path.join(rootfs, 'lib64')), 'nothing but busybox and the bundle');
    // A machine has /proc and /dev/null (spawn's stdio "ignore" opens it); a bare chroot does not.
    execFileSync('mknod', ['-m', '666', path.join(rootfs, 'dev/null'), 'c', '1', '3']);
    execFileSync('mount', ['-t', 'proc', 'proc', path.join(rootfs, 'proc')]);
    mounts.push(path.join(rootfs, 'proc'));

    serve ??= await startServe(['--root', path.join(dir, 'registry'), '--addr', '127.0.0.1:0']);
    const repo = `${new URL(serve.url).host}/os/tiny-${format}`;
    const base = tarLayer(writeTree(path.join(dir, 'base'), { 'etc/motd': 'v1\n', 'opt/old': 'old' }), path.join(dir, 'base.tgz'), 'gzip');
    const v1 = ociLayout(path.join(dir, 'oci1'), 'v1', [base]);
    const v2 = ociLayout(path.join(dir, 'oci2'), 'v2', [base, tarLayer(writeTree(path.join(dir, 'top'), { 'etc/motd': 'v2\n', 'opt/.wh.old': '' }), path.join(dir, 'top.tzst'), 'zstd')]);
    pushWithSkopeo(v1, `${repo}:stable`);
    const data = path.join(rootfs, 'data');
    const ctx = await RegistryContext.create({ daemonJson: '/nonexistent', registriesConf: '/nonexistent' });
    try { await seedOsRoot(data, new RemoteImageSource(ctx, parseReference(`${repo}:stable`)), `${repo}:stable`, { layerFormat: format }); } finally { await ctx.close(); }
    pushWithSkopeo(v2, `${repo}:stable`);

    const st = chroot(rootfs, [bundle.drydock, 'os', 'status', '--root', '/data']);
    assert.equal(st.status, 0, st.stderr);
    assert.match(st.stdout, new RegExp(`^Tracking: ${repo}:stable\n`));
    const up = chroot(rootfs, [bundle.drydock, 'os', 'upgrade', '--root', '/data']);
    assert.equal(up.status, 0, up.stderr);
    assert.match(up.stdout, /^Staged deployment [0-9a-f]{12} .*fetched 1 layer/);
    const layout = new OsLayout(data);
    const file = layout.layerPath(v2.layers[1]!.diffID, format);
    assert.equal((await layout.findLayer(v2.layers[1]!.diffID))?.file, file);
    // The whiteout made by the bundle's mknod is in the layer file the machine would stack.
    const mnt = path.join(dir, 'mnt');
    mkdirSync(mnt);
    execFileSync('mount', ['-t', format, '-o', 'loop,ro', file, mnt]);
    mounts.push(mnt);
    assert.match(execFileSync('stat', ['-c', '%F %t:%T %U', path.join(mnt, 'opt/old')], { encoding: 'utf8' }), /^character special file 0:0 root\n$/);
    assert.equal(readFileSync(path.join(mnt, 'etc/motd'), 'utf8'), 'v2\n');
  });
}
