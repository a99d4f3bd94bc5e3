// pull / push / copy / login against real registries with auth: distribution 2.8 (htpasswd,
// Basic) and drydock's own server (htpasswd Basic, and bearer tokens from its token endpoint).
// The same cases run against each, so the client is not tuned to one server.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ContentStore, resolveImage } from '../../src/store/index.js';
import * as client from '../../src/client/index.js';
import { startRegistry } from '../../src/registry/index.js';
import { runCli, tempDir } from '../helpers/env.js';
import { startDistribution, htpasswdLine } from '../helpers/docker-registry.js';
import { buildImage, storeImage, storeIndex, type TestImage } from './fixtures.js';

const USER = 'alice';
const PASSWORD = 'correct horse';

interface Server { host: string; stop(): Promise<void> }

const SERVERS: { name: string; start(): Promise<Server> }[] = [
  { name: 'distribution 2.8 (htpasswd)', start: () => startDistribution({ users: { [USER]: PASSWORD } }) },
  {
    name: 'drydock registry (htpasswd)',
    async start() {
      const dir = tempDir('drydock-client-reg-');
      writeFileSync(path.join(dir, 'htpasswd'), htpasswdLine(USER, PASSWORD) + '\n');
      const reg = await startRegistry({ root: path.join(dir, 'data'), htpasswd: path.join(dir, 'htpasswd') });
      return { host: reg.host, stop: () => reg.close() };
    },
  },
  {
    name: 'drydock registry (bearer token)',
    async start() {
      const dir = tempDir('drydock-client-reg-');
      writeFileSync(path.join(dir, 'htpasswd'), htpasswdLine(USER, PASSWORD) + '\n');
      const reg = await startRegistry({ root: path.join(dir, 'data'), htpasswd: path.join(dir, 'htpasswd'), token: true });
      return { host: reg.host, stop: () => reg.close() };
    },
  },
];

