/**
 * The pure parts of networking: IPv4 and CIDR parsing, the host's socket tables, port
 * publication overlaps, a Container's hostPort checks, ClusterIP choice and a Service's rule
 * (target ports by name and number, only ready endpoints with an address).
 */
import { describe, expect, it } from '@jest/globals';

import type { Container, Service } from '../../controller/api/types.generated.js';
import { hostPorts } from '../../controller/controllers/container.js';
import {
  chooseClusterIP,
  ClusterIPError,
  serviceRule,
} from '../../controller/controllers/service.js';
import { TerminalError } from '../../controller/reconcile/result.js';
import { conntrackArgs, staleUdpFlows } from '../../runtime-core/src/network/conntrack.js';
import { hostIPsOverlap, parseProcNet } from '../../runtime-core/src/network/host-ports.js';
import {
  cidrAddress,
  cidrContains,
  cidrsOverlap,
  formatIPv4,
  parseCidr,
  parseIPv4,
} from '../../runtime-core/src/network/ipv4.js';
import { FakeClient } from '../fixtures/fakes.js';

describe('IPv4 and CIDR blocks', () => {
  it('parses dotted quads strictly', () => {
    expect(parseIPv4('10.77.0.1')).toBe(0x0a4d0001);
    expect(formatIPv4(0x0a4d0001)).toBe('10.77.0.1');
    for (const bad of [
      '10.77.0',
      '10.77.0.256',
      '010.1.1.1',
      '1.2.3.4.5',
      ' 1.2.3.4',
      'a.b.c.d',
      '',
    ])
      expect(parseIPv4(bad)).toBeUndefined();
  });

  it('parses blocks, refusing host bits and naming the field', () => {
    const c = parseCidr('10.77.0.0/16', 'containerCidr');
    expect(c).toMatchObject({ prefix: 16, size: 65536 });
    expect(cidrAddress(c, 1)).toBe('10.77.0.1');
    expect(cidrContains(c, parseIPv4('10.77.255.255') ?? 0)).toBe(true);
    expect(cidrContains(c, parseIPv4('10.78.0.0') ?? 0)).toBe(false);
    expect(cidrsOverlap(c, parseCidr('10.77.128.0/17', 'x'))).toBe(true);
    expect(cidrsOverlap(c, parseCidr('10.78.0.0/16', 'x'))).toBe(false);
    expect(() => parseCidr('10.77.0.1/16', '--container-cidr')).toThrow(
      '--container-cidr: 10.77.0.1/16 has host bits set: the block is 10.77.0.0/16',
    );
    expect(() => parseCidr('10.77.0.0/33', 'f')).toThrow('f: "10.77.0.0/33" is not an IPv4 CIDR');
    expect(() => parseCidr('10.77.0.0', 'f')).toThrow('not an IPv4 CIDR');
  });
});

