// Output of the quick listings (images, ps, --version): write(2) on fd 1, not process.stdout.
// Making process.stdout builds a stream (node:stream, and for a pipe or terminal net and tty too):
// milliseconds of a command that otherwise runs in tens (bench/startup.ts). On Linux
// process.stdout writes files, pipes and terminals synchronously, so what is written here and what
// is written through it stay in order.
import { writeSync } from 'node:fs';

const pause = new Int32Array(new SharedArrayBuffer(4));

/**
 * Writes all of `text` to fd 1. A full non-blocking pipe (O_NONBLOCK set by another process that
 * shares it) is waited on; a reader that went away (`drydock images | head -1`) ends the process
 * quietly with status 141, as main.ts's exitQuietlyOnEpipe does for process.stdout.
 */
export function writeStdout(text: string): void {
  const buf = Buffer.from(text);
  let written = 0;
  while (written < buf.length) {
    try {
      written += writeSync(1, buf, written);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EAGAIN') { Atomics.wait(pause, 0, 0, 1); continue; }
      if (code === 'EPIPE') process.exit(141);
      throw e;
    }
  }
}
