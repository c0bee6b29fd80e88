/**
 * Kubernetes mode when things fail, with the agent as its own process (`conductor up
 * --kubeconfig`, test/fixtures/agent.ts) against a real kube-apiserver and etcd:
 *
 * - kube-apiserver SIGKILLed in the middle of the suite and started again, and changes made
 *   after it is back but before the agent's watches resume — an edit, a delete held by the
 *   finalizer, a delete + re-create of the same name (of an object the agent knew, its
 *   finalizer removed by hand, and of one it never saw), a new object. The gap is made certain
 *   by an ApiProxy between the agent and the API server, closed from the kill until the changes
 *   are made (kubectl talks to the API server directly). The agent must converge on exactly
 *   what the API says.
 * - the agent SIGKILLed while its containers run and while it is still starting others: the
 *   next agent adopts them — same pid, same startedAt, no restart, no second container — with
 *   status and events that say so.
 *
 * Needs the control-plane binaries (hack/control-plane.sh build): never skipped.
 */
import { readFileSync } from 'node:fs';

import { afterAll, beforeAll, expect, it } from '@jest/globals';

import type { Container, Image } from '../../controller/api/types.generated.js';
import { AgentHarness, type ContainerState } from '../fixtures/agent.js';
import { CONTROL_PLANE_BUILD_TIMEOUT } from '../fixtures/control-plane.js';
import { assertNoLeaks, hostSnapshot, uniqueId, type HostSnapshot } from '../fixtures/index.js';

const NS = uniqueId('k8rec');
let h: AgentHarness;
let before: HostSnapshot;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  before = hostSnapshot();
  h = await AgentHarness.create(NS);
  await h.start();
  await h.apply(h.busyboxImage());
  await h.waitFor<Image>('images', 'busybox', (o) => o?.status?.phase === 'Ready');
}, CONTROL_PLANE_BUILD_TIMEOUT);

afterAll(async () => {
  await h?.cleanup();
  assertNoLeaks(before, { idPrefix: NS });
}, 120_000);

const env = (pairs: Record<string, string>): { env: { name: string; value: string }[] } => ({
  env: Object.entries(pairs).map(([name, value]) => ({ name, value })),
});

it('converges on exactly what the API says after a kube-apiserver restart and changes made before its watches resume', async () => {
  for (const [name, e] of [
    ['keep', { WHO: 'keep' }],
    ['edit', { V: '1' }],
    ['gone', { WHO: 'gone' }],
    ['swap', { WHO: 'old' }],
  ] as const)
    await h.apply(h.container(name, env(e)));
  const first = await h.converged();
  expect([...first.keys()].sort()).toEqual(['edit', 'gone', 'keep', 'swap']);

  // The API server crashes: the agent's watches break and its retries fail.
  const mark = h.logText().length;
  await h.cp.killApiserver();
  const noticed = Date.now() + 30_000;
  while (!/watching \w+ failed; retrying/.test(h.logText().slice(mark))) {
    if (Date.now() > noticed) throw new Error(`the agent did not notice:\n${h.logTail()}`);
    await sleep(100);
  }
  // From here until the changes are made, the agent cannot reach the API server at all.
  await h.proxy.block();
  await h.cp.start();

  // The gap: the API server is back, the agent's watches are not.
  await h.apply(h.container('edit', env({ V: '2' })));
  await h.kubectl(['delete', 'containers', 'gone', '-n', NS, '--wait=false']);
  // Delete + re-create of a name the agent knows: its finalizer removed by hand (as for an
  // agent gone for good), then a new object of the same name with another spec.
  await h.kubectl(['delete', 'containers', 'swap', '-n', NS, '--wait=false']);
  await h.dropFinalizer('containers', 'swap');
  await h.apply(h.container('swap', env({ WHO: 'new' })));
  // And of a name it never saw: made, deleted (no finalizer yet: gone at once), made again.
  await h.apply(h.container('fresh', env({ X: '1' })));
  await h.kubectl(['delete', 'containers', 'fresh', '-n', NS, '--wait=true']);
  await h.apply(h.container('fresh', env({ X: '2' })));
  await h.apply(h.container('added', env({ WHO: 'added' })));
  const uids = new Map(
    (await h.list<Container>('containers')).map((o) => [o.metadata.name, o.metadata.uid]),
  );
  expect(uids.get('swap')).not.toBe(first.get('swap')?.uid);

  const resumed = Date.now();
  await h.proxy.unblock();
  const now = await h.converged();
  console.info(
    `converged ${Date.now() - resumed} ms after the agent could reach the API server again; ` +
      `it re-listed containers ${h.proxy.since(resumed, (r) => r.path.endsWith('/containers') && !r.watch && r.method === 'GET').length} time(s); ` +
      `410s in its watches: ${JSON.stringify(h.proxy.since(resumed).flatMap((r) => r.gone))}`,
  );

  expect([...now.keys()].sort()).toEqual(['added', 'edit', 'fresh', 'keep', 'swap']);
  const was = (n: string): ContainerState | undefined => first.get(n);
  const is = (n: string): ContainerState | undefined => now.get(n);
  // Untouched: adopted as it ran, not restarted.
  expect(is('keep')).toMatchObject({ pid: was('keep')?.pid, startedAt: was('keep')?.startedAt });
  // Every object is the API's latest: its spec runs, under its uid.
  expect(is('edit')?.env.V).toBe('2');
  expect(is('edit')?.pid).not.toBe(was('edit')?.pid);
  expect(is('swap')?.env.WHO).toBe('new');
  expect(is('swap')?.uid).toBe(uids.get('swap'));
  expect(is('fresh')?.env.X).toBe('2');
  expect(is('added')?.env.WHO).toBe('added');
  // Deleted in the gap: released, finalizer removed, gone from the API and the host.
  expect(await h.get('containers', 'gone')).toBeUndefined();
  expect((await h.hostContainers()).map((i) => i.id)).not.toContain(`${NS}_gone`);
}, 180_000);

