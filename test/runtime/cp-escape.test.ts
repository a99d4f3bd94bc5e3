// CVE-2018-15664 class: a container that swaps a directory for a symlink to / in a loop while
// `drydock cp` runs must never make cp read or write the host's files, in either direction and
// in tar-stream mode. The marker directory exists on the host and (with other content) inside
// the container at the same path, so only an escape can ever see the host's copy.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { runtimeFixture, waitFor, type RuntimeFixture } from './helpers.js';
import { tempDir } from '../helpers/env.js';
import { copy } from '../../src/runtime/index.js';

let fx: RuntimeFixture;
before(async () => { fx = await runtimeFixture('cpesc'); });
after(async () => { await fx?.cleanup(); });

// At least MIN_ATTEMPTS rounds, and more (up to MAX_ATTEMPTS) until every mode has had a copy go
// through while the loop swaps: a race makes most attempts fail cleanly, and a test whose
// copies all failed would prove nothing.
const MIN_ATTEMPTS = 25;
const MAX_ATTEMPTS = 200;

test('a directory swapped for a symlink to / during cp never exposes or changes host files', async () => {
  const hostDir = tempDir('drydock-cp-marker-');
  const secret = `HOST-SECRET-${randomBytes(8).toString('hex')}`;
  await fsp.writeFile(path.join(hostDir, 'secret'), `${secret}\n`);
  const rel = hostDir.slice(1);
  const script = [
    `mkdir -p /x/swap/${rel} /${rel}`,
    `echo container-swap > /x/swap/${rel}/secret`,
    `echo container-root > /${rel}/secret`,
    'touch /x/ready',
    'while :; do mv /x/swap /x/d; ln -s / /x/swap; rm /x/swap; mv /x/d /x/swap; done',
  ].join('; ');
  await fx.ok(['run', '-d', '--name', 'swapper', 'busybox', 'sh', '-c', script]);
  await waitFor('swap loop', async () => (await fx.cli(['exec', 'swapper', 'test', '-e', '/x/ready'])).code === 0);

  const out = tempDir('drydock-cp-out-');
  const plantDir = tempDir('drydock-cp-plant-');
  await fsp.writeFile(path.join(plantDir, 'planted-by-cp'), 'planted\n');
  await fsp.writeFile(path.join(plantDir, 'planted-by-stream'), 'planted\n');
  const streamTar = execFileSync('tar', ['-C', plantDir, '-cf', '-', 'planted-by-stream']);
  const ok = { fileOut: 0, streamOut: 0, fileIn: 0, streamIn: 0 };
  const hostUnchanged = async () => assert.deepEqual((await fsp.readdir(hostDir)).sort(), ['secret'], 'cp wrote into the host directory');

  let attempts = 0;
  for (let i = 0; i < MAX_ATTEMPTS && (i < MIN_ATTEMPTS || Object.values(ok).some((n) => n === 0)); i++) {
    attempts++;
    const outFile = path.join(out, `secret-${i}`);
    if (await copy(`swapper:/x/swap/${rel}/secret`, outFile).then(() => true, () => false)) {
      const text = await fsp.readFile(outFile, 'utf8');
      assert.ok(!text.includes(secret), `cp CTR:PATH HOST read the host file (attempt ${i})`);
      assert.match(text, /^container-(swap|root)\n$/);
      ok.fileOut++;
    }

    const sink = new PassThrough();
    const chunks: Buffer[] = [];
    sink.on('data', (d: Buffer) => chunks.push(d));
    if (await copy(`swapper:/x/swap/${rel}`, '-', { stdout: sink }).then(() => true, () => false)) {
      const tar = Buffer.concat(chunks);
      assert.ok(!tar.includes(secret), `cp CTR:PATH - streamed the host file (attempt ${i})`);
      // The swap can move the file away between the walk and the read: cp then skips it (with a
      // warning) and the stream holds only directories. Only a stream with the file counts.
      if (tar.includes('container-')) ok.streamOut++;
    }

    if (await copy(path.join(plantDir, 'planted-by-cp'), `swapper:/x/swap/${rel}/`).then(() => true, () => false)) ok.fileIn++;
    await hostUnchanged();

    if (await copy('-', `swapper:/x/swap/${rel}`, { stdin: Readable.from([streamTar]) }).then(() => true, () => false)) ok.streamIn++;
    await hostUnchanged();
  }
  assert.equal(await fsp.readFile(path.join(hostDir, 'secret'), 'utf8'), `${secret}\n`);
  // Not vacuous: copies went through while the swap loop ran, and the writes landed in the container.
  for (const [mode, n] of Object.entries(ok)) assert.ok(n > 0, `no ${mode} copy succeeded in ${attempts} attempts`);
  const found = await fx.ok(['exec', 'swapper', 'sh', '-c', `ls /${rel} /x/swap/${rel} /x/d/${rel} 2>/dev/null | sort -u`]);
  assert.match(found, /planted-by-cp/);
  assert.match(found, /planted-by-stream/);
  process.stderr.write(`cp attempts under the swap loop: ${JSON.stringify(ok)} of ${attempts} each\n`);
  await fx.ok(['rm', '-f', 'swapper']);
});
