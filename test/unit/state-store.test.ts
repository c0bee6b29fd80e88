/**
 * The controller's side of the on-disk contract (store/state-store.ts) on a temporary state
 * dir: an object's events outlive it for the event TTL, as Kubernetes keeps Events.
 */
import { afterEach, describe, expect, it } from '@jest/globals';
import { existsSync, mkdtempSync, readFileSync, rmSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import type { ConductorObject } from '../../controller/api/types.generated.js';
import { EVENT_TTL_MS, StateStore } from '../../controller/store/state-store.js';

let dir: string;
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const object = (name: string): ConductorObject =>
  ({
    apiVersion: 'conductor.dev/v1alpha1',
    kind: 'Container',
    metadata: { name, namespace: 'ns' },
    spec: { image: 'busybox' },
  }) as unknown as ConductorObject;

describe('StateStore events', () => {
  it("keeps a deleted object's events until the TTL has passed since its last one", async () => {
    dir = mkdtempSync(join(tmpdir(), 'conductor-store-'));
    const store = new StateStore(dir);
    const eventsOf = (name: string): string =>
      join(dir, 'events', 'containers', 'ns', `${name}.jsonl`);
    for (const name of ['gone', 'recent', 'alive']) {
      await store.writeObject(object(name));
      await store.recordEvent('Container', 'ns', name, {
        time: '2026-12-01T10:00:00Z',
        type: 'Normal',
        reason: 'Killing',
        message: `Stopping container ${name}`,
      });
    }
    await store.removeObject('Container', 'ns', 'gone');
    await store.removeObject('Container', 'ns', 'recent');
    await store.flush();
    expect(existsSync(store.objectPath('Container', 'ns', 'gone'))).toBe(false);
    expect(readFileSync(eventsOf('gone'), 'utf8')).toContain('Stopping container gone');

    // An hour and a bit later for `gone` and `alive`; `recent` had an event a minute ago.
    const now = new Date();
    const old = new Date(now.getTime() - EVENT_TTL_MS - 60_000);
    utimesSync(eventsOf('gone'), old, old);
    utimesSync(eventsOf('alive'), old, old);
    expect(await store.pruneEvents(now)).toEqual([eventsOf('gone')]);
    expect(existsSync(eventsOf('gone'))).toBe(false);
    expect(existsSync(eventsOf('recent'))).toBe(true);
    expect(existsSync(eventsOf('alive'))).toBe(true); // its object is still there
  });
});
