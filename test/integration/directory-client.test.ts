/**
 * DirectoryClient (the manifest directory as a Client) on a real temporary watch dir and state
 * dir: status travels with the object through the cache, writes follow the resourceVersion
 * rule, and what it writes survives a restart. Waits are bounded polls.
 */
import { afterEach, describe, expect, it } from '@jest/globals';
import { mkdir, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import type { Container, ContainerStatus } from '../../controller/api/types.generated.js';
import { specChanged } from '../../controller/cache/handlers.js';
import { ConflictError, NotFoundError } from '../../controller/client/client.js';
import { ConductorMetrics } from '../../controller/metrics/registry.js';
import { DirectoryClient } from '../../controller/source/directory-client.js';
import { StateStore } from '../../controller/store/state-store.js';
import { validateManifest } from '../../controller/validation/index.js';
import { silentLogger } from '../../runtime-core/src/index.js';
import { FIXTURE_ROOT } from '../fixtures/rootfs.js';

const dirs: string[] = [];
const clients: DirectoryClient[] = [];

afterEach(async () => {
  for (const c of clients.splice(0)) await c.stop();
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

async function until<T>(what: string, f: () => T | undefined): Promise<T> {
  const end = Date.now() + 10_000;
  for (;;) {
    const v = f();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`${what}: not seen in 10 s`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function open(base: string): Promise<DirectoryClient> {
  const c = await DirectoryClient.open({
    watchDir: join(base, 'watch'),
    store: new StateStore(join(base, 'state')),
    validate: validateManifest,
    manifestErrors: new ConductorMetrics().manifestErrors,
    logger: silentLogger,
    settleMs: 5,
  });
  clients.push(c);
  await c.start();
  await c.synced();
  return c;
}

const manifest = (args: string[]): string =>
  JSON.stringify({
    apiVersion: 'conductor.dev/v1alpha1',
    kind: 'Container',
    metadata: { name: 'web', namespace: 'dc' },
    spec: { image: 'busybox', args },
  });

async function put(base: string, text: string): Promise<void> {
  await writeFile(join(base, 'watch', '.c.json.tmp'), text);
  await rename(join(base, 'watch', '.c.json.tmp'), join(base, 'watch', 'c.json'));
}

const running: ContainerStatus = { phase: 'Running', restartCount: 0 };

describe('DirectoryClient', () => {
  it('keeps status with the object, by the resourceVersion rule, across spec changes and restarts', async () => {
    const base = await mkdtemp(join(FIXTURE_ROOT, 'dc-'));
    dirs.push(base);
    await mkdir(join(base, 'watch'));
    await put(base, manifest(['sleep', '1']));
    let c = await open(base);
    const read = await until('the object', () => c.get('Container', 'dc/web'));
    expect(read.status).toBeUndefined();
    expect(c.contextDirOf('Container', 'dc/web')).toBe(join(base, 'watch'));

    const updates: { old: Container; now: Container }[] = [];
    c.caches.Container.subscribe((e) => {
      if (e.type === 'update') updates.push({ old: e.oldObject, now: e.object });
    });
    const lastUpdateChangedSpec = (): boolean | undefined => {
      const u = updates.at(-1);
      return u && specChanged(u.old, u.now);
    };
    const written = await c.updateStatus('Container', read, running);
    expect(written.status).toEqual(running);
    expect(Number(written.metadata.resourceVersion)).toBeGreaterThan(
      Number(read.metadata.resourceVersion),
    );
    expect(c.get('Container', 'dc/web')).toBe(written);
    // One cache update, which a self-watch's predicate tells from a spec change.
    expect(updates).toHaveLength(1);
    expect(lastUpdateChangedSpec()).toBe(false);
    // Equal status: nothing written, the same object back.
    expect(await c.updateStatus('Container', written, { ...running })).toBe(written);
    // Written from a stale read: a conflict, and nothing changes.
    await expect(
      c.updateStatus('Container', read, { ...running, phase: 'Failed' }),
    ).rejects.toBeInstanceOf(ConflictError);
    expect(c.get('Container', 'dc/web')?.status?.phase).toBe('Running');

    // A spec change keeps the status (the reconciler updates it) and is a spec change.
    await put(base, manifest(['sleep', '2']));
    const changed = await until('the new spec', () => {
      const o = c.get('Container', 'dc/web');
      return o?.spec.args?.[1] === '2' ? o : undefined;
    });
    expect(changed.status).toEqual(running);
    expect(changed.metadata.generation).toBe(2);
    expect(lastUpdateChangedSpec()).toBe(true);

    // Restarted: the status it wrote is there before any reconcile, and so is the object.
    await c.stop();
    clients.splice(clients.indexOf(c), 1);
    c = await open(base);
    const again = await until('the object after a restart', () => c.get('Container', 'dc/web'));
    expect(again.status).toEqual(running);
    expect(again.metadata.uid).toBe(read.metadata.uid);
    expect(c.leftoverKeys()).toEqual([{ kind: 'Container', key: 'dc/web' }]);

    // Gone from the directory: a write is NotFound; finalize forgets its record.
    await rm(join(base, 'watch', 'c.json'));
    await until('the delete', () => (c.get('Container', 'dc/web') ? undefined : true));
    await expect(c.updateStatus('Container', again, running)).rejects.toBeInstanceOf(NotFoundError);
    await c.finalize('Container', 'dc', 'web');
    await c.stop();
    clients.splice(clients.indexOf(c), 1);
    c = await open(base);
    expect(c.leftoverKeys()).toEqual([]);
  });
});
