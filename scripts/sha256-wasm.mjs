// Writes the WebAssembly module of src/util/sha256.ts (SHA256_WASM there, base64): FIPS 180-4's
// SHA-256 compression function. Run `node scripts/sha256-wasm.mjs` after changing this file and
// paste its output into src/util/sha256.ts; test/util/sha256.test.ts checks that the two agree.
// Generated once rather than at run time: building the bytes in cold JavaScript took 7-10 ms,
// decoding the base64 takes microseconds.
import { fileURLToPath } from 'node:url';

/** The round constants (the first 32 bits of the cube roots' fractions of the first 64 primes). */
export const K = [
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];

// Opcodes of the WebAssembly binary format (https://webassembly.github.io/spec/core/binary/).
const OP = {
  block: 0x02, loop: 0x03, end: 0x0b, br: 0x0c, brIf: 0x0d, localGet: 0x20, localSet: 0x21,
  i32Load: 0x28, i32Store: 0x36, i32Const: 0x41, i32LtU: 0x49, i32GeU: 0x4f, i32Add: 0x6a,
  i32And: 0x71, i32Or: 0x72, i32Xor: 0x73, i32Shl: 0x74, i32ShrU: 0x76, i32Rotl: 0x77, i32Rotr: 0x78,
};

function uleb(n) {
  const out = [];
  do { let b = n & 0x7f; n >>>= 7; if (n) b |= 0x80; out.push(b); } while (n);
  return out;
}

function sleb(n) {
  n |= 0;
  const out = [];
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && !(b & 0x40)) || (n === -1 && b & 0x40)) { out.push(b); return out; }
    out.push(b | 0x80);
  }
}

/** Memory layout: the state words, the round constants, the message schedule, then the input. */
export const LAYOUT = { state: 0, k: 64, w: 320, input: 576 };

/**
 * The module: memory "m" (one page, K at LAYOUT.k) and c(from, to), the compression of each
 * 64-byte block in memory [from, to) into the eight state words at LAYOUT.state (host order).
 * Loops, not unrolled rounds: V8 compiles a function on its first call, and this one is called
 * for a few blocks per process; 1.3 KB compile in a fraction of the unrolled 8 KB's 0.6 ms.
 */
