// The web UI at /ui/ in a real headless Chromium (Debian's chromium, driven by puppeteer-core):
// the repository list, tags, a manifest of an image built by umoci and pushed by skopeo (layers,
// config, labels, history, referrers), an index with two platforms, search, login with htpasswd
// credentials, a refused password, a repository the user may not pull staying absent, and a tag
// deleted from the page being gone from the registry API. Screenshots of the main pages go to
// $DRYDOCK_UI_SCREENSHOTS (docs/img to refresh the ones in docs/registry.md), else a temp dir.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';
import { PROJECT_ROOT, requireTool, tempDir } from '../helpers/env.js';
import { htpasswdLine } from '../helpers/docker-registry.js';
import { configFromEnv, createRegistryServer, normalizeConfig, startRegistry, type RegistryConfig, type StartedRegistry } from '../../src/registry/index.js';
import { UI_CSP } from '../../src/registry/ui/index.js';
import { http, pushBlob, pushImage, serveProcess, sha256 } from './util.js';

const CHROMIUM = '/usr/bin/chromium';
/** A label value that would run script if the page ever inserted image data as HTML. */
const XSS = '<img src=x onerror="window.pwned=1">';
const basic = (u: string, p: string) => ({ Authorization: `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}` });
const ALICE = basic('alice', 's3cret');

function run(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: 120_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(' ')}: ${stderr || err.message}`));
      else resolve(stdout);
    });
  });
}

/** An OCI layout made by umoci: two layers, a label, env, cmd and the history umoci writes. */
async function umociImage(): Promise<string> {
  const dir = tempDir('drydock-ui-umoci-');
  const layout = path.join(dir, 'layout');
  await run('umoci', ['init', '--layout', layout]);
  await run('umoci', ['new', '--image', `${layout}:v1`]);
  // A repack builds on the image its bundle was unpacked from: one bundle per layer.
  const layers: [string, string, string][] = [['hello.txt', 'hello from umoci\n', 'COPY hello.txt /'], ['etc/motd', 'x'.repeat(20_000), 'COPY motd /etc/']];
  for (const [i, [file, content, createdBy]] of layers.entries()) {
    const bundle = path.join(dir, `bundle${i}`);
    await run('umoci', ['unpack', '--image', `${layout}:v1`, bundle]);
    mkdirSync(path.dirname(path.join(bundle, 'rootfs', file)), { recursive: true });
    writeFileSync(path.join(bundle, 'rootfs', file), content);
    await run('umoci', ['repack', '--image', `${layout}:v1`, '--history.created_by', createdBy, bundle]);
  }
  await run('umoci', ['config', '--image', `${layout}:v1`, '--config.label', 'org.opencontainers.image.title=demo app',
    '--config.label', 'team=platform', '--config.label', `note=${XSS}`, '--config.env', 'GREETING=hello', '--config.cmd', '/bin/sh', '--os', 'linux', '--architecture', 'amd64',
    '--history.created_by', 'LABEL team=platform']);
  return layout;
}

async function putManifest(base: string, repo: string, ref: string, doc: unknown, mediaType: string): Promise<{ digest: string; size: number; mediaType: string }> {
  const body = Buffer.from(JSON.stringify(doc));
  const r = await http(`${base}/v2/${repo}/manifests/${ref}`, { method: 'PUT', body, headers: { 'Content-Type': mediaType, ...ALICE } });
  assert.equal(r.status, 201, r.body.toString());
  return { digest: sha256(body), size: body.length, mediaType };
}

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

/** team/multi:latest, an OCI index of linux/amd64 and linux/arm64 images. */
async function pushIndex(base: string): Promise<void> {
  const children = [];
  for (const architecture of ['amd64', 'arm64']) {
    const config = Buffer.from(JSON.stringify({ architecture, os: 'linux', rootfs: { type: 'layers', diff_ids: [] }, config: { Cmd: ['sh'] } }));
    const layer = Buffer.from(`layer for ${architecture}`.repeat(100));
    const configDigest = await pushBlob(base, 'team/multi', config, ALICE);
    const layerDigest = await pushBlob(base, 'team/multi', layer, ALICE);
    const m = await putManifest(base, 'team/multi', `sha256-${architecture}`, {
      schemaVersion: 2, mediaType: OCI_MANIFEST,
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: configDigest, size: config.length },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: layerDigest, size: layer.length }],
    }, OCI_MANIFEST);
    children.push({ ...m, platform: { os: 'linux', architecture } });
  }
  await putManifest(base, 'team/multi', 'latest', { schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: children }, 'application/vnd.oci.image.index.v1+json');
}

/** An SBOM and a signature whose subject is `subject`, pushed by digest as ORAS and notation do. */
async function pushReferrers(base: string, repo: string, subject: { digest: string; size: number; mediaType: string }): Promise<void> {
  const empty = await pushBlob(base, repo, '{}', ALICE);
  for (const [artifactType, payload] of [['application/spdx+json', '{"spdxVersion":"SPDX-2.3"}'], ['application/vnd.cncf.notary.signature', 'signature bytes']] as const) {
    const blob = await pushBlob(base, repo, payload, ALICE);
    const doc = {
      schemaVersion: 2, mediaType: OCI_MANIFEST, artifactType,
      config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: empty, size: 2 },
      layers: [{ mediaType: artifactType, digest: blob, size: Buffer.byteLength(payload) }],
      subject, annotations: { 'org.opencontainers.image.created': '2026-01-02T03:04:05Z' },
    };
    const d = sha256(JSON.stringify(doc));
    await putManifest(base, repo, d, doc, OCI_MANIFEST);
  }
}

let reg: { url: string; host: string; close(): Promise<void>; reload(next: RegistryConfig): Promise<void> };
let regConfig: RegistryConfig;
/** htpasswd with no anonymous access at all: the page must show nothing but its login form. */
let openReg: StartedRegistry;
let browser: Browser;
let shots: string;
const problems: string[] = [];

async function newPage(): Promise<Page> {
  const context = await browser.createBrowserContext();
  const page = await context.newPage();
  await page.setViewport({ width: 1000, height: 720 });
  // A CSP violation or a script error shows up here; the page must have none.
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`console: ${m.text()}`); });
  page.on('pageerror', (e) => problems.push(`pageerror: ${(e as Error).message}`));
  return page;
}

async function login(page: Page, user: string, password: string): Promise<void> {
  await page.goto(`${reg.url}/ui/#/login`);
  await page.waitForSelector('#login');
  await page.type('input[name=username]', user);
  await page.type('input[name=password]', password);
  await page.click('#login button[type=submit]');
}

