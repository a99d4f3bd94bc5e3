// Request authorization: none, htpasswd (Basic) or bearer tokens (built-in issuer or an external
// one with a pinned key set). Every mode answers the same question: may this request perform
// these actions? Failures are RegistryErrors carrying the WWW-Authenticate challenge.
import type { IncomingMessage } from 'node:http';
import { RegistryError } from '../errors.js';
import { AccessRules, formatScope, parseScopes, type Access, type AccessRule } from './access.js';
import { Htpasswd } from './htpasswd.js';
import { LoginLimiter, type RateLimitOptions } from './ratelimit.js';
import { TokenIssuer, TokenVerifier, loadKeySet, type TokenClaims } from './token.js';

export { AccessRules, parseScopes, formatScope, type Access, type AccessRule } from './access.js';
export { Htpasswd, htpasswdLine, parseHtpasswd } from './htpasswd.js';
export { LoginLimiter, type RateLimitOptions } from './ratelimit.js';
export { TokenIssuer, TokenVerifier, loadKeySet, type TokenClaims } from './token.js';

/** What an authorized request may do; used for catalog filtering and cross-repo mounts. */
export interface Grant {
  user?: string;
  can(name: string, action: string): boolean;
  /** May _catalog show this repository (the caller may pull it)? Default: can(name, 'pull'). */
  listable?(name: string): boolean;
}

export interface AuthOptions {
  htpasswd?: { realm: string; path: string };
  token?: { realm?: string; service: string; issuer: string; rootcertbundle?: string; jwks?: string; signingkey?: string; expiration?: number };
  access?: AccessRule[];
  anonymousRead?: boolean;
  rateLimit?: RateLimitOptions;
}

export interface AuthController {
  readonly kind: 'none' | 'htpasswd' | 'token';
  /** Throws 401 (with challenge) or 403. `baseUrl` builds the built-in token realm. */
  authorize(req: IncomingMessage, access: Access[], baseUrl: string): Promise<Grant>;
  /** The built-in token endpoint (GET /token); undefined when tokens come from elsewhere. */
  tokenEndpoint?(req: IncomingMessage, query: URLSearchParams, form?: boolean): Promise<{ status: number; body: unknown; headers?: Record<string, string> }>;
}

const OPEN: Grant = { can: () => true };

/** Checks a password with the failed-login limiter around it: 429 while blocked. */
async function verifyLimited(htpasswd: Htpasswd, limiter: LoginLimiter, req: IncomingMessage, user: string, password: string): Promise<string | undefined> {
  const address = req.socket.remoteAddress;
  limiter.check(address, user);
  const ok = await htpasswd.verify(user, password);
  if (ok) limiter.succeed(address, user);
  else limiter.fail(address, user);
  return ok;
}

/**
 * The `detail` of a 401 as distribution 2.8 writes it: one {Type, Class, Name, Action} per
 * requested action (`[{"Type":"registry","Class":"","Name":"catalog","Action":"*"}]` for
 * _catalog), null for the /v2/ ping.
 */
export function challengeDetail(access: Access[]): { Type: string; Class: string; Name: string; Action: string }[] | null {
  if (access.length === 0) return null;
  return access.flatMap((a) => a.actions.map((action) => ({ Type: a.type, Class: '', Name: a.name, Action: action })));
}

