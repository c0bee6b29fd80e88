/**
 * UDP flows to an endpoint that left a Service. A UDP "connection" is only a conntrack entry:
 * while the client keeps sending (a DNS resolver reusing its socket, a game, a metrics agent),
 * the entry stays and keeps its DNAT to the old endpoint, however the rules changed — the flow
 * never goes to the endpoints the Service has now. kube-proxy deletes those entries after each
 * change (`conntrack -D`); so does this. TCP needs nothing: an established connection keeps
 * its endpoint on purpose (it is not cut by a rule change) and a new one takes the new rules.
 */
import { execFile } from 'node:child_process';

import type { Logger } from '../logger.js';
import type { ServiceRule } from './service-proxy.js';

/** One set of flows to delete: to `port` (on `vip`, or on any local address for a hostPort), answered by `endpoint`. */
export interface StaleFlow {
  vip?: string;
  port: number;
  endpoint: string;
}

/** The UDP flows `next` no longer sends where `old` did (next undefined: the Service is gone). */
export function staleUdpFlows(
  old: ServiceRule | undefined,
  next: ServiceRule | undefined,
): StaleFlow[] {
  if (!old) return [];
  const out: StaleFlow[] = [];
  for (const p of old.ports) {
    if (p.protocol !== 'UDP') continue;
    const now = next?.ports.find((q) => q.protocol === 'UDP' && q.port === p.port);
    const keep = new Set(
      next?.clusterIP === old.clusterIP
        ? (now?.endpoints ?? []).map((e) => `${e.ip}:${e.port}`)
        : [],
    );
    const keepHost = new Set(
      now?.hostPort === p.hostPort ? (now?.endpoints ?? []).map((e) => `${e.ip}:${e.port}`) : [],
    );
    for (const e of p.endpoints) {
      if (!keep.has(`${e.ip}:${e.port}`))
        out.push({ vip: old.clusterIP, port: p.port, endpoint: e.ip });
      if (p.hostPort !== undefined && !keepHost.has(`${e.ip}:${e.port}`))
        out.push({ port: p.hostPort, endpoint: e.ip });
    }
  }
  return out;
}

/** `conntrack -D` arguments for one stale flow set. */
export function conntrackArgs(f: StaleFlow): string[] {
  return [
    '-D',
    '-p',
    'udp',
    ...(f.vip !== undefined ? ['--orig-dst', f.vip] : []),
    '--orig-port-dst',
    String(f.port),
    '--reply-src',
    f.endpoint,
  ];
}

/**
 * Deletes the flows; best effort, as kube-proxy's: conntrack exits 1 when there were none, and
 * a failure is logged, never thrown (the rules are right; only old UDP flows linger).
 */
export async function deleteUdpFlows(flows: readonly StaleFlow[], log: Logger): Promise<void> {
  for (const f of flows) {
    await new Promise<void>((resolve) => {
      execFile('conntrack', conntrackArgs(f), (err, _stdout, stderr) => {
        const none = /0 flow entries have been deleted/.test(stderr);
        if (err && !none)
          log.warn('cannot delete UDP flows of a gone endpoint', {
            ...f,
            error: stderr.trim() || err.message,
          });
        resolve();
      });
    });
  }
}
