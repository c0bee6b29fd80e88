/**
 * DirectorySource against a real temporary directory and the real chokidar watcher. Waits are
 * polls with a bound (waitFor); nothing asserts on elapsed time.
 */
import { afterEach, describe, expect, it } from '@jest/globals';
import {
  closeSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  renameSync,
  rmSync,
  unlinkSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

import { DirectorySource, isManifestPath } from '../../controller/source/directory.js';
import type { SourceEventSink } from '../../controller/source/source.js';
import {
  formatManifestError,
  type FieldError,
  type KubeObject,
  type ManifestError,
  type ObjectIdentity,
  type ValidateFn,
} from '../../controller/source/manifests.js';

type Obj = KubeObject & { spec: { image?: string; [k: string]: unknown } };

/** A stand-in for controller/validation: a Container needs a string spec.image. */
const validate: ValidateFn<Obj> = (obj) => {
  const o = obj as Obj;
  const errors: FieldError[] = [];
  if (o.kind !== 'Container' && o.kind !== 'Image') {
    errors.push({ path: 'kind', message: `Unsupported value: "${String(o.kind)}"` });
  }
  if (o.kind === 'Container' && typeof o.spec?.image !== 'string') {
    errors.push({ path: 'spec.image', message: 'Required value' });
  }
  return errors.length > 0 ? { ok: false, errors } : { ok: true, object: o };
};

type Event =
  | { type: 'upsert'; object: Obj; file: string }
  | { type: 'delete'; identity: ObjectIdentity; file: string; last: Obj }
  | { type: 'error'; file: string; errors: ManifestError[] }
  | { type: 'resolved'; file: string }
  | { type: 'watchError'; error: Error };

class RecordingSink implements SourceEventSink<Obj> {
  readonly events: Event[] = [];
  onUpsert(object: Obj, file: string): void {
    this.events.push({ type: 'upsert', object, file });
  }
  onDelete(identity: ObjectIdentity, file: string, last: Obj): void {
    this.events.push({ type: 'delete', identity, file, last });
  }
  onError(file: string, errors: ManifestError[]): void {
    this.events.push({ type: 'error', file, errors });
  }
  onErrorResolved(file: string): void {
    this.events.push({ type: 'resolved', file });
  }
  onWatchError(error: Error): void {
    this.events.push({ type: 'watchError', error });
  }
  upserts(name?: string): Extract<Event, { type: 'upsert' }>[] {
    return this.events.filter(
      (e): e is Extract<Event, { type: 'upsert' }> =>
        e.type === 'upsert' && (name === undefined || e.object.metadata.name === name),
    );
  }
  deletes(name?: string): Extract<Event, { type: 'delete' }>[] {
    return this.events.filter(
      (e): e is Extract<Event, { type: 'delete' }> =>
        e.type === 'delete' && (name === undefined || e.identity.name === name),
    );
  }
  errors(file?: string): Extract<Event, { type: 'error' }>[] {
    return this.events.filter(
      (e): e is Extract<Event, { type: 'error' }> =>
        e.type === 'error' && (file === undefined || e.file === file),
    );
  }
}

/** Polls until check() returns a value other than undefined/false, or fails after timeoutMs. */
async function waitFor<R>(
  what: string,
  check: () => R | undefined | false,
  timeoutMs = 10000,
): Promise<R> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = check();
    if (r !== undefined && r !== false) return r;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((res) => setTimeout(res, 10));
  }
}

const manifest = (
  name: string,
  image = 'busybox',
  extra = '',
) => `apiVersion: conductor.dev/v1alpha1
kind: Container
metadata:
  name: ${name}
${extra}spec:
  image: ${image}
`;

const sources: DirectorySource<Obj>[] = [];
const dirs: string[] = [];

afterEach(async () => {
  for (const s of sources.splice(0)) await s.stop();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'conductor-dirsource-'));
  dirs.push(dir);
  return dir;
}

function write(dir: string, rel: string, text: string): void {
  mkdirSync(dirname(join(dir, rel)), { recursive: true });
  writeFileSync(join(dir, rel), text);
}

/** What `conductor apply` does: write a hidden temporary file, rename it over the target. */
function writeByRename(dir: string, rel: string, text: string): void {
  const tmp = join(dir, dirname(rel), `.${rel.split('/').pop()}.${process.pid}.tmp`);
  writeFileSync(tmp, text);
  renameSync(tmp, join(dir, rel));
}

async function startSource(dir: string, sink = new RecordingSink(), settleMs = 20) {
  const source = new DirectorySource<Obj>({ dir, validate, sink, settleMs });
  sources.push(source);
  await source.start();
  await source.synced();
  return { source, sink };
}

