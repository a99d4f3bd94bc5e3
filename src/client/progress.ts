// Turns copy progress events into what the user sees: Docker-style per-layer bars on a TTY
// (redrawn in place), one plain line per status change otherwise, or one JSON object per event
// (--progress=json) for CI. Writing is the caller's concern; this only renders.
import { isLayerMediaType } from '../image/media-types.js';
import { formatSize } from '../util/format.js';
import type { ProgressEvent } from './copy.js';

export type ProgressMode = 'auto' | 'tty' | 'plain' | 'json' | 'quiet';
export type TransferKind = 'pull' | 'push' | 'copy';

export interface ProgressReporter {
  onProgress(e: ProgressEvent): void;
  /** A note (mirror fallback, retry): a line of its own, or a JSON "warning" event. */
  warn(message: string): void;
  /** Human line (Docker's "Digest: ..."): suppressed in json and quiet modes. */
  line(text: string): void;
  finish(): void;
}

const STATUS: Record<TransferKind, Record<string, string>> = {
  pull: { waiting: 'Pulling fs layer', exists: 'Already exists', mounted: 'Mounted', transferring: 'Downloading', verifying: 'Verifying Checksum', done: 'Pull complete', retrying: 'Retrying' },
  push: { waiting: 'Preparing', exists: 'Layer already exists', mounted: 'Mounted from', transferring: 'Pushing', verifying: 'Pushing', done: 'Pushed', retrying: 'Retrying' },
  copy: { waiting: 'Waiting', exists: 'Already exists', mounted: 'Mounted from', transferring: 'Copying', verifying: 'Verifying', done: 'Copied', retrying: 'Retrying' },
};

export function progressBar(current: number, total: number, width = 50): string {
  if (total <= 0) return '';
  const filled = Math.min(width, Math.floor((current / total) * width));
  const bar = filled >= width ? '='.repeat(width) : `${'='.repeat(Math.max(0, filled - 1))}${filled > 0 ? '>' : ''}${' '.repeat(width - filled)}`;
  return `[${bar}]  ${formatSize(current)}/${formatSize(total)}`;
}

function blobLine(kind: TransferKind, e: Extract<ProgressEvent, { type: 'blob' }>): string {
  const id = e.digest.slice(e.digest.indexOf(':') + 1, e.digest.indexOf(':') + 13);
  let status = STATUS[kind][e.status] ?? e.status;
  if (e.status === 'mounted' && e.from) status = `Mounted from ${e.from}`;
  if (e.status === 'retrying' && e.message) status = `Retrying: ${e.message}`;
  if (e.status === 'transferring' && e.current !== undefined) status = `${status} ${progressBar(e.current, e.size)}`.trimEnd();
  return `${id}: ${status}`;
}

/** Which blobs a human sees: layers (Docker hides the config), or everything for copy. */
function visible(kind: TransferKind, e: Extract<ProgressEvent, { type: 'blob' }>): boolean {
  return kind === 'copy' || isLayerMediaType(e.mediaType) || !e.mediaType.includes('config');
}

export function createProgressReporter(mode: ProgressMode, kind: TransferKind, out: NodeJS.WriteStream = process.stdout): ProgressReporter {
  const resolved: Exclude<ProgressMode, 'auto'> = mode === 'auto' ? (out.isTTY ? 'tty' : 'plain') : mode;
  if (resolved === 'quiet') return { onProgress() {}, warn: (m) => process.stderr.write(`Warning: ${m}\n`), line() {}, finish() {} };
  if (resolved === 'json') {
    return {
      onProgress: (e) => out.write(JSON.stringify({ time: new Date().toISOString(), ...e }) + '\n'),
      warn: (m) => out.write(JSON.stringify({ time: new Date().toISOString(), type: 'warning', message: m }) + '\n'),
      line() {},
      finish() {},
    };
  }
  if (resolved === 'plain') {
    const last = new Map<string, string>();
    return {
      onProgress(e) {
        if (e.type !== 'blob' || !visible(kind, e)) return;
        // Byte counts would flood a log: print status changes only.
        if (e.status === 'transferring' && last.get(e.digest) === 'transferring') return;
        last.set(e.digest, e.status);
        out.write(blobLine(kind, { ...e, current: undefined }) + '\n');
      },
      warn: (m) => out.write(`Warning: ${m}\n`),
      line: (t) => out.write(`${t}\n`),
      finish() {},
    };
  }
  // TTY: one line per layer, redrawn in place like Docker's jsonmessage renderer.
  const order: string[] = [];
  const lines = new Map<string, string>();
  let drawn = 0;
  let timer: NodeJS.Timeout | undefined;
  const draw = () => {
    timer = undefined;
    let s = drawn > 0 ? `\x1b[${drawn}A` : '';
    for (const id of order) s += `\r\x1b[2K${lines.get(id)}\n`;
    drawn = order.length;
    out.write(s);
  };
  const schedule = (now: boolean) => {
    if (now) { if (timer) clearTimeout(timer); draw(); return; }
    timer ??= setTimeout(draw, 100);
  };
  return {
    onProgress(e) {
      if (e.type !== 'blob' || !visible(kind, e)) return;
      if (!lines.has(e.digest)) order.push(e.digest);
      lines.set(e.digest, blobLine(kind, e));
      schedule(e.status !== 'transferring');
    },
    warn(m) {
      // Insert above the bars so they keep redrawing below it.
      if (timer) { clearTimeout(timer); timer = undefined; }
      let s = drawn > 0 ? `\x1b[${drawn}A` : '';
      s += `\r\x1b[2KWarning: ${m}\n`;
      out.write(s);
      drawn = 0;
      draw();
    },
    line(t) {
      if (timer) { clearTimeout(timer); draw(); }
      out.write(`${t}\n`);
      order.length = 0;
      lines.clear();
      drawn = 0;
    },
    finish() {
      if (timer) { clearTimeout(timer); draw(); }
    },
  };
}
