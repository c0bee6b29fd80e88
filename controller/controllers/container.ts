/**
 * The Container reconciler: level-triggered, idempotent. Each pass reads the desired state (the
 * cache), observes the actual state (the runtime core, which keeps its record on disk) and takes
 * one step toward convergence: wait for the Image, create, replace on a spec change, restart by
 * restartPolicy with the kubelet's CrashLoopBackOff, remove on deletion. Running it twice, or
 * after a controller restart, lands in the same place — the container is found again by its id
 * and the spec hash recorded with it, never created twice.
 */
import { createHash } from 'node:crypto';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';

import type { Container, ContainerStatus, Image } from '../api/types.generated.js';
import { DEFAULT_PATH } from '../../runtime-core/src/images/config.js';
import {
  done,
  requeueAfter,
  retry,
  terminal,
  type Reconciler,
  type Result,
} from '../reconcile/result.js';
import { parseQuantity } from '../validation/quantity.js';
import {
  ContainerNotFoundError,
  OWNER_ANNOTATION,
  type ContainerInfo,
} from '../../runtime-core/src/containers.js';
import type { ContainerMount, ContainerSpec } from '../../runtime-core/src/oci-config.js';
import { event, setCondition, type ReconcileContext } from './context.js';
import { Prober } from './probes.js';

export const SPEC_HASH_ANNOTATION = 'conductor.dev/spec-hash';
export { OWNER_ANNOTATION };

/** The kubelet's container restart backoff: 10 s doubling to 5 min, reset after 10 min running. */
export const BACKOFF_INITIAL_MS = 10_000;
export const BACKOFF_MAX_MS = 300_000;
export const BACKOFF_RESET_MS = 600_000;

export interface RestartBackoff {
  initialMs: number;
  maxMs: number;
  resetMs: number;
}
export const KUBELET_BACKOFF: RestartBackoff = {
  initialMs: BACKOFF_INITIAL_MS,
  maxMs: BACKOFF_MAX_MS,
  resetMs: BACKOFF_RESET_MS,
};

export function backoffDelay(
  consecutiveRestarts: number,
  b: RestartBackoff = KUBELET_BACKOFF,
): number {
  return Math.min(b.initialMs * 2 ** Math.max(0, consecutiveRestarts), b.maxMs);
}

/** `<namespace>_<name>`: unambiguous (neither may contain `_`), valid as a runtime id. */
export function containerIdFor(namespace: string, name: string): string {
  const id = `${namespace}_${name}`;
  if (id.length <= 64) return id;
  const hash = createHash('sha256').update(id).digest('hex').slice(0, 12);
  return `${id.slice(0, 51)}_${hash}`;
}

class SpecError extends Error {}

/** What the runtime is asked to run, from the Container and its Image. */
export function runtimeSpecFor(
  c: Container,
  image: Image,
  id: string,
  stateDir: string,
): ContainerSpec {
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
    throw new SpecError('spec.command: required, the image has no entrypoint or cmd');
  }
  const spec: ContainerSpec = {
    id,
    name: `${c.metadata.namespace}/${c.metadata.name}`,
    args,
    env,
    hostname: c.spec.hostname ?? c.metadata.name,
    network: {
      mode: c.spec.network === 'host' ? 'host' : c.spec.network === 'none' ? 'none' : 'bridge',
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
    if (limits.cpu !== undefined) spec.resources.cpu = parseQuantity(limits.cpu);
    if (limits.memory !== undefined)
      spec.resources.memoryBytes = Math.floor(parseQuantity(limits.memory));
    if (limits.pids !== undefined) spec.resources.pids = limits.pids;
  }
  const volumes = new Map((c.spec.volumes ?? []).map((v) => [v.name, v]));
  const mounts: ContainerMount[] = [];
  for (const [i, vm] of (c.spec.volumeMounts ?? []).entries()) {
    const v = volumes.get(vm.name);
    if (!v) throw new SpecError(`spec.volumeMounts[${i}].name: no volume named "${vm.name}"`);
    if (v.hostPath) {
      mounts.push({
        containerPath: vm.mountPath,
        type: 'bind',
        hostPath: v.hostPath.path,
        readOnly: vm.readOnly,
      });
    } else if (v.emptyDir?.medium === 'Memory') {
      const size =
        v.emptyDir.sizeLimit !== undefined ? parseQuantity(v.emptyDir.sizeLimit) : undefined;
      mounts.push({
        containerPath: vm.mountPath,
        type: 'tmpfs',
        readOnly: vm.readOnly,
        ...(size ? { sizeBytes: size } : {}),
      });
    } else {
      mounts.push({
        containerPath: vm.mountPath,
        type: 'bind',
        hostPath: join(stateDir, 'volumes', id, v.name),
        readOnly: vm.readOnly,
      });
    }
  }
  if (mounts.length) spec.mounts = mounts;
  return spec;
}