describe('DirectorySource', () => {
  it('reads the files present at start before synced() resolves', async () => {
    const dir = tempDir();
    write(dir, 'web.yaml', manifest('web'));
    write(
      dir,
      'db.json',
      JSON.stringify({
        apiVersion: 'conductor.dev/v1alpha1',
        kind: 'Container',
        metadata: { name: 'db', namespace: 'prod' },
        spec: { image: 'postgres' },
      }),
    );
    write(dir, 'multi.yml', `${manifest('a')}---\n${manifest('b')}`);
    const { source, sink } = await startSource(dir);
    expect(source.hasSynced()).toBe(true);
    expect(
      sink
        .upserts()
        .map((e) => `${e.file}:${e.object.metadata.name}`)
        .sort(),
    ).toEqual(['db.json:db', 'multi.yml:a', 'multi.yml:b', 'web.yaml:web']);
    const web = source.get({ kind: 'Container', namespace: 'default', name: 'web' });
    expect(web?.file).toBe('web.yaml');
    expect(web?.object.metadata).toMatchObject({
      name: 'web',
      namespace: 'default',
      generation: 1,
    });
    expect(web?.object.metadata.uid).toMatch(/^[0-9a-f-]{36}$/);
    expect(web?.object.metadata.creationTimestamp).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    // resourceVersions are distinct increasing counters
    const rvs = sink.upserts().map((e) => Number(e.object.metadata.resourceVersion));
    expect(rvs).toEqual([1, 2, 3, 4]);
    expect(source.list()).toHaveLength(4);
  });

  it('add → upsert, change → generation bump, metadata-only change keeps generation, remove → delete', async () => {
    const dir = tempDir();
    const { source, sink } = await startSource(dir);
    write(dir, 'web.yaml', manifest('web'));
    const added = await waitFor('upsert of web', () => sink.upserts('web')[0]);
    expect(added.file).toBe('web.yaml');
    expect(added.object.metadata.generation).toBe(1);

    write(dir, 'web.yaml', manifest('web', 'nginx'));
    const changed = await waitFor('second upsert', () => sink.upserts('web')[1]);
    expect(changed.object.spec.image).toBe('nginx');
    expect(changed.object.metadata.generation).toBe(2);
    expect(changed.object.metadata.uid).toBe(added.object.metadata.uid);
    expect(changed.object.metadata.creationTimestamp).toBe(added.object.metadata.creationTimestamp);

    write(dir, 'web.yaml', manifest('web', 'nginx', '  labels: {tier: front}\n'));
    const relabeled = await waitFor('third upsert', () => sink.upserts('web')[2]);
    expect(relabeled.object.metadata.labels).toEqual({ tier: 'front' });
    expect(relabeled.object.metadata.generation).toBe(2);
    expect(Number(relabeled.object.metadata.resourceVersion)).toBeGreaterThan(
      Number(changed.object.metadata.resourceVersion),
    );

    unlinkSync(join(dir, 'web.yaml'));
    const deleted = await waitFor('delete of web', () => sink.deletes('web')[0]);
    expect(deleted).toMatchObject({
      identity: { kind: 'Container', namespace: 'default', name: 'web' },
      file: 'web.yaml',
    });
    expect(deleted.last.spec.image).toBe('nginx');
    expect(source.list()).toEqual([]);
    expect(sink.upserts('web')).toHaveLength(3);
  });

  it('a file that stops defining an object deletes it and keeps the rest', async () => {
    const dir = tempDir();
    write(dir, 'app.yaml', `${manifest('a')}---\n${manifest('b')}`);
    const { source, sink } = await startSource(dir);
    writeByRename(dir, 'app.yaml', manifest('a'));
    await waitFor('delete of b', () => sink.deletes('b')[0]);
    expect(source.list().map((o) => o.identity.name)).toEqual(['a']);
    expect(sink.upserts('a')).toHaveLength(1);
  });

  it('a write by rename is one upsert, never a delete', async () => {
    const dir = tempDir();
    write(dir, 'web.yaml', manifest('web'));
    const { sink } = await startSource(dir);
    writeByRename(dir, 'web.yaml', manifest('web', 'v2'));
    await waitFor('upsert of v2', () =>
      sink.upserts('web').find((e) => e.object.spec.image === 'v2'),
    );
    writeByRename(dir, 'web.yaml', manifest('web', 'v3'));
    await waitFor('upsert of v3', () =>
      sink.upserts('web').find((e) => e.object.spec.image === 'v3'),
    );
    expect(
      sink.upserts('web').map((e) => [e.object.spec.image, e.object.metadata.generation]),
    ).toEqual([
      ['busybox', 1],
      ['v2', 2],
      ['v3', 3],
    ]);
    expect(sink.deletes()).toEqual([]);
    expect(sink.errors()).toEqual([]);
  });

  it('a file renamed into place is read at once, without the settle time', async () => {
    const dir = tempDir();
    // Ten minutes: only a read that skips the settle time can meet waitFor's bound.
    const { sink } = await startSource(dir, new RecordingSink(), 600_000);
    writeByRename(dir, 'web.yaml', manifest('web'));
    await waitFor('upsert of web', () => sink.upserts('web')[0]);
    writeByRename(dir, 'web.yaml', manifest('web', 'v2'));
    await waitFor('upsert of v2', () =>
      sink.upserts('web').find((e) => e.object.spec.image === 'v2'),
    );
    expect(sink.deletes()).toEqual([]);
  });

  it('a file written in place is read once quiet, never half-written', async () => {
    const dir = tempDir();
    write(dir, 'app.yaml', `${manifest('a')}---\n${manifest('b')}`);
    const { sink } = await startSource(dir, new RecordingSink(), 2000);
    // An in-place rewrite in two writes: after the first, the file parses and defines only a
    // (applied, it would delete b). The pause is long enough for a read that did not wait,
    // well inside the settle time.
    const fd = openSync(join(dir, 'app.yaml'), 'w');
    try {
      writeSync(fd, manifest('a', 'v2'));
      await new Promise((res) => setTimeout(res, 100));
      writeSync(fd, `---\n${manifest('b', 'v2')}`);
    } finally {
      closeSync(fd);
    }
    await waitFor('upsert of b v2', () =>
      sink.upserts('b').find((e) => e.object.spec.image === 'v2'),
    );
    expect(sink.upserts('a').map((e) => e.object.spec.image)).toEqual(['busybox', 'v2']);
    expect(sink.deletes()).toEqual([]);
    expect(sink.errors()).toEqual([]);
  });

  it('a file moved away and written anew in place is not deleted while it is empty', async () => {
    const dir = tempDir();
    write(dir, 'web.yaml', manifest('web'));
    const { sink } = await startSource(dir, new RecordingSink(), 2000);
    // vim's save: the old file becomes the backup, a new one is created and then written.
    renameSync(join(dir, 'web.yaml'), join(dir, 'web.yaml~'));
    const fd = openSync(join(dir, 'web.yaml'), 'w');
    try {
      await new Promise((res) => setTimeout(res, 100));
      writeSync(fd, manifest('web', 'v2'));
    } finally {
      closeSync(fd);
    }
    await waitFor('upsert of v2', () =>
      sink.upserts('web').find((e) => e.object.spec.image === 'v2'),
    );
    expect(sink.deletes()).toEqual([]);
  });

  it('invalid YAML is reported with its line and the previous objects are kept; fixing it resolves', async () => {
    const dir = tempDir();
    write(dir, 'web.yaml', `${manifest('web')}---\n${manifest('web2')}`);
    write(dir, 'other.yaml', manifest('other'));
    const { source, sink } = await startSource(dir);
    const before = source.list();

    // a half-written file: the second document cut off mid-flow-mapping
    write(
      dir,
      'web.yaml',
      `${manifest('web', 'v2')}---\n${manifest('web2')}  ports: [{containerPort: 80\n`,
    );
    const reported = await waitFor('error for web.yaml', () => sink.errors('web.yaml')[0]);
    expect(reported.errors[0]?.line).toBeGreaterThan(7);
    expect(formatManifestError(reported.errors[0] ?? { file: '', message: 'none' })).toMatch(
      /^web\.yaml:\d+:\d+: /,
    );
    expect(source.fileErrors().get('web.yaml')).toEqual(reported.errors);
    expect(source.list()).toEqual(before); // web still busybox, web2 still there
    expect(sink.deletes()).toEqual([]);

    // a schema violation is reported the same way
    write(dir, 'web.yaml', manifest('web', 'v2').replace('  image: v2\n', '  command: [sh]\n'));
    await waitFor('validation error', () =>
      sink.errors('web.yaml').find((e) => e.errors[0]?.path === 'spec.image'),
    );
    expect(source.list()).toEqual(before);

    write(dir, 'web.yaml', `${manifest('web', 'v2')}---\n${manifest('web2')}`);
    await waitFor('resolved', () =>
      sink.events.find((e) => e.type === 'resolved' && e.file === 'web.yaml'),
    );
    const upd = await waitFor('upsert of v2', () =>
      sink.upserts('web').find((e) => e.object.spec.image === 'v2'),
    );
    expect(upd.object.metadata.generation).toBe(2);
    expect(source.fileErrors().size).toBe(0);
    expect(sink.upserts('web2')).toHaveLength(1);
    expect(sink.upserts('other')).toHaveLength(1);
  });

  it('a file that is invalid at start is reported and does not block synced()', async () => {
    const dir = tempDir();
    write(dir, 'bad.yaml', 'kind: [\n');
    write(dir, 'good.yaml', manifest('good'));
    const { source, sink } = await startSource(dir);
    expect(source.fileErrors().get('bad.yaml')?.[0]).toMatchObject({ file: 'bad.yaml', line: 2 });
    expect(sink.upserts().map((e) => e.object.metadata.name)).toEqual(['good']);
  });

  it('the same object in two files: the second is rejected naming both, and takes over when the first goes', async () => {
    const dir = tempDir();
    write(dir, 'a.yaml', manifest('web', 'from-a'));
    write(dir, 'b.yaml', `${manifest('web', 'from-b')}---\n${manifest('only-b')}`);
    const { source, sink } = await startSource(dir);

    // sorted startup: a.yaml owns web; b.yaml's other object is unaffected
    expect(source.get({ kind: 'Container', namespace: 'default', name: 'web' })?.file).toBe(
      'a.yaml',
    );
    expect(source.get({ kind: 'Container', namespace: 'default', name: 'only-b' })?.file).toBe(
      'b.yaml',
    );
    const conflict = source.fileErrors().get('b.yaml');
    expect(conflict).toHaveLength(1);
    expect(conflict?.[0]).toMatchObject({ file: 'b.yaml', line: 1 });
    expect(conflict?.[0]?.message).toContain(
      'Container default/web is already defined in a.yaml:1',
    );
    expect(sink.errors('b.yaml')).toHaveLength(1);

    unlinkSync(join(dir, 'a.yaml'));
    const takeover = await waitFor('takeover by b.yaml', () =>
      sink.upserts('web').find((e) => e.file === 'b.yaml'),
    );
    expect(takeover.object.spec.image).toBe('from-b');
    expect(takeover.object.metadata.generation).toBe(2);
    await waitFor('conflict resolved', () =>
      sink.events.find((e) => e.type === 'resolved' && e.file === 'b.yaml'),
    );
    expect(sink.deletes()).toEqual([]);
    expect(source.fileErrors().size).toBe(0);

    // a newcomer is rejected against the new owner
    write(dir, 'c.yaml', manifest('web', 'from-c'));
    const err = await waitFor('conflict for c.yaml', () => sink.errors('c.yaml')[0]);
    expect(err.errors[0]?.message).toContain('already defined in b.yaml');
    expect(
      source.get({ kind: 'Container', namespace: 'default', name: 'web' })?.object.spec.image,
    ).toBe('from-b');
  });

  it('a takeover by an identical definition keeps the generation', async () => {
    const dir = tempDir();
    write(dir, 'a.yaml', manifest('web'));
    write(dir, 'b.yaml', manifest('web'));
    const { source, sink } = await startSource(dir);
    unlinkSync(join(dir, 'a.yaml'));
    const takeover = await waitFor('takeover by b.yaml', () =>
      sink.upserts('web').find((e) => e.file === 'b.yaml'),
    );
    expect(takeover.object.metadata.generation).toBe(1);
    expect(takeover.object.metadata.resourceVersion).toBe('2');
    expect(source.get({ kind: 'Container', namespace: 'default', name: 'web' })?.file).toBe(
      'b.yaml',
    );
    expect(sink.deletes()).toEqual([]);
  });

  it('rejects files over the size limit without reading them', async () => {
    const dir = tempDir();
    write(dir, 'big.yaml', `${manifest('big')}# ${'x'.repeat(200)}\n`);
    write(dir, 'small.yaml', manifest('small'));
    const sink = new RecordingSink();
    const source = new DirectorySource<Obj>({ dir, validate, sink, maxFileBytes: 150 });
    sources.push(source);
    await source.start();
    await source.synced();
    expect(source.fileErrors().get('big.yaml')?.[0]?.message).toMatch(
      /larger than the limit of 150/,
    );
    expect(sink.upserts().map((e) => e.object.metadata.name)).toEqual(['small']);
  });

  it('ignores hidden files and directories, editor and package-manager leftovers', async () => {
    const dir = tempDir();
    const ignored = [
      '.hidden.yaml',
      '.git/config.yaml',
      '.cache/deep/web.yaml',
      'web.yaml~',
      '#web.yaml#',
      '.#web.yaml',
      '.web.yaml.swp',
      '.web.yaml.swx',
      '4913',
      'web.yaml.bak',
      'web.yaml.orig',
      'web.yaml.tmp',
      'web.yaml.dpkg-old',
      'web.yaml.dpkg-new',
      'notes.txt',
      'README',
      'sub/.web.yaml',
    ];
    for (const f of ignored) write(dir, f, manifest('web', 'WRONG'));
    write(dir, 'web.yaml', manifest('web'));
    const { source, sink } = await startSource(dir);
    expect(sink.upserts().map((e) => e.file)).toEqual(['web.yaml']);
    expect(source.fileErrors().size).toBe(0);

    // the same at run time: an editor saving web.yaml leaves its droppings next to it
    for (const f of ignored) write(dir, f, manifest('web', 'STILL-WRONG'));
    write(dir, 'barrier.yaml', manifest('barrier'));
    await waitFor('barrier upsert', () => sink.upserts('barrier')[0]);
    expect(sink.upserts('web').map((e) => e.object.spec.image)).toEqual(['busybox']);
    expect(sink.errors()).toEqual([]);

    for (const f of ignored) expect(isManifestPath(f)).toBe(false);
    for (const f of ['web.yaml', 'a/b/web.yml', 'x.JSON', 'web.v2.yaml'])
      expect(isManifestPath(f)).toBe(true);
  });

  it('watches subdirectories, including ones created and removed later', async () => {
    const dir = tempDir();
    write(dir, 'apps/web/web.yaml', manifest('web'));
    const { sink } = await startSource(dir);
    expect(sink.upserts('web')[0]?.file).toBe('apps/web/web.yaml');

    write(dir, 'new/deeper/db.yaml', manifest('db'));
    const db = await waitFor('upsert of db', () => sink.upserts('db')[0]);
    expect(db.file).toBe('new/deeper/db.yaml');

    rmSync(join(dir, 'apps'), { recursive: true });
    await waitFor('delete of web', () => sink.deletes('web')[0]);
    expect(sink.deletes('db')).toEqual([]);
  });

  it('syncs 50 files at start and 50 more added while running', async () => {
    const dir = tempDir();
    for (let i = 0; i < 50; i++) write(dir, `c${i}.yaml`, manifest(`c${i}`));
    const { source, sink } = await startSource(dir);
    expect(source.list()).toHaveLength(50);
    expect(sink.upserts()).toHaveLength(50);
    for (let i = 50; i < 100; i++) writeByRename(dir, `c${i}.yaml`, manifest(`c${i}`));
    await waitFor('100 objects', () => source.list().length === 100);
    expect(sink.upserts()).toHaveLength(100);
    expect(sink.errors()).toEqual([]);
  });

  it('a throwing sink does not stop the source', async () => {
    const dir = tempDir();
    const sink = new RecordingSink();
    let calls = 0;
    const original = sink.onUpsert.bind(sink);
    sink.onUpsert = (object, file) => {
      calls += 1;
      if (object.metadata.name === 'boom') throw new Error('sink bug');
      original(object, file);
    };
    const { source } = await startSource(dir, sink);
    write(dir, 'boom.yaml', manifest('boom'));
    await waitFor('watch error', () => sink.events.find((e) => e.type === 'watchError'));
    write(dir, 'fine.yaml', manifest('fine'));
    await waitFor('upsert of fine', () => sink.upserts('fine')[0]);
    expect(calls).toBe(2);
    expect(source.list()).toHaveLength(2);
  });

  it('stop() releases the watcher: later writes produce nothing, and stop is idempotent', async () => {
    const dir = tempDir();
    write(dir, 'web.yaml', manifest('web'));
    const { source, sink } = await startSource(dir);
    await source.stop();
    const count = sink.events.length;
    write(dir, 'late.yaml', manifest('late'));
    unlinkSync(join(dir, 'web.yaml'));
    await source.stop();
    // jest's --detectOpenHandles (and this suite exiting at all) checks the watcher is closed;
    // here, nothing more is emitted after stop() returned.
    expect(sink.events).toHaveLength(count);
    expect(source.get({ kind: 'Container', namespace: 'default', name: 'web' })).toBeDefined();
  });

  it('stop() before the initial sync rejects synced() instead of leaving it pending', async () => {
    const dir = join(tempDir(), 'created-by-start');
    const source = new DirectorySource<Obj>({ dir, validate, sink: new RecordingSink() });
    sources.push(source);
    const synced = source.synced();
    await source.start();
    await source.stop();
    await expect(synced).rejects.toThrow(/stopped before the initial sync/);
  });
});
