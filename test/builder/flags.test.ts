// `drydock build`'s Docker flags that shape RUN steps (--add-host, --shm-size, --ulimit, -m,
// --ssh, --rm/--force-rm) and the " ---> ID" lines, through the CLI against real runc. The SSH
// agent is OpenSSH's own ssh-agent, queried from inside the step by the host's ssh-add.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { tempDir, requireRoot, requireTool, runCli } from '../helpers/env.js';
import { busyboxImage } from '../helpers/images.js';

const base = tempDir('drydock-builder-flags-');
const root = path.join(base, 'store');
let n = 0;

async function context(files: Record<string, string>): Promise<string> {
  const dir = path.join(base, `ctx${n++}`);
  await fsp.mkdir(dir, { recursive: true });
  for (const [p, v] of Object.entries(files)) await fsp.writeFile(path.join(dir, p), v);
  return dir;
}

before(async () => {
  requireRoot();
  requireTool('runc');
  await busyboxImage(root);
});

test('--add-host, --shm-size, --ulimit and -m reach the RUN step', async () => {
  const dir = await context({
    Dockerfile: `FROM busybox
RUN grep mirror.local /etc/hosts && df -k /dev/shm | tail -1 && echo "nofile $(ulimit -Sn) $(ulimit -Hn)"
RUN --network=none echo "memory $(cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max)"
`,
  });
  const r = await runCli(['build', '--add-host', 'mirror.local:10.1.2.3', '--shm-size', '128m', '--ulimit', 'nofile=512:1024', '-m', '96m', '--rm', '--force-rm', dir], { root });
  assert.equal(r.code, 0, r.stderr + r.stdout);
  assert.match(r.stdout, /^10\.1\.2\.3\tmirror\.local$/m);
  assert.match(r.stdout, /^shm\s+131072\s/m, '/dev/shm is 128 MiB');
  assert.match(r.stdout, /^nofile 512 1024$/m);
  assert.match(r.stdout, /^memory 100663296$/m, 'the cgroup limit is 96 MiB');

  // Without the flags: Docker's defaults (64 MiB /dev/shm, no extra hosts).
  const plain = await runCli(['build', '--no-cache', await context({ Dockerfile: 'FROM busybox\nRUN df -k /dev/shm | tail -1; grep -c mirror.local /etc/hosts || true\n' })], { root });
  assert.equal(plain.code, 0, plain.stderr);
  assert.match(plain.stdout, /^shm\s+65536\s/m);
  assert.match(plain.stdout, /^0$/m);
});

test('bad --add-host, --ulimit, --shm-size and -m values are refused with Docker\'s words', async () => {
  const dir = await context({ Dockerfile: 'FROM busybox\nRUN true\n' });
  const cases: [string[], RegExp][] = [
    [['--add-host', 'nocolon'], /invalid argument "nocolon" for "--add-host" flag/],
    [['--add-host', 'h:not-an-ip'], /invalid IP address in add-host: "not-an-ip"/],
    [['--ulimit', 'bogus=1'], /invalid ulimit type: bogus/],
    [['--ulimit', 'nofile=20:10'], /ulimit soft limit must be less than or equal to hard limit: 20 > 10/],
    [['--shm-size', 'lots'], /--shm-size: "lots" is not a size/],
    [['-m', '1m'], /minimum memory limit allowed is 6MB/],
  ];
  for (const [args, error] of cases) {
    const r = await runCli(['build', ...args, dir], { root });
    assert.notEqual(r.code, 0, args.join(' '));
    assert.match(r.stderr, error, args.join(' '));
  }
});

