// src/util/idle.ts: tasks run in the event loop's idle windows, one after the other.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { whileIdle } from '../../src/util/idle.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('whileIdle: a task that keeps the loop busy for a while does not hold back the next one', async () => {
  const starts: number[] = [];
  const busy = (ms: number) => { const end = performance.now() + ms; while (performance.now() < end) { /* a module's load */ } };
  // Each task is busy for 3.5 ms (part of it in a promise callback), most of a 4 ms window.
  // Counted as the loop's own work, it made the window after it look busy: a task every other
  // window, ~11.5 ms apart. Now the next window starts when the task is done: ~7.5 ms apart.
  const stop = whileIdle(Array.from({ length: 8 }, () => async () => { starts.push(performance.now()); busy(3); await Promise.resolve(); busy(0.5); }));
  await sleep(200);
  stop();
  assert.equal(starts.length, 8);
  const gaps = starts.slice(1).map((t, i) => t - starts[i]!).sort((x, y) => x - y);
  const median = gaps[Math.floor(gaps.length / 2)]!;
  assert.ok(median < 10, `median gap between tasks ${median.toFixed(1)} ms (${gaps.map((g) => g.toFixed(1)).join(' ')})`);
});

test('whileIdle: no task runs while the loop is busy, and none after the stop function', async () => {
  const ran: number[] = [];
  const stop = whileIdle([() => { ran.push(0); }, () => { ran.push(1); }]);
  // Busy through the first window and the next ones: a callback every millisecond that works 0.9 ms.
  const timer = setInterval(() => { const end = performance.now() + 0.9; while (performance.now() < end) { /* busy */ } }, 1);
  await sleep(40);
  clearInterval(timer);
  assert.deepEqual(ran, []);
  stop();
  await sleep(40);
  assert.deepEqual(ran, []);
});
