// Lays out a minimal busybox root filesystem from the host's static busybox (Debian's
// busybox-static): the binary, one symlink per applet, passwd/group, /tmp. No device nodes:
// OCI runtimes create /dev themselves, and baking nodes into layers needs privileges at extract.
import { promises as fsp } from 'node:fs';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import path from 'node:path';
import { UserError } from '../util/errors.js';

const run = promisify(execFile);

export const DEFAULT_BUSYBOX = '/bin/busybox';

export interface BusyboxRootfsOptions {
  /** Path of a statically linked busybox (default /bin/busybox from busybox-static). */
  busybox?: string;
}

const PASSWD = [
  'root:x:0:0:root:/root:/bin/sh',
  'daemon:x:1:1:daemon:/usr/sbin:/bin/false',
  'www-data:x:33:33:www-data:/var/www:/bin/false',
  'nobody:x:65534:65534:nobody:/nonexistent:/bin/false',
].join('\n') + '\n';

const GROUP = ['root:x:0:', 'daemon:x:1:', 'www-data:x:33:', 'nogroup:x:65534:'].join('\n') + '\n';

/** Returns the applet paths (relative, e.g. "bin/sh") busybox was built with. */
export async function busyboxApplets(busybox = DEFAULT_BUSYBOX): Promise<string[]> {
  try {
    const { stdout } = await run(busybox, ['--list-full'], { maxBuffer: 1 << 20 });
    return stdout.split('\n').map((s) => s.trim()).filter((s) => s && !s.includes('..') && !s.startsWith('/'));
  } catch (e) {
    throw new UserError(`cannot run ${busybox}: ${(e as Error).message} (install Debian's busybox-static)`, { cause: e });
  }
}

export async function buildBusyboxRootfs(dir: string, opts: BusyboxRootfsOptions = {}): Promise<{ applets: number }> {
  const busybox = opts.busybox ?? DEFAULT_BUSYBOX;
  const { stdout: fileInfo } = await run('file', ['-L', busybox]).catch(() => ({ stdout: 'statically linked' }));
  if (!/statically linked|static-pie/.test(fileInfo)) {
    throw new UserError(`${busybox} is not statically linked; install busybox-static (the dynamic busybox would need the host's libc in the image)`);
  }
  for (const d of ['bin', 'sbin', 'usr/bin', 'usr/sbin', 'etc', 'root', 'tmp', 'var/www', 'home', 'proc', 'sys', 'dev', 'run']) {
    await fsp.mkdir(path.join(dir, d), { recursive: true });
  }
  await fsp.chmod(path.join(dir, 'tmp'), 0o1777);
  await fsp.chmod(path.join(dir, 'root'), 0o700);
  await fsp.copyFile(busybox, path.join(dir, 'bin/busybox'));
  await fsp.chmod(path.join(dir, 'bin/busybox'), 0o755);
  const applets = await busyboxApplets(busybox);
  // Concurrent: ~270 links one syscall round-trip at a time were most of the command's time.
  await Promise.all(applets.filter((rel) => rel !== 'bin/busybox').map(async (rel) => {
    const target = path.join(dir, rel);
    const link = `${'../'.repeat(rel.split('/').length - 1)}bin/busybox`;
    try {
      await fsp.symlink(link, target);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      await fsp.rm(target, { force: true });
      await fsp.symlink(link, target);
    }
  }));
  await fsp.writeFile(path.join(dir, 'etc/passwd'), PASSWD);
  await fsp.writeFile(path.join(dir, 'etc/group'), GROUP);
  await fsp.writeFile(path.join(dir, 'etc/shadow'), 'root:*:19000:0:99999:7:::\n', { mode: 0o640 });
  await fsp.writeFile(path.join(dir, 'etc/hostname'), 'busybox\n');
  await fsp.writeFile(path.join(dir, 'etc/nsswitch.conf'), 'hosts: files dns\n');
  return { applets: applets.length };
}
