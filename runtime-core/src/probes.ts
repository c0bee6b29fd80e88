/**
 * One probe attempt against a running container, as the kubelet's prober makes it: `exec` runs
 * a command in the container (through the runtime) and succeeds on exit 0; `tcp` connects and
 * `http` GETs (status 200-399) from inside the container's network namespace with
 * conductor-probe, so they work before and without container networking. Every attempt is
 * bounded by its timeout and by the caller's signal; nothing is left running after it.
 */
import type { ChildProcess } from 'node:child_process';

import { buildOutput } from './paths.js';
import { runProcess, type ExitStatus } from './spawn.js';

export type ProbeAction =
  | { type: 'exec'; command: string[] }
  | { type: 'tcp'; port: number; host?: string }
  | { type: 'http'; port: number; path: string; host?: string };

export interface ProbeRequest {
  /** The container's id, for exec. */
  id: string;
  /** Its init's pid, whose network namespace tcp and http probes enter. */
  pid: number;
  /** The container shares the host's network namespace: tcp/http probes run where we are. */
  hostNetwork: boolean;
  action: ProbeAction;
  timeoutMs: number;
  signal?: AbortSignal;
}

export interface ProbeOutcome {
  ok: boolean;
  /** What happened, in one line (the Unhealthy event's text). */
  message: string;
}

/** Runs `argv` in a container: what the probe needs of the runtime. */
export type ExecInContainer = (id: string, argv: string[]) => ChildProcess;

export class ProbeRunner {
  private readonly probeBinary: string;

  constructor(
    private readonly exec: ExecInContainer,
    probeBinary?: string,
  ) {
    this.probeBinary = probeBinary ?? buildOutput('conductor-probe');
  }

  run(req: ProbeRequest): Promise<ProbeOutcome> {
    if (req.signal?.aborted) return Promise.resolve({ ok: false, message: 'probe cancelled' });
    return req.action.type === 'exec' ? this.runExec(req, req.action.command) : this.runNet(req);
  }

  private runExec(req: ProbeRequest, command: string[]): Promise<ProbeOutcome> {
    return new Promise((resolve) => {
      let child: ChildProcess;
      try {
        child = this.exec(req.id, command);
      } catch (err) {
        resolve({ ok: false, message: (err as Error).message });
        return;
      }
      let out = '';
      let timedOut = false;
      child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
      const kill = (): void => void child.kill('SIGKILL');
      const timer = setTimeout(() => {
        timedOut = true;
        kill();
      }, req.timeoutMs);
      req.signal?.addEventListener('abort', kill, { once: true });
      child.on('error', (err) => resolve({ ok: false, message: err.message }));
      child.on('close', (code) => {
        clearTimeout(timer);
        req.signal?.removeEventListener('abort', kill);
        const text = out.trim().slice(-200);
        if (code === 0) resolve({ ok: true, message: text });
        else if (timedOut)
          resolve({ ok: false, message: `timed out after ${req.timeoutMs / 1000}s` });
        else if (code === null) resolve({ ok: false, message: 'probe cancelled' });
        else resolve({ ok: false, message: `exit code ${code}${text ? `: ${text}` : ''}` });
      });
    });
  }

  private runNet(req: ProbeRequest): Promise<ProbeOutcome> {
    const a = req.action;
    const args =
      a.type === 'http'
        ? ['http', String(a.port), a.path, ...(a.host ? [a.host] : [])]
        : a.type === 'tcp'
          ? ['tcp', String(a.port), ...(a.host ? [a.host] : [])]
          : [];
    // Host-network containers share our namespace; the others are probed inside their own.
    const where = req.hostNetwork ? [] : ['--pid', String(req.pid)];
    return runProcess(
      this.probeBinary,
      [...where, '--timeout-ms', String(req.timeoutMs), ...args],
      {
        timeoutMs: req.timeoutMs + 1000,
        ...(req.signal ? { signal: req.signal } : {}),
        stderr: 'ignore',
      },
    ).then(
      (r) => {
        if (r.aborted) return { ok: false, message: 'probe cancelled' };
        if (r.timedOut) return { ok: false, message: `timed out after ${req.timeoutMs / 1000}s` };
        const text = r.stdout.trim();
        if (r.code === 0) return { ok: true, message: text };
        return { ok: false, message: text || `conductor-probe: ${exitText(r)}` };
      },
      (err: unknown) => ({ ok: false, message: (err as Error).message }),
    );
  }
}

function exitText(s: ExitStatus): string {
  return s.signal ? `killed by ${s.signal}` : `exit code ${String(s.code)}`;
}
