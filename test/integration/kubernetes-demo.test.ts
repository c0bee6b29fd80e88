/**
 * manifests/demo/ applied to a cluster with `kubectl apply`, an agent (`conductor up
 * --kubeconfig`) running: what happens today, as README's "The demo on a cluster" says.
 *
 * The demo's Images copy files that sit next to the manifest (counter/, web/app.py). An object
 * from the API server has no manifest directory, so those copy steps cannot be built — nor
 * found in the layer cache a `conductor build -f` of the same file filled, since a copy layer's
 * cache key includes the digest of the files it copies. Serving the demo from a cluster needs
 * a feature Conductor does not have yet (README names the two candidates). Until then the agent
 * must say so at once and precisely: both Images Failed on their copy step before any base is
 * fetched or step run (no debootstrap, no apt-get), the Containers Pending on them, nothing
 * started on the host — so nothing takes the node's port 3000 (demo-e2e's) either.
 *
 * Needs the control-plane binaries (hack/control-plane.sh build): never skipped.
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

import { afterAll, beforeAll, expect, it } from '@jest/globals';

import type { Container, Image, Service } from '../../controller/api/types.generated.js';
import { AgentHarness } from '../fixtures/agent.js';
import { CONTROL_PLANE_BUILD_TIMEOUT } from '../fixtures/control-plane.js';
import { REPO_ROOT } from '../fixtures/controller.js';
import { assertNoLeaks, hostSnapshot, uniqueId, type HostSnapshot } from '../fixtures/index.js';

const NS = uniqueId('k8demo');
let h: AgentHarness;
let before: HostSnapshot;

beforeAll(async () => {
  before = hostSnapshot();
  h = await AgentHarness.create(NS);
  await h.start();
}, CONTROL_PLANE_BUILD_TIMEOUT);

afterAll(async () => {
  await h?.cleanup();
  assertNoLeaks(before, { idPrefix: NS });
}, 120_000);

it('manifests/demo/ with kubectl: the Images fail on their copy step at once, nothing runs', async () => {
  const applied = await h.kubectl([
    'apply',
    '-n',
    NS,
    '-f',
    join(REPO_ROOT, 'manifests', 'demo', 'demo.yaml'),
  ]);
  for (const what of [
    'image.conductor.dev/counter created',
    'image.conductor.dev/web created',
    'container.conductor.dev/counter created',
    'service.conductor.dev/counter created',
    'container.conductor.dev/web created',
  ])
    expect(applied).toContain(what);

  for (const name of ['counter', 'web']) {
    const image = await h.waitFor<Image>(
      'images',
      name,
      (o) => o?.status?.phase === 'Failed',
      30_000,
    );
    // Both copy their program in step 2, after a run step that installs packages.
    expect(image?.status).toMatchObject({
      failedStep: 1,
      message:
        "spec.steps[1].copy: copy steps need the manifest's directory, and this Image has none",
    });
    // Refused before debootstrap or apt-get could start.
    expect(image?.status?.buildDurationSeconds).toBeLessThan(1);
    const container = await h.waitFor<Container>(
      'containers',
      name,
      (o) =>
        o?.status?.reason === 'ImageNotReady' && o.status.message === `image ${name} is Failed`,
      30_000,
    );
    expect(container?.status?.phase).toBe('Pending');
  }
  // The Service exists; its one endpoint (the counter Container) is not ready.
  const svc = await h.waitFor<Service>(
    'services.conductor.dev',
    'counter',
    (o) => typeof o?.status?.clusterIP === 'string',
    30_000,
  );
  expect(svc?.status?.endpoints).toEqual([{ name: 'counter', ready: false }]);
  // A Warning a user sees with kubectl get events.
  const events = await h.kubectl(['get', 'events', '-n', NS]);
  expect(events).toMatch(/Warning\s+BuildFailed\s+image\/counter\s+spec\.steps\[1\]\.copy: /);

  // Nothing was fetched, built or started on the host.
  expect(await h.hostContainers()).toEqual([]);
  const layers = join(h.stateDir, 'layers');
  expect(existsSync(layers) ? readdirSync(layers).filter((f) => !f.startsWith('.')) : []).toEqual(
    [],
  );
}, 120_000);
