// What createRuntimeSpec puts in the OCI spec for each kind of container: namespaces, the /sys
// and cgroup mounts, the host files, seccomp and capabilities. No runc: the spec is the contract
// (test/builder/security.test.ts checks what a RUN can do under it in real runc).
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { tempDir } from '../helpers/env.js';
import { createRuntimeSpec, DEFAULT_CAPABILITIES, type OciMount, type OciSpec, type RuntimeSpecOptions } from '../../src/runtime/spec.js';

let rootfs: string;
let hostFiles: string;
before(async () => {
  const dir = tempDir('drydock-spec-');
  rootfs = path.join(dir, 'rootfs');
  hostFiles = path.join(dir, 'hostfiles');
  await fsp.mkdir(path.join(rootfs, 'etc'), { recursive: true });
  await fsp.writeFile(path.join(rootfs, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
  await fsp.writeFile(path.join(rootfs, 'etc/group'), 'root:x:0:\n');
});

function spec(opts: Partial<RuntimeSpecOptions>): Promise<OciSpec> {
  return createRuntimeSpec({ rootfs, args: ['true'], env: [], cwd: '/', user: '0:0', network: 'none', hostFilesDir: hostFiles, ...opts });
}

const mountAt = (s: OciSpec, dest: string): OciMount | undefined => s.mounts.find((m) => m.destination === dest);

interface Want {
  namespaces: string[];
  /** /sys and /sys/fs/cgroup: type and whether read-only. */
  sys: { type: string; ro: boolean };
  cgroup: { type: string; ro: boolean };
  seccomp: boolean;
  capabilities: 'default' | 'all';
}

// The builder's RUN is `network: 'host'` with the defaults (src/builder/ops/run.ts).
const cases: { name: string; opts: Partial<RuntimeSpecOptions>; want: Want }[] = [
  {
    name: 'host network (a build\'s RUN): a fresh read-only sysfs and the container\'s cgroups, read-only',
    opts: { network: 'host' },
    want: { namespaces: ['pid', 'ipc', 'mount'], sys: { type: 'sysfs', ro: true }, cgroup: { type: 'cgroup', ro: true }, seccomp: true, capabilities: 'default' },
  },
  {
    name: 'host network with a hostname: its own UTS namespace',
    opts: { network: 'host', hostname: 'box' },
    want: { namespaces: ['pid', 'ipc', 'uts', 'mount'], sys: { type: 'sysfs', ro: true }, cgroup: { type: 'cgroup', ro: true }, seccomp: true, capabilities: 'default' },
  },
  {
    name: 'network none: its own network namespace, the same /sys',
    opts: { network: 'none' },
    want: { namespaces: ['pid', 'ipc', 'uts', 'mount', 'network'], sys: { type: 'sysfs', ro: true }, cgroup: { type: 'cgroup', ro: true }, seccomp: true, capabilities: 'default' },
  },
  {
    name: 'a network namespace of its own (bridge)',
    opts: { network: { netnsPath: '/run/netns/x' } },
    want: { namespaces: ['pid', 'ipc', 'uts', 'mount', 'network'], sys: { type: 'sysfs', ro: true }, cgroup: { type: 'cgroup', ro: true }, seccomp: true, capabilities: 'default' },
  },
  {
    name: '--privileged with host network: /sys and the cgroups writable, no seccomp, every capability',
    opts: { network: 'host', privileged: true },
    want: { namespaces: ['pid', 'ipc', 'mount'], sys: { type: 'sysfs', ro: false }, cgroup: { type: 'cgroup', ro: false }, seccomp: false, capabilities: 'all' },
  },
  {
    name: 'seccomp=unconfined keeps the read-only /sys',
    opts: { network: 'host', seccomp: 'unconfined' },
    want: { namespaces: ['pid', 'ipc', 'mount'], sys: { type: 'sysfs', ro: true }, cgroup: { type: 'cgroup', ro: true }, seccomp: false, capabilities: 'default' },
  },
];

for (const c of cases) {
  test(`spec: ${c.name}`, async () => {
    const s = await spec(c.opts);
    assert.deepEqual(s.linux.namespaces.map((n) => n.type), c.want.namespaces);
    const sys = mountAt(s, '/sys');
    const cgroup = mountAt(s, '/sys/fs/cgroup');
    assert.deepEqual({ type: sys?.type, ro: !!sys?.options?.includes('ro') }, c.want.sys);
    assert.deepEqual({ type: cgroup?.type, ro: !!cgroup?.options?.includes('ro') }, c.want.cgroup);
    // The cgroup mount comes after /sys, which it is mounted on.
    assert.ok(s.mounts.indexOf(sys!) < s.mounts.indexOf(cgroup!));
    // Nothing of the host's /sys is bound in: its submounts (the cgroup hierarchies) would be
    // writable whatever the bind's own `ro` says.
    assert.deepEqual(s.mounts.filter((m) => m.type === 'bind' && m.source?.startsWith('/sys')), []);
    assert.equal(!!s.linux.seccomp, c.want.seccomp);
    if (c.want.capabilities === 'default') assert.deepEqual(s.process.capabilities?.bounding, DEFAULT_CAPABILITIES);
    else assert.ok(s.process.capabilities!.bounding.length > DEFAULT_CAPABILITIES.length);
    if (c.want.capabilities === 'default') {
      assert.ok(s.linux.maskedPaths?.includes('/sys/firmware'));
      assert.ok(s.linux.readonlyPaths?.includes('/proc/sys'));
    }
  });
}

test('spec: the host files are bound from the host-files dir, one bind each', async () => {
  const s = await spec({ network: 'host' });
  for (const f of ['hosts', 'hostname', 'resolv.conf']) {
    const m = mountAt(s, `/etc/${f}`);
    assert.equal(m?.type, 'bind');
    assert.equal(m?.source, path.join(hostFiles, f));
  }
});

test('spec: a user mount at /sys/fs/cgroup replaces the default one', async () => {
  const s = await spec({ network: 'host', mounts: [{ destination: '/sys/fs/cgroup', type: 'tmpfs', source: 'tmpfs', options: ['ro'] }] });
  assert.deepEqual(s.mounts.filter((m) => m.destination === '/sys/fs/cgroup').map((m) => m.type), ['tmpfs']);
});
