// The web UI's page script (runs in the browser; compiled by tsc and served as /ui/app.js).
// Views: repositories, a repository's tags, a manifest (index platforms, layers, config, history,
// labels, referrers). Everything is drawn with DOM calls and textContent, never innerHTML, so a
// label or tag name cannot inject markup; the CSP forbids inline script anyway.
//
// Credentials: the login form keeps base64("user:password") in sessionStorage (gone when the tab
// closes) and sends it as `Authorization: Basic`. Requests use `credentials: 'omit'` so a 401 never
// opens the browser's own password prompt. When the registry answers with a Bearer challenge
// (token mode), the page fetches a token from the challenge's realm with those credentials and
// retries, as docker does.
export {};

const CREDS_KEY = 'drydock.credentials';

interface Session { user: string | null; auth: 'none' | 'htpasswd' | 'token' }
interface Descriptor { mediaType?: string; digest: string; size: number; artifactType?: string; platform?: { os?: string; architecture?: string; variant?: string }; annotations?: Record<string, string> }
interface ImageConfig {
  architecture?: string; os?: string; variant?: string; created?: string; author?: string;
  config?: { Env?: string[]; Entrypoint?: string[] | null; Cmd?: string[] | null; WorkingDir?: string; User?: string; ExposedPorts?: Record<string, unknown>; Labels?: Record<string, string> | null };
  history?: { created?: string; created_by?: string; empty_layer?: boolean; comment?: string }[];
}
interface ManifestView {
  name: string; reference: string; digest: string; mediaType: string; size: number; canDelete: boolean;
  manifest: { mediaType?: string; artifactType?: string; config?: Descriptor; layers?: Descriptor[]; manifests?: Descriptor[]; subject?: Descriptor; annotations?: Record<string, string> } | null;
  config: ImageConfig | null;
}

class HttpError extends Error {
  constructor(readonly status: number, message: string) { super(message); }
}

// ---- talking to the registry ----

const tokens = new Map<string, string>(); // scope → bearer token
const scopeOf = new Map<string, string>(); // request path → the scope its challenge named

function credentials(): string | null {
  return sessionStorage.getItem(CREDS_KEY);
}

function base64(text: string): string {
  let bin = '';
  for (const b of new TextEncoder().encode(text)) bin += String.fromCharCode(b);
  return btoa(bin);
}

function parseChallenge(h: string): Record<string, string> | undefined {
  if (!/^bearer /i.test(h)) return undefined;
  const out: Record<string, string> = {};
  for (const m of h.slice(7).matchAll(/(\w+)="([^"]*)"/g)) out[m[1]!] = m[2]!;
  return out;
}

async function fetchToken(ch: Record<string, string>): Promise<string> {
  const u = new URL(ch.realm!, location.href);
  if (ch.service) u.searchParams.set('service', ch.service);
  // Ask for delete too: the issuer grants only what the policy allows, and the page learns from
  // the answer whether to offer the delete button.
  if (ch.scope) for (const s of ch.scope.split(' ')) u.searchParams.append('scope', s.replace(/^(repository:.+):pull$/, '$1:pull,delete'));
  const c = credentials();
  const r = await fetch(u, { credentials: 'omit', headers: c ? { Authorization: `Basic ${c}` } : {} });
  if (!r.ok) throw new HttpError(r.status, r.status === 401 ? 'invalid username or password' : await errorMessage(r));
  const body = await r.json() as { token?: string; access_token?: string };
  return body.token ?? body.access_token ?? '';
}

async function errorMessage(r: Response): Promise<string> {
  try {
    const j = await r.json() as { errors?: { message?: string }[] };
    return j.errors?.[0]?.message ?? `HTTP ${r.status}`;
  } catch {
    return `HTTP ${r.status}`;
  }
}

