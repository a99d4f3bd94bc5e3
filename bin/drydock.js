#!/usr/bin/env node
// Thin launcher, CommonJS (bin/package.json) because a CommonJS entry skips Node's ESM loader.
// `npm run build` bundles the CLI into dist/cli/ (scripts/bundle-cli.mjs); dist/cli/drydock.cjs
// (src/cli/launch.ts) runs the bundle of the command in argv with V8's code cache. Without the
// bundle (only `tsc -p .` was run) the compiled dist/src/cli/main.js runs the same code.
'use strict';
const { existsSync } = require('node:fs');
const path = require('node:path');

const launcher = path.join(__dirname, '../dist/cli/drydock.cjs');
if (existsSync(launcher)) require(launcher).launch(path.dirname(launcher));
else import('../dist/src/cli/main.js');
