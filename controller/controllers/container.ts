/**
 * The Container reconciler: level-triggered, idempotent. Each pass reads the desired state (the
 * cache), observes the actual state (the runtime core, which keeps its record on disk) and takes
 * one step toward convergence: wait for the Image, create, replace on a spec change, restart by
 * restartPolicy with the kubelet's CrashLoopBackOff, remove on deletion. Running it twice, or
 * after a controller restart, lands in the same place — the container is found again by its id
 * and the spec hash recorded with it, never created twice.
 */
import { createHash } from 'node:crypto';

import type { Container, ContainerStatus, Image } from '../api/types.generated.js';
import { runsHere } from '../client/client.js';
import { markUnschedulable } from './node-lifecycle.js';
import {
  done,
  requeueAfter,
  retry,
  TerminalError,
  type Reconciler,
  type Result,
} from '../reconcile/result.js';
import { parseQuantity } from '../validation/quantity.js';
import {
  containerIdFor,
  DEFAULT_PATH,
  HostPortConflictError,
  isIPv4,
  OWNER_ANNOTATION,
  type ContainerInfo,
  type PortMapping,
  type ContainerMount,
  type Disposable,
  type RunSpec,
} from '../../runtime-core/src/index.js';
import {
  isStaleWrite,
  setCondition,
  splitObjectKey,
  StatusWriter,
  type ReconcileContext,
} from './context.js';
import { containerGroup, containerRecords } from './dns-names.js';
import { Prober } from './probes.js';
import { PORT_CONFLICT_RETRY_MS } from './service.js';
import {
  CrashLoopBackOff,
  KUBELET_BACKOFF,
  shouldRestart,
  type RestartBackoff,
} from './restart-policy.js';

export const SPEC_HASH_ANNOTATION = 'conductor.dev/spec-hash';
/**
 * How long a start waits for a readiness probe that runs at once (initialDelaySeconds 0) before
 * writing Running: long enough for a local probe of a program that is already listening, short
 * enough that a slow one only delays the Running status, never the container.
 */
export const FIRST_READINESS_WAIT_MS = 100;
export const GRACE_ANNOTATION = 'conductor.dev/grace-seconds';
export { containerIdFor, OWNER_ANNOTATION };

/** A Container the runtime cannot be asked to run as written: status says InvalidSpec. */
const invalidSpec = (message: string, cause?: unknown): TerminalError =>
  new TerminalError('InvalidSpec', message, cause === undefined ? undefined : { cause });

/** parseQuantity with the field named: a bad quantity is the spec's fault, never a retry. */
function quantity(field: string, value: string | number): number {
  try {
    return parseQuantity(value);
  } catch (err) {
    throw invalidSpec(`${field}: ${(err as Error).message}`, err);
  }
}

