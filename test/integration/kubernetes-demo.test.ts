/**
 * manifests/demo/ applied to a cluster with `kubectl apply`, an agent (`conductor up
 * --kubeconfig`) running, as README's "The demo on a cluster" says.
 *
 * The demo's Images copy files that sit next to the manifest (counter/, web/app.py). An object
 * from the API server has no manifest directory: the agent resolves such paths against its
 * `--build-context DIR`. Without one, it must say so at once and precisely: both Images Failed
 * on their copy step before any base is fetched or step run (no debootstrap, no apt-get), the
 * Containers Pending on them, nothing started on the host. Restarted with `--build-context
 * manifests/demo`, the same objects build (debootstrap and apt-get: a minute or two cold) and
 * serve an increasing count on localhost:3000, as hack/demo.sh does from a watch directory.
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
import { httpGet, tcpOutcome } from '../fixtures/network.js';
import { assertNoLeaks, hostSnapshot, uniqueId, type HostSnapshot } from '../fixtures/index.js';

const NS = uniqueId('k8demo');
let h: AgentHarness;
let before: HostSnapshot;

beforeAll(async () => {
  before = hostSnapshot();
  // The demo's port: a clear failure rather than a confusing one.
  expect(await tcpOutcome('127.0.0.1', 3000, 1000)).not.toBe('connected');
  h = await AgentHarness.create(NS);
  await h.start();
}, CONTROL_PLANE_BUILD_TIMEOUT);

afterAll(async () => {
  await h?.cleanup();
  assertNoLeaks(before, { idPrefix: NS });
}, 120_000);

it('manifests/demo/ with kubectl and no --build-context: the Images fail on their copy step at once, nothing runs', async () => {
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
        "spec.steps[1].copy: copy steps need a build context (the manifest's directory; for an Image from an API server, the agent's --build-context), and this Image has none",
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

it('the same objects with --build-context manifests/demo: built, and the count served on localhost:3000', async () => {
  await h.signal('SIGTERM');
  await h.start(['--build-context', join(REPO_ROOT, 'manifests', 'demo')]);
  // The Failed Images are built again by the restarted agent: nothing is applied anew.
  for (const name of ['counter', 'web']) {
    const image = await h.waitFor<Image>(
      'images',
      name,
      (o) =>
        o?.status?.phase === 'Ready' ||
        (o?.status?.phase === 'Failed' && !o.status.message?.includes('build context')),
      900_000,
    );
    expect({ name, phase: image?.status?.phase, message: image?.status?.message }).toEqual({
      name,
      phase: 'Ready',
      message: undefined,
    });
  }
  const web = await h.waitFor<Container>(
    'containers',
    'web',
    (o) =>
      o?.status?.phase === 'Running' &&
      o.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') === true,
    120_000,
  );
  expect(web?.spec.nodeName).toBe(h.nodeName);
  // web is Ready on its own /healthz; the count goes through the counter Service, whose one
  // endpoint must be ready too (until then web answers 502, as a proxy does).
  const svc = await h.waitFor<Service>(
    'services.conductor.dev',
    'counter',
    (o) => o?.status?.endpoints?.[0]?.ready === true,
    60_000,
  );
  expect(svc?.status?.endpoints).toHaveLength(1);
  const counts: number[] = [];
  for (let i = 0; i < 2; i++) {
    const page = await httpGet('127.0.0.1', 3000, '/?format=json');
    expect(page.status).toBe(200);
    counts.push((JSON.parse(page.body) as { count: number }).count);
  }
  expect(counts[1]).toBe((counts[0] ?? 0) + 1);
  expect((await h.hostContainers()).length).toBe(2);
}, 1_200_000);
