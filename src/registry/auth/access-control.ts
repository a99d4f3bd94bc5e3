// Per-repository access control in Zot's shape (config.yml `accessControl`): repository globs
// mapped to policies, with a default policy for any authenticated user, an anonymous policy, an
// admin policy over every repository, and named groups. The server, the token endpoint, _catalog
// and the web UI all ask the same two questions of it: can(identity, action, repo) and
// filterRepos(identity, repos).
//
//   accessControl:
//     groups:
//       devs: { users: [alice, bob] }
//     repositories:
//       "**":          { defaultPolicy: [pull], anonymousPolicy: [] }
//       "team/**":     { policies: [{ groups: [devs], actions: [pull, push] }] }
//     adminPolicy: { users: [root], actions: [pull, push, delete] }
//
// As in Zot: `*` matches within one path segment, `**` across segments, and when several globs
// match a repository only the longest (most specific) one applies. Zot's action names are accepted
// too: read = pull, create and update = push.
import { UserError } from '../../util/errors.js';
import type { Access } from './access.js';

export type PolicyAction = 'pull' | 'push' | 'delete';
export const POLICY_ACTIONS: readonly PolicyAction[] = ['pull', 'push', 'delete'];

/** Who is asking: no user = anonymous. Groups come from token claims; config groups are added. */
export interface Identity {
  user?: string;
  groups?: readonly string[];
}

export interface RepositoryPolicyConfig {
  policies?: { users?: string[]; groups?: string[]; actions: string[] }[];
  defaultPolicy?: string[];
  anonymousPolicy?: string[];
}

export interface AccessControlConfig {
  groups?: Record<string, { users?: string[] }>;
  repositories?: Record<string, RepositoryPolicyConfig>;
  adminPolicy?: { users?: string[]; groups?: string[]; actions?: string[] };
}

/** What every policy source (accessControl, the older auth.access rules) answers. */
export interface Policy {
  can(identity: Identity | undefined, action: string, repo: string): boolean;
  filterRepos(identity: Identity | undefined, repos: readonly string[]): string[];
  /** The subset of `requested` the identity holds (the token endpoint issues only this). */
  grant(identity: Identity | undefined, requested: Access[]): Access[];
  /** May a request without credentials list _catalog (filtered)? accessControl: when anonymous may pull something, as in Zot. */
  readonly anonymousCatalog: boolean;
}

const ALL = 7;

function bitFor(action: string): number {
  switch (action) {
    case 'pull': case 'read': return 1;
    case 'push': case 'create': case 'update': return 2;
    case 'delete': return 4;
    case '*': return ALL;
    default: return 0;
  }
}

/** Zot's glob (doublestar): `**` any run of characters, `*` and `?` within one segment. */
export function repoGlob(glob: string): RegExp {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*' && glob[i + 1] === '*') {
      i++;
      // "a/**/b" also matches "a/b".
      if (glob[i + 1] === '/' && (i === 1 || glob[i - 2] === '/')) { re += '(?:.*/)?'; i++; } else re += '.*';
    } else if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

interface Entry {
  pattern: string;
  re: RegExp;
  users: Map<string, number>;
  groups: Map<string, number>;
  authenticated: number;
  anonymous: number;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function stringList(v: unknown, where: string): string[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v) || v.some((s) => typeof s !== 'string')) throw new UserError(`${where} must be a list of names`);
  return v as string[];
}

function actionMask(v: unknown, where: string): number {
  let mask = 0;
  for (const a of stringList(v, where)) {
    const bit = bitFor(a);
    if (!bit) throw new UserError(`${where}: unknown action "${a}" (pull, push, delete; Zot's read, create, update)`);
    mask |= bit;
  }
  return mask;
}

function addMask(map: Map<string, number>, names: string[], mask: number): void {
  for (const n of names) map.set(n, (map.get(n) ?? 0) | mask);
}

const CACHE_MAX = 10_000;

