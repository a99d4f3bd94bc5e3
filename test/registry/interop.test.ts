// Real clients against `drydock serve`: skopeo (copy in/out, creds, TLS with a test CA, delete,
// list-tags) and podman (pull/push), over plain HTTP, htpasswd, built-in tokens and TLS.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promises as fsp, writeFileSync } from 'node:fs';
import path from 'node:path';
import { requireTool, tempDir } from '../helpers/env.js';
import { busyboxImage } from '../helpers/images.js';
import { htpasswdLine } from '../helpers/docker-registry.js';
import { podman, type Podman } from '../helpers/podman.js';
import { startRegistry, type StartedRegistry } from '../../src/registry/index.js';
import { http } from './util.js';

function run(cmd: string, args: string[], timeoutMs = 120_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

async function skopeo(args: string[]): Promise<string> {
  const r = await run('skopeo', args);
  assert.equal(r.code, 0, `skopeo ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

let store: string;
let ociSource: string;
let htpasswdFile: string;

before(async () => {
  requireTool('skopeo');
  requireTool('openssl');
  store = tempDir('drydock-registry-interop-store-');
  await busyboxImage(store);
  // The store root is an OCI layout; its index names the image by tag "latest".
  ociSource = `oci:${store}:latest`;
  htpasswdFile = path.join(tempDir('drydock-registry-interop-auth-'), 'htpasswd');
  writeFileSync(htpasswdFile, `${htpasswdLine('alice', 's3cret')}\n${htpasswdLine('bob', 'hunter2')}\n`);
});

describe('skopeo over plain HTTP', () => {
  let reg: StartedRegistry;
  before(async () => { reg = await startRegistry({ root: tempDir('drydock-registry-interop-') }); });
  after(async () => { await reg.close(); });

  test('copy in, inspect, list-tags, copy out, delete', async () => {
    const dest = `docker://${reg.host}/library/busybox:latest`;
    await skopeo(['copy', '--dest-tls-verify=false', ociSource, dest]);
    const inspect = JSON.parse(await skopeo(['inspect', '--tls-verify=false', dest])) as { Layers: string[]; Os: string };
    assert.equal(inspect.Os, 'linux');
    assert.equal(inspect.Layers.length, 1);
    await skopeo(['copy', '--src-tls-verify=false', '--dest-tls-verify=false', dest, `docker://${reg.host}/copies/busybox:v2`]);
    const tags = JSON.parse(await skopeo(['list-tags', '--tls-verify=false', `docker://${reg.host}/copies/busybox`])) as { Tags: string[] };
    assert.deepEqual(tags.Tags, ['v2']);
    const out = tempDir('drydock-registry-interop-out-');
    await skopeo(['copy', '--src-tls-verify=false', dest, `dir:${out}`]);
    const files = await fsp.readdir(out);
    assert.ok(files.includes('manifest.json'));
    // skopeo verified every blob digest while copying; the layer is there in full
    const manifest = JSON.parse(await fsp.readFile(path.join(out, 'manifest.json'), 'utf8')) as { layers: { digest: string; size: number }[] };
    const st = await fsp.stat(path.join(out, manifest.layers[0]!.digest.slice(7)));
    assert.equal(st.size, manifest.layers[0]!.size);
    await skopeo(['delete', '--tls-verify=false', `docker://${reg.host}/copies/busybox:v2`]);
    const gone = await run('skopeo', ['inspect', '--tls-verify=false', `docker://${reg.host}/copies/busybox:v2`]);
    assert.notEqual(gone.code, 0);
    assert.match(gone.stderr, /manifest unknown/i);
  });
});

describe('skopeo with htpasswd and tokens', () => {
  let basic: StartedRegistry;
  let token: StartedRegistry;
  before(async () => {
    basic = await startRegistry({ root: tempDir('drydock-registry-interop-basic-'), htpasswd: htpasswdFile, access: [
      { users: ['alice'], repositories: ['*'], actions: ['pull', 'push', 'delete'] },
      { users: ['bob'], repositories: ['*'], actions: ['pull'] },
    ] });
    token = await startRegistry({ root: tempDir('drydock-registry-interop-token-'), htpasswd: htpasswdFile, token: true });
  });
  after(async () => { await basic.close(); await token.close(); });

  test('push without credentials fails with a Basic challenge; with --dest-creds it works', async () => {
    const dest = `docker://${basic.host}/private/busybox:latest`;
    const denied = await run('skopeo', ['copy', '--dest-tls-verify=false', ociSource, dest]);
    assert.notEqual(denied.code, 0);
    assert.match(denied.stderr, /authentication required|unauthorized/i);
    const r = await http(`${basic.url}/v2/`);
    assert.equal(r.status, 401);
    assert.equal(r.headers.get('www-authenticate'), 'Basic realm="drydock registry"');
    await skopeo(['copy', '--dest-tls-verify=false', '--dest-creds', 'alice:s3cret', ociSource, dest]);
    await skopeo(['inspect', '--tls-verify=false', '--creds', 'bob:hunter2', dest]);
    const bobPush = await run('skopeo', ['copy', '--dest-tls-verify=false', '--dest-creds', 'bob:hunter2', ociSource, `docker://${basic.host}/bob/busybox:latest`]);
    assert.notEqual(bobPush.code, 0, 'bob may only pull');
    assert.match(bobPush.stderr, /denied/i);
    const wrong = await run('skopeo', ['inspect', '--tls-verify=false', '--creds', 'alice:wrong', dest]);
    assert.notEqual(wrong.code, 0);
  });

  test('bearer token flow with the built-in token endpoint', async () => {
    const dest = `docker://${token.host}/tok/busybox:latest`;
    const r = await http(`${token.url}/v2/tok/busybox/manifests/latest`);
    assert.equal(r.status, 401);
    assert.equal(r.headers.get('www-authenticate'), `Bearer realm="${token.url}/token",service="drydock-registry",scope="repository:tok/busybox:pull"`);
    const denied = await run('skopeo', ['copy', '--dest-tls-verify=false', ociSource, dest]);
    assert.notEqual(denied.code, 0);
    await skopeo(['copy', '--dest-tls-verify=false', '--dest-creds', 'alice:s3cret', ociSource, dest]);
    const tags = JSON.parse(await skopeo(['list-tags', '--tls-verify=false', '--creds', 'alice:s3cret', `docker://${token.host}/tok/busybox`])) as { Tags: string[] };
    assert.deepEqual(tags.Tags, ['latest']);
  });
});