async function request(path: string, init: RequestInit = {}): Promise<Response> {
  const send = (auth?: string) => fetch(path, { ...init, credentials: 'omit', headers: auth ? { ...init.headers as Record<string, string>, Authorization: auth } : init.headers });
  const scope = scopeOf.get(path);
  const cached = scope !== undefined ? tokens.get(scope) : undefined;
  const c = credentials();
  let r = await send(cached ? `Bearer ${cached}` : c ? `Basic ${c}` : undefined);
  const ch = r.status === 401 ? parseChallenge(r.headers.get('WWW-Authenticate') ?? '') : undefined;
  if (ch?.realm) {
    const key = ch.scope ?? '';
    const token = await fetchToken(ch);
    tokens.set(key, token);
    scopeOf.set(path, key);
    r = await send(`Bearer ${token}`);
  }
  return r;
}

async function getJson<T>(path: string): Promise<T> {
  const r = await request(path);
  if (!r.ok) throw new HttpError(r.status, await errorMessage(r));
  return await r.json() as T;
}

const enc = encodeURIComponent;
const repoPath = (name: string) => name.split('/').map(enc).join('/');

// ---- DOM helpers ----

type Child = Node | string | number | null | undefined | false;

function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Record<string, string> = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  for (const c of children) if (c !== null && c !== undefined && c !== false) el.append(typeof c === 'number' ? String(c) : c);
  return el;
}

function link(href: string, text: string, attrs: Record<string, string> = {}): HTMLAnchorElement {
  return h('a', { href, ...attrs }, text);
}

function table(head: (string | [string, string])[], rows: Child[][], attrs: Record<string, string> = {}): HTMLTableElement {
  const th = head.map((c) => (Array.isArray(c) ? h('th', { class: c[1] }, c[0]) : h('th', {}, c)));
  return h('table', attrs, h('thead', {}, h('tr', {}, ...th)), h('tbody', {}, ...rows.map((r) => h('tr', {}, ...r.map((c, i) => {
    const col = head[i];
    return h('td', Array.isArray(col) ? { class: col[1] } : {}, c);
  })))));
}

function kv(rows: [string, Child][]): HTMLTableElement {
  return h('table', { class: 'kv' }, h('tbody', {}, ...rows.filter(([, v]) => v !== null && v !== undefined && v !== '').map(([k, v]) => h('tr', {}, h('td', {}, k), h('td', {}, v)))));
}

function formatSize(n: number | null | undefined): string {
  if (n === null || n === undefined) return '';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) { v /= 1024; u++; }
  return u === 0 ? `${n} B` : `${v.toFixed(v < 10 ? 2 : 1)} ${units[u]}`;
}

const shortDigest = (d: string | null | undefined) => (d ? d.replace(/^(sha256:|sha512:)?([0-9a-f]{12})[0-9a-f]*$/, '$1$2') : '');

function kindOf(mediaType: string | null | undefined, artifactType?: string): string {
  if (artifactType) return artifactType;
  if (!mediaType) return '';
  if (/index|manifest\.list/.test(mediaType)) return 'index';
  if (/manifest/.test(mediaType)) return 'image';
  return mediaType;
}

function platformOf(p: Descriptor['platform']): string {
  if (!p) return '';
  return [p.os, p.architecture, p.variant].filter(Boolean).join('/');
}

const main = () => document.getElementById('main')!;
const search = () => document.getElementById('search') as HTMLInputElement;

function show(...nodes: Child[]): void {
  main().replaceChildren(...nodes.filter((n): n is Node | string => n !== null && n !== undefined && n !== false).map((n) => (typeof n === 'number' ? String(n) : n)));
}

/** A view's rows re-rendered on every keystroke in the search box. */
let onSearch: (() => void) | undefined;

function pullLine(cmd: string): HTMLElement {
  const code = h('code', {}, cmd);
  const button = h('button', { type: 'button', title: 'Copy to clipboard' }, 'Copy');
  button.addEventListener('click', () => {
    void navigator.clipboard?.writeText(cmd).then(() => { button.textContent = 'Copied'; }, () => {
      getSelection()?.selectAllChildren(code);
    });
  });
  return h('div', { class: 'pull' }, code, button);
}

