/**
 * An operator's own CNI configuration (`conductor up --cni-conf-dir DIR`, as containerd's
 * conf_dir): the first conflist in DIR is used as it is — here with the bandwidth plugin added,
 * which Conductor's own conflist does not have — and one whose subnet is not the container range
 * is refused with the file named. Nothing of it is left on the host afterwards.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { afterAll, beforeAll, expect, it } from '@jest/globals';

import type { Container, Image } from '../../controller/api/types.generated.js';
import { ControllerHarness, busyboxImage, containerManifest } from '../fixtures/controller.js';
import { assertNoLeaks, hostSnapshot, uniqueId, type HostSnapshot } from '../fixtures/index.js';
import { httpGet, networkSnapshot, type NetworkSnapshot } from '../fixtures/network.js';
import { FIXTURE_ROOT } from '../fixtures/rootfs.js';

const NS = uniqueId('netop');
const BRIDGE = `cndo${randomBytes(3).toString('hex')}`;
let h: ControllerHarness;
let confDir: string;
let before: HostSnapshot;
let netBefore: NetworkSnapshot;

function conflist(subnet: string, dataDir: string): string {
  return JSON.stringify({
    cniVersion: '1.0.0',
    name: 'operator-net',
    plugins: [
      {
        type: 'bridge',
        bridge: BRIDGE,
        isGateway: true,
        ipMasq: false,
        ipam: {
          type: 'host-local',
          ranges: [[{ subnet }]],
          routes: [{ dst: '0.0.0.0/0' }],
          dataDir,
        },
      },
      { type: 'portmap', capabilities: { portMappings: true } },
      // 1 Mbit/s each way, on the host side of every container's veth.
      {
        type: 'bandwidth',
        ingressRate: 1_000_000,
        ingressBurst: 100_000,
        egressRate: 1_000_000,
        egressBurst: 100_000,
      },
    ],
  });
}

beforeAll(async () => {
  before = hostSnapshot();
  netBefore = networkSnapshot();
  h = await ControllerHarness.create(NS);
  confDir = mkdtempSync(join(FIXTURE_ROOT, 'netop-conf-'));
  await h.write('image.yaml', busyboxImage(NS));
}, 60_000);

afterAll(async () => {
  await h.cleanup();
  rmSync(confDir, { recursive: true, force: true });
  assertNoLeaks(before, { idPrefix: NS });
  expect(networkSnapshot()).toEqual(netBefore);
}, 60_000);

it('refuses a conflist whose subnet is not the container range, naming the file', async () => {
  const file = join(confDir, '10-operator.conflist');
  writeFileSync(file, conflist('10.99.99.0/24', join(confDir, 'ipam')));
  await expect(h.start({ network: { ...h.network, cniConfDir: confDir } })).rejects.toThrow(
    `${file}: its IPAM subnet 10.99.99.0/24 is not the container range ${h.network.containerCidr ?? ''}`,
  );
  h.ctl = undefined;
});

it("runs containers with the operator's conflist, bandwidth plugin included", async () => {
  writeFileSync(
    join(confDir, '10-operator.conflist'),
    conflist(h.network.containerCidr ?? '', join(confDir, 'ipam')),
  );
  // Not the first file by name: ignored.
  writeFileSync(join(confDir, '20-other.conflist'), '{ not json');
  const ctl = await h.start({ network: { ...h.network, cniConfDir: confDir } });
  await h.waitFor<Image>('Image', 'busybox', (o) => o?.status?.phase === 'Ready', 60_000);
  await h.write(
    'web.yaml',
    containerManifest(NS, 'web', {
      command: [
        '/bin/sh',
        '-c',
        'mkdir -p /www && echo hi > /www/index.html && exec httpd -f -p 8080 -h /www',
      ],
    }),
  );
  const c = await h.waitFor<Container>('Container', 'web', (o) => !!o?.status?.ip);
  const ip = c?.status?.ip ?? '';
  expect((await httpGet(ip, 8080)).body).toBe('hi\n');
  const att = await ctl.runtime.attachment(`${NS}_web`);
  expect(att?.network).toBe('operator-net');
  expect((await ctl.runtime.networkInfo()).bridge).toBe(BRIDGE);
  // The bandwidth plugin's token bucket on the container's host-side veth.
  const links = JSON.parse(
    execFileSync('ip', ['-j', 'link', 'show', 'master', BRIDGE], { encoding: 'utf8' }),
  ) as { ifname: string }[];
  expect(links).toHaveLength(1);
  const qdisc = execFileSync('tc', ['qdisc', 'show', 'dev', links[0]?.ifname ?? ''], {
    encoding: 'utf8',
  });
  expect(qdisc).toContain('tbf');
  await h.remove('web.yaml');
  await h.waitFor('Container', 'web', (o) => o === undefined);
}, 60_000);
