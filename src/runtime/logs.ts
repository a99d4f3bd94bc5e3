// Container logs in Docker's json-file format: one JSON object per line,
// {"log":"text\n","stream":"stdout","time":"2024-01-01T00:00:00.000000000Z"}.
import { createWriteStream, promises as fsp, type WriteStream } from 'node:fs';
import { Writable } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';

export interface LogEntry { log: string; stream: 'stdout' | 'stderr'; time: string }

/** A Writable per stream that splits output into lines and appends JSON entries to the log. */
export class JsonLogWriter {
  private readonly out: WriteStream;
  constructor(file: string) {
    this.out = createWriteStream(file, { flags: 'a' });
  }

  stream(name: 'stdout' | 'stderr', tee?: NodeJS.WritableStream): Writable {
    const decoder = new StringDecoder('utf8');
    let partial = '';
    const emit = (text: string) => { this.out.write(JSON.stringify({ log: text, stream: name, time: new Date().toISOString() }) + '\n'); };
    return new Writable({
      write: (chunk: Buffer, _enc, cb) => {
        tee?.write(chunk);
        partial += decoder.write(chunk);
        let nl: number;
        while ((nl = partial.indexOf('\n')) >= 0) { emit(partial.slice(0, nl + 1)); partial = partial.slice(nl + 1); }
        // Very long lines are split like Docker's 16 KiB chunks so memory stays bounded.
        while (partial.length >= 16384) { emit(partial.slice(0, 16384)); partial = partial.slice(16384); }
        cb();
      },
      final: (cb) => { partial += decoder.end(); if (partial) emit(partial); partial = ''; cb(); },
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.out.end(resolve));
  }
}

export function parseLogLine(line: string): LogEntry | undefined {
  try {
    const e = JSON.parse(line) as LogEntry;
    return typeof e.log === 'string' ? e : undefined;
  } catch {
    return undefined;
  }
}

export interface ReadLogsOptions {
  tail?: number;
  timestamps?: boolean;
  since?: number;
  follow?: boolean;
  /** Called in follow mode to decide whether to keep waiting for more output. */
  stillRunning?: () => Promise<boolean>;
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}

function format(e: LogEntry, timestamps?: boolean): string {
  return timestamps ? `${e.time.replace(/(\.\d{3})Z$/, '$1000000Z')} ${e.log}` : e.log;
}

/** Prints the log (optionally the last N lines), then follows it while the container runs. */
export async function readLogs(file: string, o: ReadLogsOptions): Promise<void> {
  let offset = 0;
  let carry = '';
  const readNew = async (first: boolean) => {
    const fh = await fsp.open(file, 'r').catch(() => undefined);
    if (!fh) return;
    try {
      const { size } = await fh.stat();
      if (size <= offset) return;
      const buf = Buffer.alloc(size - offset);
      await fh.read(buf, 0, buf.length, offset);
      offset = size;
      const text = carry + buf.toString('utf8');
      const lines = text.split('\n');
      carry = lines.pop() ?? '';
      let entries = lines.map(parseLogLine).filter((e): e is LogEntry => !!e);
      if (o.since) entries = entries.filter((e) => Date.parse(e.time) >= o.since!);
      if (first && o.tail !== undefined && o.tail >= 0) entries = o.tail === 0 ? [] : entries.slice(-o.tail);
      for (const e of entries) (e.stream === 'stderr' ? o.stderr : o.stdout).write(format(e, o.timestamps));
    } finally {
      await fh.close();
    }
  };
  await readNew(true);
  if (!o.follow) return;
  for (;;) {
    const running = o.stillRunning ? await o.stillRunning() : false;
    await readNew(false);
    if (!running) return;
    await new Promise((r) => setTimeout(r, 200));
  }
}
