// htpasswd files as `htpasswd -Bbn` writes them (bcrypt only, like registry:2). bcrypt costs
// tens of milliseconds, so a successful verification is remembered for a few minutes under an
// HMAC of the credentials (never the password itself); failures are never cached, and unknown
// users are compared against a dummy hash so both failures take the same time.
import { createHmac, randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import bcrypt from 'bcryptjs';
import { UserError } from '../../util/errors.js';

const DUMMY_HASH = bcrypt.hashSync('drydock-dummy-password', 5);
const CACHE_TTL_MS = 5 * 60 * 1000;
const RELOAD_CHECK_MS = 2000;

/** The cost field of "$2y$10$...". */
function costOf(hash: string): number {
  return Number(hash.slice(hash.indexOf('$', 1) + 1, hash.indexOf('$', 1) + 3));
}

export function parseHtpasswd(text: string, file = 'htpasswd'): Map<string, string> {
  const users = new Map<string, string>();
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (!line || line.startsWith('#')) return;
    const colon = line.indexOf(':');
    if (colon <= 0) throw new UserError(`${file}:${i + 1}: expected "user:hash"`);
    const hash = line.slice(colon + 1);
    if (!/^\$2[abxy]?\$\d\d\$/.test(hash)) throw new UserError(`${file}:${i + 1}: only bcrypt hashes are supported (use htpasswd -B)`);
    users.set(line.slice(0, colon), hash);
  });
  return users;
}

export class Htpasswd {
  private users = new Map<string, string>();
  private mtimeMs = -1;
  private lastCheck = 0;
  private readonly cache = new Map<string, { user: string; expires: number }>();
  private readonly secret = randomBytes(32);
  /** A hash at the file's highest cost: every failure takes at least as long as checking it. */
  private dummy = DUMMY_HASH;
  private maxCost = 5;

  constructor(readonly file: string) {}

  async load(): Promise<void> {
    const st = await fsp.stat(this.file).catch(() => { throw new UserError(`htpasswd file ${this.file} not found`); });
    const text = await fsp.readFile(this.file, 'utf8').catch((e: NodeJS.ErrnoException) => {
      throw new UserError(`htpasswd file ${this.file} cannot be read: ${e.code === 'EISDIR' ? 'it is a directory' : e.message}`, { cause: e });
    });
    this.users = parseHtpasswd(text, this.file);
    this.mtimeMs = st.mtimeMs;
    this.cache.clear();
    // Files mix costs (an old cost-5 line next to cost-10 ones): an unknown user must not answer
    // faster than a wrong password for the slowest user, so the dummy has the highest cost.
    let cost = 4;
    for (const h of this.users.values()) cost = Math.max(cost, costOf(h));
    this.maxCost = Math.min(cost, 14);
    if (costOf(this.dummy) !== this.maxCost) this.dummy = bcrypt.hashSync('drydock-dummy-password', this.maxCost);
  }

  /** Picks up edits to the file (users added with htpasswd while the server runs). */
  private async maybeReload(): Promise<void> {
    const now = Date.now();
    if (now - this.lastCheck < RELOAD_CHECK_MS) return;
    this.lastCheck = now;
    const st = await fsp.stat(this.file).catch(() => undefined);
    // A file caught mid-edit keeps the users loaded before; the next check tries again.
    if (st && st.mtimeMs !== this.mtimeMs) await this.load().catch(() => {});
  }

  /** Is this user in the file as last loaded? (Tokens of removed users stop working.) */
  has(user: string): boolean {
    return this.users.has(user);
  }

  /** Returns the user name when the password is right, undefined otherwise. */
  async verify(user: string, password: string): Promise<string | undefined> {
    await this.maybeReload();
    const key = createHmac('sha256', this.secret).update(user).update('\0').update(password).digest('base64');
    const hit = this.cache.get(key);
    if (hit && hit.expires > Date.now() && this.users.has(user)) return hit.user;
    const hash = this.users.get(user);
    const ok = await bcrypt.compare(password, hash ?? this.dummy);
    if (!ok || !hash) {
      // A wrong password for a cheaper hash also pays for the dummy, so no failure is faster
      // than the unknown-user one and the time does not tell which users exist.
      if (hash && costOf(hash) < this.maxCost) await bcrypt.compare(password, this.dummy);
      return undefined;
    }
    if (this.cache.size > 10_000) this.cache.clear();
    this.cache.set(key, { user, expires: Date.now() + CACHE_TTL_MS });
    return user;
  }
}

/** "user:$2y$..." line, like `htpasswd -Bbn user password`. */
export async function htpasswdLine(user: string, password: string, cost = 10): Promise<string> {
  if (!user || user.includes(':')) throw new UserError('user name must be non-empty and must not contain ":"');
  return `${user}:${(await bcrypt.hash(password, cost)).replace(/^\$2[ab]\$/, '$2y$')}`;
}