function specHash(spec: ContainerSpec, image: Image): string {
  return createHash('sha256')
    .update(JSON.stringify([spec, image.status?.digest ?? '']))
    .digest('hex')
    .slice(0, 16);
}

export class ContainerReconciler implements Reconciler {
  /** Restarts since the container last ran long enough to reset the backoff (kubelet). */
  private readonly crashes = new Map<string, number>();
  private readonly watched = new Set<string>();
  /** Readiness and liveness probes of the running containers. */
  readonly prober: Prober;

  constructor(
    private readonly ctx: ReconcileContext,
    /** Called when a container exits, so its key is reconciled again. */
    private readonly enqueue: (key: string) => void,
    private readonly backoff: RestartBackoff = KUBELET_BACKOFF,
  ) {
    this.prober = new Prober(ctx, enqueue);
  }

  /** Registers exit notifications for a container the runtime already runs (adoption). */
  watch(key: string, id: string): void {
    if (this.watched.has(id)) return;
    this.watched.add(id);
    this.ctx.runtime.onExit(id, () => {
      this.watched.delete(id);
      this.enqueue(key);
    });
  }

  private async observe(id: string): Promise<ContainerInfo | undefined> {
    try {
      return await this.ctx.runtime.inspect(id);
    } catch (err) {
      if (err instanceof ContainerNotFoundError) return undefined;
      throw err;
    }
  }

