// Every Dockerfile instruction through a real build: RUN in runc on overlayfs, COPY/ADD into
// layers, metadata into the config; the result is then run in runc to check what it contains.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createServer } from 'node:http';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { builderFixture, type Fixture } from './helpers.js';
import { runImage } from '../helpers/run-image.js';
import { requireTool, tempDir } from '../helpers/env.js';

let fx: Fixture;
before(async () => { fx = await builderFixture('instructions'); });

async function sh(image: string, script: string): Promise<string> {
  const r = await runImage(fx.root, image, { args: ['sh', '-c', script] });
  assert.equal(r.code, 0, `container failed: ${r.err}`);
  return r.out;
}

test('metadata instructions land in the config like docker build', async () => {
  const dir = await fx.context({
    Dockerfile: `ARG BASE=busybox
FROM \${BASE} AS base
MAINTAINER Jane <jane@example.com>
LABEL org.opencontainers.image.title="demo app" version=1.0
ENV A=1 B="two words"
ENV LEGACY value with spaces
EXPOSE 80 53/udp 8000-8001
USER 1000:1000
WORKDIR /srv
WORKDIR app
VOLUME ["/data", "/logs"]
VOLUME /cache
STOPSIGNAL SIGQUIT
HEALTHCHECK --interval=30s --timeout=5s --retries=3 CMD wget -q -O- http://localhost/ || exit 1
SHELL ["/bin/sh", "-ec"]
ENTRYPOINT ["/bin/echo"]
CMD hello world
ONBUILD RUN echo triggered > /tmp/onbuild.txt
`,
  });
  const r = await fx.build(dir, { tags: ['meta:1'] });
  const c = r.config.config!;
  assert.equal(r.config.author, 'Jane <jane@example.com>');
  assert.deepEqual(c.Labels, { 'org.opencontainers.image.title': 'demo app', version: '1.0' });
  assert.deepEqual(c.Env, ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'A=1', 'B=two words', 'LEGACY=value with spaces']);
  assert.deepEqual(Object.keys(c.ExposedPorts!).sort(), ['53/udp', '80/tcp', '8000/tcp', '8001/tcp']);
  assert.equal(c.User, '1000:1000');
  assert.equal(c.WorkingDir, '/srv/app');
  assert.deepEqual(Object.keys(c.Volumes!).sort(), ['/cache', '/data', '/logs']);
  assert.equal(c.StopSignal, 'SIGQUIT');
  assert.deepEqual(c.Healthcheck, { Test: ['CMD-SHELL', 'wget -q -O- http://localhost/ || exit 1'], Interval: 30e9, Timeout: 5e9, Retries: 3 });
  assert.deepEqual(c.Shell, ['/bin/sh', '-ec']);
  assert.deepEqual(c.Entrypoint, ['/bin/echo']);
  assert.deepEqual(c.Cmd, ['/bin/sh', '-ec', 'hello world']);
  assert.deepEqual(c.OnBuild, ['RUN echo triggered > /tmp/onbuild.txt']);
  assert.equal(r.layers.length, 1, 'metadata steps add no layers');
  assert.ok(r.config.history!.some((h) => h.created_by === 'ENV A=1 B=two words' && h.empty_layer));
  assert.match(r.log, /Step 1\/17 : FROM \$\{BASE\} AS base/);

  // ONBUILD triggers run when the image is used as a base, and are not inherited further.
  const child = await fx.context({ Dockerfile: 'FROM meta:1\nENTRYPOINT []\nCMD ["cat", "/tmp/onbuild.txt"]\n' });
  const r2 = await fx.build(child, { tags: ['meta-child'] });
  assert.match(r2.log, /# Executing 1 build trigger/);
  assert.equal(r2.config.config!.OnBuild, null);
  const out = await runImage(fx.root, 'meta-child');
  assert.equal(out.out, 'triggered\n');
});

