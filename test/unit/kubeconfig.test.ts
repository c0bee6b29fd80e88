/**
 * SharedConnectionsKubeConfig (controller/source/kubeconfig.ts): every request made with it
 * gets the same undici dispatcher — so the same keep-alive TLS connections — while its TLS
 * configuration is the same, and a new one when it changes. (client-node 2.0.1 alone makes a
 * new dispatcher, and so a new TLS connection, for every request.)
 */
import { describe, expect, it } from '@jest/globals';
import { HttpMethod, KubeConfig, RequestContext } from '@kubernetes/client-node';

import { SharedConnectionsKubeConfig } from '../../controller/source/kubeconfig.js';

const b64 = (s: string): string => Buffer.from(s).toString('base64');

/** A kubeconfig with inline CA and client certificate (never used to connect here). */
function kubeconfig(cert: string): string {
  return [
    'apiVersion: v1',
    'kind: Config',
    'clusters:',
    `  - name: c`,
    `    cluster: { server: "https://127.0.0.1:6443", certificate-authority-data: "${b64('ca')}" }`,
    'users:',
    `  - name: u`,
    `    user: { client-certificate-data: "${b64(cert)}", client-key-data: "${b64('key')}" }`,
    'contexts:',
    '  - name: x',
    '    context: { cluster: c, user: u }',
    'current-context: x',
    '',
  ].join('\n');
}

async function dispatcherOf(kc: KubeConfig): Promise<unknown> {
  const ctx = new RequestContext('https://127.0.0.1:6443/api', HttpMethod.GET);
  await kc.applySecurityAuthentication(ctx);
  return ctx.getDispatcher();
}

describe('SharedConnectionsKubeConfig', () => {
  it('gives every request the same dispatcher while the TLS configuration is the same', async () => {
    const kc = new SharedConnectionsKubeConfig();
    kc.loadFromString(kubeconfig('cert-1'));
    const first = await dispatcherOf(kc);
    expect(first).toBeDefined();
    expect(await dispatcherOf(kc)).toBe(first);
    expect(await dispatcherOf(kc)).toBe(first);
    await kc.closeConnections();
  });

  it('makes a new one for a new client certificate', async () => {
    const kc = new SharedConnectionsKubeConfig();
    kc.loadFromString(kubeconfig('cert-1'));
    const first = await dispatcherOf(kc);
    kc.loadFromString(kubeconfig('cert-2'));
    const second = await dispatcherOf(kc);
    expect(second).not.toBe(first);
    expect(await dispatcherOf(kc)).toBe(second);
    await kc.closeConnections();
  });

  it('is what client-node 2.0.1 does not do by itself', async () => {
    // If this starts failing, client-node shares connections itself and the subclass can go.
    const kc = new KubeConfig();
    kc.loadFromString(kubeconfig('cert-1'));
    expect(await dispatcherOf(kc)).not.toBe(await dispatcherOf(kc));
  });
});
