/**
 * Metrics derived from the objects the controller holds, computed at scrape time from its cache
 * (nothing to keep in step, nothing left behind when an object goes): Containers by phase, their
 * restarts in kube-state-metrics' shape (`kube_pod_container_status_restarts_total`, so
 * crash-loop alerts written for Kubernetes work unchanged), Images by phase, and each Service's
 * endpoints, ready or not.
 */
import { Counter, Gauge, type Registry } from 'prom-client';

import type { Container, Image, Service } from '../api/types.generated.js';

/** What the cache gives: the objects of each kind, all namespaces. */
export interface ObjectLister {
  containers(): readonly Container[];
  images(): readonly Image[];
  services(): readonly Service[];
}

const CONTAINER_PHASES = ['Pending', 'Running', 'Succeeded', 'Failed', 'Unknown'] as const;
const IMAGE_PHASES = ['Pending', 'Pulling', 'Building', 'Ready', 'Failed'] as const;

/** Counts by phase, every phase present (at 0), so a dashboard's sum never has gaps. */
function byPhase<P extends string>(
  phases: readonly P[],
  objects: readonly { status?: { phase?: P } }[],
  fallback: P,
): Map<P, number> {
  const counts = new Map<P, number>(phases.map((p) => [p, 0]));
  for (const o of objects) {
    const p = o.status?.phase ?? fallback;
    counts.set(p, (counts.get(p) ?? 0) + 1);
  }
  return counts;
}

export function registerObjectMetrics(registry: Registry, list: ObjectLister): void {
  const registers = [registry];
  new Gauge({
    name: 'conductor_containers',
    help: 'Number of Containers per phase.',
    labelNames: ['phase'] as const,
    registers,
    collect() {
      this.reset();
      for (const [phase, n] of byPhase(CONTAINER_PHASES, list.containers(), 'Pending'))
        this.set({ phase }, n);
    },
  });
  new Gauge({
    name: 'conductor_images',
    help: 'Number of Images per phase.',
    labelNames: ['phase'] as const,
    registers,
    collect() {
      this.reset();
      for (const [phase, n] of byPhase(IMAGE_PHASES, list.images(), 'Pending'))
        this.set({ phase }, n);
    },
  });
  new Counter({
    name: 'kube_pod_container_status_restarts_total',
    help: 'The number of container restarts per container.',
    labelNames: ['namespace', 'pod', 'container'] as const,
    registers,
    collect() {
      this.reset();
      for (const c of list.containers()) {
        const name = c.metadata.name;
        this.inc(
          { namespace: c.metadata.namespace ?? 'default', pod: name, container: name },
          c.status?.restartCount ?? 0,
        );
      }
    },
  });
  new Gauge({
    name: 'conductor_service_endpoints',
    help: "Number of a Service's endpoints, ready or not.",
    labelNames: ['namespace', 'service', 'ready'] as const,
    registers,
    collect() {
      this.reset();
      for (const s of list.services()) {
        const labels = { namespace: s.metadata.namespace ?? 'default', service: s.metadata.name };
        const endpoints = s.status?.endpoints ?? [];
        const ready = endpoints.filter((e) => e.ready === true).length;
        this.set({ ...labels, ready: 'true' }, ready);
        this.set({ ...labels, ready: 'false' }, endpoints.length - ready);
      }
    },
  });
}
