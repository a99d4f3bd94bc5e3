// `drydock attach`: the detached monitor serves the container's stdio on a unix socket in the
// container's directory (like conmon's attach socket). Output goes to every attached client in
// Docker's multiplexed stream frames (8-byte header: stream, 0, 0, 0, big-endian length);
// bytes a client sends go to the container's stdin when it was started with -i. The detach
// sequence is recognised by the client, so the container never sees it.
// Foreground `run -it` and `exec -it` go through the same socket (Docker's CLI, too, attaches to a
// process its daemon runs): their monitor holds the output until the CLI is connected, and ends
// the stream with an exit frame, so the CLI has the code even when --rm removed the record.
import net from 'node:net';
import { spawnSync } from 'node:child_process';
import { openSync, closeSync, promises as fsp } from 'node:fs';
import type { Readable, Writable } from 'node:stream';
import { UserError } from '../util/errors.js';
import type { Container } from './containers.js';

const SOCKET = 'attach.sock';
export const STREAM_STDOUT = 1;
export const STREAM_STDERR = 2;
/** drydock's own frame type, last on the stream: a 4-byte big-endian exit code. */
export const STREAM_EXIT = 0x80;

/**
 * Runs `fn` with a short path naming `dir/attach.sock`. The container directory is often longer
 * than a socket address allows (108 bytes), so the path goes through /proc/self/fd, as conmon does.
 */
async function withSocketPath<T>(dir: string, fn: (p: string) => Promise<T>, name = SOCKET): Promise<T> {
  const fd = openSync(dir, 'r');
  try { return await fn(`/proc/self/fd/${fd}/${name}`); } finally { closeSync(fd); }
}

export interface AttachServer {
  /** Ends every client's stream, with an exit frame first when the code is known. */
  close(exitCode?: number): Promise<void>;
}

export interface ServeOptions {
  /** The socket's name in dir (exec sessions each have their own). */
  socket?: string;
  /** Keep the output (up to MAX_CLIENT_BACKLOG) until the first client connects, then send it. */
  holdForFirstClient?: boolean;
}

/**
 * Output queued for one attach client before it is cut off. The container never waits for a
 * client (its output also goes to the log), so a client that stops reading would otherwise
 * grow the monitor's memory without limit; cut off, it can attach again and read `logs`.
 */
export const MAX_CLIENT_BACKLOG = 8 << 20;
const FIRST_CLIENT_WAIT_MS = 10_000;

/** Serves the running container's stdio to attach clients until close(). */
export async function serveAttach(dir: string, io: { stdin?: Writable | null; stdout: Readable; stderr: Readable }, opts: ServeOptions = {}): Promise<AttachServer> {
  const name = opts.socket ?? SOCKET;
  const clients = new Set<net.Socket>();
  let held: Buffer[] | undefined = opts.holdForFirstClient ? [] : undefined;
  let heldBytes = 0;
  const send = (data: Buffer) => {
    if (held) { if (heldBytes < MAX_CLIENT_BACKLOG) { held.push(data); heldBytes += data.length; } return; }
    for (const s of clients) {
      if (s.writableLength > MAX_CLIENT_BACKLOG) { s.destroy(); continue; }
      s.write(data);
    }
  };
  const frame = (stream: number) => (chunk: Buffer) => {
    const header = Buffer.alloc(8);
    header[0] = stream;
    header.writeUInt32BE(chunk.length, 4);
    send(Buffer.concat([header, chunk]));
  };
  io.stdout.on('data', frame(STREAM_STDOUT));
  io.stderr.on('data', frame(STREAM_STDERR));
  // Keys a client sends after the container exited (or closed its stdin) meet a closed pipe:
  // they are dropped, as Docker drops them. Unhandled, that EPIPE killed the monitor before it
  // sent the exit code and recorded it, and the run ended with 255.
  io.stdin?.on('error', () => {});
  let firstClient: () => void = () => {};
  const connected = new Promise<void>((resolve) => { firstClient = resolve; });
  const server = net.createServer((socket) => {
    clients.add(socket);
    if (held) { for (const b of held) socket.write(b); held = undefined; }
    firstClient();
    socket.on('data', (d) => { if (io.stdin && !io.stdin.destroyed) io.stdin.write(d); });
    socket.on('error', () => {});
    socket.on('close', () => clients.delete(socket));
  });
  await fsp.rm(`${dir}/${name}`, { force: true });
  await withSocketPath(dir, (p) => new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(p, resolve); }), name);
  return {
    async close(exitCode?: number) {
      if (exitCode !== undefined) {
        const f = Buffer.alloc(12);
        f[0] = STREAM_EXIT;
        f.writeUInt32BE(4, 4);
        f.writeInt32BE(exitCode, 8);
        send(f);
      }
      // A process that exits at once still reaches the CLI that is about to connect; a client
      // that never comes (its CLI died) gets nothing after FIRST_CLIENT_WAIT_MS: it is in the log.
      if (held) await Promise.race([connected, new Promise((r) => setTimeout(r, FIRST_CLIENT_WAIT_MS).unref())]);
      held = undefined;
      for (const s of clients) s.end();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await fsp.rm(`${dir}/${name}`, { force: true });
    },
  };
}

