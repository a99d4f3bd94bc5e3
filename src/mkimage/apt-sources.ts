// The image's own apt sources. debootstrap writes a single `deb MIRROR SUITE main` line; users
// of Debian's official images expect `apt-get update` to also see the point-release updates
// and the security archive, in the deb822 file bookworm and later ship
// (/etc/apt/sources.list.d/debian.sources), or the classic sources.list for older releases.
import path from 'node:path';
import { promises as fsp } from 'node:fs';
import { FALLBACK_MIRROR } from './mirror.js';
import { insideRootfs, writeRootfsFile } from './rootfs-path.js';

/** Suites that have no -updates/-security companions. */
const ROLLING = new Set(['sid', 'unstable', 'experimental', 'rc-buggy']);
/** Releases whose images use the one-line sources.list. */
const ONE_LINE = new Set(['jessie', 'stretch', 'buster', 'bullseye', 'oldoldstable']);
/** Releases whose security suite is "SUITE/updates" rather than "SUITE-security". */
const OLD_SECURITY = new Set(['jessie', 'stretch', 'buster']);

const KEYRING = '/usr/share/keyrings/debian-archive-keyring.gpg';

export interface AptSourcesOptions {
  suite: string;
  mirror: string;
  components?: string[];
  /** The security archive; when undefined the image gets no security source. */
  securityMirror?: string;
}

/**
 * Where the security archive is for an image made from `mirror`: the host's configured one,
 * else deb.debian.org's when the image itself comes from deb.debian.org. A private mirror
 * without a known security counterpart gets none, rather than a source `apt-get update`
 * cannot reach on that network.
 */
export function securityMirrorFor(mirror: string, hostSecurity: string | undefined): string | undefined {
  if (hostSecurity) return hostSecurity;
  return mirror.replace(/\/+$/, '') === FALLBACK_MIRROR ? 'http://deb.debian.org/debian-security' : undefined;
}

/** The sources file for the image: its path in the rootfs and its content. */
export function aptSourcesFor(opts: AptSourcesOptions): { file: string; content: string } {
  const components = (opts.components?.length ? opts.components : ['main']).join(' ');
  const mirror = opts.mirror.replace(/\/+$/, '');
  const rolling = ROLLING.has(opts.suite);
  const suites = rolling ? [opts.suite] : [opts.suite, `${opts.suite}-updates`];
  const security = !rolling && opts.securityMirror
    ? { uri: opts.securityMirror.replace(/\/+$/, ''), suite: OLD_SECURITY.has(opts.suite) ? `${opts.suite}/updates` : `${opts.suite}-security` }
    : undefined;
  if (ONE_LINE.has(opts.suite)) {
    const lines = suites.map((s) => `deb ${mirror} ${s} ${components}`);
    if (security) lines.push(`deb ${security.uri} ${security.suite} ${components}`);
    return { file: 'etc/apt/sources.list', content: lines.join('\n') + '\n' };
  }
  const stanzas = [`Types: deb\nURIs: ${mirror}\nSuites: ${suites.join(' ')}\nComponents: ${components}\nSigned-By: ${KEYRING}\n`];
  if (security) stanzas.push(`Types: deb\nURIs: ${security.uri}\nSuites: ${security.suite}\nComponents: ${components}\nSigned-By: ${KEYRING}\n`);
  return { file: 'etc/apt/sources.list.d/debian.sources', content: stanzas.join('\n') };
}

/** Replaces debootstrap's sources.list with the full set. */
export async function writeAptSources(rootfs: string, opts: AptSourcesOptions): Promise<void> {
  const { file, content } = aptSourcesFor(opts);
  if (file !== 'etc/apt/sources.list') await fsp.rm(await insideRootfs(rootfs, 'etc/apt/sources.list'), { force: true });
  await writeRootfsFile(rootfs, path.posix.normalize(file), content);
}
