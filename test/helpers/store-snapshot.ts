// "Leaves the store as it was": a snapshot of every blob name and index.json's bytes.
import { promises as fsp } from 'node:fs';
import path from 'node:path';

export async function storeSnapshot(root: string): Promise<{ blobs: string[]; index: string; tmp: string[] }> {
  const blobs: string[] = [];
  for (const alg of await fsp.readdir(path.join(root, 'blobs')).catch(() => [] as string[])) {
    for (const hex of await fsp.readdir(path.join(root, 'blobs', alg))) blobs.push(`${alg}:${hex}`);
  }
  const index = await fsp.readFile(path.join(root, 'index.json'), 'utf8').catch(() => '');
  const tmp = await fsp.readdir(path.join(root, 'tmp')).catch(() => [] as string[]);
  return { blobs: blobs.sort(), index, tmp };
}
