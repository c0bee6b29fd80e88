/**
 * The Image reconciler: builds or pulls the image with the runtime core's ImageBuilder and
 * records the result in status (phase Pending → Pulling/Building → Ready | Failed, digest,
 * layers, the configuration containers inherit). The builder's layer cache makes reconciling an
 * unchanged image cheap; a Ready image whose generation was built and whose layers are all on
 * disk is not touched at all.
 *
 * A failed build is terminal until the spec or a file it copies changes (it is recorded with
 * the failing step and the tail of its output). `from: image:NAME` waits for NAME to be Ready:
 * the other Image's status change re-enqueues this one.
 *
 * The files an Image copies (and the archive it imports) are inputs like its spec: they are
 * watched (image-inputs.ts), and a change reconciles the Image again, which rebuilds from the
 * first step whose input changed. A controller that starts checks each Image's local inputs once
 * (a fully cached build), so files edited while it was down are seen too; not for an Image from
 * a registry's `latest` tag, which that check would pull again.
 */

import type { ImageStatus } from '../api/types.generated.js';
import { done, terminal, type Reconciler, type Result } from '../reconcile/result.js';
import {
  isStaleWrite,
  setCondition,
  splitObjectKey,
  StatusWriter,
  type ReconcileContext,
} from './context.js';
import { InputWatcher, localInputs, settled } from './image-inputs.js';
import {
  alwaysPulled,
  BuildError,
  BuildInterruptedError,
  DependencyNotReadyError,
  parseSource,
  type BuildProgress,
  type BuiltImage,
  type RuntimeCoreApi,
} from '../../runtime-core/src/index.js';

/** The built image an Image's status describes, for `from: image:NAME` and containers. */
export function builtFromStatus(status: ImageStatus | undefined): BuiltImage | undefined {
  if (status?.phase !== 'Ready' || !status.digest) return undefined;
  return {
    digest: status.digest,
    layers: (status.layers ?? []).map((l) => ({
      key: l.digest.replace(/^sha256:/, ''),
      size: l.size ?? 0,
      createdBy: l.createdBy ?? '',
    })),
    config: status.config ?? {},
    stepsRun: status.stepsRun ?? 0,
    stepsCached: status.stepsCached ?? 0,
  };
}

/**
 * The Ready status of a build (builtFromStatus's inverse), without observedGeneration and
 * conditions: what the controller writes, and `conductor build` records the same way.
 */
export async function builtStatus(
  runtime: Pick<RuntimeCoreApi, 'resolveImageUser'>,
  built: BuiltImage,
  seconds: number,
): Promise<ImageStatus> {
  const user = built.config.user
    ? await runtime.resolveImageUser(built, built.config.user)
    : undefined;
  return {
    phase: 'Ready',
    digest: built.digest,
    layers: built.layers.map((l) => ({
      digest: `sha256:${l.key}`,
      size: l.size,
      createdBy: l.createdBy,
    })),
    size: built.layers.reduce((n, l) => n + l.size, 0),
    config: built.config,
    ...(user ? { user } : {}),
    ...(built.baseDigest ? { baseDigest: built.baseDigest } : {}),
    stepsRun: built.stepsRun,
    stepsCached: built.stepsCached,
    buildDurationSeconds: seconds,
  };
}

/** Whether every build of `from` asks a registry (a `latest` tag). */
function pulls(from: string): boolean {
  try {
    return alwaysPulled(parseSource(from));
  } catch {
    return false;
  }
}

export class ImageReconciler implements Reconciler {
  /** Images whose local inputs were read by a build since the start, unchanged since. */
  private readonly checked = new Set<string>();
  private readonly inputs: InputWatcher;

  /** `enqueue`: reconcile an Image again (its inputs changed). */
  constructor(
    private readonly ctx: ReconcileContext,
    enqueue: (key: string) => void,
    /** Told while a build of `key` progresses (output, layers, steps): it is not stuck. */
    private readonly progress?: (key: string) => void,
  ) {
    this.inputs = new InputWatcher(
      (key) => {
        ctx.logger.info('image inputs changed', { image: key });
        this.checked.delete(key);
        enqueue(key);
      },
      (key, err) =>
        ctx.logger.warn('watching image inputs failed', { image: key, err: err.message }),
    );
  }

  /** Stops watching inputs (the controller is stopping). */
  close(): Promise<void> {
    return this.inputs.close();
  }

