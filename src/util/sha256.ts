// SHA-256 of small inputs without node:crypto. Loading node:crypto costs a process ~2.5 ms (its
// fifteen internal modules) and its first hash and randomBytes ~0.7 ms more, and a build needs a
// few dozen digests of small JSON before its first RUN's container can start (the step keys,
// the context's hash-cache name, the cached steps' image IDs): all of that sat between the
// process's start and `runc run`. This hashes up to SMALL_INPUT bytes in a WebAssembly
// compression function (SHA256_WASM below: compiled, instantiated and first called in ~0.4 ms);
// larger inputs go to node:crypto, which by then has loaded in the RUN's idle time. The digests are SHA-256's (FIPS 180-4), as node:crypto's: test/util/sha256.test.ts
// compares the two on every length around the block boundaries and on random data.
import { createHash, type Hash } from 'node:crypto';

/** Inputs up to this many bytes are hashed here; larger ones by node:crypto. */
export const SMALL_INPUT = 64 * 1024;

/** What a digest's callers use of node:crypto's Hash. */
export interface Sha256Hash {
  update(data: string | Uint8Array): this;
  digest(encoding: 'hex'): string;
}

/** The hex SHA-256 of `data` (a string is hashed as UTF-8, as Hash.update hashes it). */
export function sha256Hex(data: string | Uint8Array): string {
  const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  if (bytes.length > SMALL_INPUT) return createHash('sha256').update(bytes).digest('hex');
  return smallSha256(bytes);
}

/**
 * An incremental SHA-256: the input is kept until it passes SMALL_INPUT bytes (then it moves to
 * a node:crypto Hash), so a small one is hashed here in one pass at digest().
 */
export function createSha256(): Sha256Hash {
  return new BufferedSha256();
}

class BufferedSha256 implements Sha256Hash {
  private chunks: Buffer[] = [];
  private size = 0;
  private native: Hash | undefined;

  update(data: string | Uint8Array): this {
    if (this.native) { this.native.update(data); return this; }
    // A copy: node:crypto consumes its input at once, so a caller may reuse its buffer after.
    const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : Buffer.from(data);
    this.chunks.push(bytes);
    this.size += bytes.length;
    if (this.size > SMALL_INPUT) {
      this.native = createHash('sha256');
      for (const c of this.chunks) this.native.update(c);
      this.chunks = [];
    }
    return this;
  }

  digest(_encoding: 'hex'): string {
    if (this.native) return this.native.digest('hex');
    return smallSha256(this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.size));
  }
}

// ---- the WebAssembly compression function ---------------------------------------------------

/** Memory layout (scripts/sha256-wasm.mjs LAYOUT): the eight state words at 0, the blocks to compress from INPUT on. */
const INPUT = 576;
/** Whole blocks that fit after INPUT in the module's one 64 KiB page. */
const CHUNK = 65536 - INPUT - ((65536 - INPUT) % 64);

const INITIAL = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];

interface Compressor {
  bytes: Uint8Array;
  state: Int32Array;
  /** Compresses the whole blocks in memory [from, to) into the state. */
  compress(from: number, to: number): void;
}

let compressor: Compressor | undefined;

function smallSha256(data: Uint8Array): string {
  const c = (compressor ??= instantiate());
  const { bytes, state } = c;
  state.set(INITIAL);
  const n = data.length;
  const whole = n - (n % 64);
  for (let off = 0; off < whole; off += CHUNK) {
    const len = Math.min(CHUNK, whole - off);
    bytes.set(data.subarray(off, off + len), INPUT);
    c.compress(INPUT, INPUT + len);
  }
  // The last partial block, the 0x80 byte and the length in bits, big-endian, in one or two blocks.
  const rest = n - whole;
  const tail = rest < 56 ? 64 : 128;
  bytes.fill(0, INPUT, INPUT + tail);
  bytes.set(data.subarray(whole), INPUT);
  bytes[INPUT + rest] = 0x80;
  const bits = n * 8;
  const end = INPUT + tail;
  const high = Math.floor(bits / 0x100000000);
  const low = bits >>> 0;
  for (let i = 0; i < 4; i++) {
    bytes[end - 8 + i] = (high >>> (24 - 8 * i)) & 0xff;
    bytes[end - 4 + i] = (low >>> (24 - 8 * i)) & 0xff;
  }
  c.compress(INPUT, end);
  let hex = '';
  for (let i = 0; i < 8; i++) hex += (state[i]! >>> 0).toString(16).padStart(8, '0');
  return hex;
}

