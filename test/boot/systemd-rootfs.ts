// The Debian root filesystem with systemd as its init (debootstrap --variant=minbase
// --include=systemd-sysv bookworm), built once by scripts/fetch-systemd-rootfs.sh into
// test/.cache/systemd-rootfs (or $DRYDOCK_SYSTEMD_ROOTFS_CACHE), like the test kernel. A failure
// fails the test: the systemd boot test cannot run without it.
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { PROJECT_ROOT, requireTool } from '../helpers/env.js';

let cached: string | undefined;

/** The path of the cached rootfs.tar. */
export function fetchSystemdRootfs(): string {
  if (cached) return cached;
  requireTool('debootstrap', 'apt-get install debootstrap');
  const out = execFileSync('bash', [path.join(PROJECT_ROOT, 'scripts/fetch-systemd-rootfs.sh')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  cached = path.join(out.trim().split('\n').pop()!, 'rootfs.tar');
  return cached;
}
