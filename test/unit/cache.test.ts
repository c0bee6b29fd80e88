import { describe, expect, it } from '@jest/globals';

import type { Container, Image } from '../../controller/api/index.js';
import {
  enqueueForObject,
  enqueueFromMap,
  matchesLabels,
  ObjectCache,
  objectKey,
  splitKey,
  type CacheEvent,
} from '../../controller/cache/index.js';
import { WorkQueue } from '../../controller/queue/index.js';

interface Obj {
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, string>;
    resourceVersion?: string;
  };
  spec: { image?: string };
}

const obj = (name: string, spec: Obj['spec'] = {}, meta: Partial<Obj['metadata']> = {}): Obj => ({
  metadata: { name, namespace: 'default', ...meta },
  spec,
});

async function drain(q: WorkQueue): Promise<string[]> {
  const keys: string[] = [];
  while (q.len() > 0) {
    const item = await q.get();
    if (item.shutdown) break;
    keys.push(item.key);
    q.done(item.key);
  }
  return keys;
}

describe('keys and selectors', () => {
  it('namespace/name keys, name alone without a namespace', () => {
    expect(objectKey(obj('web'))).toBe('default/web');
    expect(objectKey({ metadata: { name: 'cluster-wide' } })).toBe('cluster-wide');
    expect(() => objectKey({ metadata: {} })).toThrow(/metadata.name/);
    expect(splitKey('default/web')).toEqual({ namespace: 'default', name: 'web' });
    expect(splitKey('web')).toEqual({ name: 'web' });
  });

  it('matchLabels semantics', () => {
    expect(matchesLabels({ app: 'web', tier: 'fe' }, { app: 'web' })).toBe(true);
    expect(matchesLabels({ app: 'web' }, { app: 'db' })).toBe(false);
    expect(matchesLabels(undefined, { app: 'web' })).toBe(false);
    expect(matchesLabels(undefined, {})).toBe(true);
  });
});

