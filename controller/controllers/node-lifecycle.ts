/**
 * What the node lifecycle controller does for a kubelet whose Lease expired, for a Conductor
 * agent's node: its Containers' state is unknown — phase Unknown, not Ready (so they leave their
 * Services' endpoints), with the reason and the last heartbeat — until that node's agent renews
 * its Lease and writes their status again. Any live agent may do it; the writes are conditional
 * (a conflict means someone else wrote first, and the next check looks again).
 */
import type { ContainerStatus } from '../api/types.generated.js';
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
    const status: ContainerStatus = {
      ...(c.status ?? {}),
      phase: 'Unknown',
      reason: NODE_LOST_REASON,
      message,
      conditions: setCondition(
        c.status?.conditions,
        {
          type: 'Ready',
          status: 'False',
          reason: NODE_LOST_REASON,
          message,
          observedGeneration: c.status?.observedGeneration ?? c.metadata.generation ?? 0,
        },
        ctx.now(),
      ),
    };
    try {
      await ctx.client.updateStatus('Container', c, status);
      ctx.client.recordEvent('Container', c, 'Warning', 'NodeNotReady', message);
    } catch (err) {
      if (!isStaleWrite(err))
        ctx.logger.warn("marking a lost node's container Unknown failed", {
          container: `${c.metadata.namespace}/${c.metadata.name}`,
          error: String(err),
        });
    }
  }
}
