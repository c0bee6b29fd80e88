/**
 * What an agent says of an unbound Container no node can run (controller/controllers/
 * node-lifecycle.ts), and the node labels it reads from the Leases (node-lease.ts): pure logic
 * on the seam's fakes. kubernetes-nodes.test.ts runs it with two agents on a real API server.
 */
import { describe, expect, it } from '@jest/globals';

import type { Container } from '../../controller/api/types.generated.js';
import {
  markNodeLost,
  markUnschedulable,
  unschedulableMessage,
} from '../../controller/controllers/node-lifecycle.js';
import { leaseLabels, NODE_LABELS_ANNOTATION } from '../../controller/source/node-lease.js';
import { fakeContext, served } from '../fixtures/fakes.js';

const ssd = { node: 'a', labels: { disk: 'ssd' }, lost: false };
const plain = { node: 'b', labels: {}, lost: false };

function container(spec: Record<string, unknown> = {}): Container {
  const c = served<Container>({
    apiVersion: 'conductor.dev/v1alpha1',
    kind: 'Container',
    metadata: { name: 'web', namespace: 'default' },
    spec: { image: 'busybox', ...spec },
  });
  // As the API server sets it.
  return { ...c, metadata: { ...c.metadata, generation: 3 } };
}

describe('unschedulableMessage', () => {
  it('nothing to say while a live node matches (no selector matches every node)', () => {
    expect(unschedulableMessage(undefined, [plain])).toBeUndefined();
    expect(unschedulableMessage({ disk: 'ssd' }, [plain, ssd])).toBeUndefined();
  });

  it("says how many nodes there are and why each one cannot, as kube-scheduler's message", () => {
    expect(unschedulableMessage({ disk: 'nvme', zone: 'a' }, [plain, ssd])).toBe(
      "0/2 nodes are available: 2 node(s) didn't match the Container's nodeSelector (disk=nvme,zone=a)",
    );
    // The only node that matches is lost: it claims nothing until it is back.
    expect(unschedulableMessage({ disk: 'ssd' }, [plain, { ...ssd, lost: true }])).toBe(
      "0/2 nodes are available: 1 node(s) lost (their lease expired), 1 node(s) didn't match the Container's nodeSelector (disk=ssd)",
    );
  });
});

describe('markUnschedulable', () => {
  it('writes Pending/Unschedulable and Ready False once, with one FailedScheduling event', async () => {
    const f = fakeContext();
    const c = f.client.apply(container({ nodeSelector: { disk: 'nvme' } }));
    await markUnschedulable(f.ctx, c, [plain, ssd]);
    const status = f.client.get('Container', 'default/web')?.status;
    const message =
      "0/2 nodes are available: 2 node(s) didn't match the Container's nodeSelector (disk=nvme)";
    expect(status).toMatchObject({
      phase: 'Pending',
      reason: 'Unschedulable',
      message,
      observedGeneration: 3,
    });
    expect(status?.conditions).toEqual([
      expect.objectContaining({ type: 'Ready', status: 'False', reason: 'Unschedulable' }),
    ]);
    expect(f.client.events).toEqual([
      { kind: 'Container', name: 'web', type: 'Warning', reason: 'FailedScheduling', message },
    ]);
    // Said already in the same words: nothing more is written at the next check.
    const again = f.client.get('Container', 'default/web') as Container;
    await markUnschedulable(f.ctx, again, [plain, ssd]);
    expect([f.client.writes.length, f.client.events.length]).toEqual([1, 1]);
    // A node lost since: the words change, and so does the status.
    await markUnschedulable(f.ctx, again, [plain, { ...ssd, lost: true }]);
    expect(f.client.writes.length).toBe(2);
  });

  it('leaves alone a bound Container, one being deleted, and one a live node matches', async () => {
    const f = fakeContext();
    const bound = f.client.apply(container({ nodeName: 'a', nodeSelector: { disk: 'nvme' } }));
    await markUnschedulable(f.ctx, bound, [plain, ssd]);
    const deleting = {
      ...bound,
      spec: { ...bound.spec, nodeName: undefined },
      metadata: { ...bound.metadata, deletionTimestamp: '2026-12-07T00:00:00Z' },
    };
    await markUnschedulable(f.ctx, deleting, [plain, ssd]);
    const matching = f.client.apply(container({ nodeSelector: { disk: 'ssd' } }));
    await markUnschedulable(f.ctx, matching, [plain, ssd]);
    expect([f.client.writes, f.client.events]).toEqual([[], []]);
  });

  it('a write that lost a race (the Container changed meanwhile) is dropped quietly', async () => {
    const f = fakeContext();
    const seen = f.client.apply(container({ nodeSelector: { disk: 'nvme' } }));
    f.client.apply(container({ nodeName: 'a', nodeSelector: { disk: 'nvme' } }));
    await markUnschedulable(f.ctx, seen, [plain, ssd]);
    expect([f.client.writes, f.client.events]).toEqual([[], []]);
  });
});

describe('markNodeLost', () => {
  it("marks the lost node's Containers Unknown once, and no other", async () => {
    const f = fakeContext();
    const onA = f.client.apply(container({ nodeName: 'a' }));
    await f.client.updateStatus('Container', onA, { phase: 'Running', pid: 42 });
    f.client.apply({
      ...container({ nodeName: 'b' }),
      metadata: { name: 'other', namespace: 'default' },
    });
    const since = new Date('2026-12-07T10:00:00Z');
    await markNodeLost(f.ctx, 'a', since);
    await markNodeLost(f.ctx, 'a', since);
    const message =
      'node a stopped renewing its lease at 2026-12-07T10:00:00.000Z: the state of its containers is unknown';
    const status = f.client.get('Container', 'default/web')?.status;
    // What was known stays (its pid); the phase is Unknown and it is not Ready.
    expect(status).toMatchObject({ phase: 'Unknown', reason: 'NodeLost', message, pid: 42 });
    expect(status?.conditions).toEqual([
      expect.objectContaining({ type: 'Ready', status: 'False', reason: 'NodeLost' }),
    ]);
    expect(f.client.writes.map((w) => w.name)).toEqual(['web', 'web']);
    expect(f.client.events.map((e) => [e.name, e.reason])).toEqual([['web', 'NodeNotReady']]);
  });
});

describe('leaseLabels', () => {
  const lease = (text?: string): Parameters<typeof leaseLabels>[0] => ({
    metadata: text === undefined ? {} : { annotations: { [NODE_LABELS_ANNOTATION]: text } },
  });

  it("reads the node's labels from its Lease", () => {
    expect(leaseLabels(lease('{"disk":"ssd","zone":"a"}'))).toEqual({ disk: 'ssd', zone: 'a' });
  });

  it('none from a Lease without them, or with something else written there', () => {
    for (const text of [undefined, '', 'not json', '[]', 'null', '"disk"'])
      expect(leaseLabels(lease(text))).toEqual({});
    expect(leaseLabels(lease('{"disk":"ssd","n":1,"o":{}}'))).toEqual({ disk: 'ssd' });
  });
});
