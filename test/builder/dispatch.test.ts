// One implementation of the metadata instructions: the same line given to `drydock build`
// (FROM scratch + the line, no root or runc needed) and to --change (import/commit) must give the
// same config or the same error. Where the two copies used to disagree (EXPOSE ranges, WORKDIR
// under /proc, STOPSIGNAL names, HEALTHCHECK CMD, ONBUILD triggers) the builder's stricter,
// Docker-compatible answer is the expected one.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { tempDir } from '../helpers/env.js';
import { build } from '../../src/builder/index.js';
import { applyConfigChanges } from '../../src/builder/changes.js';
import { ContentStore } from '../../src/store/index.js';
import type { ContainerConfig } from '../../src/image/types.js';

interface Case { line: string; want?: ContainerConfig; error?: string }

const cases: Case[] = [
  { line: 'ENV A=1 B="two words"', want: { Env: ['A=1', 'B=two words'] } },
  { line: 'ENV LEGACY some value', want: { Env: ['LEGACY=some value'] } },
  { line: 'ENV A="unterminated', error: 'unexpected end of statement while looking for matching double-quote' },
  { line: 'LABEL org.opencontainers.image.title="My app" tier=web', want: { Labels: { 'org.opencontainers.image.title': 'My app', tier: 'web' } } },
  { line: 'EXPOSE 80 53/udp 8000-8001', want: { ExposedPorts: { '80/tcp': {}, '53/udp': {}, '8000/tcp': {}, '8001/tcp': {} } } },
  { line: 'EXPOSE http', error: 'invalid containerPort: http' },
  { line: 'WORKDIR /srv', want: { WorkingDir: '/srv' } },
  { line: 'WORKDIR /proc/self/fd/7', error: 'WORKDIR /proc/self/fd/7: a working directory under /proc is refused (it could expose host file descriptors, CVE-2024-21626)' },
  { line: 'USER 1000:1000', want: { User: '1000:1000' } },
  { line: 'STOPSIGNAL SIGTERM', want: { StopSignal: 'SIGTERM' } },
  { line: 'STOPSIGNAL BOGUS', error: 'invalid signal: BOGUS' },
  { line: 'CMD ["/bin/sh"]', want: { Cmd: ['/bin/sh'] } },
  { line: 'CMD echo hi', want: { Cmd: ['/bin/sh', '-c', 'echo hi'] } },
  { line: 'CMD ["a", 1]', error: 'when using JSON array syntax, arrays must be comprised of strings only' },
  { line: 'ENTRYPOINT ["/init", "--verbose"]', want: { Entrypoint: ['/init', '--verbose'], Cmd: null } },
  { line: 'VOLUME ["/data", "/logs"]', want: { Volumes: { '/data': {}, '/logs': {} } } },
  { line: 'VOLUME /a /b', want: { Volumes: { '/a': {}, '/b': {} } } },
  { line: 'HEALTHCHECK NONE', want: { Healthcheck: { Test: ['NONE'] } } },
  { line: 'HEALTHCHECK --interval=5s --retries=2 CMD curl -f http://127.0.0.1/', want: { Healthcheck: { Test: ['CMD-SHELL', 'curl -f http://127.0.0.1/'], Interval: 5e9, Retries: 2 } } },
  { line: 'HEALTHCHECK --bogus=1 CMD true', error: 'unknown flag: --bogus for HEALTHCHECK' },
  { line: 'ONBUILD RUN make', want: { OnBuild: ['RUN make'] } },
  { line: 'ONBUILD FROM busybox', error: "FROM isn't allowed as an ONBUILD trigger" },
  { line: 'cmd ["x"]', want: { Cmd: ['x'] } },
];

async function setup() {
  const base = tempDir('drydock-dispatch-');
  const store = await ContentStore.open(path.join(base, 'store'));
  const context = path.join(base, 'ctx');
  await fsp.mkdir(context);
  const buildConfig = async (lines: string[]) => (await build({ context, store, dockerfileText: ['FROM scratch', ...lines].join('\n') + '\n' })).config.config ?? {};
  return { buildConfig, scratch: await buildConfig([]) };
}

test('a metadata line gives the same config or error from the builder and from --change', async () => {
  const { buildConfig, scratch } = await setup();
  for (const c of cases) {
    let built: ContainerConfig | undefined;
    let buildError: string | undefined;
    try { built = await buildConfig([c.line]); } catch (e) { buildError = (e as Error).message; }
    let changed: ContainerConfig | undefined;
    let changeError: string | undefined;
    try { changed = applyConfigChanges(scratch, [c.line]); } catch (e) { changeError = (e as Error).message; }
    if (c.error) {
      assert.equal(buildError?.replace(/^Dockerfile:\d+:\d+: /, ''), c.error, `build: ${c.line}`);
      assert.equal(changeError, `invalid change "${c.line}": ${c.error}`, `--change: ${c.line}`);
      continue;
    }
    assert.equal(buildError, undefined, c.line);
    assert.equal(changeError, undefined, c.line);
    assert.deepEqual(changed, built, c.line);
    const want = { ...scratch, ...c.want };
    if (c.want?.Env) want.Env = [...(scratch.Env ?? []), ...c.want.Env]; // after FROM scratch's PATH
    assert.deepEqual(changed, want, c.line);
  }
});

test('changes accumulate like Dockerfile lines: later ENV wins, relative WORKDIR, CMD kept by a later ENTRYPOINT', async () => {
  const { buildConfig, scratch } = await setup();
  const lines = ['ENV A=1 B=2', 'ENV A=3 C=$B', 'WORKDIR /srv', 'WORKDIR app', 'CMD ["run"]', 'ENTRYPOINT ["/init"]'];
  const built = await buildConfig(lines);
  assert.deepEqual(applyConfigChanges(scratch, lines), built);
  assert.deepEqual(built.Env?.filter((e) => !e.startsWith('PATH=')), ['B=2', 'A=3', 'C=2']);
  assert.equal(built.WorkingDir, '/srv/app');
  assert.deepEqual([built.Cmd, built.Entrypoint], [['run'], ['/init']]);
});

test('--change only takes what docker commit --change takes, and never modifies its input', () => {
  assert.throws(() => applyConfigChanges({}, ['RUN rm -rf /']), /invalid change "RUN rm -rf \/": RUN is not allowed/);
  assert.throws(() => applyConfigChanges({}, ['SHELL ["/bin/bash", "-c"]']), /SHELL is not allowed/);
  assert.throws(() => applyConfigChanges({}, ['ENV']), /invalid change "ENV": ENV requires at least one argument/);
  const base = { Env: ['A=1'] };
  applyConfigChanges(base, ['ENV A=2']);
  assert.deepEqual(base, { Env: ['A=1'] });
});
