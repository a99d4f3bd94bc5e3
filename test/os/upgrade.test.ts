// `drydock os` against a real `drydock serve` on 127.0.0.1 (password-protected, so the authfile
// named in state.json must be used), with images made by GNU tar and pushed by skopeo. v2 differs
// from v1 in its top layer only: the upgrade must fetch that one layer (the access log shows its
// GET and no other layer's) and `status --json` must report about its size. Then "no update",
// switch, rollback, confirm's cleanup, and SIGKILL of the upgrade at several points.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, promises as fsp, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { CLI_MAIN, requireRoot, requireTool, runCli, tempDir } from '../helpers/env.js';
import { htpasswdLine } from '../helpers/docker-registry.js';
import { startServe, type ServeProcess } from '../registry/serve.js';
import { RegistryContext } from '../../src/client/context.js';
import { RemoteImageSource } from '../../src/client/remote.js';
import { parseReference } from '../../src/image/reference.js';
import { OsLayout, seedOsRoot, type OsState, type OsStatus } from '../../src/os/index.js';
import { busyboxTree, ociLayout, pushWithSkopeoAuth, tarLayer, writeTree, type OciImage } from './fixture-image.js';

const ENV = { DRYDOCK_DAEMON_JSON: '/nonexistent/daemon.json', DRYDOCK_REGISTRIES_CONF: '/nonexistent/registries.conf', REGISTRY_AUTH_FILE: '/nonexistent/auth.json', DOCKER_CONFIG: '/nonexistent' };

/** What the initramfs does at boot (the contract in docs/boot.md): try the pending deployment. */
async function boot(root: string): Promise<string> {
  const l = new OsLayout(root);
  const s = await l.readState();
  let next: OsState;
  if (s.pending && s.pending.triesLeft > 0) next = { ...s, booted: s.pending.id, pending: { ...s.pending, triesLeft: s.pending.triesLeft - 1 } };
  else if (s.pending) next = { ...s, booted: s.default, pending: null, abandoned: [...s.abandoned, { id: s.pending.id, reason: 'did not reach service started', at: new Date().toISOString() }] };
  else next = { ...s, booted: s.default };
  await l.writeState(next);
  return next.booted!;
}

/** Mount points at or below `dir` (mountinfo's fifth field), in mount order. */
function mountsUnder(dir: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')[4]).filter((m): m is string => !!m && (m === dir || m.startsWith(`${dir}/`)));
}

async function os(args: string[], root: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return runCli(['os', ...args, '--root', root], { env: ENV, timeoutMs: 300_000 });
}

async function statusOf(root: string): Promise<OsStatus> {
  const r = await os(['status', '--json'], root);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as OsStatus;
}

/** Every file state.json names is there and whole; every final-named file is complete. */
async function checkConsistent(root: string): Promise<OsState> {
  const l = new OsLayout(root);
  const s = await l.readState();
  for (const id of [s.default, s.rollback, s.pending?.id].filter((x): x is string => !!x)) {
    const d = await l.readDeployment(id);
    for (const diff of d.layers) {
      assert.ok(await l.hasLayer(diff), `deployment ${id} names ${diff}, which is missing`);
    }
  }
  for (const id of await l.deploymentIds()) await l.readDeployment(id);
  for (const name of readdirSync(l.layersDir).filter((n) => !n.startsWith('.'))) {
    execFileSync('unsquashfs', ['-s', path.join(l.layersDir, name)], { stdio: 'ignore' });
  }
  return s;
}

