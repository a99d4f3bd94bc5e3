// src/util/idle.ts: tasks run in the event loop's idle windows, one after the other. The loop's
// utilization is a clock of the test's own and the timers are mocked: which window a task runs
// in is decided by the accounting alone, whatever else the machine is doing.
import { afterEach, beforeEach, mock, test } from 'node:test';
import assert from 'node:assert/strict';
import { whileIdle, type Elu, type Loop } from '../../src/util/idle.js';

/** The loop's busy and idle milliseconds, as perf_hooks' eventLoopUtilization reports them. */
class FakeLoop implements Loop {
  idle = 0;
  active = 0;
  eventLoopUtilization(a?: Elu, b?: Elu): Elu {
    if (a && b) {
      const idle = a.idle - b.idle;
      const active = a.active - b.active;
      return { idle, active, utilization: active / (idle + active || 1) };
    }
    return { idle: this.idle, active: this.active, utilization: 0 };
  }
}

const flush = () => new Promise((resolve) => setImmediate(resolve));

beforeEach(() => mock.timers.enable({ apis: ['setTimeout'] }));
afterEach(() => mock.timers.reset());

/** Lets `ms` pass a millisecond at a time, `busyPerMs` of each spent in other callbacks. */
async function pass(loop: FakeLoop, ms: number, busyPerMs = 0): Promise<void> {
  for (let i = 0; i < ms; i++) {
    loop.active += busyPerMs;
    loop.idle += 1 - busyPerMs;
    mock.timers.tick(1);
    await flush();
  }
}

test('whileIdle: a task that keeps the loop busy for most of a window does not hold back the next one', async () => {
  const loop = new FakeLoop();
  const ranAt: number[] = [];
  let now = 0;
  // Each task is busy for 3.5 ms (part of it in a promise callback), most of a 4 ms window.
  // Counted as the loop's own work, it made the window after it look busy: a task every other
  // window. The next window starts when the task is done: a task every window.
  const stop = whileIdle(Array.from({ length: 8 }, () => async () => {
    ranAt.push(now);
    loop.active += 3;
    await Promise.resolve();
    loop.active += 0.5;
  }), () => loop);
  for (; now < 12 + 8 * 4; now++) await pass(loop, 1);
  stop();
  assert.equal(ranAt.length, 8, `ran at ${ranAt.join(' ')} ms`);
  // The first window (12 ms) only measures; then one task a 4 ms window.
  assert.deepEqual(ranAt.slice(1).map((t, i) => t - ranAt[i]!), Array(7).fill(4));
});

test('whileIdle: no task runs while the loop is busy, and none after the stop function', async () => {
  const loop = new FakeLoop();
  const ran: number[] = [];
  const stop = whileIdle([() => { ran.push(0); }, () => { ran.push(1); }], () => loop);
  // Busy through the first window and the next ones: 0.9 of every millisecond in other callbacks.
  await pass(loop, 40, 0.9);
  assert.deepEqual(ran, []);
  stop();
  await pass(loop, 40);
  assert.deepEqual(ran, []);
});

test('whileIdle: once the loop is idle the tasks run in order, one a window', async () => {
  const loop = new FakeLoop();
  const ran: number[] = [];
  whileIdle([0, 1, 2].map((i) => () => { ran.push(i); }), () => loop);
  await pass(loop, 20, 0.9);
  assert.deepEqual(ran, []);
  await pass(loop, 4 + 1);
  assert.deepEqual(ran, [0]);
  await pass(loop, 8);
  assert.deepEqual(ran, [0, 1, 2]);
});