/** What the runtime is asked to run, from the Container and its Image. */
export function runtimeSpecFor(c: Container, image: Image, id: string): RunSpec {
  // The configuration the image build resolved (base, steps, spec.config), see ImageStatus.
  const cfg = image.status?.config ?? {};
  // Docker gives a container whose image sets no PATH the standard one.
  const env: Record<string, string> = { PATH: DEFAULT_PATH, ...(cfg.env ?? {}) };
  for (const e of c.spec.env ?? []) env[e.name] = e.value;
  // Kubernetes: command replaces the entrypoint, args replace cmd.
  const entrypoint = c.spec.command ?? cfg.entrypoint ?? [];
  const cmd = c.spec.args ?? (c.spec.command ? [] : (cfg.cmd ?? []));
  const args = [...entrypoint, ...cmd];
  if (args.length === 0) {
    throw invalidSpec('spec.command: required, the image has no entrypoint or cmd');
  }
  const published = hostPorts(c);
  const spec: RunSpec = {
    id,
    name: `${c.metadata.namespace}/${c.metadata.name}`,
    args,
    env,
    hostname: c.spec.hostname ?? c.metadata.name,
    network: {
      mode: c.spec.network === 'host' ? 'host' : c.spec.network === 'none' ? 'none' : 'bridge',
      ...(published.length ? { ports: published } : {}),
    },
    annotations: { [OWNER_ANNOTATION]: `Container/${c.metadata.namespace}/${c.metadata.name}` },
  };
  const wd = c.spec.workingDir ?? cfg.workingDir;
  if (wd) spec.workingDir = wd;
  const user = image.status?.user;
  if (user) {
    spec.user = {
      uid: user.uid,
      gid: user.gid,
      ...(user.additionalGids?.length ? { additionalGids: user.additionalGids } : {}),
    };
  }
  const limits = c.spec.resources?.limits;
  if (limits) {
    spec.resources = {};
    if (limits.cpu !== undefined)
      spec.resources.cpu = quantity('spec.resources.limits.cpu', limits.cpu);
    if (limits.memory !== undefined)
      spec.resources.memoryBytes = Math.floor(
        quantity('spec.resources.limits.memory', limits.memory),
      );
    if (limits.pids !== undefined) spec.resources.pids = limits.pids;
  }
  const volumes = new Map((c.spec.volumes ?? []).map((v) => [v.name, v]));
  const mounts: ContainerMount[] = [];
  for (const [i, vm] of (c.spec.volumeMounts ?? []).entries()) {
    const v = volumes.get(vm.name);
    if (!v) throw invalidSpec(`spec.volumeMounts[${i}].name: no volume named "${vm.name}"`);
    if (v.hostPath) {
      mounts.push({
        containerPath: vm.mountPath,
        type: 'bind',
        hostPath: v.hostPath.path,
        readOnly: vm.readOnly,
      });
    } else if (v.emptyDir?.medium === 'Memory') {
      const size =
        v.emptyDir.sizeLimit !== undefined
          ? quantity(`spec.volumes[${v.name}].emptyDir.sizeLimit`, v.emptyDir.sizeLimit)
          : undefined;
      mounts.push({
        containerPath: vm.mountPath,
        type: 'tmpfs',
        readOnly: vm.readOnly,
        ...(size ? { sizeBytes: size } : {}),
      });
    } else {
      // An emptyDir on disk: the runtime core keeps it for the container's id until removed.
      mounts.push({
        containerPath: vm.mountPath,
        type: 'volume',
        volume: v.name,
        readOnly: vm.readOnly,
      });
    }
  }
  if (mounts.length) spec.mounts = mounts;
  return spec;
}

/** The ports a Container publishes on the node (its ports with a hostPort), checked. */
export function hostPorts(c: Container): PortMapping[] {
  const out: PortMapping[] = [];
  const seen = new Map<string, number>();
  for (const [i, p] of (c.spec.ports ?? []).entries()) {
    const protocol = p.protocol === 'UDP' ? 'udp' : 'tcp';
    const key = `${p.containerPort}/${protocol}`;
    const first = seen.get(key);
    if (first !== undefined)
      throw invalidSpec(
        `spec.ports[${i}]: containerPort ${key.toUpperCase()} is listed twice (spec.ports[${first}])`,
      );
    seen.set(key, i);
    if (p.hostPort === undefined) continue;
    if (p.hostIP !== undefined && !isIPv4(p.hostIP))
      throw invalidSpec(`spec.ports[${i}].hostIP: "${p.hostIP}" is not an IPv4 address`);
    if (c.spec.network === 'host' || c.spec.network === 'none')
      throw invalidSpec(
        `spec.ports[${i}].hostPort: needs network "bridge" (with network "${c.spec.network}" nothing is published)`,
      );
    const dup = out.find(
      (o) =>
        o.hostPort === p.hostPort &&
        o.protocol === protocol &&
        (o.hostIP ?? '0.0.0.0') === (p.hostIP ?? '0.0.0.0'),
    );
    if (dup)
      throw invalidSpec(
        `spec.ports[${i}].hostPort: ${p.hostPort}/${protocol.toUpperCase()} is published twice`,
      );
    out.push({
      hostPort: p.hostPort,
      containerPort: p.containerPort,
      protocol,
      ...(p.hostIP && p.hostIP !== '0.0.0.0' ? { hostIP: p.hostIP } : {}),
    });
  }
  return out;
}

