/**
 * Container DNS (runtime-core/src/network/dns.ts) with the real dnsmasq, in a network namespace
 * the test makes: a veth pair inside it holds the "bridge gateway" address (and another address
 * dnsmasq must not listen on), and an "upstream" dnsmasq of the test's own, at a third address,
 * holds outside.example.test. Queries are busybox nslookup run in that namespace, so no packet
 * leaves it. Every process the test starts is killed by its pid, the namespace and the state
 * dir are removed, and both are checked for.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';

import { procStartTime, procStatFields } from '../../runtime-core/src/files.js';
import {
  DnsError,
  DnsServer,
  dnsPaths,
  type DnsServerOptions,
} from '../../runtime-core/src/network/dns.js';
import { FIXTURE_ROOT } from '../fixtures/index.js';

const BUSYBOX = '/bin/busybox';
const tag = randomBytes(4).toString('hex');
const NETNS = `cnd-dns-${tag}`;
const NET = `10.79.${parseInt(tag.slice(0, 2), 16)}`;
const GATEWAY = `${NET}.1`;
const OTHER = `${NET}.2`; // on the gateway's interface too: dnsmasq must not answer there
const UPSTREAM = `${NET}.53`;
const MISSING = `${NET}.99`; // on no interface

let root: string;
let netnsBefore: string;
let upstream: ChildProcess | undefined;
/** Every process the test started or saw started, killed by pid (and start time) after. */
const started: { pid: number; startTime: string }[] = [];
const servers: DnsServer[] = [];

