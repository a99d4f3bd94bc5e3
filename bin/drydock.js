#!/usr/bin/env node
// Thin launcher: the CLI lives in the compiled library so tests and programs share one code path.
import '../dist/src/cli/main.js';
