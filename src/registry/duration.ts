// Go-style durations, shared by the config loader and the retention policies it validates (one
// module below both, so neither imports the other).
import { UserError } from '../util/errors.js';

/** Go-style durations as distribution writes them: "168h", "30m", "1h30m", "10s", "500ms". */
export function parseDuration(value: string | number | undefined, fallbackMs: number): number {
  if (value === undefined || value === '') return fallbackMs;
  if (typeof value === 'number') return value * 1000;
  if (/^\d+$/.test(value)) return Number(value) * 1000;
  const re = /(\d+(?:\.\d+)?)(ms|h|m|s)/g;
  let total = 0;
  let consumed = 0;
  for (const m of value.matchAll(re)) {
    const n = Number(m[1]);
    total += m[2] === 'h' ? n * 3_600_000 : m[2] === 'm' ? n * 60_000 : m[2] === 's' ? n * 1000 : n;
    consumed += m[0].length;
  }
  if (consumed !== value.length) throw new UserError(`invalid duration "${value}" (expected e.g. 168h, 30m, 10s)`);
  return total;
}
