// The build graph as data and the solver that runs it: --print-plan shows stages, vertices,
// edges and cache status without executing anything; independent stages run at the same time
// with readable, stage-prefixed output; a failure in one stage stops the build cleanly.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { builderFixture, type Fixture } from './helpers.js';
import { plan, formatPlan, type PlanDocument } from '../../src/builder/index.js';
import { runCli } from '../helpers/env.js';
import { runImage } from '../helpers/run-image.js';

let fx: Fixture;
before(async () => { fx = await builderFixture('graph'); });

const MULTI = `FROM busybox AS a
RUN echo a > /a.txt
FROM busybox AS b
ENV B=1
RUN echo b > /b.txt
FROM busybox AS unused
RUN echo never
FROM busybox
COPY --from=a /a.txt /
RUN --mount=type=bind,from=b,target=/mnt cat /mnt/b.txt > /b-copy.txt
CMD ["cat", "/a.txt"]
`;

test('--print-plan: stages the target needs, vertices with keys, parent and stage edges, cache status; nothing runs', async () => {
  const dir = await fx.context({ Dockerfile: MULTI });
  const scratchBefore = await fsp.readdir(path.join(fx.root, 'tmp')).catch(() => []);
  const { document: doc } = await plan({ context: dir, store: fx.store });
  assert.deepEqual(doc.stages.map((s) => [s.index, s.name]), [[0, 'a'], [1, 'b'], [3, null]], 'the unused stage is not in the plan');
  assert.equal(doc.target, 3);
  assert.deepEqual(doc.stages.find((s) => s.index === 3)!.dependsOn.sort(), [0, 1]);
  const kinds = doc.vertices.map((v) => `${v.kind}:${v.instruction.split(' ')[0]}`);
  assert.deepEqual(kinds, ['source:FROM', 'exec:RUN', 'source:FROM', 'metadata:ENV', 'exec:RUN', 'source:FROM', 'exec:COPY', 'exec:RUN', 'metadata:CMD']);
  const copy = doc.vertices.find((v) => v.instruction.startsWith('COPY'))!;
  const mountRun = doc.vertices.find((v) => v.instruction.includes('--mount'))!;
  assert.deepEqual(copy.inputs, [0]);
  assert.deepEqual(mountRun.inputs, [1]);
  // Stage edges come from the producing stage's last vertex.
  assert.ok(doc.edges.some((e) => e.kind === 'stage' && e.from === 1 && e.to === copy.id), JSON.stringify(doc.edges));
  assert.ok(doc.edges.some((e) => e.kind === 'stage' && e.from === 4 && e.to === mountRun.id));
  assert.ok(doc.edges.some((e) => e.kind === 'parent' && e.from === copy.id && e.to === mountRun.id));
  assert.ok(doc.vertices.every((v) => /^sha256:[a-f0-9]{64}$/.test(v.key)));
  assert.deepEqual(doc.vertices.filter((v) => v.kind !== 'source' && v.cached), [], 'nothing is cached before the first build');
  assert.deepEqual(await fsp.readdir(path.join(fx.root, 'tmp')).catch(() => []), scratchBefore, 'planning wrote nothing');

  // After a build every step is cached, with the same keys the build used.
  const built = await fx.build(dir, { tags: ['graph-multi'] });
  const { document: again } = await plan({ context: dir, store: fx.store });
  assert.ok(again.vertices.every((v) => v.cached), formatPlan(again));
  const keys = new Set(built.steps.map((s) => `sha256:${s.key}`));
  for (const v of again.vertices) assert.ok(keys.has(v.key), `${v.instruction} has the build's key`);
  // One edited line: that step and the ones after it in its stage (and its dependants) are not cached.
  await fsp.writeFile(path.join(dir, 'Dockerfile'), MULTI.replace('echo b > /b.txt', 'echo B > /b.txt'));
  const { document: edited } = await plan({ context: dir, store: fx.store });
  const uncached = edited.vertices.filter((v) => !v.cached).map((v) => v.instruction);
  assert.deepEqual(uncached, ['RUN echo B > /b.txt', 'RUN --mount=type=bind,from=b,target=/mnt cat /mnt/b.txt > /b-copy.txt', 'CMD ["cat", "/a.txt"]']);
  const text = formatPlan(edited);
  assert.match(text, /^build plan: 3 stages, 9 vertices, 3 of 6 steps cached, target stage-3$/m);
  assert.match(text, /^stage 3 stage-3 \(FROM busybox\) <- a, b$/m);
  assert.match(text, /^ {2}#4 {3}run {5}[0-9a-f]{12} {2}5\/9 {4}RUN echo B > \/b\.txt$/m);
});

test('drydock build --print-plan [--format json] through the CLI', async () => {
  const dir = await fx.context({ Dockerfile: 'FROM busybox AS base\nRUN echo x\nFROM base\nLABEL a=b\n' });
  const json = await runCli(['build', '--print-plan', '--format', 'json', dir], { root: fx.root });
  assert.equal(json.code, 0, json.stderr);
  const doc = JSON.parse(json.stdout) as PlanDocument;
  assert.deepEqual(doc.stages.map((s) => s.base), ['busybox', 'stage 0']);
  assert.deepEqual(doc.edges.filter((e) => e.kind === 'stage'), [{ from: 1, to: 2, kind: 'stage' }]);
  const text = await runCli(['build', '--print-plan', dir], { root: fx.root });
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /^build plan: 2 stages, 4 vertices, 0 of 2 steps cached, target stage-1$/m);
  assert.doesNotMatch(text.stdout, /Successfully built/);
});