export class AccessPolicy implements Policy {
  private readonly entries: Entry[];
  private readonly adminUsers = new Map<string, number>();
  private readonly adminGroups = new Map<string, number>();
  private readonly groupsOfUser = new Map<string, string[]>();
  /** repo → the entry of its longest matching glob (null: none), so the hot path is one Map lookup. */
  private readonly matchCache = new Map<string, Entry | null>();
  /** user ('' = anonymous) → repo → action mask; cleared whole at CACHE_MAX entries. A reload builds a new policy, so no invalidation. */
  private readonly maskCache = new Map<string, Map<string, number>>();
  private maskCacheSize = 0;
  readonly anonymousCatalog: boolean;

  /** auth.anonymousread: pull for everyone on every repository, whatever the globs say. */
  private constructor(entries: Entry[], private readonly anonymousAll: number) {
    // Longest pattern first: the first match is the most specific, as in Zot.
    this.entries = entries.sort((a, b) => b.pattern.length - a.pattern.length);
    this.anonymousCatalog = anonymousAll !== 0 || entries.some((e) => (e.anonymous & 1) !== 0);
  }

  /** Validates and compiles an `accessControl` section; throws a UserError naming the bad key. */
  static parse(doc: unknown, where = 'accessControl', opts: { anonymousRead?: boolean } = {}): AccessPolicy {
    if (!isObject(doc)) throw new UserError(`${where} must be a mapping (repositories, groups, adminPolicy)`);
    const unknown = Object.keys(doc).filter((k) => !['repositories', 'groups', 'adminPolicy'].includes(k));
    if (unknown.length > 0) throw new UserError(`${where}.${unknown[0]}: unknown key (repositories, groups, adminPolicy)`);
    const repos = doc.repositories ?? {};
    if (!isObject(repos)) throw new UserError(`${where}.repositories must be a mapping of repository globs to policies`);
    const entries: Entry[] = [];
    for (const [pattern, raw] of Object.entries(repos)) {
      const at = `${where}.repositories["${pattern}"]`;
      if (!pattern) throw new UserError(`${where}.repositories: empty repository glob`);
      if (!isObject(raw)) throw new UserError(`${at} must be a mapping (policies, defaultPolicy, anonymousPolicy)`);
      const bad = Object.keys(raw).filter((k) => !['policies', 'defaultPolicy', 'anonymousPolicy'].includes(k));
      if (bad.length > 0) throw new UserError(`${at}.${bad[0]}: unknown key (policies, defaultPolicy, anonymousPolicy)`);
      const e: Entry = { pattern, re: repoGlob(pattern), users: new Map(), groups: new Map(), authenticated: 0, anonymous: 0 };
      const policies = raw.policies ?? [];
      if (!Array.isArray(policies)) throw new UserError(`${at}.policies must be a list of {users, groups, actions}`);
      policies.forEach((p: unknown, i) => {
        const pat = `${at}.policies[${i}]`;
        if (!isObject(p)) throw new UserError(`${pat} must be a mapping {users, groups, actions}`);
        const extra = Object.keys(p).filter((k) => !['users', 'groups', 'actions'].includes(k));
        if (extra.length > 0) throw new UserError(`${pat}.${extra[0]}: unknown key (users, groups, actions)`);
        if (p.actions === undefined) throw new UserError(`${pat}: needs actions`);
        const mask = actionMask(p.actions, `${pat}.actions`);
        const users = stringList(p.users, `${pat}.users`);
        const groups = stringList(p.groups, `${pat}.groups`);
        if (users.length === 0 && groups.length === 0) throw new UserError(`${pat}: needs users or groups`);
        addMask(e.users, users, mask);
        addMask(e.groups, groups, mask);
      });
      e.authenticated = actionMask(raw.defaultPolicy, `${at}.defaultPolicy`);
      e.anonymous = actionMask(raw.anonymousPolicy, `${at}.anonymousPolicy`);
      entries.push(e);
    }
    const policy = new AccessPolicy(entries, opts.anonymousRead ? 1 : 0);
    const groups = doc.groups ?? {};
    if (!isObject(groups)) throw new UserError(`${where}.groups must be a mapping of group names to {users}`);
    for (const [g, def] of Object.entries(groups)) {
      if (!isObject(def)) throw new UserError(`${where}.groups.${g} must be a mapping {users: [...]}`);
      for (const u of stringList(def.users, `${where}.groups.${g}.users`)) {
        const list = policy.groupsOfUser.get(u) ?? [];
        list.push(g);
        policy.groupsOfUser.set(u, list);
      }
    }
    if (doc.adminPolicy !== undefined && doc.adminPolicy !== null) {
      const a = doc.adminPolicy;
      if (!isObject(a)) throw new UserError(`${where}.adminPolicy must be a mapping {users, groups, actions}`);
      const mask = a.actions === undefined ? ALL : actionMask(a.actions, `${where}.adminPolicy.actions`);
      addMask(policy.adminUsers, stringList(a.users, `${where}.adminPolicy.users`), mask);
      addMask(policy.adminGroups, stringList(a.groups, `${where}.adminPolicy.groups`), mask);
    }
    return policy;
  }

