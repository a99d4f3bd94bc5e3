// Foreign-architecture RUN steps execute through qemu-user-static, which the kernel starts via a
// binfmt_misc handler. Without one, runc fails with a bare "exec format error" (or, without the
// F flag, "no such file or directory") deep inside the step; checking first names what is missing.
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { UserError } from '../util/errors.js';
import { hostPlatform } from '../image/platform.js';

export const BINFMT_DIR = '/proc/sys/fs/binfmt_misc';

/** OCI architecture → the name qemu (and Debian's binfmt entries) use for it. */
const QEMU_ARCH: Record<string, string> = {
  amd64: 'x86_64', arm64: 'aarch64', arm: 'arm', '386': 'i386', ppc64le: 'ppc64le', s390x: 's390x',
  riscv64: 'riscv64', mips64le: 'mips64el', mips64: 'mips64', loong64: 'loongarch64',
};

/** The binfmt_misc handler name for an architecture ("qemu-aarch64"). */
export function binfmtHandler(architecture: string): string {
  return `qemu-${QEMU_ARCH[architecture] ?? architecture}`;
}

/**
 * Throws a UserError naming the handler and how to register it unless the host can execute
 * `architecture` binaries: the host's own architecture, or an enabled qemu handler. `dir` is
 * for tests only.
 */
export async function checkBinfmt(architecture: string, dir = BINFMT_DIR): Promise<void> {
  const host = hostPlatform().architecture;
  if (architecture === host) return;
  const handler = binfmtHandler(architecture);
  const howTo = `mount binfmt_misc (mount -t binfmt_misc binfmt_misc ${dir}) and register the handler with qemu-user-static installed (update-binfmts --enable ${handler}), or build for linux/${host}`;
  const status = await fsp.readFile(path.join(dir, 'status'), 'utf8').catch(() => undefined);
  if (status === undefined) {
    throw new UserError(`cannot run ${architecture} binaries on this ${host} host: binfmt_misc is not mounted at ${dir}, so there is no ${handler} handler; ${howTo}`);
  }
  if (status.trim() !== 'enabled') {
    throw new UserError(`cannot run ${architecture} binaries on this ${host} host: binfmt_misc is disabled (${dir}/status); enable it with: echo 1 > ${dir}/status`);
  }
  const entry = await fsp.readFile(path.join(dir, handler), 'utf8').catch(() => undefined);
  if (entry === undefined) {
    throw new UserError(`cannot run ${architecture} binaries on this ${host} host: no binfmt_misc handler ${handler} is registered; ${howTo}`);
  }
  if (entry.split('\n')[0]!.trim() !== 'enabled') {
    throw new UserError(`cannot run ${architecture} binaries on this ${host} host: the binfmt_misc handler ${handler} is disabled; enable it with: update-binfmts --enable ${handler} (or echo 1 > ${dir}/${handler})`);
  }
}
