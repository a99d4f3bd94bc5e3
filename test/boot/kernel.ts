// The test kernel: Debian's linux-image-*-cloud-amd64, fetched once with apt-get download by
// scripts/fetch-kernel.sh into test/.cache/kernel (or $DRYDOCK_KERNEL_CACHE). A failure fails
// the test: the boot tests cannot run without a kernel.
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { PROJECT_ROOT, requireTool } from '../helpers/env.js';

let cached: string | undefined;

export function fetchKernel(): string {
  if (cached) return cached;
  requireTool('apt-get');
  requireTool('dpkg-deb');
  requireTool('depmod', 'apt-get install kmod');
  const out = execFileSync('bash', [path.join(PROJECT_ROOT, 'scripts/fetch-kernel.sh')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  cached = out.trim().split('\n').pop()!;
  return cached;
}