  async reconcile(key: string): Promise<Result> {
    const ctx = this.ctx;
    const [namespace = 'default', name = key] = key.includes('/')
      ? key.split('/')
      : [undefined, key];
    const id = containerIdFor(namespace, name);
    const container = ctx.caches.Container.getByKey(key);
    const info = await this.observe(id);

    if (!container) {
      this.prober.stop(key);
      if (info) {
        const grace = Number(info.annotations?.['conductor.dev/grace-seconds'] ?? 30);
        await this.removeContainer(id, grace);
      }
      await rm(join(ctx.stateDir, 'volumes', id), { recursive: true, force: true });
      await ctx.status.forget('Container', namespace, name);
      this.crashes.delete(key);
      return done();
    }

    let old = ctx.status.get('Container', key) ?? {};
    const image = ctx.caches.Image.get(namespace, container.spec.image);
    const imageStatus = ctx.status.get('Image', `${namespace}/${container.spec.image}`);
    if (!image || imageStatus?.phase !== 'Ready') {
      await this.setStatus(key, container, old, {
        phase: info?.status === 'running' ? 'Running' : 'Pending',
        reason: 'ImageNotReady',
        message: image
          ? `image ${container.spec.image} is ${imageStatus?.phase ?? 'Pending'}`
          : `image ${container.spec.image} does not exist`,
        ready: info?.status === 'running',
      });
      // The Image's change re-enqueues this key (dependents are watched).
      return done();
    }
    const readyImage: Image = { ...image, status: imageStatus };

    let desired: ContainerSpec;
    try {
      desired = runtimeSpecFor(container, readyImage, id, ctx.stateDir);
    } catch (err) {
      if (!(err instanceof SpecError) && !(err instanceof Error && /quantity/.test(err.message)))
        throw err;
      await this.setStatus(key, container, old, {
        phase: 'Failed',
        reason: 'InvalidSpec',
        message: err.message,
        ready: false,
      });
      return terminal(err);
    }
    const hash = specHash(desired, readyImage);
    desired.annotations = {
      ...desired.annotations,
      [SPEC_HASH_ANNOTATION]: hash,
      'conductor.dev/grace-seconds': String(container.spec.terminationGracePeriodSeconds),
    };

    // A spec change replaces the container (as a Pod's container is replaced).
    if (info && info.annotations?.[SPEC_HASH_ANNOTATION] !== hash) {
      event(
        ctx,
        'Container',
        container,
        'Normal',
        'Replacing',
        'spec changed: replacing the container',
      );
      this.prober.stop(key);
      // Said before the grace period runs: the old container is going (not ready, whatever the
      // status said before), and the Ready condition changes when the new one is up.
      await this.setStatus(key, container, old, {
        phase: 'Running',
        reason: 'Replacing',
        message: `spec changed: stopping the old container (grace period ${container.spec.terminationGracePeriodSeconds}s)`,
        ready: false,
      });
      old = ctx.status.get('Container', key) ?? old;
      await this.removeContainer(id, container.spec.terminationGracePeriodSeconds);
      this.crashes.delete(key);
      return this.start(key, container, desired, readyImage, { ...old, restartCount: 0 });
    }
    if (!info) return this.start(key, container, desired, readyImage, old);

    if (info.status === 'running' || info.status === 'creating') {
      this.watch(key, id);
      if (info.pid !== undefined) this.prober.ensure(key, container, id, info.pid);
      const startedAt = info.startedAt ? Date.parse(info.startedAt) : ctx.now().getTime();
      const ranFor = ctx.now().getTime() - startedAt;
      if (ranFor >= this.backoff.resetMs) this.crashes.delete(key);
      await this.setStatus(key, container, old, {
        phase: 'Running',
        reason: undefined,
        message: undefined,
        containerID: id,
        ...(info.pid !== undefined ? { pid: info.pid } : {}),
        ...(info.startedAt ? { startedAt: info.startedAt } : {}),
        ready: this.prober.ready(key),
        imageID: readyImage.status?.digest,
      });
      // Look again when the backoff would reset, so the streak ends on time.
      return this.crashes.has(key) && ranFor < this.backoff.resetMs
        ? requeueAfter(this.backoff.resetMs - ranFor)
        : done();
    }

    // A create that never finished (the controller died between the shim's start and its first
    // record): nothing ran, so it is not a crash — start over, without backoff.
    if (info.status === 'unknown' && !info.startedAt) {
      await this.removeContainer(id, 0);
      return this.start(key, container, desired, readyImage, old);
    }

    // Exited (or its shim is gone without a record: treat as failed).
    this.prober.stop(key);
    const exitCode = info.exitCode ?? (info.status === 'unknown' ? 137 : 0);
    const reason = info.oomKilled ? 'OOMKilled' : exitCode === 0 ? 'Completed' : 'Error';
    const policy = container.spec.restartPolicy;
    const restart = policy === 'Always' || (policy === 'OnFailure' && exitCode !== 0);
    const finished = {
      containerID: id,
      exitCode,
      ...(info.startedAt ? { startedAt: info.startedAt } : {}),
      ...(info.finishedAt ? { finishedAt: info.finishedAt } : {}),
    };
    if (!restart) {
      await this.setStatus(key, container, old, {
        phase: exitCode === 0 ? 'Succeeded' : 'Failed',
        reason,
        message:
          info.status === 'unknown'
            ? "the container's shim is gone; its exit was not recorded"
            : undefined,
        ready: false,
        ...finished,
      });
      return done();
    }
    const ranFor =
      info.startedAt && info.finishedAt
        ? Date.parse(info.finishedAt) - Date.parse(info.startedAt)
        : 0;
    if (ranFor >= this.backoff.resetMs) this.crashes.delete(key);
    const streak = this.crashes.get(key) ?? 0;
    const delay = backoffDelay(streak, this.backoff);
    const finishedAt = info.finishedAt ? Date.parse(info.finishedAt) : ctx.now().getTime();
    const wait = finishedAt + delay - ctx.now().getTime();
    if (wait > 0) {
      await this.setStatus(key, container, old, {
        phase: 'Running',
        reason: 'CrashLoopBackOff',
        message: `back-off ${Math.round(delay / 1000)}s restarting failed container (last exit: ${reason}, code ${exitCode})`,
        ready: false,
        ...finished,
      });
      return requeueAfter(wait);
    }
    this.crashes.set(key, streak + 1);
    await this.removeContainer(id, 0);
    return this.start(key, container, desired, readyImage, {
      ...old,
      restartCount: (old.restartCount ?? 0) + 1,
    });
  }

