// Sizes as Docker prints them (decimal units, three significant digits: 1.06MB, 8.43kB).
// Shared by the CLI and the library's progress renderer, so it lives below both.
export function formatSize(bytes: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let v = bytes;
  let i = 0;
  while (v >= 1000 && i < units.length - 1) { v /= 1000; i++; }
  const s = i === 0 ? String(v) : v.toPrecision(3).replace(/\.0+$/, '').replace(/(\.\d*?)0+$/, '$1');
  return `${s}${units[i]}`;
}
