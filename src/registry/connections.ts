// Graceful shutdown the way Go's http.Server.Shutdown does it (what registry:2 runs): stop
// accepting, close connections that sit idle between requests, let requests in progress finish,
// and give a connection that was accepted but has not sent its request yet a grace period.
//
// Node's own server.close() (since 19) calls closeIdleConnections(), which counts a connection
// whose request has not been parsed yet as idle: a PATCH already in the kernel's socket buffer
// when SIGTERM comes is reset instead of served. So the listener is closed with net.Server's
// close, and connections are tracked here.
import { Server as NetServer, type Socket } from 'node:net';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';

type State = 'new' | 'active' | 'idle';

/** Go's http.Server treats a StateNew connection as idle once it is this old. */
export const NEW_CONNECTION_GRACE_MS = 5_000;

export class ConnectionTracker {
  private readonly states = new Map<Socket, { state: State; since: number }>();
  private closing = false;
  private settled?: () => void;

  /** Call for every accepted socket (the server's 'connection' event). */
  accepted(socket: Socket): void {
    this.states.set(socket, { state: 'new', since: Date.now() });
    socket.once('close', () => { this.states.delete(socket); this.check(); });
  }

  /** Call at the start of each request; while shutting down, the response closes its connection. */
  requestStarted(req: IncomingMessage, res: ServerResponse): void {
    const socket = req.socket;
    const entry = this.states.get(socket);
    if (entry) { entry.state = 'active'; entry.since = Date.now(); }
    if (this.closing && !res.headersSent) res.setHeader('Connection', 'close');
    res.once('finish', () => {
      const e = this.states.get(socket);
      if (!e) return;
      e.state = 'idle';
      // A keep-alive response that began before the shutdown: end its connection once it is sent.
      if (this.closing) socket.end();
      this.check();
    });
  }

  /**
   * Stop accepting and wait until no request is in progress and no fresh connection is still
   * within its grace, at most drainMs; then destroy what is left. Resolves when the listener is
   * closed and every connection is gone.
   */
  async shutdown(server: Server, drainMs: number, graceMs = NEW_CONNECTION_GRACE_MS): Promise<void> {
    this.closing = true;
    const listenerClosed = new Promise<void>((resolve) => {
      // net.Server's close, not http.Server's: see the file comment.
      NetServer.prototype.close.call(server, () => resolve());
    });
    for (const [socket, e] of this.states) if (e.state === 'idle') socket.end();
    const deadline = Date.now() + drainMs;
    while (this.busy(graceMs) && Date.now() < deadline) {
      const untilGraceEnds = this.nextGraceEnd(graceMs);
      const wait = Math.max(1, Math.min(deadline, untilGraceEnds) - Date.now());
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, wait);
        timer.unref();
        this.settled = () => { clearTimeout(timer); resolve(); };
      });
      this.settled = undefined;
    }
    // Whatever is still running now is cut; an interrupted upload stays resumable on disk.
    for (const socket of this.states.keys()) socket.destroy();
    await listenerClosed;
  }

  private busy(graceMs: number): boolean {
    const now = Date.now();
    for (const e of this.states.values()) {
      if (e.state === 'active') return true;
      if (e.state === 'new' && now - e.since < graceMs) return true;
    }
    return false;
  }

  private nextGraceEnd(graceMs: number): number {
    let next = Infinity;
    for (const e of this.states.values()) if (e.state === 'new') next = Math.min(next, e.since + graceMs);
    return next;
  }

  private check(): void { this.settled?.(); }
}
