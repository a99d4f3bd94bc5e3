// The systemd boot tests' images (systemd-init.test.ts, systemd-fallback.test.ts): Debian's root
// filesystem with systemd as its init (debootstrap --variant=minbase --include=systemd-sysv
// bookworm), built once by scripts/fetch-systemd-rootfs.sh into test/.cache/systemd-rootfs (or
// $DRYDOCK_SYSTEMD_ROOTFS_CACHE) like the test kernel, imported with `drydock mkimage rootfs`,
// and versions of it made by a Dockerfile that adds test units. Two files, not one: each test
// file has 10 minutes in the suite (--test-timeout), and three systemd boots under TCG take more.
import { execFileSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import assert from 'node:assert/strict';
import path from 'node:path';
import { before } from 'node:test';
import { PROJECT_ROOT, requireRoot, requireTool, runCli, tempDir } from '../helpers/env.js';
import { ContentStore, resolveImage } from '../../src/store/index.js';
import { StoreImageSource } from '../../src/client/store-transport.js';
import { OsLayout, stageImage } from '../../src/os/index.js';
import { fetchKernel } from './kernel.js';

/** The reference the disks track (nothing is pulled: the tests stage deployments on the host). */
export const SYSTEMD_REF = '10.0.2.2:5000/os/systemd:stable';
/** Seconds a pending deployment gets to reach its default target (TCG boots reach it in 60 to 145 s). */
export const SYSTEMD_DEADLINE = 180;
/** The kernel command line for a fast, quiet systemd boot: the console carries drydock's lines and the units' output. */
export const SYSTEMD_KERNEL_ARGS = 'quiet systemd.show_status=0';

let cached: string | undefined;

/** The path of the cached rootfs.tar. */
export function fetchSystemdRootfs(): string {
  if (cached) return cached;
  requireTool('debootstrap', 'apt-get install debootstrap');
  const out = execFileSync('bash', [path.join(PROJECT_ROOT, 'scripts/fetch-systemd-rootfs.sh')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  cached = path.join(out.trim().split('\n').pop()!, 'rootfs.tar');
  return cached;
}

// In every version: after the confirm step, the version, when systemd reached its default
// target, `drydock os status --json` (one line) and, with `waitPast`, proof once the uptime is
// past the deadline that the softdog no longer runs.
const statusUnit = (waitPast: boolean) => `[Unit]
Description=test: report the deployment after the confirm step
# Explicit, so multi-user.target (which wants it) does not order itself after it: a cycle.
After=drydock-os-confirm.service multi-user.target

[Service]
Type=oneshot
ExecStart=/bin/sh -c 'echo "SYSTEMD-UP $$(cat /etc/version) after $$(cut -d" " -f1 /proc/uptime)s" > /dev/console; \\
  t=$$(systemctl show --value -p ActiveEnterTimestampMonotonic default.target); echo "ANALYZE default.target reached at $\${t%%??????} s of uptime" > /dev/console; \\
  echo "STATUS $$(/.drydock/drydock/bin/drydock os status --json | tr -d "\\\\n")" > /dev/console; echo STATUS-END > /dev/console${waitPast ? `; \\
  while [ "$$(cut -d. -f1 /proc/uptime)" -le ${SYSTEMD_DEADLINE + 10} ]; do sleep 2; done; echo STILL-UP-PAST-THE-DEADLINE > /dev/console` : ''}'
`;
// A version whose multi-user.target waits for a unit that never finishes starting.
const HANG_UNIT = `[Unit]
Description=test: never finishes starting
Before=multi-user.target

[Service]
Type=oneshot
TimeoutStartSec=infinity
ExecStart=/bin/sh -c 'echo SYSTEMD-HANGS > /dev/console; exec sleep infinity'
`;

export interface SystemdVersion { tag: string; version: string; hang?: boolean; waitPastDeadline?: boolean }

/** Checks the tools, imports the rootfs and builds the versions; returns their deployment ids (manifest digest prefixes) by version and the kernel dir. */
export async function buildSystemdImages(root: string, work: string, versions: SystemdVersion[]): Promise<{ ids: Record<string, string>; kernel: string }> {
  requireRoot();
  for (const t of ['mksquashfs', 'mkfs.ext4', 'syslinux', 'qemu-system-x86_64', 'kexec']) requireTool(t);
  const kernel = fetchKernel();
  const r = await runCli(['mkimage', 'rootfs', fetchSystemdRootfs(), '-t', 'debian-systemd:bookworm'], { root, timeoutMs: 600_000 });
  assert.equal(r.code, 0, r.stderr);
  const ids: Record<string, string> = {};
  for (const v of versions) {
    const dir = path.join(work, `ctx-${v.version}`);
    await fsp.mkdir(dir, { recursive: true });
    await fsp.writeFile(path.join(dir, 'version'), `${v.version}\n`);
    await fsp.writeFile(path.join(dir, 'test-status.service'), statusUnit(!!v.waitPastDeadline));
    await fsp.writeFile(path.join(dir, 'test.conf'), `[Unit]\nWants=test-status.service${v.hang ? ' test-hang.service' : ''}\n`);
    await fsp.writeFile(path.join(dir, 'test-hang.service'), HANG_UNIT);
    await fsp.writeFile(path.join(dir, 'Dockerfile'), [
      'FROM debian-systemd:bookworm',
      'COPY version /etc/version',
      'COPY test-status.service test-hang.service /etc/systemd/system/',
      'COPY test.conf /etc/systemd/system/multi-user.target.d/test.conf',
      '',
    ].join('\n'));
    const b = await runCli(['build', '-q', '-t', v.tag, dir], { root, timeoutMs: 600_000 });
    assert.equal(b.code, 0, b.stderr);
    const store = await ContentStore.open(root);
    ids[v.version] = (await resolveImage(store, v.tag)).manifestDescriptor.digest.slice('sha256:'.length, 'sha256:'.length + 12);
  }
  return { ids, kernel };
}

/** `drydock disk TAG --updates-from` with one try per deployment; returns the data partition's offset. */
export async function makeSystemdDisk(root: string, tag: string, disk: string, kernel: string): Promise<number> {
  const r = await runCli(['disk', tag, '-o', disk, '--kernel', kernel, '--updates-from', SYSTEMD_REF,
    '--boot-tries', '1', '--boot-deadline', String(SYSTEMD_DEADLINE), '--kernel-args', SYSTEMD_KERNEL_ARGS, '--json'], { root, timeoutMs: 900_000 });
  assert.equal(r.code, 0, r.stderr);
  const built = JSON.parse(r.stdout);
  assert.deepEqual([built.init.mode, built.init.path], ['image', '/sbin/init'], 'auto: the image has an init system');
  return built.layout.dataStart;
}

/** Runs `fn` on the disk's data partition, loop-mounted (read-write: ext4 may replay its journal after a killed QEMU). */
export async function withDataPartition<T>(disk: string, dataStart: number, mnt: string, fn: (layout: OsLayout) => Promise<T>): Promise<T> {
  await fsp.mkdir(mnt, { recursive: true });
  execFileSync('mount', ['-o', `loop,offset=${dataStart}`, disk, mnt]);
  try {
    return await fn(new OsLayout(mnt));
  } finally {
    execFileSync('umount', [mnt]);
  }
}

/** Stages `tag` as the pending deployment (one try, the deadline) straight into the data partition. */
export async function stageSystemdPending(root: string, disk: string, dataStart: number, mnt: string, tag: string): Promise<void> {
  await withDataPartition(disk, dataStart, mnt, async (layout) => {
    const store = await ContentStore.open(root);
    const { deployment } = await stageImage(layout, new StoreImageSource(store, tag), SYSTEMD_REF, { kernel: false });
    await layout.updateState((s) => ({ ...s, pending: { id: deployment.id, triesLeft: 1, deadlineSeconds: SYSTEMD_DEADLINE } }));
  });
}

/** The ANALYZE line the status unit printed (when systemd reached default.target). */
export const analyzeOf = (console: string) => /^ANALYZE (.*)$/m.exec(console)?.[1]?.trim() ?? 'no ANALYZE line';

/** The machine both systemd files boot: the disk image and QEMU's arguments for it. */
export interface SystemdMachine { disk: string; qemu: string[] }

/**
 * One systemd test file's fixture: a work dir and store, `versions` built in a before() hook
 * (their IDs in `ids` once it ran), and `machine(pending)`: an updatable disk made from v1 with
 * `pending` staged as its pending deployment.
 */
export function systemdFixture(prefix: string, versions: SystemdVersion[]) {
  const work = tempDir(prefix);
  const root = path.join(work, 'store');
  const fixture = {
    ids: {} as Record<string, string>,
    kernel: '',
    async machine(pending: string): Promise<SystemdMachine> {
      const disk = path.join(work, 'disk.img');
      const dataStart = await makeSystemdDisk(root, versions[0]!.tag, disk, fixture.kernel);
      await stageSystemdPending(root, disk, dataStart, path.join(work, 'mnt'), pending);
      return { disk, qemu: ['-drive', `file=${disk},format=raw,if=virtio`, '-nic', 'none'] };
    },
  };
  before(async () => {
    ({ ids: fixture.ids, kernel: fixture.kernel } = await buildSystemdImages(root, work, versions));
  }, { timeout: 1_200_000 });
  return fixture;
}

/** The load average, for a boot's diagnostic line (TCG boot times follow it). */
export const loadAverage = async () => (await fsp.readFile('/proc/loadavg', 'utf8')).split(' ').slice(0, 3).join(' ');
