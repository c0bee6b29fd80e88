/**
 * Container networking end to end, through the controller and the real CNI plugins, nftables
 * and dnsmasq: bridge addresses and /etc files, none and host modes, published ports (and their
 * conflicts), Services (ClusterIP over TCP and UDP, readiness, hairpin, no endpoints, host
 * ports), DNS names, outbound NAT — and that deleting everything leaves the host's network as
 * it was.
 *
 * Traffic only goes to addresses this suite made: its containers (its own /24 of 10.79/16),
 * its Services (its own /24 of 10.80/16), 127.0.0.1, and an "upstream" network namespace at
 * 203.0.113.1 (TEST-NET-3) reached by a veth routed only to it, which plays the outside world
 * for NAT and for DNS forwarding.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createSocket } from 'node:dgram';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { connect, createServer, type Server } from 'node:net';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';

import type { Container, Image, Service } from '../../controller/api/types.generated.js';
import type { RunningController } from '../../controller/manager.js';
import { parseCidr, cidrContains, parseIPv4 } from '../../runtime-core/src/index.js';
import { ControllerHarness, busyboxImage, containerManifest } from '../fixtures/controller.js';
import { assertNoLeaks, hostSnapshot, uniqueId, type HostSnapshot } from '../fixtures/index.js';
import {
  buildUdpEcho,
  httpGet,
  networkSnapshot,
  tcpOutcome,
  udpExchange,
  type NetworkSnapshot,
} from '../fixtures/network.js';
import { FIXTURE_ROOT } from '../fixtures/rootfs.js';

const NS = uniqueId('net');
const tag = randomBytes(3).toString('hex');
const UPSTREAM_NS = `cnd-up-${tag}`;
const UP_HOST = `cndu${tag}`; // host side of the veth to the upstream
const UP_PEER = `cndv${tag}`;
const UPSTREAM = '203.0.113.1';
const UP_LOCAL = '203.0.113.2';
/**
 * A host port nothing listens on now (the kernel's pick for a listener of our own, closed at
 * once), from below the ephemeral range so an outgoing connection does not take it meanwhile.
 */
function port(): number {
  for (;;) {
    const p = 20000 + Math.floor(Math.random() * 12000);
    const taken = execFileSync('ss', ['-Htuln', `sport = :${p}`], { encoding: 'utf8' }).trim();
    if (taken === '') return p;
  }
}

let h: ControllerHarness;
let before: HostSnapshot;
let netBefore: NetworkSnapshot;
let work: string;
const started: ChildProcess[] = [];

const sh = (cmd: string, ...args: string[]): string =>
  execFileSync(cmd, args, { encoding: 'utf8' });

function ctl(): RunningController {
  if (!h.ctl) throw new Error('the controller is not running');
  return h.ctl;
}

const running = (o: Container | undefined): boolean =>
  o?.status?.phase === 'Running' &&
  o.status.conditions?.find((c) => c.type === 'Ready')?.status === 'True';

async function exec(name: string, ...argv: string[]): Promise<string> {
  const r = await ctl().runtime.execOutput(`${NS}_${name}`, argv);
  if (r.exitCode !== 0) throw new Error(`${argv.join(' ')} in ${name}: ${r.exitCode} ${r.stderr}`);
  return r.stdout;
}

/** A busybox httpd on 8080 serving its hostname at / and /ready.txt (its readiness). */
function httpd(name: string, labels: Record<string, string>, extra: Record<string, unknown> = {}) {
  return containerManifest(
    NS,
    name,
    {
      command: [
        '/bin/sh',
        '-c',
        'mkdir -p /www && hostname > /www/index.html && echo ok > /www/ready.txt && (/bin/udp-echo 5000 &) && (nc -ll -p 9000 -e cat &) && exec httpd -f -p 8080 -h /www',
      ],
      ports: [
        { name: 'http', containerPort: 8080 },
        { name: 'echo', containerPort: 5000, protocol: 'UDP' },
      ],
      readinessProbe: { httpGet: { path: '/ready.txt', port: 'http' }, periodSeconds: 1 },
      ...extra,
    },
    labels,
  );
}