test('RUN: shell, exec and heredoc forms, build args in env not config, USER, failure names step, command, exit code', async () => {
  const dir = await fx.context({
    Dockerfile: `FROM busybox
ARG VERSION=0.1
ARG UNUSED
WORKDIR /w
RUN echo "shell $VERSION" > shell.txt
RUN ["/bin/sh", "-c", "echo exec > exec.txt"]
RUN <<EOF
echo "heredoc line 1" > heredoc.txt
echo "heredoc $VERSION" >> heredoc.txt
EOF
RUN cat <<A > two.txt && cat <<B >> two.txt
first
A
second
B
RUN echo 'app:x:1234:1234::/home/app:/bin/sh' >> /etc/passwd
RUN echo x > /w/deleteme
RUN rm /w/deleteme
USER app
RUN id -u > /tmp/uid.txt
`,
  });
  const r = await fx.build(dir, { tags: ['runs'], buildArgs: { VERSION: '2.0', NOPE: 'x' } });
  assert.match(r.log, /\[Warning\] One or more build-args \[NOPE\] were not consumed/);
  assert.ok(!(r.config.config!.Env ?? []).some((e) => e.startsWith('VERSION=')), 'ARG values stay out of the image config');
  const out = await sh('runs', 'cat /w/shell.txt /w/exec.txt /w/heredoc.txt /w/two.txt /tmp/uid.txt');
  assert.equal(out, 'shell 2.0\nexec\nheredoc line 1\nheredoc 2.0\nfirst\nsecond\n1234\n');
  assert.ok(r.config.history!.some((h) => h.created_by?.startsWith('RUN |1 VERSION=2.0 /bin/sh -c echo "shell $VERSION"')));
  // A deletion in RUN becomes an OCI whiteout in that step's layer.
  const rmLayer = r.layers[r.layers.length - 2]!;
  const listing = execFileSync('sh', ['-c', `zcat ${fx.store.blobPath(rmLayer.digest)} | tar t`], { encoding: 'utf8' });
  assert.match(listing, /^w\/\.wh\.deleteme$/m);
  assert.equal(await sh('runs', 'test -e /w/deleteme && echo present || echo gone'), 'gone\n');

  const bad = await fx.context({ Dockerfile: 'FROM busybox\nRUN echo before\nRUN echo failing; exit 3\n' });
  await assert.rejects(fx.build(bad), (e: Error & { exitCode?: number }) => {
    assert.match(e.message, /Dockerfile:3: step 3\/3 "RUN echo failing; exit 3": process "\/bin\/sh -c echo failing; exit 3" did not complete successfully: exit code: 3/);
    return true;
  });
});

test('COPY: files, dirs, globs, --chown/--chmod, heredoc, .dockerignore, --from stage and image; --target skips unneeded stages', async () => {
  const dir = await fx.context({
    '.dockerignore': '*.log\nsecret/\n!keep.log\n',
    'a.txt': 'A\n',
    'b.txt': 'B\n',
    'skip.log': 'no\n',
    'keep.log': 'yes\n',
    'secret/key': 'nope\n',
    'src/x/y.txt': 'Y\n',
    'src/link': { link: 'x/y.txt' },
    'run.sh': { mode: 0o755, content: '#!/bin/sh\necho run\n' },
    Dockerfile: `FROM busybox AS builder
RUN mkdir -p /out && echo built > /out/artifact && chmod 640 /out/artifact
FROM busybox AS unused
RUN exit 1
FROM busybox
COPY *.txt /dst/
COPY *.log /logs/
COPY src /tree
COPY --chown=1000:2000 --chmod=600 a.txt /owned.txt
COPY --chown=nobody a.txt /nobody.txt
COPY run.sh /usr/local/bin/
COPY --from=builder /out/artifact /artifact
COPY --from=busybox /bin/busybox /bb
COPY <<EOF /inline.txt
inline content
EOF
COPY . /all/
`,
  });
  const r = await fx.build(dir, { tags: ['copies'] });
  assert.doesNotMatch(r.log, /RUN exit 1/, 'the unused stage is skipped');
  const out = await sh('copies', [
    'cat /dst/a.txt /dst/b.txt', 'ls /logs', 'cat /tree/x/y.txt', 'readlink /tree/link',
    'stat -c "%u:%g %a" /owned.txt', 'stat -c "%u:%g" /nobody.txt', 'run.sh', 'cat /artifact', 'stat -c %a /artifact',
    'test -x /bb && echo bb', 'cat /inline.txt', 'ls /all | tr "\\n" " "', 'test -e /all/secret && echo LEAK || echo no-secret',
  ].join('; '));
  assert.equal(out, 'A\nB\nkeep.log\nY\nx/y.txt\n1000:2000 600\n65534:65534\nrun\nbuilt\n640\nbb\ninline content\nDockerfile a.txt b.txt keep.log run.sh src no-secret\n');

  const target = await fx.build(dir, { target: 'builder', tags: ['only-builder'] });
  assert.match(target.log, /Step 2\/2 : RUN mkdir/);
  assert.doesNotMatch(target.log, /COPY/);
});

