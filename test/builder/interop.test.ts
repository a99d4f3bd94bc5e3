// The real test: a seed-004 style Dockerfile (FROM a locally imported base, RUN, ENV,
// EXPOSE, USER, VOLUME, WORKDIR, CMD, ENTRYPOINT, ADD of a tarball) builds with `drydock build`,
// runs in runc, runs in `podman run` after `drydock save` + `podman load`, and `podman inspect`
// shows the same config that `buildah bud` produces for the same Dockerfile.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { tempDir, requireRoot, requireTool, runCli } from '../helpers/env.js';
import { busyboxImage } from '../helpers/images.js';
import { podman, type Podman } from '../helpers/podman.js';
import { runImage } from '../helpers/run-image.js';

const base = tempDir('drydock-builder-interop-');
const root = path.join(base, 'store');
const ctx = path.join(base, 'ctx');
let pm: Podman;

const DOCKERFILE = `FROM docker.io/library/busybox:latest
LABEL org.opencontainers.image.title=seed004 maintainer=platform
ENV APP_HOME=/opt/app GREETING="hello from seed 004"
ADD site.tar.gz $APP_HOME/
RUN mkdir -p /var/lib/app && echo "built" > /var/lib/app/state && \\
    echo 'app:x:1001:1001:app:/opt/app:/bin/sh' >> /etc/passwd && \\
    echo 'app:x:1001:' >> /etc/group && chown -R 1001:1001 /var/lib/app
EXPOSE 8080/tcp 9090
VOLUME /var/lib/app
WORKDIR $APP_HOME
USER app
STOPSIGNAL SIGTERM
ENTRYPOINT ["/bin/sh", "-c", "echo \\"$GREETING\\"; cat /opt/app/index.html; id -un; pwd; cat /var/lib/app/state", "--"]
CMD ["serve"]
`;

before(async () => {
  requireRoot();
  requireTool('runc');
  requireTool('buildah');
  await busyboxImage(root);
  await fsp.mkdir(path.join(ctx, 'site'), { recursive: true });
  await fsp.writeFile(path.join(ctx, 'site/index.html'), '<h1>seed 004</h1>\n');
  execFileSync('tar', ['-C', path.join(ctx, 'site'), '-czf', path.join(ctx, 'site.tar.gz'), '.']);
  await fsp.writeFile(path.join(ctx, 'Dockerfile'), DOCKERFILE);
  pm = await podman('drydock-builder-podman-');
});
after(async () => { await pm?.cleanup(); });

const EXPECTED_OUTPUT = 'hello from seed 004\n<h1>seed 004</h1>\napp\n/opt/app\nbuilt\n';

test('seed-004 Dockerfile: drydock build, runs in runc, podman load + run, same config as buildah bud', async () => {
  const built = await runCli(['build', '-q', '-t', 'seed004:latest', '--iidfile', path.join(base, 'iid'), ctx], { root });
  assert.equal(built.code, 0, built.stderr);
  const id = built.stdout.trim();
  assert.match(id, /^sha256:[a-f0-9]{64}$/);
  assert.equal(await fsp.readFile(path.join(base, 'iid'), 'utf8'), id);

  const inRunc = await runImage(root, 'seed004:latest');
  assert.equal(inRunc.code, 0, inRunc.err);
  assert.equal(inRunc.out, EXPECTED_OUTPUT);

  // drydock save -> podman load -> podman run
  const archive = path.join(base, 'seed004.tar');
  const saved = await runCli(['save', '-o', archive, 'seed004:latest'], { root });
  assert.equal(saved.code, 0, saved.stderr);
  await pm.run(['load', '-i', archive]);
  const ran = await pm.run(['run', '--rm', '--network', 'none', 'docker.io/library/seed004:latest']);
  assert.equal(ran.stdout, EXPECTED_OUTPUT);

  // buildah bud of the same Dockerfile on the same base (loaded from drydock's save).
  const baseArchive = path.join(base, 'busybox.tar');
  assert.equal((await runCli(['save', '-o', baseArchive, 'busybox:latest'], { root })).code, 0);
  await pm.run(['load', '-i', baseArchive]);
  await buildah(['bud', '--network', 'host', '--isolation', 'oci', '-t', 'localhost/seed004-buildah:latest', ctx]);

  const ours = JSON.parse((await pm.run(['inspect', 'docker.io/library/seed004:latest'])).stdout)[0].Config;
  const theirs = JSON.parse((await pm.run(['inspect', 'localhost/seed004-buildah:latest'])).stdout)[0].Config;
  const pick = (c: Record<string, unknown>) => ({
    Env: c.Env, Cmd: c.Cmd, Entrypoint: c.Entrypoint, WorkingDir: c.WorkingDir, User: c.User, ExposedPorts: c.ExposedPorts,
    Volumes: c.Volumes, StopSignal: c.StopSignal,
    // buildah stamps its own version label; everything else must match.
    Labels: Object.fromEntries(Object.entries((c.Labels ?? {}) as Record<string, string>).filter(([k]) => k !== 'io.buildah.version')),
  });
  assert.deepEqual(pick(ours), pick(theirs));
  const fromBuildah = await pm.run(['run', '--rm', '--network', 'none', 'localhost/seed004-buildah:latest']);
  assert.equal(fromBuildah.stdout, EXPECTED_OUTPUT, 'both images behave the same');

  // Rebuild through the CLI is fully cached and prints Docker's classic markers.
  const again = await runCli(['build', '-t', 'seed004:latest', ctx], { root });
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stdout, /Step 1\/12 : FROM docker\.io\/library\/busybox:latest/);
  assert.equal((again.stdout.match(/---> Using cache/g) ?? []).length, 11);
  assert.match(again.stdout, new RegExp(`Successfully built ${id.slice(7, 19)}\\nSuccessfully tagged seed004:latest\\n`));
});

function buildah(args: string[]): Promise<string> {
  const storage = pm.storageArgs;
  return new Promise((resolve, reject) => {
    execFile('buildah', [...storage, ...args], { timeout: 300_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`buildah ${args.join(' ')} failed: ${stderr || err.message}`));
      else resolve(stdout);
    });
  });
}