test('--ulimit above the hard limit: applied with CAP_SYS_RESOURCE, else a clear error', async () => {
  const limits = await fsp.readFile('/proc/self/limits', 'utf8');
  const hard = Number(/^Max open files\s+\S+\s+(\S+)/m.exec(limits)![1]);
  const status = await fsp.readFile('/proc/self/status', 'utf8');
  const canRaise = (BigInt(`0x${/^CapEff:\s*(\S+)/m.exec(status)![1]}`) & (1n << 24n)) !== 0n;
  const want = hard + 1000;
  const dir = await context({ Dockerfile: 'FROM busybox\nRUN echo "hard $(ulimit -Hn)"\n' });
  const r = await runCli(['build', '--no-cache', '--ulimit', `nofile=1024:${want}`, dir], { root });
  if (canRaise) {
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^hard ${want}$`, 'm'));
  } else {
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, new RegExp(`--ulimit nofile=1024:${want}: the hard limit cannot be raised above ${hard} here`));
  }
});

let agent: ChildProcess | undefined;
after(() => { agent?.kill(); });

test('--ssh forwards an ssh-agent to RUN --mount=type=ssh (ssh-add -l inside the step lists the key)', async () => {
  requireTool('ssh-agent', 'apt-get install openssh-client');
  requireTool('ssh-add', 'apt-get install openssh-client');
  requireTool('ssh-keygen', 'apt-get install openssh-client');
  const keys = tempDir('drydock-ssh-');
  const sock = path.join(keys, 'agent.sock');
  agent = spawn('ssh-agent', ['-D', '-a', sock], { stdio: 'ignore' });
  for (let i = 0; i < 200 && !(await fsp.stat(sock).catch(() => undefined)); i++) await new Promise((r) => setTimeout(r, 25));
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'drydock-test', '-f', path.join(keys, 'id')]);
  execFileSync('ssh-add', [path.join(keys, 'id')], { env: { ...process.env, SSH_AUTH_SOCK: sock }, stdio: 'ignore' });
  const fingerprint = execFileSync('ssh-keygen', ['-lf', path.join(keys, 'id.pub')], { encoding: 'utf8' }).split(' ')[1]!;

  // The host's ssh-add with its shared libraries, run inside busybox through their loader.
  const dir = await context({});
  const tools = path.join(dir, 'sshadd');
  await fsp.mkdir(tools);
  const sshAdd = execFileSync('sh', ['-c', 'command -v ssh-add'], { encoding: 'utf8' }).trim();
  await fsp.copyFile(sshAdd, path.join(tools, 'ssh-add'));
  let loader = '';
  for (const line of execFileSync('ldd', [sshAdd], { encoding: 'utf8' }).split('\n')) {
    const lib = /(\/\S+) \(0x/.exec(line)?.[1];
    if (!lib) continue;
    await fsp.copyFile(lib, path.join(tools, path.basename(lib)));
    if (/ld-linux/.test(lib)) loader = path.basename(lib);
  }
  assert.ok(loader, 'ldd names the dynamic loader');
  await fsp.writeFile(path.join(dir, 'Dockerfile'), `FROM busybox
RUN --mount=type=ssh --mount=type=bind,source=sshadd,target=/t echo "sock $SSH_AUTH_SOCK" && test -S /run/buildkit/ssh_agent.0 && /t/${loader} --library-path /t /t/ssh-add -l
RUN --mount=type=ssh,id=deploy,target=/agent.sock echo "deploy $SSH_AUTH_SOCK" && test -S /agent.sock
RUN test ! -e /run/buildkit/ssh_agent.0 && test ! -e /agent.sock && echo "no socket in the layer"
`);
  const r = await runCli(['build', '-t', 'ssh-built', '--ssh', 'default', '--ssh', `deploy=${sock}`, dir], { root, env: { ...process.env, SSH_AUTH_SOCK: sock } });
  assert.equal(r.code, 0, r.stderr + r.stdout);
  assert.match(r.stdout, /^sock \/run\/buildkit\/ssh_agent\.0$/m);
  assert.ok(r.stdout.includes(fingerprint), `ssh-add -l in the step lists ${fingerprint}:\n${r.stdout}`);
  assert.match(r.stdout, /^deploy \/agent\.sock$/m);
  assert.match(r.stdout, /^no socket in the layer$/m);

  // No --ssh: an optional ssh mount is skipped like BuildKit's; a required one fails clearly.
  const none = await runCli(['build', await context({ Dockerfile: 'FROM busybox\nRUN --mount=type=ssh echo "unset ${SSH_AUTH_SOCK:-yes}"\n' })], { root, env: { ...process.env, SSH_AUTH_SOCK: '' } });
  assert.equal(none.code, 0, none.stderr);
  assert.match(none.stdout, /^unset yes$/m);
  const required = await runCli(['build', await context({ Dockerfile: 'FROM busybox\nRUN --mount=type=ssh,required=true true\n' })], { root });
  assert.notEqual(required.code, 0);
  assert.match(required.stderr, /no SSH key "default" forwarded from the client/);
  const notSocket = await runCli(['build', '--ssh', `default=${path.join(keys, 'id')}`, dir], { root });
  assert.match(notSocket.stderr, /is not an SSH agent socket/);
});

test('" ---> ID" lines: FROM shows the base IMAGE ID of `images`; the last step\'s ID runs', async () => {
  const dir = await context({ Dockerfile: 'FROM busybox\nRUN echo built > /marker\nENV X=1\n' });
  const r = await runCli(['build', '-t', 'ids:1', dir], { root });
  assert.equal(r.code, 0, r.stderr);
  const ids = [...r.stdout.matchAll(/^ ---> ([0-9a-f]{12})$/gm)].map((m) => m[1]!);
  assert.equal(ids.length, 3, r.stdout);
  const images = await runCli(['images', '--format', '{{.Repository}} {{.ID}}'], { root });
  const busyboxId = /^busybox ([0-9a-f]{12})$/m.exec(images.stdout)?.[1];
  assert.equal(ids[0], busyboxId, `FROM line vs drydock images:\n${images.stdout}`);
  const built = /^Successfully built ([0-9a-f]{12})$/m.exec(r.stdout)![1]!;
  assert.equal(ids[2], built);
  assert.equal(/^ids ([0-9a-f]{12})$/m.exec(images.stdout)?.[1], built);
  const run = await runCli(['run', '--rm', built, 'cat', '/marker'], { root });
  assert.equal(run.code, 0, run.stderr);
  assert.equal(run.stdout, 'built\n');
  const inspect = await runCli(['inspect', '--format', '{{.Id}}', built], { root });
  assert.match(inspect.stdout, new RegExp(`^sha256:${built}`));
  // The RUN step's ID is its intermediate image, runnable like Docker's classic builder's, and
  // not listed by `images` (there is no <none> row for it).
  const step = await runCli(['run', '--rm', ids[1]!, 'cat', '/marker'], { root });
  assert.equal(step.code, 0, step.stderr);
  assert.equal(step.stdout, 'built\n');
  const stepEnv = await runCli(['inspect', '--format', '{{json .Config.Env}}', ids[1]!], { root });
  assert.doesNotMatch(stepEnv.stdout, /X=1/, 'the intermediate image is the state after RUN, before ENV');
  assert.doesNotMatch(images.stdout, new RegExp(` ${ids[1]}$`, 'm'));
  // A cached rebuild prints the same IDs.
  const again = await runCli(['build', '-t', 'ids:1', dir], { root });
  assert.deepEqual([...again.stdout.matchAll(/^ ---> ([0-9a-f]{12})$/gm)].map((m) => m[1]!), ids);
  // builder prune drops the intermediate images with the cache; the tagged image stays.
  assert.equal((await runCli(['builder', 'prune', '-f'], { root })).code, 0);
  const gone = await runCli(['inspect', ids[1]!], { root });
  assert.notEqual(gone.code, 0);
  assert.match(gone.stderr, /No such image/);
  assert.equal((await runCli(['run', '--rm', built, 'true'], { root })).code, 0);
});

test('two steps in a row that leave the same (empty) layer: the next step still mounts', async () => {
  // Overlayfs refuses the same lower dir twice (ELOOP); an ssh or cache mount step leaves none.
  const dir = await context({ Dockerfile: 'FROM busybox\nRUN true\nRUN true\nRUN echo third step ran\n' });
  const r = await runCli(['build', '--no-cache', dir], { root });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^third step ran$/m);
});

test('--help says --rm/--force-rm are accepted and shows the new flags in examples', async () => {
  const r = await runCli(['build', '--help'], { root });
  r.stdout = r.stdout.replace(/\s+/g, ' ');
  assert.match(r.stdout, /--rm\s+accepted for Docker compatibility: a daemonless build keeps no intermediate containers/);
  assert.match(r.stdout, /drydock build --ssh default/);
  assert.match(r.stdout, /--add-host mirror\.local:10\.0\.0\.5 --shm-size 256m -m 1g --ulimit nofile=1024:1024/);
});