describe('TLS with a test CA', () => {
  let reg: StartedRegistry;
  let certDir: string;
  before(async () => {
    const dir = tempDir('drydock-registry-tls-');
    certDir = path.join(dir, 'client');
    await fsp.mkdir(certDir);
    const o = async (args: string[]) => {
      const r = await run('openssl', args);
      assert.equal(r.code, 0, r.stderr);
    };
    await o(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=drydock test CA', '-keyout', `${dir}/ca.key`, '-out', `${dir}/ca.crt`]);
    await o(['req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=127.0.0.1', '-keyout', `${dir}/server.key`, '-out', `${dir}/server.csr`]);
    writeFileSync(`${dir}/ext.cnf`, 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
    await o(['x509', '-req', '-in', `${dir}/server.csr`, '-CA', `${dir}/ca.crt`, '-CAkey', `${dir}/ca.key`, '-CAcreateserial', '-days', '1', '-extfile', `${dir}/ext.cnf`, '-out', `${dir}/server.crt`]);
    await fsp.copyFile(`${dir}/ca.crt`, `${certDir}/ca.crt`);
    reg = await startRegistry({ root: tempDir('drydock-registry-tls-root-'), tls: { certificate: `${dir}/server.crt`, key: `${dir}/server.key` }, htpasswd: htpasswdFile });
  });
  after(async () => { await reg.close(); });

  test('skopeo verifies the server against the CA and pushes with credentials', async () => {
    assert.match(reg.url, /^https:\/\//);
    const dest = `docker://${reg.host}/tls/busybox:latest`;
    // without the CA, verification fails
    const untrusted = await run('skopeo', ['copy', '--dest-creds', 'alice:s3cret', ociSource, dest]);
    assert.notEqual(untrusted.code, 0);
    assert.match(untrusted.stderr, /certificate|x509/i);
    await skopeo(['copy', '--dest-cert-dir', certDir, '--dest-creds', 'alice:s3cret', ociSource, dest]);
    const inspect = JSON.parse(await skopeo(['inspect', '--cert-dir', certDir, '--creds', 'alice:s3cret', dest])) as { Os: string };
    assert.equal(inspect.Os, 'linux');
  });
});

describe('podman pull and push', () => {
  let reg: StartedRegistry;
  let pm: Podman;
  before(async () => {
    reg = await startRegistry({ root: tempDir('drydock-registry-podman-') });
    pm = await podman('drydock-registry-podman-');
    await skopeo(['copy', '--dest-tls-verify=false', ociSource, `docker://${reg.host}/library/busybox:latest`]);
  });
  after(async () => { await pm.cleanup(); await reg.close(); });

  test('podman pull, tag, push; the pushed image is served back', async () => {
    await pm.run(['pull', '--tls-verify=false', `${reg.host}/library/busybox:latest`]);
    await pm.run(['tag', `${reg.host}/library/busybox:latest`, `${reg.host}/pushed/by-podman:v1`]);
    await pm.run(['push', '--tls-verify=false', `${reg.host}/pushed/by-podman:v1`]);
    const r = await http(`${reg.url}/v2/pushed/by-podman/manifests/v1`, { headers: { Accept: 'application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json' } });
    assert.equal(r.status, 200);
    const m = r.json() as { layers: { digest: string }[] };
    for (const l of m.layers) assert.equal((await http(`${reg.url}/v2/pushed/by-podman/blobs/${l.digest}`, { method: 'HEAD' })).status, 200);
    await pm.run(['rmi', '-a', '-f']);
    await pm.run(['pull', '--tls-verify=false', `${reg.host}/pushed/by-podman:v1`]);
    const images = await pm.run(['images', '--format', '{{.Repository}}:{{.Tag}}']);
    assert.match(images.stdout, /pushed\/by-podman:v1/);
  });
});
