// Request authorization: none, htpasswd (Basic) or bearer tokens (built-in issuer or an external
// one with a pinned key set). Every mode answers the same question: may this request perform
// these actions? Failures are RegistryErrors carrying the WWW-Authenticate challenge. Who may do
// what is a Policy (accessControl, or the older auth.access rules); reload() swaps it and the
// htpasswd file in place, so SIGHUP changes access without touching open connections.
import type { IncomingMessage } from 'node:http';
import { RegistryError } from '../errors.js';
import { AccessRules, formatScope, parseScopes, type Access, type AccessRule } from './access.js';
import { AccessPolicy, type AccessControlConfig, type Identity, type Policy } from './access-control.js';
import { Htpasswd } from './htpasswd.js';
import { LoginLimiter, type RateLimitOptions } from './ratelimit.js';
import { TokenIssuer, TokenVerifier, loadKeySet, type TokenClaims } from './token.js';

export { AccessRules, parseScopes, formatScope, type Access, type AccessRule } from './access.js';
export { AccessPolicy, repoGlob, type AccessControlConfig, type Identity, type Policy, type PolicyAction } from './access-control.js';
export { Htpasswd, htpasswdLine, parseHtpasswd } from './htpasswd.js';
export { LoginLimiter, type RateLimitOptions } from './ratelimit.js';
export { TokenIssuer, TokenVerifier, loadKeySet, type TokenClaims } from './token.js';

/** What an authorized request may do; used for catalog filtering and cross-repo mounts. */
export interface Grant {
  user?: string;
  identity: Identity;
  can(name: string, action: string): boolean;
  /** May _catalog show this repository (the caller may pull it)? Default: can(name, 'pull'). */
  listable?(name: string): boolean;
}

export interface AuthOptions {
  htpasswd?: { realm: string; path: string };
  token?: { realm?: string; service: string; issuer: string; rootcertbundle?: string; jwks?: string; signingkey?: string; expiration?: number };
  access?: AccessRule[];
  /** Zot-style accessControl; replaces `access`. */
  accessControl?: AccessControlConfig;
  anonymousRead?: boolean;
  rateLimit?: RateLimitOptions;
}

export interface AuthController {
  readonly kind: 'none' | 'htpasswd' | 'token';
  /** Throws 401 (with challenge) or 403. `baseUrl` builds the built-in token realm. */
  authorize(req: IncomingMessage, access: Access[], baseUrl: string): Promise<Grant>;
  /** Who sent this request: {} when it carries no credentials; throws 401 for wrong ones. */
  identify(req: IncomingMessage, baseUrl: string): Promise<Identity>;
  /** The policy in force now (undefined: no auth, everyone may do everything). */
  policy(): Policy | undefined;
  /** Re-reads the htpasswd file and swaps in the new policy; on any error keeps the old ones and throws. */
  reload(opts: AuthOptions): Promise<void>;
  /** The built-in token endpoint (GET /token); undefined when tokens come from elsewhere. */
  tokenEndpoint?(req: IncomingMessage, query: URLSearchParams, form?: boolean): Promise<{ status: number; body: unknown; headers?: Record<string, string> }>;
}

/** The policy an auth config describes: accessControl, else the auth.access rules (possibly none). */
export function policyFromOptions(opts: Pick<AuthOptions, 'access' | 'accessControl' | 'anonymousRead'>): Policy {
  if (opts.accessControl) return AccessPolicy.parse(opts.accessControl, 'accessControl', { anonymousRead: opts.anonymousRead });
  return new AccessRules(opts.access, opts.anonymousRead ?? false);
}

const OPEN: Grant = { identity: {}, can: () => true };

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

function needs(access: Access[], can: (name: string, action: string) => boolean, identity: Identity, policy: Policy): boolean {
  return access.every((a) => {
    if (a.type === 'registry') return identity.user !== undefined || policy.anonymousCatalog;
    return a.actions.every((act) => can(a.name, act));
  });
}

