// Seccomp profiles for the OCI spec. The default is the profile Podman and Buildah use, read from
// Debian's golang-github-containers-common package (/usr/share/containers/seccomp.json), not a
// copy in this repository. Its format is Docker's: syscall groups may apply only on some
// architectures (includes/excludes.arches), only when the container has (includes.caps) or
// lacks (excludes.caps) a capability, or only from a kernel version on (minKernel). Converting
// it to the runtime spec's `linux.seccomp` resolves those conditions for this host and the
// container's bounding set, as containers/common's pkg/seccomp setupSeccomp does.
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import { UserError } from '../util/errors.js';

export const DEFAULT_SECCOMP_PROFILE = '/usr/share/containers/seccomp.json';

export interface OciSeccompArg { index: number; value: number; valueTwo?: number; op: string }
export interface OciSyscall { names: string[]; action: string; errnoRet?: number; args?: OciSeccompArg[] }
export interface OciSeccomp {
  defaultAction: string;
  defaultErrnoRet?: number;
  architectures?: string[];
  flags?: string[];
  syscalls?: OciSyscall[];
}

interface Filter { arches?: string[]; caps?: string[]; minKernel?: string }
interface ProfileSyscall {
  name?: string;
  names?: string[];
  action: string;
  errnoRet?: number;
  args?: OciSeccompArg[] | null;
  includes?: Filter;
  excludes?: Filter;
}
interface Profile {
  defaultAction: string;
  defaultErrnoRet?: number;
  architectures?: string[];
  archMap?: { architecture: string; subArchitectures?: string[] }[];
  flags?: string[];
  syscalls?: ProfileSyscall[];
}

/** Go's GOARCH names (what the profile's arches use) → libseccomp's, for the archMap. */
const GOARCH_TO_SECCOMP: Record<string, string> = {
  amd64: 'SCMP_ARCH_X86_64', arm64: 'SCMP_ARCH_AARCH64', mips64: 'SCMP_ARCH_MIPS64', mips64n32: 'SCMP_ARCH_MIPS64N32',
  mipsel64: 'SCMP_ARCH_MIPSEL64', mipsel64n32: 'SCMP_ARCH_MIPSEL64N32', s390x: 'SCMP_ARCH_S390X',
};

/** This host's architecture in Go's naming. */
export function hostGoArch(): string {
  const a = os.arch();
  return ({ x64: 'amd64', ia32: '386', arm64: 'arm64', arm: 'arm', ppc64: 'ppc64le', s390x: 's390x', mips64el: 'mipsel64' } as Record<string, string>)[a] ?? a;
}

/** "6.1.0-18-amd64" ≥ "4.8"? Compares the numeric major.minor(.patch) prefix. */
export function kernelAtLeast(release: string, min: string): boolean {
  const parse = (s: string) => (s.match(/^(\d+)(?:\.(\d+))?(?:\.(\d+))?/) ?? []).slice(1).map((n) => Number(n ?? 0));
  const [a, b] = [parse(release), parse(min)];
  for (let i = 0; i < 3; i++) { if ((a[i] ?? 0) !== (b[i] ?? 0)) return (a[i] ?? 0) > (b[i] ?? 0); }
  return true;
}

/**
 * Converts a Docker/containers-format profile (or an OCI `linux.seccomp` object, which is the
 * same minus the conditions) for a container whose bounding set is `bounding`.
 */
export function convertProfile(profile: Profile, bounding: string[], arch = hostGoArch(), kernel = os.release()): OciSeccomp {
  if (profile.architectures?.length && profile.archMap?.length) {
    throw new UserError("'architectures' and 'archMap' were specified in the seccomp profile, use either 'architectures' or 'archMap'");
  }
  if (!profile.defaultAction) throw new UserError('the seccomp profile has no defaultAction');
  const caps = new Set(bounding);
  const out: OciSeccomp = { defaultAction: profile.defaultAction };
  if (profile.defaultErrnoRet !== undefined) out.defaultErrnoRet = profile.defaultErrnoRet;
  let architectures = profile.architectures ?? [];
  const native = GOARCH_TO_SECCOMP[arch];
  const mapped = profile.archMap?.find((m) => m.architecture === native);
  if (mapped) architectures = [mapped.architecture, ...(mapped.subArchitectures ?? [])];
  if (architectures.length) out.architectures = architectures;
  if (profile.flags?.length) out.flags = profile.flags;
  const syscalls: OciSyscall[] = [];
  for (const call of profile.syscalls ?? []) {
    const ex = call.excludes ?? {};
    const inc = call.includes ?? {};
    if (ex.arches?.includes(arch)) continue;
    if (ex.caps?.some((c) => caps.has(c))) continue;
    if (ex.minKernel && kernelAtLeast(kernel, ex.minKernel)) continue;
    if (inc.arches?.length && !inc.arches.includes(arch)) continue;
    if (inc.caps?.length && !inc.caps.every((c) => caps.has(c))) continue;
    if (inc.minKernel && !kernelAtLeast(kernel, inc.minKernel)) continue;
    if (call.name && call.names?.length) throw new UserError("'name' and 'names' were specified in the seccomp profile, use either 'name' or 'names'");
    const names = call.names?.length ? call.names : call.name ? [call.name] : [];
    if (!names.length) continue;
    const s: OciSyscall = { names, action: call.action };
    if (call.errnoRet !== undefined) s.errnoRet = call.errnoRet;
    if (call.args?.length) s.args = call.args.map((a) => ({ index: a.index, value: a.value, ...(a.valueTwo ? { valueTwo: a.valueTwo } : {}), op: a.op }));
    syscalls.push(s);
  }
  out.syscalls = syscalls;
  return out;
}

const profileCache = new Map<string, Profile>();

async function readProfile(file: string, isDefault: boolean): Promise<Profile> {
  const cached = profileCache.get(file);
  if (cached) return cached;
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (e) {
    if (isDefault) throw new UserError(`the default seccomp profile ${file} is missing: apt-get install golang-github-containers-common (or run with --security-opt seccomp=unconfined)`);
    throw new UserError(`cannot read seccomp profile ${file}: ${(e as Error).message}`, { cause: e });
  }
  let profile: Profile;
  try { profile = JSON.parse(text) as Profile; } catch (e) { throw new UserError(`decoding seccomp profile ${file} failed: ${(e as Error).message}`, { cause: e }); }
  if (typeof profile !== 'object' || profile === null || typeof profile.defaultAction !== 'string') throw new UserError(`seccomp profile ${file} has no defaultAction`);
  profileCache.set(file, profile);
  return profile;
}

/**
 * The spec's seccomp section for `setting` ("default", "unconfined" or a profile file), given
 * the container's bounding capabilities; undefined for unconfined.
 */
export async function seccompFor(setting: string | undefined, bounding: string[]): Promise<OciSeccomp | undefined> {
  if (setting === 'unconfined') return undefined;
  const isDefault = !setting || setting === 'default';
  const file = isDefault ? DEFAULT_SECCOMP_PROFILE : setting;
  return convertProfile(await readProfile(file, isDefault), bounding);
}
