// Content digests ("algo:hex"). Every digest that reaches a file path or a URL is parsed here
// first, so a crafted value like "sha256:../../etc" can never become a path component.
import { createHash, type Hash } from 'node:crypto';
import { sha256Hex } from '../util/sha256.js';

export type DigestAlgorithm = 'sha256' | 'sha512';

const HEX_LENGTH: Record<DigestAlgorithm, number> = { sha256: 64, sha512: 128 };

export class DigestError extends Error {
  override name = 'DigestError';
}

/** A validated digest. Construct with parseDigest(). */
export interface Digest {
  readonly algorithm: DigestAlgorithm;
  readonly hex: string;
  /** The canonical "algo:hex" string. */
  readonly value: string;
}

const GRAMMAR = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;

export function isSupportedAlgorithm(a: string): a is DigestAlgorithm {
  return a === 'sha256' || a === 'sha512';
}

/** Parse and validate "algo:hex"; throws DigestError with a message naming the problem. */
export function parseDigest(input: string): Digest {
  if (typeof input !== 'string' || input.length === 0) throw new DigestError('invalid digest: empty');
  if (!GRAMMAR.test(input)) throw new DigestError(`invalid digest "${truncate(input)}": expected algorithm:hex`);
  const colon = input.indexOf(':');
  const algorithm = input.slice(0, colon);
  const hex = input.slice(colon + 1);
  if (!isSupportedAlgorithm(algorithm)) {
    throw new DigestError(`unsupported digest algorithm "${truncate(algorithm)}" (supported: sha256, sha512)`);
  }
  if (!/^[a-f0-9]+$/.test(hex)) throw new DigestError(`invalid digest "${truncate(input)}": hex must be lowercase [a-f0-9]`);
  if (hex.length !== HEX_LENGTH[algorithm]) {
    throw new DigestError(`invalid digest "${truncate(input)}": ${algorithm} needs ${HEX_LENGTH[algorithm]} hex characters, got ${hex.length}`);
  }
  return { algorithm, hex, value: input };
}

/** Validates and returns the canonical string; convenient where only the string is kept. */
export function validateDigest(input: string): string {
  return parseDigest(input).value;
}

export function isDigest(input: string): boolean {
  try { parseDigest(input); return true; } catch { return false; }
}

export function digestOf(data: Buffer | string, algorithm: DigestAlgorithm = 'sha256'): string {
  // A small SHA-256 without loading node:crypto (src/util/sha256.ts says why).
  if (algorithm === 'sha256') return `sha256:${sha256Hex(data)}`;
  return `${algorithm}:${createHash(algorithm).update(data).digest('hex')}`;
}

/** Incremental digester for streams: feed chunks, then read the digest once. */
export class Digester {
  private readonly hash: Hash;
  private bytes = 0;
  constructor(readonly algorithm: DigestAlgorithm = 'sha256') {
    this.hash = createHash(algorithm);
  }
  update(chunk: Buffer): void {
    this.hash.update(chunk);
    this.bytes += chunk.length;
  }
  get size(): number { return this.bytes; }
  digest(): string { return `${this.algorithm}:${this.hash.digest('hex')}`; }
}

/** Short form shown in tables (first 12 hex characters), like Docker's IMAGE ID. */
export function shortId(digest: string): string {
  const i = digest.indexOf(':');
  return digest.slice(i + 1, i + 13);
}

function truncate(s: string): string {
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}
