// A test hook for crash safety: DRYDOCK_TEST_CRASH_AT=<point>[:<n>] kills the process with
// SIGKILL the n-th time (the first without :n) it passes the named point, so a test can check
// what a crash there leaves in the store (test/builder/export.test.ts); DRYDOCK_TEST_PAUSE_AT=
// <point>=<ms> makes every pass wait, so a write that must come after another shows whether it
// waits for it or only happened to come later. Unset, a point costs a comparison. The points are where a write becomes visible: a blob fsynced or renamed in, the
// new index.json staged or renamed in, a cache entry half written, the export begun.
const spec = process.env.DRYDOCK_TEST_CRASH_AT;
const colon = spec?.lastIndexOf(':') ?? -1;
const target = colon > 0 ? spec!.slice(0, colon) : spec;
const nth = colon > 0 ? Number(spec!.slice(colon + 1)) : 1;
let passed = 0;

export function crashPoint(name: string): void {
  if (name !== target) return;
  if (++passed === nth) process.kill(process.pid, 'SIGKILL');
}

const pause = /^(.+)=(\d+)$/.exec(process.env.DRYDOCK_TEST_PAUSE_AT ?? '');

/** A promise to await at the point under DRYDOCK_TEST_PAUSE_AT, else undefined (no await). */
export function pausePoint(name: string): Promise<void> | undefined {
  if (!pause || pause[1] !== name) return undefined;
  return new Promise((resolve) => setTimeout(resolve, Number(pause[2])));
}
