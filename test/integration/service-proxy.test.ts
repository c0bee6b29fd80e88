/**
 * Service addresses through the real kernel (runtime-core/src/network/service-proxy.ts), all
 * inside network namespaces the test makes: a "node" namespace with a bridge and the gateway
 * address, three "container" namespaces on veth pairs (busybox httpd and a UDP echo server in
 * two of them), and an "upstream" namespace at 203.0.113.1 that only the node can route to.
 * The proxy runs every nft and sysctl in the node namespace; the host's own ruleset, links and
 * namespaces are checked unchanged at the end.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';

import {
  pickChainName,
  ServiceProxy,
  type ServiceProxyOptions,
  type ServiceRule,
} from '../../runtime-core/src/network/service-proxy.js';
import { FIXTURE_ROOT } from '../fixtures/index.js';
import { assertNoLeaks, hostSnapshot, type HostSnapshot } from '../fixtures/leaks.js';

const tag = randomBytes(4).toString('hex');
const NS = {
  node: `cndsp-${tag}-node`,
  c1: `cndsp-${tag}-c1`,
  c2: `cndsp-${tag}-c2`,
  c3: `cndsp-${tag}-c3`,
  up: `cndsp-${tag}-up`,
};
const BRIDGE = `br${tag}`;
const B = parseInt(tag.slice(0, 2), 16);
const SUBNET = `10.79.${B}.0/24`;
const GW = `10.79.${B}.1`;
const IP = { c1: `10.79.${B}.2`, c2: `10.79.${B}.3`, c3: `10.79.${B}.4` };
const SVC_CIDR = `10.80.${B}.0/24`;
const WEB_IP = `10.80.${B}.10`;
const DNS_IP = `10.80.${B}.53`;
const EMPTY_IP = `10.80.${B}.99`;
const HOST_PORT = 18080;
const LOOPBACK_ONLY_PORT = 19999;

const TABLE = `cndsp${tag}`;
const OPTS: ServiceProxyOptions = {
  table: TABLE,
  containerCidr: SUBNET,
  serviceCidr: SVC_CIDR,
  bridge: BRIDGE,
  netns: NS.node,
};

const web = (endpoints: string[]): ServiceRule => ({
  key: 'default/web',
  clusterIP: WEB_IP,
  ports: [
    {
      name: 'http',
      protocol: 'TCP',
      port: 80,
      hostPort: HOST_PORT,
      endpoints: endpoints.map((ip) => ({ ip, port: 8080 })),
    },
  ],
});
const dns: ServiceRule = {
  key: 'default/dns',
  clusterIP: DNS_IP,
  ports: [{ protocol: 'UDP', port: 53, endpoints: [{ ip: IP.c1, port: 5353 }] }],
};
const empty: ServiceRule = {
  key: 'default/empty',
  clusterIP: EMPTY_IP,
  ports: [
    { protocol: 'TCP', port: 80, hostPort: HOST_PORT + 1, endpoints: [] },
    { protocol: 'UDP', port: 53, endpoints: [] },
  ],
};

let dir: string;
let before: HostSnapshot;
const children: ChildProcess[] = [];

function sh(cmd: string, args: string[], input?: string): { ok: boolean; out: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', input, timeout: 10000 });
  return { ok: r.status === 0, out: `${r.stdout ?? ''}${r.stderr ?? ''}` };
}
function must(cmd: string, ...args: string[]): string {
  const r = sh(cmd, args);
  if (!r.ok) throw new Error(`${cmd} ${args.join(' ')}: ${r.out}`);
  return r.out;
}
const ip = (...args: string[]): string => must('ip', ...args);
const inNs = (ns: string, ...argv: string[]): string[] => ['netns', 'exec', ns, ...argv];
const nodeNft = (...args: string[]): string => must('ip', ...inNs(NS.node, 'nft', ...args));

/** An HTTP GET from inside `ns`; busybox wget's -T crashes here, so spawnSync's timeout. */
function get(ns: string, url: string, timeoutMs = 3000): { ok: boolean; body: string; ms: number } {
  const started = Date.now();
  const r = spawnSync('ip', inNs(ns, 'busybox', 'wget', '-q', '-O', '-', url), {
    encoding: 'utf8',
    timeout: timeoutMs,
  });
  return {
    ok: r.status === 0,
    body: `${r.stdout ?? ''}${r.stderr ?? ''}`.trim(),
    ms: Date.now() - started,
  };
}