test('independent stages run concurrently: two RUN sleep 2 stages take about 2 s, output lines carry the stage', async () => {
  // Each RUN records the host's uptime (shared by all containers, 10 ms resolution) before and
  // after its sleep: the span covers both sleeps, independent of how long the rest of the build
  // takes on a loaded machine.
  const dir = await fx.context({
    Dockerfile: `FROM busybox AS one
RUN cut -d' ' -f1 /proc/uptime > /one.start && sleep 2 && echo one slept > /one && cut -d' ' -f1 /proc/uptime > /one.end
FROM busybox AS two
RUN cut -d' ' -f1 /proc/uptime > /two.start && sleep 2 && echo two slept > /two && cut -d' ' -f1 /proc/uptime > /two.end
FROM busybox
COPY --from=one /one /one.start /one.end /
COPY --from=two /two /two.start /two.end /
CMD ["cat", "/one", "/two"]
`,
  });
  const t0 = performance.now();
  const r = await fx.build(dir, { tags: ['graph-parallel'], noCache: true });
  const seconds = (performance.now() - t0) / 1000;
  const out = await runImage(fx.root, 'graph-parallel', { args: ['cat', '/one', '/two', '/one.start', '/one.end', '/two.start', '/two.end'] });
  const [one, two, ...times] = out.out.trim().split('\n');
  assert.deepEqual([one, two], ['one slept', 'two slept']);
  const [s1, e1, s2, e2] = times.map(Number) as [number, number, number, number];
  const span = Math.max(e1, e2) - Math.min(s1, s2);
  assert.ok(s2 < e1 && s1 < e2, `the sleeps overlap: one ${s1}-${e1}, two ${s2}-${e2}`);
  assert.ok(span < 3.5, `both 2 s sleeps took ${span.toFixed(2)} s together (sequential: >= 4 s); the whole build ${seconds.toFixed(2)} s\n${r.log}`);
  assert.match(r.log, /^\[one\] Step 2\/8 : RUN cut .* > \/one\.end$/m);
  assert.match(r.log, /^\[two\] Step 4\/8 : RUN cut .* > \/two\.end$/m);
  assert.match(r.log, /^\[stage-2\] Step 6\/8 : COPY --from=one \/one \/one\.start \/one\.end \/$/m);
  // Every line of a concurrent build names its stage, except the exporter's.
  for (const line of r.log.trimEnd().split('\n')) assert.match(line, /^\[(one|two|stage-2)\] |^Successfully (built|tagged) /, line);
  assert.deepEqual(r.steps.map((s) => s.step), [1, 2, 3, 4, 5, 6, 7, 8]);
});