/** An identity's grant under a policy. */
function grantOf(policy: Policy, identity: Identity): Grant {
  return { user: identity.user, identity, can: (n, a) => policy.can(identity, a, n) };
}

class NoAuth implements AuthController {
  readonly kind = 'none' as const;
  async authorize(): Promise<Grant> { return OPEN; }
  async identify(): Promise<Identity> { return {}; }
  policy(): Policy | undefined { return undefined; }
  async reload(): Promise<void> {}
}

class HtpasswdAuth implements AuthController {
  readonly kind = 'htpasswd' as const;
  constructor(private htpasswd: Htpasswd, private readonly realm: string, private rules: Policy, private readonly limiter: LoginLimiter) {}

  private challenge(access: Access[]): RegistryError {
    // Wrong credentials get the same answer as none, as in distribution: nothing tells a prober which part was wrong.
    return new RegistryError('UNAUTHORIZED', 'authentication required', challengeDetail(access)).withHeaders({ 'WWW-Authenticate': `Basic realm="${this.realm}"` });
  }

  policy(): Policy { return this.rules; }

  async identify(req: IncomingMessage): Promise<Identity> {
    const creds = basicCredentials(req);
    if (!creds) return {};
    const user = await verifyLimited(this.htpasswd, this.limiter, req, creds.user, creds.password);
    if (!user) throw this.challenge([]);
    return { user };
  }

  async authorize(req: IncomingMessage, access: Access[]): Promise<Grant> {
    const creds = basicCredentials(req);
    const policy = this.rules;
    let identity: Identity = {};
    if (creds) {
      const user = await verifyLimited(this.htpasswd, this.limiter, req, creds.user, creds.password);
      if (!user) throw this.challenge(access);
      identity = { user };
    } else if (access.length === 0 || !needs(access, (n, a) => policy.can(identity, a, n), identity, policy)) {
      // The /v2/ ping always challenges, so `login` has something to answer.
      throw this.challenge(access);
    }
    const grant = grantOf(policy, identity);
    if (!needs(access, grant.can, identity, policy)) throw new RegistryError('DENIED', undefined, access);
    return grant;
  }

  async reload(opts: AuthOptions): Promise<void> {
    const policy = policyFromOptions(opts);
    let htpasswd = this.htpasswd;
    if (opts.htpasswd) {
      htpasswd = new Htpasswd(opts.htpasswd.path);
      await htpasswd.load();
    }
    this.rules = policy;
    this.htpasswd = htpasswd;
  }

  async tokenEndpoint(): Promise<{ status: number; body: unknown }> {
    return { status: 404, body: { errors: [{ code: 'UNSUPPORTED', message: 'token auth is not enabled' }] } };
  }
}

/** Groups a token may carry (an external issuer's `groups` claim), checked against accessControl group policies. */
function claimedGroups(claims: TokenClaims): string[] | undefined {
  const g = (claims as { groups?: unknown }).groups;
  return Array.isArray(g) ? g.filter((x): x is string => typeof x === 'string') : undefined;
}

