// Bridge networking like Docker's default: a Linux bridge (drydock0, 10.89.0.0/24) with NAT for
// outbound traffic, and per container a network namespace joined to the bridge by a veth pair.
// IP allocation is host-global (one file per bridge under /run/drydock, locked), because every
// store on this machine shares the bridge; /run is cleared on reboot together with the netns.
import { promises as fsp } from 'node:fs';
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import path from 'node:path';
// proper-lockfile (with graceful-fs and signal-exit) loads on the first lock, not at CLI start-up.
const loadLockfile = async () => (await import('proper-lockfile')).default;
import { UserError } from '../util/errors.js';
import { readJsonIfExists, writeJson } from '../util/fs.js';

const run = promisify(execFile);

export interface BridgeConfig {
  name: string;
  /** IPv4 /24 network address, e.g. 10.89.0.0. */
  subnet: string;
}

/** The bridge in use: DRYDOCK_BRIDGE / DRYDOCK_SUBNET override the defaults (tests use their own). */
export function bridgeConfig(): BridgeConfig {
  const name = process.env.DRYDOCK_BRIDGE || 'drydock0';
  const subnet = process.env.DRYDOCK_SUBNET || '10.89.0.0';
  if (!/^[a-zA-Z0-9_.-]{1,15}$/.test(name)) throw new UserError(`invalid bridge name "${name}" (at most 15 characters)`);
  if (!/^\d+\.\d+\.\d+\.0$/.test(subnet)) throw new UserError(`DRYDOCK_SUBNET must be a /24 network address like 10.89.0.0, got "${subnet}"`);
  return { name, subnet };
}

const prefix = (subnet: string) => subnet.split('.').slice(0, 3).join('.');
const RUN_DIR = '/run/drydock/networks';

export interface ContainerNetwork {
  bridge: string;
  subnet: string;
  netns: string;
  netnsPath: string;
  ipAddress: string;
  gateway: string;
  macAddress: string;
  hostVeth: string;
}