function specHash(spec: RunSpec, image: Image): string {
  return createHash('sha256')
    .update(JSON.stringify([spec, image.status?.digest ?? '']))
    .digest('hex')
    .slice(0, 16);
}

/** Whether the runtime's container is (still) running: stopping it is a kill. */
const isLive = (info: ContainerInfo): boolean =>
  info.status === 'running' || info.status === 'creating';

export class ContainerReconciler implements Reconciler {
  /** CrashLoopBackOff streaks, by key. */
  readonly restarts: CrashLoopBackOff;
  /** Exit watches of running containers, by id: disposed when the container goes, or by close(). */
  private readonly watched = new Map<string, Disposable>();
  /** Readiness and liveness probes of the running containers. */
  readonly prober: Prober;

  constructor(
    private readonly ctx: ReconcileContext,
    /** Called when a container exits, so its key is reconciled again. */
    private readonly enqueue: (key: string) => void,
    backoff: RestartBackoff = KUBELET_BACKOFF,
  ) {
    this.restarts = new CrashLoopBackOff(backoff, () => ctx.now().getTime());
    this.prober = new Prober(ctx, enqueue);
  }

  /** Registers exit notifications for a container the runtime already runs (adoption). */
  watch(key: string, id: string): void {
    if (this.watched.has(id)) return;
    const watch = this.ctx.runtime.onExit(
      id,
      () => {
        this.watched.delete(id);
        this.enqueue(key);
      },
      (err) => {
        this.watched.delete(id);
        this.ctx.logger.error('cannot watch the container for its exit', {
          id,
          error: String(err),
        });
      },
    );
    this.watched.set(id, watch);
  }

  private unwatch(id: string): void {
    this.watched.get(id)?.dispose();
    this.watched.delete(id);
  }

  /** Stops probing and watching: the containers run on, a new controller adopts them. */
  async close(): Promise<void> {
    for (const w of this.watched.values()) w.dispose();
    this.watched.clear();
    await this.prober.stopAll();
  }

