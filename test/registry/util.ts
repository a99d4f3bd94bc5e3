// Small HTTP helpers for the registry tests: push blobs and manifests the way clients do.
import { randomBytes } from 'node:crypto';
import { digestOf } from '../../src/image/digest.js';
import assert from 'node:assert/strict';

export function sha256(data: Buffer | string): string {
  return digestOf(data);
}

export interface Req { method?: string; headers?: Record<string, string>; body?: Buffer | string; redirect?: 'manual' }

export async function http(url: string, opts: Req = {}): Promise<{ status: number; headers: Headers; body: Buffer; json: () => any }> {
  const r = await fetch(url, { method: opts.method ?? 'GET', headers: opts.headers, body: opts.body as BodyInit | undefined, redirect: 'manual' });
  const body = Buffer.from(await r.arrayBuffer());
  return { status: r.status, headers: r.headers, body, json: () => JSON.parse(body.toString('utf8')) };
}

/** Asserts a spec error body with the given code. */
export function assertError(r: { status: number; body: Buffer }, status: number, code: string): void {
  assert.equal(r.status, status, `expected ${status} ${code}, got ${r.status}: ${r.body.toString().slice(0, 300)}`);
  const j = JSON.parse(r.body.toString('utf8')) as { errors: { code: string; message: string }[] };
  assert.ok(Array.isArray(j.errors) && j.errors.length > 0, 'errors array');
  assert.equal(j.errors[0]!.code, code);
  assert.equal(typeof j.errors[0]!.message, 'string');
}

export async function pushBlob(base: string, repo: string, data: Buffer | string, headers: Record<string, string> = {}): Promise<string> {
  const d = sha256(data);
  const r = await http(`${base}/v2/${repo}/blobs/uploads/?digest=${d}`, { method: 'POST', body: data, headers: { 'Content-Type': 'application/octet-stream', ...headers } });
  if (r.status === 202) {
    // distribution 2.8 ignores single-POST uploads and opens a session instead; finish it as clients do.
    const loc = new URL(r.headers.get('location')!, base);
    loc.searchParams.set('digest', d);
    const put = await http(loc.toString(), { method: 'PUT', body: data, headers: { 'Content-Type': 'application/octet-stream', ...headers } });
    assert.equal(put.status, 201, put.body.toString());
    return d;
  }
  assert.equal(r.status, 201, r.body.toString());
  return d;
}

export interface PushedImage { manifest: Buffer; digest: string; config: string; layers: string[] }

export async function pushImage(base: string, repo: string, tag: string, opts: { layers?: number; headers?: Record<string, string>; extra?: Record<string, unknown> } = {}): Promise<PushedImage> {
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] }, nonce: randomBytes(8).toString('hex') }));
  const configDigest = await pushBlob(base, repo, config, opts.headers);
  const layers: string[] = [];
  const layerDescs = [];
  for (let i = 0; i < (opts.layers ?? 1); i++) {
    const data = randomBytes(1000 + i);
    layers.push(await pushBlob(base, repo, data, opts.headers));
    layerDescs.push({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: layers[i], size: data.length });
  }
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: configDigest, size: config.length },
    layers: layerDescs,
    ...opts.extra,
  }));
  const r = await http(`${base}/v2/${repo}/manifests/${tag}`, { method: 'PUT', body: manifest, headers: { 'Content-Type': 'application/vnd.oci.image.manifest.v1+json', ...opts.headers } });
  assert.equal(r.status, 201, r.body.toString());
  return { manifest, digest: sha256(manifest), config: configDigest, layers };
}

/** `drydock serve ARGS --addr 127.0.0.1:0 --quiet` as a child process; resolves with its URL once it listens. */
export async function serveProcess(args: string[], children: Set<import('node:child_process').ChildProcess>): Promise<{ url: string; host: string; proc: import('node:child_process').ChildProcess }> {
  const { spawn } = await import('node:child_process');
  const { CLI_MAIN, PROJECT_ROOT } = await import('../helpers/env.js');
  const fromSource = CLI_MAIN.endsWith('.ts');
  const proc = spawn(process.execPath, [...(fromSource ? ['--import', 'tsx'] : []), CLI_MAIN, 'serve', '--addr', '127.0.0.1:0', '--quiet', ...args], { cwd: PROJECT_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(proc);
  proc.on('exit', () => children.delete(proc));
  let err = '';
  proc.stderr!.on('data', (d) => (err += d));
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    proc.stdout!.on('data', (d) => {
      out += d;
      const m = /^(https?:\/\/\S+)\n/m.exec(out);
      if (m) resolve(m[1]!);
    });
    proc.on('exit', (code) => reject(new Error(`serve exited ${code}: ${err}`)));
  });
  return { url, host: new URL(url).host, proc };
}