class TokenAuth implements AuthController {
  readonly kind = 'token' as const;
  constructor(
    private readonly verifier: TokenVerifier,
    private readonly realm: string | undefined,
    private readonly service: string,
    /** Built-in issuer: always a policy; external issuer: only with accessControl/auth.access, else the token's grants alone decide. */
    private rules: Policy | undefined,
    private readonly issuer?: TokenIssuer,
    private htpasswd?: Htpasswd,
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

  policy(): Policy | undefined { return this.rules; }

  private async claims(req: IncomingMessage, access: Access[], baseUrl: string): Promise<{ claims: TokenClaims; identity: Identity }> {
    const h = req.headers.authorization;
    if (!h || !/^bearer /i.test(h)) throw this.challenge(access, baseUrl);
    const claims = await this.verifier.verify(h.slice(7).trim());
    if (!claims) throw this.challenge(access, baseUrl, 'invalid_token');
    const user = typeof claims.sub === 'string' && claims.sub ? claims.sub : undefined;
    // A user removed from the htpasswd file loses what their unexpired tokens granted.
    if (user !== undefined && this.htpasswd && !this.htpasswd.has(user)) throw this.challenge(access, baseUrl, 'invalid_token');
    const groups = claimedGroups(claims);
    return { claims, identity: groups ? { user, groups } : { user } };
  }

  async identify(req: IncomingMessage, baseUrl: string): Promise<Identity> {
    if (!req.headers.authorization) return {};
    return (await this.claims(req, [], baseUrl)).identity;
  }

  async authorize(req: IncomingMessage, access: Access[], baseUrl: string): Promise<Grant> {
    const { claims, identity } = await this.claims(req, access, baseUrl);
    const granted = Array.isArray(claims.access) ? claims.access : [];
    const policy = this.rules;
    // What the token grants, narrowed by the policy in force now (it may have been reloaded since the token was issued).
    const can = (name: string, action: string) => granted.some((g) => g.type === 'repository' && g.name === name
      && Array.isArray(g.actions) && (g.actions.includes(action) || g.actions.includes('*')))
      && (policy === undefined || policy.can(identity, action, name));
    const ok = access.every((a) => a.type === 'registry'
      ? granted.some((g) => g.type === 'registry' && g.name === a.name)
      : a.actions.every((act) => can(a.name, act)));
    if (!ok) throw this.challenge(access, baseUrl, 'insufficient_scope');
    // _catalog: what the policy lets this identity pull (a token names no repositories for it); without a policy, what the token grants.
    const listable = (name: string) => (policy ? policy.can(identity, 'pull', name) : can(name, 'pull'));
    return { user: identity.user, identity, can, listable };
  }

  async reload(opts: AuthOptions): Promise<void> {
    const external = this.issuer === undefined;
    const policy = external && !opts.accessControl && !opts.access?.length ? undefined : policyFromOptions(opts);
    let htpasswd = this.htpasswd;
    if (this.htpasswd && opts.htpasswd) {
      htpasswd = new Htpasswd(opts.htpasswd.path);
      await htpasswd.load();
    }
    this.rules = policy;
    this.htpasswd = htpasswd;
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
    // Only the scopes the policy grants go into the token; docker then gets 401 insufficient_scope for the rest.
    const granted = this.rules.grant(user === undefined ? {} : { user }, requested);
    const t = await this.issuer.issue(user ?? '', granted);
    return { status: 200, body: { token: t.token, access_token: t.token, expires_in: t.expiresIn, issued_at: t.issuedAt } };
  }
}

export async function createAuth(opts: AuthOptions): Promise<AuthController> {
  const rules = policyFromOptions(opts);
  const limiter = new LoginLimiter(opts.rateLimit);
  if (opts.token) {
    const t = opts.token;
    if (t.rootcertbundle || t.jwks) {
      const keys = [
        ...(t.rootcertbundle ? await loadKeySet(t.rootcertbundle) : []),
        ...(t.jwks ? await loadKeySet(t.jwks) : []),
      ];
      if (!t.realm) throw new Error('auth.token.realm is required with an external token issuer');
      const external = opts.accessControl || opts.access?.length ? rules : undefined;
      return new TokenAuth(new TokenVerifier(keys, t.issuer, t.service), t.realm, t.service, external);
    }
    if (!opts.htpasswd) throw new Error('the built-in token issuer needs auth.htpasswd for its users (or set auth.token.rootcertbundle for an external issuer)');
    const htpasswd = new Htpasswd(opts.htpasswd.path);
    await htpasswd.load();
    const issuer = await TokenIssuer.create({ signingKeyFile: t.signingkey, issuer: t.issuer, service: t.service, ttlSeconds: t.expiration });
    return new TokenAuth(issuer.verifier(), t.realm, t.service, rules, issuer, htpasswd, limiter);
  }
  if (opts.htpasswd) {
    const htpasswd = new Htpasswd(opts.htpasswd.path);
    await htpasswd.load();
    return new HtpasswdAuth(htpasswd, opts.htpasswd.realm, rules, limiter);
  }
  return new NoAuth();
}

export type { TokenClaims as Claims };