// ---- session ----

let session: Session = { user: null, auth: 'none' };

function renderWho(): void {
  const who = document.getElementById('who')!;
  if (session.auth === 'none') { who.replaceChildren(); return; }
  if (!session.user) { who.replaceChildren(link('#/login', 'Sign in')); return; }
  const out = h('button', { type: 'button', id: 'logout' }, 'Sign out');
  out.addEventListener('click', () => {
    sessionStorage.removeItem(CREDS_KEY);
    tokens.clear();
    scopeOf.clear();
    session = { ...session, user: null };
    renderWho();
    location.hash = '#/login';
  });
  who.replaceChildren(h('span', { id: 'user' }, session.user), out);
}

async function loadSession(): Promise<void> {
  try {
    session = await getJson<Session>('/ui/api/session');
  } catch (e) {
    // Stored credentials that stopped working (password changed): sign out.
    if (e instanceof HttpError && e.status === 401 && credentials()) {
      sessionStorage.removeItem(CREDS_KEY);
      session = await getJson<Session>('/ui/api/session');
    } else throw e;
  }
  renderWho();
}

function loginView(message?: string): void {
  const user = h('input', { name: 'username', autocomplete: 'username', placeholder: 'Username', required: '' });
  const pass = h('input', { name: 'password', type: 'password', autocomplete: 'current-password', placeholder: 'Password', required: '' });
  const error = h('p', { class: 'error', id: 'login-error' }, message ?? '');
  const form = h('form', { class: 'login', id: 'login' }, h('h1', {}, 'Sign in'),
    h('p', { class: 'muted' }, 'Use your registry credentials (the same as for docker login).'),
    user, pass, h('button', { type: 'submit' }, 'Sign in'), error);
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    void (async () => {
      sessionStorage.setItem(CREDS_KEY, base64(`${user.value}:${pass.value}`));
      tokens.clear();
      scopeOf.clear();
      try {
        const s = await getJson<Session>('/ui/api/session');
        if (!s.user) throw new HttpError(401, 'invalid username or password');
        session = s;
        renderWho();
        location.hash = '#/';
      } catch (e) {
        sessionStorage.removeItem(CREDS_KEY);
        error.textContent = e instanceof HttpError && e.status === 401 ? 'Invalid username or password.' : `Sign-in failed: ${(e as Error).message}`;
      }
    })();
  });
  onSearch = undefined;
  show(form);
  user.focus();
}

// ---- views ----

async function reposView(): Promise<void> {
  const { repositories } = await getJson<{ repositories: { name: string; tags: number }[] }>('/ui/api/repositories');
  const body = h('div', { id: 'repos' });
  const draw = () => {
    const q = search().value.trim().toLowerCase();
    const rows = repositories.filter((r) => r.name.toLowerCase().includes(q));
    body.replaceChildren(rows.length === 0
      ? h('p', { class: 'muted' }, repositories.length === 0 ? 'No repositories yet.' : 'No repository matches.')
      : table(['Repository', ['Tags', 'num']], rows.map((r) => [link(`#/r/${enc(r.name)}`, r.name), r.tags])));
  };
  onSearch = draw;
  draw();
  show(h('h1', {}, 'Repositories'), body);
}

async function tagsView(name: string): Promise<void> {
  const data = await getJson<{ tags: { name: string; digest: string | null; mediaType: string | null; size: number | null }[]; canDelete: boolean }>(`/ui/api/repositories/${repoPath(name)}/tags`);
  const body = h('div', { id: 'tags' });
  const draw = () => {
    const q = search().value.trim().toLowerCase();
    const rows = data.tags.filter((t) => t.name.toLowerCase().includes(q));
    body.replaceChildren(rows.length === 0
      ? h('p', { class: 'muted' }, data.tags.length === 0 ? 'No tags.' : 'No tag matches.')
      : table(['Tag', 'Type', 'Digest', ['Size', 'num'], ...(data.canDelete ? [''] : [])], rows.map((t) => [
        link(`#/r/${enc(name)}/m/${enc(t.name)}`, t.name),
        h('span', { class: 'badge' }, kindOf(t.mediaType)),
        h('code', { title: t.digest ?? '' }, shortDigest(t.digest)),
        formatSize(t.size),
        ...(data.canDelete ? [deleteButton(name, t.name)] : []),
      ])));
  };
  onSearch = draw;
  draw();
  show(h('div', { class: 'crumbs' }, link('#/', 'Repositories'), ' / '), h('h1', {}, name), body);
}

