// Image names with a transport prefix, as skopeo spells them: docker://REF, oci:DIR[:tag],
// oci-archive:FILE[:tag], docker-archive:FILE[:ref], store:NAME. A name with no known prefix
// is a local store name, so `drydock copy busybox docker://localhost:5000/busybox` reads naturally.
import { parseReference, ReferenceError, type Reference } from '../image/reference.js';
import type { ImageDestination, ImageSource } from '../image/source.js';
import type { ContentStore } from '../store/content-store.js';
import { UserError } from '../util/errors.js';
import type { RegistryContext } from './context.js';
import { RemoteImageDestination, RemoteImageSource } from './remote.js';
import { StoreImageDestination, StoreImageSource } from './store-transport.js';

export type ImageLocation =
  | { transport: 'docker'; ref: Reference }
  | { transport: 'store'; name: string }
  | { transport: 'oci' | 'oci-archive' | 'docker-archive'; path: string; tag?: string };

const FILE_TRANSPORTS = ['oci', 'oci-archive', 'docker-archive'] as const;

export function parseImageLocation(input: string): ImageLocation {
  if (input.startsWith('docker://')) {
    try {
      return { transport: 'docker', ref: parseReference(input.slice('docker://'.length)) };
    } catch (e) {
      throw new UserError((e as ReferenceError).message);
    }
  }
  if (input.startsWith('store:')) return { transport: 'store', name: input.slice('store:'.length) };
  for (const t of FILE_TRANSPORTS) {
    if (input.startsWith(`${t}:`)) {
      const rest = input.slice(t.length + 1);
      if (!rest) throw new UserError(`"${input}": missing path after "${t}:"`);
      // Like skopeo: the path ends at the first colon; the rest is the tag or (docker-archive) a
      // reference that may itself contain slashes and a colon.
      const colon = rest.indexOf(':');
      if (colon > 0) return { transport: t, path: rest.slice(0, colon), tag: rest.slice(colon + 1) || undefined };
      return { transport: t, path: rest };
    }
  }
  if (/^[a-z-]+:\/\//.test(input)) throw new UserError(`"${input}": unknown transport (use docker://, oci:, oci-archive:, docker-archive: or store:)`);
  return { transport: 'store', name: input };
}

export function describeLocation(l: ImageLocation): string {
  if (l.transport === 'docker') return `docker://${l.ref.registry}/${l.ref.repository}${l.ref.tag ? `:${l.ref.tag}` : ''}${l.ref.digest ? `@${l.ref.digest}` : ''}`;
  if (l.transport === 'store') return `store:${l.name}`;
  return `${l.transport}:${l.path}${l.tag ? `:${l.tag}` : ''}`;
}

export interface Endpoints {
  ctx: RegistryContext;
  store: () => Promise<ContentStore>;
}

export async function openSource(l: ImageLocation, e: Endpoints): Promise<ImageSource> {
  switch (l.transport) {
    case 'docker': return new RemoteImageSource(e.ctx, l.ref);
    case 'store': return new StoreImageSource(await e.store(), l.name);
    default: return openArchiveSource(l);
  }
}

export async function openDestination(l: ImageLocation, e: Endpoints): Promise<ImageDestination> {
  switch (l.transport) {
    case 'docker': return new RemoteImageDestination(e.ctx, l.ref);
    case 'store': return new StoreImageDestination(await e.store(), l.name);
    default: return openArchiveDestination(l);
  }
}

/** The tag a copy gives the top-level manifest at the destination. */
export function destinationTag(l: ImageLocation): string | undefined {
  if (l.transport === 'docker') return l.ref.digest && !l.ref.tag ? undefined : l.ref.tag;
  if (l.transport === 'store') return l.name;
  return l.tag;
}

// src/archive is imported only when a file transport is used, so registry-only commands stay light.
async function openArchiveSource(l: Extract<ImageLocation, { path: string }>): Promise<ImageSource> {
  const { openArchiveSource: open } = await import('../archive/index.js');
  return open(l);
}

async function openArchiveDestination(l: Extract<ImageLocation, { path: string }>): Promise<ImageDestination> {
  const { openArchiveDestination: open } = await import('../archive/index.js');
  return open(l);
}