  private async start(
    key: string,
    container: Container,
    desired: ContainerSpec,
    image: Image,
    old: ContainerStatus,
  ): Promise<Result> {
    const ctx = this.ctx;
    const layers = (image.status?.layers ?? [])
      .map((l) => ctx.images.store.path(l.digest.replace(/^sha256:/, '')))
      .reverse();
    if (layers.length === 0) {
      // A scratch image with no copy step: an empty lower layer keeps overlayfs happy.
      const empty = join(ctx.stateDir, 'layers', 'empty');
      await mkdir(empty, { recursive: true });
      layers.push(empty);
    }
    for (const m of desired.mounts ?? []) {
      if (m.type === 'bind' && m.hostPath?.startsWith(join(ctx.stateDir, 'volumes')))
        await mkdir(m.hostPath, { recursive: true });
    }
    try {
      const created = await ctx.runtime.create(desired, { layers });
      this.prober.ensure(key, container, desired.id, created.pid);
      // Status first: the exit watch and the event read and write files too, and Running is
      // what users and Services wait for. An exit before the watch is still reported (the
      // watch starts by looking at the container).
      await this.setStatus(key, container, old, {
        phase: 'Running',
        reason: undefined,
        message: undefined,
        containerID: desired.id,
        pid: created.pid,
        startedAt: created.startedAt,
        finishedAt: undefined,
        exitCode: undefined,
        ready: this.prober.ready(key),
        imageID: image.status?.digest,
      });
      this.watch(key, desired.id);
      event(
        ctx,
        'Container',
        container,
        'Normal',
        'Started',
        `started container ${desired.id} (pid ${created.pid})`,
      );
      return done();
    } catch (err) {
      const message = (err as Error).message;
      event(ctx, 'Container', container, 'Warning', 'Failed', message);
      await this.setStatus(key, container, old, {
        phase: 'Pending',
        reason: 'CreateContainerError',
        message,
        ready: false,
      });
      return retry(err as Error);
    }
  }

  private async removeContainer(id: string, gracePeriodSeconds: number): Promise<void> {
    const info = await this.observe(id);
    if (info && (info.status === 'running' || info.status === 'creating')) {
      await this.ctx.runtime.stop(id, { gracePeriodSeconds });
    }
    await this.ctx.runtime.remove(id, { force: true });
  }

  private async setStatus(
    key: string,
    container: Container,
    old: ContainerStatus,
    next: Omit<Partial<ContainerStatus>, 'conditions'> & { ready: boolean },
  ): Promise<void> {
    const { ready, ...fields } = next;
    // Fields set to undefined are cleared (a restarted container has no exitCode).
    const status = Object.fromEntries(
      Object.entries({
        ...old,
        ...fields,
        observedGeneration: container.metadata.generation ?? 0,
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
    await this.ctx.status.set('Container', key, status);
  }
}
