/**
 * What the node lifecycle controller does for a kubelet whose Lease expired, for a Conductor
 * agent's node: its Containers' state is unknown — phase Unknown, not Ready (so they leave their
 * Services' endpoints), with the reason and the last heartbeat — until that node's agent renews
 * its Lease and writes their status again. Any live agent may do it; the writes are conditional
 * (a conflict means someone else wrote first, and the next check looks again).
 *
 * And what kube-scheduler says of a Pod no node fits: an unbound Container whose nodeSelector
 * no live node's labels match stays Pending with reason Unschedulable and a FailedScheduling
 * event saying why ("0/3 nodes are available: ..."), until a node that matches claims it (a new
 * agent, or a selector edited to match) and its reconcile writes the status from then on.
 */
import type { Container, ContainerStatus } from '../api/types.generated.js';
import { selects } from '../client/client.js';
import type { KnownNode } from '../source/node-lease.js';
import { isStaleWrite, setCondition, type ReconcileContext } from './context.js';

export const NODE_LOST_REASON = 'NodeLost';

/** Marks every Container bound to `node` Unknown (those not marked yet); `since`: its last heartbeat. */
export async function markNodeLost(
  ctx: ReconcileContext,
  node: string,
  since: Date,
): Promise<void> {
  const message = `node ${node} stopped renewing its lease at ${since.toISOString()}: the state of its containers is unknown`;
  for (const c of ctx.client.list('Container')) {
    if (c.spec.nodeName !== node || c.status?.reason === NODE_LOST_REASON) continue;
    await writeNotReady(ctx, c, {
      phase: 'Unknown',
      reason: NODE_LOST_REASON,
      message,
      observedGeneration: c.status?.observedGeneration ?? c.metadata.generation ?? 0,
      event: 'NodeNotReady',
    });
  }
}

/**
 * Writes a Container's status as another node's agent says it (phase, reason, message, Ready
 * False) with a Warning event, conditional on the version read: a conflict means it changed
 * meanwhile, and whoever looks next judges it afresh.
 */
async function writeNotReady(
  ctx: ReconcileContext,
  c: Container,
  w: {
    phase: NonNullable<ContainerStatus['phase']>;
    reason: string;
    message: string;
    observedGeneration: number;
    event: string;
    /** The status' own observedGeneration, when what is said is about this generation. */
    observed?: boolean;
  },
): Promise<void> {
  const status: ContainerStatus = {
    ...(c.status ?? {}),
    ...(w.observed ? { observedGeneration: w.observedGeneration } : {}),
    phase: w.phase,
    reason: w.reason,
    message: w.message,
    conditions: setCondition(
      c.status?.conditions,
      {
        type: 'Ready',
        status: 'False',
        reason: w.reason,
        message: w.message,
        observedGeneration: w.observedGeneration,
      },
      ctx.now(),
    ),
  };
  try {
    await ctx.client.updateStatus('Container', c, status);
    ctx.client.recordEvent('Container', c, 'Warning', w.event, w.message);
  } catch (err) {
    if (!isStaleWrite(err))
      ctx.logger.warn(`writing a container's status ${w.phase} (${w.reason}) failed`, {
        container: `${c.metadata.namespace}/${c.metadata.name}`,
        error: String(err),
      });
  }
}

export const UNSCHEDULABLE_REASON = 'Unschedulable';

/**
 * Why no node can run a Container with `selector`, in kube-scheduler's words; undefined when a
 * live node's labels match it (that node's agent claims it).
 */
export function unschedulableMessage(
  selector: Readonly<Record<string, string>> | undefined,
  nodes: readonly KnownNode[],
): string | undefined {
  if (nodes.some((n) => !n.lost && selects(selector, n.labels))) return undefined;
  const lost = nodes.filter((n) => n.lost).length;
  const unmatched = nodes.length - lost;
  const wanted = Object.entries(selector ?? {})
    .map(([k, v]) => `${k}=${v}`)
    .join(',');
  const why = [
    ...(lost ? [`${lost} node(s) lost (their lease expired)`] : []),
    ...(unmatched
      ? [`${unmatched} node(s) didn't match the Container's nodeSelector (${wanted})`]
      : []),
  ];
  return `0/${nodes.length} nodes are available: ${why.join(', ')}`;
}

/**
 * Says in an unbound Container's status that no node can run it (when so, and not said yet in
 * the same words): phase Pending, reason Unschedulable, Ready False, a FailedScheduling event.
 */
export async function markUnschedulable(
  ctx: ReconcileContext,
  c: Container,
  nodes: readonly KnownNode[],
): Promise<void> {
  if (c.spec.nodeName !== undefined || c.metadata.deletionTimestamp) return;
  const message = unschedulableMessage(c.spec.nodeSelector, nodes);
  if (message === undefined) return;
  if (c.status?.reason === UNSCHEDULABLE_REASON && c.status.message === message) return;
  await writeNotReady(ctx, c, {
    phase: 'Pending',
    reason: UNSCHEDULABLE_REASON,
    message,
    observedGeneration: c.metadata.generation ?? 0,
    observed: true,
    event: 'FailedScheduling',
  });
}