/** Runs several `ip` commands in one process (ip -batch), optionally inside a netns. */
async function ipBatch(lines: string[], netns?: string): Promise<void> {
  const args = [...(netns ? ['-n', netns] : []), '-batch', '-'];
  await new Promise<void>((resolve, reject) => {
    const child = spawn('ip', args, { stdio: ['pipe', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d) => (err += d));
    child.on('error', (e) => reject(new UserError(`cannot run ip (apt-get install iproute2): ${e.message}`, { cause: e })));
    child.on('close', (code) => (code === 0 ? resolve() : reject(new UserError(`network setup failed: ${err.trim()}`))));
    child.stdin.end(lines.join('\n') + '\n');
  });
}

async function withLock<T>(file: string, fn: () => Promise<T>): Promise<T> {
  await fsp.mkdir(path.dirname(file), { recursive: true });
  await fsp.writeFile(file, '', { flag: 'a' });
  const release = await (await loadLockfile()).lock(file, { retries: { retries: 300, minTimeout: 5, maxTimeout: 50 }, stale: 20_000, realpath: false });
  try { return await fn(); } finally { await release(); }
}

/** Creates the bridge, its gateway address and the NAT rule once (idempotent, locked). */
export async function ensureBridge(cfg: BridgeConfig = bridgeConfig()): Promise<void> {
  if (await linkExists(cfg.name)) return;
  await withLock(path.join(RUN_DIR, `${cfg.name}.lock`), async () => {
    if (await linkExists(cfg.name)) return;
    const gw = `${prefix(cfg.subnet)}.1`;
    await ipBatch([`link add ${cfg.name} type bridge`, `addr add ${gw}/24 dev ${cfg.name}`, `link set ${cfg.name} up`]);
    await fsp.writeFile('/proc/sys/net/ipv4/ip_forward', '1').catch(() => {});
    const rule = ['-t', 'nat', 'POSTROUTING', '-s', `${cfg.subnet}/24`, '!', '-o', cfg.name, '-j', 'MASQUERADE', '-m', 'comment', '--comment', `drydock ${cfg.name}`];
    try {
      await run('iptables', ['-w', ...rule.slice(0, 2), '-C', ...rule.slice(2)]);
    } catch {
      await run('iptables', ['-w', ...rule.slice(0, 2), '-A', ...rule.slice(2)]).catch((e) => {
        throw new UserError(`cannot add the NAT rule for ${cfg.name} (iptables): ${String(e.stderr ?? e.message).trim()}`, { cause: e });
      });
    }
  });
}

/** Removes a bridge and its NAT rule (tests clean up their private bridges). */
export async function removeBridge(cfg: BridgeConfig): Promise<void> {
  await run('ip', ['link', 'del', cfg.name]).catch(() => {});
  await run('iptables', ['-w', '-t', 'nat', '-D', 'POSTROUTING', '-s', `${cfg.subnet}/24`, '!', '-o', cfg.name, '-j', 'MASQUERADE', '-m', 'comment', '--comment', `drydock ${cfg.name}`]).catch(() => {});
  await fsp.rm(path.join(RUN_DIR, `${cfg.name}.json`), { force: true });
  await fsp.rm(path.join(RUN_DIR, `${cfg.name}.lock`), { force: true });
}

async function linkExists(name: string): Promise<boolean> {
  try { await fsp.access(`/sys/class/net/${name}`); return true; } catch { return false; }
}

// ip -> container id. Atomic (rename) but not fsynced: the file describes namespaces that do not
// survive a reboot either.
type Allocations = Record<string, string>;

async function allocate(cfg: BridgeConfig, containerId: string): Promise<string> {
  const file = path.join(RUN_DIR, `${cfg.name}.json`);
  return withLock(path.join(RUN_DIR, `${cfg.name}.lock`), async () => {
    const used = (await readJsonIfExists<Allocations>(file)) ?? {};
    for (let host = 2; host < 255; host++) {
      const addr = `${prefix(cfg.subnet)}.${host}`;
      if (used[addr]) continue;
      used[addr] = containerId;
      await writeJson(file, used, false);
      return addr;
    }
    throw new UserError(`no free address left on ${cfg.name} (${cfg.subnet}/24); remove stopped containers`);
  });
}

async function release(bridge: string, addr: string, containerId: string): Promise<void> {
  const file = path.join(RUN_DIR, `${bridge}.json`);
  await withLock(path.join(RUN_DIR, `${bridge}.lock`), async () => {
    const used = (await readJsonIfExists<Allocations>(file)) ?? {};
    if (used[addr] === containerId) { delete used[addr]; await writeJson(file, used, false); }
  });
}

/**
 * Deletes a container's network namespace left by a runner that was killed (kill -9 of the
 * monitor, a crash) before it could tear down: `ip netns add` would fail with "File exists".
 */
export async function removeStaleNetns(containerId: string): Promise<void> {
  const netns = `drydock-${containerId.slice(0, 12)}`;
  if (await fsp.access(path.join('/run/netns', netns)).then(() => true, () => false)) await run('ip', ['netns', 'del', netns]).catch(() => {});
}

/** A network namespace on the bridge with an address, default route and loopback. */
export async function setupBridgeNetwork(containerId: string, cfg: BridgeConfig = bridgeConfig()): Promise<ContainerNetwork> {
  await ensureBridge(cfg);
  const short = containerId.slice(0, 12);
  const netns = `drydock-${short}`;
  const hostVeth = `dd${containerId.slice(0, 11)}`;
  const peer = `dp${containerId.slice(0, 11)}`;
  const addr = await allocate(cfg, containerId);
  const gateway = `${prefix(cfg.subnet)}.1`;
  // Deterministic MAC from the IP like Docker (02:42:ip).
  const mac = ['02', '42', ...addr.split('.').map((o) => Number(o).toString(16).padStart(2, '0'))].join(':');
  try {
    await ipBatch([
      `netns add ${netns}`,
      `link add ${hostVeth} type veth peer name ${peer}`,
      `link set ${peer} netns ${netns}`,
      `link set ${hostVeth} master ${cfg.name} up`,
    ]);
    await ipBatch([
      `link set ${peer} name eth0`,
      `link set eth0 address ${mac}`,
      `addr add ${addr}/24 dev eth0`,
      'link set lo up',
      'link set eth0 up',
      `route add default via ${gateway}`,
    ], netns);
  } catch (e) {
    await run('ip', ['netns', 'del', netns]).catch(() => {});
    await run('ip', ['link', 'del', hostVeth]).catch(() => {});
    await release(cfg.name, addr, containerId);
    throw e;
  }
  return { bridge: cfg.name, subnet: cfg.subnet, netns, netnsPath: `/run/netns/${netns}`, ipAddress: addr, gateway, macAddress: mac, hostVeth };
}

/** Deletes the namespace (which removes the veth pair) and frees the address. Idempotent. */
export async function teardownBridgeNetwork(net: ContainerNetwork, containerId: string): Promise<void> {
  await run('ip', ['netns', 'del', net.netns]).catch(() => {});
  // Deleting the namespace destroys the veth pair; only a half-made setup leaves the host end.
  if (await linkExists(net.hostVeth)) await run('ip', ['link', 'del', net.hostVeth]).catch(() => {});
  await release(net.bridge, net.ipAddress, containerId).catch(() => {});
}
