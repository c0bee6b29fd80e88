/**
 * Registry pulls over TLS and with credentials (an Image's spec.registry: tlsVerify, certDir,
 * authFile) through the real ImageBuilder: docker-registry serving HTTPS with a certificate from
 * a throwaway CA, and one that requires an htpasswd account, skopeo, the native unpacker and a
 * container on the pulled layers.
 *
 * Every pull uses a tag of its own: a pulled tag other than latest is reused without asking the
 * registry again (the kubelet's IfNotPresent), which would hide a failing TLS or auth check.
 */
import { mkdtempSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

import { beforeAll, describe, expect, it } from '@jest/globals';

import {
  BuildError,
  type BuildRequest,
  type BuiltImage,
} from '../../runtime-core/src/images/builder.js';
import {
  CA_CERT_FILE,
  busyboxImage,
  fetchManifest,
  pushImage,
  registryGet,
  startRegistry,
  uniqueId,
  type Registry,
} from '../fixtures/index.js';
import { builderSuite } from '../fixtures/build.js';

const PREFIX = 'imgauth';
const ACCOUNT = { user: 'conductor', password: `pw-${uniqueId('x')}` };

/** HTTPS, no auth. */
let tlsRegistry: Registry;
/** HTTPS and ACCOUNT required: credentials only ever travel over TLS. */
let authRegistry: Registry;
const suite = builderSuite(PREFIX, {
  teardown: async () => {
    await tlsRegistry?.stop();
    await authRegistry?.stop();
  },
});

beforeAll(async () => {
  tlsRegistry = await startRegistry({ prefix: PREFIX, tls: true });
  authRegistry = await startRegistry({ prefix: PREFIX, tls: true, auth: ACCOUNT });
}, 60_000);

function build(req: Partial<BuildRequest> & { from: string }): Promise<BuiltImage> {
  return suite.build(req);
}

/** Pushes busybox as `test/busybox:TAG` (a fresh tag) and returns the reference and digest. */
async function pushBusybox(registry: Registry): Promise<{ from: string; digest: string }> {
  const tag = uniqueId('t');
  const digest = await pushImage(await busyboxImage(), registry, `test/busybox:${tag}`);
  return { from: `${registry.host}/test/busybox:${tag}`, digest };
}

/** The error a build rejects with; fails the test if it resolves. */
async function buildError(req: Partial<BuildRequest> & { from: string }): Promise<BuildError> {
  const err = await build(req).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(BuildError);
  return err as BuildError;
}

async function expectBusybox(image: BuiltImage): Promise<void> {
  const { out, code } = await suite.runIn(image, 'ls /bin/busybox');
  expect({ out, code }).toEqual({ out: '/bin/busybox', code: 0 });
}

function caDir(registry: Registry): string {
  if (!registry.caDir) throw new Error(`registry ${registry.host} has no caDir`);
  return registry.caDir;
}

function newDir(name: string): string {
  return mkdtempSync(join(suite.work, `${name}-`));
}

describe('the registry fixture', () => {
  it('serves HTTPS for 127.0.0.1 with a certificate only its CA verifies', async () => {
    expect(tlsRegistry.url).toBe(`https://${tlsRegistry.host}`);
    expect(readdirSync(caDir(tlsRegistry))).toEqual([CA_CERT_FILE]);
    const { from, digest } = await pushBusybox(tlsRegistry);
    const tag = from.slice(from.lastIndexOf(':') + 1);
    expect((await fetchManifest(tlsRegistry, 'test/busybox', tag)).digest).toBe(digest);
    // Without the CA (the system's roots only) the certificate is refused.
    await expect(fetch(`${tlsRegistry.url}/v2/`)).rejects.toThrow();
  });

  it('requires the account, and writes an auth file for it', async () => {
    const anonymous = { url: authRegistry.url, caDir: caDir(authRegistry) };
    const wrong = { ...anonymous, auth: { user: ACCOUNT.user, password: 'wrong' } };
    expect((await registryGet(anonymous, '/v2/')).status).toBe(401);
    expect((await registryGet(wrong, '/v2/')).status).toBe(401);
    expect((await registryGet(authRegistry, '/v2/')).status).toBe(200);

    const dir = newDir('authfile');
    const path = await authRegistry.authFile(dir);
    expect(JSON.parse(readFileSync(path, 'utf8'))).toEqual({
      auths: {
        [authRegistry.host]: {
          auth: Buffer.from(`${ACCOUNT.user}:${ACCOUNT.password}`).toString('base64'),
        },
      },
    });
    expect(statSync(path).mode & 0o777).toBe(0o600);
    await expect(authRegistry.authFile(dir)).rejects.toThrow(/EEXIST/);
    await expect(tlsRegistry.authFile(newDir('noauth'))).rejects.toThrow(/no auth/);
  });
});

describe('a TLS registry with its own CA', () => {
  it('pulls with registry.certDir; a container on the image sees /bin/busybox', async () => {
    const { from, digest } = await pushBusybox(tlsRegistry);
    const image = await build({ from, registry: { certDir: caDir(tlsRegistry) } });
    expect(image.baseDigest).toBe(digest);
    await expectBusybox(image);
  });

  it('fails without certDir (tlsVerify defaults to true), naming the certificate', async () => {
    const { from } = await pushBusybox(tlsRegistry);
    for (const registry of [undefined, { tlsVerify: true }]) {
      const err = await buildError({ from, ...(registry ? { registry } : {}) });
      expect(err.message).toMatch(
        /^spec\.from: skopeo failed .*certificate signed by unknown authority/,
      );
      expect(err.step).toBeUndefined();
    }
  });

  it('pulls with tlsVerify: false (the certificate is not checked)', async () => {
    const { from, digest } = await pushBusybox(tlsRegistry);
    const image = await build({ from, registry: { tlsVerify: false } });
    expect(image.baseDigest).toBe(digest);
    await expectBusybox(image);
  });
});

describe('a registry that requires credentials', () => {
  const certDir = (): string => caDir(authRegistry);

  it('fails without authFile: unauthorized, authentication required', async () => {
    const { from } = await pushBusybox(authRegistry);
    const err = await buildError({ from, registry: { certDir: certDir() } });
    expect(err.message).toMatch(
      /^spec\.from: skopeo failed .*unauthorized: authentication required/,
    );
  });

  it('pulls with authFile; a container on the image sees /bin/busybox', async () => {
    const { from, digest } = await pushBusybox(authRegistry);
    const authFile = await authRegistry.authFile(newDir('auth'));
    const image = await build({ from, registry: { certDir: certDir(), authFile } });
    expect(image.baseDigest).toBe(digest);
    await expectBusybox(image);
    // Pulled once with credentials is not pulled for anyone: the same reference without them
    // (or with other ones) asks the registry again, and is refused.
    const again = await buildError({ from, registry: { certDir: certDir() } });
    expect(again.message).toMatch(/unauthorized: authentication required/);
    const wrong = await authRegistry.authFile(newDir('other'), {
      user: ACCOUNT.user,
      password: 'x',
    });
    await expect(
      build({ from, registry: { certDir: certDir(), authFile: wrong } }),
    ).rejects.toThrow(/unauthorized/);
    // With the same credentials it is reused.
    expect((await build({ from, registry: { certDir: certDir(), authFile } })).baseDigest).toBe(
      digest,
    );
  });

  it('fails with a wrong password in authFile', async () => {
    const { from } = await pushBusybox(authRegistry);
    const authFile = await authRegistry.authFile(newDir('wrong'), {
      user: ACCOUNT.user,
      password: 'wrong',
    });
    const err = await buildError({ from, registry: { certDir: certDir(), authFile } });
    expect(err.message).toMatch(
      /^spec\.from: skopeo failed .*unauthorized: authentication required/,
    );
    expect(authRegistry.logTail(50)).toMatch(/invalid authorization credential/);
  });
});