  async reconcile(key: string): Promise<Result> {
    const ctx = this.ctx;
    const { namespace, name } = splitObjectKey(key);
    const id = containerIdFor(namespace, name);
    const container = ctx.client.get('Container', key);
    const info = await ctx.runtime.find(id);

    // Bound to another node (Kubernetes mode): its agent runs it and writes its status. What
    // runs here for it (it moved away) goes; its name resolves here too, to its address there.
    // Unbound and not for this node: if no node can run it either, its status says why.
    if (container && !runsHere(ctx.client, container)) {
      const nodes = ctx.nodes?.();
      if (nodes) await markUnschedulable(ctx, container, nodes);
      this.prober.stop(key);
      if (info) await this.removeContainer(id, 0);
      await ctx.runtime.removeVolumes(id);
      this.restarts.forget(key);
      await this.publishName(container);
      return done();
    }

    if (!container) {
      this.prober.stop(key);
      if (info) {
        const grace = Number(info.annotations?.[GRACE_ANNOTATION] ?? 30);
        // Said only while it runs: a retried removal (or an exited container) stops nothing.
        if (isLive(info))
          ctx.client.recordEvent(
            'Container',
            { metadata: { namespace, name } },
            'Normal',
            'Killing',
            `Stopping container ${name}`,
          );
        await this.removeContainer(id, grace);
      }
      await ctx.runtime.removeVolumes(id);
      await ctx.runtime.setDnsRecords(containerGroup(namespace, name), []);
      this.restarts.forget(key);
      await ctx.client.finalize('Container', namespace, name);
      return done();
    }

    const status = new StatusWriter(ctx.client, 'Container', container);
    const imageKey = `${namespace}/${container.spec.image}`;
    const shared = ctx.client.get('Image', imageKey);
    // The Image as this node built it (node-images.ts): with several agents, the status may
    // describe another node's layers.
    const here =
      shared && (await ctx.images.view(imageKey, shared, (l) => ctx.runtime.hasLayers(l)));
    if (!shared || here?.phase !== 'Ready') {
      const waiting =
        here !== shared?.status && here?.phase === 'Pending' ? `: ${here.message}` : '';
      await this.setStatus(status, {
        phase: info?.status === 'running' ? 'Running' : 'Pending',
        reason: 'ImageNotReady',
        message: shared
          ? `image ${container.spec.image} is ${here?.phase ?? 'Pending'}${waiting}`
          : `image ${container.spec.image} does not exist`,
        ready: info?.status === 'running',
      });
      // The Image's change (or this node's build of it) re-enqueues this key.
      return done();
    }
    const image: Image = here === shared.status ? shared : { ...shared, status: here };

    let desired: RunSpec;
    try {
      desired = runtimeSpecFor(container, image, id);
    } catch (err) {
      if (!(err instanceof TerminalError)) throw err;
      await this.setStatus(status, {
        phase: 'Failed',
        reason: err.reason,
        message: err.message,
        ready: false,
      });
      throw err;
    }
    const hash = specHash(desired, image);
    desired.annotations = {
      ...desired.annotations,
      [SPEC_HASH_ANNOTATION]: hash,
      [GRACE_ANNOTATION]: String(container.spec.terminationGracePeriodSeconds),
    };

    // A spec change replaces the container (as a Pod's container is replaced).
    if (info && info.annotations?.[SPEC_HASH_ANNOTATION] !== hash) {
      if (isLive(info))
        ctx.client.recordEvent(
          'Container',
          container,
          'Normal',
          'Killing',
          `Container ${name} definition changed, will be restarted`,
        );
      this.prober.stop(key);
      // Said before the grace period runs: the old container is going (not ready, whatever the
      // status said before), and the Ready condition changes when the new one is up.
      await this.setStatus(status, {
        phase: 'Running',
        reason: 'Replacing',
        message: `spec changed: stopping the old container (grace period ${container.spec.terminationGracePeriodSeconds}s)`,
        ready: false,
      });
      await this.removeContainer(id, container.spec.terminationGracePeriodSeconds);
      this.restarts.forget(key);
      return this.start(key, status, desired, image, { restartCount: 0 });
    }
    if (!info) return this.start(key, status, desired, image);

    if (isLive(info)) {
      this.watch(key, id);
      if (info.pid !== undefined) {
        // The container the status describes (a controller restart adopting it): its
        // readiness carries over until its next probe.
        const was = container.status;
        const same =
          was?.containerID === id && was.pid === info.pid && was.startedAt === info.startedAt;
        const wasReady = same && was.conditions?.find((c) => c.type === 'Ready')?.status === 'True';
        this.prober.ensure(key, container, id, info.pid, info.ip, wasReady);
      }
      const startedAt = info.startedAt ? Date.parse(info.startedAt) : ctx.now().getTime();
      await this.setStatus(status, {
        phase: 'Running',
        reason: undefined,
        message: undefined,
        containerID: id,
        ...(info.pid !== undefined ? { pid: info.pid } : {}),
        ...(info.startedAt ? { startedAt: info.startedAt } : {}),
        ip: info.ip,
        ready: this.prober.ready(key),
        imageID: image.status?.digest,
      });
      await this.publishName(status.current);
      // Look again when the crash streak would end, so it ends on time.
      const resetIn = this.restarts.running(key, startedAt);
      return resetIn !== undefined ? requeueAfter(resetIn) : done();
    }

    // A create that never finished (the controller died between the shim's start and its first
    // record): nothing ran, so it is not a crash — start over, without back-off.
    if (info.status === 'unknown' && !info.startedAt) {
      await this.removeContainer(id, 0);
      return this.start(key, status, desired, image);
    }

    // Exited (or its shim is gone without a record: treat as failed).
    this.prober.stop(key);
    this.unwatch(id);
    await ctx.runtime.setDnsRecords(containerGroup(namespace, name), []);
    const exitCode = info.exitCode ?? (info.status === 'unknown' ? 137 : 0);
    const reason = info.oomKilled ? 'OOMKilled' : exitCode === 0 ? 'Completed' : 'Error';
    const finished = {
      containerID: id,
      exitCode,
      ...(info.startedAt ? { startedAt: info.startedAt } : {}),
      ...(info.finishedAt ? { finishedAt: info.finishedAt } : {}),
    };
    // Whether an earlier pass already wrote this exit into status (a re-reconcile: a resync, a
    // controller restart, another object's change): its events are not recorded again. A start
    // clears exitCode, so a recorded exitCode is this run's.
    const was = status.current.status;
    const exitRecorded =
      was?.containerID === id &&
      was.exitCode === exitCode &&
      was.finishedAt === finished.finishedAt;
    const exitEvents = (): void => {
      if (exitRecorded || !info.oomKilled) return;
      const limit = container.spec.resources?.limits?.memory;
      ctx.client.recordEvent(
        'Container',
        container,
        'Warning',
        'OOMKilling',
        `Memory cgroup out of memory: container ${name} was OOM-killed` +
          (limit !== undefined ? ` (memory limit ${limit})` : ''),
      );
    };
    if (!shouldRestart(container.spec.restartPolicy, exitCode)) {
      await this.setStatus(status, {
        phase: exitCode === 0 ? 'Succeeded' : 'Failed',
        reason,
        message:
          info.status === 'unknown'
            ? "the container's shim is gone; its exit was not recorded"
            : undefined,
        ready: false,
        ...finished,
      });
      exitEvents();
      return done();
    }
    const decision = this.restarts.exited(key, {
      ...(info.startedAt ? { startedAtMs: Date.parse(info.startedAt) } : {}),
      ...(info.finishedAt ? { finishedAtMs: Date.parse(info.finishedAt) } : {}),
    });
    if (!decision.restart) {
      const backingOff = exitRecorded && was.reason === 'CrashLoopBackOff';
      await this.setStatus(status, {
        phase: 'Running',
        reason: 'CrashLoopBackOff',
        message: `back-off ${Math.round(decision.delayMs / 1000)}s restarting failed container (last exit: ${reason}, code ${exitCode})`,
        ready: false,
        ...finished,
      });
      exitEvents();
      // One event per back-off (the kubelet's words, the same each time, so a crash loop folds
      // into one line with a count); the delay is in status.
      if (!backingOff)
        ctx.client.recordEvent(
          'Container',
          container,
          'Warning',
          'BackOff',
          `Back-off restarting failed container ${name}`,
        );
      return requeueAfter(decision.waitMs);
    }
    exitEvents();
    await this.removeContainer(id, 0);
    return this.start(key, status, desired, image, {
      restartCount: (status.current.status?.restartCount ?? 0) + 1,
    });
  }

