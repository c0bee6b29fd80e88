/**
 * Two installations side by side (README: several coexist with --state-dir): each state dir's
 * host-level names are its own, so a Container of the same name runs in both at once, each in
 * its own cgroup; a name already used by another running installation is refused, and so is
 * renaming one that has containers.
 */
import { afterAll, beforeAll, expect, it } from '@jest/globals';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

import type { Container, Image } from '../../controller/api/types.generated.js';
import { runController } from '../../controller/manager.js';
import { ControllerHarness, busyboxImage, containerManifest } from '../fixtures/controller.js';
import {
  assertNoLeaks,
  CGROUP_ROOT,
  hostSnapshot,
  uniqueId,
  type HostSnapshot,
} from '../fixtures/index.js';
import { defaultInstallationName } from '../../runtime-core/src/installation.js';

const NS = uniqueId('inst');
let a: ControllerHarness;
let b: ControllerHarness;
let before: HostSnapshot;

const running = (o: Container | undefined): boolean => o?.status?.phase === 'Running';

/** The container's cgroup in the pids hierarchy (v1 and hybrid hosts) or the unified one. */
function pidsCgroup(parent: string, id: string): string {
  const v1 = join(CGROUP_ROOT, 'pids');
  return join(existsSync(v1) ? v1 : CGROUP_ROOT, parent, id);
}

beforeAll(async () => {
  before = hostSnapshot();
  a = await ControllerHarness.create(NS);
  b = await ControllerHarness.create(NS);
  for (const h of [a, b]) {
    await h.write('image.yaml', busyboxImage(NS));
    await h.write(
      'same.yaml',
      containerManifest(NS, 'same', { command: ['/bin/sh', '-c', 'sleep 1000'] }),
    );
  }
  await a.start();
  await b.start();
}, 60_000);

afterAll(async () => {
  await a?.cleanup();
  await b?.cleanup();
  assertNoLeaks(before, { idPrefix: NS });
});

it('runs a Container of the same name in two installations at once, each in its own cgroup', async () => {
  const [ca, cb] = await Promise.all(
    [a, b].map(async (h) => {
      await h.waitFor<Image>('Image', 'busybox', (o) => o?.status?.phase === 'Ready');
      return h.waitFor<Container>('Container', 'same', running);
    }),
  );
  // Both started first time: no "already holds processes" failures and retries.
  expect([ca?.status?.restartCount, cb?.status?.restartCount]).toEqual([0, 0]);
  const id = `${NS}_same`;
  expect([ca?.status?.containerID, cb?.status?.containerID]).toEqual([id, id]);
  const [ia, ib] = [a, b].map((h) => defaultInstallationName(h.stateDir));
  expect(ia).not.toBe(ib);
  for (const [inst, c] of [
    [ia, ca],
    [ib, cb],
  ] as const) {
    const procs = readFileSync(join(pidsCgroup(`/${inst}`, id), 'cgroup.procs'), 'utf8');
    expect(procs.split('\n')).toContain(String(c?.status?.pid));
  }
  // Nothing under the default installation's parent.
  expect(existsSync(pidsCgroup('/conductor', id))).toBe(false);
  // Each state dir records its name, so a later start without the flag keeps it.
  for (const [h, inst] of [
    [a, ia],
    [b, ib],
  ] as const)
    expect(JSON.parse(readFileSync(join(h.stateDir, 'installation.json'), 'utf8'))).toEqual({
      name: inst,
    });
}, 60_000);

it('refuses a name another running installation holds, and renaming one that has containers', async () => {
  const taken = defaultInstallationName(a.stateDir);
  const other = await ControllerHarness.create(NS);
  try {
    await expect(
      runController({
        watchDir: other.watchDir,
        stateDir: other.stateDir,
        metricsAddr: '127.0.0.1:0',
        installation: taken,
      }),
    ).rejects.toThrow(
      `installation name "${taken}" is in use by the controller of state dir ${a.stateDir} (pid ${process.pid})`,
    );
  } finally {
    await other.cleanup();
  }
  await b.stop();
  await expect(b.start({ installation: 'renamed' })).rejects.toThrow(
    `state dir ${b.stateDir} is installation "${defaultInstallationName(b.stateDir)}" (its 1 container(s) have cgroups under /${defaultInstallationName(b.stateDir)})`,
  );
  // The failed start left nothing claimed: the same start with its own name works.
  await b.start();
  await b.waitFor<Container>('Container', 'same', running);
}, 60_000);

it("removes each installation's cgroup parent with its last container", async () => {
  const parents = [a, b].map((h) => `/${defaultInstallationName(h.stateDir)}`);
  for (const h of [a, b]) {
    await h.remove('same.yaml');
    await h.waitFor('Container', 'same', (o) => o === undefined);
  }
  for (const parent of parents) expect(existsSync(join(CGROUP_ROOT, 'pids', parent))).toBe(false);
}, 60_000);
