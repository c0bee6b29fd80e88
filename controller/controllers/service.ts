/**
 * The Service reconciler: endpoints are the Containers in the Service's namespace that match
 * its selector, with their readiness and address; the Service gets a virtual IP (ClusterIP)
 * from the service range — `spec.clusterIP` if asked for and free, else one allocated — and
 * the runtime core's service table sends traffic for it (and for its host ports) to the ready
 * endpoints on their resolved target ports. Its DNS name points at the ClusterIP.
 *
 * What the table should hold is a pure function of the cache (serviceRule), so the manager can
 * bring the whole table to it at start (stale rules of a previous process removed) and each
 * reconcile changes one Service's rules only.
 */
import { createHash } from 'node:crypto';

import type { Container, Service, ServiceEndpoint, ServiceStatus } from '../api/types.generated.js';
import { matchesLabels } from '../cache/cache.js';
import type { Client } from '../client/client.js';
import { done, requeueAfter, type Reconciler, type Result } from '../reconcile/result.js';
import {
  cidrContains,
  formatIPv4,
  HostPortConflictError,
  parseCidr,
  parseIPv4,
  type PortMapping,
  type ServicePortRule,
  type ServiceRule,
} from '../../runtime-core/src/index.js';
import { containerGroup, containerRecords, serviceGroup, serviceRecords } from './dns-names.js';
import { setCondition, splitObjectKey, type ReconcileContext } from './context.js';

/** How soon a Service whose host port is held looks again. */
export const PORT_CONFLICT_RETRY_MS = 2000;

const isReady = (c: Container): boolean =>
  c.status?.phase === 'Running' &&
  c.status.conditions?.find((x) => x.type === 'Ready')?.status === 'True';

/** The Containers behind the Service (none without a selector, as in Kubernetes). */
export function membersOf(client: Client, svc: Service): Container[] {
  const selector = svc.spec.selector;
  if (!selector) return [];
  return client
    .list('Container', svc.metadata.namespace ?? 'default')
    .filter((c) => matchesLabels(c.metadata.labels, selector));
}

/** A target port on one Container: a number, or the containerPort of its port of that name. */
function targetPortOn(c: Container, target: number | string): number | undefined {
  if (typeof target === 'number') return target;
  return c.spec.ports?.find((p) => p.name === target)?.containerPort;
}

export interface ServicePlan {
  rule: ServiceRule;
  /** Problems to report on the object (a targetPort name a member does not define). */
  problems: string[];
  hostPorts: PortMapping[];
}

/** What the service table should hold for `svc` (it must have a clusterIP in status). */
export function serviceRule(client: Client, svc: Service, clusterIP: string): ServicePlan {
  const ns = svc.metadata.namespace ?? 'default';
  const members = membersOf(client, svc).filter((c) => isReady(c) && c.status?.ip);
  const problems: string[] = [];
  const ports: ServicePortRule[] = svc.spec.ports.map((p, i) => {
    const target = p.targetPort ?? p.port;
    const endpoints = [];
    for (const c of members) {
      const port = targetPortOn(c, target);
      if (port === undefined) {
        problems.push(
          `spec.ports[${i}].targetPort: "${String(target)}" is not a port name of Container ${c.metadata.name}`,
        );
        continue;
      }
      endpoints.push({ ip: c.status?.ip ?? '', port });
    }
    endpoints.sort((a, b) => a.ip.localeCompare(b.ip) || a.port - b.port);
    return {
      ...(p.name ? { name: p.name } : {}),
      protocol: p.protocol ?? 'TCP',
      port: p.port,
      ...(p.hostPort ? { hostPort: p.hostPort } : {}),
      endpoints,
    };
  });
  const hostPorts: PortMapping[] = svc.spec.ports.flatMap((p) =>
    p.hostPort
      ? [
          {
            hostPort: p.hostPort,
            containerPort: p.port,
            protocol: (p.protocol ?? 'TCP') === 'UDP' ? ('udp' as const) : ('tcp' as const),
          },
        ]
      : [],
  );
  return { rule: { key: `${ns}/${svc.metadata.name}`, clusterIP, ports }, problems, hostPorts };
}

/** ClusterIPs held by other Services (their status, or what they ask for). */
function takenClusterIPs(client: Client, except: Service): Map<string, string> {
  const taken = new Map<string, string>();
  for (const s of client.list('Service')) {
    if (
      s.metadata.namespace === except.metadata.namespace &&
      s.metadata.name === except.metadata.name
    )
      continue;
    const who = `${s.metadata.namespace ?? 'default'}/${s.metadata.name}`;
    for (const ip of [s.status?.clusterIP, s.spec.clusterIP]) if (ip) taken.set(ip, who);
  }
  return taken;
}

export class ClusterIPError extends Error {}

/**
 * The Service's ClusterIP: spec.clusterIP when valid and free; else the one it has; else one
 * allocated — the first free address from a hash of its name (stable across restarts and the
 * same every time for the same name), skipping the range's network, first and last address.
 */