test('RUN output of concurrent stages is prefixed line by line', async () => {
  const dir = await fx.context({
    Dockerfile: `FROM busybox AS left
RUN for i in 1 2 3; do echo left-$i; sleep 0.2; done
FROM busybox AS right
RUN for i in 1 2 3; do echo right-$i; sleep 0.2; done; printf no-newline
FROM busybox
COPY --from=left /etc/hostname /l
COPY --from=right /etc/hostname /r
`,
  });
  const r = await fx.build(dir, { noCache: true });
  for (const i of [1, 2, 3]) {
    assert.match(r.log, new RegExp(`^\\[left\\] left-${i}$`, 'm'));
    assert.match(r.log, new RegExp(`^\\[right\\] right-${i}$`, 'm'));
  }
  assert.match(r.log, /^\[right\] no-newline$/m);
});

test('a failing stage stops the build: the error is that step\'s, and the other stage\'s running step finishes cleanly', async () => {
  const dir = await fx.context({
    Dockerfile: `FROM busybox AS slow
RUN sleep 1 && echo slow > /slow
RUN echo must not start > /never
FROM busybox AS bad
RUN exit 3
FROM busybox
COPY --from=slow /slow /
COPY --from=bad /etc/hostname /
`,
  });
  await assert.rejects(fx.build(dir, { noCache: true }), (e: Error & { log?: string }) => {
    assert.match(e.message, /Dockerfile:5: step 5\/8 "RUN exit 3": process "\/bin\/sh -c exit 3" did not complete successfully: exit code: 3/);
    assert.doesNotMatch(e.log ?? '', /Step 3\/8/, 'no new step starts after a failure');
    return true;
  });
  const { scratchRoot } = await import('../../src/runtime/index.js');
  const left = (await fsp.readdir(scratchRoot(fx.root)).catch(() => [] as string[])).filter((d) => d.startsWith('step-'));
  assert.deepEqual(left, [], 'every step removed its work dir');
  // The slow stage's step completed and is cached even though the build failed.
  const { document } = await plan({ context: dir, store: fx.store });
  assert.equal(document.vertices.find((v) => v.instruction.startsWith('RUN sleep 1'))!.cached, true);
});

test('COPY --from starts once the source stage\'s last step has written its files, not after that step\'s snapshot', async () => {
  // 64 MiB of random bytes: the source stage's snapshot (tar, two SHA-256 passes, stored gzip
  // blocks, in the snapshot worker) takes well over 100 ms, the final stage's COPY a few.
  const dir = await fx.context({
    Dockerfile: `FROM busybox AS src
RUN head -c 67108864 /dev/urandom > /big && echo small > /small
FROM busybox
COPY --from=src /small /small
CMD ["cat", "/small"]
`,
  });
  const r = await runCli(['build', '--no-cache', '-t', 'graph-early-from', dir], { root: fx.root, env: { DRYDOCK_TRACE: '1' } });
  assert.equal(r.code, 0, r.stderr);
  // "trace <label> <ms> @<start ms>", printed when the span ends.
  const spans = [...r.stderr.matchAll(/^trace (\S+) ([\d.]+) @(\d+)$/gm)].map((m) => ({ label: m[1]!, ms: Number(m[2]), at: Number(m[3]) }));
  const snapshots = spans.filter((x) => x.label === 'step.tar+hash');
  const big = snapshots.reduce((a, b) => (b.ms > a.ms ? b : a));
  // The final stage has one op, the COPY: the step.op that started last.
  const copy = spans.filter((x) => x.label === 'step.op').reduce((a, b) => (b.at > a.at ? b : a));
  assert.ok(copy.at < big.at + big.ms, `the COPY started @${copy.at}, the source's snapshot ran @${big.at} for ${big.ms} ms\n${r.stderr}`);
  const out = await runImage(fx.root, 'graph-early-from');
  assert.equal(out.out, 'small\n');
});