const texts = (page: Page, selector: string) => page.$$eval(selector, (els) => els.map((e) => (e.textContent ?? '').trim()));

/** The page down to the end of its content (small files for docs/img). */
async function shot(page: Page, name: string): Promise<void> {
  const height = await page.$eval('main', (m) => Math.ceil(m.getBoundingClientRect().bottom) + 12);
  await page.screenshot({ path: path.join(shots, `ui-${name}.png`) as `${string}.png`, clip: { x: 0, y: 0, width: 1000, height: Math.max(240, height) }, captureBeyondViewport: true });
}

before(async () => {
  requireTool('chromium', 'apt-get install chromium');
  requireTool('skopeo');
  requireTool('umoci');
  requireTool('htpasswd', 'apt-get install apache2-utils');
  shots = process.env.DRYDOCK_UI_SCREENSHOTS ? path.resolve(PROJECT_ROOT, process.env.DRYDOCK_UI_SCREENSHOTS) : tempDir('drydock-ui-shots-');
  mkdirSync(shots, { recursive: true });
  const auth = tempDir('drydock-ui-auth-');
  const htpasswd = path.join(auth, 'htpasswd');
  writeFileSync(htpasswd, `${htpasswdLine('alice', 's3cret')}\n${htpasswdLine('bob', 'hunter2')}\n`);
  // Zot-style accessControl: alice is the admin, bob (group devs) pulls team/**, anyone pulls
  // public/**, and secret/** has no policy, so only the admin sees it.
  const config = normalizeConfig({
    version: '0.1',
    storage: { filesystem: { rootdirectory: tempDir('drydock-ui-root-') }, delete: { enabled: true } },
    http: { addr: '127.0.0.1:0' },
    auth: { htpasswd: { realm: 'drydock ui test', path: htpasswd }, ratelimit: { failures: 0 } },
    accessControl: {
      groups: { devs: { users: ['bob'] } },
      repositories: {
        'team/**': { policies: [{ groups: ['devs'], actions: ['pull'] }] },
        'public/**': { anonymousPolicy: ['pull'], defaultPolicy: ['pull'] },
      },
      adminPolicy: { users: ['alice'], actions: ['pull', 'push', 'delete'] },
    },
    log: { accesslog: { disabled: true } },
  } as never);
  const server = createRegistryServer(config, { logger: false });
  const { url } = await server.listen();
  reg = { url, host: new URL(url).host, close: () => server.close(), reload: (next) => server.reload(next) };
  regConfig = config;
  openReg = await startRegistry({ root: tempDir('drydock-ui-plain-'), htpasswd });
  await pushImage(reg.url, 'public/hello', 'latest', { headers: ALICE });
  const layout = await umociImage();
  for (const tag of ['v1', 'old']) {
    await run('skopeo', ['copy', '--dest-tls-verify=false', '--dest-creds', 'alice:s3cret', `oci:${layout}:v1`, `docker://${reg.host}/team/app:${tag}`]);
  }
  await run('skopeo', ['copy', '--dest-tls-verify=false', '--dest-creds', 'alice:s3cret', `oci:${layout}:v1`, `docker://${reg.host}/secret/keys:v1`]);
  const v1 = await http(`${reg.url}/v2/team/app/manifests/v1`, { headers: { ...ALICE, Accept: OCI_MANIFEST } });
  await pushReferrers(reg.url, 'team/app', { mediaType: v1.headers.get('content-type')!, digest: v1.headers.get('docker-content-digest')!, size: v1.body.length });
  await pushIndex(reg.url);
  browser = await puppeteer.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
});

