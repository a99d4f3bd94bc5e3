// Image references, parsed and normalised the way Docker's distribution/reference does:
// "busybox" -> docker.io/library/busybox:latest, "localhost:5000/a/b@sha256:..." keeps its registry.
import { parseDigest } from './digest.js';

export const DEFAULT_REGISTRY = 'docker.io';
export const DEFAULT_TAG = 'latest';
const MAX_NAME_LENGTH = 255;

const PATH_COMPONENT = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$/;
const DOMAIN = /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?$/;
const TAG = /^[\w][\w.-]{0,127}$/;

export class ReferenceError extends Error {
  override name = 'ReferenceError';
}

export interface Reference {
  /** Registry host[:port], e.g. "docker.io" or "localhost:5000". */
  readonly registry: string;
  /** Repository path within the registry, e.g. "library/busybox". */
  readonly repository: string;
  readonly tag?: string;
  readonly digest?: string;
}

/** True when the first path component names a registry rather than a Docker Hub namespace. */
function looksLikeRegistry(component: string): boolean {
  return component.includes('.') || component.includes(':') || component === 'localhost' || component.startsWith('[');
}

/** Validates a repository path ("a/b/c"); throws a message naming the offending component. */
export function validateRepository(repository: string): void {
  if (repository.length === 0) throw new ReferenceError('invalid reference format: repository name is empty');
  if (repository.length > MAX_NAME_LENGTH) throw new ReferenceError(`invalid reference format: repository name is longer than ${MAX_NAME_LENGTH} characters`);
  for (const part of repository.split('/')) {
    if (!PATH_COMPONENT.test(part)) {
      if (part.toLowerCase() !== part && PATH_COMPONENT.test(part.toLowerCase())) {
        throw new ReferenceError(`invalid reference format: "${repository}": repository name must be lowercase`);
      }
      throw new ReferenceError(`invalid reference format: "${repository}": "${part}" is not a valid path component (lowercase letters, digits and single separators . _ __ - only)`);
    }
  }
}

export function isValidRepository(repository: string): boolean {
  try { validateRepository(repository); return true; } catch { return false; }
}

/**
 * Parses a reference. With `normalize` (the default) Docker Hub short names get their
 * "docker.io/library/" prefix; a reference with neither tag nor digest gets ":latest"
 * unless `defaultTag` is false.
 */
export function parseReference(input: string, opts: { defaultTag?: boolean } = {}): Reference {
  if (!input) throw new ReferenceError('invalid reference format: empty');
  if (/\s/.test(input)) throw new ReferenceError(`invalid reference format: "${input}": contains whitespace`);
  let rest = input;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    const d = rest.slice(at + 1);
    try { digest = parseDigest(d).value; } catch (e) { throw new ReferenceError(`invalid reference format: "${input}": ${(e as Error).message}`); }
    rest = rest.slice(0, at);
  }
  let tag: string | undefined;
  const lastSlash = rest.lastIndexOf('/');
  const lastColon = rest.lastIndexOf(':');
  if (lastColon > lastSlash) {
    tag = rest.slice(lastColon + 1);
    rest = rest.slice(0, lastColon);
    if (!TAG.test(tag)) throw new ReferenceError(`invalid reference format: "${input}": invalid tag "${tag}"`);
  }
  let registry = DEFAULT_REGISTRY;
  let repository = rest;
  const firstSlash = rest.indexOf('/');
  if (firstSlash >= 0 && looksLikeRegistry(rest.slice(0, firstSlash))) {
    registry = rest.slice(0, firstSlash);
    repository = rest.slice(firstSlash + 1);
    if (!DOMAIN.test(registry)) throw new ReferenceError(`invalid reference format: "${input}": invalid registry "${registry}"`);
  } else if (looksLikeRegistry(rest) && firstSlash < 0 && rest.includes(':')) {
    throw new ReferenceError(`invalid reference format: "${input}": missing repository after registry`);
  }
  if (registry === 'index.docker.io' || registry === 'registry-1.docker.io') registry = DEFAULT_REGISTRY;
  if (registry === DEFAULT_REGISTRY && !repository.includes('/')) repository = `library/${repository}`;
  try {
    validateRepository(repository);
  } catch (e) {
    // Name what the user typed, not the normalised "library/..." form.
    throw new ReferenceError((e as Error).message.replace(`"${repository}"`, `"${input}"`));
  }
  if (registry.length + 1 + repository.length > MAX_NAME_LENGTH) {
    throw new ReferenceError(`invalid reference format: "${input}": name is longer than ${MAX_NAME_LENGTH} characters`);
  }
  if (!tag && !digest && opts.defaultTag !== false) tag = DEFAULT_TAG;
  return { registry, repository, tag, digest };
}

/** "registry/repository" as used for storage keys and display. */
export function fullName(ref: Reference): string {
  return `${ref.registry}/${ref.repository}`;
}

/** Canonical string: registry/repo[:tag][@digest]. */
export function formatReference(ref: Reference): string {
  let s = fullName(ref);
  if (ref.tag) s += `:${ref.tag}`;
  if (ref.digest) s += `@${ref.digest}`;
  return s;
}

/** Docker's short display form: drops "docker.io/" and "library/". */
export function familiarName(ref: Reference): string {
  if (ref.registry !== DEFAULT_REGISTRY) return fullName(ref);
  // Like Docker: only an official image ("library/x", one component) loses its prefix.
  const rest = ref.repository.slice('library/'.length);
  return ref.repository.startsWith('library/') && !rest.includes('/') ? rest : ref.repository;
}

export function familiarString(ref: Reference): string {
  let s = familiarName(ref);
  if (ref.tag) s += `:${ref.tag}`;
  if (ref.digest) s += `@${ref.digest}`;
  return s;
}

export function withTag(ref: Reference, tag: string): Reference {
  if (!TAG.test(tag)) throw new ReferenceError(`invalid tag "${tag}"`);
  return { registry: ref.registry, repository: ref.repository, tag };
}

export function isValidTag(tag: string): boolean {
  return TAG.test(tag);
}
