// Work for the main thread's idle time. While a RUN step's `runc run` executes (70–250 ms) the
// build's main thread waits with nothing to do; what the step needs right after it (the modules
// of the snapshot, loaded and compiled on first use) can be done then instead of on the path
// that follows. Idle means: over the last few milliseconds the event loop spent (almost) no
// time running callbacks, which a step preparing its container (a thread-pool round trip every
// fraction of a millisecond) does not look like.
const WINDOW_MS = 4;
const IDLE_BELOW = 0.05;

/** The global performance is perf_hooks' (Node's lib types leave eventLoopUtilization out). */
type Elu = { idle: number; active: number; utilization: number };
type Loop = { eventLoopUtilization(a?: Elu, b?: Elu): Elu };
/**
 * Read when whileIdle first runs, not when this module loads: the global `performance` loads
 * perf_hooks (about a millisecond), and the solver imports this module on every build's way to
 * its first step, fully cached ones included.
 */
const loopPerformance = (): Loop => performance as unknown as Loop;

/**
 * Runs `tasks` one per idle window, in order, until they are done or the returned function is
 * called. Each task should be short (a module load); failures are ignored (the code that needs
 * the module loads it again and reports them).
 */
export function whileIdle(tasks: (() => unknown)[]): () => void {
  const loop = loopPerformance();
  const queue = [...tasks];
  let prev = loop.eventLoopUtilization();
  let timer: NodeJS.Timeout | undefined;
  const tick = () => {
    const now = loop.eventLoopUtilization();
    const idle = loop.eventLoopUtilization(now, prev).utilization < IDLE_BELOW;
    if (idle) {
      try { Promise.resolve(queue.shift()?.()).catch(() => {}); } catch { /* as above */ }
    }
    prev = loop.eventLoopUtilization();
    if (queue.length) schedule();
  };
  const schedule = () => { timer = setTimeout(tick, WINDOW_MS); timer.unref(); };
  schedule();
  return () => { clearTimeout(timer); queue.length = 0; };
}
