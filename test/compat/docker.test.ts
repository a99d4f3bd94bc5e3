// Differential tests: the same operation through a real Docker Engine (test/helpers/dockerd.ts)
// and through drydock, outputs compared. Both get the very same image bytes: a busybox-static
// rootfs tarred by GNU tar, imported with the same --change. Rows are data: the arguments (the
// same for both unless a row says otherwise) and what of the output must agree.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { busyboxRootfsTar, startDockerd, type Dockerd, type DockerResult } from '../helpers/dockerd.js';
import { FIXTURES, requireTool, runCli, tempDir, type CliResult } from '../helpers/env.js';

let dockerd: Dockerd;
let root: string;
const IMAGE = 'compat-bb:1';

before(async () => {
  requireTool('runc');
  dockerd = await startDockerd();
  root = tempDir('compat-root-');
  const tar = await busyboxRootfsTar();
  const changes = ['CMD ["sh"]', 'ENV GREETING=hello', 'LABEL org.example.kind=compat', 'WORKDIR /'];
  const d = await dockerd.docker(['import', ...changes.flatMap((c) => ['-c', c]), tar, IMAGE]);
  assert.equal(d.code, 0, d.stderr);
  const r = await drydock(['import', ...changes.flatMap((c) => ['-c', c]), tar, IMAGE]);
  assert.equal(r.code, 0, r.stderr);
});

after(async () => {
  await dockerd?.stop();
});

function drydock(args: string[]): Promise<CliResult> {
  return runCli(args, { root });
}

interface Row {
  name: string;
  args: string[];
  /** drydock's arguments where they differ (drydock has no daemon-side `image inspect` split). */
  drydockArgs?: string[];
  /** What must agree; default: exit code and stdout exactly. */
  compare?: (docker: DockerResult, ours: CliResult) => void;
}

const sameOut = (d: DockerResult, o: CliResult) => {
  assert.equal(o.code, d.code, `exit code (docker stderr: ${d.stderr}; drydock stderr: ${o.stderr})`);
  assert.equal(o.stdout, d.stdout);
};
const sameErr = (d: DockerResult, o: CliResult) => {
  assert.notEqual(d.code, 0);
  assert.equal(o.code, d.code);
  assert.equal(o.stderr, d.stderr);
};

const inspect = (format: string): Row => ({ name: `inspect -f ${format}`, args: ['image', 'inspect', '-f', format, IMAGE], drydockArgs: ['inspect', '-f', format, IMAGE] });