describe('drydock os against a registry', () => {
  let serve: ServeProcess;
  let dir: string;
  let repo: string;
  let v1: OciImage;
  let v2: OciImage;
  let v3: OciImage;
  const auth = { user: 'machine', password: 'secret-pw' };
  let seeded: string;

  before(async () => {
    requireRoot();
    requireTool('mksquashfs', 'apt-get install squashfs-tools');
    requireTool('unsquashfs', 'apt-get install squashfs-tools');
    dir = tempDir('drydock-os-upgrade-');
    writeFileSync(path.join(dir, 'htpasswd'), `${htpasswdLine(auth.user, auth.password)}\n`);
    serve = await startServe(['--root', path.join(dir, 'registry'), '--addr', '127.0.0.1:0', '--htpasswd', path.join(dir, 'htpasswd'), '--access-log-format', 'combined']);
    const host = new URL(serve.url).host;
    repo = `${host}/os/desktop`;
    const base = tarLayer(busyboxTree(writeTree(path.join(dir, 'base'), { 'etc/os-release': 'ID=test\n' })), path.join(dir, 'base.tgz'), 'gzip');
    const mid = tarLayer(writeTree(path.join(dir, 'mid'), { 'usr/share/blob': randomBytes(400_000).toString('base64') }), path.join(dir, 'mid.tgz'), 'gzip');
    const top = (name: string) => tarLayer(writeTree(path.join(dir, name), { 'app/version': `${name}\n`, 'app/data': randomBytes(300_000).toString('hex') }), path.join(dir, `${name}.tgz`), 'gzip');
    v1 = ociLayout(path.join(dir, 'oci1'), 'v1', [base, mid, top('v1')]);
    v2 = ociLayout(path.join(dir, 'oci2'), 'v2', [base, mid, top('v2')]);
    v3 = ociLayout(path.join(dir, 'oci3'), 'v3', [base, top('v3')]);
    pushWithSkopeoAuth(v1, `${repo}:stable`, auth);
    // The machine's data partition, as `drydock disk --updates-from` leaves it: v1, with credentials.
    seeded = path.join(dir, 'seeded');
    await fsp.mkdir(path.join(seeded, 'os'), { recursive: true });
    writeFileSync(path.join(seeded, 'os/auth.json'), JSON.stringify({ auths: { [host]: { auth: Buffer.from(`${auth.user}:${auth.password}`).toString('base64') } } }));
    const ctx = await RegistryContext.create({ daemonJson: ENV.DRYDOCK_DAEMON_JSON, registriesConf: ENV.DRYDOCK_REGISTRIES_CONF, auth: { authFile: path.join(seeded, 'os/auth.json') } });
    try {
      await seedOsRoot(seeded, new RemoteImageSource(ctx, parseReference(`${repo}:stable`)), `${repo}:stable`, { insecureRegistries: [host], authfile: 'os/auth.json' });
    } finally { await ctx.close(); }
    pushWithSkopeoAuth(v2, `${repo}:stable`, auth);
  });
  after(async () => { await serve?.stop(); });

  const copyOf = async (name: string) => {
    const root = path.join(dir, name);
    execFileSync('cp', ['-a', seeded, root]);
    return root;
  };
  const blobGets = (log: string) => [...log.matchAll(/"GET \/v2\/os\/desktop\/blobs\/(sha256:[0-9a-f]{64}) HTTP\/1\.1" 200/g)].map((m) => m[1]!);

  test('upgrade fetches only the changed top layer; then "no update"', async (t) => {
    const root = await copyOf('up');
    const before = serve.stdout().length;
    const r = await os(['upgrade'], root);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^Staged deployment [0-9a-f]{12} \(.*:stable\): fetched 1 layer .* reused 2; it boots next \(reboot to apply\)\n$/);
    assert.match(r.stderr, /Already exists[\s\S]*Already exists[\s\S]*Pull complete/);
    await new Promise((res) => setTimeout(res, 200));
    const gets = blobGets(serve.stdout().slice(before));
    const top = v2.layers[2]!;
    assert.deepEqual(gets.filter((d) => d !== v2.configDigest), [top.digest], 'one layer blob GET: the new top layer');
    assert.deepEqual(gets.sort(), [top.digest, v2.configDigest].sort());
    const s = await statusOf(root);
    assert.equal(s.lastUpgrade?.layersFetched, 1);
    assert.equal(s.lastUpgrade?.layersReused, 2);
    const bytes = s.lastUpgrade!.bytes;
    assert.ok(bytes >= top.size && bytes <= top.size + v2.configSize + v2.manifestSize, `${bytes} bytes for a ${top.size}-byte layer`);
    const image = v2.layers.reduce((n, l) => n + l.size, 0);
    assert.ok(bytes < image / 2, `${bytes} of the image's ${image}`);
    t.diagnostic(`upgrade downloaded ${bytes} bytes (top layer ${top.size}, image ${image})`);
    assert.equal(s.staged?.manifestDigest, v2.manifestDigest);
    assert.equal(s.staged?.triesLeft, 3);
    assert.deepEqual(s.staged?.layers, v2.layers.map((l) => l.diffID));

    const again = await os(['upgrade'], root);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /^no update: .*:stable is still sha256:[0-9a-f]{64} \(deployment [0-9a-f]{12}\)\n$/);
    assert.equal((await statusOf(root)).lastUpgrade?.deployment, null);
  });

  test('boot, confirm, switch, rollback and the cleanup after a good boot', async () => {
    const root = await copyOf('cycle');
    const s0 = await statusOf(root);
    const d1 = s0.default;
    assert.equal((await os(['upgrade'], root)).code, 0);
    const d2 = (await statusOf(root)).staged!.id;
    // Confirm before the new deployment booted: nothing is promoted, nothing staged is deleted.
    assert.equal(await boot(root), d2);
    let c = await os(['confirm'], root);
    assert.equal(c.code, 0, c.stderr);
    assert.match(c.stdout, new RegExp(`^Deployment ${d2} is now the default \\(rollback: ${d1}\\)\n$`));
    let s = await statusOf(root);
    assert.deepEqual([s.default, s.rollback, s.staged], [d2, d1, null]);

    // switch: another tag, tracked from then on; v3 shares only the base layer. The disk's
    // --boot-tries/--boot-deadline (in state.json) set the new deployment's tries.
    const l0 = new OsLayout(root);
    await l0.writeState({ ...(await l0.readState()), bootTries: 2, bootDeadlineSeconds: 60 });
    pushWithSkopeoAuth(v3, `${repo}:testing`, auth);
    const sw = await os(['switch', `${repo}:testing`], root);
    assert.equal(sw.code, 0, sw.stderr);
    assert.match(sw.stdout, /fetched 1 layer .* reused 1/);
    s = await statusOf(root);
    assert.equal(s.ref, `${repo}:testing`);
    assert.deepEqual([s.staged?.triesLeft, s.staged?.deadlineSeconds], [2, 60]);
    // rollback before rebooting drops the staged deployment.
    const rb1 = await os(['rollback'], root);
    assert.match(rb1.stdout, new RegExp(`^Discarded the staged deployment; the default ${d2} boots next`));
    s = await statusOf(root);
    assert.equal(s.staged, null);
    // Boot (d2), confirm: d3 and its top layer go; d1's layers stay (it is the rollback).
    assert.equal(await boot(root), d2);
    c = await os(['confirm'], root);
    assert.match(c.stdout, /Nothing to confirm: this boot runs .*\nRemoved 1 deployment and 1 layer\n$/);
    const l = new OsLayout(root);
    assert.deepEqual((await l.deploymentIds()).sort(), [d1, d2].sort());
    assert.ok(!(await l.hasLayer(v3.layers[1]!.diffID)));
    const wanted = new Set([...v1.layers, ...v2.layers].map((x) => `${x.diffID.slice(7)}.squashfs`));
    assert.deepEqual(readdirSync(l.layersDir).sort(), [...wanted].sort());

    // rollback with nothing staged: the rollback deployment boots next, and after a good boot
    // it is the default with the other as rollback.
    const rb2 = await os(['rollback'], root);
    assert.match(rb2.stdout, new RegExp(`^Staged the rollback deployment ${d1}; it boots next`));
    assert.equal(await boot(root), d1);
    // Rolling back while the unconfirmed deployment runs keeps the default (here: d2).
    const rb3 = await os(['rollback'], root);
    assert.match(rb3.stdout, new RegExp(`^Rolled back from ${d1} \\(kept as the rollback\\); the default ${d2} boots next`));
    assert.equal(await boot(root), d2);
    assert.equal((await os(['confirm'], root)).code, 0);
    s = await statusOf(root);
    assert.deepEqual([s.default, s.rollback, s.booted], [d2, d1, d2]);
    const text = await os(['status'], root);
    assert.match(text.stdout, new RegExp(`Tracking: ${repo}:testing\n[\\s\\S]*booted +${d2}[\\s\\S]*rollback +${d1}`));
  });

  // state.json's layerFormat decides what upgrade converts to. A disk made before erofs has none
  // (its initramfs mounts squashfs only); one whose format changed keeps its old layers as they
  // are: found by diffID whatever the ending, never fetched again.
  const FORMAT_CASES: { name: string; layerFormat?: 'squashfs' | 'erofs'; want: 'squashfs' | 'erofs' }[] = [
    { name: 'no layerFormat (a disk from before erofs)', want: 'squashfs' },
    { name: 'layerFormat squashfs', layerFormat: 'squashfs', want: 'squashfs' },
    { name: 'layerFormat erofs over squashfs layers', layerFormat: 'erofs', want: 'erofs' },
  ];
  for (const [i, c] of FORMAT_CASES.entries()) {
    test(`upgrade converts new layers as state.json says: ${c.name}`, async () => {
      requireTool('mkfs.erofs', 'apt-get install erofs-utils');
      const root = await copyOf(`format${i}`);
      const l = new OsLayout(root);
      const { layerFormat: _, ...s0 } = await l.readState();
      assert.equal(_, 'squashfs', 'seedOsRoot records the format');
      await l.writeState(c.layerFormat ? { ...s0, layerFormat: c.layerFormat } : s0);
      const r = await os(['upgrade'], root);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /fetched 1 layer .* reused 2/);
      const want = v2.layers.map((x, j) => `${x.diffID.slice(7)}.${j === 2 ? c.want : 'squashfs'}`);
      assert.deepEqual(readdirSync(l.layersDir).sort(), [...new Set([...want, ...v1.layers.map((x) => `${x.diffID.slice(7)}.squashfs`)])].sort());
      assert.equal(execFileSync('blkid', ['-o', 'value', '-s', 'TYPE', l.layerPath(v2.layers[2]!.diffID, c.want)], { encoding: 'utf8' }).trim(), c.want);
      assert.equal((await l.readState()).layerFormat, c.layerFormat, 'the format stays as it was');
      // A second upgrade with the same digest: no update, nothing reconverted.
      assert.match((await os(['upgrade'], root)).stdout, /^no update/);
    });
  }

  test('without the authfile the registry refuses the upgrade, and nothing changes', async () => {
    const root = await copyOf('noauth');
    const l = new OsLayout(root);
    const s = await l.readState();
    await l.writeState({ ...s, authfile: null });
    const r = await os(['upgrade'], root);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /unauthorized|authentication required|401/i);
    assert.deepEqual((await l.readState()).pending, null);
  });

  test('SIGKILL of the upgrade at several points never leaves state.json naming a missing or partial file', async (t) => {
    // A kill during the kernel search leaves its loop and overlay mounts in os/scratch; the next
    // upgrade sweeps them. Should an assertion fail first, they come off here.
    const scratchDirs: string[] = [];
    t.after(() => { for (const d of scratchDirs) for (const m of mountsUnder(d).reverse()) execFileSync('umount', [m]); });
    // Times are measured from the child's "Pulling" line, so kills land in the upgrade's work
    // (manifest, config, download, conversion, the writes), not in Node's start-up.
    const upgradeChild = (root: string) => {
      const child = spawn(process.execPath, [...(CLI_MAIN.endsWith('.ts') ? ['--import', 'tsx'] : []), CLI_MAIN, 'os', 'upgrade', '--root', root], { env: { ...process.env, ...ENV }, stdio: ['ignore', 'ignore', 'pipe'] });
      let err = '';
      const started = new Promise<number>((res) => child.stderr.on('data', (d) => { err += d; if (/Pulling/.test(err)) res(Date.now()); }));
      const exited = new Promise<number | null>((res) => child.on('exit', (code) => res(code)));
      return { child, started, exited };
    };
    const timing = upgradeChild(await copyOf('timing'));
    const t0 = await timing.started;
    assert.equal(await timing.exited, 0);
    const full = Date.now() - t0;
    const fractions = [0.05, 0.15, 0.3, 0.45, 0.6, 0.8];
    const outcomes: string[] = [];
    for (const [i, f] of fractions.entries()) {
      const root = await copyOf(`kill${i}`);
      scratchDirs.push(new OsLayout(root).scratchDir);
      const { child, started, exited } = upgradeChild(root);
      await started;
      await new Promise((res) => setTimeout(res, Math.round(full * f)));
      child.kill('SIGKILL');
      const code = await exited;
      const s = await checkConsistent(root);
      const left = mountsUnder(new OsLayout(root).scratchDir).length;
      outcomes.push((code === null ? (s.pending ? 'killed after the switch' : 'killed before the switch') : `exited ${code}`) + (left ? ` (${left} kernel-search mounts left)` : ''));
      // The next upgrade recovers from whatever was left, and confirm clears the leftovers.
      const again = await os(['upgrade'], root);
      assert.equal(again.code, 0, again.stderr);
      assert.equal((await checkConsistent(root)).pending !== null, true);
      await boot(root);
      assert.equal((await os(['confirm'], root)).code, 0);
      const l = new OsLayout(root);
      assert.deepEqual(mountsUnder(l.scratchDir), [], 'the next upgrade unmounted the killed one\'s kernel search');
      assert.deepEqual(existsSync(l.scratchDir) ? readdirSync(l.scratchDir) : [], []);
      assert.deepEqual(readdirSync(l.layersDir).filter((n) => n.startsWith('.')), []);
      assert.deepEqual(readdirSync(l.deploymentsDir).filter((n) => n.startsWith('.')), []);
    }
    t.diagnostic(`full upgrade ${full} ms; kills at ${fractions.join(', ')} of it: ${outcomes.join(', ')}`);
    assert.ok(outcomes.includes('killed before the switch'), outcomes.join(', '));
  });
});