describe('the host socket tables', () => {
  const tcp = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F91 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 4243 1 0000000000000000 100 0 0 10 0
`;
  it('finds listening TCP sockets (not connected ones) with their address, port and inode', () => {
    expect(parseProcNet(tcp, 'tcp', false)).toEqual([
      { protocol: 'tcp', address: '127.0.0.1', port: 8080, inode: 4242 },
    ]);
  });

  it('decodes IPv6 wildcards and v4-mapped addresses', () => {
    const v6 = `  sl  local_address                         remote_address                        st
   0: 00000000000000000000000000000000:0BB8 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 99 1
   1: 0000000000000000FFFF00000100007F:0BB9 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 98 1
`;
    expect(parseProcNet(v6, 'tcp', true).map((s) => [s.address, s.port])).toEqual([
      ['::', 3000],
      ['::ffff:127.0.0.1', 3001],
    ]);
  });

  it('treats an unset hostIP (and 0.0.0.0) as every address', () => {
    expect(hostIPsOverlap(undefined, '127.0.0.1')).toBe(true);
    expect(hostIPsOverlap('0.0.0.0', '10.0.0.1')).toBe(true);
    expect(hostIPsOverlap('10.0.0.1', '10.0.0.2')).toBe(false);
  });
});

const container = (spec: Record<string, unknown>, name = 'web'): Container => ({
  apiVersion: 'conductor.dev/v1alpha1',
  kind: 'Container',
  metadata: { name, namespace: 'ns', labels: { app: 'web' } },
  spec: {
    image: 'busybox',
    network: 'bridge',
    restartPolicy: 'Always',
    terminationGracePeriodSeconds: 1,
    ...spec,
  } as Container['spec'],
});

describe("a Container's hostPorts", () => {
  it('maps published ports for portmap, UDP and a hostIP included', () => {
    expect(
      hostPorts(
        container({
          ports: [
            { name: 'http', containerPort: 8080, hostPort: 3000 },
            { containerPort: 53, protocol: 'UDP', hostPort: 5353, hostIP: '127.0.0.1' },
            { containerPort: 9090 },
          ],
        }),
      ),
    ).toEqual([
      { hostPort: 3000, containerPort: 8080, protocol: 'tcp' },
      { hostPort: 5353, containerPort: 53, protocol: 'udp', hostIP: '127.0.0.1' },
    ]);
  });

  it('refuses duplicates, a bad hostIP and hostPort without a bridge, naming the field', () => {
    const bad = (spec: Record<string, unknown>): string => {
      try {
        hostPorts(container(spec));
      } catch (err) {
        expect(err).toBeInstanceOf(TerminalError);
        return (err as Error).message;
      }
      return 'no error';
    };
    expect(bad({ ports: [{ containerPort: 80 }, { containerPort: 80 }] })).toContain(
      'spec.ports[1]: containerPort 80/TCP is listed twice (spec.ports[0])',
    );
    expect(
      bad({
        ports: [
          { containerPort: 80, hostPort: 1 },
          { containerPort: 81, hostPort: 1 },
        ],
      }),
    ).toContain('spec.ports[1].hostPort: 1/TCP is published twice');
    expect(bad({ ports: [{ containerPort: 80, hostPort: 8, hostIP: 'localhost' }] })).toContain(
      'spec.ports[0].hostIP: "localhost" is not an IPv4 address',
    );
    expect(bad({ network: 'host', ports: [{ containerPort: 80, hostPort: 8 }] })).toContain(
      'spec.ports[0].hostPort: needs network "bridge"',
    );
  });
});

function service(
  name: string,
  spec: Partial<Service['spec']>,
  status?: Service['status'],
): Service {
  return {
    apiVersion: 'conductor.dev/v1alpha1',
    kind: 'Service',
    metadata: { name, namespace: 'ns' },
    spec: { ports: [{ port: 80 }], ...spec } as Service['spec'],
    ...(status ? { status } : {}),
  };
}

describe('ClusterIPs', () => {
  it('allocates a stable free address, keeps the one a Service has, and checks spec.clusterIP', () => {
    const client = new FakeClient();
    const a = client.apply(service('a', {}));
    const ip = chooseClusterIP(client, a, '10.78.0.0/16');
    expect(cidrContains(parseCidr('10.78.0.0/16', 'r'), parseIPv4(ip) ?? 0)).toBe(true);
    expect(chooseClusterIP(client, a, '10.78.0.0/16')).toBe(ip); // the same every time
    client.apply({ ...a, status: { clusterIP: ip } });
    expect(chooseClusterIP(client, client.get('Service', 'ns/a') ?? a, '10.78.0.0/16')).toBe(ip);
    client.apply(service('b', { clusterIP: ip }));
    expect(() =>
      chooseClusterIP(client, client.get('Service', 'ns/b') ?? a, '10.78.0.0/16'),
    ).toThrow(ClusterIPError);
    const c = service('c', { clusterIP: '10.99.0.1' });
    expect(() => chooseClusterIP(client, c, '10.78.0.0/16')).toThrow(
      'spec.clusterIP: 10.99.0.1 is not a usable address of the service range 10.78.0.0/16',
    );
    expect(() => chooseClusterIP(client, service('d', { clusterIP: 'x' }), '10.78.0.0/16')).toThrow(
      'spec.clusterIP: "x" is not an IPv4 address',
    );
    // A /29 has 5 usable addresses (not the network, .1 or the last): the sixth is refused.
    const small = new FakeClient();
    for (let i = 0; i < 5; i++) {
      const s = small.apply(service(`s${i}`, {}));
      small.apply({ ...s, status: { clusterIP: chooseClusterIP(small, s, '10.78.0.0/29') } });
    }
    expect(() => chooseClusterIP(small, service('s5', {}), '10.78.0.0/29')).toThrow('is full');
  });
});

describe("a Service's rule", () => {
  it('sends each port to the ready members with an address on the resolved target port', () => {
    const client = new FakeClient();
    const ready = (c: Container, ip: string): Container => ({
      ...c,
      status: {
        phase: 'Running',
        ip,
        conditions: [
          {
            type: 'Ready',
            status: 'True',
            reason: 'ContainerRunning',
            message: '',
            lastTransitionTime: '2026-12-01T00:00:00Z',
          },
        ],
      },
    });
    client.apply(
      ready(container({ ports: [{ name: 'http', containerPort: 8080 }] }, 'w1'), '10.77.0.3'),
    );
    client.apply(
      ready(container({ ports: [{ name: 'other', containerPort: 9 }] }, 'w2'), '10.77.0.4'),
    );
    client.apply(container({ ports: [{ name: 'http', containerPort: 8080 }] }, 'w3')); // not ready
    const plan = serviceRule(
      client,
      service('web', {
        selector: { app: 'web' },
        ports: [
          { name: 'http', port: 80, targetPort: 'http', hostPort: 3000, protocol: 'TCP' },
          { name: 'raw', port: 81, targetPort: 7, protocol: 'UDP' },
        ],
      }),
      '10.78.0.9',
    );
    expect(plan.rule).toEqual({
      key: 'ns/web',
      clusterIP: '10.78.0.9',
      ports: [
        {
          name: 'http',
          protocol: 'TCP',
          port: 80,
          hostPort: 3000,
          endpoints: [{ ip: '10.77.0.3', port: 8080 }],
        },
        {
          name: 'raw',
          protocol: 'UDP',
          port: 81,
          endpoints: [
            { ip: '10.77.0.3', port: 7 },
            { ip: '10.77.0.4', port: 7 },
          ],
        },
      ],
    });
    expect(plan.problems).toEqual([
      'spec.ports[0].targetPort: "http" is not a port name of Container w2',
    ]);
    expect(plan.hostPorts).toEqual([{ hostPort: 3000, containerPort: 80, protocol: 'tcp' }]);
  });
});

describe('UDP flows of endpoints that left', () => {
  const rule = (eps: string[], extra: Record<string, unknown> = {}) => ({
    key: 'ns/dns',
    clusterIP: '10.78.0.10',
    ports: [
      {
        protocol: 'UDP' as const,
        port: 53,
        hostPort: 5353,
        endpoints: eps.map((ip) => ({ ip, port: 53 })),
      },
      { protocol: 'TCP' as const, port: 53, endpoints: eps.map((ip) => ({ ip, port: 53 })) },
    ],
    ...extra,
  });

  it('names the UDP endpoints a change dropped, on the ClusterIP and the hostPort, never TCP', () => {
    expect(staleUdpFlows(rule(['10.77.0.2', '10.77.0.3']), rule(['10.77.0.3']))).toEqual([
      { vip: '10.78.0.10', port: 53, endpoint: '10.77.0.2' },
      { port: 5353, endpoint: '10.77.0.2' },
    ]);
    expect(staleUdpFlows(rule(['10.77.0.2']), rule(['10.77.0.2']))).toEqual([]);
    expect(staleUdpFlows(undefined, rule(['10.77.0.2']))).toEqual([]);
    // The Service gone, or its ClusterIP changed: every flow of the old address.
    expect(staleUdpFlows(rule(['10.77.0.2']), undefined)).toHaveLength(2);
    expect(
      staleUdpFlows(rule(['10.77.0.2']), rule(['10.77.0.2'], { clusterIP: '10.78.0.11' })),
    ).toEqual([{ vip: '10.78.0.10', port: 53, endpoint: '10.77.0.2' }]);
  });

  it('deletes them as kube-proxy does', () => {
    expect(conntrackArgs({ vip: '10.78.0.10', port: 53, endpoint: '10.77.0.2' })).toEqual([
      '-D',
      '-p',
      'udp',
      '--orig-dst',
      '10.78.0.10',
      '--orig-port-dst',
      '53',
      '--reply-src',
      '10.77.0.2',
    ]);
  });
});