export function chooseClusterIP(client: Client, svc: Service, serviceCidr: string): string {
  const range = parseCidr(serviceCidr, 'serviceCidr');
  const taken = takenClusterIPs(client, svc);
  const wanted = svc.spec.clusterIP;
  if (wanted) {
    const n = parseIPv4(wanted);
    if (n === undefined)
      throw new ClusterIPError(`spec.clusterIP: "${wanted}" is not an IPv4 address`);
    if (!cidrContains(range, n) || n === range.base || n === range.base + range.size - 1)
      throw new ClusterIPError(
        `spec.clusterIP: ${wanted} is not a usable address of the service range ${serviceCidr}`,
      );
    const holder = taken.get(wanted);
    if (holder)
      throw new ClusterIPError(`spec.clusterIP: ${wanted} is already Service ${holder}'s`);
    return wanted;
  }
  const had = svc.status?.clusterIP;
  if (had && !taken.has(had)) {
    const n = parseIPv4(had);
    if (n !== undefined && cidrContains(range, n)) return had;
  }
  const usable = range.size - 3; // not the network address, .1, the last
  if (usable <= 0) throw new ClusterIPError(`the service range ${serviceCidr} is too small`);
  const key = `${svc.metadata.namespace ?? 'default'}/${svc.metadata.name}`;
  const start = createHash('sha256').update(key).digest().readUInt32BE(0) % usable;
  for (let i = 0; i < usable; i++) {
    const ip = formatIPv4(range.base + 2 + ((start + i) % usable));
    if (!taken.has(ip)) return ip;
  }
  throw new ClusterIPError(`the service range ${serviceCidr} is full`);
}

export class ServiceReconciler implements Reconciler {
  constructor(private readonly ctx: ReconcileContext) {}

  async reconcile(key: string): Promise<Result> {
    const ctx = this.ctx;
    const svc = ctx.client.get('Service', key);
    const { namespace, name } = splitObjectKey(key);
    const holder = `Service ${namespace}/${name}`;
    if (!svc) {
      await ctx.runtime.removeService(key);
      ctx.runtime.releasePorts(holder);
      await ctx.runtime.setDnsRecords(serviceGroup(namespace, name), []);
      // A Container of the same name gets its own name back.
      const c = ctx.client.get('Container', key);
      if (c) {
        const { domain } = await ctx.runtime.networkInfo();
        await ctx.runtime.setDnsRecords(
          containerGroup(namespace, name),
          containerRecords(ctx.client, c, domain),
        );
      }
      await ctx.client.finalize('Service', namespace, name);
      return done();
    }
    const net = await ctx.runtime.networkInfo();
    const generation = svc.metadata.generation ?? 0;
    const members = membersOf(ctx.client, svc);
    const endpoints: ServiceEndpoint[] = members
      .map((c) => ({
        name: c.metadata.name,
        ready: isReady(c),
        ...(c.status?.ip ? { ip: c.status.ip } : {}),
      }))
      .sort((a, b) => a.name.localeCompare(b.name));
    const readyCount = endpoints.filter((e) => e.ready).length;
    let conditions = setCondition(
      svc.status?.conditions,
      {
        type: 'EndpointsReady',
        status: readyCount > 0 ? 'True' : 'False',
        reason: readyCount > 0 ? 'HasReadyEndpoints' : 'NoReadyEndpoints',
        message: `${readyCount} of ${endpoints.length} endpoints ready`,
        observedGeneration: generation,
      },
      ctx.now(),
    );

    let clusterIP: string;
    try {
      clusterIP = chooseClusterIP(ctx.client, svc, net.serviceCidr);
    } catch (err) {
      if (!(err instanceof ClusterIPError)) throw err;
      await ctx.runtime.removeService(key);
      conditions = setCondition(
        conditions,
        {
          type: 'Ready',
          status: 'False',
          reason: 'InvalidClusterIP',
          message: err.message,
          observedGeneration: generation,
        },
        ctx.now(),
      );
      await ctx.client.updateStatus('Service', svc, {
        observedGeneration: generation,
        endpoints,
        conditions,
      });
      return done();
    }

    const plan = serviceRule(ctx.client, svc, clusterIP);
    let ready = { status: 'True' as 'True' | 'False', reason: 'Programmed', message: '' };
    try {
      ctx.runtime.reservePorts(holder, plan.hostPorts);
    } catch (err) {
      if (!(err instanceof HostPortConflictError)) throw err;
      // Published without its host ports until the holder lets go.
      ctx.runtime.releasePorts(holder);
      for (const p of plan.rule.ports) delete p.hostPort;
      ready = { status: 'False', reason: 'HostPortConflict', message: err.message };
    }
    if (plan.problems.length && ready.status === 'True')
      ready = { status: 'False', reason: 'InvalidTargetPort', message: plan.problems.join('; ') };
    await ctx.runtime.upsertService(plan.rule);
    const status: ServiceStatus = {
      observedGeneration: generation,
      clusterIP,
      endpoints,
      conditions: setCondition(
        conditions,
        { type: 'Ready', ...ready, observedGeneration: generation },
        ctx.now(),
      ),
    };
    await ctx.client.updateStatus('Service', svc, status);
    await ctx.runtime.setDnsRecords(
      serviceGroup(namespace, name),
      serviceRecords({ ...svc, status }, net.domain),
    );
    // The Service's name is its own now, not a Container's of the same name.
    await ctx.runtime.setDnsRecords(containerGroup(namespace, name), []);
    return ready.reason === 'HostPortConflict' ? requeueAfter(PORT_CONFLICT_RETRY_MS) : done();
  }
}
