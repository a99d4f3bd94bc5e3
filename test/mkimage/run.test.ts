// The busybox base image actually runs: in runc (through the runtime's layer cache, overlay
// rootfs and spec, as `drydock run` does) and in podman after `drydock save` + `podman load`.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import path from 'node:path';
import { tempDir, runCli, requireRoot, requireTool } from '../helpers/env.js';
import { podman, type Podman } from '../helpers/podman.js';
import { ContentStore, resolveImage } from '../../src/store/index.js';
import { ensureLayersUnpacked, mountRootfs, createRuntimeSpec, runOnce } from '../../src/runtime/index.js';

const work = tempDir('drydock-mkimage-run-');
const root = path.join(work, 'store');
let peer: Podman | undefined;

before(async () => {
  requireRoot();
  requireTool('busybox', 'apt-get install busybox-static');
  const r = await runCli(['mkimage', 'busybox', '-t', 'busybox:latest', '--timezone', 'Europe/Berlin', '-c', 'LABEL org.opencontainers.image.title=busybox-base'], { root });
  assert.equal(r.code, 0, r.stderr);
});

after(async () => { await peer?.cleanup(); });

const SCRIPT = 'echo "user=$(id -un) group=$(id -gn)"; grep -c ^ /etc/passwd >/dev/null && echo passwd-ok; '
  + 'echo tmp > /tmp/t && cat /tmp/t; date -d @0 +%Z; wget --help 2>&1 | head -1 | cut -c1-7; ls /dev/null';

const EXPECTED = 'user=root group=root\npasswd-ok\ntmp\nCET\nBusyBox\n/dev/null\n';

test('the busybox image runs in runc (layer cache + overlay + OCI spec)', async () => {
  requireTool('runc');
  const store = await ContentStore.open(root);
  const image = await resolveImage(store, 'busybox:latest');
  const lowers = await ensureLayersUnpacked(store, image.manifest.layers.map((l, i) => ({ digest: l.digest, mediaType: l.mediaType, diffID: image.config.rootfs.diff_ids[i]! })));
  const rootfs = await mountRootfs({ lowerDirs: lowers, workDir: path.join(work, 'c1') });
  try {
    // The image's own CMD (["sh"]) reading the script from stdin.
    const cmd = image.config.config?.Cmd ?? [];
    assert.deepEqual(cmd, ['sh']);
    const spec = await createRuntimeSpec({ rootfs: rootfs.rootfs, args: cmd, env: image.config.config?.Env ?? [], cwd: '/', user: '', network: 'none' });
    const stdin = new PassThrough();
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    let out = '';
    let err = '';
    stdout.on('data', (d) => (out += d));
    stderr.on('data', (d) => (err += d));
    stdin.end(`${SCRIPT}\nexit 3\n`);
    const id = `mkimage-run-${process.pid}`;
    const r = await runOnce({ id, bundleDir: path.join(work, 'bundle'), spec, stdio: { stdin, stdout, stderr } });
    assert.equal(r.exitCode, 3, err);
    assert.equal(out, EXPECTED, err);
  } finally {
    await rootfs.unmount();
  }
});

test('the busybox image runs in podman after drydock save + podman load', async () => {
  const archive = path.join(work, 'busybox.tar');
  const saved = await runCli(['save', '-o', archive, 'busybox:latest'], { root });
  assert.equal(saved.code, 0, saved.stderr);
  peer = await podman('drydock-mkimage-podman-');
  const loaded = await peer.run(['load', '-i', archive]);
  assert.match(loaded.stdout + loaded.stderr, /busybox:latest/);
  const inspect = JSON.parse((await peer.run(['image', 'inspect', 'docker.io/library/busybox:latest'])).stdout) as { Config: { Cmd: string[]; Labels: Record<string, string> } }[];
  assert.deepEqual(inspect[0]!.Config.Cmd, ['sh']);
  assert.equal(inspect[0]!.Config.Labels['org.opencontainers.image.title'], 'busybox-base');
  const run = await peer.run(['run', '--rm', '--network', 'none', 'docker.io/library/busybox:latest', 'sh', '-c', SCRIPT]);
  assert.equal(run.stdout, EXPECTED, run.stderr);
});