/** The processes in the cgroup of a container's pid (memory controller, as cgroup v1 and v2). */
function cgroupProcs(pid: number): number[] {
  const lines = readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n');
  const line =
    lines.find((l) => l.split(':')[1]?.split(',').includes('memory')) ??
    lines.find((l) => l.startsWith('0::'));
  const path = line?.split(':').slice(2).join(':') ?? '';
  const root = line?.startsWith('0::') ? '/sys/fs/cgroup' : '/sys/fs/cgroup/memory';
  return readFileSync(`${root}${path}/cgroup.procs`, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map(Number);
}

interface ApiEvent {
  reason?: string;
  eventTime?: string;
  series?: { count?: number };
  regarding?: { name?: string; uid?: string };
  reportingInstance?: string;
}

it('a SIGKILLed agent: the next one adopts every container (same pid and startedAt, no restart, no second one), with status and events that agree', async () => {
  const names = Array.from({ length: 8 }, (_, i) => `k${i}`);
  await h.kubectl(
    ['apply', '-f', '-'],
    names
      .map((n) => JSON.stringify({ ...h.container(n), metadata: { name: n, namespace: NS } }))
      .join('\n'),
  );
  // Killed while it is still starting them: some run, others do not yet.
  const ids = new Set(names.map((n) => `${NS}_${n}`));
  const until = Date.now() + 60_000;
  for (;;) {
    const running = (await h.hostContainers()).filter(
      (i) => ids.has(i.id) && i.status === 'running',
    );
    if (running.length >= 3) break;
    if (Date.now() > until) throw new Error(`not 3 running in 60 s:\n${h.logTail()}`);
    await sleep(20);
  }
  const agentPid = h.pid;
  await h.signal('SIGKILL');
  const killedAt = new Date();
  const survivors = (await h.hostContainers()).filter((i) => i.status === 'running');
  console.info(
    `agent ${agentPid} killed with ${survivors.filter((i) => ids.has(i.id)).length} of ${names.length} new containers running`,
  );
  // The containers outlive it.
  for (const s of survivors) expect(s.shimAlive).toBe(true);

  await sleep(1100); // event times have a second's resolution in kubectl's eyes; ours are µs
  await h.start();
  const after = await h.converged();
  expect([...after.keys()].sort()).toEqual(
    ['added', 'edit', 'fresh', 'keep', 'swap', ...names].sort(),
  );
  for (const s of survivors) {
    const name = s.id.slice(NS.length + 1);
    // Adopted: the same process, started when it was, never restarted.
    expect(after.get(name)).toMatchObject({ pid: s.pid, startedAt: s.startedAt, restartCount: 0 });
    // One container: its cgroup holds its one process, nothing started beside it.
    expect(cgroupProcs(s.pid ?? 0)).toEqual([s.pid]);
  }
  // Status agrees with the host for every Container (converged: pid), and with itself.
  for (const o of await h.list<Container>('containers')) {
    expect(o.status?.startedAt).toBe(after.get(o.metadata.name)?.startedAt);
    expect(o.status?.containerID).toBe(`${NS}_${o.metadata.name}`);
  }

  // Events: nothing was created or started again for an adopted container, and no container
  // was started twice.
  const events = (
    JSON.parse(await h.kubectl(['get', 'events.events.k8s.io', '-n', NS, '-o', 'json'])) as {
      items: ApiEvent[];
    }
  ).items;
  const adopted = new Set(survivors.map((s) => s.id.slice(NS.length + 1)));
  const afterKill = events.filter(
    (e) =>
      adopted.has(e.regarding?.name ?? '') &&
      ['Created', 'Started', 'Killing', 'BackOff'].includes(e.reason ?? '') &&
      Date.parse(e.eventTime ?? '') > killedAt.getTime(),
  );
  expect(afterKill).toEqual([]);
  for (const n of names) {
    const started = events
      .filter((e) => e.reason === 'Started' && e.regarding?.name === n)
      .reduce((sum, e) => sum + (e.series?.count ?? 1), 0);
    // 0 only if the kill came between the start and the event's write (the new agent adopts
    // without recording it again); never 2.
    expect(started).toBeLessThanOrEqual(1);
  }
  for (const e of events) expect(e.reportingInstance).toBe(h.nodeName);
}, 180_000);
