// What a pull costs on the wire and on disk, checked where it happens: which scheme the ping of a
// loopback registry tries first (a plain-HTTP registry never sees a TLS handshake), the syscalls a
// blob write makes (strace: ≥ 1 MiB writes, one fsync per blob, one fsync of blobs/sha256 per
// pull), and the pull's results (the tag it replaced, a store that is still opening, a blob that
// cannot be renamed into place).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { Duplex } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { ContentStore } from '../../src/store/index.js';
import * as client from '../../src/client/index.js';
import { RegistryTransport } from '../../src/client/transport.js';
import { MediaType } from '../../src/image/index.js';
import { requireTool, tempDir } from '../helpers/env.js';
import { startFakeRegistry, type FakeRegistry } from './fake-registry.js';
import { buildImage, type TestImage } from './fixtures.js';

const fromSource = import.meta.url.endsWith('.ts');
const srcDir = fileURLToPath(new URL('../../src/', import.meta.url));

function publish(reg: FakeRegistry, repo: string, tag: string, img: TestImage): void {
  for (const l of img.layers) reg.addBlob(l.bytes);
  reg.addBlob(img.config.bytes);
  reg.addManifest(repo, tag, img.manifestBytes, MediaType.OciManifest);
}

type PlainAnswer = 'registry' | 'go-tls-400' | 'node-tls-reset';

/** `socket` as a Duplex whose readable side starts with `first` (already read from it). */
function replaying(socket: net.Socket, first: Buffer): Duplex {
  const d = new Duplex({
    read() { socket.resume(); },
    write(chunk, _enc, cb) { socket.write(chunk, cb); },
    final(cb) { socket.end(); cb(); },
    destroy(err, cb) { socket.destroy(); cb(err); },
  });
  d.push(first);
  socket.on('data', (c) => { if (!d.push(c)) socket.pause(); });
  socket.on('end', () => d.push(null));
  socket.on('close', () => d.destroy());
  return d;
}

/**
 * One port that tells TLS from plain HTTP by the first byte, like the servers it stands for:
 * 'registry' is a plain-HTTP registry (a TLS hello gets distribution's 400), the others are TLS
 * registries that answer a plain request as Go's (400 "Client sent an HTTP request to an HTTPS
 * server") or Node's (connection reset) TLS servers do.
 */
