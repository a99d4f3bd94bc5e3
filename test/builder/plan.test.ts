// Planning without root or runc: a Dockerfile in, vertices with cache keys out. Keys chain from
// the parent, so an edit changes its step's key and every later one in the stage, nothing before;
// COPY keys follow file content; --build-arg changes keys from the ARG that consumes it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { tempDir } from '../helpers/env.js';
import { plan, type BuildOptions } from '../../src/builder/index.js';
import { ContentStore } from '../../src/store/index.js';

async function setup() {
  const base = tempDir('drydock-plan-');
  const store = await ContentStore.open(path.join(base, 'store'));
  const context = path.join(base, 'ctx');
  await fsp.mkdir(context);
  await fsp.writeFile(path.join(context, 'app.txt'), 'v1\n');
  const keys = async (dockerfileText: string, opts: Partial<BuildOptions> = {}) =>
    (await plan({ context, store, dockerfileText, ...opts })).document.vertices.map((v) => v.key);
  return { context, keys };
}

const DF = 'FROM scratch\nARG V=1\nENV A=$V\nCOPY app.txt /\nLABEL x=y\n';

test('keys are deterministic and chain: an edit changes its step and the ones after it', async () => {
  const { keys } = await setup();
  const a = await keys(DF);
  assert.equal(a.length, 5);
  assert.deepEqual(await keys(DF), a, 'same Dockerfile, same keys');
  const edited = await keys(DF.replace('LABEL x=y', 'LABEL x=z'));
  assert.deepEqual(edited.slice(0, 4), a.slice(0, 4));
  assert.notEqual(edited[4], a[4]);
  const envEdited = await keys(DF.replace('ENV A=$V', 'ENV A=${V}x'));
  assert.deepEqual(envEdited.slice(0, 2), a.slice(0, 2));
  for (const i of [2, 3, 4]) assert.notEqual(envEdited[i], a[i]);
});

test('COPY keys follow the content of the files, and --build-arg keys start at its ARG', async () => {
  const { context, keys } = await setup();
  const a = await keys(DF);
  await fsp.writeFile(path.join(context, 'app.txt'), 'v2\n');
  const changed = await keys(DF);
  assert.deepEqual(changed.slice(0, 3), a.slice(0, 3));
  assert.notEqual(changed[3], a[3]);
  const argged = await keys(DF, { buildArgs: { V: '2' } });
  assert.equal(argged[0], changed[0]);
  assert.notEqual(argged[1], changed[1]);
});

test('the plan of a missing COPY source is the build\'s error, with its position', async () => {
  const { keys } = await setup();
  await assert.rejects(keys('FROM scratch\nCOPY missing.txt /\n'), /Dockerfile:2:1: .*missing\.txt/);
});