export function sha256Module() {
  const FROM = 0, TO = 1;
  const V = 2; // working variables a..h: locals 2-9
  const I = 10, T1 = 11, T2 = 12, X = 13;
  const code = [];
  const emit = (...b) => { code.push(...b); };
  const get = (l) => emit(OP.localGet, ...uleb(l));
  const set = (l) => emit(OP.localSet, ...uleb(l));
  const k = (n) => emit(OP.i32Const, ...sleb(n));
  const load = (offset) => emit(OP.i32Load, 2, ...uleb(offset));
  const store = (offset) => emit(OP.i32Store, 2, ...uleb(offset));
  const rotr = (l, n) => { get(l); k(n); emit(OP.i32Rotr); };
  // σ0, σ1 of the value on the stack (kept in X).
  const sigma = (r1, r2, shift) => { set(X); rotr(X, r1); rotr(X, r2); emit(OP.i32Xor); get(X); k(shift); emit(OP.i32ShrU, OP.i32Xor); };
  const bigSigma = (l, r1, r2, r3) => { rotr(l, r1); rotr(l, r2); emit(OP.i32Xor); rotr(l, r3); emit(OP.i32Xor); };
  // for (I = from; I < to; I++) { T2 = I * 4; body() }
  const loopI = (from, to, body) => {
    k(from); set(I);
    emit(OP.loop, 0x40);
    get(I); k(2); emit(OP.i32Shl); set(T2);
    body();
    get(I); k(1); emit(OP.i32Add); set(I);
    get(I); k(to); emit(OP.i32LtU, OP.brIf, 0, OP.end);
  };
  const [a, b, c, d, e, f, g, h] = [0, 1, 2, 3, 4, 5, 6, 7].map((j) => V + j);

  emit(OP.block, 0x40, OP.loop, 0x40);
  get(FROM); get(TO); emit(OP.i32GeU, OP.brIf, 1);
  // w0..w15: the block's big-endian words (loads are little-endian: the bytes are swapped).
  loopI(0, 16, () => {
    get(T2);
    get(FROM); get(T2); emit(OP.i32Add); load(0); set(X);
    get(X); k(8); emit(OP.i32Rotl); k(0x00ff00ff); emit(OP.i32And);
    get(X); k(8); emit(OP.i32Rotr); k(0xff00ff00); emit(OP.i32And, OP.i32Or);
    store(LAYOUT.w);
  });
  // w16..w63 = w[i-16] + σ0(w[i-15]) + w[i-7] + σ1(w[i-2])
  loopI(16, 64, () => {
    get(T2);
    get(T2); load(LAYOUT.w - 64);
    get(T2); load(LAYOUT.w - 60); sigma(7, 18, 3); emit(OP.i32Add);
    get(T2); load(LAYOUT.w - 28); emit(OP.i32Add);
    get(T2); load(LAYOUT.w - 8); sigma(17, 19, 10); emit(OP.i32Add);
    store(LAYOUT.w);
  });
  for (let j = 0; j < 8; j++) { k(0); load(LAYOUT.state + 4 * j); set(V + j); }
  loopI(0, 64, () => {
    // T1 = h + Σ1(e) + Ch(e, f, g) + K[i] + w[i], with Ch = g ^ (e & (f ^ g))
    get(h); bigSigma(e, 6, 11, 25); emit(OP.i32Add);
    get(g); get(e); get(f); get(g); emit(OP.i32Xor, OP.i32And, OP.i32Xor, OP.i32Add);
    get(T2); load(LAYOUT.k); emit(OP.i32Add); get(T2); load(LAYOUT.w); emit(OP.i32Add); set(T1);
    // X = Σ0(a) + Maj(a, b, c), with Maj = (a & b) | (c & (a | b))
    bigSigma(a, 2, 13, 22);
    get(a); get(b); emit(OP.i32And); get(c); get(a); get(b); emit(OP.i32Or, OP.i32And, OP.i32Or, OP.i32Add);
    set(X);
    get(g); set(h); get(f); set(g); get(e); set(f);
    get(d); get(T1); emit(OP.i32Add); set(e);
    get(c); set(d); get(b); set(c); get(a); set(b);
    get(T1); get(X); emit(OP.i32Add); set(a);
  });
  for (let j = 0; j < 8; j++) { k(0); k(0); load(LAYOUT.state + 4 * j); get(V + j); emit(OP.i32Add); store(LAYOUT.state + 4 * j); }
  get(FROM); k(64); emit(OP.i32Add); set(FROM);
  emit(OP.br, 0, OP.end, OP.end, OP.end);

  const body = [1, ...uleb(X + 1 - V), 0x7f, ...code]; // one group of i32 locals after the two parameters
  const kBytes = K.flatMap((x) => [x & 0xff, (x >>> 8) & 0xff, (x >>> 16) & 0xff, x >>> 24]);
  const section = (id, content) => [id, ...uleb(content.length), ...content];
  return Uint8Array.from([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, [1, 0x60, 2, 0x7f, 0x7f, 0]), // type 0: (i32, i32) -> ()
    ...section(3, [1, 0]), // function 0 has type 0
    ...section(5, [1, 0x00, 1]), // one memory of one page
    ...section(7, [2, 1, 0x6d, 0x02, 0, 1, 0x63, 0x00, 0]), // exports: "m" memory 0, "c" function 0
    ...section(10, [1, ...uleb(body.length), ...body]),
    ...section(11, [1, 0, OP.i32Const, ...sleb(LAYOUT.k), OP.end, ...uleb(kBytes.length), ...kBytes]), // K at LAYOUT.k
  ]);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  process.stdout.write(`${Buffer.from(sha256Module()).toString('base64')}\n`);
}