describe('ObjectCache', () => {
  it('holds the generated API types', () => {
    // A compile-time check as much as a runtime one: Image and Container satisfy ObjectLike.
    const images = new ObjectCache<Image>('Image');
    const containers = new ObjectCache<Container>('Container');
    containers.addIndex('image', (c) => [`${c.metadata.namespace}/${c.spec.image}`]);
    expect(images.list()).toEqual([]);
    expect(containers.byIndex('image', 'default/busybox')).toEqual([]);
  });

  it('get, list, listBySelector, delete', () => {
    const cache = new ObjectCache<Obj>('Container');
    expect(cache.set(obj('web', {}, { labels: { app: 'web' } }))).toBe('added');
    cache.set(obj('db', {}, { labels: { app: 'db' } }));
    cache.set(obj('web', {}, { namespace: 'other', labels: { app: 'web' } }));
    expect(cache.size).toBe(3);
    expect(cache.get('default', 'web')?.metadata.labels).toEqual({ app: 'web' });
    expect(cache.getByKey('other/web')?.metadata.namespace).toBe('other');
    expect(cache.list('default').map(objectKey).sort()).toEqual(['default/db', 'default/web']);
    expect(cache.listBySelector({ app: 'web' }).map(objectKey).sort()).toEqual([
      'default/web',
      'other/web',
    ]);
    expect(cache.listBySelector({ app: 'web' }, 'other').map(objectKey)).toEqual(['other/web']);
    expect(cache.delete('default/db')?.metadata.name).toBe('db');
    expect(cache.delete('default/db')).toBeUndefined();
    expect(cache.keys().sort()).toEqual(['default/web', 'other/web']);
  });

  it('notifies add, update (old and new) and delete; same resourceVersion is not a change', () => {
    const cache = new ObjectCache<Obj>('Container');
    const events: CacheEvent<Obj>[] = [];
    const sub = cache.subscribe((e) => events.push(e));
    const v1 = obj('web', { image: 'a' }, { resourceVersion: '1' });
    const v2 = obj('web', { image: 'b' }, { resourceVersion: '2' });
    cache.set(v1);
    expect(cache.set(v2)).toBe('updated');
    expect(cache.set(obj('web', { image: 'b' }, { resourceVersion: '2' }))).toBe('unchanged');
    cache.delete('default/web');
    expect(events.map((e) => e.type)).toEqual(['add', 'update', 'delete']);
    expect(events[1]).toEqual({ type: 'update', oldObject: v1, object: v2 });
    sub.dispose();
    cache.set(v1);
    expect(events).toHaveLength(3);
  });

  it('a throwing listener neither breaks the write nor the other listeners', () => {
    const errors: unknown[] = [];
    const cache = new ObjectCache<Obj>('Container', (err) => errors.push(err));
    let seen = 0;
    cache.subscribe(() => {
      throw new Error('listener bug');
    });
    cache.subscribe(() => seen++);
    expect(cache.set(obj('web'))).toBe('added');
    expect(seen).toBe(1);
    expect(errors).toEqual([new Error('listener bug')]);
  });

  it('indexes follow adds, updates and deletes', () => {
    const cache = new ObjectCache<Obj>('Container');
    cache.set(obj('early', { image: 'busybox' }));
    cache.addIndex('image', (c) => (c.spec.image ? [c.spec.image] : []));
    cache.set(obj('web', { image: 'busybox' }));
    cache.set(obj('db', { image: 'postgres' }));
    const names = (image: string) =>
      cache
        .byIndex('image', image)
        .map((c) => c.metadata.name)
        .sort();
    expect(names('busybox')).toEqual(['early', 'web']);
    cache.set(obj('web', { image: 'postgres' }));
    expect(names('busybox')).toEqual(['early']);
    expect(names('postgres')).toEqual(['db', 'web']);
    cache.delete('default/db');
    expect(names('postgres')).toEqual(['web']);
    expect(names('none')).toEqual([]);
    expect(() => cache.byIndex('missing', 'x')).toThrow(/no index missing/);
    expect(() => cache.addIndex('image', () => [])).toThrow(/already exists/);
  });
});

describe('event handlers', () => {
  it('enqueueForObject adds the changed object key, deduped by the queue', async () => {
    const cache = new ObjectCache<Obj>('Container');
    const queue = new WorkQueue({ name: 'containers' });
    const sub = enqueueForObject(cache, queue);
    cache.set(obj('web', {}, { resourceVersion: '1' }));
    cache.set(obj('web', {}, { resourceVersion: '2' }));
    cache.set(obj('db'));
    expect(await drain(queue)).toEqual(['default/web', 'default/db']);
    cache.delete('default/db');
    expect(await drain(queue)).toEqual(['default/db']);
    sub.dispose();
    queue.shutDown();
  });

  it('enqueueFromMap requeues dependents when what they depend on changes', async () => {
    const images = new ObjectCache<Obj>('Image');
    const containers = new ObjectCache<Obj>('Container');
    containers.addIndex('image', (c) =>
      c.spec.image ? [`${c.metadata.namespace}/${c.spec.image}`] : [],
    );
    containers.set(obj('web', { image: 'busybox' }));
    containers.set(obj('sidecar', { image: 'busybox' }));
    containers.set(obj('db', { image: 'postgres' }));
    const queue = new WorkQueue({ name: 'containers' });
    const sub = enqueueFromMap(images, queue, (image) =>
      containers.byIndex('image', objectKey(image)).map(objectKey),
    );
    images.set(obj('busybox', {}, { resourceVersion: '1' }));
    expect((await drain(queue)).sort()).toEqual(['default/sidecar', 'default/web']);
    images.delete('default/postgres'); // not cached: no event
    images.set(obj('postgres'));
    expect(await drain(queue)).toEqual(['default/db']);
    sub.dispose();
    queue.shutDown();
  });
});