for (const server of SERVERS) {
  describe(`registry client against ${server.name}`, () => {
    let reg: Server;
    let root: string;
    let store: ContentStore;
    let authFile: string;
    let img: TestImage;
    const auth = () => ({ auth: { authFile } });

    before(async () => {
      reg = await server.start();
      root = tempDir();
      store = await ContentStore.open(root);
      authFile = path.join(tempDir(), 'auth.json');
      img = await buildImage([300_000, 1_500_000, 20_000]);
      await storeImage(store, img, `${reg.host}/team/app:1`);
    });
    after(async () => { await reg.stop(); });

    it('refuses to push without credentials, naming `drydock login`', async () => {
      await assert.rejects(client.push(store, `${reg.host}/team/app:1`, undefined, auth()), /unauthorized.*drydock login/);
    });

    it('login with a wrong password fails and writes nothing', async () => {
      const r = await runCli(['login', '--authfile', authFile, '-u', USER, '--password-stdin', reg.host], { root, input: 'wrong\n' });
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /incorrect username or password|unauthorized/);
      assert.throws(() => readFileSync(authFile));
    });

    it('login --password-stdin saves base64 credentials', async () => {
      const r = await runCli(['login', '--authfile', authFile, '-u', USER, '--password-stdin', reg.host], { root, input: `${PASSWORD}\n` });
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /Login Succeeded/);
      const saved = JSON.parse(readFileSync(authFile, 'utf8'));
      assert.equal(Buffer.from(saved.auths[reg.host].auth, 'base64').toString(), `${USER}:${PASSWORD}`);
    });

    it('push prints Docker\'s digest line and uploads every blob', async () => {
      const r = await runCli(['push', '--authfile', authFile, '--progress=plain', `${reg.host}/team/app:1`], { root });
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, new RegExp(`The push refers to repository \\[${reg.host}/team/app\\]`));
      assert.match(r.stdout, new RegExp(`1: digest: ${img.descriptor.digest} size: ${img.descriptor.size}`));
      assert.match(r.stdout, /: Pushed/);
    });

    it('a second push skips blobs the registry has (HEAD)', async () => {
      const res = await client.push(store, `${reg.host}/team/app:1`, undefined, auth());
      assert.equal(res.blobsCopied, 0);
      assert.equal(res.blobsSkipped, 4);
    });

    it('pull stores the image with verified blobs and the tag', async () => {
      const root2 = tempDir();
      const r = await runCli(['pull', '--authfile', authFile, '--progress=json', `${reg.host}/team/app:1`], { root: root2 });
      assert.equal(r.code, 0, r.stderr);
      const events = r.stdout.trim().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
      assert.ok(events.some((e) => e.type === 'blob' && e.status === 'done'));
      assert.equal(events.at(-1).type, 'done');
      assert.equal(events.at(-1).digest, img.descriptor.digest);
      const s2 = await ContentStore.open(root2);
      const local = await resolveImage(s2, `${reg.host}/team/app:1`);
      assert.equal(local.manifestDescriptor.digest, img.descriptor.digest);
      for (const l of img.layers) assert.deepEqual(await s2.readBlob(l.descriptor.digest), l.bytes);
    });

    it('copy to another repository of the same registry mounts instead of uploading', async () => {
      const events: client.ProgressEvent[] = [];
      const res = await client.copy(`docker://${reg.host}/team/app:1`, `docker://${reg.host}/other/app:copy`, { ...auth(), onProgress: (e) => events.push(e) });
      assert.equal(res.digest, img.descriptor.digest);
      assert.equal(res.blobsCopied, 0, 'nothing re-uploaded');
      assert.ok(events.some((e) => e.type === 'blob' && e.status === 'mounted'), 'cross-repository mount used');
      const pulled = await client.pull(await ContentStore.open(tempDir()), `${reg.host}/other/app:copy`, auth());
      assert.equal(pulled.digest, img.descriptor.digest);
    });

    it('multi-platform: push --all keeps the index; pull picks --platform or takes --all', async () => {
      const amd = await buildImage([50_000], { os: 'linux', architecture: 'amd64' });
      const arm = await buildImage([60_000], { os: 'linux', architecture: 'arm64', variant: 'v8' });
      const idx = await storeIndex(store, [amd, arm], `${reg.host}/team/multi:1`);
      const pushed = await client.push(store, `${reg.host}/team/multi:1`, undefined, { ...auth(), all: true });
      assert.equal(pushed.digest, idx.digest);

      const s2 = await ContentStore.open(tempDir());
      const one = await client.pull(s2, `${reg.host}/team/multi:1`, { ...auth(), platform: { os: 'linux', architecture: 'arm64' } });
      assert.equal(one.digest, arm.descriptor.digest);
      assert.equal(await s2.hasBlob(amd.layers[0]!.descriptor.digest), false, 'other platforms are not downloaded');

      const s3 = await ContentStore.open(tempDir());
      const all = await client.pull(s3, `${reg.host}/team/multi:1`, { ...auth(), all: true });
      assert.equal(all.digest, idx.digest);
      for (const i of [amd, arm]) assert.ok(await s3.hasBlob(i.layers[0]!.descriptor.digest));
      const local = await resolveImage(s3, `${reg.host}/team/multi:1`, { os: 'linux', architecture: 'arm64' });
      assert.equal(local.manifestDescriptor.digest, arm.descriptor.digest);

      await assert.rejects(client.pull(await ContentStore.open(tempDir()), `${reg.host}/team/multi:1`, { ...auth(), platform: { os: 'linux', architecture: 's390x' } }),
        /no image for platform linux\/s390x.*linux\/amd64, linux\/arm64\/v8/);
    });

    it('pull of a missing tag is a clear not-found error', async () => {
      await assert.rejects(client.pull(await ContentStore.open(tempDir()), `${reg.host}/team/app:nope`, auth()), /manifest for .*team\/app:nope not found/);
    });

    it('logout removes the credentials', async () => {
      const r = await runCli(['logout', '--authfile', authFile, reg.host], { root });
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, new RegExp(`Removing login credentials for ${reg.host}`));
      assert.equal(JSON.parse(readFileSync(authFile, 'utf8')).auths[reg.host], undefined);
    });
  });
}
