#!/usr/bin/env node
// Thin launcher. `npm run build` bundles the CLI into dist/cli/ (scripts/bundle-cli.mjs), which
// starts several times faster than the per-file tsc output; without the bundle (only `tsc -p .`
// was run) the compiled dist/src/cli/main.js runs the same code.
import { existsSync } from 'node:fs';

const bundle = new URL('../dist/cli/drydock.js', import.meta.url);
await import(existsSync(bundle) ? bundle.href : '../dist/src/cli/main.js');