const rows: Row[] = [
  // image inspect fields
  inspect('{{.Architecture}}/{{.Os}}'),
  inspect('{{json .RootFS.Layers}}'),
  inspect('{{.RootFS.Type}} {{len .RootFS.Layers}}'),
  inspect('{{json .Config.Cmd}} {{json .Config.Env}} {{json .Config.Labels}} {{.Config.WorkingDir}}'),
  inspect('{{.Config.Cmd}} {{.Config.Env}} {{.Config.Labels}} {{.Config.Entrypoint}}'),
  {
    name: 'inspect Config: the fields drydock sets',
    args: ['image', 'inspect', '-f', '{{json .Config}}', IMAGE],
    drydockArgs: ['inspect', '-f', '{{json .Config}}', IMAGE],
    compare: (d, o) => {
      assert.equal(o.code, 0, o.stderr);
      const want = JSON.parse(d.stdout) as Record<string, unknown>;
      const got = JSON.parse(o.stdout) as Record<string, unknown>;
      for (const k of ['Cmd', 'Env', 'Entrypoint', 'Labels', 'WorkingDir', 'User']) {
        const norm = (v: unknown) => (v === '' || v === null || v === undefined ? null : v);
        assert.deepEqual(norm(got[k]), norm(want[k]), k);
      }
    },
  },
  // template language over inspect data
  inspect('{{range .RootFS.Layers}}{{.}},{{end}}'),
  inspect('{{range $i, $l := .RootFS.Layers}}{{$i}}:{{$l}}{{end}}'),
  inspect('{{index .RootFS.Layers 0}}'),
  inspect('{{index .Config.Labels "org.example.kind"}}'),
  inspect('{{join .Config.Cmd " "}}|{{upper .Os}}|{{title .Os}}|{{lower "ABC"}}|{{split .Architecture "d"}}'),
  inspect('{{printf "%s/%s %d %q" .Os .Architecture 42 .Os}}'),
  inspect('{{if .Config.Cmd}}cmd{{else}}none{{end}} {{with .Config.Entrypoint}}ep{{else}}no-ep{{end}}'),
  inspect('{{if eq .Os "linux"}}L{{else if eq .Os "windows"}}W{{end}} {{and .Os .Architecture}} {{or .Config.Entrypoint "x"}} {{not .Config.Entrypoint}}'),
  inspect('{{$o := .Os}}{{range .RootFS.Layers}}{{$o}}{{end}} {{len .Os}}'),
  inspect('{{- .Os -}} {{/* comment */}} !'),
  // template errors: Docker's text and exit code
  { ...inspect('{{.Foo}}'), compare: sameErr },
  { ...inspect('{{.Config.Foo}}'), compare: sameErr },
  { ...inspect('{{.Os'), compare: sameErr },
  { ...inspect('{{nofunc .Os}}'), compare: sameErr },
  { ...inspect('{{index .RootFS.Layers 7}}'), compare: sameErr },
  // images columns and formats
  { name: 'images --format fields', args: ['images', '--format', '{{.Repository}}|{{.Tag}}|{{.Size}}|{{.Containers}}|{{.SharedSize}}', 'compat-bb'] },
  { name: 'images table header', args: ['images', '--format', 'table {{.Repository}}\\t{{.Tag}}\\t{{upper .Repository}}', 'compat-bb'] },
  { name: 'images --format error', args: ['images', '--format', '{{.Nope}}'], compare: sameErr },
  { name: 'images --format parse error', args: ['images', '--format', '{{.Tag'], compare: sameErr },
  {
    name: 'images default table columns',
    args: ['images', 'compat-bb'],
    compare: (d, o) => {
      assert.equal(o.code, 0, o.stderr);
      // Column titles agree; their padding follows the CREATED texts, which differ by the images' ages.
      assert.deepEqual(o.stdout.split('\n')[0]!.split(/ {3,}/), d.stdout.split('\n')[0]!.split(/ {3,}/));
      const cols = (s: string) => s.split('\n')[1]!.split(/ {3,}/);
      const [dc, oc] = [cols(d.stdout), cols(o.stdout)];
      assert.deepEqual([oc[0], oc[1], oc[4]], [dc[0], dc[1], dc[4]], 'REPOSITORY, TAG and SIZE');
    },
  },
  {
    name: 'images --format json keys',
    args: ['images', '--format', '{{json .}}', 'compat-bb'],
    compare: (d, o) => {
      assert.equal(o.code, 0, o.stderr);
      assert.deepEqual(Object.keys(JSON.parse(o.stdout)), Object.keys(JSON.parse(d.stdout)));
    },
  },
  // history
  { name: 'history sizes', args: ['history', '--format', '{{.Size}}', IMAGE] },
  { name: 'history -q rows', args: ['history', '-q', IMAGE], compare: (d, o) => { assert.equal(o.code, 0, o.stderr); assert.equal(o.stdout.split('\n').length, d.stdout.split('\n').length); } },
  {
    name: 'history table header and json keys',
    args: ['history', '--format', 'table {{.ID}}\t{{.Size}}', IMAGE],
    compare: (d, o) => { assert.equal(o.code, 0, o.stderr); assert.equal(o.stdout.split('\n')[0], d.stdout.split('\n')[0]); },
  },
  {
    name: 'history {{json .}} keys',
    args: ['history', '--format', '{{json .}}', IMAGE],
    compare: (d, o) => { assert.equal(o.code, 0, o.stderr); assert.deepEqual(Object.keys(JSON.parse(o.stdout.split('\n')[0]!)), Object.keys(JSON.parse(d.stdout.split('\n')[0]!))); },
  },
  // error messages
  {
    name: 'invalid reference format',
    args: ['image', 'inspect', 'busybox:bad:tag'],
    drydockArgs: ['inspect', 'busybox:bad:tag'],
    compare: (d, o) => {
      assert.match(d.stderr, /invalid reference format/);
      assert.notEqual(o.code, 0);
      assert.match(o.stderr, /invalid reference format/);
    },
  },
  {
    name: 'missing image',
    args: ['image', 'inspect', 'nope:1'],
    drydockArgs: ['inspect', 'nope:1'],
    compare: (d, o) => {
      assert.match(d.stderr, /^Error: No such image: nope:1$/m);
      assert.equal(o.code, d.code);
      assert.match(o.stderr, /^Error: No such image: nope:1\b/);
    },
  },
  { name: 'missing build context', args: ['build', '/nonexistent-context-dir'], compare: sameErr },
  // run: identity, environment and exit status of the container process
  { name: 'run id -u -g', args: ['run', '--rm', '--network', 'none', IMAGE, 'sh', '-c', 'id -u; id -g; id -un'] },
  { name: 'run -u nobody', args: ['run', '--rm', '--network', 'none', '-u', 'nobody', IMAGE, 'sh', '-c', 'id -u; id -g; id -un; id -gn'] },
  { name: 'run -u 1234:5678', args: ['run', '--rm', '--network', 'none', '-u', '1234:5678', IMAGE, 'sh', '-c', 'id -u; id -g'] },
  { name: 'run exit code', args: ['run', '--rm', '--network', 'none', IMAGE, 'sh', '-c', 'exit 3'] },
  { name: 'run -w', args: ['run', '--rm', '--network', 'none', '-w', '/bin', IMAGE, 'sh', '-c', 'pwd'] },
  {
    name: 'run env (HOSTNAME is the short container id)',
    args: ['run', '--rm', '--network', 'none', '-e', 'FOO=bar', IMAGE, 'env'],
    compare: (d, o) => {
      assert.equal(o.code, d.code, o.stderr);
      const env = (s: string) => s.split('\n').filter(Boolean).map((l) => l.replace(/^HOSTNAME=[0-9a-f]{12}$/, 'HOSTNAME=<id>')).sort();
      assert.ok(env(d.stdout).includes('HOSTNAME=<id>'), d.stdout);
      assert.deepEqual(env(o.stdout), env(d.stdout));
    },
  },
  { name: 'run id (supplementary groups)', args: ['run', '--rm', '--network', 'none', IMAGE, 'id'] },
  { name: 'run -u nobody id', args: ['run', '--rm', '--network', 'none', '-u', 'nobody', IMAGE, 'id'] },
  { name: 'run --group-add id', args: ['run', '--rm', '--network', 'none', '--group-add', '123', IMAGE, 'id'] },
  { name: 'seccomp mode of the container process', args: ['run', '--rm', '--network', 'none', IMAGE, 'grep', '^Seccomp:', '/proc/self/status'] },
  { name: 'capability masks (CapEff, CapBnd)', args: ['run', '--rm', '--network', 'none', IMAGE, 'grep', '-E', '^Cap(Eff|Bnd|Prm):', '/proc/self/status'] },
  { name: 'capability masks with --cap-drop/--cap-add', args: ['run', '--rm', '--network', 'none', '--cap-drop', 'CHOWN', '--cap-add', 'NET_ADMIN', IMAGE, 'grep', '^CapEff:', '/proc/self/status'] },
];

