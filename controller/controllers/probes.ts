/**
 * Readiness and liveness probes, as the kubelet runs them: after initialDelaySeconds, every
 * periodSeconds, each attempt bounded by timeoutSeconds; successThreshold successes in a row
 * make a container ready, failureThreshold failures in a row make it unready (readiness) or get
 * it killed so its restartPolicy applies (liveness). Each attempt is the runtime core's
 * (RuntimeCore.probe): exec in the container; tcpSocket and httpGet, as the kubelet's, from the
 * node to the container's IP (bridge network), or from inside its network namespace against
 * 127.0.0.1 when it has no address of its own (network none), unless the probe names a host. Stopping a container's probes
 * cancels an attempt in flight.
 */
import type { Container, Probe } from '../api/types.generated.js';
import type { ProbeAction, ProbeOutcome } from '../../runtime-core/src/index.js';
import type { ReconcileContext } from './context.js';

type Kind = 'readiness' | 'liveness';

interface Worker {
  id: string;
  pid: number;
  /** The container's address (bridge network): tcp and http probes target it from the node. */
  ip: string | undefined;
  timers: NodeJS.Timeout[];
  /** Aborted when the probes stop: cancels an attempt in flight. */
  cancel: AbortController;
  /** Attempts in flight: stopAll() waits for them, so nothing they hold outlives it. */
  inflight: Set<Promise<unknown>>;
  ready: boolean;
  streak: Record<Kind, { ok: number; fail: number }>;
  /** Settles when the first readiness attempt has been counted (or the probes stopped). */
  firstReadiness?: { done: Promise<void>; settle: () => void };
}

function resolvePort(c: Container, port: number | string): number {
  if (typeof port === 'number') return port;
  const named = c.spec.ports?.find((p) => p.name === port);
  if (!named) throw new Error(`probe port "${port}" names no port in spec.ports`);
  return named.containerPort;
}

export class Prober {
  private readonly workers = new Map<string, Worker>();
  constructor(
    private readonly ctx: ReconcileContext,
    /** Called when readiness changes or a liveness probe killed the container. */
    private readonly changed: (key: string) => void,
  ) {}

  /** Readiness as the probes see it; true without a readiness probe. */
  ready(key: string): boolean {
    return this.workers.get(key)?.ready ?? true;
  }

  /**
   * Starts probing the container `id` (pid `pid`, address `ip`) for `key`, replacing older
   * probes. Readiness starts false until the probe passes, unless `wasReady`: the same container
   * (one a previous controller process started and saw ready) keeps its readiness until its
   * first probe says otherwise, so a controller restart does not take it out of its Services.
   */
  ensure(
    key: string,
    container: Container,
    id: string,
    pid: number,
    ip?: string,
    wasReady = false,
  ): void {
    const existing = this.workers.get(key);
    if (existing && existing.id === id && existing.pid === pid && existing.ip === ip) return;
    this.stop(key);
    const { readinessProbe, livenessProbe } = container.spec;
    if (!readinessProbe && !livenessProbe) return;
    const w: Worker = {
      id,
      pid,
      ip,
      timers: [],
      cancel: new AbortController(),
      inflight: new Set(),
      ready: !readinessProbe || wasReady,
      streak: { readiness: { ok: 0, fail: 0 }, liveness: { ok: 0, fail: 0 } },
    };
    if (readinessProbe && readinessProbe.initialDelaySeconds === 0) {
      let settle!: () => void;
      const done = new Promise<void>((resolve) => (settle = resolve));
      w.firstReadiness = { done, settle };
    }
    this.workers.set(key, w);
    if (readinessProbe) this.schedule(key, w, container, 'readiness', readinessProbe);
    if (livenessProbe) this.schedule(key, w, container, 'liveness', livenessProbe);
  }

