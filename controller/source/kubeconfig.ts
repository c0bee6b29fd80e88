/**
 * A KubeConfig whose API calls share connections.
 *
 * @kubernetes/client-node 2.0.1 gives every request (each API call and each watch) a new undici
 * Agent (KubeConfig.applySecurityAuthentication → createDispatcher), so every request opens a
 * new TLS connection — a new SecureContext that parses the client key again, a handshake on
 * both ends — and leaves it idle until undici's keep-alive timeout closes it. Measured with 100
 * Containers brought up: about four requests each, and most of the agent's CPU beyond what the
 * watch directory costs went to TLS set-up (bench/kubernetes-start.ts). client-go keeps one
 * transport per configuration; this does the same: one dispatcher per TLS configuration (the
 * cluster, its CA and the user's client certificate), reused by every request made with this
 * KubeConfig. The Authorization header (a token re-read as kubelet rotates it) is still set per
 * request by client-node; a new certificate, key or CA makes a new dispatcher.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';

import { KubeConfig } from '@kubernetes/client-node';

type RequestContext = Parameters<KubeConfig['applySecurityAuthentication']>[0];
type Dispatcher = NonNullable<ReturnType<RequestContext['getDispatcher']>>;

/** A file's content, or undefined when there is none (client-node reports that itself). */
function contentOf(file: string | undefined): string | undefined {
  if (!file) return undefined;
  try {
    return readFileSync(file, 'latin1');
  } catch {
    return undefined;
  }
}

export class SharedConnectionsKubeConfig extends KubeConfig {
  private readonly dispatchers = new Map<string, Dispatcher>();

  override async applySecurityAuthentication(context: RequestContext): Promise<void> {
    await super.applySecurityAuthentication(context);
    const created = context.getDispatcher();
    if (created === undefined) return;
    const key = this.tlsKey();
    const shared = this.dispatchers.get(key);
    if (shared) {
      // Never used: it has no connection to close.
      context.setDispatcher(shared);
      return;
    }
    // One configuration at a time: an older one's connections close once idle.
    for (const old of this.dispatchers.values()) void old.close().catch(() => undefined);
    this.dispatchers.clear();
    this.dispatchers.set(key, created);
  }

  /** Closes the shared connections (the client is stopping). */
  async closeConnections(): Promise<void> {
    const all = [...this.dispatchers.values()];
    this.dispatchers.clear();
    await Promise.allSettled(all.map((d) => d.close()));
  }

  /** What the TLS connection is made of: a new value needs new connections. */
  private tlsKey(): string {
    const cluster = this.getCurrentCluster();
    const user = this.getCurrentUser();
    return createHash('sha256')
      .update(
        JSON.stringify([
          cluster?.server,
          cluster?.skipTLSVerify,
          cluster?.tlsServerName,
          cluster?.proxyUrl,
          cluster?.caData ?? contentOf(cluster?.caFile),
          user?.certData ?? contentOf(user?.certFile),
          user?.keyData ?? contentOf(user?.keyFile),
        ]),
      )
      .digest('hex');
  }
}
