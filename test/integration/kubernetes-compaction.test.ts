/**
 * The agent's resourceVersion made too old by an etcd compaction: the agent (its own process,
 * test/fixtures/agent.ts) is cut off from the API server by an ApiProxy while changes are made
 * with kubectl, then etcd is compacted at its current revision (its v3 HTTP gateway, with the
 * API server's etcd client certificate). When the agent is let through again, its watches ask
 * for revisions etcd no longer has: the API server answers 410 Gone ("The resourceVersion for
 * the provided watch is too old."), and the agent must re-list and end with exactly the API's
 * objects — nothing missed (an edit, a new object, a held delete, labels that only a Service's
 * endpoints show), nothing stale (an object deleted for good while it was cut off).
 *
 * kube-apiserver runs with --watch-cache=false here: its watch cache keeps recent events in
 * memory (75 s of them, however many) and serves a watch from there whatever etcd has
 * compacted, so on a default API server compaction alone never makes a recent resourceVersion
 * too old (a restart of the API server does: kubernetes-recovery.test.ts). Without the cache,
 * watches are served by etcd, which is what compaction acts on. The same cut-off without a
 * compaction is the control: the agent resumes its watches from where it was, without a list.
 *
 * Needs the control-plane binaries (hack/control-plane.sh build): never skipped.
 */
import { afterAll, beforeAll, expect, it } from '@jest/globals';

import type { Container, Image, Service } from '../../controller/api/types.generated.js';
import { AgentHarness } from '../fixtures/agent.js';
import type { ProxiedRequest } from '../fixtures/api-proxy.js';
import { CONTROL_PLANE_BUILD_TIMEOUT } from '../fixtures/control-plane.js';
import { assertNoLeaks, hostSnapshot, uniqueId, type HostSnapshot } from '../fixtures/index.js';

const NS = uniqueId('k8cmp');
let h: AgentHarness;
let before: HostSnapshot;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const listsOf =
  (plural: string) =>
  (r: ProxiedRequest): boolean =>
    r.method === 'GET' && !r.watch && r.path === `/apis/conductor.dev/v1alpha1/${plural}`;
const watchesOf =
  (plural: string) =>
  (r: ProxiedRequest): boolean =>
    r.method === 'GET' && r.watch && r.path === `/apis/conductor.dev/v1alpha1/${plural}`;

beforeAll(async () => {
  before = hostSnapshot();
  h = await AgentHarness.create(NS, { apiserverFlags: ['--watch-cache=false'] });
  await h.start();
  await h.apply(h.busyboxImage());
  await h.waitFor<Image>('images', 'busybox', (o) => o?.status?.phase === 'Ready');
  for (const name of ['keep', 'edit', 'gone', 'stale'])
    await h.apply({ ...h.container(name), metadata: { name, labels: { app: 'old' } } });
  // Selects what `keep` is labelled only after the agent is cut off.
  await h.apply({
    apiVersion: 'conductor.dev/v1alpha1',
    kind: 'Service',
    metadata: { name: 'fresh' },
    spec: { selector: { app: 'fresh' }, ports: [{ port: 80 }] },
  });
  await h.converged();
}, CONTROL_PLANE_BUILD_TIMEOUT);

afterAll(async () => {
  await h?.cleanup();
  assertNoLeaks(before, { idPrefix: NS });
}, 120_000);

/** The names behind a Service, as its status says. */
async function endpoints(name: string): Promise<string[]> {
  const svc = await h.get<Service>('services.conductor.dev', name);
  return (svc?.status?.endpoints ?? []).map((e) => e.name).sort();
}

it('without a compaction, a cut-off agent resumes its watches where they were: no list, nothing missed', async () => {
  await h.proxy.block();
  await h.apply(h.container('edit', { env: [{ name: 'V', value: '2' }] }));
  await h.apply(h.container('early'));
  const resumed = Date.now();
  await h.proxy.unblock();
  const states = await h.converged();
  expect(states.get('edit')?.env.V).toBe('2');
  expect(states.has('early')).toBe(true);
  const after = h.proxy.since(resumed);
  expect(after.filter(listsOf('containers'))).toEqual([]);
  expect(after.filter(watchesOf('containers')).length).toBeGreaterThan(0);
  expect(after.flatMap((r) => r.gone)).toEqual([]);
}, 120_000);

it('after a compaction past its resourceVersion, the agent is told 410 Gone, re-lists, and ends with exactly the API objects', async () => {
  const first = await h.converged();
  await h.proxy.block();
  const cutOffAt = await h.cp.etcdRevision();
  // Many changes while it is cut off: revisions pile up past the one its watches are at.
  for (let i = 0; i < 30; i++)
    await h.kubectl(['annotate', 'containers', 'keep', '-n', NS, `touched=${i}`, '--overwrite']);
  // Only the Service's endpoints show that the agent saw this (labels are not spec).
  await h.kubectl(['label', 'containers', 'keep', '-n', NS, 'app=fresh', '--overwrite']);
  await h.apply(h.container('edit', { env: [{ name: 'V', value: '3' }] }));
  await h.apply(h.container('added'));
  await h.kubectl(['delete', 'containers', 'gone', '-n', NS, '--wait=false']);
  // Deleted for good while the agent could not see it (finalizer removed by hand): the next
  // list does not have it, and what the agent holds of it must go.
  await h.kubectl(['delete', 'containers', 'stale', '-n', NS, '--wait=false']);
  await h.dropFinalizer('containers', 'stale');
  expect(await h.get('containers', 'stale')).toBeUndefined();
  const compactedAt = await h.cp.compact();
  expect(compactedAt).toBeGreaterThan(cutOffAt + 30);

  const resumed = Date.now();
  await h.proxy.unblock();
  const states = await h.converged();
  const tookMs = Date.now() - resumed;

  // The API server said the resourceVersion was gone, inside a watch; then the agent listed.
  const after = h.proxy.since(resumed);
  const gone = after.filter((r) => watchesOf('containers')(r) && r.gone.length > 0);
  expect(gone.length).toBeGreaterThan(0);
  expect(gone[0]?.gone[0]).toMatch(/too old/);
  const relists = after.filter(listsOf('containers'));
  expect(relists.length).toBeGreaterThan(0);
  expect(relists[0]?.at).toBeGreaterThanOrEqual(gone[0]?.at ?? Infinity);
  console.info(
    `compacted etcd at revision ${compactedAt} (the agent was at ~${cutOffAt}); ` +
      `410 "${gone[0]?.gone[0]}"; ${relists.length} list(s) of containers; converged in ${tookMs} ms`,
  );

  // Nothing missed.
  expect([...states.keys()].sort()).toEqual(['added', 'early', 'edit', 'keep']);
  expect(states.get('edit')?.env.V).toBe('3');
  const until = Date.now() + 30_000;
  while ((await endpoints('fresh')).join() !== 'keep' && Date.now() < until) await sleep(200);
  expect(await endpoints('fresh')).toEqual(['keep']);
  // Nothing stale: both deleted objects' containers are gone from the host, `gone` was
  // released through its finalizer.
  expect(await h.get('containers', 'gone')).toBeUndefined();
  const host = (await h.hostContainers()).map((i) => i.id);
  expect(host).not.toContain(`${NS}_gone`);
  expect(host).not.toContain(`${NS}_stale`);
  // Untouched by all this: the same process.
  expect(states.get('keep')?.pid).toBe(first.get('keep')?.pid);
  const keep = await h.get<Container>('containers', 'keep');
  expect(keep?.metadata.annotations?.touched).toBe('29');
}, 180_000);
