// Failed-login rate limiting per (client address, user name): after `failures` wrong passwords
// within `windowMs`, that pair gets 429 TOOMANYREQUESTS (with Retry-After) until the window
// ends, right password or not, so guessing cannot go on at bcrypt speed. Other users from the
// same address and the same user from other addresses are not affected, so one attacker cannot
// lock everybody out. Memory is bounded: the oldest entries go first.
import { RegistryError } from '../errors.js';

const MAX_ENTRIES = 100_000;

export interface RateLimitOptions {
  /** Failures allowed per window; 0 disables. Default 10. */
  failures?: number;
  /** Default 60 s. */
  windowMs?: number;
}

export class LoginLimiter {
  private readonly entries = new Map<string, { count: number; until: number }>();
  readonly failures: number;
  readonly windowMs: number;

  constructor(opts: RateLimitOptions = {}) {
    this.failures = opts.failures ?? 10;
    this.windowMs = opts.windowMs ?? 60_000;
  }

  private key(address: string | undefined, user: string): string {
    return `${address ?? ''}\n${user}`;
  }

  /** Throws 429 while the pair is blocked. */
  check(address: string | undefined, user: string): void {
    if (this.failures <= 0) return;
    const e = this.entries.get(this.key(address, user));
    const now = Date.now();
    if (!e || e.until <= now || e.count < this.failures) return;
    const retry = Math.max(1, Math.ceil((e.until - now) / 1000));
    throw new RegistryError('TOOMANYREQUESTS', `too many failed logins for "${user.slice(0, 100)}" from this address; retry in ${retry}s`)
      .withHeaders({ 'Retry-After': String(retry) });
  }

  fail(address: string | undefined, user: string): void {
    if (this.failures <= 0) return;
    const k = this.key(address, user);
    const now = Date.now();
    const e = this.entries.get(k);
    if (e && e.until > now) {
      e.count++;
      return;
    }
    if (this.entries.size >= MAX_ENTRIES) this.entries.delete(this.entries.keys().next().value as string);
    this.entries.set(k, { count: 1, until: now + this.windowMs });
  }

  succeed(address: string | undefined, user: string): void {
    this.entries.delete(this.key(address, user));
  }
}