  private entryFor(repo: string): Entry | null {
    let e = this.matchCache.get(repo);
    if (e !== undefined) return e;
    e = this.entries.find((x) => x.re.test(repo)) ?? null;
    if (this.matchCache.size >= CACHE_MAX) this.matchCache.clear();
    this.matchCache.set(repo, e);
    return e;
  }

  /** Groups from the config plus those the identity brings (token claims). */
  groupsOf(identity: Identity | undefined): string[] {
    const fromConfig = identity?.user !== undefined ? this.groupsOfUser.get(identity.user) ?? [] : [];
    const claimed = identity?.groups ?? [];
    return claimed.length === 0 ? fromConfig : [...fromConfig, ...claimed];
  }

  /** The actions (bit mask) this identity holds on repo. */
  private mask(identity: Identity | undefined, repo: string): number {
    const e = this.entryFor(repo);
    const user = identity?.user;
    let m = this.anonymousAll | (e ? e.anonymous : 0);
    if (user === undefined) return m;
    m |= this.adminUsers.get(user) ?? 0;
    if (e) m |= e.authenticated | (e.users.get(user) ?? 0);
    if (m === ALL) return m;
    for (const g of this.groupsOf(identity)) {
      m |= this.adminGroups.get(g) ?? 0;
      if (e) m |= e.groups.get(g) ?? 0;
    }
    return m;
  }

  /**
   * mask() with a per-(user, repo) memo for identities whose groups all come from the config
   * (htpasswd users): the manifest GET hot path then costs two Map lookups.
   */
  private cachedMask(identity: Identity | undefined, repo: string): number {
    if (identity?.groups !== undefined && identity.groups.length > 0) return this.mask(identity, repo);
    const user = identity?.user ?? '';
    const hit = this.maskCache.get(user)?.get(repo);
    if (hit !== undefined) return hit;
    const m = this.mask(identity, repo);
    if (this.maskCacheSize >= CACHE_MAX) { this.maskCache.clear(); this.maskCacheSize = 0; }
    let perUser = this.maskCache.get(user);
    if (!perUser) this.maskCache.set(user, (perUser = new Map()));
    perUser.set(repo, m);
    this.maskCacheSize++;
    return m;
  }

  can(identity: Identity | undefined, action: string, repo: string): boolean {
    const bit = bitFor(action);
    return bit !== 0 && (this.cachedMask(identity, repo) & bit) === bit;
  }

  filterRepos(identity: Identity | undefined, repos: readonly string[]): string[] {
    // Not memoized: a catalog walk would fill the cache with repositories once each.
    return repos.filter((r) => (this.mask(identity, r) & 1) !== 0);
  }

  grant(identity: Identity | undefined, requested: Access[]): Access[] {
    return grantFrom(this, identity, requested);
  }
}

/** Shared by every Policy: repository scopes narrowed to what `can` allows; the catalog to anyone who may pull something. */
export function grantFrom(policy: Policy, identity: Identity | undefined, requested: Access[]): Access[] {
  const out: Access[] = [];
  for (const a of requested) {
    if (a.type === 'registry') {
      if (a.name === 'catalog' && (identity?.user !== undefined || policy.anonymousCatalog)) out.push({ type: 'registry', name: 'catalog', actions: ['*'] });
      continue;
    }
    const want = a.actions.includes('*') ? [...POLICY_ACTIONS] : a.actions;
    const actions = want.filter((act) => policy.can(identity, act, a.name));
    if (actions.length > 0) out.push({ type: 'repository', name: a.name, actions });
  }
  return out;
}
