// ADD <url> while planning: the bytes are downloaded (streamed, hashed while written) because
// their digest is part of the step's cache key, as in BuildKit. The file is removed when the
// build ends (BuildSession.tempFiles).
import { createWriteStream } from 'node:fs';
import { promises as fsp } from 'node:fs';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Instruction } from '../../dockerfile/index.js';
import { Digester } from '../../image/digest.js';
import { discardStreamedFile } from '../../util/fs.js';
import type { BuildSession } from '../session.js';

export interface Download { url: string; file: string; digest: string }

export async function download(s: BuildSession, inst: Instruction, url: string, checksum: string | undefined): Promise<Download> {
  const file = path.join(s.store.tmpDir, `add-${randomBytes(8).toString('hex')}`);
  // fetch follows redirects and streams the body; nothing is buffered whole.
  const res = await fetch(url, { redirect: 'follow' }).catch((e: Error) => { throw s.err(inst, `ADD ${url}: ${(e.cause as Error)?.message ?? e.message}`); });
  if (!res.ok || !res.body) {
    await res.body?.cancel();
    throw s.err(inst, `ADD ${url}: server answered ${res.status} ${res.statusText}`);
  }
  const digester = new Digester('sha256');
  const out = createWriteStream(file);
  s.tempFiles.push(file);
  try {
    await pipeline(Readable.fromWeb(res.body as import('node:stream/web').ReadableStream<Uint8Array>), async function* (src: AsyncIterable<Buffer>) { for await (const chunk of src) { digester.update(chunk); yield chunk; } }, out);
  } catch (e) {
    await discardStreamedFile(out, file);
    throw s.err(inst, `ADD ${url}: download failed: ${(e as Error).message}`);
  }
  const digest = digester.digest();
  if (checksum && checksum !== digest) {
    await fsp.rm(file, { force: true });
    throw s.err(inst, `ADD ${url}: checksum mismatch: expected ${checksum}, downloaded content is ${digest}`);
  }
  return { url, file, digest };
}
