// A real S3-API server (the s3rver npm package) on 127.0.0.1 for the S3 storage driver tests.
// It runs as a child process, not in the test's event loop: a test that blocks (spawnSync of
// skopeo, a CLI child talking to the registry) would otherwise stall the object store it waits on.
// s3rver authenticates SigV4 with the fixed key pair S3RVER/S3RVER.
import { spawn, type ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';
import { tempDir } from './env.js';

export interface S3Server {
  /** http://127.0.0.1:PORT */
  endpoint: string;
  bucket: string;
  accessKey: string;
  secretKey: string;
  /** s3rver's data directory (one folder per bucket). */
  dir: string;
  process: ChildProcess;
  stop(): Promise<void>;
}

const require = createRequire(import.meta.url);

// Started with `node -e`: s3rver is CommonJS, listens on an ephemeral port, and reports it on stdout.
// One correction: s3rver 3.7's delimiter listing does not descend into directories below the
// prefix, so "a/" is missing from the common prefixes of a bucket that only has "a/b/c". Real S3
// (and MinIO) report it, and the registry layout is all such keys, so the launcher derives
// delimiter listings from s3rver's own flat listing, as S3 defines them.
const LAUNCHER = `
const S3rver = require(process.env.S3RVER_MODULE);
const FilesystemStore = require(process.env.S3RVER_MODULE + '/lib/stores/filesystem.js');
const flatList = FilesystemStore.prototype.listObjects;
FilesystemStore.prototype.listObjects = async function (bucket, options) {
  if (!options.delimiter) return flatList.call(this, bucket, options);
  const { delimiter, prefix = '', startAfter = '', maxKeys = Infinity } = options;
  const all = await flatList.call(this, bucket, { prefix, startAfter, maxKeys: Infinity });
  const objects = [];
  const commonPrefixes = new Set();
  let isTruncated = false;
  for (const obj of all.objects) {
    const idx = obj.key.slice(prefix.length).indexOf(delimiter);
    if (idx !== -1) { commonPrefixes.add(obj.key.slice(0, prefix.length + idx + 1)); continue; }
    if (objects.length < maxKeys) objects.push(obj); else { isTruncated = true; break; }
  }
  return { objects, commonPrefixes: [...commonPrefixes].sort(), isTruncated };
};
new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory: process.env.S3RVER_DIR,
  configureBuckets: [{ name: process.env.S3RVER_BUCKET }] })
  .run()
  .then((addr) => process.stdout.write(JSON.stringify({ port: addr.port }) + '\\n'))
  .catch((e) => { console.error(e); process.exit(1); });
process.on('SIGTERM', () => process.exit(0));
`;

export async function startS3Server(opts: { bucket?: string } = {}): Promise<S3Server> {
  const moduleDir = path.dirname(require.resolve('s3rver/package.json'));
  const dir = tempDir('drydock-s3rver-');
  const bucket = opts.bucket ?? 'registry';
  // s3rver encrypts ListObjectsV2 continuation tokens with DES, which OpenSSL 3 only has in its legacy provider.
  const child = spawn(process.execPath, ['--openssl-legacy-provider', '-e', LAUNCHER], {
    env: { ...process.env, S3RVER_MODULE: moduleDir, S3RVER_DIR: dir, S3RVER_BUCKET: bucket },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`s3rver did not start: ${stderr}`)); }, 20_000);
    child.stdout!.on('data', (d) => {
      out += d;
      const nl = out.indexOf('\n');
      if (nl >= 0) { clearTimeout(timer); resolve((JSON.parse(out.slice(0, nl)) as { port: number }).port); }
    });
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`s3rver exited with ${code}: ${stderr}`)); });
  });
  return {
    endpoint: `http://127.0.0.1:${port}`,
    bucket,
    accessKey: 'S3RVER',
    secretKey: 'S3RVER',
    dir,
    process: child,
    stop: () => new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      child.once('exit', () => resolve());
      child.kill('SIGTERM');
    }),
  };
}