function sleeper(name: string, extra: Record<string, unknown> = {}): string {
  return containerManifest(NS, name, { command: ['sleep', '1000'], ...extra });
}

/** The suite's ranges, DNS forwarding to the upstream namespace, quick restarts. */
function controllerOptions(): Parameters<ControllerHarness['start']>[0] {
  return {
    network: { ...h.network, dnsUpstreams: [UPSTREAM] },
    restartBackoff: { initialMs: 200, maxMs: 1000, resetMs: 60_000 },
  };
}

async function ipOf(name: string): Promise<string> {
  const c = await h.waitFor<Container>('Container', name, (o) => running(o) && !!o?.status?.ip);
  return c?.status?.ip ?? '';
}

beforeAll(async () => {
  before = hostSnapshot();
  netBefore = networkSnapshot();
  work = mkdtempSync(join(FIXTURE_ROOT, 'net-'));
  // The outside world: a namespace at 203.0.113.1, an httpd that says who called (CGI
  // REMOTE_ADDR), and a DNS server holding one name.
  sh('ip', 'netns', 'add', UPSTREAM_NS);
  sh('ip', 'link', 'add', UP_HOST, 'type', 'veth', 'peer', 'name', UP_PEER);
  sh('ip', 'link', 'set', UP_PEER, 'netns', UPSTREAM_NS);
  sh('ip', 'addr', 'add', `${UP_LOCAL}/32`, 'dev', UP_HOST);
  sh('ip', 'link', 'set', UP_HOST, 'up');
  sh('ip', 'route', 'add', `${UPSTREAM}/32`, 'dev', UP_HOST);
  const inUp = (...args: string[]): string => sh('ip', 'netns', 'exec', UPSTREAM_NS, ...args);
  inUp('ip', 'addr', 'add', `${UPSTREAM}/32`, 'dev', UP_PEER);
  inUp('ip', 'link', 'set', UP_PEER, 'up');
  inUp('ip', 'link', 'set', 'lo', 'up');
  inUp('ip', 'route', 'add', `${UP_LOCAL}/32`, 'dev', UP_PEER);
  const www = join(work, 'www');
  mkdirSync(join(www, 'cgi-bin'), { recursive: true });
  writeFileSync(
    join(www, 'cgi-bin', 'ip'),
    '#!/bin/busybox sh\necho "Content-Type: text/plain"\necho\necho "$REMOTE_ADDR"\n',
  );
  chmodSync(join(www, 'cgi-bin', 'ip'), 0o755);
  const upHttpd = spawn(
    'ip',
    [
      'netns',
      'exec',
      UPSTREAM_NS,
      '/bin/busybox',
      'httpd',
      '-f',
      '-p',
      `${UPSTREAM}:80`,
      '-h',
      www,
    ],
    { stdio: 'ignore' },
  );
  started.push(upHttpd);
  const upDns = spawn(
    'ip',
    [
      'netns',
      'exec',
      UPSTREAM_NS,
      'dnsmasq',
      '--keep-in-foreground',
      '--conf-file=/dev/null',
      '--no-resolv',
      '--no-hosts',
      `--listen-address=${UPSTREAM}`,
      '--bind-interfaces',
      '--address=/outside.example.test/198.51.100.7',
      `--pid-file=${join(work, 'up-dns.pid')}`,
    ],
    { stdio: 'ignore' },
  );
  started.push(upDns);

  h = await ControllerHarness.create(NS);
  copyFileSync(buildUdpEcho(work), join(h.watchDir, 'rootfs', 'bin', 'udp-echo'));
  await h.write('image.yaml', busyboxImage(NS));
  await h.start(controllerOptions());
  await h.waitFor<Image>('Image', 'busybox', (o) => o?.status?.phase === 'Ready', 60_000);
}, 90_000);

afterAll(async () => {
  await h?.cleanup();
  for (const p of started) if (p.exitCode === null && p.pid) p.kill('SIGKILL');
  await Promise.all(
    started.map((p) => (p.exitCode === null ? new Promise((r) => p.once('exit', r)) : undefined)),
  );
  sh('ip', 'link', 'del', UP_HOST);
  sh('ip', 'netns', 'del', UPSTREAM_NS);
  rmSync(work, { recursive: true, force: true });
  assertNoLeaks(before, { idPrefix: NS });
  // The host's links, routes, netns, nftables tables, forwarding and /var/lib/cni as they were.
  expect(networkSnapshot()).toEqual(netBefore);
}, 60_000);