test('docker and drydock agree: rmi of an image a container uses is a conflict unless -f; ps --format', async () => {
  const name = 'compat-user';
  const d = await dockerd.docker(['create', '--network', 'none', '--name', name, IMAGE, 'true']);
  assert.equal(d.code, 0, d.stderr);
  const o = await drydock(['create', '--network', 'none', '--name', name, IMAGE, 'true']);
  assert.equal(o.code, 0, o.stderr);
  try {
    const psFormat = ['ps', '-a', '--filter', `name=${name}`, '--format', '{{.Names}}|{{.Image}}|{{.Command}}|{{.State}}|{{.Status}}|{{.Networks}}|{{len .ID}}'];
    const [dp, op] = [await dockerd.docker(psFormat), await drydock(psFormat)];
    assert.equal(op.stdout, dp.stdout);
    const table = ['ps', '-a', '--filter', `name=${name}`, '--format', 'table {{.Names}}\t{{.Image}}\t{{.RunningFor}}'];
    assert.equal((await drydock(table)).stdout.split('\n')[0], (await dockerd.docker(table)).stdout.split('\n')[0]);
    const json = ['ps', '-a', '--filter', `name=${name}`, '--format', '{{json .}}'];
    const [dj, oj] = [JSON.parse((await dockerd.docker(json)).stdout), JSON.parse((await drydock(json)).stdout)];
    assert.deepEqual(Object.keys(oj), Object.keys(dj));
    assert.match(oj.CreatedAt, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \+0000 UTC$/);
    assert.match(dj.CreatedAt, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \+0000 UTC$/);

    const [dr, or] = [await dockerd.docker(['rmi', IMAGE]), await drydock(['rmi', IMAGE])];
    assert.equal(or.code, dr.code);
    const shape = (s: string) => s.replace(/[0-9a-f]{12}/g, 'ID');
    assert.equal(shape(or.stderr), shape(dr.stderr));
    assert.match(dr.stderr, /^Error response from daemon: conflict: unable to remove repository reference "compat-bb:1" \(must force\) - container [0-9a-f]{12} is using its referenced image [0-9a-f]{12}\n$/);
  } finally {
    await dockerd.docker(['rm', '-f', name]);
    await drydock(['rm', '-f', name]);
  }
});

