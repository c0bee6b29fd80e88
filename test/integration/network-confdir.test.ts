/**
 * An operator's own CNI configuration (`conductor up --cni-conf-dir DIR`, as containerd's
 * conf_dir): the first conflist in DIR is used as it is — here with the bandwidth plugin added,
 * which Conductor's own conflist does not have — and one whose subnet is not the container range
 * is refused with the file named; a plugin failing at ADD fails the create and leaves nothing;
 * `conductor down` finds the ranges and the directory in the state dir. Nothing of it is left on
 * the host afterwards.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { afterAll, beforeAll, expect, it } from '@jest/globals';

import type { Container, Image } from '../../controller/api/types.generated.js';
import { down } from '../../controller/cli/down.js';
import { RuntimeCore } from '../../runtime-core/src/index.js';
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

it('a plugin that fails at ADD fails the create with its error, and leaves nothing of the container', async () => {
  await h.stop();
  const plugins = (
    JSON.parse(conflist(h.network.containerCidr ?? '', join(confDir, 'ipam'))) as {
      plugins: unknown[];
    }
  ).plugins;
  writeFileSync(
    join(confDir, '10-operator.conflist'),
    JSON.stringify({
      cniVersion: '1.0.0',
      name: 'operator-net',
      plugins: [...plugins, { type: 'conductor-no-such-plugin' }],
    }),
  );
  const opts = { network: { ...h.network, cniConfDir: confDir } };
  const installation = (await h.start(opts)).runtime.installation;
  await h.write('broken.yaml', containerManifest(NS, 'broken', { command: ['sleep', '1000'] }));
  const c = await h.waitFor<Container>(
    'Container',
    'broken',
    (o) => o?.status?.reason === 'CreateContainerError',
  );
  // The network's error, naming the plugin: not the create step it stopped.
  expect(c?.status?.message).toContain('conductor-no-such-plugin');
  // The controller retries with back-off: stopped (its reconciles drained, every attempt
  // undone) before looking, so no attempt is half-way when we do.
  await h.stop();
  const id = `${NS}_broken`;
  // The plugins before it were undone: no veth left on the bridge (which the stopped
  // controller removed, as no container uses it).
  const members = spawnSync('ip', ['-j', 'link', 'show', 'master', BRIDGE], { encoding: 'utf8' });
  expect(members.status === 0 ? JSON.parse(members.stdout) : []).toEqual([]);
  const core = await RuntimeCore.open({ stateDir: h.stateDir, ...opts });
  try {
    expect((await core.list()).map((i) => i.id)).not.toContain(id);
    expect(await core.attachment(id)).toBeUndefined();
  } finally {
    await core.close();
  }
  expect(networkSnapshot().netns).not.toContain(`${installation}-${id}`);
  // Gone while no controller runs: the next start finds nothing of it to remove.
  await h.remove('broken.yaml');
}, 60_000);

it('conductor down removes what runs with the ranges and conflist directory it was made with', async () => {
  // A working conflist again; a container left running by a stopped controller.
  writeFileSync(
    join(confDir, '10-operator.conflist'),
    conflist(h.network.containerCidr ?? '', join(confDir, 'ipam')),
  );
  await h.stop();
  const ctl = await h.start({ network: { ...h.network, cniConfDir: confDir } });
  const installation = ctl.runtime.installation;
  await h.write('left.yaml', containerManifest(NS, 'left', { command: ['sleep', '1000'] }));
  await h.waitFor<Container>('Container', 'left', (o) => !!o?.status?.ip);
  await h.stop();
  // `down` has none of up's flags: the ranges and the directory come from the state dir.
  const out: string[] = [];
  const io = {
    stdout: (t: string) => out.push(t),
    stderr: (t: string) => out.push(t),
    cwd: process.cwd(),
    now: () => new Date(),
    signals: process,
  };
  expect(await down(['--state-dir', h.stateDir], io)).toBe(0);
  expect(out.join('')).toContain('removed 1 container(s)');
  expect(networkSnapshot().netns.filter((n) => n.startsWith(installation))).toEqual([]);
  expect(spawnSync('ip', ['link', 'show', BRIDGE]).status).not.toBe(0);
  expect(spawnSync('nft', ['list', 'table', 'ip', installation]).status).not.toBe(0);
  await h.remove('left.yaml');
}, 60_000);