test('ADD: local tar, tar.gz, tar.xz, tar.zst are extracted; plain .gz files and URLs are copied', async () => {
  requireTool('xz');
  requireTool('zstd');
  const work = tempDir('drydock-add-');
  await fsp.mkdir(path.join(work, 'payload/sub'), { recursive: true });
  await fsp.writeFile(path.join(work, 'payload/sub/file.txt'), 'from tar\n');
  const dir = await fx.context({});
  execFileSync('tar', ['-C', path.join(work, 'payload'), '-cf', path.join(dir, 'p.tar'), '.']);
  execFileSync('sh', ['-c', 'gzip -c p.tar > p.tar.gz && xz -c p.tar > p.tar.xz && zstd -q -c p.tar > p.tar.zst && echo notatar | gzip -c > plain.gz'], { cwd: dir });
  const server = createServer((req, res) => { res.end(req.url === '/file.txt' ? 'downloaded\n' : ''); });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  try {
    await fsp.writeFile(path.join(dir, 'Dockerfile'), `FROM busybox
ADD p.tar /t/
ADD p.tar.gz /gz
ADD p.tar.xz /xz/
ADD p.tar.zst /zst
ADD plain.gz /plain.gz
ADD http://127.0.0.1:${port}/file.txt /dl/
ADD --chmod=644 http://127.0.0.1:${port}/file.txt /dl2.txt
`);
    await fx.build(dir, { tags: ['adds'] });
  } finally {
    server.close();
  }
  const out = await sh('adds', 'cat /t/sub/file.txt /gz/sub/file.txt /xz/sub/file.txt /zst/sub/file.txt; zcat /plain.gz; cat /dl/file.txt; stat -c %a /dl/file.txt /dl2.txt');
  assert.equal(out, 'from tar\nfrom tar\nfrom tar\nfrom tar\nnotatar\ndownloaded\n600\n644\n');
});

