import type { Descriptor, Platform } from './types.js';

const ARCH_MAP: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' };

export function hostPlatform(): Platform {
  return { os: 'linux', architecture: ARCH_MAP[process.arch] ?? process.arch };
}

/** Parses "linux/amd64[/v8]". */
export function parsePlatform(s: string): Platform {
  const [os, architecture, variant] = s.split('/');
  if (!os || !architecture) throw new Error(`invalid platform "${s}": expected os/arch[/variant]`);
  return variant ? { os, architecture, variant } : { os, architecture };
}

export function formatPlatform(p: Platform): string {
  return [p.os, p.architecture, p.variant].filter(Boolean).join('/');
}

export function platformMatches(want: Platform, have: Platform | undefined): boolean {
  if (!have) return false;
  return want.os === have.os && want.architecture === have.architecture && (!want.variant || want.variant === have.variant);
}

/** Picks the index entry for `want` (host by default), skipping attestation manifests. */
export function selectPlatform(manifests: Descriptor[], want: Platform = hostPlatform()): Descriptor | undefined {
  return manifests.find((d) => platformMatches(want, d.platform));
}
