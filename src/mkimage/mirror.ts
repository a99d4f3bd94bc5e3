// Picks the Debian mirror debootstrap downloads from. The host's own apt configuration is the
// best guess: on a network that only reaches a local mirror or an apt proxy, that is the URL
// that works. Both source formats are read: one-line `deb URL suite comp…` (.list) and deb822
// stanzas (`Types:/URIs:/Suites:`, .sources).
import { promises as fsp } from 'node:fs';
import path from 'node:path';

export const FALLBACK_MIRROR = 'http://deb.debian.org/debian';

export interface AptSource {
  types: string[];
  uris: string[];
  suites: string[];
  components: string[];
  signedBy?: string;
}

/** Parses one-line style sources (sources.list, *.list). Options in [brackets] are skipped. */
export function parseOneLineSources(text: string): AptSource[] {
  const out: AptSource[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.replace(/#.*/, '').replace(/\[[^\]]*\]/, ' ').trim();
    if (!line) continue;
    const [type, uri, suite, ...components] = line.split(/\s+/);
    if (!type || !uri || !suite) continue;
    out.push({ types: [type], uris: [uri], suites: [suite], components });
  }
  return out;
}

/** Parses deb822 style sources (*.sources): blank-line separated stanzas of Key: value. */
export function parseDeb822Sources(text: string): AptSource[] {
  const out: AptSource[] = [];
  for (const stanza of text.split(/\n\s*\n/)) {
    const fields = new Map<string, string>();
    let last = '';
    for (const raw of stanza.split('\n')) {
      if (raw.startsWith('#')) continue;
      if (/^\s/.test(raw) && last) { fields.set(last, `${fields.get(last)} ${raw.trim()}`); continue; }
      const m = /^([A-Za-z-]+):\s*(.*)$/.exec(raw);
      if (m) { last = m[1]!.toLowerCase(); fields.set(last, m[2]!.trim()); }
    }
    if (!fields.has('uris')) continue;
    if ((fields.get('enabled') ?? 'yes').toLowerCase() === 'no') continue;
    const list = (k: string) => (fields.get(k) ?? '').split(/\s+/).filter(Boolean);
    out.push({ types: list('types'), uris: list('uris'), suites: list('suites'), components: list('components'), signedBy: fields.get('signed-by') });
  }
  return out;
}

/**
 * The URL of the host's Debian archive mirror (not security, not a third-party repo), or
 * undefined. A source counts as Debian when its URL path ends in /debian or it is signed by
 * the Debian archive keyring; security and updates suites are skipped since debootstrap needs
 * the main archive.
 */
export function debianMirrorFrom(sources: AptSource[]): string | undefined {
  for (const s of sources) {
    if (!s.types.includes('deb')) continue;
    const mainSuite = s.suites.some((x) => !/-(security|updates|backports|proposed-updates)$/.test(x) && !x.includes('/'));
    if (!mainSuite) continue;
    for (const uri of s.uris) {
      if (!/^https?:\/\//.test(uri)) continue;
      const isDebian = /\/debian\/?$/.test(new URL(uri).pathname) || /debian-archive-keyring/.test(s.signedBy ?? '');
      if (isDebian && !/debian-security/.test(uri)) return uri.replace(/\/+$/, '');
    }
  }
  return undefined;
}

/** The host's Debian security archive URL (a URI ending in /debian-security), if configured. */
export function debianSecurityMirrorFrom(sources: AptSource[]): string | undefined {
  for (const s of sources) {
    if (!s.types.includes('deb')) continue;
    const uri = s.uris.find((u) => /^https?:\/\/.*\/debian-security\/?$/.test(u));
    if (uri) return uri.replace(/\/+$/, '');
  }
  return undefined;
}

/** Every apt source the host has configured (sources.list and sources.list.d). */
export async function hostAptSources(aptDir = '/etc/apt'): Promise<AptSource[]> {
  const sources: AptSource[] = [];
  const main = await fsp.readFile(path.join(aptDir, 'sources.list'), 'utf8').catch(() => '');
  sources.push(...parseOneLineSources(main));
  const dir = path.join(aptDir, 'sources.list.d');
  const names = (await fsp.readdir(dir).catch(() => [] as string[])).sort();
  for (const name of names) {
    const text = await fsp.readFile(path.join(dir, name), 'utf8').catch(() => '');
    if (name.endsWith('.sources')) sources.push(...parseDeb822Sources(text));
    else if (name.endsWith('.list')) sources.push(...parseOneLineSources(text));
  }
  return sources;
}

/** The host's Debian mirror; falls back to deb.debian.org. */
export async function hostDebianMirror(aptDir = '/etc/apt'): Promise<string> {
  return debianMirrorFrom(await hostAptSources(aptDir)) ?? FALLBACK_MIRROR;
}