function instantiate(): Compressor {
  const instance = new WebAssembly.Instance(new WebAssembly.Module(Buffer.from(SHA256_WASM, 'base64')));
  const memory = instance.exports.m as WebAssembly.Memory;
  return {
    bytes: new Uint8Array(memory.buffer),
    state: new Int32Array(memory.buffer, 0, 8),
    compress: instance.exports.c as (from: number, to: number) => void,
  };
}

/**
 * The compression function c(from, to), each 64-byte block in memory [from, to) into the eight
 * state words at address 0, and its memory "m" (one page): scripts/sha256-wasm.mjs's output.
 */
const SHA256_WASM =
  'AGFzbQEAAAABBgFgAn9/AAMCAQAFAwEAAQcJAgFtAgABYwAACvkDAfYDAQx/AkADQCAAIAFPDQFBACEKA0AgCkECdCEMIAwg' +
  'ACAMaigCACENIA1BCHdB/4H8B3EgDUEIeEGA/oN4cXI2AsACIApBAWohCiAKQRBJDQALQRAhCgNAIApBAnQhDCAMIAwoAoAC' +
  'IAwoAoQCIQ0gDUEHeCANQRJ4cyANQQN2c2ogDCgCpAJqIAwoArgCIQ0gDUEReCANQRN4cyANQQp2c2o2AsACIApBAWohCiAK' +
  'QcAASQ0AC0EAKAIAIQJBACgCBCEDQQAoAgghBEEAKAIMIQVBACgCECEGQQAoAhQhB0EAKAIYIQhBACgCHCEJQQAhCgNAIApB' +
  'AnQhDCAJIAZBBnggBkELeHMgBkEZeHNqIAggBiAHIAhzcXNqIAwoAkBqIAwoAsACaiELIAJBAnggAkENeHMgAkEWeHMgAiAD' +
  'cSAEIAIgA3JxcmohDSAIIQkgByEIIAYhByAFIAtqIQYgBCEFIAMhBCACIQMgCyANaiECIApBAWohCiAKQcAASQ0AC0EAQQAo' +
  'AgAgAmo2AgBBAEEAKAIEIANqNgIEQQBBACgCCCAEajYCCEEAQQAoAgwgBWo2AgxBAEEAKAIQIAZqNgIQQQBBACgCFCAHajYC' +
  'FEEAQQAoAhggCGo2AhhBAEEAKAIcIAlqNgIcIABBwABqIQAMAAsLCwuIAgEAQcAAC4ACmC+KQpFEN3HP+8C1pdu16VvCVjnx' +
  'EfFZpII/ktVeHKuYqgfYAVuDEr6FMSTDfQxVdF2+cv6x3oCnBtybdPGbwcFpm+SGR77vxp3BD8yhDCRvLOktqoR0StypsFza' +
  'iPl2UlE+mG3GMajIJwOwx39Zv/ML4MZHkafVUWPKBmcpKRSFCrcnOCEbLvxtLE0TDThTVHMKZbsKanYuycKBhSxykqHov6JL' +
  'ZhqocItLwqNRbMcZ6JLRJAaZ1oU1DvRwoGoQFsGkGQhsNx5Md0gntbywNLMMHDlKqthOT8qcW/NvLmjugo90b2OleBR4yIQI' +
  'AseM+v++kOtsUKT3o/m+8nhxxg==';