test('docker and drydock agree: FROM scratch with a gcc -static binary builds and runs as 0:0', async () => {
  requireTool('gcc');
  const ctx = tempDir('compat-scratch-');
  const { execFileSync } = await import('node:child_process');
  const path = await import('node:path');
  const { writeFileSync } = await import('node:fs');
  execFileSync('gcc', ['-static', '-O2', '-o', path.join(ctx, 'hello'), path.join(FIXTURES, 'seed003/hello.c')]);
  writeFileSync(path.join(ctx, 'Dockerfile'), 'FROM scratch\nCOPY hello /hello\nCMD ["/hello"]\n');
  const db = await dockerd.docker(['build', '--network', 'host', '-q', '-t', 'compat-scratch:1', ctx]);
  assert.equal(db.code, 0, db.stderr);
  const ob = await drydock(['build', '-q', '-t', 'compat-scratch:1', ctx]);
  assert.equal(ob.code, 0, ob.stderr);
  for (const args of [['run', '--rm', '--network', 'none', 'compat-scratch:1'], ['run', '--rm', '--network', 'none', '-u', '1000', 'compat-scratch:1'], ['run', '--rm', '--network', 'none', '-u', '1000:1000', 'compat-scratch:1']]) {
    const [d, o] = [await dockerd.docker(args), await drydock(args)];
    assert.equal(d.code, 0, d.stderr);
    sameOut(d, o);
  }
  assert.equal((await drydock(['run', '--rm', '--network', 'none', 'compat-scratch:1'])).stdout, 'hello uid=0 gid=0 groups=0 home=/\n');
});

for (const row of rows) {
  test(`docker and drydock agree: ${row.name}`, async () => {
    const d = await dockerd.docker(row.args);
    const o = await drydock(row.drydockArgs ?? row.args);
    (row.compare ?? sameOut)(d, o);
  });
}