/** Parses Docker's --detach-keys: comma-separated `ctrl-<x>` or single characters. */
export function parseDetachKeys(spec: string): Buffer {
  const out: number[] = [];
  for (const key of spec.split(',')) {
    const k = key.trim();
    const ctrl = /^ctrl-(.)$/i.exec(k);
    if (ctrl) {
      const c = ctrl[1]!;
      // Docker's table: ctrl-a..z, ctrl-@, ctrl-[, ctrl-\, ctrl-], ctrl-^, ctrl-_.
      if (/^[a-z]$/i.test(c)) out.push(c.toLowerCase().charCodeAt(0) - 96);
      else if ('@[\\]^_'.includes(c)) out.push(c.charCodeAt(0) - 64);
      else throw new UserError(`Invalid detach keys (${spec}) provided`);
    } else if (k.length === 1) out.push(k.charCodeAt(0));
    else throw new UserError(`Invalid detach keys (${spec}) provided`);
  }
  return Buffer.from(out);
}

/** Splits an input stream at the detach sequence: passes the other bytes on, calls onDetach. */
export class DetachScanner {
  private matched = 0;
  constructor(private readonly keys: Buffer, private readonly pass: (b: Buffer) => void, private readonly onDetach: () => void) {}
  push(chunk: Buffer): void {
    const out: number[] = [];
    for (const byte of chunk) {
      if (byte === this.keys[this.matched]) {
        this.matched++;
        if (this.matched === this.keys.length) { if (out.length) this.pass(Buffer.from(out)); this.matched = 0; this.onDetach(); return; }
        continue;
      }
      // A partial match that breaks off was ordinary input after all.
      for (let i = 0; i < this.matched; i++) out.push(this.keys[i]!);
      this.matched = 0;
      if (byte === this.keys[0]) this.matched = 1; else out.push(byte);
    }
    if (out.length) this.pass(Buffer.from(out));
  }
}

export interface AttachOptions {
  stdin: NodeJS.ReadableStream & { isTTY?: boolean; setRawMode?(raw: boolean): void };
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  noStdin?: boolean;
  detachKeys?: string;
  sigProxy?: boolean;
}

/** Attaches to a running detached container; resolves with its exit code, or 0 on detach. */
export async function attachContainer(c: Container, o: AttachOptions & { justStarted?: boolean }): Promise<number> {
  // A container run -it just started may already have exited; its monitor waits for this client.
  if (!o.justStarted && c.state.Status !== 'running') throw new UserError('You cannot attach to a stopped container, start it first');
  if (!o.justStarted && c.state.Paused) throw new UserError('You cannot attach to a paused container, unpause it first');
  const r = await attachSocket(c.paths.dir, SOCKET, {
    ...o,
    tty: !!c.record.Config.Tty,
    openStdin: !!c.record.Config.OpenStdin,
    missing: `container ${c.record.Id.slice(0, 12)} has no attach socket (it was started in the foreground, or by a drydock without attach)`,
    signal: async (sig) => {
      const { killContainer } = await import('./runc.js');
      await killContainer(c.record.Id, sig, { runtime: c.record.HostConfig.Runtime });
    },
  });
  if (r.detached) return 0;
  if (r.exitCode !== undefined) return r.exitCode;
  // The output ended because the container exited; the monitor records its code a moment later.
  const { loadContainer } = await import('./containers.js');
  for (let i = 0; i < 100; i++) {
    const now = await loadContainer(c.record.Id);
    if (!now || now.state.Status === 'exited') return now?.state.ExitCode ?? 0;
    await new Promise((r) => setTimeout(r, 50));
  }
  return 0;
}