function deleteButton(name: string, tag: string): HTMLButtonElement {
  const b = h('button', { type: 'button', class: 'danger', 'data-delete': tag }, 'Delete');
  b.addEventListener('click', () => {
    if (!confirm(`Delete tag ${name}:${tag}?`)) return;
    void (async () => {
      const r = await request(`/v2/${repoPath(name)}/manifests/${enc(tag)}`, { method: 'DELETE' });
      if (r.status !== 202) { alert(`Delete failed: ${await errorMessage(r)}`); return; }
      if (location.hash === `#/r/${enc(name)}`) void route();
      else location.hash = `#/r/${enc(name)}`;
    })();
  });
  return b;
}

function commandText(argv: string[] | null | undefined): HTMLElement | null {
  return argv && argv.length > 0 ? h('code', {}, JSON.stringify(argv)) : null;
}

async function manifestView(name: string, ref: string): Promise<void> {
  const v = await getJson<ManifestView>(`/ui/api/repositories/${repoPath(name)}/manifests/${enc(ref)}`);
  const m = v.manifest;
  const c = v.config;
  const isTag = !ref.includes(':');
  const host = location.host;
  const at = isTag ? `${name}:${ref}` : `${name}@${v.digest}`;
  const sections: Child[] = [
    h('div', { class: 'crumbs' }, link('#/', 'Repositories'), ' / ', link(`#/r/${enc(name)}`, name), ' /'),
    h('h1', {}, at),
    kv([
      ['Digest', h('code', { id: 'digest' }, v.digest)],
      ['Media type', h('code', {}, v.mediaType)],
      ['Artifact type', m?.artifactType ? h('code', {}, m.artifactType) : null],
      ['Platform', c ? [c.os, c.architecture, c.variant].filter(Boolean).join('/') : null],
      ['Created', c?.created ?? null],
      ['Manifest size', formatSize(v.size)],
      ['Subject', m?.subject ? link(`#/r/${enc(name)}/m/${enc(m.subject.digest)}`, shortDigest(m.subject.digest)) : null],
    ]),
    h('h2', {}, 'Pull'),
    h('div', { id: 'pull' }, pullLine(`drydock pull ${host}/${at}`), pullLine(`docker pull ${host}/${at}`),
      isTag ? pullLine(`docker pull ${host}/${name}@${v.digest}`) : null),
  ];
  if (m?.manifests) {
    sections.push(h('h2', {}, 'Platforms'), table(['Platform', 'Digest', 'Type', ['Size', 'num']], m.manifests.map((d) => [
      platformOf(d.platform) || d.annotations?.['vnd.docker.reference.type'] || '',
      link(`#/r/${enc(name)}/m/${enc(d.digest)}`, shortDigest(d.digest), { class: 'mono' }),
      h('span', { class: 'badge' }, kindOf(d.mediaType, d.artifactType)),
      formatSize(d.size),
    ]), { id: 'platforms' }));
  }
  if (m?.layers) {
    const total = m.layers.reduce((n, l) => n + (l.size ?? 0), 0);
    sections.push(h('h2', {}, `Layers (${m.layers.length}, ${formatSize(total)})`), table([['#', 'num'], 'Digest', 'Media type', ['Size', 'num']], m.layers.map((l, i) => [
      i + 1, h('code', { title: l.digest }, shortDigest(l.digest)), h('code', {}, l.mediaType ?? ''), formatSize(l.size),
    ]), { id: 'layers' }));
  }
  if (c?.config) {
    const cc = c.config;
    sections.push(h('h2', {}, 'Config'), kv([
      ['Entrypoint', commandText(cc.Entrypoint)],
      ['Cmd', commandText(cc.Cmd)],
      ['Working dir', cc.WorkingDir ? h('code', {}, cc.WorkingDir) : null],
      ['User', cc.User ? h('code', {}, cc.User) : null],
      ['Exposed ports', cc.ExposedPorts ? Object.keys(cc.ExposedPorts).join(', ') : null],
      ['Env', cc.Env?.length ? h('div', {}, ...cc.Env.map((e) => h('div', {}, h('code', {}, e)))) : null],
    ]));
  }
  const labels = Object.entries(c?.config?.Labels ?? {});
  if (labels.length > 0) {
    sections.push(h('h2', {}, 'Labels'), table(['Label', 'Value'], labels.map(([k, val]) => [h('code', {}, k), val]), { id: 'labels' }));
  }
  const annotations = Object.entries(m?.annotations ?? {});
  if (annotations.length > 0) {
    sections.push(h('h2', {}, 'Annotations'), table(['Annotation', 'Value'], annotations.map(([k, val]) => [h('code', {}, k), val])));
  }
  if (c?.history?.length) {
    sections.push(h('h2', {}, 'History'), table(['Created', 'Created by', ''], c.history.map((e) => [
      e.created ?? '', h('code', {}, e.created_by ?? e.comment ?? ''), e.empty_layer ? h('span', { class: 'badge' }, 'empty') : '',
    ]), { id: 'history' }));
  }
  const referrers = h('div', { id: 'referrers' }, h('p', { class: 'muted' }, 'Loading…'));
  sections.push(h('h2', {}, 'Referrers'), referrers);
  if (v.canDelete && isTag) {
    const b = deleteButton(name, ref);
    b.textContent = 'Delete tag';
    sections.push(h('h2', {}, 'Danger zone'), b);
  }
  onSearch = undefined;
  show(...sections);
  // The distribution API's own referrers endpoint, with the page's credentials.
  try {
    const idx = await getJson<{ manifests: Descriptor[] }>(`/v2/${repoPath(name)}/referrers/${v.digest}`);
    referrers.replaceChildren(idx.manifests.length === 0 ? h('p', { class: 'muted' }, 'No signatures, SBOMs or other referrers.')
      : table(['Artifact type', 'Digest', ['Size', 'num'], 'Created'], idx.manifests.map((d) => [
        h('code', {}, d.artifactType ?? d.mediaType ?? ''),
        link(`#/r/${enc(name)}/m/${enc(d.digest)}`, shortDigest(d.digest), { class: 'mono' }),
        formatSize(d.size),
        d.annotations?.['org.opencontainers.image.created'] ?? '',
      ])));
  } catch (e) {
    referrers.replaceChildren(h('p', { class: 'error' }, `Referrers: ${(e as Error).message}`));
  }
}

// ---- routing ----

async function route(): Promise<void> {
  const hash = location.hash.replace(/^#/, '') || '/';
  const parts = hash.split('/').slice(1).map((p) => decodeURIComponent(p));
  try {
    if (parts[0] === 'login') return loginView();
    if (parts[0] === 'r' && parts[1] && parts[2] === 'm' && parts[3]) return await manifestView(parts[1], parts[3]);
    if (parts[0] === 'r' && parts[1]) return await tagsView(parts[1]);
    return await reposView();
  } catch (e) {
    onSearch = undefined;
    if (e instanceof HttpError && e.status === 401) return loginView(session.user ? 'Your credentials were refused.' : undefined);
    show(h('p', { class: 'error', id: 'error' }, e instanceof HttpError && e.status === 403 ? 'You may not see this repository.' : (e as Error).message));
  }
}

window.addEventListener('hashchange', () => { search().value = ''; void route(); });
search().addEventListener('input', () => onSearch?.());
void loadSession().then(route, (e: Error) => show(h('p', { class: 'error' }, e.message)));
