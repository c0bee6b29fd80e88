/**
 * The Service reconciler, as far as the controller issue goes: endpoints are the Containers in
 * the Service's namespace that match its selector, with their readiness. Virtual IPs and DNS are
 * the networking issue.
 */
import type { ServiceEndpoint, ServiceStatus } from '../api/types.generated.js';
import { matchesLabels } from '../cache/cache.js';
import { done, type Reconciler, type Result } from '../reconcile/result.js';
import { setCondition, splitObjectKey, type ReconcileContext } from './context.js';

export class ServiceReconciler implements Reconciler {
  constructor(private readonly ctx: ReconcileContext) {}

  async reconcile(key: string): Promise<Result> {
    const ctx = this.ctx;
    const svc = ctx.client.get('Service', key);
    if (!svc) {
      const { namespace, name } = splitObjectKey(key);
      await ctx.client.finalize('Service', namespace, name);
      return done();
    }
    const { namespace } = svc.metadata;
    const selector = svc.spec.selector;
    // As in Kubernetes, a Service without a selector has no endpoints managed for it.
    const members = selector
      ? ctx.client
          .list('Container', namespace)
          .filter((c) => matchesLabels(c.metadata.labels, selector))
      : [];
    const endpoints: ServiceEndpoint[] = members
      .map((c) => {
        const st = c.status;
        const ready = st?.conditions?.find((x) => x.type === 'Ready')?.status === 'True';
        return { name: c.metadata.name, ready, ...(st?.ip ? { ip: st.ip } : {}) };
      })
      .sort((a, b) => a.name.localeCompare(b.name));
    const old = svc.status;
    const readyCount = endpoints.filter((e) => e.ready).length;
    const status: ServiceStatus = {
      observedGeneration: svc.metadata.generation ?? 0,
      endpoints,
      conditions: setCondition(
        old?.conditions,
        {
          type: 'EndpointsReady',
          status: readyCount > 0 ? 'True' : 'False',
          reason: readyCount > 0 ? 'HasReadyEndpoints' : 'NoReadyEndpoints',
          message: `${readyCount} of ${endpoints.length} endpoints ready`,
          observedGeneration: svc.metadata.generation ?? 0,
        },
        ctx.now(),
      ),
    };
    await ctx.client.updateStatus('Service', svc, status);
    return done();
  }
}
