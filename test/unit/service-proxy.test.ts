/**
 * The service table's rendering and transactions (runtime-core/src/network/service-proxy.ts),
 * with nft replaced by a recording fake: which commands an upsert, remove and sync produce,
 * that a change touches only its own service, that its size does not grow with the number of
 * services, and the validation errors. The kernel side is test/integration/service-proxy.test.ts.
 */
import { describe, expect, it } from '@jest/globals';

import {
  endpointChainName,
  parseLiveTable,
  renderService,
  resolveOptions,
  serviceChainName,
  ServiceProxy,
  ServiceProxyError,
  serviceTransaction,
  syncTransaction,
  validateService,
  type CommandResult,
  type ServiceProxyOptions,
  type ServiceRule,
} from '../../runtime-core/src/network/service-proxy.js';

const OPTS: ServiceProxyOptions = {
  table: 'conductor',
  containerCidr: '10.77.0.0/16',
  serviceCidr: '10.78.0.0/16',
  bridge: 'conductor0',
  masqueradeIntraSubnet: false,
};
const RESOLVED = resolveOptions(OPTS);

/** A service `ns/svc-NNNN` on 10.78.x.y with `eps` endpoints on port 8080. */
function service(i: number, eps = 3, hostPort?: number): ServiceRule {
  const n = String(i).padStart(4, '0');
  return {
    key: `ns/svc-${n}`,
    clusterIP: `10.78.${Math.floor(i / 250)}.${(i % 250) + 1}`,
    ports: [
      {
        protocol: 'TCP',
        port: 80,
        ...(hostPort !== undefined ? { hostPort } : {}),
        endpoints: Array.from({ length: eps }, (_, j) => ({
          ip: `10.77.${Math.floor(i / 250)}.${j + 2}`,
          port: 8080,
        })),
      },
    ],
  };
}

/** A fake nft: the table starts absent; every `nft -f -` succeeds and is recorded. */
function fakeNft(): { runner: ServiceProxyOptions['runner']; applied: string[]; argv: string[][] } {
  const applied: string[] = [];
  const argv: string[][] = [];
  const runner = (args: string[], stdin?: string): Promise<CommandResult> => {
    argv.push(args);
    if (args.includes('list'))
      return Promise.resolve({
        code: 1,
        stdout: '',
        stderr: 'Error: No such file or directory\nlist table ip conductor',
      });
    if (args.includes('-f')) applied.push(stdin ?? '');
    return Promise.resolve({ code: 0, stdout: '', stderr: '' });
  };
  return { runner, applied, argv };
}

describe('chain names', () => {
  it('are stable, readable, unique per port and endpoint, and start with a letter', () => {
    const a = serviceChainName('default/web', 'TCP', 80);
    expect(a).toBe(serviceChainName('default/web', 'TCP', 80));
    expect(a).toMatch(/^svc-[A-Z2-7]{8}-default\/web\/tcp\/80$/);
    expect(serviceChainName('default/web', 'UDP', 80)).not.toBe(a);
    expect(serviceChainName('default/web', 'TCP', 81)).not.toBe(a);
    const e = endpointChainName('default/web', 'TCP', 80, { ip: '10.77.0.2', port: 8080 });
    expect(e).toMatch(/^ep-[A-Z2-7]{8}-default\/web\/tcp\/80__10\.77\.0\.2\/8080$/);
    expect(endpointChainName('default/web', 'TCP', 80, { ip: '10.77.0.2', port: 8081 })).not.toBe(
      e,
    );
    // The longest key validation allows still fits the kernel's 256-byte limit.
    const long = `${'a'.repeat(63)}/${'b'.repeat(63)}`;
    expect(
      endpointChainName(long, 'UDP', 65535, { ip: '255.255.255.255', port: 65535 }).length,
    ).toBeLessThan(256);
  });
});

