/**
 * The DNS names Conductor gives Services and Containers, as a Kubernetes cluster's DNS does
 * for Services: `<svc>.<ns>.svc.<domain>` (so `<svc>` and `<svc>.<ns>` resolve through the
 * containers' search list), and the same for a Container's name — unless a Service of that
 * name exists in the namespace: the Service's address wins (the demo's `counter` Service in
 * front of its `counter` Container), as only one answer may come back for a name.
 *
 * Each object's records are one group of the DNS server (one hosts file), so a change rewrites
 * only its own.
 */
import type { Container, Service } from '../api/types.generated.js';
import type { Client } from '../client/client.js';
import type { DnsRecord } from '../../runtime-core/src/index.js';

export const serviceGroup = (namespace: string, name: string): string => `svc.${namespace}.${name}`;
export const containerGroup = (namespace: string, name: string): string =>
  `ctr.${namespace}.${name}`;

export const serviceFqdn = (namespace: string, name: string, domain: string): string =>
  `${name}.${namespace}.svc.${domain}`;

export function serviceRecords(svc: Service, domain: string): DnsRecord[] {
  const ip = svc.status?.clusterIP;
  const ns = svc.metadata.namespace ?? 'default';
  return ip ? [{ name: serviceFqdn(ns, svc.metadata.name, domain), ip }] : [];
}

/** A running Container's records: none without an address, or when a Service has its name. */
export function containerRecords(client: Client, c: Container, domain: string): DnsRecord[] {
  const ns = c.metadata.namespace ?? 'default';
  const ip = c.status?.ip;
  if (!ip || c.status?.phase !== 'Running') return [];
  if (client.get('Service', `${ns}/${c.metadata.name}`)) return [];
  return [{ name: serviceFqdn(ns, c.metadata.name, domain), ip }];
}

/** Every group the cache implies: what DNS is brought to at start. */
export function allDnsGroups(client: Client, domain: string): Map<string, DnsRecord[]> {
  const groups = new Map<string, DnsRecord[]>();
  for (const s of client.list('Service')) {
    const r = serviceRecords(s, domain);
    if (r.length) groups.set(serviceGroup(s.metadata.namespace ?? 'default', s.metadata.name), r);
  }
  for (const c of client.list('Container')) {
    const r = containerRecords(client, c, domain);
    if (r.length) groups.set(containerGroup(c.metadata.namespace ?? 'default', c.metadata.name), r);
  }
  return groups;
}