test('ADD of a URL whose connection is cut mid-body fails the step with a clear error and leaves no temp file', async () => {
  // Announces 1 MiB, sends 64 KiB, then drops the connection.
  const server = createServer((_req, res) => {
    res.writeHead(200, { 'content-length': String(1 << 20) });
    res.write(Buffer.alloc(64 * 1024, 1), () => res.socket?.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  const dir = await fx.context({ Dockerfile: `FROM busybox\nADD http://127.0.0.1:${port}/big.bin /big.bin\n` });
  try {
    await assert.rejects(fx.build(dir), /ADD http:\/\/127\.0\.0\.1:\d+\/big\.bin: download failed/);
  } finally {
    server.close();
  }
  const leftovers = (await fsp.readdir(path.join(fx.root, 'tmp')).catch(() => [] as string[])).filter((f) => f.startsWith('add-'));
  assert.deepEqual(leftovers, []);
});

test('RUN --mount: cache persists across builds, bind reads the context, secret stays out of layers, tmpfs; --network=none', async () => {
  const secretFile = path.join(tempDir('drydock-secret-'), 's');
  await fsp.writeFile(secretFile, 'TOPSECRET');
  const dir = await fx.context({
    'data/in.txt': 'bound\n',
    Dockerfile: `FROM busybox
RUN --mount=type=cache,target=/var/cache/app sh -c 'echo run >> /var/cache/app/count; wc -l < /var/cache/app/count > /cache-count'
RUN --mount=type=bind,source=data,target=/mnt/data cat /mnt/data/in.txt > /bound.txt
RUN --mount=type=secret,id=token,required=true cat /run/secrets/token | wc -c > /secret-len
RUN --mount=type=tmpfs,target=/scratch touch /scratch/x && grep -q ' /scratch tmpfs' /proc/mounts && echo tmpfs > /tmpfs.txt
RUN --network=none ls /sys/class/net > /nets.txt
`,
  });
  const r = await fx.build(dir, { tags: ['mounts'], secrets: { token: secretFile } });
  const out = await sh('mounts', 'cat /cache-count /bound.txt /secret-len /tmpfs.txt /nets.txt; ls /run/secrets 2>/dev/null | wc -l; test -e /var/cache/app/count && echo cache-leak || echo no-cache-in-image; test -e /mnt/data && echo mnt-leak || echo no-mnt');
  assert.equal(out.replace(/ +/g, ''), '1\nbound\n9\ntmpfs\nlo\n0\nno-cache-in-image\nno-mnt\n');
  for (const l of r.layers) {
    const text = execFileSync('sh', ['-c', `zcat ${fx.store.blobPath(l.digest)}`], { maxBuffer: 64 << 20 }).toString('latin1');
    assert.ok(!text.includes('TOPSECRET'), 'the secret is in no layer');
  }
  // Cache mounts survive into the next build (the step itself reruns: --no-cache).
  await fx.build(dir, { tags: ['mounts2'], secrets: { token: secretFile }, noCache: true });
  assert.equal((await sh('mounts2', 'cat /cache-count')).trim(), '2');
});

test('FROM scratch with COPY; SOURCE_DATE_EPOCH makes the image reproducible', async () => {
  const dir = await fx.context({ 'hello.txt': 'hi\n', Dockerfile: 'FROM scratch\nCOPY hello.txt /\nCMD ["/hello.txt"]\n' });
  const a = await fx.build(dir, { sourceDateEpoch: 1700000000, noCache: true });
  const b = await fx.build(dir, { sourceDateEpoch: 1700000000, noCache: true });
  assert.equal(a.imageId, b.imageId);
  assert.equal(a.config.created, '2023-11-14T22:13:20.000Z');
  assert.equal(a.layers.length, 1);
  const list = execFileSync('sh', ['-c', `zcat ${fx.store.blobPath(a.layers[0]!.digest)} | tar t`], { encoding: 'utf8' });
  assert.deepEqual(list.trim().split('\n'), ['hello.txt']);
});

test('COPY --parents and --exclude (BuildKit 1.7 labs, stable since 1.14); heredoc openers <<eo\'f\' and << EOF; # syntax= of the standard frontend is noted; warnings once', async () => {
  const dir = await fx.context({
    'x/a.txt': 'xa\n', 'y/a.txt': 'ya\n', 'y/b.md': 'yb\n', 'dir/keep.txt': 'k\n', 'dir/sub/drop.log': 'd\n',
    Dockerfile: `# syntax=docker/dockerfile:1.14
FROM busybox
MAINTAINER someone
COPY --parents */a.txt /p/
COPY --exclude=**/*.log --exclude=*.md dir y /e/
COPY <<eo'f' /h/quoted.txt
$HOME stays
eof
RUN << EOF
echo spaced > /h/spaced
EOF
`,
  });
  const r = await fx.build(dir, { tags: ['parents-exclude'] });
  assert.match(r.log, /# syntax=docker\/dockerfile:1\.14: using drydock's built-in Dockerfile frontend/);
  assert.equal(r.log.match(/MaintainerDeprecated: Maintainer instruction is deprecated in favor of using label \(line 3\)/g)?.length, 1, r.log);
  const out = await sh('parents-exclude', 'cd / && find p e -type f | sort | tr "\\n" " "; cat /h/quoted.txt /h/spaced');
  assert.equal(out, 'e/a.txt e/keep.txt p/x/a.txt p/y/a.txt $HOME stays\nspaced\n');
});

test('ADD of a git repository: default branch, #tag:subdir, --keep-git-dir, through git daemon on 127.0.0.1', async () => {
  requireTool('git');
  const { spawn } = await import('node:child_process');
  const { createServer: netServer } = await import('node:net');
  const base = tempDir('drydock-git-');
  const work = path.join(base, 'work');
  const g = (args: string[], cwd = work) => execFileSync('git', ['-c', 'user.name=t', '-c', 'user.email=t@example.com', ...args], { cwd, stdio: 'pipe' });
  await fsp.mkdir(path.join(work, 'sub'), { recursive: true });
  g(['init', '-q', '-b', 'main', work], base);
  await fsp.writeFile(path.join(work, 'README'), 'one\n');
  await fsp.writeFile(path.join(work, 'sub/a.txt'), 'a1\n');
  g(['add', '-A']); g(['commit', '-q', '-m', 'one']); g(['tag', '-a', '-m', 'v1', 'v1']);
  await fsp.writeFile(path.join(work, 'README'), 'two\n');
  await fsp.writeFile(path.join(work, 'sub/a.txt'), 'a2\n');
  g(['commit', '-q', '-am', 'two']);
  await fsp.mkdir(path.join(base, 'srv'));
  g(['clone', '-q', '--bare', work, path.join(base, 'srv/repo.git')], base);
  const port = await new Promise<number>((resolve) => {
    const s = netServer().listen(0, '127.0.0.1', () => { const p = (s.address() as { port: number }).port; s.close(() => resolve(p)); });
  });
  const daemon = spawn('git', ['daemon', '--reuseaddr', '--export-all', `--base-path=${path.join(base, 'srv')}`, '--listen=127.0.0.1', `--port=${port}`, path.join(base, 'srv')], { stdio: 'ignore' });
  const url = `git://127.0.0.1:${port}/repo.git`;
  try {
    for (let i = 0; ; i++) {
      try { execFileSync('git', ['ls-remote', url], { stdio: 'pipe' }); break; } catch (e) { if (i > 50) throw e; await new Promise((r) => setTimeout(r, 100)); }
    }
    const dir = await fx.context({
      Dockerfile: `FROM busybox\nADD ${url} /all\nADD ${url}#v1:sub /sub/\nADD --keep-git-dir=true ${url}#main /kept\n`,
    });
    await fx.build(dir, { tags: ['from-git'] });
    const out = await sh('from-git', 'cat /all/README /all/sub/a.txt /sub/a.txt; test -e /all/.git && echo git-dir || echo no-git-dir; ls /sub; test -d /kept/.git && echo kept');
    assert.equal(out, 'two\na2\na1\nno-git-dir\na.txt\nkept\n');
    // The resolved commit is in the cache key: a rebuild is cached; a new commit on main reruns
    // the ADD that follows main (and, keys being chained, the steps after it).
    const again = await fx.build(dir, { tags: ['from-git'] });
    assert.equal(again.steps.filter((s) => s.cached).length, again.steps.length, again.log);
    await fsp.writeFile(path.join(work, 'README'), 'three\n');
    g(['commit', '-q', '-am', 'three']);
    g(['push', '-q', path.join(base, 'srv/repo.git'), 'main']);
    const moved = await fx.build(dir, { tags: ['from-git'] });
    assert.deepEqual(moved.steps.map((s) => s.cached), [true, false, false, false], moved.log);
    assert.equal(await sh('from-git', 'cat /all/README'), 'three\n');
  } finally {
    daemon.kill();
  }
});