export interface SocketAttachOptions extends AttachOptions {
  tty: boolean;
  openStdin: boolean;
  /** The error when the socket is not there. */
  missing: string;
  /** Delivers a signal the client received (non-terminal sessions proxy signals). */
  signal?(sig: NodeJS.Signals): Promise<void>;
}

/**
 * The attach client: demultiplexes the socket's frames onto stdout/stderr and sends stdin
 * (raw for a terminal, with the detach sequence taken out). Resolves when the stream ends.
 */
export async function attachSocket(dir: string, name: string, o: SocketAttachOptions): Promise<{ detached: boolean; exitCode?: number }> {
  const keys = parseDetachKeys(o.detachKeys ?? 'ctrl-p,ctrl-q');
  const socket = await withSocketPath(dir, (p) => new Promise<net.Socket>((resolve, reject) => {
    const s = net.connect(p, () => resolve(s));
    s.once('error', (e) => reject((e as NodeJS.ErrnoException).code === 'ENOENT' || (e as NodeJS.ErrnoException).code === 'ECONNREFUSED' ? new UserError(o.missing) : e));
  }), name);
  const { tty } = o;
  const raw = tty && o.stdin.isTTY && !o.noStdin && o.openStdin;
  let detached = false;
  let exitCode: number | undefined;
  const cleanup: (() => void)[] = [];
  const finished = new Promise<void>((resolve) => {
    let pending = Buffer.alloc(0);
    socket.on('data', (d: Buffer) => {
      pending = Buffer.concat([pending, d]);
      while (pending.length >= 8) {
        const len = pending.readUInt32BE(4);
        if (pending.length < 8 + len) break;
        const body = pending.subarray(8, 8 + len);
        if (pending[0] === STREAM_EXIT) exitCode = body.readInt32BE(0);
        else (pending[0] === STREAM_STDERR ? o.stderr : o.stdout).write(body);
        pending = pending.subarray(8 + len);
      }
    });
    socket.on('close', () => resolve());
    socket.on('error', () => resolve());
  });
  // end(), not destroy(): keys typed just before the detach sequence still reach the process.
  const detach = () => { detached = true; socket.end(); setTimeout(() => socket.destroy(), 2000).unref(); };
  if (!o.noStdin && o.openStdin) {
    if (raw) {
      o.stdin.setRawMode!(true);
      // libuv's raw mode keeps output post-processing (ONLCR), so the container's \r\n would
      // reach the screen as \r\r\n; Docker's CLI turns it off too. setRawMode(false) restores it.
      spawnSync('stty', ['-opost'], { stdio: ['inherit', 'ignore', 'ignore'] });
      cleanup.push(() => o.stdin.setRawMode!(false));
    }
    // Docker recognises the detach sequence only on a terminal container (otherwise it is data).
    const scanner = tty ? new DetachScanner(keys, (b) => socket.write(b), detach) : undefined;
    const onData = (d: Buffer) => (scanner ? scanner.push(d) : socket.write(d));
    o.stdin.on('data', onData);
    cleanup.push(() => { o.stdin.off('data', onData); (o.stdin as unknown as { pause(): void }).pause(); });
  }
  if (o.sigProxy !== false && !tty && o.signal) {
    for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'] as const) {
      const h = () => { o.signal!(sig).catch(() => {}); };
      process.on(sig, h);
      cleanup.push(() => process.off(sig, h));
    }
  }
  try {
    await finished;
  } finally {
    for (const f of cleanup) f();
  }
  return { detached, ...(exitCode !== undefined && !detached ? { exitCode } : {}) };
}
