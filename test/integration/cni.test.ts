/**
 * The CNI client (runtime-core/src/network/cni.ts) against Debian's real plugins: bridge with
 * host-local IPAM, and loopback, in a network namespace the test makes. No traffic is sent:
 * the test reads addresses and links. Everything it makes (netns, bridge, IPAM state, cache)
 * is removed after, and checked for.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';

import {
  CniError,
  CniNetwork,
  parseConfList,
  type CniAttachment,
  type CniConfList,
} from '../../runtime-core/src/network/cni.js';
import { FIXTURE_ROOT } from '../fixtures/index.js';

const BIN_DIRS = ['/usr/lib/cni', '/opt/cni/bin'];
const tag = randomBytes(4).toString('hex');
const NETNS = `cnd-test-${tag}`;
const BRIDGE = `cndt${tag}`; // at most 15 characters
const SUBNET_BYTE = parseInt(tag.slice(0, 2), 16);
const SUBNET = `10.79.${SUBNET_BYTE}.0/24`;
let dir: string;
// The bridge plugin turns on IPv4 forwarding (isGateway) and never turns it off: put it back.
const FORWARD = '/proc/sys/net/ipv4/ip_forward';
let forwardBefore: string;

const ip = (...args: string[]): string => execFileSync('ip', args, { encoding: 'utf8' });
const ipOk = (...args: string[]): boolean =>
  spawnSync('ip', args, { stdio: 'ignore' }).status === 0;

function conflist(plugins: CniConfList['plugins'], name = `cnd-test-${tag}`): CniConfList {
  return { cniVersion: '1.0.0', name, plugins };
}

function bridgePlugin(): CniConfList['plugins'][number] {
  return {
    type: 'bridge',
    bridge: BRIDGE,
    isGateway: true,
    ipMasq: false, // no iptables rules: nothing to leak into the host's nat table
    ipam: {
      type: 'host-local',
      ranges: [[{ subnet: SUBNET }]],
      dataDir: join(dir, 'ipam'),
    },
  };
}

const attachment = (containerId: string): CniAttachment => ({
  containerId,
  netns: `/run/netns/${NETNS}`,
  ifName: 'eth0',
  args: { IgnoreUnknown: '1', K8S_POD_NAME: containerId },
});

/** IPs host-local holds for the network (one file per address). */
function allocated(name: string): string[] {
  const d = join(dir, 'ipam', name);
  return existsSync(d) ? readdirSync(d).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f)) : [];
}

beforeAll(() => {
  forwardBefore = readFileSync(FORWARD, 'utf8');
  dir = mkdtempSync(join(FIXTURE_ROOT, 'cni-'));
  ip('netns', 'add', NETNS);
});

afterAll(() => {
  if (ipOk('link', 'show', BRIDGE)) ip('link', 'del', BRIDGE);
  if (ipOk('netns', 'pids', NETNS)) ip('netns', 'del', NETNS);
  rmSync(dir, { recursive: true, force: true });
  writeFileSync(FORWARD, forwardBefore);
  expect(ipOk('link', 'show', BRIDGE)).toBe(false);
  expect(existsSync(`/run/netns/${NETNS}`)).toBe(false);
  // The bridge plugin names host-side veths vethXXXXXXXX; none may stay attached to ours.
  expect(ip('-o', 'link', 'show').includes(`master ${BRIDGE}`)).toBe(false);
});

describe('CNI ADD, CHECK, DEL with the real plugins', () => {
  it('attaches a namespace to a bridge, checks it, and DEL after a restart uses the cache', async () => {
    const opts = { binDirs: BIN_DIRS, cacheDir: join(dir, 'cache') };
    const conf = conflist([bridgePlugin(), { type: 'loopback' }]);
    const net = new CniNetwork(conf, opts);
    const att = attachment('c1');
    const result = await net.add(att);
    const address = result.ips?.[0]?.address ?? '';
    expect(address).toMatch(new RegExp(`^10\\.79\\.${SUBNET_BYTE}\\.\\d+/24$`));
    expect(ip('-n', NETNS, '-4', 'addr', 'show', 'eth0')).toContain(address);
    expect(ip('-n', NETNS, 'link', 'show', 'lo')).toMatch(/UP/);
    expect(allocated(conf.name)).toEqual([address.split('/')[0]]);
    await net.check(att);

    // After a restart, with the conflist changed since (a plugin more): DEL runs what ADD ran.
    const file = join(dir, 'net.conflist');
    writeFileSync(file, JSON.stringify(conflist([...conf.plugins, { type: 'tuning' }])));
    const again = await CniNetwork.load(file, opts);
    expect(await again.cachedResult(att)).toMatchObject({ ips: [{ address }] });
    await again.del(att);
    expect(ipOk('-n', NETNS, 'link', 'show', 'eth0')).toBe(false);
    expect(allocated(conf.name)).toEqual([]);
    expect(await again.cachedResult(att)).toBeUndefined();
    // DEL of what is gone succeeds too.
    await again.del(att);
  });

  it('undoes the plugins already added when a later one fails, and names the missing one', async () => {
    const conf = conflist([bridgePlugin(), { type: 'no-such-plugin' }], `cnd-test-${tag}-b`);
    const net = new CniNetwork(conf, { binDirs: BIN_DIRS, cacheDir: join(dir, 'cache') });
    await expect(net.add(attachment('c2'))).rejects.toThrow(
      `CNI plugin \`no-such-plugin\` of network ${conf.name} not found in /usr/lib/cni:/opt/cni/bin`,
    );
    expect(ipOk('-n', NETNS, 'link', 'show', 'eth0')).toBe(false);
    expect(allocated(conf.name)).toEqual([]);
    // A later DEL (a controller cleaning up what it recorded) skips the missing plugin, names
    // it, and still runs the others.
    expect(await net.del(attachment('c2'))).toEqual(['no-such-plugin']);
  });

  it("reports a plugin's error object with the plugin and command", async () => {
    const bad = {
      ...bridgePlugin(),
      ipam: { type: 'host-local', ranges: [[{ subnet: 'nonsense' }]] },
    };
    const net = new CniNetwork(conflist([bad], `cnd-test-${tag}-c`), {
      binDirs: BIN_DIRS,
      cacheDir: join(dir, 'cache'),
    });
    const err = await net.add(attachment('c3')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CniError);
    expect((err as CniError).message).toMatch(/^CNI ADD (bridge|host-local): .*nonsense/);
    expect(ipOk('-n', NETNS, 'link', 'show', 'eth0')).toBe(false);
  });
});

describe('parseConfList', () => {
  it('names the file and the field of a bad conflist', () => {
    expect(() => parseConfList('{', 'a.conflist')).toThrow('a.conflist: invalid JSON');
    expect(() =>
      parseConfList('{"cniVersion":"1.0.0","name":"x","plugins":[]}', 'a.conflist'),
    ).toThrow('a.conflist: plugins: must list at least one plugin');
    expect(() =>
      parseConfList('{"cniVersion":"1.0.0","name":"x","plugins":[{"type":"../sh"}]}', 'a.conflist'),
    ).toThrow('a.conflist: plugins[0].type: must name a plugin binary');
    expect(() =>
      parseConfList('{"cniVersion":"1","name":"x","plugins":[{"type":"b"}]}', 'f'),
    ).toThrow('f: cniVersion: must be a version like 1.0.0');
  });
});