  async reconcile(key: string): Promise<Result> {
    const ctx = this.ctx;
    const image = ctx.client.get('Image', key);
    if (!image) {
      // Layers stay for reuse (`conductor images prune` removes them); the object and status go.
      const { namespace, name } = splitObjectKey(key);
      this.checked.delete(key);
      ctx.images.forget(key);
      await this.inputs.delete(key);
      await ctx.client.finalize('Image', namespace, name);
      return done();
    }
    const writer = new StatusWriter(ctx.client, 'Image', image);
    const generation = image.metadata.generation ?? 0;
    const old = image.status;
    // Watched before the build reads them: a change from now on reconciles it again.
    const contextDir = ctx.client.contextDirOf('Image', key);
    const inputs = contextDir ? localInputs(image.spec, contextDir) : [];
    if (contextDir) await this.inputs.set(key, inputs, contextDir);
    // Its files are being written (a burst not yet quiet): the watcher reconciles it again once
    // they are, and a build now would read them half-written.
    if (this.inputs.busy(key)) return done();
    const inputsVersion = this.inputs.version(key);
    // Inputs not read since the start are checked by a (cached) build, unless that would ask a
    // registry again (`latest`): a restart must not turn a Ready image Failed for a registry away.
    const inputsKnown = inputs.length === 0 || this.checked.has(key) || pulls(image.spec.from);
    const readyNow = old?.phase === 'Ready' && old.observedGeneration === generation;
    const layersHere = readyNow && (await ctx.runtime.hasLayers(old.layers ?? []));
    if (readyNow && inputsKnown && layersHere) {
      ctx.images.record(key, old);
      return done();
    }
    // Ready for this generation with layers that are not here: another node's build (several
    // agents on one API server). This node builds its own for its containers and leaves the
    // status as it is (node-images.ts): nothing written over another node's Ready.
    const elsewhere = readyNow && !layersHere;
    this.checked.add(key);
    const started = Date.now();
    let phase: ImageStatus['phase'] = 'Pending';
    const setPhase = async (p: 'Pulling' | 'Building'): Promise<void> => {
      if (phase === p) return;
      phase = p;
      await writer.write({
        ...(old ?? {}),
        phase: p,
        observedGeneration: generation,
        conditions: setCondition(
          old?.conditions,
          {
            type: 'Ready',
            status: 'False',
            reason: p,
            message: `${p.toLowerCase()} ${image.spec.from}`,
            observedGeneration: generation,
          },
          ctx.now(),
        ),
      });
    };
    // Phase writes one after another (each with the object the last one returned: two at once
    // would conflict with each other), handled at once so a failure waits for the await below
    // instead of being an unhandled rejection.
    let writes: Promise<void> = Promise.resolve();
    const queuePhase = (p: 'Pulling' | 'Building'): void => {
      writes = writes.then(() => setPhase(p));
      writes.catch(() => undefined);
    };
    // A Ready image built again for its inputs (a start's check, a file event) stays Ready in
    // status while the build finds everything cached: its phase is written only once a step
    // runs, a layer is unpacked or skopeo speaks.
    const recheck = old?.phase === 'Ready' && old.observedGeneration === generation;
    let deferred: 'Pulling' | 'Building' | undefined;
    // The kubelet's image events: Pulling once the base is really being fetched (skopeo or
    // debootstrap speaks, a layer is unpacked), then Pulled when it is in (the next phase, or
    // the end). A base found whole in the caches is "already present" — said for a new build,
    // not for a restart's check of a Ready image, which is no transition. A real fetch is also
    // timed (conductor_image_pull_duration_seconds).
    let pull: { started: number; fetching: boolean } | undefined;
    let pulled = false;
    const pullEnded = (): void => {
      if (!pull) return;
      const { started, fetching } = pull;
      pull = undefined;
      if (fetching) {
        pulled = true;
        ctx.metrics?.images.pulled((Date.now() - started) / 1000);
      }
      if (!fetching && recheck) return;
      ctx.client.recordEvent(
        'Image',
        image,
        'Normal',
        'Pulled',
        fetching
          ? `Successfully pulled image "${image.spec.from}" in ${((Date.now() - started) / 1000).toFixed(3)}s`
          : `Container image "${image.spec.from}" already present on machine`,
      );
    };
    const onProgress = (e: BuildProgress): void => {
      if (e.type === 'phase' && e.phase === 'Pulling')
        pull = { started: Date.now(), fetching: false };
      else if (e.type === 'phase') pullEnded();
      else if (
        pull &&
        !pull.fetching &&
        ((e.type === 'output' && e.step === undefined) ||
          (e.type === 'layer' && e.state === 'unpacking'))
      ) {
        pull.fetching = true;
        ctx.client.recordEvent(
          'Image',
          image,
          'Normal',
          'Pulling',
          `Pulling image "${image.spec.from}"`,
        );
      }
      if (e.type === 'phase') {
        if (elsewhere) return;
        if (recheck) deferred = e.phase;
        else queuePhase(e.phase);
      } else if (
        deferred &&
        ((e.type === 'step' && !e.cached) ||
          (e.type === 'layer' && e.state === 'unpacking') ||
          e.type === 'output')
      ) {
        queuePhase(deferred);
      }
      // Output, layers and steps: the build is alive, however long it takes (/healthz).
      this.progress?.(key);
      if (e.type === 'step')
        ctx.logger.debug('image step', {
          image: key,
          step: e.index,
          description: e.description,
          cached: e.cached,
        });
      else if (e.type === 'layer') ctx.logger.debug('image layer', { image: key, ...e });
      else if (e.type === 'output')
        ctx.logger.debug('image build output', { image: key, line: e.line });
    };
    try {
      const built = await ctx.runtime.buildImage({
        name: key,
        from: image.spec.from,
        ...(image.spec.steps ? { steps: image.spec.steps } : {}),
        ...(image.spec.config ? { config: image.spec.config } : {}),
        ...(image.spec.registry ? { registry: image.spec.registry } : {}),
        ...(contextDir ? { contextDir } : {}),
        resolveImage: (name) => {
          const baseKey = `${image.metadata.namespace}/${name}`;
          const base = ctx.client.get('Image', baseKey);
          return base && builtFromStatus(ctx.images.own(baseKey, base) ?? base.status);
        },
        onProgress,
      });
      pullEnded();
      await writes;
      ctx.metrics?.images.layerCache(built.stepsCached, built.stepsRun);
      if (built.stepsRun > 0 || pulled) ctx.metrics?.images.built((Date.now() - started) / 1000);
      // The files changed while the build read them: what it made may be from half-written
      // inputs. Not published; the watcher reconciles the Image again once they are quiet.
      await settled();
      if (this.inputs.version(key) !== inputsVersion) {
        ctx.logger.info('image inputs changed during the build; building again once quiet', {
          image: key,
        });
        return done();
      }
      // Checked and unchanged: the status keeps describing the build that made this digest.
      if (recheck && built.stepsRun === 0 && built.digest === old.digest && phase === 'Pending') {
        ctx.images.record(key, old);
        return done();
      }
      const status: ImageStatus = {
        ...(await builtStatus(ctx.runtime, built, (Date.now() - started) / 1000)),
        observedGeneration: generation,
        conditions: setCondition(
          old?.conditions,
          {
            type: 'Ready',
            status: 'True',
            reason: 'Built',
            message: `${built.layers.length} layer(s); ${built.stepsRun} step(s) run, ${built.stepsCached} cached`,
            observedGeneration: generation,
          },
          ctx.now(),
        ),
      };
      ctx.images.record(key, status);
      if (elsewhere) {
        ctx.logger.info('image built on this node; its status stays the one another node wrote', {
          image: key,
          digest: status.digest,
          status: old.digest,
        });
        if (status.digest !== old.digest)
          ctx.client.recordEvent(
            'Image',
            image,
            'Normal',
            'Built',
            `image ${image.metadata.name} built on this node: ${status.digest}`,
          );
        return done();
      }
      await writer.write(status);
      if (old?.digest !== status.digest)
        ctx.client.recordEvent(
          'Image',
          image,
          'Normal',
          'Built',
          `image ${image.metadata.name} built: ${status.digest}`,
        );
      return done();
    } catch (err) {
      await writes.catch(() => undefined);
      // A status write that lost to a change of the object (or its deletion) says nothing about
      // the build: reconciled again from fresh state.
      if (isStaleWrite(err)) throw err;
      // The controller is stopping: the next one builds it again (it is not Ready).
      if (err instanceof BuildInterruptedError) return done();
      // Failed on inputs that changed meanwhile (a file half-written, a directory half-copied):
      // not a verdict on them; the watcher reconciles the Image again once they are quiet.
      await settled();
      if (this.inputs.version(key) !== inputsVersion) return done();
      if (err instanceof DependencyNotReadyError) {
        // Another node's Ready stays; this node's containers wait for its own build.
        if (elsewhere) return done();
        await writer.write({
          ...(old ?? {}),
          phase: 'Pending',
          observedGeneration: generation,
          message: err.message,
          conditions: setCondition(
            old?.conditions,
            {
              type: 'Ready',
              status: 'False',
              reason: 'BaseImageNotReady',
              message: err.message,
              observedGeneration: generation,
            },
            ctx.now(),
          ),
        });
        return done(); // the base image's status change re-enqueues this one
      }
      const e = err instanceof BuildError ? err : new BuildError((err as Error).message);
      const status: ImageStatus = {
        phase: 'Failed',
        observedGeneration: generation,
        message: e.message,
        ...(e.step !== undefined ? { failedStep: e.step } : {}),
        buildDurationSeconds: (Date.now() - started) / 1000,
        conditions: setCondition(
          old?.conditions,
          {
            type: 'Ready',
            status: 'False',
            reason: 'BuildFailed',
            message: e.message,
            observedGeneration: generation,
          },
          ctx.now(),
        ),
      };
      ctx.images.record(key, status);
      ctx.client.recordEvent('Image', image, 'Warning', 'BuildFailed', e.message);
      // Ready on another node: its status stays, this node's containers say why they wait.
      if (!elsewhere) await writer.write(status);
      // The spec (or the files it copies) must change first: a file change re-enqueues it.
      return terminal(e);
    }
  }
}