describe('renderService', () => {
  it('sends the clusterIP and hostPort to one service chain that picks an endpoint at random', () => {
    const r = renderService(service(1, 2, 8080));
    const svc = serviceChainName('ns/svc-0001', 'TCP', 80);
    expect(r.elements).toEqual([
      {
        map: 'service-ips',
        key: '10.78.0.2 . tcp . 80',
        value: `goto ${svc}`,
        comment: 'ns/svc-0001',
      },
      { map: 'service-hostports', key: 'tcp . 8080', value: `goto ${svc}`, comment: 'ns/svc-0001' },
    ]);
    const [ep1, ep2, svcChain] = r.chains;
    expect(svcChain?.name).toBe(svc);
    expect(svcChain?.rules[0]).toMatch(
      new RegExp(
        `^numgen random mod 2 vmap \\{ 0 : goto ${ep1?.name ?? '-'}, 1 : goto ${ep2?.name ?? '-'} \\} comment "ns/svc-0001 h=[0-9a-f]{16}"$`,
      ),
    );
    expect(ep1?.rules).toEqual([
      'ip saddr 10.77.0.2 jump mark-for-masquerade',
      expect.stringMatching(/^meta l4proto tcp dnat to 10\.77\.0\.2:8080 comment "ns\/svc-0001 h=/),
    ]);
  });

  it('puts a port with no endpoints in the reject maps and makes no chain for it', () => {
    const r = renderService({
      key: 'ns/dns',
      clusterIP: '10.78.0.10',
      ports: [{ name: 'dns', protocol: 'UDP', port: 53, hostPort: 5353, endpoints: [] }],
    });
    expect(r.chains).toEqual([]);
    expect(r.elements).toEqual([
      {
        map: 'no-endpoint-services',
        key: '10.78.0.10 . udp . 53',
        value: 'goto reject-chain',
        comment: 'ns/dns:dns',
      },
      {
        map: 'no-endpoint-hostports',
        key: 'udp . 5353',
        value: 'goto reject-chain',
        comment: 'ns/dns:dns',
      },
    ]);
  });

  it('renders the same endpoints in another order identically', () => {
    const a = service(1, 3);
    const b: ServiceRule = {
      ...a,
      ports: a.ports.map((p) => ({ ...p, endpoints: [...p.endpoints].reverse() })),
    };
    expect(renderService(b)).toEqual(renderService(a));
  });
});

describe('serviceTransaction', () => {
  it('is empty when nothing changed', () => {
    expect(
      serviceTransaction('conductor', renderService(service(1)), renderService(service(1))),
    ).toEqual([]);
  });

  it('changes one endpoint by one chain added, one deleted and the service chain rewritten', () => {
    const before = service(7, 3);
    const after: ServiceRule = {
      ...before,
      ports: before.ports.map((p) => ({
        ...p,
        endpoints: [...p.endpoints.slice(1), { ip: '10.77.9.9', port: 8080 }],
      })),
    };
    const lines = serviceTransaction('conductor', renderService(before), renderService(after));
    const gone = endpointChainName('ns/svc-0007', 'TCP', 80, { ip: '10.77.0.2', port: 8080 });
    const added = endpointChainName('ns/svc-0007', 'TCP', 80, { ip: '10.77.9.9', port: 8080 });
    const svc = serviceChainName('ns/svc-0007', 'TCP', 80);
    expect(lines).toEqual([
      `add chain ip conductor ${added}`,
      `add rule ip conductor ${added} ip saddr 10.77.9.9 jump mark-for-masquerade`,
      expect.stringMatching(/dnat to 10\.77\.9\.9:8080 comment/),
      `flush chain ip conductor ${svc}`,
      expect.stringMatching(new RegExp(`^add rule ip conductor ${svc} numgen random mod 3 vmap`)),
      `delete chain ip conductor ${gone}`,
    ]);
    // The clusterIP's element still points at the same chain: untouched.
    expect(lines.some((l) => l.includes('element'))).toBe(false);
  });

  it('moves a service whose last endpoint went to the reject maps', () => {
    const before = service(3, 1, 9000);
    const after: ServiceRule = {
      ...before,
      ports: before.ports.map((p) => ({ ...p, endpoints: [] })),
    };
    const lines = serviceTransaction('conductor', renderService(before), renderService(after));
    expect(lines.filter((l) => l.startsWith('delete element'))).toEqual([
      'delete element ip conductor service-ips { 10.78.0.4 . tcp . 80 }',
      'delete element ip conductor service-hostports { tcp . 9000 }',
    ]);
    expect(lines.filter((l) => l.startsWith('add element'))).toEqual([
      'add element ip conductor no-endpoint-services { 10.78.0.4 . tcp . 80 comment "ns/svc-0003" : goto reject-chain }',
      'add element ip conductor no-endpoint-hostports { tcp . 9000 comment "ns/svc-0003" : goto reject-chain }',
    ]);
    // Elements go before the chains they point to; the service chain before its endpoint's.
    const deletes = lines.filter((l) => l.startsWith('delete chain'));
    expect(deletes).toHaveLength(2);
    expect(deletes[0]).toContain('svc-');
    expect(lines.indexOf(deletes[0] ?? '')).toBeGreaterThan(
      lines.indexOf('delete element ip conductor service-ips { 10.78.0.4 . tcp . 80 }'),
    );
  });
});

describe('ServiceProxy with a fake nft', () => {
  it('sends one service change as a transaction of the same size for 10 and 1,000 services', async () => {
    const sizes: number[] = [];
    for (const n of [10, 1000]) {
      const { runner, applied } = fakeNft();
      const proxy = new ServiceProxy({ ...OPTS, runner });
      await proxy.sync(Array.from({ length: n }, (_, i) => service(i, 10)));
      expect(applied).toHaveLength(1);
      const changed = service(5, 10);
      const first = changed.ports[0];
      if (!first) throw new Error('no port');
      first.endpoints[0] = { ip: '10.77.100.100', port: 8080 };
      await proxy.upsert(changed);
      const text = proxy.lastTransaction ?? '';
      expect(applied).toHaveLength(2);
      expect(text).toBe(applied[1]);
      // Only ns/svc-0005's chains.
      for (const line of text.trim().split('\n')) expect(line).toMatch(/ns\/svc-0005\//);
      sizes.push(text.length);
    }
    expect(sizes[0]).toBe(sizes[1]);
    expect(sizes[0]).toBeLessThan(3000);
  });

  it('applies nothing for an unchanged upsert, and removes exactly what a service had', async () => {
    const { runner, applied } = fakeNft();
    const proxy = new ServiceProxy({ ...OPTS, runner });
    await proxy.sync([service(1), service(2)]);
    const count = proxy.transactionCount;
    await proxy.upsert(service(2));
    expect(proxy.transactionCount).toBe(count);
    await proxy.remove('ns/svc-0002');
    const text = applied[applied.length - 1] ?? '';
    expect(text).toContain('delete element ip conductor service-ips { 10.78.0.3 . tcp . 80 }');
    expect(text.match(/^delete chain/gm)).toHaveLength(4); // the service chain and 3 endpoints
    expect(text).not.toContain('svc-0001');
    await proxy.remove('ns/svc-0002'); // gone: nothing to do
    expect(proxy.transactionCount).toBe(count + 1);
  });

  it('runs calls one at a time, in call order', async () => {
    const order: string[] = [];
    const runner = async (args: string[], stdin?: string): Promise<CommandResult> => {
      if (args.includes('list'))
        return { code: 1, stdout: '', stderr: 'No such file or directory' };
      const which = /ns\/svc-(\d+)/.exec(stdin ?? '')?.[1] ?? 'sync';
      order.push(`start ${which}`);
      await new Promise((r) => setTimeout(r, which === '0001' ? 30 : 1));
      order.push(`end ${which}`);
      return { code: 0, stdout: '', stderr: '' };
    };
    const proxy = new ServiceProxy({ ...OPTS, runner });
    await proxy.sync([]);
    order.length = 0;
    await Promise.all([proxy.upsert(service(1)), proxy.upsert(service(2))]);
    expect(order).toEqual(['start 0001', 'end 0001', 'start 0002', 'end 0002']);
  });

  it("reports nft's error naming the service, and keeps its state as the table's", async () => {
    let fail = false;
    const runner = (args: string[]): Promise<CommandResult> => {
      if (args.includes('list'))
        return Promise.resolve({ code: 1, stdout: '', stderr: 'No such file or directory' });
      return Promise.resolve(
        fail
          ? {
              code: 1,
              stdout: '',
              stderr: 'Error: Could not process rule: Device or resource busy',
            }
          : { code: 0, stdout: '', stderr: '' },
      );
    };
    const proxy = new ServiceProxy({ ...OPTS, netns: 'node1', runner });
    await proxy.sync([service(1)]);
    fail = true;
    const err = await proxy.upsert(service(1, 2)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ServiceProxyError);
    expect((err as ServiceProxyError).message).toBe(
      'service ns/svc-0001: nft -f: Error: Could not process rule: Device or resource busy',
    );
    expect((err as ServiceProxyError).service).toBe('ns/svc-0001');
    fail = false;
    // Still the 3-endpoint state: going to 2 endpoints again deletes one chain.
    await proxy.upsert(service(1, 2));
    expect(proxy.lastTransaction?.match(/^delete chain/gm)).toHaveLength(1);
  });

  it('runs nft in the given netns', async () => {
    const { runner, argv } = fakeNft();
    await new ServiceProxy({ ...OPTS, netns: 'node1', nft: '/usr/sbin/nft', runner }).sync([]);
    expect(argv[0]).toEqual([
      'nsenter',
      '--net=/run/netns/node1',
      '/usr/sbin/nft',
      '-j',
      'list',
      'table',
      'ip',
      'conductor',
    ]);
  });

  it('refuses upsert before sync, and services that collide', async () => {
    const { runner } = fakeNft();
    const proxy = new ServiceProxy({ ...OPTS, runner });
    await expect(proxy.upsert(service(1))).rejects.toThrow(
      'service ns/svc-0001: the table conductor has not been synced: call sync() first',
    );
    await proxy.sync([service(1, 1, 8080)]);
    await expect(proxy.upsert({ ...service(1), key: 'ns/other' })).rejects.toThrow(
      "service ns/other: clusterIP 10.78.0.2 port 80/TCP is already service ns/svc-0001's",
    );
    await expect(proxy.upsert({ ...service(2, 1, 8080) })).rejects.toThrow(
      "service ns/svc-0002: hostPort 8080/TCP is already service ns/svc-0001's",
    );
    await expect(proxy.sync([service(1), service(1)])).rejects.toThrow(
      'service ns/svc-0001: listed twice',
    );
  });
});

describe('syncTransaction against a live table', () => {
  it('keeps chains that are right, rewrites those that differ, removes what is stale', () => {
    const keep = renderService(service(1));
    const changed = renderService(service(2, 2));
    const desired = [keep, renderService(service(2, 3))];
    // A live table as a previous process left it: service 1 right, service 2 with 2 endpoints,
    // a service 9 nobody wants any more, and a chain that is not ours.
    const gone = renderService(service(9, 1));
    const live = parseLiveTable(
      JSON.stringify({
        nftables: [
          { metainfo: { version: '1.0.6' } },
          { table: { family: 'ip', name: 'conductor' } },
          ...[keep, changed, gone].flatMap((s) =>
            s.chains.flatMap((c) => [
              { chain: { family: 'ip', table: 'conductor', name: c.name } },
              {
                rule: {
                  chain: c.name,
                  comment: /comment "([^"]*)"$/.exec(c.rules[c.rules.length - 1] ?? '')?.[1],
                },
              },
            ]),
          ),
          { chain: { name: 'stray' } },
          {
            chain: {
              name: 'nat-output',
              type: 'nat',
              hook: 'output',
              prio: -110,
              policy: 'accept',
            },
          },
          {
            map: {
              name: 'service-ips',
              type: ['ipv4_addr', 'inet_proto', 'inet_service'],
              map: 'verdict',
              elem: [keep, gone].map((s) => {
                const e = s.elements[0];
                return [
                  { elem: { val: { concat: e?.key.split(' . ') }, comment: e?.comment } },
                  { goto: { target: e?.value.slice(5) } },
                ];
              }),
            },
          },
        ],
      }),
    );
    expect(live.elements).toEqual([keep.elements[0], gone.elements[0]]);
    const lines = syncTransaction(RESOLVED, live, desired);
    const text = lines.join('\n');
    // Service 1 untouched; its element too.
    expect(text).not.toMatch(/svc-0001/);
    // Service 2: one endpoint chain added, the service chain rewritten.
    expect(lines).toContain(
      `flush chain ip conductor ${serviceChainName('ns/svc-0002', 'TCP', 80)}`,
    );
    expect(lines.filter((l) => /^add chain .*svc-0002/.test(l))).toHaveLength(1);
    expect(text).toMatch(/add element ip conductor service-ips \{ 10\.78\.0\.3 \. tcp \. 80/);
    // Service 9 and the stray chain gone; its element too, before its chains.
    const del = lines.indexOf('delete element ip conductor service-ips { 10.78.0.10 . tcp . 80 }');
    expect(del).toBeGreaterThan(0);
    expect(
      lines.indexOf(`delete chain ip conductor ${serviceChainName('ns/svc-0009', 'TCP', 80)}`),
    ).toBeGreaterThan(del);
    expect(lines).toContain('delete chain ip conductor stray');
    // A base chain at the wrong priority is replaced.
    expect(lines).toContain('delete chain ip conductor nat-output');
    expect(lines).toContain(
      'add chain ip conductor nat-output { type nat hook output priority -100; policy accept; }',
    );
  });

  it('masquerades outbound traffic unless told not to', () => {
    const on = syncTransaction(RESOLVED, parseLiveTable('{"nftables":[]}'), []).join('\n');
    expect(on).toContain(
      'add rule ip conductor masquerading ip saddr 10.77.0.0/16 ip daddr != 10.77.0.0/16 masquerade',
    );
    expect(on).toContain('iifname != "lo" ip daddr 127.0.0.0/8');
    const off = syncTransaction(
      resolveOptions({ ...OPTS, masqueradeOutbound: false }),
      parseLiveTable('{"nftables":[]}'),
      [],
    ).join('\n');
    expect(off).not.toContain('ip daddr != 10.77.0.0/16 masquerade');
  });
});

describe('validation', () => {
  const check =
    (rule: unknown): (() => void) =>
    () =>
      validateService(rule as ServiceRule, RESOLVED.serviceCidr);
  const base = service(1, 1);
  const port = base.ports[0];
  const withPort = (p: object): unknown => ({ ...base, ports: [{ ...port, ...p }] });

  it('names the service and the field', () => {
    expect(check({ ...base, key: 'web' })).toThrow(
      'service web: key: must be <namespace>/<name>, each a DNS label',
    );
    expect(check({ ...base, key: 'ns/Web' })).toThrow('service ns/Web: key:');
    expect(check({ ...base, clusterIP: '10.78.0.300' })).toThrow(
      'service ns/svc-0001: clusterIP: "10.78.0.300" is not an IPv4 address',
    );
    expect(check({ ...base, clusterIP: '10.79.0.1' })).toThrow(
      'service ns/svc-0001: clusterIP: 10.79.0.1 is outside the service range 10.78.0.0/16',
    );
    expect(check(withPort({ port: 0 }))).toThrow(
      'service ns/svc-0001: ports[0].port: 0 must be 1-65535',
    );
    expect(check(withPort({ port: 65536 }))).toThrow('ports[0].port: 65536 must be 1-65535');
    expect(check(withPort({ hostPort: 1.5 }))).toThrow('ports[0].hostPort: 1.5 must be 1-65535');
    expect(check(withPort({ protocol: 'SCTP' }))).toThrow(
      'ports[0].protocol: "SCTP" must be TCP or UDP',
    );
    expect(check(withPort({ name: 'Http!' }))).toThrow(
      'ports[0].name: "Http!" must be a DNS label',
    );
    expect(check(withPort({ endpoints: [{ ip: '10.77.0.1.1', port: 80 }] }))).toThrow(
      'ports[0].endpoints[0].ip: "10.77.0.1.1" is not an IPv4 address',
    );
    expect(check(withPort({ endpoints: [{ ip: '10.77.0.1', port: -1 }] }))).toThrow(
      'ports[0].endpoints[0].port: -1 must be 1-65535',
    );
    const ep = { ip: '10.77.0.1', port: 80 };
    expect(check(withPort({ endpoints: [ep, ep] }))).toThrow(
      'ports[0].endpoints[1]: 10.77.0.1:80 is listed twice',
    );
    expect(check({ ...base, ports: [port, port] })).toThrow(
      'service ns/svc-0001: ports[1].port: TCP/80 is already ports[0]',
    );
    expect(
      check({
        ...base,
        ports: [
          { ...port, hostPort: 81 },
          { ...port, port: 81, hostPort: 81 },
        ],
      }),
    ).toThrow('ports[1].hostPort: TCP/81 is already ports[0].hostPort');
    // UDP and TCP on the same number are two ports.
    expect(check({ ...base, ports: [port, { ...port, protocol: 'UDP' }] })).not.toThrow();
  });

  it('checks the options, naming the field', () => {
    expect(() => resolveOptions({ ...OPTS, table: '1x' })).toThrow('ServiceProxy: table:');
    expect(() => resolveOptions({ ...OPTS, serviceCidr: '10.77.128.0/17' })).toThrow(
      'ServiceProxy: serviceCidr 10.77.128.0/17 overlaps containerCidr 10.77.0.0/16',
    );
    expect(() => resolveOptions({ ...OPTS, containerCidr: '10.77.0.1/16' })).toThrow(
      'ServiceProxy: containerCidr: 10.77.0.1/16 has host bits set',
    );
    expect(() => resolveOptions({ ...OPTS, bridge: 'a/b' })).toThrow('ServiceProxy: bridge:');
    expect(() => resolveOptions({ ...OPTS, masqueradeMark: 3 })).toThrow(
      'ServiceProxy: masqueradeMark: must be a single bit',
    );
  });

  it('validates before any nft runs', async () => {
    const { runner, argv } = fakeNft();
    const proxy = new ServiceProxy({ ...OPTS, runner });
    await expect(proxy.sync([{ ...base, clusterIP: 'x' }])).rejects.toThrow(ServiceProxyError);
    expect(argv).toEqual([]);
  });
});
