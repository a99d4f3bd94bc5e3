// The test kernels: Debian's linux-image-*-cloud-amd64 (and linux-image-*-amd64), fetched once with apt-get download by
// scripts/fetch-kernel.sh into test/.cache/kernel (or $DRYDOCK_KERNEL_CACHE). A failure fails
// the test: the boot tests cannot run without a kernel.
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { PROJECT_ROOT, requireTool } from '../helpers/env.js';

const cached = new Map<string, string>();

/**
 * 'cloud' (default): linux-image-cloud-amd64, small, virtio only. 'generic': linux-image-amd64
 * (test/.cache/kernel-generic or $DRYDOCK_GENERIC_KERNEL_CACHE), for e1000 and 9p. 'other': a
 * cloud kernel of another version (test/.cache/kernel-other or $DRYDOCK_KERNEL2_CACHE), which an
 * image carries in the kernel-upgrade test so `uname -r` tells which kernel booted.
 */
export function fetchKernel(flavor: 'cloud' | 'generic' | 'other' = 'cloud'): string {
  const hit = cached.get(flavor);
  if (hit) return hit;
  requireTool('apt-get');
  requireTool('dpkg-deb');
  requireTool('depmod', 'apt-get install kmod');
  const args = [path.join(PROJECT_ROOT, 'scripts/fetch-kernel.sh'), ...(flavor === 'cloud' ? [] : [`--${flavor}`])];
  const out = execFileSync('bash', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  const dir = out.trim().split('\n').pop()!;
  cached.set(flavor, dir);
  return dir;
}