describe('a container on the bridge', () => {
  it('gets an address in the range, Conductor’s /etc files, and is reachable from the host', async () => {
    await h.write('a.yaml', httpd('a', { app: 'a' }));
    const ip = await ipOf('a');
    const range = parseCidr(h.network.containerCidr ?? '', 'range');
    expect(cidrContains(range, parseIPv4(ip) ?? 0)).toBe(true);
    expect((await httpGet(ip, 8080)).body.trim()).toBe('a');
    // lo is up (the loopback network, attached beside the bridge's): 127.0.0.1 works inside.
    expect((await exec('a', 'wget', '-qO-', 'http://127.0.0.1:8080/')).trim()).toBe('a');
    expect(await exec('a', 'cat', '/etc/hostname')).toBe('a\n');
    expect(await exec('a', 'cat', '/etc/hosts')).toMatch(
      new RegExp(`^${ip.replace(/\./g, '\\.')}\\ta$`, 'm'),
    );
    const resolv = await exec('a', 'cat', '/etc/resolv.conf');
    const info = await ctl().runtime.networkInfo();
    expect(resolv).toContain(`nameserver ${info.gateway}`);
    expect(resolv).toContain(`search ${NS}.svc.cluster.local svc.cluster.local cluster.local`);
    expect(resolv).toContain('ndots:5');
    // Both ranges stay on this machine: the bridge's routes, and unreachable ones behind them.
    const routes = sh('ip', 'route', 'show');
    for (const cidr of [h.network.containerCidr ?? '', h.network.serviceCidr ?? '']) {
      expect(routes).toContain(`${cidr} dev ${info.bridge}`);
      expect(routes).toContain(`unreachable ${cidr} metric`);
    }
    // The conflist is a real file a user can read.
    const conf = JSON.parse(sh('cat', info.conflist)) as {
      cniVersion: string;
      plugins: { type: string }[];
    };
    expect(conf.cniVersion).toBe('1.0.0');
    expect(conf.plugins.map((p) => p.type)).toEqual(['bridge', 'portmap']);
  });

  it('reaches another container by IP, and the outside world through NAT as the host', async () => {
    const ip = await ipOf('a');
    await h.write('b.yaml', sleeper('b'));
    await ipOf('b');
    expect((await exec('b', 'wget', '-qO-', `http://${ip}:8080/`)).trim()).toBe('a');
    expect((await exec('b', 'wget', '-qO-', `http://${UPSTREAM}/cgi-bin/ip`)).trim()).toBe(
      UP_LOCAL,
    );
  });

  it('network none has only lo; network host sees the host’s links', async () => {
    await h.write('none.yaml', sleeper('none', { network: 'none' }));
    await h.write('host.yaml', sleeper('host', { network: 'host' }));
    await h.waitFor<Container>('Container', 'none', running);
    await h.waitFor<Container>('Container', 'host', running);
    const ifaces = (text: string): string[] =>
      text
        .split('\n')
        .slice(2)
        .map((l) => l.split(':')[0]?.trim() ?? '')
        .filter(Boolean)
        .sort();
    expect(ifaces(await exec('none', 'cat', '/proc/net/dev'))).toEqual(['lo']);
    expect(ifaces(await exec('host', 'cat', '/proc/net/dev'))).toEqual(
      ifaces(sh('cat', '/proc/net/dev')),
    );
    expect((await h.object<Container>('Container', 'host'))?.status?.ip).toBeUndefined();
  });
});