const ip = (...args: string[]): void => {
  const r = spawnSync('ip', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr}`);
};
const netnsList = (): string => spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout;
/** Running (a zombie waiting for its parent to reap it counts as gone). */
const alive = (p: { pid: number; startTime: string }): boolean => {
  const fields = procStatFields(p.pid);
  return fields !== undefined && fields[0] !== 'Z' && fields[19] === p.startTime;
};
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function track(pid: number | undefined): number {
  if (pid === undefined) throw new Error('no pid');
  const startTime = procStartTime(pid);
  if (startTime !== undefined && !started.some((p) => p.pid === pid))
    started.push({ pid, startTime });
  return pid;
}

interface Answer {
  addresses: string[];
  nxdomain: boolean;
  out: string;
}

/** An A query from inside the namespace (busybox nslookup, one try). */
function lookup(name: string, server = GATEWAY): Answer {
  const r = spawnSync(
    'ip',
    ['netns', 'exec', NETNS, BUSYBOX, 'nslookup', '-type=a', '-timeout=1', name, server],
    { encoding: 'utf8', timeout: 5000 },
  );
  const out = `${r.stdout}${r.stderr}`;
  // Answer lines are "Address: A.B.C.D"; the server's own line ends in ":53".
  const addresses = [...out.matchAll(/^Address:\s+(\d+\.\d+\.\d+\.\d+)$/gm)].map((m) => m[1]);
  return {
    addresses: addresses.filter((a) => a !== undefined),
    nxdomain: /NXDOMAIN/.test(out),
    out,
  };
}

/** Polls until `ok` holds for the answer to `name`; returns how long it took. */
async function until(name: string, ok: (a: Answer) => boolean, limitMs = 1000): Promise<number> {
  const t0 = Date.now();
  for (;;) {
    const a = lookup(name);
    if (ok(a)) return Date.now() - t0;
    if (Date.now() - t0 > limitMs)
      throw new Error(`${name}: not as expected after ${limitMs} ms: ${a.out}`);
    await sleep(10);
  }
}

function server(extra: Partial<DnsServerOptions> = {}, name = 'dns'): DnsServer {
  const s = new DnsServer({
    listenAddress: GATEWAY,
    dir: join(root, name),
    netns: NETNS,
    upstreams: [UPSTREAM],
    ...extra,
  });
  servers.push(s);
  return s;
}

beforeAll(async () => {
  netnsBefore = netnsList();
  root = mkdtempSync(join(FIXTURE_ROOT, 'dns-'));
  chmodSync(root, 0o755); // dnsmasq reads below it as nobody
  ip('netns', 'add', NETNS);
  ip('-n', NETNS, 'link', 'add', 'v0', 'type', 'veth', 'peer', 'name', 'v1');
  ip('-n', NETNS, 'addr', 'add', `${GATEWAY}/24`, 'dev', 'v0');
  ip('-n', NETNS, 'addr', 'add', `${OTHER}/24`, 'dev', 'v0');
  ip('-n', NETNS, 'addr', 'add', `${UPSTREAM}/24`, 'dev', 'v1');
  for (const link of ['lo', 'v0', 'v1']) ip('-n', NETNS, 'link', 'set', link, 'up');

  // The "host's resolver": answers outside.example.test with a TTL, NXDOMAIN for the rest of
  // example.test.
  const up = join(root, 'upstream');
  mkdirSync(up, { mode: 0o755 });
  writeFileSync(join(up, 'hosts'), '203.0.113.7\toutside.example.test\n', { mode: 0o644 });
  upstream = spawn(
    'ip',
    [
      ...['netns', 'exec', NETNS, 'dnsmasq', '--keep-in-foreground', '--conf-file=/dev/null'],
      ...['--no-resolv', '--no-hosts', '--no-poll', `--listen-address=${UPSTREAM}`],
      ...['--bind-interfaces', '--local=/example.test/', `--addn-hosts=${join(up, 'hosts')}`],
      ...['--local-ttl=300', `--pid-file=${join(up, 'pid')}`, '--log-facility=-'],
    ],
    { stdio: 'ignore' },
  );
  track(upstream.pid);
  const t0 = Date.now();
  while (!lookup('outside.example.test', UPSTREAM).addresses.includes('203.0.113.7')) {
    if (Date.now() - t0 > 5000) throw new Error('the upstream dnsmasq does not answer');
    await sleep(20);
  }
});

afterAll(async () => {
  for (const s of servers) await s.stop().catch(() => undefined);
  for (const p of started) if (alive(p)) process.kill(p.pid, 'SIGKILL');
  for (let i = 0; i < 200 && started.some(alive); i += 1) await sleep(10);
  if (existsSync(`/run/netns/${NETNS}`)) ip('netns', 'del', NETNS);
  rmSync(root, { recursive: true, force: true });
  expect(started.filter(alive)).toEqual([]);
  expect(netnsList()).toBe(netnsBefore);
});

describe('DnsServer with the real dnsmasq', () => {
  let dns: DnsServer;
  let pid: number;

  it('starts dnsmasq, which answers the records Conductor wrote, from world-readable files', async () => {
    dns = server({ logQueries: true });
    await dns.setRecords('svc.default.counter', [
      { name: 'counter.default.svc.cluster.local', ip: '10.96.0.10' },
    ]);
    const t0 = Date.now();
    await dns.start();
    const startMs = Date.now() - t0;
    pid = track(dns.pid);
    expect(startMs).toBeLessThan(2000);
    expect(lookup('counter.default.svc.cluster.local').addresses).toEqual(['10.96.0.10']);
    // Records set after the start are read live too.
    await dns.setRecords('ctr.default.web', [
      { name: 'web.default.svc.cluster.local', ip: '10.77.0.5' },
      { name: 'web.default.cluster.local', ip: '10.77.0.5' },
    ]);
    await until('web.default.cluster.local', (a) => a.addresses.includes('10.77.0.5'));
    const file = join(dnsPaths(join(root, 'dns')).hostsDir, 'ctr.default.web');
    expect(statSync(file).mode & 0o777).toBe(0o644);
    // start() again is a no-op.
    await dns.start();
    expect(dns.pid).toBe(pid);
  });

  it('applies a change and a removal within a second, with the same dnsmasq', async () => {
    const file = join(dnsPaths(join(root, 'dns')).hostsDir, 'svc.default.counter');
    const ino = statSync(file).ino;
    // The same content is not rewritten (the rename would give a new inode).
    await dns.setRecords('svc.default.counter', [
      { name: 'counter.default.svc.cluster.local', ip: '10.96.0.10' },
    ]);
    expect(statSync(file).ino).toBe(ino);

    await dns.setRecords('svc.default.counter', [
      { name: 'counter.default.svc.cluster.local', ip: '10.96.0.11' },
    ]);
    const changeMs = await until('counter.default.svc.cluster.local', (a) =>
      a.addresses.includes('10.96.0.11'),
    );
    expect(lookup('counter.default.svc.cluster.local').addresses).toEqual(['10.96.0.11']);
    await dns.removeRecords('svc.default.counter');
    const removeMs = await until('counter.default.svc.cluster.local', (a) => a.nxdomain);
    expect(existsSync(file)).toBe(false);
    expect(changeMs).toBeLessThan(1000);
    expect(removeMs).toBeLessThan(1000);
    expect(dns.pid).toBe(pid);
    expect(started.find((p) => p.pid === pid && alive(p))).toBeDefined();
  });

  it('answers NXDOMAIN, at once, for a cluster name nobody recorded', () => {
    const t0 = Date.now();
    const a = lookup('nobody.default.svc.cluster.local');
    expect(a.nxdomain).toBe(true);
    expect(a.addresses).toEqual([]);
    expect(Date.now() - t0).toBeLessThan(1000);
  });

  it('listens on the gateway address only: not on loopback, not on its interface’s other address', () => {
    for (const addr of ['127.0.0.1', OTHER]) {
      const a = lookup('web.default.cluster.local', addr);
      expect(a.addresses).toEqual([]);
      expect(a.out).toMatch(/Connection refused|timed out|no servers/);
    }
    expect(lookup('web.default.cluster.local', GATEWAY).addresses).toEqual(['10.77.0.5']);
  });

  it('forwards other names to the upstreams, and keeps their cached answers across record changes', async () => {
    expect(lookup('outside.example.test').addresses).toEqual(['203.0.113.7']);
    expect(lookup('nothing.example.test').nxdomain).toBe(true);
    // A record change rereads one hosts file; with the upstream gone, the forwarded answer
    // can only come from dnsmasq's cache.
    await dns.setRecords('svc.default.other', [
      { name: 'other.default.svc.cluster.local', ip: '10.96.0.12' },
    ]);
    await until('other.default.svc.cluster.local', (a) => a.addresses.includes('10.96.0.12'));
    const up = upstream;
    if (up?.pid === undefined) throw new Error('no upstream');
    const gone = new Promise((r) => up.once('exit', r));
    up.kill('SIGKILL');
    await gone;
    expect(lookup('outside.example.test', UPSTREAM).addresses).toEqual([]);
    expect(lookup('outside.example.test').addresses).toEqual(['203.0.113.7']);
    expect(dns.pid).toBe(pid);
  });

  it('sync leaves exactly the given groups', async () => {
    const hostsDir = dnsPaths(join(root, 'dns')).hostsDir;
    writeFileSync(join(hostsDir, '.leftover.123.tmp'), '10.1.1.1 x.cluster.local\n');
    await dns.sync(
      new Map([
        ['ctr.default.web', [{ name: 'web.default.cluster.local', ip: '10.77.0.6' }]],
        ['svc.default.counter', [{ name: 'counter.default.svc.cluster.local', ip: '10.96.0.10' }]],
      ]),
    );
    expect(readdirSync(hostsDir).sort()).toEqual(['ctr.default.web', 'svc.default.counter']);
    await until('other.default.svc.cluster.local', (a) => a.nxdomain);
    await until('web.default.cluster.local', (a) => a.addresses.join() === '10.77.0.6');
    await until('counter.default.svc.cluster.local', (a) => a.addresses.join() === '10.96.0.10');
    expect(dns.pid).toBe(pid);
  });

  it('a bad record is an error naming the group and the record, and nothing is written', async () => {
    const hostsDir = dnsPaths(join(root, 'dns')).hostsDir;
    await expect(
      dns.setRecords('ctr.default.web', [
        { name: 'web.default.cluster.local', ip: '10.77.0.7' },
        { name: 'web_2.default.cluster.local', ip: '10.77.0.7' },
      ]),
    ).rejects.toThrow(
      'DNS record group ctr.default.web: record 1 (web_2.default.cluster.local → 10.77.0.7): name:',
    );
    expect(readdirSync(hostsDir).sort()).toEqual(['ctr.default.web', 'svc.default.counter']);
    expect(lookup('web.default.cluster.local').addresses).toEqual(['10.77.0.6']);
  });

  it('a second instance on the same dir adopts the running dnsmasq, and stop() kills it', async () => {
    const again = server({ logQueries: true });
    await again.start();
    expect(again.pid).toBe(pid);
    expect(lookup('web.default.cluster.local').addresses).toEqual(['10.77.0.6']);
    await again.stop();
    expect(started.find((p) => p.pid === pid && alive(p))).toBeUndefined();
    expect(existsSync(join(root, 'dns'))).toBe(false);
    expect(lookup('web.default.cluster.local').addresses).toEqual([]);
  });

  it('replaces a recorded dnsmasq that runs with other arguments', async () => {
    const first = server({}, 'replace');
    await first.start();
    const old = track(first.pid);
    const second = server({ cacheSize: 500 }, 'replace');
    await second.start();
    const now = track(second.pid);
    expect(now).not.toBe(old);
    expect(started.find((p) => p.pid === old && alive(p))).toBeUndefined();
    await second.stop();
    expect(started.find((p) => p.pid === now && alive(p))).toBeUndefined();
  });

  it('never kills a recorded pid that is not its dnsmasq', async () => {
    const other = spawn('sleep', ['60'], { stdio: 'ignore' });
    const otherPid = track(other.pid);
    const startTime = procStartTime(otherPid);
    const dir = join(root, 'reused');
    mkdirSync(dir, { mode: 0o755 });
    // Right pid and start time, but its command line is not dnsmasq's.
    writeFileSync(
      dnsPaths(dir).record,
      JSON.stringify({ kind: 'conductorDnsmasqV1', pid: otherPid, startTime, argv: ['dnsmasq'] }),
    );
    const s = server({}, 'reused');
    await s.start();
    const dnsmasqPid = track(s.pid);
    expect(dnsmasqPid).not.toBe(otherPid);
    await s.stop();
    expect(procStartTime(otherPid)).toBe(startTime);
    other.kill('SIGKILL');
  });

  it('fails with dnsmasq’s reason when the listen address does not exist, leaving nothing running', async () => {
    const s = server({ listenAddress: MISSING }, 'missing');
    await expect(s.start()).rejects.toThrow(
      /dnsmasq failed \(exit \d+\).*failed to create listening socket/,
    );
    expect(s.pid).toBeUndefined();
    expect(existsSync(dnsPaths(join(root, 'missing')).record)).toBe(false);
    await s.stop();
    expect(existsSync(join(root, 'missing'))).toBe(false);
  });

  it('refuses a state dir dnsmasq (running as nobody) could not read', async () => {
    const closed = join(root, 'closed');
    mkdirSync(closed, { mode: 0o700 });
    const s = new DnsServer({ listenAddress: GATEWAY, dir: join(closed, 'dns'), netns: NETNS });
    await expect(s.start()).rejects.toThrow(DnsError);
    await expect(s.start()).rejects.toThrow(`${closed} (mode 700) is not traversable by others`);
    expect(s.pid).toBeUndefined();
    rmSync(closed, { recursive: true });
  });
});