/** Bodies of `n` GETs. */
function bodies(ns: string, url: string, n = 16): string[] {
  return Array.from({ length: n }, () => {
    const r = get(ns, url);
    if (!r.ok) throw new Error(`GET ${url} from ${ns}: ${r.body}`);
    return r.body;
  });
}

/** One UDP datagram to ip:port from `ns` on a connected socket: the answer, or the error. */
function udp(ns: string, to: string, port: number): string {
  const code = `const s=require('dgram').createSocket('udp4');
setTimeout(()=>{console.log('timeout');process.exit(2)},2000);
s.on('message',(m)=>{console.log(String(m));process.exit(0)});
s.on('error',(e)=>{console.log(e.code);process.exit(1)});
s.connect(${port},'${to}',()=>{s.send('ping');setTimeout(()=>s.send('ping'),300)});`;
  const r = spawnSync('ip', inNs(ns, process.execPath, '-e', code), {
    encoding: 'utf8',
    timeout: 5000,
  });
  return (r.stdout ?? '').trim();
}

function start(ns: string, ...argv: string[]): void {
  const child = spawn('ip', inNs(ns, ...argv), { stdio: 'ignore' });
  children.push(child);
}

async function waitFor(what: string, check: () => boolean): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (check()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** Rule handles per chain, and the elements of every map and set, of the node's table. */
function tableSnapshot(): { handles: Map<string, number[]>; elements: string[] } {
  const doc = JSON.parse(nodeNft('-a', '-j', 'list', 'table', 'ip', TABLE)) as {
    nftables: {
      rule?: { chain: string; handle: number };
      map?: { name: string; elem?: unknown[] };
      set?: { name: string; elem?: unknown[] };
    }[];
  };
  const handles = new Map<string, number[]>();
  const elements: string[] = [];
  for (const o of doc.nftables) {
    if (o.rule) handles.set(o.rule.chain, [...(handles.get(o.rule.chain) ?? []), o.rule.handle]);
    const m = o.map ?? o.set;
    if (m) for (const e of m.elem ?? []) elements.push(`${m.name} ${JSON.stringify(e)}`);
  }
  return { handles, elements };
}

/**
 * Every line of a service's transaction is an element whose key starts with one of `keys` (its
 * clusterIP, its hostPort), a pick chain, or the hairpin pair of one of `addresses`.
 */
function expectOnlyService(text: string, keys: string[], addresses: string[]): void {
  for (const line of text.trim().split('\n')) {
    if (/^(add|delete) (chain|rule) ip \S+ (hostport-)?pick-\d+( |$)/.test(line)) continue;
    const m = /^(?:add|delete) element ip \S+ (\S+) \{ (.*) \}$/.exec(line);
    expect(m).not.toBeNull();
    const [, map, body] = m ?? [];
    if (map === 'hairpin') expect(addresses.map((a) => `${a} . ${a}`)).toContain(body);
    else
      expect(keys.some((k) => body === k || body?.startsWith(`${k} `)) ? 'ours' : line).toBe(
        'ours',
      );
  }
}

beforeAll(async () => {
  before = hostSnapshot();
  dir = mkdtempSync(join(FIXTURE_ROOT, 'svcproxy-'));
  for (const ns of Object.values(NS)) {
    ip('netns', 'add', ns);
    ip('-n', ns, 'link', 'set', 'lo', 'up');
  }
  // The node: a bridge with the gateway address, forwarding on, the service range routed to the
  // bridge (what the network setup does), and a link to the upstream network.
  ip('-n', NS.node, 'link', 'add', BRIDGE, 'type', 'bridge');
  ip('-n', NS.node, 'addr', 'add', `${GW}/24`, 'dev', BRIDGE);
  ip('-n', NS.node, 'link', 'set', BRIDGE, 'up');
  ip('-n', NS.node, 'route', 'add', SVC_CIDR, 'dev', BRIDGE);
  must('ip', ...inNs(NS.node, 'sysctl', '-qw', 'net.ipv4.ip_forward=1'));
  for (const c of ['c1', 'c2', 'c3'] as const) {
    ip(
      '-n',
      NS.node,
      'link',
      'add',
      `v${c}`,
      'type',
      'veth',
      'peer',
      'name',
      'eth0',
      'netns',
      NS[c],
    );
    ip('-n', NS.node, 'link', 'set', `v${c}`, 'master', BRIDGE, 'up');
    // What the bridge plugin's hairpinMode does: a DNAT'ed frame may go back out of the port
    // it came in by (br_netfilter bridges it there), so a backend can reach itself.
    ip('-n', NS.node, 'link', 'set', `v${c}`, 'type', 'bridge_slave', 'hairpin', 'on');
    ip('-n', NS[c], 'addr', 'add', `${IP[c]}/24`, 'dev', 'eth0');
    ip('-n', NS[c], 'link', 'set', 'eth0', 'up');
    ip('-n', NS[c], 'route', 'add', 'default', 'via', GW);
  }
  ip('-n', NS.node, 'link', 'add', 'up0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', NS.up);
  ip('-n', NS.node, 'addr', 'add', '203.0.113.2/24', 'dev', 'up0');
  ip('-n', NS.node, 'link', 'set', 'up0', 'up');
  ip('-n', NS.up, 'addr', 'add', '203.0.113.1/24', 'dev', 'eth0');
  ip('-n', NS.up, 'link', 'set', 'eth0', 'up'); // and no route back to the containers

  // Backends: httpd naming itself on 8080 and a UDP echo on 5353 in c1 and c2.
  for (const c of ['c1', 'c2'] as const) {
    const www = join(dir, c);
    mkdirSync(www);
    writeFileSync(join(www, 'index.html'), `backend-${c}\n`);
    start(NS[c], '/bin/busybox', 'httpd', '-f', '-p', '8080', '-h', www);
    start(
      NS[c],
      process.execPath,
      '-e',
      `const s=require('dgram').createSocket('udp4');s.on('message',(m,r)=>s.send('udp-${c}',r.port,r.address));s.bind(5353);`,
    );
  }
  // Upstream: a CGI that prints the client's address.
  mkdirSync(join(dir, 'up', 'cgi-bin'), { recursive: true });
  writeFileSync(
    join(dir, 'up', 'cgi-bin', 'ip'),
    '#!/bin/sh\nprintf "Content-Type: text/plain\\r\\n\\r\\n$REMOTE_ADDR\\n"\n',
  );
  chmodSync(join(dir, 'up', 'cgi-bin', 'ip'), 0o755);
  start(NS.up, '/bin/busybox', 'httpd', '-f', '-p', '80', '-h', join(dir, 'up'));
  // A service the node keeps to its loopback: nobody else may reach it.
  mkdirSync(join(dir, 'lo'));
  writeFileSync(join(dir, 'lo', 'index.html'), 'node-loopback-only\n');
  start(
    NS.node,
    '/bin/busybox',
    'httpd',
    '-f',
    '-p',
    `127.0.0.1:${LOOPBACK_ONLY_PORT}`,
    '-h',
    join(dir, 'lo'),
  );

  await waitFor(
    'backends',
    () =>
      [IP.c1, IP.c2].every((a) => get(NS.node, `http://${a}:8080/`).ok) &&
      get(NS.node, `http://127.0.0.1:${LOOPBACK_ONLY_PORT}/`).ok &&
      get(NS.node, 'http://203.0.113.1/cgi-bin/ip').ok,
  );
}, 30000);

afterAll(async () => {
  for (const child of children) child.kill('SIGKILL');
  await Promise.all(
    children.map(
      (c) =>
        new Promise<void>((resolve) => {
          if (c.exitCode !== null || c.signalCode !== null) resolve();
          else c.once('exit', () => resolve());
        }),
    ),
  );
  for (const ns of Object.values(NS)) sh('ip', ['netns', 'del', ns]);
  rmSync(dir, { recursive: true, force: true });
  // The servers (their command lines name the fixture directory) are gone.
  assertNoLeaks(before, {
    idPrefix: basename(dir),
    pids: children.flatMap((c) => (c.pid === undefined ? [] : [c.pid])),
  });
  // Nothing of ours on the host: every name carries the tag. (The host's ruleset is not
  // compared whole: other suites run at the same time and their counters move.) A proxy that
  // ran nft outside the node namespace would have left its table, or its addresses, here.
  expect(must('ip', 'netns', 'list')).not.toContain(tag);
  expect(must('ip', '-o', 'link', 'show')).not.toContain(tag);
  const ruleset = must('nft', 'list', 'ruleset');
  expect(ruleset).not.toContain(TABLE);
  expect(ruleset).not.toContain(SVC_CIDR);
});

describe('ServiceProxy in a node namespace', () => {
  let proxy: ServiceProxy;

  it('creates the table and sets route_localnet on the bridge', async () => {
    proxy = new ServiceProxy(OPTS);
    await proxy.sync([web([IP.c1, IP.c2]), dns, empty]);
    const text = nodeNft('list', 'table', 'ip', TABLE);
    expect(text).toContain(`${WEB_IP} . tcp . 80 comment "default/web:http" : goto pick-2`);
    expect(text).toContain(`tcp . ${HOST_PORT} comment "default/web:http" : goto hostport-pick-2`);
    expect(text).toMatch(
      new RegExp(
        `${WEB_IP.replace(/\./g, '\\.')} \\. tcp \\. 80 \\. 1 comment "default/web:http" : `,
      ),
    );
    // No chain per service or endpoint: only the shared pick chains.
    expect(text).toContain(`chain ${pickChainName(2)} {`);
    expect(text).not.toContain('default/web/');
    expect(
      must(
        'ip',
        ...inNs(NS.node, 'cat', `/proc/sys/net/ipv4/conf/${BRIDGE}/route_localnet`),
      ).trim(),
    ).toBe('1');
  });

  it('spreads ClusterIP connections from the node and from a container over both backends', () => {
    for (const from of [NS.node, NS.c3])
      expect(new Set(bodies(from, `http://${WEB_IP}/`))).toEqual(
        new Set(['backend-c1', 'backend-c2']),
      );
  });

  it('lets a backend reach itself through the ClusterIP (hairpin)', () => {
    expect(bodies(NS.c1, `http://${WEB_IP}/`, 20)).toContain('backend-c1');
  });

  it('carries UDP through a ClusterIP', () => {
    expect(udp(NS.c3, DNS_IP, 53)).toBe('udp-c1');
    expect(udp(NS.node, DNS_IP, 53)).toBe('udp-c1');
  });

  it('refuses a service with no endpoints at once, TCP and UDP, from the node and a container', () => {
    for (const from of [NS.node, NS.c3]) {
      const r = get(from, `http://${EMPTY_IP}/`);
      expect(r).toMatchObject({ ok: false, body: expect.stringMatching(/refused/i) });
      expect(r.ms).toBeLessThan(1000);
      expect(udp(from, EMPTY_IP, 53)).toBe('ECONNREFUSED');
    }
    // Its hostPort too, and a port of the service range no Service has.
    expect(get(NS.node, `http://127.0.0.1:${HOST_PORT + 1}/`).body).toMatch(/refused/i);
    expect(get(NS.c3, `http://${GW}:${HOST_PORT + 1}/`).body).toMatch(/refused/i);
    expect(get(NS.c3, `http://${WEB_IP}:81/`).body).toMatch(/refused/i);
    expect(get(NS.node, `http://${WEB_IP}:81/`).body).toMatch(/refused/i);
  });

  it("publishes a Service hostPort on the node's 127.0.0.1 and bridge address", () => {
    const want = new Set(['backend-c1', 'backend-c2']);
    expect(new Set(bodies(NS.node, `http://127.0.0.1:${HOST_PORT}/`))).toEqual(want);
    expect(new Set(bodies(NS.node, `http://${GW}:${HOST_PORT}/`))).toEqual(want);
    expect(new Set(bodies(NS.c3, `http://${GW}:${HOST_PORT}/`))).toEqual(want);
  });

  it("masquerades containers' outbound traffic as the node's address", () => {
    expect(get(NS.c3, 'http://203.0.113.1/cgi-bin/ip')).toMatchObject({
      ok: true,
      body: expect.stringMatching(/^\[?(::ffff:)?203\.0\.113\.2\]?$/), // httpd listens on [::]
    });
  });

  it("keeps the node's loopback services from containers despite route_localnet", async () => {
    // c3 plays an attacker on the bridge: it routes 127.0.0.0/8 to the node.
    must('ip', ...inNs(NS.c3, 'sysctl', '-qw', 'net.ipv4.conf.eth0.route_localnet=1'));
    // Its own 127.0.0.1 goes, or the kernel takes the node's answers for martians.
    ip('-n', NS.c3, 'addr', 'del', '127.0.0.1/8', 'dev', 'lo');
    ip('-n', NS.c3, 'route', 'add', '127.0.0.0/8', 'via', GW, 'dev', 'eth0');
    const url = `http://127.0.0.1:${LOOPBACK_ONLY_PORT}/`;
    expect(get(NS.c3, url, 1500).ok).toBe(false);
    // Without the guard it does get through (so the check above means something) ...
    nodeNft('flush', 'chain', 'ip', TABLE, 'filter-input');
    expect(get(NS.c3, url)).toMatchObject({ ok: true, body: 'node-loopback-only' });
    // ... and a resync puts the guard back. The node's own 127.0.0.1 hostPort still works.
    await proxy.sync([web([IP.c1, IP.c2]), dns, empty]);
    expect(get(NS.c3, url, 1500).ok).toBe(false);
    expect(get(NS.node, `http://127.0.0.1:${HOST_PORT}/`).ok).toBe(true);
    ip('-n', NS.c3, 'route', 'del', '127.0.0.0/8', 'via', GW);
    ip('-n', NS.c3, 'addr', 'add', '127.0.0.1/8', 'dev', 'lo');
  });

  it("changes one service's endpoints in a transaction that leaves the others alone", async () => {
    const others = (els: string[]): string[] =>
      els.filter((e) => !e.includes('default/web') && !e.startsWith('hairpin '));
    const before = tableSnapshot();
    await proxy.upsert(web([IP.c2]));
    const after = tableSnapshot();
    const text = proxy.lastTransaction ?? '';
    expectOnlyService(text, [WEB_IP, `tcp . ${HOST_PORT}`], [IP.c1]);
    // dns has one endpoint, so pick-1 was there already; web's pick-2 went with it.
    expect(text).not.toContain(`add chain ip ${TABLE} ${pickChainName(1)}`);
    expect(text).toContain(`delete chain ip ${TABLE} ${pickChainName(2)}`);
    expect(text).not.toContain('hairpin'); // dns still has c1: its pair stays
    // No chain that stays was rewritten, and no other service's element changed.
    for (const [chain, handles] of before.handles)
      if (after.handles.has(chain)) expect(after.handles.get(chain)).toEqual(handles);
    expect(others(after.elements)).toEqual(others(before.elements));
    expect(new Set(bodies(NS.c3, `http://${WEB_IP}/`, 8))).toEqual(new Set(['backend-c2']));
    // Unchanged: nothing applied.
    const count = proxy.transactionCount;
    await proxy.upsert(web([IP.c2]));
    expect(proxy.transactionCount).toBe(count);
    // An endpoint replaced by another: its slot rewritten, no chain touched at all.
    const mid = tableSnapshot();
    await proxy.upsert(web([IP.c1]));
    const moved = proxy.lastTransaction ?? '';
    expect(moved).not.toMatch(/chain/);
    expect(moved.match(/^delete element .* service-endpoint-ips /gm)).toHaveLength(1);
    expect(moved.match(/^add element .* service-endpoint-ips /gm)).toHaveLength(1);
    expectOnlyService(moved, [WEB_IP, `tcp . ${HOST_PORT}`], [IP.c1, IP.c2]);
    expect(tableSnapshot().handles).toEqual(mid.handles);
    expect(new Set(bodies(NS.c3, `http://${WEB_IP}/`, 8))).toEqual(new Set(['backend-c1']));
    expect(new Set(bodies(NS.node, `http://127.0.0.1:${HOST_PORT}/`, 4))).toEqual(
      new Set(['backend-c1']),
    );
    expect(bodies(NS.c1, `http://${WEB_IP}/`, 4)).toEqual(Array(4).fill('backend-c1')); // hairpin
  });

  it('brings the table to exactly the given services after a restart', async () => {
    // A new process: dns is gone, web is back to two endpoints, api is new.
    const api: ServiceRule = {
      key: 'default/api',
      clusterIP: `10.80.${B}.20`,
      ports: [{ protocol: 'TCP', port: 8000, endpoints: [{ ip: IP.c1, port: 8080 }] }],
    };
    // And what an older layout (a chain per service) left: a chain and an element going to it.
    nodeNft('add', 'chain', 'ip', TABLE, 'svc-OLD');
    nodeNft(
      'add',
      'element',
      'ip',
      TABLE,
      'service-ips',
      `{ 10.80.${B}.250 . tcp . 81 : goto svc-OLD }`,
    );
    const fresh = new ServiceProxy(OPTS);
    await fresh.sync([web([IP.c1, IP.c2]), empty, api]);
    const text = nodeNft('list', 'table', 'ip', TABLE);
    expect(text).not.toContain('default/dns');
    expect(text).not.toContain('svc-OLD');
    expect(text).not.toContain(`10.80.${B}.250`);
    for (const a of [IP.c1, IP.c2]) expect(text).toContain(`${a} . ${a}`); // hairpin pairs
    expect(text).toContain(`10.80.${B}.20 . tcp . 8000 comment "default/api" : goto pick-1`);
    expect(get(NS.c3, `http://10.80.${B}.20:8000/`)).toMatchObject({
      ok: true,
      body: 'backend-c1',
    });
    expect(new Set(bodies(NS.c3, `http://${WEB_IP}/`))).toEqual(
      new Set(['backend-c1', 'backend-c2']),
    );
    expect(udp(NS.c3, DNS_IP, 53)).toBe('ECONNREFUSED');
    // A second sync of the same services adds or deletes no element: every slot stays.
    const before = tableSnapshot();
    await fresh.sync([web([IP.c2, IP.c1]), empty, api]);
    expect(fresh.lastTransaction).not.toMatch(/element/);
    expect(tableSnapshot().elements).toEqual(before.elements);
    proxy = fresh;
  });

  it('destroy() leaves the node with an empty ruleset', async () => {
    await proxy.destroy();
    expect(nodeNft('list', 'ruleset').trim()).toBe('');
    await proxy.destroy(); // already gone: fine
  });
});