describe('published ports', () => {
  const hp = port();

  it('a hostPort is reachable at 127.0.0.1 and at the host’s bridge address', async () => {
    await h.write(
      'pub.yaml',
      httpd('pub', {}, { ports: [{ name: 'http', containerPort: 8080, hostPort: hp }] }),
    );
    await ipOf('pub');
    const info = await ctl().runtime.networkInfo();
    expect((await httpGet('127.0.0.1', hp)).body.trim()).toBe('pub');
    expect((await httpGet(info.gateway, hp)).body.trim()).toBe('pub');
  });

  it('a second container on the same port says who holds it, and starts once it is free', async () => {
    await h.write(
      'pub2.yaml',
      httpd('pub2', {}, { ports: [{ name: 'http', containerPort: 8080, hostPort: hp }] }),
    );
    const c = await h.waitFor<Container>(
      'Container',
      'pub2',
      (o) => o?.status?.reason === 'HostPortConflict',
    );
    expect(c?.status?.message).toContain(`${hp}/TCP`);
    expect(c?.status?.message).toContain(`Container ${NS}/pub`);
    expect((await httpGet('127.0.0.1', hp)).body.trim()).toBe('pub'); // the first is untouched
    await h.remove('pub.yaml');
    await h.waitFor<Container>('Container', 'pub2', running, 20_000);
    expect((await httpGet('127.0.0.1', hp)).body.trim()).toBe('pub2');
    await h.remove('pub2.yaml');
  });

  it('a port the host listens on is a conflict naming the process', async () => {
    const server: Server = createServer();
    await new Promise<void>((r, j) => server.once('error', j).listen(0, '0.0.0.0', r));
    const address = server.address();
    const busy = typeof address === 'object' && address ? address.port : 0;
    try {
      await h.write(
        'busy.yaml',
        httpd('busy', {}, { ports: [{ name: 'http', containerPort: 8080, hostPort: busy }] }),
      );
      const c = await h.waitFor<Container>(
        'Container',
        'busy',
        (o) => o?.status?.reason === 'HostPortConflict',
      );
      expect(c?.status?.message).toContain(`pid ${process.pid}`);
    } finally {
      await new Promise((r) => server.close(r));
    }
    await h.waitFor<Container>('Container', 'busy', running, 20_000);
    await h.remove('busy.yaml');
  });
});

function service(name: string, spec: Record<string, unknown>): string {
  return JSON.stringify({
    apiVersion: 'conductor.dev/v1alpha1',
    kind: 'Service',
    metadata: { name, namespace: NS },
    spec,
  });
}

let clusterIP = '';

