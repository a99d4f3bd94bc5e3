// Published ports (-p / -P): parsing Docker's syntax and the userland proxy. The proxy is an
// in-process TCP/UDP forwarder living in the container's monitor (portable: no iptables DNAT, and
// it also answers on 127.0.0.1, which DNAT rules do not reach without route_localnet).
import net from 'node:net';
import dgram from 'node:dgram';
import { UserError } from '../util/errors.js';

export interface PortBinding {
  hostIp: string;
  /** 0 = pick a free port (filled in once the proxy listens). */
  hostPort: number;
  containerPort: number;
  protocol: 'tcp' | 'udp';
}

/** Parses `-p [ip:][hostPort:]containerPort[/tcp|udp]` (ranges of equal length too). */
export function parsePublish(spec: string): PortBinding[] {
  let rest = spec;
  let protocol: 'tcp' | 'udp' = 'tcp';
  const slash = rest.lastIndexOf('/');
  if (slash >= 0) {
    const p = rest.slice(slash + 1).toLowerCase();
    if (p !== 'tcp' && p !== 'udp') throw new UserError(`invalid protocol in -p ${spec}: ${p} (tcp or udp)`);
    protocol = p;
    rest = rest.slice(0, slash);
  }
  let hostIp = '0.0.0.0';
  let hostPart = '';
  let ctrPart: string;
  const bracket = rest.match(/^\[([^\]]+)\]:(.*)$/);
  if (bracket) { hostIp = bracket[1]!; rest = bracket[2]!; }
  const parts = rest.split(':');
  if (parts.length === 1) ctrPart = parts[0]!;
  else if (parts.length === 2) { hostPart = parts[0]!; ctrPart = parts[1]!; }
  else if (parts.length === 3) { hostIp = parts[0] || '0.0.0.0'; hostPart = parts[1]!; ctrPart = parts[2]!; }
  else throw new UserError(`invalid -p ${spec}: expected [ip:][hostPort:]containerPort[/protocol]`);
  if (hostIp !== '0.0.0.0' && net.isIP(hostIp) === 0) throw new UserError(`invalid host IP in -p ${spec}: ${hostIp}`);
  const ctr = parseRange(ctrPart, spec);
  const host = hostPart ? parseRange(hostPart, spec) : undefined;
  if (host && host.length !== ctr.length) throw new UserError(`invalid -p ${spec}: host and container port ranges differ in length`);
  return ctr.map((c, i) => ({ hostIp, hostPort: host ? host[i]! : 0, containerPort: c, protocol }));
}

function parseRange(s: string, spec: string): number[] {
  const m = s.match(/^(\d+)(?:-(\d+))?$/);
  if (!m) throw new UserError(`invalid port "${s}" in -p ${spec}`);
  const a = Number(m[1]);
  const b = m[2] ? Number(m[2]) : a;
  if (a < 1 || b > 65535 || b < a) throw new UserError(`invalid port range "${s}" in -p ${spec}`);
  return Array.from({ length: b - a + 1 }, (_, i) => a + i);
}

/** -P: every EXPOSEd port to a free host port. */
export function publishAll(exposed: Record<string, unknown> | undefined): PortBinding[] {
  return Object.keys(exposed ?? {}).map((k) => {
    const [port, proto = 'tcp'] = k.split('/');
    return { hostIp: '0.0.0.0', hostPort: 0, containerPort: Number(port), protocol: proto === 'udp' ? 'udp' : 'tcp' } as PortBinding;
  }).filter((b) => Number.isInteger(b.containerPort) && b.containerPort > 0);
}

export interface RunningProxy { bindings: PortBinding[]; close(): Promise<void> }

/** Starts one listener per binding forwarding to `targetIp`; resolves with the real host ports. */
export async function startPortProxy(bindings: PortBinding[], targetIp: string): Promise<RunningProxy> {
  const closers: (() => Promise<void>)[] = [];
  const actual: PortBinding[] = [];
  try {
    for (const b of bindings) {
      if (b.protocol === 'tcp') {
        // Half-open on both legs: a client that shuts down its sending side still gets the reply.
        const server = net.createServer({ allowHalfOpen: true }, (client) => {
          const upstream = net.connect({ host: targetIp, port: b.containerPort, allowHalfOpen: true });
          client.pipe(upstream).pipe(client);
          const end = () => { client.destroy(); upstream.destroy(); };
          client.on('error', end);
          upstream.on('error', end);
        });
        await new Promise<void>((resolve, reject) => {
          server.once('error', (e) => reject(new UserError(`cannot publish ${b.hostIp}:${b.hostPort}/tcp: ${(e as NodeJS.ErrnoException).code === 'EADDRINUSE' ? 'port is already allocated' : e.message}`, { cause: e })));
          server.listen({ host: b.hostIp, port: b.hostPort, exclusive: true }, resolve);
        });
        actual.push({ ...b, hostPort: (server.address() as net.AddressInfo).port });
        closers.push(() => new Promise((r) => server.close(() => r())));
      } else {
        const sock = dgram.createSocket(net.isIPv6(b.hostIp) ? 'udp6' : 'udp4');
        const flows = new Map<string, dgram.Socket>();
        sock.on('message', (msg, rinfo) => {
          const key = `${rinfo.address}:${rinfo.port}`;
          let up = flows.get(key);
          if (!up) {
            up = dgram.createSocket('udp4');
            up.on('message', (reply) => sock.send(reply, rinfo.port, rinfo.address));
            up.on('error', () => { flows.delete(key); });
            flows.set(key, up);
          }
          up.send(msg, b.containerPort, targetIp);
        });
        await new Promise<void>((resolve, reject) => {
          sock.once('error', (e) => reject(new UserError(`cannot publish ${b.hostIp}:${b.hostPort}/udp: ${e.message}`, { cause: e })));
          sock.bind(b.hostPort, b.hostIp, resolve);
        });
        actual.push({ ...b, hostPort: sock.address().port });
        closers.push(async () => { for (const f of flows.values()) f.close(); sock.close(); });
      }
    }
  } catch (e) {
    for (const c of closers) await c();
    throw e;
  }
  return { bindings: actual, close: async () => { for (const c of closers) await c(); } };
}
