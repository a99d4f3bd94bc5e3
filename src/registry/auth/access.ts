// What a request needs ("repository:team/app:pull,push") and who may do it. Rules are a
// drydock extension to distribution's config (auth.access), the older and flatter form of
// accessControl (access-control.ts); without either, every authenticated user may do everything,
// which is what registry:2's htpasswd mode does.
import { grantFrom, type Identity, type Policy } from './access-control.js';

export type Action = 'pull' | 'push' | 'delete' | '*';

export interface Access {
  type: 'repository' | 'registry';
  name: string;
  actions: string[];
}

export interface AccessRule {
  /** User names; "*" = any authenticated user; "anonymous" = requests without credentials. */
  users: string[];
  /** Repository globs: "*" matches any run of characters including "/", so "team/*" covers team/a/b. */
  repositories: string[];
  actions: Action[];
}

function globToRegExp(glob: string): RegExp {
  const escaped = glob.replace(/[.+^${}()|[\]\\?]/g, '\\$&').replace(/\*/g, '.*');
  return new RegExp(`^${escaped}$`);
}

interface CompiledRule { users: Set<string>; repos: RegExp[]; actions: Set<string> }

export class AccessRules implements Policy {
  private readonly rules: CompiledRule[];
  constructor(rules: AccessRule[] | undefined, private readonly anonymousRead: boolean) {
    this.rules = (rules ?? []).map((r) => ({
      users: new Set(r.users),
      repos: r.repositories.map(globToRegExp),
      actions: new Set(r.actions),
    }));
    this.hasRules = this.rules.length > 0;
  }
  private readonly hasRules: boolean;
  /** As before accessControl existed: _catalog needs a user even with anonymous read. */
  readonly anonymousCatalog = false;

  can(identity: Identity | undefined, action: string, repo: string): boolean {
    return this.allowed(identity?.user, repo, action);
  }

  filterRepos(identity: Identity | undefined, repos: readonly string[]): string[] {
    return repos.filter((r) => this.allowed(identity?.user, r, 'pull'));
  }

  /** May `user` (undefined = anonymous) perform `action` on repository `name`? */
  allowed(user: string | undefined, name: string, action: string): boolean {
    if (user === undefined && this.anonymousRead && action === 'pull') return true;
    if (!this.hasRules) return user !== undefined;
    for (const r of this.rules) {
      const userMatches = user === undefined ? r.users.has('anonymous') : (r.users.has(user) || r.users.has('*'));
      if (!userMatches) continue;
      if (!r.actions.has(action) && !r.actions.has('*')) continue;
      if (r.repos.some((re) => re.test(name))) return true;
    }
    return false;
  }

  /** Grants the subset of `requested` this user holds (used by the token endpoint). */
  grant(identity: Identity | undefined, requested: Access[]): Access[] {
    return grantFrom(this, identity, requested);
  }
}

/** Parses Docker's scope syntax: "repository:name:pull,push" (space-separated list). */
export function parseScopes(scope: string | string[] | undefined): Access[] {
  const parts = (Array.isArray(scope) ? scope : scope ? [scope] : []).flatMap((s) => s.split(' ')).filter(Boolean);
  const out: Access[] = [];
  for (const p of parts) {
    const first = p.indexOf(':');
    const last = p.lastIndexOf(':');
    if (first < 0 || last === first) continue;
    const type = p.slice(0, first);
    if (type !== 'repository' && type !== 'registry') continue;
    out.push({ type, name: p.slice(first + 1, last), actions: p.slice(last + 1).split(',').filter(Boolean) });
  }
  return out;
}

export function formatScope(access: Access[]): string {
  return access.map((a) => `${a.type}:${a.name}:${a.actions.join(',')}`).join(' ');
}
