// The busybox base image actually runs: in runc through `drydock run`, and in podman after
// `drydock save` + `podman load`.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { tempDir, runCli, requireRoot, requireTool } from '../helpers/env.js';
import { podman, type Podman } from '../helpers/podman.js';

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

test('the busybox image runs in runc: drydock run --rm -i with the image\'s own CMD ["sh"]', async () => {
  requireTool('runc');
  // No command given: the image's CMD (sh) reads the script from stdin.
  const r = await runCli(['run', '--rm', '-i', '--network', 'none', 'busybox:latest'], { root, input: `${SCRIPT}\nexit 3\n` });
  assert.equal(r.code, 3, r.stderr);
  assert.equal(r.stdout, EXPECTED, r.stderr);
  const ps = await runCli(['ps', '-a', '-q'], { root });
  assert.equal(ps.stdout, '', '--rm removed the container');
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
