// -p parsing (table) and the userland proxy over real TCP and UDP sockets on 127.0.0.1.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import dgram from 'node:dgram';
import { parsePublish, publishAll, startPortProxy } from '../../src/runtime/ports.js';

const good: [string, ReturnType<typeof parsePublish>][] = [
  ['80', [{ hostIp: '0.0.0.0', hostPort: 0, containerPort: 80, protocol: 'tcp' }]],
  ['8080:80', [{ hostIp: '0.0.0.0', hostPort: 8080, containerPort: 80, protocol: 'tcp' }]],
  ['127.0.0.1:8080:80', [{ hostIp: '127.0.0.1', hostPort: 8080, containerPort: 80, protocol: 'tcp' }]],
  ['127.0.0.1::80', [{ hostIp: '127.0.0.1', hostPort: 0, containerPort: 80, protocol: 'tcp' }]],
  ['53:53/udp', [{ hostIp: '0.0.0.0', hostPort: 53, containerPort: 53, protocol: 'udp' }]],
  ['[::1]:8080:80', [{ hostIp: '::1', hostPort: 8080, containerPort: 80, protocol: 'tcp' }]],
  ['9000-9001:8000-8001', [
    { hostIp: '0.0.0.0', hostPort: 9000, containerPort: 8000, protocol: 'tcp' },
    { hostIp: '0.0.0.0', hostPort: 9001, containerPort: 8001, protocol: 'tcp' },
  ]],
];
const bad: [string, RegExp][] = [
  ['80/sctp', /invalid protocol/],
  ['1:2:3:4', /expected \[ip:\]/],
  ['x:80', /invalid port "x"/],
  ['0', /invalid port range/],
  ['70000', /invalid port range/],
  ['9000-9002:8000-8001', /ranges differ/],
  ['not-an-ip:80:80', /invalid host IP/],
];

for (const [spec, want] of good) test(`-p ${spec}`, () => assert.deepEqual(parsePublish(spec), want));
for (const [spec, err] of bad) test(`-p ${spec} is refused`, () => assert.throws(() => parsePublish(spec), err));

test('-P publishes every EXPOSEd port on a free port', () => {
  const byPort = (a: { containerPort: number }, b: { containerPort: number }) => a.containerPort - b.containerPort;
  assert.deepEqual(publishAll({ '80/tcp': {}, '53/udp': {}, '8080': {} }).sort(byPort), [
    { hostIp: '0.0.0.0', hostPort: 0, containerPort: 53, protocol: 'udp' },
    { hostIp: '0.0.0.0', hostPort: 0, containerPort: 80, protocol: 'tcp' },
    { hostIp: '0.0.0.0', hostPort: 0, containerPort: 8080, protocol: 'tcp' },
  ]);
});

test('the proxy forwards TCP and UDP both ways and reports the ports it bound', async () => {
  const tcpEcho = net.createServer((s) => s.pipe(s));
  await new Promise<void>((r) => tcpEcho.listen(0, '127.0.0.1', r));
  const udpEcho = dgram.createSocket('udp4');
  udpEcho.on('message', (m, rinfo) => udpEcho.send(Buffer.concat([Buffer.from('echo:'), m]), rinfo.port, rinfo.address));
  await new Promise<void>((r) => udpEcho.bind(0, '127.0.0.1', r));
  const tcpPort = (tcpEcho.address() as net.AddressInfo).port;
  const udpPort = udpEcho.address().port;
  // Both ends on loopback: the "container" address is 127.0.0.1 here.
  const proxy = await startPortProxy([
    { hostIp: '127.0.0.1', hostPort: 0, containerPort: tcpPort, protocol: 'tcp' },
    { hostIp: '127.0.0.1', hostPort: 0, containerPort: udpPort, protocol: 'udp' },
  ], '127.0.0.1');
  try {
    const [t, u] = proxy.bindings;
    assert.ok(t!.hostPort > 0 && t!.hostPort !== tcpPort);
    const big = Buffer.alloc(3 << 20, 7);
    const got = await new Promise<Buffer>((resolve, reject) => {
      const c = net.connect(t!.hostPort, '127.0.0.1', () => c.end(big));
      const parts: Buffer[] = [];
      c.on('data', (d) => parts.push(d));
      c.on('end', () => resolve(Buffer.concat(parts)));
      c.on('error', reject);
    });
    assert.equal(got.length, big.length);
    assert.ok(got.equals(big));
    const client = dgram.createSocket('udp4');
    const reply = await new Promise<string>((resolve) => {
      client.on('message', (m) => resolve(m.toString()));
      client.send('ping', u!.hostPort, '127.0.0.1');
    });
    client.close();
    assert.equal(reply, 'echo:ping');
    // The host port is taken while the proxy runs.
    await assert.rejects(startPortProxy([{ hostIp: '127.0.0.1', hostPort: t!.hostPort, containerPort: 1, protocol: 'tcp' }], '127.0.0.1'), /already allocated/);
  } finally {
    await proxy.close();
    tcpEcho.close();
    udpEcho.close();
  }
});
