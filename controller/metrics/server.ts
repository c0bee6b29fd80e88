/**
 * The metrics and health endpoint (controller-runtime's metrics server and healthz probes on
 * one listener): GET /metrics (Prometheus text format), /healthz (200 while every health check
 * passes, else 500 naming the failing ones and why, as the Kubernetes components' healthz does),
 * /readyz (503 until markReady(), called once the first full sync has been reconciled).
 * A bad request gets an error status; nothing a client sends can crash the controller.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

import type { ConductorMetrics } from './registry.js';

export const DEFAULT_METRICS_ADDR = '127.0.0.1:9090';

export interface HostPort {
  host: string;
  port: number;
}

/**
 * Parses --metrics-addr: `HOST:PORT`, `[IPV6]:PORT`, or `:PORT` (all interfaces, as in Go).
 * Port 0 asks for an ephemeral port.
 */
export function parseAddr(addr: string): HostPort {
  const match = /^(?:\[([^\]]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(addr);
  const port = Number(match?.[3]);
  if (!match || port > 65535) {
    throw new Error(
      `invalid address ${JSON.stringify(addr)}: want HOST:PORT, [IPV6]:PORT or :PORT`,
    );
  }
  const host = match[1] ?? match[2] ?? '';
  return { host: host === '' ? '0.0.0.0' : host, port };
}

export interface MetricsServerOptions {
  metrics: ConductorMetrics;
  /** Default 127.0.0.1:9090. */
  addr?: string;
  logger?: { error(msg: string, fields?: Record<string, unknown>): void };
}

/** A health check: undefined while healthy, else why not (one line). */
export type HealthCheck = () => string | undefined;

export class MetricsServer {
  private readonly metrics: ConductorMetrics;
  private readonly checks = new Map<string, HealthCheck>();
  private readonly addr: HostPort;
  private readonly logger: MetricsServerOptions['logger'];
  private server: Server | undefined;
  private ready = false;

  constructor(options: MetricsServerOptions) {
    this.metrics = options.metrics;
    this.addr = parseAddr(options.addr ?? DEFAULT_METRICS_ADDR);
    this.logger = options.logger;
  }

  /** Listens; resolves with the bound address (the real port when port 0 was asked for). */
  async start(): Promise<HostPort> {
    if (this.server) throw new Error('metrics server already started');
    const server = createServer((req, res) => void this.handle(req, res));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error): void => {
        this.server = undefined;
        reject(
          new Error(
            `metrics server: listen on ${this.addr.host}:${this.addr.port}: ${err.message}`,
            { cause: err },
          ),
        );
      };
      server.once('error', onError);
      server.listen(this.addr.port, this.addr.host, () => {
        server.off('error', onError);
        resolve();
      });
    });
    // After listening, an error on the server (not a request) is logged, never thrown.
    server.on('error', (err) => this.logger?.error('metrics server error', { error: err.message }));
    return this.address();
  }

  address(): HostPort {
    const info = this.server?.address() as AddressInfo | null | undefined;
    if (!info) throw new Error('metrics server is not listening');
    return { host: info.address, port: info.port };
  }

  /** /healthz runs `check` from now on, reported under `name`. */
  addHealthCheck(name: string, check: HealthCheck): void {
    this.checks.set(name, check);
  }

  /**
   * /healthz's answer: 200 "ok" when every check passes; else 500 with a line per check —
   * `[+]name ok` or `[-]name failed: why` — and `healthz check failed`. `?verbose` lists the
   * checks when they pass too.
   */
  private health(verbose: boolean): { status: number; body: string } {
    const lines: string[] = [];
    let failed = false;
    for (const [name, check] of this.checks) {
      let why: string | undefined;
      try {
        why = check();
      } catch (err) {
        why = `the check threw: ${String(err)}`;
      }
      if (why !== undefined) failed = true;
      lines.push(why === undefined ? `[+]${name} ok` : `[-]${name} failed: ${why}`);
    }
    if (failed) return { status: 500, body: `${lines.join('\n')}\nhealthz check failed\n` };
    return { status: 200, body: verbose ? `${lines.join('\n')}\nhealthz check passed\n` : 'ok\n' };
  }

  /** /readyz answers 200 from now on. */
  markReady(): void {
    this.ready = true;
  }

  markNotReady(): void {
    this.ready = false;
  }

  /** Stops listening and closes open connections, keep-alive ones included. Idempotent. */
  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      let url: URL;
      try {
        url = new URL(req.url ?? '/', 'http://localhost');
      } catch {
        return reply(res, 400, 'bad request\n');
      }
      const path = url.pathname;
      const known = path === '/metrics' || path === '/healthz' || path === '/readyz';
      if (!known) return reply(res, 404, 'not found\n');
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.setHeader('Allow', 'GET, HEAD');
        return reply(res, 405, 'method not allowed\n');
      }
      if (path === '/healthz') {
        const { status, body } = this.health(url.searchParams.has('verbose'));
        return reply(res, status, body);
      }
      if (path === '/readyz') {
        return this.ready
          ? reply(res, 200, 'ok\n')
          : reply(res, 503, 'not ready: the first full sync has not finished\n');
      }
      const body = await this.metrics.scrape();
      return reply(res, 200, body, this.metrics.contentType);
    } catch (err) {
      this.logger?.error('metrics server: request failed', { url: req.url, error: String(err) });
      if (!res.headersSent) reply(res, 500, 'internal error\n');
      else res.destroy();
    }
  }
}

function reply(
  res: ServerResponse,
  status: number,
  body: string,
  contentType = 'text/plain; charset=utf-8',
): void {
  res.writeHead(status, {
    'Content-Type': contentType,
    'Content-Length': Buffer.byteLength(body),
    'X-Content-Type-Options': 'nosniff',
  });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}
