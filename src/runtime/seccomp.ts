// Seccomp profiles for the OCI spec. The default is the profile Podman and Buildah use, read from
// Debian's golang-github-containers-common package (/usr/share/containers/seccomp.json), not a
// copy in this repository. Its format is Docker's: syscall groups may apply only on some
// architectures (includes/excludes.arches), only when the container has (includes.caps) or
// lacks (excludes.caps) a capability, or only from a kernel version on (minKernel). Converting
// it to the runtime spec's `linux.seccomp` resolves those conditions for this host and the
// container's bounding set, as containers/common's pkg/seccomp setupSeccomp does.
import { promises as fsp, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { UserError } from '../util/errors.js';
import { bootId } from '../util/boot-id.js';

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
    // Synchronous: a RUN step reads it on its way to `runc run` (16 KB, one read).
    text = readFileSync(file, 'utf8');
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

/**
 * Whether this kernel executes x32-ABI system calls (x86_64's third ABI: 64-bit registers,
 * 32-bit pointers, syscall numbers with bit 30 set). Most kernels do not: it is a build option
 * (CONFIG_X86_X32_ABI, off in this VM's kernel) and Debian's kernels, which build it, leave it off
 * unless booted with syscall.x32=y. A child process makes one x32 getpid(2): ENOSYS means no, and
 * so does its death by SIGSYS (an outer seccomp filter that kills x32 calls binds our containers
 * too). Anything else, a pid or a failed probe, counts as yes. The answer is kept per boot in
 * /run, so a build pays the ~50 ms child once a boot, in parallel with its first steps.
 */
export function kernelRunsX32(): Promise<boolean> {
  return x32Probe ??= probeX32();
}
let x32Probe: Promise<boolean> | undefined;

const X32_GETPID = 0x40000000 + 39;

async function probeX32(): Promise<boolean> {
  if (process.platform !== 'linux' || os.arch() !== 'x64') return false;
  return oncePerBoot('x32', async () => {
    const { execFile } = await import('node:child_process');
    const { koffiPath } = await import('./mount-syscall.js');
    let addon: string;
    try { addon = koffiPath(); } catch { return undefined; }
    // errno is read right after the call: touching process.stdout first would set it (isatty).
    const script = `const k = require(process.argv[1]); const r = k.load('libc.so.6').func('long syscall(long)')(${X32_GETPID}); const e = k.errno(); process.stdout.write(r > 0 ? 'pid' : String(e));`;
    const runs = await new Promise<boolean>((resolve) => {
      execFile(process.execPath, ['-e', script, addon], { timeout: 10_000, env: { PATH: process.env.PATH ?? '' } }, (err, stdout) => {
        if (err) return resolve(!((err as { signal?: string }).signal === 'SIGSYS'));
        resolve(stdout !== String(os.constants.errno.ENOSYS));
      });
    });
    return runs;
  });
}

/**
 * Whether this kernel runs 32-bit x86 (IA32) programs and system calls. Almost every x86_64
 * kernel does (CONFIG_IA32_EMULATION); one built without it, or booted with
 * ia32_emulation=false (CONFIG_IA32_EMULATION_DEFAULT_DISABLED), has no int 0x80, sysenter or
 * 32-bit syscall entry and refuses to exec a 32-bit ELF (ENOEXEC), all together. The probe execs
 * a 96-byte static i386 program that exits 42 through int 0x80: only ENOEXEC counts as no.
 * Anything else (42, no writable or executable place for the file, a signal) counts as yes, so
 * the filter's x86 section is dropped only where no process can reach it. Kept per boot in /run.
 */
export function kernelRunsIa32(): Promise<boolean> {
  return ia32Probe ??= probeIa32();
}
let ia32Probe: Promise<boolean> | undefined;

/** ELF32 header + one PT_LOAD at 0x08048000 + `mov eax,1; mov ebx,42; int 0x80` (exit(42)). */
export function ia32ExitProgram(): Buffer {
  const b = Buffer.alloc(96);
  Buffer.from([0x7f, 0x45, 0x4c, 0x46, 1, 1, 1]).copy(b, 0); // ELF, 32-bit, little-endian, v1
  b.writeUInt16LE(2, 16); // ET_EXEC
  b.writeUInt16LE(3, 18); // EM_386
  b.writeUInt32LE(1, 20);
  b.writeUInt32LE(0x08048000 + 84, 24); // entry: the code after the headers
  b.writeUInt32LE(52, 28); // program headers right after the ELF header
  b.writeUInt16LE(52, 40);
  b.writeUInt16LE(32, 42);
  b.writeUInt16LE(1, 44);
  b.writeUInt32LE(1, 52); // PT_LOAD of the whole file, read + execute
  b.writeUInt32LE(0, 56);
  b.writeUInt32LE(0x08048000, 60);
  b.writeUInt32LE(0x08048000, 64);
  b.writeUInt32LE(96, 68);
  b.writeUInt32LE(96, 72);
  b.writeUInt32LE(5, 76);
  b.writeUInt32LE(0x1000, 80);
  Buffer.from([0xb8, 1, 0, 0, 0, 0xbb, 42, 0, 0, 0, 0xcd, 0x80]).copy(b, 84);
  return b;
}

async function probeIa32(): Promise<boolean> {
  if (process.platform !== 'linux' || os.arch() !== 'x64') return false;
  return oncePerBoot('ia32', async () => {
    const { execFile } = await import('node:child_process');
    const { randomBytes } = await import('node:crypto');
    const path = await import('node:path');
    let answer: boolean | undefined;
    // /run first (root's, usually exec-able), then the temp dir; a noexec mount answers EACCES.
    for (const dir of ['/run', os.tmpdir()]) {
      const file = path.join(dir, `drydock-ia32-probe-${randomBytes(6).toString('hex')}`);
      try {
        await fsp.writeFile(file, ia32ExitProgram(), { mode: 0o700, flag: 'wx' });
      } catch { continue; }
      const outcome = await new Promise<'runs' | 'enoexec' | 'unknown'>((resolve) => {
        execFile(file, [], { timeout: 10_000, env: {} }, (err) => {
          if (!err) return resolve('unknown');
          // A spawn failure has the errno's name as code; an exit status, the number.
          const code = (err as { code?: string | number }).code;
          if (code === 'ENOEXEC') return resolve('enoexec');
          resolve(code === 42 ? 'runs' : 'unknown');
        });
      });
      await fsp.rm(file, { force: true });
      if (outcome === 'enoexec') { answer = false; break; }
      if (outcome === 'runs') { answer = true; break; }
    }
    // Undecided (no place to exec from): keep the x86 section, and probe again next time.
    return answer;
  });
}

/** The filter's architectures minus the ABIs the kernel does not execute. */
export function presentArchitectures(architectures: string[], kernel: { x32: boolean; ia32: boolean }): string[] {
  return architectures.filter((a) => (a !== 'SCMP_ARCH_X32' || kernel.x32) && (a !== 'SCMP_ARCH_X86' || kernel.ia32));
}

/**
 * The filter without the ABIs the kernel does not execute: x32 (kernelRunsX32) and IA32
 * (kernelRunsIa32). Every rule of the profile stays, for the ABIs the kernel has: what can reach
 * a syscall is the same. What changes is how a call of a missing ABI fails: an x32 one is killed
 * (SIGSYS, libseccomp's x86_64 section sees a number with the x32 bit) instead of ENOSYS; an
 * IA32 one cannot be made at all. Worth it because libseccomp, which runc calls to compile the
 * filter inside every container it starts, takes ~20 ms of CPU more for x86_64 + x86 + x32 than
 * for x86_64 + x86 (runc run: ~75 ms -> ~45 ms wall, quiet VM), and x86 another ~6-10 ms. Where
 * IA32 is on (nearly every kernel, this VM's too) the x86 section stays: without it a 32-bit
 * call would meet the filter's action for an unlisted architecture, not the profile's rules.
 */
export async function withoutAbsentAbis(seccomp: OciSeccomp): Promise<OciSeccomp> {
  const archs = seccomp.architectures;
  if (!archs?.includes('SCMP_ARCH_X32') && !archs?.includes('SCMP_ARCH_X86')) return seccomp;
  const [x32, ia32] = await Promise.all([
    archs.includes('SCMP_ARCH_X32') ? kernelRunsX32() : true,
    archs.includes('SCMP_ARCH_X86') ? kernelRunsIa32() : true,
  ]);
  if (x32 && ia32) return seccomp;
  return { ...seccomp, architectures: presentArchitectures(archs, { x32, ia32 }) };
}

/**
 * A kernel property probed once a boot: the answer is kept in /run/drydock-<name>-<boot id>
 * (tmpfs, gone at the next boot). `probe` resolving undefined means undecided: true is used
 * and nothing is kept, so the next process probes again.
 */
async function oncePerBoot(name: string, probe: () => Promise<boolean | undefined>): Promise<boolean> {
  const cacheFile = `/run/drydock-${name}-${bootId()}`;
  try {
    const cached = readFileSync(cacheFile, 'utf8');
    if (cached === '0' || cached === '1') return cached === '1';
  } catch { /* not probed this boot */ }
  const answer = await probe();
  if (answer === undefined) return true;
  try { writeFileSync(cacheFile, answer ? '1' : '0'); } catch { /* /run not writable: probe again next time */ }
  return answer;
}