  private async start(
    key: string,
    status: StatusWriter<'Container'>,
    desired: RunSpec,
    image: Image,
    carried: Partial<ContainerStatus> = {},
  ): Promise<Result> {
    const ctx = this.ctx;
    const container = status.current;
    try {
      const created = await ctx.runtime.run(desired, { layers: image.status?.layers ?? [] });
      // run() creates and starts in one call; the kubelet's two events, in its words. Only
      // here, where a container was made: re-reconciling a running one (a resync, a restarted
      // controller adopting it) never says Started again.
      const { name } = container.metadata;
      ctx.client.recordEvent(
        'Container',
        container,
        'Normal',
        'Created',
        `Created container: ${name}`,
      );
      ctx.client.recordEvent(
        'Container',
        container,
        'Normal',
        'Started',
        `Started container ${name}`,
      );
      this.prober.ensure(key, container, desired.id, created.pid, created.ip);
      // A container serving at once is written Running and Ready together.
      await this.prober.firstReadiness(key, FIRST_READINESS_WAIT_MS);
      // Status before the exit watch, which reads and writes files too: Running is what users
      // and Services wait for. An exit before the watch is still reported (the
      // watch starts by looking at the container).
      await this.setStatus(status, {
        ...carried,
        phase: 'Running',
        reason: undefined,
        message: undefined,
        containerID: desired.id,
        pid: created.pid,
        startedAt: created.startedAt,
        finishedAt: undefined,
        exitCode: undefined,
        ip: created.ip,
        ready: this.prober.ready(key),
        imageID: image.status?.digest,
      });
      await this.publishName(status.current);
      this.watch(key, desired.id);
      return done();
    } catch (err) {
      if (isStaleWrite(err)) throw err; // a status write lost to a change: not a failed start
      if (err instanceof HostPortConflictError) {
        // Not started, the holder untouched; looked at again until the port is free.
        ctx.client.recordEvent('Container', container, 'Warning', 'HostPortConflict', err.message);
        await this.setStatus(status, {
          ...carried,
          phase: 'Pending',
          reason: 'HostPortConflict',
          message: err.message,
          ip: undefined,
          ready: false,
        });
        return requeueAfter(PORT_CONFLICT_RETRY_MS);
      }
      const message = (err as Error).message;
      ctx.client.recordEvent('Container', container, 'Warning', 'Failed', message);
      await this.setStatus(status, {
        ...carried,
        phase: 'Pending',
        reason: 'CreateContainerError',
        message,
        ready: false,
      });
      return retry(err as Error);
    }
  }

