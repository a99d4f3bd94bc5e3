// Docker-like human output: sizes in decimal units, "2 hours ago", aligned tables, --format.
import { VerbatimError } from '../util/errors.js';

export { formatSize } from '../util/format.js';

/** Docker's CreatedAt: "2026-12-01 15:52:05 +0000 UTC" (Go's time.Time String, whole seconds). */
export function dockerTime(iso: string | undefined): string {
  if (!iso) return '';
  const t = new Date(iso);
  if (Number.isNaN(t.getTime())) return '';
  return `${t.toISOString().slice(0, 19).replace('T', ' ')} +0000 UTC`;
}

/** Docker's "x ago" (go-units HumanDuration): whole units, rounded down except hours. */
export function timeAgo(iso: string | undefined, now = Date.now()): string {
  if (!iso) return 'N/A';
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return 'N/A';
  const ms = Math.max(0, now - t);
  const s = Math.floor(ms / 1000);
  if (s < 1) return 'Less than a second ago';
  if (s === 1) return '1 second ago';
  if (s < 60) return `${s} seconds ago`;
  const m = Math.floor(ms / 60_000);
  if (m === 1) return 'About a minute ago';
  if (m < 60) return `${m} minutes ago`;
  const h = Math.floor(ms / 3_600_000 + 0.5);
  if (h === 1) return 'About an hour ago';
  if (h < 48) return `${h} hours ago`;
  if (h < 24 * 7 * 2) return `${Math.floor(h / 24)} days ago`;
  if (h < 24 * 30 * 2) return `${Math.floor(h / 24 / 7)} weeks ago`;
  if (h < 24 * 365 * 2) return `${Math.floor(h / 24 / 30)} months ago`;
  return `${Math.floor(ms / 3_600_000 / 24 / 365)} years ago`;
}

/** Left-aligned columns as Docker's tabwriter prints them (minimum width 10, padding 3). */
export function table(headers: string[], rows: string[][]): string {
  return tabwrite([headers, ...rows].map((r) => r.join('\t')).join('\n') + '\n');
}

/**
 * Go's text/tabwriter as Docker sets it up (minwidth 10, tabwidth 1, padding 3, spaces): a
 * tab-terminated cell is padded to its column's width, where a column is a run of consecutive
 * lines that have a cell there; the text after a line's last tab is not padded.
 */
export function tabwrite(text: string, minWidth = 10, padding = 3): string {
  const lines = text.split('\n').map((l) => l.split('\t'));
  const widths: number[][] = lines.map(() => []);
  const format = (from: number, to: number, col: number): void => {
    for (let i = from; i < to; i++) {
      if (lines[i]!.length - 1 <= col) continue;
      let j = i;
      let width = minWidth;
      for (; j < to && lines[j]!.length - 1 > col; j++) width = Math.max(width, cellWidth(lines[j]![col]!) + padding);
      for (let k = i; k < j; k++) widths[k]![col] = width;
      format(i, j, col + 1);
      i = j - 1;
    }
  };
  format(0, lines.length, 0);
  return lines.map((cells, i) => cells.map((c, k) => (k < cells.length - 1 ? c + ' '.repeat(Math.max(0, widths[i]![k]! - cellWidth(c))) : c)).join('')).join('\n');
}

/** Go's tabwriter counts UTF-8 runes. */
function cellWidth(s: string): number {
  return [...s].length;
}

export interface FormatSpec {
  /** Docker's default table, e.g. "table {{.Repository}}\t{{.Tag}}". */
  defaultFormat: string;
  /** Column titles by field, for the header row of a "table" format. */
  headers: Record<string, string>;
}

/**
 * Renders rows with a --format value the way Docker's formatter does: "table ..." prints a header
 * row and aligns columns, "json" is {{json .}}, anything else is a Go template run once per row.
 * `\t` and `\n` typed in the format are tab and newline. Template errors throw UserError with
 * Docker's text.
 */
export async function formatRows(format: string | undefined, rows: object[], spec: FormatSpec, errorPrefix = 'template parsing error'): Promise<string> {
  const { Template } = await import('../util/gotemplate/index.js');
  let f = !format || format === 'table' ? spec.defaultFormat : format === 'json' ? '{{json .}}' : format;
  const isTable = f.startsWith('table');
  if (isTable) f = f.slice('table'.length);
  f = f.replace(/^ +| +$/g, '').replace(/\\t/g, '\t').replace(/\\n/g, '\n');
  const tmpl = parseTemplate(Template, f);
  let body = '';
  for (const r of rows) body += `${runTemplate(tmpl, r, 'default', errorPrefix)}\n`;
  if (!isTable) return body;
  let header = '';
  try { header = tmpl.execute(spec.headers, { headerFuncs: true }); } catch { /* Docker ignores header errors */ }
  return tabwrite(`${header}\n${body}`);
}

/** Runs a template once per value (inspect's -f), with Docker's missingkey=error on maps. */
export async function formatEach(format: string, values: unknown[]): Promise<string> {
  const { Template } = await import('../util/gotemplate/index.js');
  // docker inspect exits 64 (EX_USAGE) on a template that does not parse.
  const tmpl = parseTemplate(Template, format, 64);
  return values.map((v) => `${runTemplate(tmpl, v, 'error')}\n`).join('');
}

type Tmpl = import('../util/gotemplate/index.js').Template;
type TemplateClass = { parse(text: string): Tmpl };

function parseTemplate(T: TemplateClass, f: string, exitCode = 1): Tmpl {
  try {
    return T.parse(f);
  } catch (e) {
    throw new VerbatimError(`template parsing error: ${(e as Error).message}`, exitCode);
  }
}

function runTemplate(tmpl: Tmpl, value: unknown, missingKey: 'default' | 'error' = 'default', prefix = 'template parsing error'): string {
  try {
    return tmpl.execute(value, { missingKey });
  } catch (e) {
    throw new VerbatimError(`${prefix}: ${(e as Error).message}`);
  }
}

export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, 2) + '\n');
}

/** Collects a repeatable option (-e A -e B) into an array, for commander. */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/**
 * Docker's prune prompt. Without a terminal on stdin there is nobody to ask, and Docker's
 * scripts pass -f anyway, so it counts as yes.
 */
export async function confirm(warning: string): Promise<boolean> {
  if (!process.stdin.isTTY) return true;
  const { createInterface } = await import('node:readline/promises');
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  const answer = await rl.question(`${warning}\nAre you sure you want to continue? [y/N] `);
  rl.close();
  return /^y(es)?$/i.test(answer.trim());
}
