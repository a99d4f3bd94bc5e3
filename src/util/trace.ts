// Opt-in timing marks for finding where a build's time goes: with DRYDOCK_TRACE=1 each span
// prints "trace <label> <ms> @<start>" to stderr when it ends, <start> in ms since the process
// started (what the CLI's start-up and module loading took shows as the first span's start). Off
// (the default) it costs one branch.
import { writeSync } from 'node:fs';

const enabled = !!process.env.DRYDOCK_TRACE;

/** Starts a span; the returned function ends it. */
export function span(label: string): () => void {
  if (!enabled) return noop;
  const at = performance.now();
  const start = process.hrtime.bigint();
  // Straight to fd 2: process.stderr would load node:stream (and net for a pipe) on the way to
  // the first RUN, which an untraced build does not.
  return () => { try { writeSync(2, `trace ${label} ${(Number(process.hrtime.bigint() - start) / 1e6).toFixed(1)} @${at.toFixed(0)}\n`); } catch { /* a closed stderr */ } };
}

/** Times `fn` as a span. */
export async function traced<T>(label: string, fn: () => Promise<T>): Promise<T> {
  if (!enabled) return fn();
  const end = span(label);
  try { return await fn(); } finally { end(); }
}

function noop(): void {}