  /** The Container's DNS name, once it runs with an address (dns-names.ts). */
  private async publishName(c: Container): Promise<void> {
    const ns = c.metadata.namespace ?? 'default';
    if (c.spec.network !== undefined && c.spec.network !== 'bridge') return;
    const { domain } = await this.ctx.runtime.networkInfo();
    await this.ctx.runtime.setDnsRecords(
      containerGroup(ns, c.metadata.name),
      containerRecords(this.ctx.client, c, domain),
    );
  }

  private async removeContainer(id: string, gracePeriodSeconds: number): Promise<void> {
    this.unwatch(id);
    const info = await this.ctx.runtime.find(id);
    if (info && (info.status === 'running' || info.status === 'creating')) {
      await this.ctx.runtime.stop(id, { gracePeriodSeconds });
    }
    await this.ctx.runtime.remove(id, { force: true });
  }

  private async setStatus(
    writer: StatusWriter<'Container'>,
    next: Omit<Partial<ContainerStatus>, 'conditions'> & { ready: boolean },
  ): Promise<void> {
    const { ready, ...fields } = next;
    const old = writer.current.status ?? {};
    // Fields set to undefined are cleared (a restarted container has no exitCode).
    const status = Object.fromEntries(
      Object.entries({
        ...old,
        ...fields,
        observedGeneration: writer.current.metadata.generation ?? 0,
      }).filter(([, v]) => v !== undefined),
    ) as ContainerStatus;
    status.restartCount = status.restartCount ?? 0;
    status.conditions = setCondition(
      old.conditions,
      {
        type: 'Ready',
        status: ready ? 'True' : 'False',
        reason: ready ? 'ContainerRunning' : (status.reason ?? 'NotRunning'),
        message: ready ? '' : (status.message ?? ''),
        observedGeneration: status.observedGeneration ?? 0,
      },
      this.ctx.now(),
    );
    await writer.write(status);
  }
}

export type { ContainerInfo };
