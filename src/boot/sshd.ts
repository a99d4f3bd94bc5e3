// The SSH server of a booted image (--ssh-key): the image's own OpenSSH sshd when it has one,
// else the build host's dropbear, carried in /.drydock/ssh with the shared libraries ldd names
// and its own dynamic loader, so it runs whatever libc (or none) the image has. Host keys are
// never baked: /.drydock/sshd-up makes them on the machine at first boot, in /etc (the writable
// layer, so a persist= disk keeps them across boots) and removes any the image shipped.
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { UserError } from '../util/errors.js';
import { runTool } from './exec.js';
import { resolveInRoot } from '../runtime/rootfs-path.js';

export const DROPBEAR = { server: '/usr/sbin/dropbear', keygen: '/usr/bin/dropbearkey' };

/** Shared libraries of an ELF binary, as `ldd` resolves them on this host (the loader included). */
export async function sharedLibraries(binary: string): Promise<string[]> {
  const { stdout } = await runTool('ldd', [binary]);
  const libs: string[] = [];
  for (const line of stdout.split('\n')) {
    const m = /=>\s*(\/\S+)/.exec(line) ?? /^\s*(\/\S+)\s+\(/.exec(line);
    if (m) libs.push(m[1]!);
  }
  return libs;
}

const OPENSSH_UP = `#!/.drydock/busybox sh
# drydock: the image's OpenSSH sshd, with host keys made on this machine.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/.drydock/bin
say() { echo "drydock: $*" > /dev/console; }
if [ ! -e /etc/ssh/.drydock-host-keys ]; then
  rm -f /etc/ssh/ssh_host_*
  ssh-keygen -A >/dev/null 2>&1 && touch /etc/ssh/.drydock-host-keys
fi
mkdir -p /run/sshd && chmod 0755 /run/sshd
if /usr/sbin/sshd -E /var/log/drydock-sshd.log; then
  say "ssh: sshd (the image's) listening on port 22, host key $(ssh-keygen -l -f /etc/ssh/ssh_host_ed25519_key.pub 2>/dev/null | cut -d' ' -f2)"
else
  say "ssh: the image's sshd failed to start (see /var/log/drydock-sshd.log)"
fi
`;

const DROPBEAR_UP = `#!/.drydock/busybox sh
# drydock: dropbear from the boot medium, with host keys made on this machine at first boot.
export PATH=/.drydock/bin
say() { echo "drydock: $*" > /dev/console; }
S=/.drydock/ssh
run() { "$S/lib/ld-linux-x86-64.so.2" --library-path "$S/lib" "$@"; }
K=/etc/dropbear/dropbear_ed25519_host_key
mkdir -p /etc/dropbear /var/log
if [ ! -s $K ]; then
  run "$S/dropbearkey" -t ed25519 -f $K >/dev/null 2>>/var/log/drydock-sshd.log && say "ssh: generated this machine's host key"
fi
fp="$(run "$S/dropbearkey" -y -f $K 2>/dev/null | sed -n 's/^Fingerprint: //p')"
if run "$S/dropbear" -E -r $K -p 22 -s -P /run/dropbear.pid 2>>/var/log/drydock-sshd.log; then
  say "ssh: dropbear listening on port 22, host key $fp"
else
  say "ssh: dropbear failed to start (see /var/log/drydock-sshd.log)"
fi
`;

/** Writes /.drydock/sshd-up (and the dropbear bundle when the image has no sshd) into `dd`. */
export async function installSshd(dd: string, rootfs: string): Promise<'image' | 'dropbear'> {
  const sshd = await resolveInRoot(rootfs, '/usr/sbin/sshd').catch(() => undefined);
  if (sshd && (await fsp.stat(sshd).catch(() => undefined))?.isFile()) {
    await fsp.writeFile(path.join(dd, 'sshd-up'), OPENSSH_UP, { mode: 0o755 });
    return 'image';
  }
  for (const f of Object.values(DROPBEAR)) {
    if (!(await fsp.stat(f).catch(() => undefined))) {
      throw new UserError(`--ssh-key: the image has no sshd and ${f} is missing on this host to carry one (apt-get install dropbear-bin)`);
    }
  }
  const ssh = path.join(dd, 'ssh');
  await fsp.mkdir(path.join(ssh, 'lib'), { recursive: true });
  const libs = new Set<string>();
  for (const bin of Object.values(DROPBEAR)) {
    await fsp.copyFile(bin, path.join(ssh, path.basename(bin)));
    await fsp.chmod(path.join(ssh, path.basename(bin)), 0o755);
    for (const lib of await sharedLibraries(bin)) libs.add(lib);
  }
  for (const lib of libs) {
    const name = /ld-linux/.test(path.basename(lib)) ? 'ld-linux-x86-64.so.2' : path.basename(lib);
    await fsp.copyFile(await fsp.realpath(lib), path.join(ssh, 'lib', name));
    await fsp.chmod(path.join(ssh, 'lib', name), 0o755);
  }
  if (![...libs].some((l) => /ld-linux/.test(l))) throw new UserError(`ldd ${DROPBEAR.server} names no dynamic loader; cannot carry dropbear`);
  await fsp.writeFile(path.join(dd, 'sshd-up'), DROPBEAR_UP, { mode: 0o755 });
  return 'dropbear';
}