function basicCredentials(req: IncomingMessage): { user: string; password: string } | undefined {
  const h = req.headers.authorization;
  if (!h || !/^basic /i.test(h)) return undefined;
  const decoded = Buffer.from(h.slice(6).trim(), 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return undefined;
  return { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

function needs(access: Access[], grant: (name: string, action: string) => boolean, user: string | undefined): boolean {
  return access.every((a) => {
    if (a.type === 'registry') return user !== undefined || grant(a.name, '*');
    return a.actions.every((act) => grant(a.name, act));
  });
}

class NoAuth implements AuthController {
  readonly kind = 'none' as const;
  async authorize(): Promise<Grant> { return OPEN; }
}

class HtpasswdAuth implements AuthController {
  readonly kind = 'htpasswd' as const;
  constructor(private readonly htpasswd: Htpasswd, private readonly realm: string, private readonly rules: AccessRules, private readonly limiter: LoginLimiter) {}

  private challenge(access: Access[]): RegistryError {
    // Wrong credentials get the same answer as none, as in distribution: nothing tells a prober which part was wrong.
    return new RegistryError('UNAUTHORIZED', 'authentication required', challengeDetail(access)).withHeaders({ 'WWW-Authenticate': `Basic realm="${this.realm}"` });
  }

  async authorize(req: IncomingMessage, access: Access[]): Promise<Grant> {
    const creds = basicCredentials(req);
    let user: string | undefined;
    if (creds) {
      user = await verifyLimited(this.htpasswd, this.limiter, req, creds.user, creds.password);
      if (!user) throw this.challenge(access);
    } else if (access.length === 0 || !needs(access, (n, a) => this.rules.allowed(undefined, n, a), undefined)) {
      // The /v2/ ping always challenges, so `login` has something to answer.
      throw this.challenge(access);
    }
    const u = user;
    const grant: Grant = { user: u, can: (n, a) => this.rules.allowed(u, n, a) };
    if (!needs(access, grant.can, u)) throw new RegistryError('DENIED', undefined, access);
    return grant;
  }

  async tokenEndpoint(): Promise<{ status: number; body: unknown }> {
    return { status: 404, body: { errors: [{ code: 'UNSUPPORTED', message: 'token auth is not enabled' }] } };
  }
}

class TokenAuth implements AuthController {
  readonly kind = 'token' as const;
  constructor(
    private readonly verifier: TokenVerifier,
    private readonly realm: string | undefined,
    private readonly service: string,
    private readonly issuer?: TokenIssuer,
    private readonly htpasswd?: Htpasswd,
    private readonly rules?: AccessRules,
    private readonly limiter = new LoginLimiter(),
  ) {}

  private challenge(access: Access[], baseUrl: string, error?: string): RegistryError {
    const realm = this.realm ?? `${baseUrl}/token`;
    let h = `Bearer realm="${realm}",service="${this.service}"`;
    if (access.length > 0) h += `,scope="${formatScope(access)}"`;
    if (error) h += `,error="${error}"`;
    return new RegistryError(error === 'insufficient_scope' ? 'DENIED' : 'UNAUTHORIZED', error === 'insufficient_scope' ? 'insufficient scope' : 'authentication required', challengeDetail(access), 401)
      .withHeaders({ 'WWW-Authenticate': h });
  }

  async authorize(req: IncomingMessage, access: Access[], baseUrl: string): Promise<Grant> {
    const h = req.headers.authorization;
    if (!h || !/^bearer /i.test(h)) throw this.challenge(access, baseUrl);
    const claims = await this.verifier.verify(h.slice(7).trim());
    if (!claims) throw this.challenge(access, baseUrl, 'invalid_token');
    const granted = Array.isArray(claims.access) ? claims.access : [];
    const can = (name: string, action: string) => granted.some((g) => g.type === 'repository' && g.name === name
      && Array.isArray(g.actions) && (g.actions.includes(action) || g.actions.includes('*')));
    const user = typeof claims.sub === 'string' && claims.sub ? claims.sub : undefined;
    const ok = access.every((a) => a.type === 'registry'
      ? granted.some((g) => g.type === 'registry' && g.name === a.name)
      : a.actions.every((act) => can(a.name, act)));
    if (!ok) throw this.challenge(access, baseUrl, 'insufficient_scope');
    // _catalog: with the built-in issuer, what the rules let this user pull; else what the token grants.
    const rules = this.rules;
    const listable = (name: string) => can(name, 'pull') || (rules !== undefined && rules.allowed(user, name, 'pull'));
    return { user, can, listable };
  }

  /** Docker's token protocol: Basic credentials (optional with anonymous read) + scope → JWT. */
  async tokenEndpoint(req: IncomingMessage, query: URLSearchParams, form = false): Promise<{ status: number; body: unknown; headers?: Record<string, string> }> {
    if (!this.issuer || !this.htpasswd || !this.rules) {
      return { status: 404, body: { errors: [{ code: 'UNSUPPORTED', message: 'this registry uses an external token issuer' }] } };
    }
    const service = query.get('service');
    if (service && service !== this.service) {
      return { status: 400, body: { errors: [{ code: 'UNSUPPORTED', message: `unknown service "${service}"` }] } };
    }
    let creds = basicCredentials(req);
    if (form) {
      const grant = query.get('grant_type');
      if (grant !== 'password') {
        return { status: 400, body: { error: 'unsupported_grant_type', error_description: 'only grant_type=password is supported' } };
      }
      creds = { user: query.get('username') ?? '', password: query.get('password') ?? '' };
    }
    let user: string | undefined;
    if (creds) {
      try {
        user = await verifyLimited(this.htpasswd, this.limiter, req, creds.user, creds.password);
      } catch (e) {
        if (!(e instanceof RegistryError)) throw e;
        return { status: e.status, body: JSON.parse(e.body()), headers: e.headers };
      }
      if (!user) {
        return { status: 401, body: { errors: [{ code: 'UNAUTHORIZED', message: 'invalid username or password' }] }, headers: { 'WWW-Authenticate': 'Basic realm="drydock token"' } };
      }
    }
    const requested = parseScopes(query.getAll('scope'));
    const granted = this.rules.grant(user, requested);
    const t = await this.issuer.issue(user ?? '', granted);
    return { status: 200, body: { token: t.token, access_token: t.token, expires_in: t.expiresIn, issued_at: t.issuedAt } };
  }
}

export async function createAuth(opts: AuthOptions): Promise<AuthController> {
  const rules = new AccessRules(opts.access, opts.anonymousRead ?? false);
  const limiter = new LoginLimiter(opts.rateLimit);
  if (opts.token) {
    const t = opts.token;
    if (t.rootcertbundle || t.jwks) {
      const keys = [
        ...(t.rootcertbundle ? await loadKeySet(t.rootcertbundle) : []),
        ...(t.jwks ? await loadKeySet(t.jwks) : []),
      ];
      if (!t.realm) throw new Error('auth.token.realm is required with an external token issuer');
      return new TokenAuth(new TokenVerifier(keys, t.issuer, t.service), t.realm, t.service);
    }
    if (!opts.htpasswd) throw new Error('the built-in token issuer needs auth.htpasswd for its users (or set auth.token.rootcertbundle for an external issuer)');
    const htpasswd = new Htpasswd(opts.htpasswd.path);
    await htpasswd.load();
    const issuer = await TokenIssuer.create({ signingKeyFile: t.signingkey, issuer: t.issuer, service: t.service, ttlSeconds: t.expiration });
    return new TokenAuth(issuer.verifier(), t.realm, t.service, issuer, htpasswd, rules, limiter);
  }
  if (opts.htpasswd) {
    const htpasswd = new Htpasswd(opts.htpasswd.path);
    await htpasswd.load();
    return new HtpasswdAuth(htpasswd, opts.htpasswd.realm, rules, limiter);
  }
  return new NoAuth();
}

export type { TokenClaims as Claims };
