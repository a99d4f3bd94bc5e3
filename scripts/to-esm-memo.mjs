// A post-processing step of scripts/bundle-cli.mjs, apart so test/cli/bundle.test.ts can import it.
/**
 * esbuild's __toESM, run for each `import x from` / `import * as x from` of a CommonJS module
 * (node:fs, node:path, bundle-cli.mjs's lazy built-ins, commander…), makes a new namespace object with
 * a getter per export every time: a build's bundle calls it ~75 times for 10 modules, node:fs's
 * ~100 exports each time, 1–3 ms of the CLI's start and a megabyte of young objects (a scavenge
 * before the first RUN). Node's own ESM loader makes one namespace per CommonJS module; so does
 * this: the helper keeps the object it made for a module (and mode) and hands it out again. The
 * getters read the module's exports when used, so every importer still sees the same values.
 */
export function memoizeToEsm(text) {
  const helper = /var ([\w$]+)=\(([\w$]+),([\w$]+),([\w$]+)\)=>\(\4=\2!=null\?[\w$]+\([\w$]+\(\2\)\):\{\},[\w$]+\(\3\|\|!\2\|\|!\2\.__esModule\?[\w$]+\(\4,"default",\{value:\2,enumerable:!0\}\):\4,\2\)\)/;
  const m = helper.exec(text);
  if (!m) {
    if (text.includes('.__esModule?')) throw new Error('bundle-cli: esbuild\'s __toESM helper has a shape memoizeToEsm does not know');
    return text;
  }
  const [whole, name] = m;
  const fresh = whole.replace(`var ${name}=`, 'var __drydockFreshToEsm=');
  const memo = `${fresh},__drydockToEsmMemo=[new WeakMap,new WeakMap],${name}=(t,e)=>{if(t===null||typeof t!="object"&&typeof t!="function")return __drydockFreshToEsm(t,e);let c=__drydockToEsmMemo[e?1:0],n=c.get(t);return n===void 0&&c.set(t,n=__drydockFreshToEsm(t,e)),n}`;
  return text.slice(0, m.index) + memo + text.slice(m.index + whole.length);
}