  /**
   * Waits, at most `maxMs`, for the first readiness attempt of a container whose probe starts at
   * once (initialDelaySeconds 0), so that a container ready at once is reported Running and
   * Ready in one status write instead of two. Returns at once when there is no such attempt.
   */
  async firstReadiness(key: string, maxMs: number): Promise<void> {
    const first = this.workers.get(key)?.firstReadiness;
    if (!first) return;
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([first.done, new Promise((r) => (timer = setTimeout(r, maxMs)))]);
    } finally {
      clearTimeout(timer);
    }
  }

  stop(key: string): void {
    const w = this.workers.get(key);
    if (!w) return;
    w.firstReadiness?.settle();
    for (const t of w.timers) clearTimeout(t);
    w.cancel.abort();
    this.workers.delete(key);
  }

  /**
   * Stops every container's probes and resolves once the attempts in flight have ended (they
   * are cancelled: their processes killed, their timers cleared).
   */
  async stopAll(): Promise<void> {
    const inflight = [...this.workers.values()].flatMap((w) => [...w.inflight]);
    for (const key of [...this.workers.keys()]) this.stop(key);
    await Promise.allSettled(inflight);
  }

  private schedule(key: string, w: Worker, c: Container, kind: Kind, probe: Probe): void {
    const tick = async (): Promise<void> => {
      if (this.workers.get(key) !== w) return;
      const attempt = this.run(c, w, probe);
      w.inflight.add(attempt);
      const outcome = await attempt.finally(() => w.inflight.delete(attempt));
      if (this.workers.get(key) !== w) return;
      const s = w.streak[kind];
      if (outcome.ok) {
        s.ok += 1;
        s.fail = 0;
      } else {
        s.fail += 1;
        s.ok = 0;
      }
      if (kind === 'readiness') {
        const before = w.ready;
        if (outcome.ok && s.ok >= probe.successThreshold) w.ready = true;
        if (!outcome.ok && s.fail >= probe.failureThreshold) w.ready = false;
        if (!outcome.ok)
          this.ctx.client.recordEvent(
            'Container',
            c,
            'Warning',
            'Unhealthy',
            `Readiness probe failed: ${outcome.message}`,
          );
        w.firstReadiness?.settle();
        w.firstReadiness = undefined;
        if (before !== w.ready) this.changed(key);
      } else if (!outcome.ok) {
        this.ctx.client.recordEvent(
          'Container',
          c,
          'Warning',
          'Unhealthy',
          `Liveness probe failed: ${outcome.message}`,
        );
        if (s.fail >= probe.failureThreshold) {
          this.ctx.client.recordEvent(
            'Container',
            c,
            'Normal',
            'Killing',
            `Container ${c.metadata.name} failed liveness probe, will be restarted`,
          );
          this.stop(key);
          await this.ctx.runtime
            .stop(w.id, { gracePeriodSeconds: c.spec.terminationGracePeriodSeconds })
            .catch(() => undefined);
          this.changed(key);
          return;
        }
      }
      w.timers.push(setTimeout(() => void tick(), probe.periodSeconds * 1000));
    };
    w.timers.push(setTimeout(() => void tick(), probe.initialDelaySeconds * 1000));
  }

  private run(c: Container, w: Worker, probe: Probe): Promise<ProbeOutcome> {
    let action: ProbeAction;
    try {
      if (probe.exec) {
        action = { type: 'exec', command: probe.exec.command };
      } else if (probe.httpGet) {
        if (probe.httpGet.scheme === 'HTTPS')
          return Promise.resolve({ ok: false, message: 'HTTPS probes are not supported yet' });
        action = {
          type: 'http',
          port: resolvePort(c, probe.httpGet.port),
          path: probe.httpGet.path,
          ...(probe.httpGet.host ? { host: probe.httpGet.host } : {}),
        };
      } else if (probe.tcpSocket) {
        action = {
          type: 'tcp',
          port: resolvePort(c, probe.tcpSocket.port),
          ...(probe.tcpSocket.host ? { host: probe.tcpSocket.host } : {}),
        };
      } else {
        return Promise.resolve({ ok: false, message: 'probe has no action' });
      }
    } catch (err) {
      return Promise.resolve({ ok: false, message: (err as Error).message });
    }
    if (w.ip && action.type !== 'exec' && action.host === undefined)
      action = { ...action, host: w.ip };
    return this.ctx.runtime.probe({
      id: w.id,
      pid: w.pid,
      // From the node to the container's IP, as the kubelet's prober; else in its namespace.
      hostNetwork: c.spec.network === 'host' || (w.ip !== undefined && action.type !== 'exec'),
      action,
      timeoutMs: probe.timeoutSeconds * 1000,
      signal: w.cancel.signal,
    });
  }
}