async function sniffingServer(kind: PlainAnswer, cert: { key: string; cert: string }) {
  const seen = { tls: 0, plain: 0 };
  const api = (_req: http.IncomingMessage, res: http.ServerResponse) => {
    res.writeHead(200, { 'content-type': 'application/json', 'docker-distribution-api-version': 'registry/2.0' }).end('{}');
  };
  const plain = http.createServer(api);
  const secure = tls.createServer({ key: cert.key, cert: cert.cert });
  const overTls = http.createServer(api);
  secure.on('secureConnection', (s) => overTls.emit('connection', s));
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => {}); // a client closing a TLS connection mid-write
    socket.once('data', (first) => {
      socket.pause();
      if (first[0] === 0x16) {
        seen.tls++;
        if (kind === 'registry') socket.end('HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
        // TLS takes the socket's handle and would not see the bytes read already: a JS stream.
        else secure.emit('connection', replaying(socket, first));
      } else {
        socket.unshift(first);
        seen.plain++;
        if (kind === 'registry') plain.emit('connection', socket);
        else if (kind === 'go-tls-400') socket.end('HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n');
        else socket.destroy();
      }
      socket.resume();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { host: `127.0.0.1:${(server.address() as AddressInfo).port}`, seen, close: () => new Promise<void>((r) => { for (const so of sockets) so.destroy(); server.close(() => r()); }) };
}

describe('loopback registries: plain HTTP first', () => {
  let cert: { key: string; cert: string };
  before(() => {
    requireTool('openssl');
    const dir = tempDir();
    const key = path.join(dir, 'key.pem');
    const crt = path.join(dir, 'cert.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', crt, '-days', '2', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'pipe' });
    cert = { key: readFileSync(key, 'utf8'), cert: readFileSync(crt, 'utf8') };
  });

  const cases: { kind: PlainAnswer; scheme: string; tlsHellos: number }[] = [
    { kind: 'registry', scheme: 'http:', tlsHellos: 0 },
    { kind: 'go-tls-400', scheme: 'https:', tlsHellos: 1 },
    { kind: 'node-tls-reset', scheme: 'https:', tlsHellos: 1 },
  ];
  for (const c of cases) {
    it(`${c.kind}: the ping settles on ${c.scheme.slice(0, -1)}`, async () => {
      const srv = await sniffingServer(c.kind, cert);
      // The endpoint RegistriesConfig gives 127.0.0.1:PORT: plain HTTP allowed, TLS still verified.
      const t = new RegistryTransport({ host: srv.host, insecure: false, plainHttpFallback: true, mirror: false }, { retries: 0, tls: { ca: [cert.cert] } });
      try {
        await t.ping();
        assert.equal(t.url('/v2/').protocol, c.scheme);
        assert.equal(srv.seen.tls, c.tlsHellos, 'TLS handshakes the server saw');
        assert.equal(srv.seen.plain, 1, 'plain-HTTP requests the server saw');
      } finally {
        await t.close();
        await srv.close();
      }
    });
  }
});

/**
 * Runs `script` (ESM, `$SRC` = the compiled or TypeScript src/ dir) under strace; returns its log.
 * Asynchronously: the registry it pulls from runs in this process.
 */
async function straced(script: string, dir: string): Promise<string[]> {
  requireTool('strace');
  const file = path.join(dir, 'child.mjs');
  writeFileSync(file, script.replaceAll('$SRC', srcDir));
  const log = path.join(dir, 'strace.log');
  // -ff: one file per thread, so no call is split into "unfinished" and "resumed" lines; the
  // threads' lines are merged back by their timestamps (a file opened in one thread-pool thread
  // is written in another).
  const child = spawn('strace', ['-ff', '-ttt', '-qq', '-o', log, '-e', 'trace=openat,close,write,pwrite64,writev,pwritev,pwritev2,fsync,fdatasync',
    process.execPath, ...(fromSource ? ['--import', 'tsx'] : []), file], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  clearTimeout(timer);
  assert.equal(code, 0, stderr);
  const lines = readdirSync(dir).filter((f) => f.startsWith('strace.log.'))
    .flatMap((f) => readFileSync(path.join(dir, f), 'utf8').split('\n').filter(Boolean));
  return lines.map((l) => ({ t: Number(l.slice(0, l.indexOf(' '))), l })).sort((a, b) => a.t - b.t).map((x) => x.l);
}

/** Per file opened whose path matches `re`: its data-write and fsync syscalls, until it is closed. */
function callsOn(lines: string[], re: RegExp): { path: string; writes: number; bytes: number; fsyncs: number }[] {
  const open = new Map<string, { path: string; writes: number; bytes: number; fsyncs: number }>();
  const out: { path: string; writes: number; bytes: number; fsyncs: number }[] = [];
  for (const line of lines) {
    const o = /openat\(AT_FDCWD, "([^"]+)".*\) = (\d+)$/.exec(line);
    if (o) {
      if (re.test(o[1]!)) { const f = { path: o[1]!, writes: 0, bytes: 0, fsyncs: 0 }; open.set(o[2]!, f); out.push(f); }
      continue;
    }
    const c = /\b(write|pwrite64|writev|pwritev|pwritev2|fsync|fdatasync|close)\((\d+)/.exec(line);
    if (!c || !open.has(c[2]!)) continue;
    const f = open.get(c[2]!)!;
    if (c[1] === 'close') { open.delete(c[2]!); continue; }
    if (c[1] === 'fsync' || c[1] === 'fdatasync') { f.fsyncs++; continue; }
    f.writes++;
  }
  return out;
}

describe('pull I/O', () => {
  let reg: FakeRegistry;
  let img: TestImage;
  before(async () => {
    reg = await startFakeRegistry();
    img = await buildImage([300_000, 200_000, 100_000, 50_000]);
    publish(reg, 'app', '1', img);
  });
  after(async () => { await reg.close(); });

  it('a blob streamed in 64 KiB chunks is written in 1 MiB writes and fsynced once', async () => {
    const dir = tempDir();
    const lines = await straced(`
      import { createHash, randomBytes } from 'node:crypto';
      import { Readable } from 'node:stream';
      const { ContentStore } = await import('$SRCstore/index.js');
      const data = randomBytes(8 << 20);
      const digest = 'sha256:' + createHash('sha256').update(data).digest('hex');
      const chunks = function* () { for (let i = 0; i < data.length; i += 65536) yield data.subarray(i, i + 65536); };
      const store = await ContentStore.open(${JSON.stringify(path.join(dir, 'store'))});
      const w = await store.writeBlob(Readable.from(chunks(), { objectMode: false }), { digest, size: data.length });
      if (w.digest !== digest || !(await store.readBlob(digest)).equals(data)) throw new Error('blob differs');
    `, dir);
    const files = callsOn(lines, /\/tmp\/ingest-/);
    assert.equal(files.length, 1, 'one temp file');
    assert.ok(files[0]!.writes <= 9, `8 MiB in ${files[0]!.writes} write calls (fs.WriteStream made one per 64 KiB chunk: 128)`);
    assert.equal(files[0]!.fsyncs, 1, 'fsynced once, on the descriptor that wrote it');
  });

  it('a pull fsyncs every blob file and blobs/sha256 once, before the tag', async () => {
    const dir = tempDir();
    const root = path.join(dir, 'store');
    const lines = await straced(`
      const { ContentStore } = await import('$SRCstore/index.js');
      const client = await import('$SRCclient/index.js');
      await client.pull(ContentStore.open(${JSON.stringify(root)}), ${JSON.stringify(`${reg.host}/app:1`)});
    `, dir);
    const blobs = callsOn(lines, /\/tmp\/ingest-/);
    assert.equal(blobs.length, img.layers.length + 2, 'layers, config and manifest');
    for (const b of blobs) assert.equal(b.fsyncs, 1, `${b.path} fsynced once`);
    const blobDir = callsOn(lines, new RegExp(`^${root}/blobs/sha256$`)).filter((f) => f.fsyncs > 0);
    assert.equal(blobDir.length, 1, `blobs/sha256 fsynced once per pull, not once per blob (${blobDir.length})`);
    const dirSync = lines.findIndex((l) => /openat\(AT_FDCWD, "[^"]*\/blobs\/sha256", [^)]*O_DIRECTORY/.test(l));
    const tagWrites = lines.flatMap((l, i) => (/openat\(AT_FDCWD, "[^"]*\/\.tmp-index\.json-/.test(l) ? [i] : []));
    assert.ok(dirSync >= 0 && tagWrites.at(-1)! > dirSync, 'the directory is synced before index.json is rewritten');
  });

  it('reports the tag a pull replaced (the same digest: up to date)', async () => {
    const store = await ContentStore.open(tempDir());
    const first = await client.pull(store, `${reg.host}/app:1`);
    assert.equal(first.previous, undefined);
    const again = await client.pull(store, `${reg.host}/app:1`);
    assert.equal(again.previous?.digest, first.digest);
    assert.equal(again.blobsSkipped, img.layers.length + 1);
  });

  it('takes a store that is still opening, and reports one that fails to open', async () => {
    const root = tempDir();
    const r = await client.pull(ContentStore.open(root), `${reg.host}/app:1`);
    assert.equal((await (await ContentStore.open(root)).resolveTag(`${reg.host}/app:1`))?.digest, r.digest);
    const notADir = path.join(tempDir(), 'file');
    writeFileSync(notADir, 'x');
    await assert.rejects(client.pull(ContentStore.open(notADir), `${reg.host}/app:1`), /ENOTDIR|EEXIST|not a directory/);
  });

  it('a blob that cannot be renamed into place fails the pull and leaves no tag', async () => {
    const store = await ContentStore.open(tempDir());
    // A non-empty directory where the largest layer's file belongs: its rename (in the background,
    // while the other downloads run) fails.
    const blocked = store.blobPath(img.layers[0]!.descriptor.digest);
    mkdirSync(path.join(blocked, 'x'), { recursive: true });
    await assert.rejects(client.pull(store, `${reg.host}/app:1`), /EISDIR|ENOTEMPTY|EEXIST|directory/);
    assert.deepEqual(await store.listTags(), []);
    assert.equal(await store.hasBlob(img.descriptor.digest), false, 'no manifest without its blobs');
  });

  it('keeps every byte: blobs of many sizes through the batching writer', async () => {
    const store = await ContentStore.open(tempDir());
    const { Readable } = await import('node:stream');
    const { digestOf } = await import('../../src/image/index.js');
    for (const [size, chunk] of [[0, 1], [1, 1], [(1 << 20) - 1, 7777], [1 << 20, 65536], [(1 << 20) + 1, 65536], [3_500_000, (1 << 20) + 3]] as const) {
      const data = randomBytes(size);
      const parts = function* () { for (let i = 0; i < size; i += chunk) yield data.subarray(i, i + chunk); };
      const w = await store.writeBlob(Readable.from(parts(), { objectMode: false }), { digest: digestOf(data), size });
      assert.equal(w.size, size);
      assert.ok((await store.readBlob(w.digest)).equals(data), `${size} bytes in ${chunk}-byte chunks`);
    }
  });
});