describe('Services', () => {
  const svcPort = port();

  beforeAll(async () => {
    await h.write('web1.yaml', httpd('web-1', { app: 'web' }));
    await h.write('web2.yaml', httpd('web-2', { app: 'web' }));
    await h.write(
      'svc.yaml',
      service('web', {
        selector: { app: 'web' },
        ports: [
          { name: 'http', port: 80, targetPort: 'http', hostPort: svcPort },
          { name: 'echo', port: 5000, protocol: 'UDP', targetPort: 'echo' },
          { name: 'stream', port: 9000 },
        ],
      }),
    );
    await ipOf('web-1');
    await ipOf('web-2');
    const s = await h.waitFor<Service>(
      'Service',
      'web',
      (o) =>
        (o?.status?.endpoints ?? []).filter((e) => e.ready).length === 2 && !!o?.status?.clusterIP,
    );
    clusterIP = s?.status?.clusterIP ?? '';
  }, 60_000);

  /**
   * Which backends answer `n` requests (numgen picks at random, so "both" is asked until both
   * have answered: 60 tries miss one of two with odds of 2^-59, where a fixed 6 missed 1 in 32).
   */
  const backends = async (host: string, p: number, n = 60): Promise<Set<string>> => {
    const seen = new Set<string>();
    for (let i = 0; i < n && !(seen.has('web-1') && seen.has('web-2')); i++)
      seen.add((await httpGet(host, p)).body.trim());
    return seen;
  };

  it('a ClusterIP in the service range balances across both ready endpoints, from the host and from a container', async () => {
    expect(
      cidrContains(parseCidr(h.network.serviceCidr ?? '', 'r'), parseIPv4(clusterIP) ?? 0),
    ).toBe(true);
    expect(await backends(clusterIP, 80)).toEqual(new Set(['web-1', 'web-2']));
    const fromB = new Set<string>();
    for (let i = 0; i < 20; i++)
      fromB.add((await exec('b', 'wget', '-qO-', `http://${clusterIP}/`)).trim());
    expect(fromB).toEqual(new Set(['web-1', 'web-2']));
  });

  it('hairpin: a backend reaches itself through its Service', async () => {
    const seen = new Set<string>();
    for (let i = 0; i < 20; i++)
      seen.add((await exec('web-1', 'wget', '-qO-', `http://${clusterIP}/`)).trim());
    expect(seen).toContain('web-1');
  });

  it('UDP through the ClusterIP', async () => {
    const seen = new Set<string>();
    for (let i = 0; i < 20; i++) {
      const reply = await udpExchange(clusterIP, 5000, `ping${i}`);
      expect(reply).toMatch(new RegExp(`^web-[12] ping${i}$`));
      seen.add(reply?.split(' ')[0] ?? '');
    }
    expect(seen).toEqual(new Set(['web-1', 'web-2']));
  });

  it('a UDP flow whose endpoint leaves goes to the one left (its conntrack entry is deleted)', async () => {
    const sock = createSocket('udp4');
    const replies: string[] = [];
    sock.on('message', (m) => replies.push(m.toString()));
    const ask = async (text: string): Promise<string> => {
      const n = replies.length;
      sock.send(text, 5000, clusterIP);
      for (let i = 0; i < 100 && replies.length === n; i++)
        await new Promise((r) => setTimeout(r, 20));
      return replies[n] ?? 'no reply';
    };
    try {
      // One socket, one flow: every datagram goes to the same backend while it is there.
      const first = (await ask('one')).split(' ')[0] ?? '';
      expect(['web-1', 'web-2']).toContain(first);
      expect((await ask('two')).split(' ')[0]).toBe(first);
      await exec(first, 'rm', '/www/ready.txt');
      await h.waitFor<Service>(
        'Service',
        'web',
        (o) => o?.status?.endpoints?.find((e) => e.name === first)?.ready === false,
      );
      const other = first === 'web-1' ? 'web-2' : 'web-1';
      expect(await ask('three')).toBe(`${other} three`);
    } finally {
      sock.close();
      for (const n of ['web-1', 'web-2']) await exec(n, 'sh', '-c', 'echo ok > /www/ready.txt');
    }
    await h.waitFor<Service>(
      'Service',
      'web',
      (o) => o?.status?.endpoints?.every((e) => e.ready) === true,
    );
  });

  it('the Service hostPort is reachable at 127.0.0.1 and the bridge address', async () => {
    const info = await ctl().runtime.networkInfo();
    expect(await backends('127.0.0.1', svcPort)).toEqual(new Set(['web-1', 'web-2']));
    expect(await backends(info.gateway, svcPort, 10)).not.toEqual(new Set());
  });

  it('a second Service on a held host port is reported, and published once it is free', async () => {
    await h.write(
      'clash.yaml',
      service('clash', {
        selector: { app: 'web' },
        ports: [{ port: 8081, targetPort: 8080, hostPort: svcPort }],
      }),
    );
    const s = await h.waitFor<Service>(
      'Service',
      'clash',
      (o) => o?.status?.conditions?.some((c) => c.reason === 'HostPortConflict') === true,
    );
    expect(JSON.stringify(s?.status?.conditions)).toContain(
      `${svcPort}/TCP is already in use by Service ${NS}/web`,
    );
    // Its ClusterIP works meanwhile; the holder's host port is untouched.
    expect(await backends(s?.status?.clusterIP ?? '', 8081, 6)).not.toEqual(new Set());
    expect(await backends('127.0.0.1', svcPort)).toEqual(new Set(['web-1', 'web-2']));
    await h.remove('clash.yaml');
    await h.waitFor('Service', 'clash', (o) => o === undefined);
  });

  it('an unready endpoint leaves the Service and comes back when it passes', async () => {
    await exec('web-2', 'rm', '/www/ready.txt');
    await h.waitFor<Service>(
      'Service',
      'web',
      (o) => o?.status?.endpoints?.find((e) => e.name === 'web-2')?.ready === false,
    );
    expect(await backends(clusterIP, 80, 20)).toEqual(new Set(['web-1']));
    await exec('web-2', 'sh', '-c', 'echo ok > /www/ready.txt');
    await h.waitFor<Service>(
      'Service',
      'web',
      (o) => o?.status?.endpoints?.every((e) => e.ready) === true,
    );
    expect(await backends(clusterIP, 80)).toEqual(new Set(['web-1', 'web-2']));
  });

  it('an open connection survives its endpoint leaving the Service; new ones are refused', async () => {
    const sock = connect({ host: clusterIP, port: 9000 });
    const lines: string[] = [];
    sock.setEncoding('utf8').on('data', (d: string) => lines.push(d));
    await new Promise<void>((r, j) => sock.once('connect', r).once('error', j));
    const echoed = async (text: string): Promise<void> => {
      sock.write(text);
      for (let i = 0; i < 100 && !lines.join('').includes(text); i++)
        await new Promise((r) => setTimeout(r, 20));
      expect(lines.join('')).toContain(text);
    };
    try {
      await echoed('before\n');
      for (const n of ['web-1', 'web-2']) await exec(n, 'rm', '/www/ready.txt');
      await h.waitFor<Service>(
        'Service',
        'web',
        (o) => o?.status?.endpoints?.every((e) => e.ready === false) === true,
      );
      await echoed('after\n'); // the rule change did not cut it
      expect(await tcpOutcome(clusterIP, 9000)).toBe('refused'); // but no new ones
    } finally {
      sock.destroy();
      for (const n of ['web-1', 'web-2']) await exec(n, 'sh', '-c', 'echo ok > /www/ready.txt');
    }
    await h.waitFor<Service>(
      'Service',
      'web',
      (o) => o?.status?.endpoints?.every((e) => e.ready) === true,
    );
  });

  it('a controller restart leaves the rules serving and removes what is stale', async () => {
    const table = ctl().runtime.installation;
    await h.stop();
    try {
      // While it is down the containers and their Service keep working.
      expect(await backends(clusterIP, 80)).toEqual(new Set(['web-1', 'web-2']));
      const range = parseCidr(h.network.serviceCidr ?? '', 'r');
      const stale = `${range.text.split('.').slice(0, 3).join('.')}.250`;
      sh('nft', 'add', 'chain', 'ip', table, 'svc-STALE');
      sh(
        'nft',
        'add',
        'element',
        'ip',
        table,
        'service-ips',
        `{ ${stale} . tcp . 81 : goto svc-STALE }`,
      );
    } finally {
      // Whatever failed above, the rest of the suite has a controller.
      await h.start(controllerOptions());
    }
    // Adopted containers keep their readiness: the Service never lost its endpoints.
    expect(
      (await h.object<Service>('Service', 'web'))?.status?.endpoints?.every((e) => e.ready),
    ).toBe(true);
    const rules = sh('nft', 'list', 'table', 'ip', table);
    expect(rules).not.toContain('svc-STALE');
    expect(rules).toContain(clusterIP);
    expect(await backends(clusterIP, 80)).toEqual(new Set(['web-1', 'web-2']));
    expect((await h.object<Service>('Service', 'web'))?.status?.clusterIP).toBe(clusterIP);
  }, 60_000);

  it('a backend that crashes and restarts gets a new address, and its Service follows', async () => {
    const old = await h.object<Container>('Container', 'web-2');
    const pid = old?.status?.pid ?? 0;
    expect(pid).toBeGreaterThan(1);
    process.kill(pid, 'SIGKILL'); // the container's init, which this suite's controller started
    const back = await h.waitFor<Container>(
      'Container',
      'web-2',
      (o) => running(o) && (o?.status?.restartCount ?? 0) >= 1 && !!o?.status?.ip,
      30_000,
    );
    const ip = back?.status?.ip ?? '';
    await h.waitFor<Service>(
      'Service',
      'web',
      (o) =>
        o?.status?.endpoints?.some((e) => e.name === 'web-2' && e.ip === ip && e.ready) === true,
    );
    expect(await backends(clusterIP, 80)).toEqual(new Set(['web-1', 'web-2']));
    // Its old address, if it changed, is free again (host-local holds one file per address).
    const ipam = join(h.stateDir, 'network', 'ipam', ctl().runtime.installation);
    if (old?.status?.ip !== ip) expect(existsSync(join(ipam, old?.status?.ip ?? 'x'))).toBe(false);
    expect(existsSync(join(ipam, ip))).toBe(true);
  }, 60_000);

  it('a Service without ready endpoints rejects at once', async () => {
    await h.write(
      'empty.yaml',
      service('empty', { selector: { app: 'nobody' }, ports: [{ port: 80 }] }),
    );
    const s = await h.waitFor<Service>('Service', 'empty', (o) => !!o?.status?.clusterIP);
    const t0 = Date.now();
    expect(await tcpOutcome(s?.status?.clusterIP ?? '', 80, 3000)).toBe('refused');
    expect(Date.now() - t0).toBeLessThan(2000);
  });

  it('a clusterIP outside the range or taken is reported on the object', async () => {
    await h.write(
      'bad-ip.yaml',
      service('bad-ip', { clusterIP: '192.0.2.1', ports: [{ port: 80 }] }),
    );
    const s = await h.waitFor<Service>(
      'Service',
      'bad-ip',
      (o) => o?.status?.conditions?.some((c) => c.reason === 'InvalidClusterIP') === true,
    );
    expect(JSON.stringify(s?.status?.conditions)).toContain(
      'not a usable address of the service range',
    );
    await h.write('taken.yaml', service('taken', { clusterIP, ports: [{ port: 80 }] }));
    const t = await h.waitFor<Service>(
      'Service',
      'taken',
      (o) => o?.status?.conditions?.some((c) => c.reason === 'InvalidClusterIP') === true,
    );
    expect(JSON.stringify(t?.status?.conditions)).toContain(`Service ${NS}/web`);
    await h.remove('bad-ip.yaml');
    await h.remove('taken.yaml');
  });

  it('DNS: Service names, FQDN and Container names resolve inside a container; other names are forwarded', async () => {
    // busybox nslookup tries every search domain and exits 1 when one of them has no answer;
    // the answer is the first Name/Address pair after the server's own lines.
    const lookup = async (name: string): Promise<string> => {
      const r = await ctl().runtime.execOutput(`${NS}_b`, ['nslookup', name]);
      const m = /Name:\s*\S+\s*\nAddress:\s*([\d.]+)/.exec(r.stdout);
      return m?.[1] ?? `no answer for ${name}: ${r.stdout}${r.stderr}`;
    };
    expect(await lookup('web')).toBe(clusterIP);
    // busybox nslookup applies the search list only to names without a dot: the resolver
    // (wget's getaddrinfo) is what containers use, and it does, as ndots:5 says.
    expect(['web-1', 'web-2']).toContain(
      (await exec('b', 'wget', '-qO-', `http://web.${NS}/`)).trim(),
    );
    expect(['web-1', 'web-2']).toContain((await exec('b', 'wget', '-qO-', `http://web/`)).trim());
    expect(await lookup(`web.${NS}.svc.cluster.local`)).toBe(clusterIP);
    expect(await lookup('a')).toBe(await ipOf('a'));
    expect(await lookup('outside.example.test')).toBe('198.51.100.7');
  });
});

describe('deleting', () => {
  it('removes every netns, address and rule a container and a Service had', async () => {
    for (const f of [
      'a.yaml',
      'b.yaml',
      'none.yaml',
      'host.yaml',
      'web1.yaml',
      'web2.yaml',
      'svc.yaml',
      'empty.yaml',
    ])
      await h.remove(f);
    for (const n of ['a', 'b', 'none', 'host', 'web-1', 'web-2'])
      await h.waitFor('Container', n, (o) => o === undefined, 30_000);
    await h.waitFor('Service', 'web', (o) => o === undefined);
    // Only the node side is left while the controller runs: no container's netns or address.
    const attachments = await ctl().runtime.list();
    expect(attachments).toEqual([]);
    expect(networkSnapshot().netns.filter((n) => n.startsWith(ctl().runtime.installation))).toEqual(
      [],
    );
    const table = sh('nft', 'list', 'table', 'ip', ctl().runtime.installation);
    expect(clusterIP).not.toBe('');
    expect(table).not.toContain(clusterIP);
  }, 60_000);
});
