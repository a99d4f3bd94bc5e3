// Work for the main thread's idle time. While a RUN step's `runc run` executes (70–250 ms) the
// build's main thread waits with nothing to do; what the step needs right after it (the modules
// of the snapshot, loaded and compiled on first use) can be done then instead of on the path
// that follows. Idle means: over the last few milliseconds the event loop spent (almost) no
// time running callbacks, which a step preparing its container (a thread-pool round trip every
// fraction of a millisecond) does not look like.
const WINDOW_MS = 4;
/** The first window: by then a RUN step's container is usually started (its preparation takes 4–8 ms). */
const FIRST_WINDOW_MS = 12;
const IDLE_BELOW = 0.05;

/** The global performance is perf_hooks' (Node's lib types leave eventLoopUtilization out). */
export type Elu = { idle: number; active: number; utilization: number };
export type Loop = { eventLoopUtilization(a?: Elu, b?: Elu): Elu };
/**
 * Read in whileIdle's first window, not when this module loads or whileIdle is called: the
 * global `performance` loads perf_hooks (about a millisecond), the solver imports this module on
 * every build's way to its first step, and whileIdle is called just before a RUN's container is
 * prepared. The first, longer window only measures; tasks start from the second.
 */
const loopPerformance = (): Loop => performance as unknown as Loop;

/**
 * Runs `tasks` one per idle window, in order, until they are done or the returned function is
 * called. Each task should be short (a module load); failures are ignored (the code that needs
 * the module loads it again and reports them). `source`: the loop's utilization (tests give a
 * clock of their own).
 */
export function whileIdle(tasks: (() => unknown)[], source: () => Loop = loopPerformance): () => void {
  const queue = [...tasks];
  let loop: Loop | undefined;
  let prev: Elu | undefined;
  let timer: NodeJS.Timeout | undefined;
  const tick = () => {
    loop ??= source();
    const now = loop.eventLoopUtilization();
    const idle = prev !== undefined && loop.eventLoopUtilization(now, prev).utilization < IDLE_BELOW;
    if (!idle) {
      prev = now;
      if (queue.length) schedule();
      return;
    }
    let task: Promise<unknown>;
    try { task = Promise.resolve(queue.shift()?.()); } catch { task = Promise.resolve(); /* as above */ }
    // The next window starts when the task is done (a module's load often finishes in a promise
    // callback): the task's own time is not other work, and counted in it, it made every window
    // after a task look busy, so tasks ran at most every other window.
    void task.catch(() => {}).finally(() => {
      prev = loop!.eventLoopUtilization();
      if (queue.length) schedule();
    });
  };
  const schedule = (ms = WINDOW_MS) => { timer = setTimeout(tick, ms); timer.unref(); };
  schedule(FIRST_WINDOW_MS);
  return () => { clearTimeout(timer); queue.length = 0; };
}
