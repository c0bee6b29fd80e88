/**
 * The service table's rendering and transactions (runtime-core/src/network/service-proxy.ts),
 * with nft replaced by a recording fake: which elements a service renders to and how its
 * endpoint slots stay put, which commands an upsert, remove and sync produce, that a change
 * touches only its own service (and the pick chains and hairpin pairs no other service shares),
 * that its size does not grow with the number of services, and the validation errors. The kernel side is test/integration/service-proxy.test.ts.
 */
import { describe, expect, it } from '@jest/globals';

import {
  endpointSlots,
  parseLiveTable,
  pickChainName,
  pickChainRule,
  renderService,
  resolveOptions,
  ServiceProxy,
  ServiceProxyError,
  serviceTransaction,
  SharedUse,
  syncTransaction,
  validateService,
  type MapElement,
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

/** A service's endpoints replaced by `ips` (port 8080). */
function withEndpoints(s: ServiceRule, ips: string[]): ServiceRule {
  return {
    ...s,
    ports: s.ports.map((p) => ({ ...p, endpoints: ips.map((ip) => ({ ip, port: 8080 })) })),
  };
}

/** The `<ip> . <port>` in each slot of a rendered service's ClusterIP port. */
function slotsOf(elements: MapElement[]): string[] {
  const slots = [...(endpointSlots(elements).values().next().value ?? new Map<number, string>())];
  return slots.sort(([a], [b]) => a - b).map(([, v]) => v);
}

describe('pick chains', () => {
  it('are named by the endpoint count and pick address and port from the same slot', () => {
    expect(pickChainName(3)).toBe('pick-3');
    expect(pickChainName(3, true)).toBe('hostport-pick-3');
    expect(pickChainRule('pick-3')).toBe(
      'meta l4proto { tcp, udp } dnat ip to ip daddr . meta l4proto . th dport . symhash mod 3 map @service-endpoint-ips : ip daddr . meta l4proto . th dport . symhash mod 3 map @service-endpoint-ports',
    );
    expect(pickChainRule('hostport-pick-12')).toBe(
      'meta l4proto { tcp, udp } dnat ip to meta l4proto . th dport . symhash mod 12 map @hostport-endpoint-ips : meta l4proto . th dport . symhash mod 12 map @hostport-endpoint-ports',
    );
    for (const other of ['pick-0', 'pick-', 'svc-ABC', 'pick-3x', 'masquerading'])
      expect(pickChainRule(other)).toBeUndefined();
  });
});

describe('renderService', () => {
  it('sends the clusterIP and hostPort to the pick chains and fills one slot per endpoint', () => {
    const r = renderService(service(1, 2, 8080));
    const c = 'ns/svc-0001';
    expect(r.chains).toEqual(['pick-2', 'hostport-pick-2']);
    expect(r.addresses).toEqual(['10.77.0.2', '10.77.0.3']);
    expect(r.elements).toEqual([
      {
        map: 'service-endpoint-ips',
        key: '10.78.0.2 . tcp . 80 . 0',
        value: '10.77.0.2',
        comment: c,
      },
      { map: 'service-endpoint-ports', key: '10.78.0.2 . tcp . 80 . 0', value: '8080', comment: c },
      {
        map: 'service-endpoint-ips',
        key: '10.78.0.2 . tcp . 80 . 1',
        value: '10.77.0.3',
        comment: c,
      },
      { map: 'service-endpoint-ports', key: '10.78.0.2 . tcp . 80 . 1', value: '8080', comment: c },
      { map: 'hostport-endpoint-ips', key: 'tcp . 8080 . 0', value: '10.77.0.2', comment: c },
      { map: 'hostport-endpoint-ports', key: 'tcp . 8080 . 0', value: '8080', comment: c },
      { map: 'hostport-endpoint-ips', key: 'tcp . 8080 . 1', value: '10.77.0.3', comment: c },
      { map: 'hostport-endpoint-ports', key: 'tcp . 8080 . 1', value: '8080', comment: c },
      { map: 'service-ips', key: '10.78.0.2 . tcp . 80', value: 'goto pick-2', comment: c },
      { map: 'service-hostports', key: 'tcp . 8080', value: 'goto hostport-pick-2', comment: c },
    ]);
  });

  it('puts a port with no endpoints in the reject maps and uses no chain for it', () => {
    const r = renderService({
      key: 'ns/dns',
      clusterIP: '10.78.0.10',
      ports: [{ name: 'dns', protocol: 'UDP', port: 53, hostPort: 5353, endpoints: [] }],
    });
    expect(r.chains).toEqual([]);
    expect(r.addresses).toEqual([]);
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

  it("keeps endpoints in the slots they had: a replacement takes its predecessor's", () => {
    const s = withEndpoints(service(1), ['10.77.0.5', '10.77.0.3', '10.77.0.9']);
    const first = renderService(s);
    expect(slotsOf(first.elements)).toEqual([
      '10.77.0.3 . 8080',
      '10.77.0.5 . 8080',
      '10.77.0.9 . 8080',
    ]);
    // .5 replaced by .1 (which would sort first): .1 takes slot 1, the others stay.
    const moved = renderService(
      withEndpoints(s, ['10.77.0.3', '10.77.0.1', '10.77.0.9']),
      endpointSlots(first.elements),
    );
    expect(slotsOf(moved.elements)).toEqual([
      '10.77.0.3 . 8080',
      '10.77.0.1 . 8080',
      '10.77.0.9 . 8080',
    ]);
    // .3 removed: the last one moves into its slot; one added: it takes the new last slot.
    const fewer = renderService(
      withEndpoints(s, ['10.77.0.1', '10.77.0.9']),
      endpointSlots(moved.elements),
    );
    expect(slotsOf(fewer.elements)).toEqual(['10.77.0.9 . 8080', '10.77.0.1 . 8080']);
    const more = renderService(
      withEndpoints(s, ['10.77.0.1', '10.77.0.9', '10.77.0.2']),
      endpointSlots(fewer.elements),
    );
    expect(slotsOf(more.elements)).toEqual([
      '10.77.0.9 . 8080',
      '10.77.0.1 . 8080',
      '10.77.0.2 . 8080',
    ]);
  });
});

describe('serviceTransaction', () => {
  it('is empty when nothing changed', () => {
    expect(
      serviceTransaction('conductor', renderService(service(1)), renderService(service(1))),
    ).toEqual([]);
  });

  it('moves one endpoint by rewriting its slot and hairpin pair, touching no chain', () => {
    const before = renderService(service(7, 3));
    const after = renderService(
      withEndpoints(service(7), ['10.77.0.2', '10.77.9.9', '10.77.0.4']),
      endpointSlots(before.elements),
    );
    expect(serviceTransaction('conductor', before, after)).toEqual([
      'delete element ip conductor service-endpoint-ips { 10.78.0.8 . tcp . 80 . 1 }',
      'delete element ip conductor hairpin { 10.77.0.3 . 10.77.0.3 }',
      'add element ip conductor hairpin { 10.77.9.9 . 10.77.9.9 }',
      'add element ip conductor service-endpoint-ips { 10.78.0.8 . tcp . 80 . 1 comment "ns/svc-0007" : 10.77.9.9 }',
    ]);
  });

  it('changes the count by re-pointing the dispatch, making and deleting pick chains only it uses', () => {
    const before = renderService(service(7, 3));
    const after = renderService(service(7, 4), endpointSlots(before.elements));
    const lines = serviceTransaction('conductor', before, after, new SharedUse([before]));
    expect(lines).toEqual([
      'delete element ip conductor service-ips { 10.78.0.8 . tcp . 80 }',
      'add chain ip conductor pick-4',
      `add rule ip conductor pick-4 ${pickChainRule('pick-4') ?? '-'}`,
      'add element ip conductor hairpin { 10.77.0.5 . 10.77.0.5 }',
      'add element ip conductor service-endpoint-ips { 10.78.0.8 . tcp . 80 . 3 comment "ns/svc-0007" : 10.77.0.5 }',
      'add element ip conductor service-endpoint-ports { 10.78.0.8 . tcp . 80 . 3 comment "ns/svc-0007" : 8080 }',
      'add element ip conductor service-ips { 10.78.0.8 . tcp . 80 comment "ns/svc-0007" : goto pick-4 }',
      'delete chain ip conductor pick-3',
    ]);
    // Another service with 4 endpoints, one with 3 and one on the same addresses: the chains
    // and the pairs are theirs too, so they stay.
    const shared = new SharedUse([
      before,
      renderService(service(8, 4)),
      renderService(service(9, 3)),
      renderService(service(7, 5)),
    ]);
    const quiet = serviceTransaction('conductor', before, after, shared);
    expect(quiet.filter((l) => /chain|hairpin/.test(l))).toEqual([]);
  });

  it('moves a service whose last endpoint went to the reject maps', () => {
    const before = renderService(service(3, 1, 9000));
    const after = renderService(withEndpoints(service(3, 1, 9000), []));
    const lines = serviceTransaction('conductor', before, after);
    expect(lines.filter((l) => l.startsWith('delete element'))).toEqual([
      'delete element ip conductor service-endpoint-ips { 10.78.0.4 . tcp . 80 . 0 }',
      'delete element ip conductor service-endpoint-ports { 10.78.0.4 . tcp . 80 . 0 }',
      'delete element ip conductor hostport-endpoint-ips { tcp . 9000 . 0 }',
      'delete element ip conductor hostport-endpoint-ports { tcp . 9000 . 0 }',
      'delete element ip conductor service-ips { 10.78.0.4 . tcp . 80 }',
      'delete element ip conductor service-hostports { tcp . 9000 }',
      'delete element ip conductor hairpin { 10.77.0.2 . 10.77.0.2 }',
    ]);
    expect(lines.filter((l) => l.startsWith('add element'))).toEqual([
      'add element ip conductor no-endpoint-services { 10.78.0.4 . tcp . 80 comment "ns/svc-0003" : goto reject-chain }',
      'add element ip conductor no-endpoint-hostports { tcp . 9000 comment "ns/svc-0003" : goto reject-chain }',
    ]);
    // The chains go last, after the elements that went to them.
    expect(lines.slice(-2)).toEqual([
      'delete chain ip conductor pick-1',
      'delete chain ip conductor hostport-pick-1',
    ]);
  });
});

describe('ServiceProxy with a fake nft', () => {
  it('sends one endpoint change as a transaction of the same size for 10 and 1,000 services', async () => {
    const sizes: number[] = [];
    for (const n of [10, 1000]) {
      const { runner, applied } = fakeNft();
      const proxy = new ServiceProxy({ ...OPTS, runner });
      await proxy.sync(Array.from({ length: n }, (_, i) => service(i, 10)));
      expect(applied).toHaveLength(1);
      const changed = service(5, 10);
      const first = changed.ports[0];
      if (!first) throw new Error('no port');
      first.endpoints[3] = { ip: '10.77.100.100', port: 8080 };
      await proxy.upsert(changed);
      const text = proxy.lastTransaction ?? '';
      expect(applied).toHaveLength(2);
      expect(text).toBe(applied[1]);
      // Only ns/svc-0005's slot, and the pair of the address it gained (the one it lost,
      // 10.77.0.5, other services in 10.77.0.0/24 still have).
      expect(text.trim().split('\n')).toEqual([
        'delete element ip conductor service-endpoint-ips { 10.78.0.6 . tcp . 80 . 3 }',
        'add element ip conductor hairpin { 10.77.100.100 . 10.77.100.100 }',
        'add element ip conductor service-endpoint-ips { 10.78.0.6 . tcp . 80 . 3 comment "ns/svc-0005" : 10.77.100.100 }',
      ]);
      sizes.push(text.length);
    }
    expect(sizes[0]).toBe(sizes[1]);
  });

  it('applies nothing for an unchanged upsert, and removes exactly what a service had', async () => {
    const { runner, applied } = fakeNft();
    const proxy = new ServiceProxy({ ...OPTS, runner });
    // Services 1 and 2 have the same endpoint addresses (10.77.0.2-4) and pick-3; service 300
    // (10.77.1.x, 2 endpoints) neither.
    await proxy.sync([service(1), service(2), service(300, 2)]);
    const count = proxy.transactionCount;
    await proxy.upsert(service(2));
    expect(proxy.transactionCount).toBe(count);
    await proxy.remove('ns/svc-0002');
    const text = applied[applied.length - 1] ?? '';
    expect(text).toContain('delete element ip conductor service-ips { 10.78.0.3 . tcp . 80 }');
    expect(text.match(/^delete element ip conductor service-endpoint-(ips|ports) /gm)).toHaveLength(
      6,
    );
    // Service 1 has the same addresses and endpoint count: pairs and pick-3 stay.
    expect(text).not.toMatch(/hairpin|chain|svc-0001/);
    await proxy.remove('ns/svc-0001');
    const last = applied[applied.length - 1] ?? '';
    expect(last.match(/^delete element ip conductor hairpin /gm)).toHaveLength(3);
    expect(last).toContain('delete chain ip conductor pick-3');
    await proxy.remove('ns/svc-0002'); // gone: nothing to do
    expect(proxy.transactionCount).toBe(count + 2);
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
    // Still the 3-endpoint state (and pick-3 still counted): going to 2 again drops slot 2.
    await proxy.upsert(service(1, 2));
    const text = proxy.lastTransaction ?? '';
    expect(text.match(/^delete element .* \. 2 \}$/gm)).toHaveLength(2);
    expect(text).toContain('add chain ip conductor pick-2');
    expect(text).toContain('delete chain ip conductor pick-3');
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

/** nft -j's form of a map or set element. */
function jsonElement(e: MapElement): unknown {
  const val = { concat: e.key.split(' . ').map((k) => (/^\d+$/.test(k) ? Number(k) : k)) };
  const key = e.comment !== undefined ? { elem: { val, comment: e.comment } } : val;
  if (e.value === '') return key;
  const [verb, target] = e.value.split(' ');
  if (verb === 'goto' && target) return [key, { goto: { target } }];
  return [key, /^\d+$/.test(e.value) ? Number(e.value) : e.value];
}

describe('syncTransaction against a live table', () => {
  it('keeps elements that are right, rewrites those that differ, removes what is stale', () => {
    const keep = renderService(service(1));
    const changed = renderService(service(2, 2));
    // A live table as a previous process left it: service 1 right (its slots in another order
    // than a fresh render would give), service 2 with 2 endpoints, a service 9 nobody wants any
    // more, a chain that is not ours, and what the older layout (a chain per service) left.
    const shuffled = keep.elements.map((e) =>
      e.map === 'service-endpoint-ips'
        ? {
            ...e,
            value:
              e.value === '10.77.0.2'
                ? '10.77.0.4'
                : e.value === '10.77.0.4'
                  ? '10.77.0.2'
                  : e.value,
          }
        : e,
    );
    const gone = renderService(service(9, 1));
    const old: MapElement = {
      map: 'service-ips',
      key: '10.78.0.99 . tcp . 80',
      value: 'goto svc-OLD',
      comment: 'ns/old',
    };
    const liveEls = [...shuffled, ...changed.elements, ...gone.elements, old];
    const byMap = (m: string): unknown[] => liveEls.filter((e) => e.map === m).map(jsonElement);
    const typeOf = (m: string): string[] =>
      m.startsWith('service-')
        ? ['ipv4_addr', 'inet_proto', 'inet_service']
        : ['inet_proto', 'inet_service'];
    const live = parseLiveTable(
      JSON.stringify({
        nftables: [
          { metainfo: { version: '1.0.6' } },
          { table: { family: 'ip', name: 'conductor' } },
          ...['pick-1', 'pick-2', 'pick-3', 'svc-OLD', 'stray', 'mark-for-masquerade'].map(
            (name) => ({ chain: { family: 'ip', table: 'conductor', name } }),
          ),
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
              type: typeOf('service-ips'),
              map: 'verdict',
              elem: byMap('service-ips'),
            },
          },
          ...['service-endpoint-ips', 'service-endpoint-ports'].map((name) => ({
            map: {
              name,
              type: [...typeOf(name), 'integer'],
              map: name.endsWith('ips') ? 'ipv4_addr' : 'inet_service',
              elem: byMap(name),
            },
          })),
          // Of the wrong type: replaced.
          { map: { name: 'no-endpoint-services', type: ['ipv4_addr'], map: 'verdict' } },
          {
            set: {
              name: 'hairpin',
              type: ['ipv4_addr', 'ipv4_addr'],
              elem: [
                { concat: ['10.77.0.2', '10.77.0.2'] },
                { concat: ['10.77.0.9', '10.77.0.9'] },
              ],
            },
          },
          { set: { name: 'leftover', type: ['ipv4_addr'] } },
        ],
      }),
    );
    const order = (els: MapElement[]): MapElement[] =>
      [...els].sort((a, b) => `${a.map} ${a.key}`.localeCompare(`${b.map} ${b.key}`));
    expect(order(live.elements)).toEqual(
      order([
        ...liveEls,
        ...['10.77.0.2', '10.77.0.9'].map((a) => ({
          map: 'hairpin',
          key: `${a} . ${a}`,
          value: '',
        })),
      ]),
    );
    // As the proxy does: render with the live slots.
    const slots = endpointSlots(live.elements);
    const desired = [renderService(service(1), slots), renderService(service(2, 3), slots)];
    const lines = syncTransaction(RESOLVED, live, desired);
    const text = lines.join('\n');
    // Service 1 untouched: its slots are taken as they are.
    expect(text).not.toMatch(/svc-0001|10\.78\.0\.2 /);
    // Service 2: one slot added, the dispatch re-pointed.
    expect(lines.filter((l) => l.includes('10.78.0.3 . tcp . 80')).sort()).toEqual([
      'add element ip conductor service-endpoint-ips { 10.78.0.3 . tcp . 80 . 2 comment "ns/svc-0002" : 10.77.0.4 }',
      'add element ip conductor service-endpoint-ports { 10.78.0.3 . tcp . 80 . 2 comment "ns/svc-0002" : 8080 }',
      'add element ip conductor service-ips { 10.78.0.3 . tcp . 80 comment "ns/svc-0002" : goto pick-3 }',
      'delete element ip conductor service-ips { 10.78.0.3 . tcp . 80 }',
    ]);
    // Service 9, the old layout's element and the stray chains gone: elements before chains.
    const del = lines.indexOf('delete element ip conductor service-ips { 10.78.0.99 . tcp . 80 }');
    expect(del).toBeGreaterThan(0);
    expect(lines).toContain('delete element ip conductor service-ips { 10.78.0.10 . tcp . 80 }');
    for (const c of ['svc-OLD', 'stray', 'mark-for-masquerade', 'pick-1'])
      expect(lines.indexOf(`delete chain ip conductor ${c}`)).toBeGreaterThan(del);
    expect(lines).toContain('delete element ip conductor hairpin { 10.77.0.9 . 10.77.0.9 }');
    expect(lines).toContain('add element ip conductor hairpin { 10.77.0.3 . 10.77.0.3 }');
    expect(text).not.toContain('hairpin { 10.77.0.2 . 10.77.0.2 }');
    expect(lines).toContain('delete set ip conductor leftover');
    // The pick chains in use are refilled, not deleted.
    expect(lines).toContain('flush chain ip conductor pick-3');
    expect(lines).toContain(`add rule ip conductor pick-3 ${pickChainRule('pick-3') ?? '-'}`);
    expect(lines).not.toContain('delete chain ip conductor pick-3');
    // A map of the wrong type and a base chain at the wrong priority are replaced.
    expect(lines).toContain('delete map ip conductor no-endpoint-services');
    expect(lines).toContain('delete chain ip conductor nat-output');
    expect(lines).toContain(
      'add chain ip conductor nat-output { type nat hook output priority -100; policy accept; }',
    );
  });

  it('masquerades hairpin traffic, and outbound traffic unless told not to', () => {
    const on = syncTransaction(RESOLVED, parseLiveTable('{"nftables":[]}'), []).join('\n');
    expect(on).toContain(
      'add rule ip conductor masquerading ip saddr 10.77.0.0/16 ip daddr != 10.77.0.0/16 masquerade',
    );
    expect(on).toContain(
      'add rule ip conductor masquerading ct status dnat ip saddr . ip daddr @hairpin masquerade fully-random',
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