after(async () => {
  await browser?.close();
  await reg?.close();
  await openReg?.close();
});

describe('web UI', () => {
  test('the page is served with a CSP and loads nothing from elsewhere', async () => {
    const r = await http(`${reg.url}/ui/`);
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('content-security-policy'), UI_CSP);
    assert.match(UI_CSP, /script-src 'self'/);
    assert.doesNotMatch(UI_CSP, /unsafe-(inline|eval)/);
    assert.doesNotMatch(r.body.toString(), /https?:\/\//, 'no absolute URLs (no CDN)');
    assert.equal((await http(`${reg.url}/ui`)).headers.get('location'), '/ui/');
    const js = await http(`${reg.url}/ui/app.js`);
    assert.equal(js.status, 200);
    assert.match(js.headers.get('content-type')!, /javascript/);
    assert.doesNotMatch(js.body.toString(), /\beval\(|new Function\(|innerHTML/);
  });

  test('anonymous with auth on: a login form and no repositories', async () => {
    const page = await newPage();
    await page.goto(`${openReg.url}/ui/`);
    await page.waitForSelector('#login');
    assert.equal(await page.$('#repos'), null);
    await shot(page, 'login');
    // The JSON behind the page says the same.
    assert.equal((await http(`${openReg.url}/ui/api/repositories`)).status, 401);
    await page.browserContext().close();
  });

  test('anonymous under accessControl: only what the anonymous policy lets anyone pull', async () => {
    const page = await newPage();
    await page.goto(`${reg.url}/ui/`);
    await page.waitForSelector('#repos table');
    assert.deepEqual(await texts(page, '#repos tbody td:first-child'), ['public/hello']);
    assert.deepEqual(await texts(page, '#who a'), ['Sign in']);
    const html = await page.content();
    assert.ok(!html.includes('team/') && !html.includes('secret/'), 'no other repository shows');
    assert.equal((await http(`${reg.url}/ui/api/repositories/team/app/tags`)).status, 401);
    await page.browserContext().close();
  });

  test('a wrong password is refused', async () => {
    const page = await newPage();
    await login(page, 'alice', 'wrong');
    await page.waitForFunction(() => document.getElementById('login-error')?.textContent !== '');
    assert.equal((await texts(page, '#login-error'))[0], 'Invalid username or password.');
    assert.equal(await page.evaluate(() => sessionStorage.getItem('drydock.credentials')), null, 'refused credentials are not kept');
    assert.equal(await page.$('#repos'), null);
    await page.browserContext().close();
  });

  test('alice: repositories, search, tags, manifest with layers/config/labels/history/referrers, an index', async () => {
    const page = await newPage();
    await login(page, 'alice', 's3cret');
    await page.waitForSelector('#repos table');
    assert.equal((await texts(page, '#user'))[0], 'alice');
    assert.deepEqual(await texts(page, '#repos tbody td:first-child'), ['public/hello', 'secret/keys', 'team/app', 'team/multi']);
    assert.deepEqual(await texts(page, '#repos tbody td:nth-child(2)'), ['1', '1', '2', '3']);
    await shot(page, 'repositories');

    await page.type('#search', 'MULTI');
    assert.deepEqual(await texts(page, '#repos tbody td:first-child'), ['team/multi']);
    await page.evaluate(() => { const s = document.getElementById('search') as HTMLInputElement; s.value = 'nothing-like-this'; s.dispatchEvent(new Event('input')); });
    assert.deepEqual(await texts(page, '#repos p'), ['No repository matches.']);

    await page.goto(`${reg.url}/ui/#/r/team%2Fapp`);
    await page.waitForSelector('#tags table');
    assert.deepEqual(await texts(page, '#tags tbody td:first-child'), ['old', 'v1']);
    assert.equal((await page.$$('#tags button[data-delete]')).length, 2, 'alice may delete');
    await page.type('#search', 'v');
    assert.deepEqual(await texts(page, '#tags tbody td:first-child'), ['v1']);
    await page.evaluate(() => { const s = document.getElementById('search') as HTMLInputElement; s.value = ''; s.dispatchEvent(new Event('input')); });
    await shot(page, 'tags');

    await page.click('#tags a[href$="/m/v1"]');
    await page.waitForSelector('#layers');
    await page.waitForFunction(() => !document.getElementById('referrers')?.textContent?.includes('Loading'));
    const manifest = await http(`${reg.url}/v2/team/app/manifests/v1`, { headers: { ...ALICE, Accept: OCI_MANIFEST } });
    const m = manifest.json() as { layers: { digest: string; size: number }[] };
    assert.equal((await texts(page, '#digest'))[0], manifest.headers.get('docker-content-digest'));
    const layerRows = await page.$$eval('#layers tbody tr', (rows) => rows.map((r) => [...r.querySelectorAll('td')].map((td) => td.getAttribute('title') ?? td.querySelector('[title]')?.getAttribute('title') ?? td.textContent)));
    assert.equal(layerRows.length, 2);
    assert.deepEqual(layerRows.map((r) => r[1]), m.layers.map((l) => l.digest));
    assert.ok(m.layers.every((l) => l.size > 0));
    const labels = await page.$$eval('#labels tbody tr', (rows) => rows.map((r) => [...r.querySelectorAll('td')].map((td) => td.textContent)));
    assert.deepEqual(labels, [['note', XSS], ['org.opencontainers.image.title', 'demo app'], ['team', 'platform']]);
    assert.equal(await page.$('main img'), null, 'a label is text, never markup');
    assert.equal(await page.evaluate(() => (window as unknown as { pwned?: number }).pwned), undefined);
    const history = await texts(page, '#history tbody td:nth-child(2)');
    assert.ok(history.includes('COPY hello.txt /') && history.includes('COPY motd /etc/') && history.includes('LABEL team=platform'), history.join(' | '));
    const body = await page.$eval('main', (e) => e.textContent ?? '');
    assert.match(body, /GREETING=hello/);
    assert.match(body, /\["\/bin\/sh"\]/);
    const pulls = await texts(page, '#pull code');
    assert.deepEqual(pulls.slice(0, 2), [`drydock pull ${reg.host}/team/app:v1`, `docker pull ${reg.host}/team/app:v1`]);
    assert.equal(pulls[2], `docker pull ${reg.host}/team/app@${manifest.headers.get('docker-content-digest')}`);
    assert.deepEqual((await texts(page, '#referrers tbody td:first-child')).sort(), ['application/spdx+json', 'application/vnd.cncf.notary.signature']);
    await shot(page, 'manifest');

    await page.goto(`${reg.url}/ui/#/r/team%2Fmulti/m/latest`);
    await page.waitForSelector('#platforms');
    assert.deepEqual(await texts(page, '#platforms tbody td:first-child'), ['linux/amd64', 'linux/arm64']);
    await shot(page, 'index');
    await page.click('#platforms tbody tr:nth-child(2) a');
    await page.waitForSelector('#layers');
    assert.match(await page.$eval('main', (e) => e.textContent ?? ''), /Platformlinux\/arm64/);
    await page.browserContext().close();
  });

  test('bob (group devs): a repository his policy does not let him pull is absent, and there is no delete button', async () => {
    const page = await newPage();
    await login(page, 'bob', 'hunter2');
    await page.waitForSelector('#repos table');
    assert.deepEqual(await texts(page, '#repos tbody td:first-child'), ['public/hello', 'team/app', 'team/multi']);
    assert.ok(!(await page.content()).includes('secret/keys'));
    await page.goto(`${reg.url}/ui/#/r/team%2Fapp`);
    await page.waitForSelector('#tags table');
    assert.equal((await page.$$('#tags button[data-delete]')).length, 0);
    await page.goto(`${reg.url}/ui/#/r/team%2Fapp/m/v1`);
    await page.waitForSelector('#layers');
    assert.ok(!(await page.content()).includes('Delete tag'));
    await page.goto(`${reg.url}/ui/#/r/secret%2Fkeys`);
    await page.waitForSelector('#error');
    assert.equal((await texts(page, '#error'))[0], 'You may not see this repository.');
    assert.equal(await page.$('#tags'), null);
    const bob = basic('bob', 'hunter2');
    assert.deepEqual((await http(`${reg.url}/ui/api/repositories`, { headers: bob })).json().repositories.map((r: { name: string }) => r.name), ['public/hello', 'team/app', 'team/multi']);
    assert.equal((await http(`${reg.url}/ui/api/repositories/secret/keys/tags`, { headers: bob })).status, 403);
    assert.equal((await http(`${reg.url}/ui/api/repositories/secret/keys/manifests/v1`, { headers: bob })).status, 403);
    await page.browserContext().close();
  });

  test('alice deletes a tag from the page; the registry API no longer has it', async () => {
    const page = await newPage();
    await login(page, 'alice', 's3cret');
    await page.waitForSelector('#repos table');
    await page.goto(`${reg.url}/ui/#/r/team%2Fapp`);
    await page.waitForSelector('#tags button[data-delete="old"]');
    page.once('dialog', (d) => { void d.accept(); });
    await page.click('#tags button[data-delete="old"]');
    await page.waitForFunction(() => !document.querySelector('#tags button[data-delete="old"]') && document.querySelector('#tags table'));
    assert.deepEqual(await texts(page, '#tags tbody td:first-child'), ['v1']);
    assert.deepEqual((await http(`${reg.url}/v2/team/app/tags/list`, { headers: ALICE })).json().tags, ['v1']);
    assert.equal((await http(`${reg.url}/v2/team/app/manifests/old`, { headers: ALICE })).status, 404);
    await page.browserContext().close();
  });

  test('a reloaded policy (SIGHUP) changes what the page lists, with no restart', async () => {
    const bob = basic('bob', 'hunter2');
    const names = async () => (await http(`${reg.url}/ui/api/repositories`, { headers: bob })).json().repositories.map((r: { name: string }) => r.name);
    assert.ok(!(await names()).includes('secret/keys'));
    const ac = regConfig.accessControl!;
    await reg.reload({ ...regConfig, accessControl: { ...ac, repositories: { ...ac.repositories, 'secret/**': { policies: [{ users: ['bob'], actions: ['pull'] }] } } } });
    try {
      const page = await newPage();
      await login(page, 'bob', 'hunter2');
      await page.waitForSelector('#repos table');
      assert.deepEqual(await texts(page, '#repos tbody td:first-child'), ['public/hello', 'secret/keys', 'team/app', 'team/multi']);
      await page.browserContext().close();
    } finally {
      await reg.reload(regConfig);
    }
    assert.ok(!(await names()).includes('secret/keys'));
  });

  test('no script errors or CSP violations on any page', () => {
    assert.deepEqual(problems.filter((p) => !/401|403|Unauthorized|Forbidden/.test(p)), []);
  });
});

describe('web UI with bearer tokens (the built-in /token issuer)', () => {
  let tokenReg: StartedRegistry;
  before(async () => {
    const htpasswd = path.join(tempDir('drydock-ui-token-auth-'), 'htpasswd');
    writeFileSync(htpasswd, `${htpasswdLine('alice', 's3cret')}\n${htpasswdLine('bob', 'hunter2')}\n`);
    tokenReg = await startRegistry({ root: tempDir('drydock-ui-token-'), htpasswd, token: true, access: [
      { users: ['alice'], repositories: ['*'], actions: ['*'] },
      { users: ['bob'], repositories: ['team/*'], actions: ['pull'] },
    ] });
    const layout = await umociImage();
    for (const repo of ['team/app', 'secret/keys']) {
      await run('skopeo', ['copy', '--dest-tls-verify=false', '--dest-creds', 'alice:s3cret', `oci:${layout}:v1`, `docker://${tokenReg.host}/${repo}:v1`]);
    }
  });
  after(async () => { await tokenReg?.close(); });

  for (const [user, password, repos, canDelete] of [['alice', 's3cret', ['secret/keys', 'team/app'], true], ['bob', 'hunter2', ['team/app'], false]] as const) {
    test(`${user} signs in through /token and sees ${repos.join(', ')}`, async () => {
      const page = await newPage();
      await page.goto(`${tokenReg.url}/ui/#/login`);
      await page.waitForSelector('#login');
      await page.type('input[name=username]', user);
      await page.type('input[name=password]', password);
      await page.click('#login button[type=submit]');
      await page.waitForSelector('#repos table');
      assert.deepEqual(await texts(page, '#repos tbody td:first-child'), repos);
      await page.goto(`${tokenReg.url}/ui/#/r/team%2Fapp/m/v1`);
      await page.waitForSelector('#layers');
      await page.waitForFunction(() => !document.getElementById('referrers')?.textContent?.includes('Loading'));
      assert.equal((await page.$$('button[data-delete]')).length, canDelete ? 1 : 0);
      await page.browserContext().close();
    });
  }

  test('a wrong password is refused by the token endpoint', async () => {
    const page = await newPage();
    await page.goto(`${tokenReg.url}/ui/#/login`);
    await page.waitForSelector('#login');
    await page.type('input[name=username]', 'alice');
    await page.type('input[name=password]', 'nope');
    await page.click('#login button[type=submit]');
    await page.waitForFunction(() => document.getElementById('login-error')?.textContent !== '');
    assert.equal((await texts(page, '#login-error'))[0], 'Invalid username or password.');
    await page.browserContext().close();
  });
});

describe('turning the UI off', () => {
  test('on by default from the CLI; --no-ui turns it off', async () => {
    const children = new Set<import('node:child_process').ChildProcess>();
    const on = await serveProcess(['--root', tempDir('drydock-ui-on-')], children);
    const off = await serveProcess(['--root', tempDir('drydock-ui-off-'), '--no-ui'], children);
    try {
      // The CLI serves the script tsc built into the package.
      const js = await http(`${on.url}/ui/app.js`);
      assert.equal(js.status, 200);
      assert.match(js.body.toString(), /drydock\.credentials/);
      assert.equal((await http(`${off.url}/ui/`)).status, 404);
      assert.equal((await http(`${off.url}/ui/app.js`)).status, 404);
      assert.equal((await http(`${off.url}/v2/`)).status, 200);
    } finally {
      on.proc.kill('SIGTERM');
      off.proc.kill('SIGTERM');
    }
  });

  test('REGISTRY_UI_ENABLED=false, and on by default', async () => {
    for (const [env, status] of [[{ REGISTRY_UI_ENABLED: 'false' }, 404], [{}, 200]] as const) {
      const config = configFromEnv(tempDir('drydock-ui-env-'), { env: { ...env, REGISTRY_HTTP_ADDR: '127.0.0.1:0' } });
      const server = createRegistryServer(config, { logger: false });
      const { url } = await server.listen();
      try {
        assert.equal((await http(`${url}/ui/`)).status, status, JSON.stringify(env));
      } finally {
        await server.close();
      }
    }
  });
});
