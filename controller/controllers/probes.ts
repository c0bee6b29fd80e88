/**
 * Readiness and liveness probes, as the kubelet runs them: after initialDelaySeconds, every
 * periodSeconds, each attempt bounded by timeoutSeconds; successThreshold successes in a row
 * make a container ready, failureThreshold failures in a row make it unready (readiness) or get
 * it killed so its restartPolicy applies (liveness). exec probes run through the runtime in the
 * container; tcpSocket and httpGet run conductor-probe inside the container's network
 * namespace, against 127.0.0.1 unless the probe names a host.
 */
import { execFile } from 'node:child_process';

import type { Container, Probe } from '../api/types.generated.js';
import { buildOutput } from '../../runtime-core/src/paths.js';
import type { ReconcileContext } from './context.js';
import { event } from './context.js';

export interface ProbeOutcome {
  ok: boolean;
  message: string;
}

type Kind = 'readiness' | 'liveness';

interface Worker {
  id: string;
  pid: number;
  timers: NodeJS.Timeout[];
  ready: boolean;
  streak: Record<Kind, { ok: number; fail: number }>;
}

function resolvePort(c: Container, port: number | string): number {
  if (typeof port === 'number') return port;
  const named = c.spec.ports?.find((p) => p.name === port);
  if (!named) throw new Error(`probe port "${port}" names no port in spec.ports`);
  return named.containerPort;
}

export class Prober {
  private readonly workers = new Map<string, Worker>();
  private readonly probeBinary = buildOutput('conductor-probe');

  constructor(
    private readonly ctx: ReconcileContext,
    /** Called when readiness changes or a liveness probe killed the container. */
    private readonly changed: (key: string) => void,
  ) {}

  /** Readiness as the probes see it; true without a readiness probe. */
  ready(key: string): boolean {
    return this.workers.get(key)?.ready ?? true;
  }

  /** Starts probing the container `id` (pid `pid`) for `key`, replacing older probes. */
  ensure(key: string, container: Container, id: string, pid: number): void {
    const existing = this.workers.get(key);
    if (existing && existing.id === id && existing.pid === pid) return;
    this.stop(key);
    const { readinessProbe, livenessProbe } = container.spec;
    if (!readinessProbe && !livenessProbe) return;
    const w: Worker = {
      id,
      pid,
      timers: [],
      ready: !readinessProbe,
      streak: { readiness: { ok: 0, fail: 0 }, liveness: { ok: 0, fail: 0 } },
    };
    this.workers.set(key, w);
    if (readinessProbe) this.schedule(key, w, container, 'readiness', readinessProbe);
    if (livenessProbe) this.schedule(key, w, container, 'liveness', livenessProbe);
  }

  stop(key: string): void {
    const w = this.workers.get(key);
    if (!w) return;
    for (const t of w.timers) clearTimeout(t);
    this.workers.delete(key);
  }

  stopAll(): void {
    for (const key of [...this.workers.keys()]) this.stop(key);
  }

  private schedule(key: string, w: Worker, c: Container, kind: Kind, probe: Probe): void {
    const tick = async (): Promise<void> => {
      if (this.workers.get(key) !== w) return;
      const outcome = await this.run(c, w, probe);
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
          event(
            this.ctx,
            'Container',
            c,
            'Warning',
            'Unhealthy',
            `Readiness probe failed: ${outcome.message}`,
          );
        if (before !== w.ready) this.changed(key);
      } else if (!outcome.ok) {
        event(
          this.ctx,
          'Container',
          c,
          'Warning',
          'Unhealthy',
          `Liveness probe failed: ${outcome.message}`,
        );
        if (s.fail >= probe.failureThreshold) {
          event(
            this.ctx,
            'Container',
            c,
            'Normal',
            'Killing',
            'Container failed liveness probe, will be restarted',
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
    const timeoutMs = probe.timeoutSeconds * 1000;
    if (probe.exec) {
      return new Promise((resolve) => {
        const child = this.ctx.runtime.exec(w.id, probe.exec?.command ?? [], {
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        let out = '';
        child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
        child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
        const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
        child.on('error', (err) => resolve({ ok: false, message: err.message }));
        child.on('close', (code) => {
          clearTimeout(timer);
          const text = out.trim().slice(-200);
          resolve(
            code === 0
              ? { ok: true, message: text }
              : {
                  ok: false,
                  message:
                    code === null
                      ? `timed out after ${probe.timeoutSeconds}s`
                      : `exit code ${code}${text ? `: ${text}` : ''}`,
                },
          );
        });
      });
    }
    let args: string[];
    try {
      if (probe.httpGet) {
        if (probe.httpGet.scheme === 'HTTPS')
          return Promise.resolve({ ok: false, message: 'HTTPS probes are not supported yet' });
        args = [
          'http',
          String(resolvePort(c, probe.httpGet.port)),
          probe.httpGet.path,
          ...(probe.httpGet.host ? [probe.httpGet.host] : []),
        ];
      } else if (probe.tcpSocket) {
        args = [
          'tcp',
          String(resolvePort(c, probe.tcpSocket.port)),
          ...(probe.tcpSocket.host ? [probe.tcpSocket.host] : []),
        ];
      } else {
        return Promise.resolve({ ok: false, message: 'probe has no action' });
      }
    } catch (err) {
      return Promise.resolve({ ok: false, message: (err as Error).message });
    }
    // Host-network containers share our namespace; the others are probed inside their own.
    const where = c.spec.network === 'host' ? [] : ['--pid', String(w.pid)];
    return new Promise((resolve) => {
      execFile(
        this.probeBinary,
        [...where, '--timeout-ms', String(timeoutMs), ...args],
        { timeout: timeoutMs + 1000 },
        (err, stdout) => resolve({ ok: !err, message: stdout.trim() || (err?.message ?? '') }),
      );
    });
  }
}
