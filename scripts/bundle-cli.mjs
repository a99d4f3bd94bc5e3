// Bundles the CLI with esbuild into dist/cli/ (what bin/drydock.js runs): one ESM entry,
// drydock.js, split at the command dispatcher's lazy imports, so a quick command loads its own
// module and the code it needs, not every package. Node's ESM loader resolves, reads and
// compiles each file of dist/src and node_modules separately (and wraps every CommonJS package);
// a bundled chunk costs one read and one compile. Measured by bench/startup.ts.
// The detached container monitor and the exec monitor are entries too: src/runtime/lifecycle.ts
// starts `monitor-main.js` / `exec-monitor-main.js` from the directory its own code runs from.
import { build } from 'esbuild';
import { renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const out = path.join(root, 'dist/cli');
const tmp = `${out}.tmp-${process.pid}`;
rmSync(tmp, { recursive: true, force: true });
await build({
  absWorkingDir: root,
  entryPoints: { drydock: 'src/cli/main.ts', 'monitor-main': 'src/runtime/monitor-main.ts', 'exec-monitor-main': 'src/runtime/exec-monitor-main.ts' },
  outdir: tmp,
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  minify: true,
  // A native addon cannot be bundled; it loads from node_modules.
  external: ['@napi-rs/xattr'],
  // Bundled CommonJS packages (proper-lockfile, pino, …) call require() for Node's built-ins.
  banner: { js: "import { createRequire as __drydockRequire } from 'node:module'; const require = __drydockRequire(import.meta.url);" },
  logLevel: 'warning',
});
// Swap in the new bundle whole, so a running drydock never sees a half-written directory.
rmSync(out, { recursive: true, force: true });
renameSync(tmp, out);
