/**
 * DirectorySource: the watched manifest directory as a source of resource objects, like the
 * kubelet's static-pod directory, without its traps.
 *
 * Which files: every `.yaml`, `.yml` and `.json` file under the directory, recursively. Hidden
 * files and directories (`.*`) and editor/package-manager leftovers (`*~`, `*.swp`, `#*#`,
 * `*.bak`, `*.orig`, `*.tmp`, vim's `4913` probe, `*.dpkg-*`, …) are never read, so saving a
 * manifest in an editor does not create a second copy of every object in it. Writers should
 * write a hidden temporary file and rename it over the manifest (`conductor apply` does).
 *
 * Level-based: a filesystem event only marks a file dirty; a single worker then reads what is
 * on disk now and reconciles that file's definitions, so event bursts, renames and lost events
 * all end in the same state.
 *
 * When a file is read. A file renamed (or linked) into place is complete the moment its name
 * appears, and is read at once. A file written in place may be read half-written, and a half
 * that parses would be applied (objects cut short, or deleted while the file is truncated), so
 * after an in-place write the file is read only once it has had `settleMs` of quiet. The two
 * are told apart by inotify: every write(2), truncate(2) or chmod(2) of a file is reported on
 * its directory's watch as a `change` of that name (IN_MODIFY, IN_ATTRIB), while a rename into
 * the directory is a `rename` (IN_MOVED_TO) and the data written to the temporary file is
 * reported under the temporary name. A read is applied only if no `change` of the name was seen
 * within `settleMs` before it nor while it ran, counting the events the kernel had queued when
 * the read finished (the loop is turned until they are delivered). A file created in place is
 * a `rename` (IN_CREATE) followed by a `change` for its first write; read in between, it is
 * empty. An editor that moves the old file away and writes a new one makes that window matter,
 * so an empty file counts only once it has stayed empty for `settleMs`.
 *
 * Semantics (the contract the cache and `conductor get/describe` build on):
 * - A file is all or nothing. If it fails to read, parse or validate, its errors are reported
 *   (`onError`, `fileErrors()`), and the objects it defined before stay exactly as they were;
 *   other files are unaffected. A half-written file therefore never deletes anything.
 * - Identity is (kind, namespace, name). The first file to define an object owns it; another
 *   file defining it too gets an error naming both files, and its definition waits. When the
 *   owner stops defining the object (file removed or object removed from it), the earliest
 *   waiting file takes over: that is an update of the same object (no delete), so nothing
 *   restarts if the definitions agree. At startup files are read in sorted path order, so the
 *   owner after a restart is the lexically first file.
 * - Removing a file deletes what it owned; a file that no longer defines an object deletes it.
 * - Server-set metadata is the source's: `uid` and `creationTimestamp` when an object first
 *   appears, `resourceVersion` a counter increasing with every change the source emits, and
 *   `generation` starting at 1 and incremented when anything outside metadata changes (the
 *   apiserver's rule for custom resources with a status subresource). Values for these fields
 *   in files, and any `status`, are ignored.
 * - Nothing a file contains makes start(), the watcher or the process throw.
 */
import { randomUUID } from 'node:crypto';
import { closeSync, constants, fstatSync, openSync, statSync, type Stats } from 'node:fs';
import { mkdir, readFile, stat } from 'node:fs/promises';
import { join, relative, resolve, sep } from 'node:path';
import { performance } from 'node:perf_hooks';

import { watch, type FSWatcher } from 'chokidar';

import { sameJson } from '../api/canonical.js';
import { DisposableStore } from '../reconcile/lifecycle.js';
import {
  describeIdentity,
  hasManifestExtension,
  identityKey,
  isIgnoredName,
  isManifestPath,
  parseManifests,
  type KubeObject,
  type ManifestError,
  type ObjectIdentity,
  type ParsedObject,
  type ValidateFn,
} from './manifests.js';
import type { Source, SourcedObject, SourceEventSink } from './source.js';

export { isManifestPath };

export interface DirectorySourceOptions<T> {
  dir: string;
  validate: ValidateFn<T>;
  sink: SourceEventSink<T>;
  /**
   * Quiet time after an in-place write before the file is read, so a file being written in
   * place is read once complete. Files renamed into place are read at once. Default 30 ms.
   */
  settleMs?: number;
  /** Files larger than this are rejected unread. Default 3 MiB (the apiserver's request limit). */
  maxFileBytes?: number;
  /** Injected for tests. */
  now?: () => Date;
  newUid?: () => string;
  /**
   * What an earlier run served (the objects a restarted controller persisted), by
   * identityKey: an object defined again keeps its uid and creationTimestamp, and its generation
   * (one more if its definition changed meanwhile), as it would in the API server.
   */
  previous?: ReadonlyMap<string, object>;
  /**
   * The next metadata.resourceVersion: one counter for everything that changes objects (the
   * client's status writes bump it too). Default: the source's own counter.
   */
  nextResourceVersion?: () => string;
}

/**
 * Resolves after `turns` iterations of the event loop, each with a poll phase: inotify events
 * the kernel queued before the call are delivered (fs.watch callbacks run) by then.
 */
async function loopTurns(turns: number): Promise<void> {
  for (let i = 0; i < turns; i++) await new Promise<void>((r) => setImmediate(r));
}

interface FileState<T> {
  /** What the file last parsed to successfully, by identity key. */
  defs: Map<string, ParsedObject<T>>;
  /** Errors of the last read/parse; non-empty means `defs` is stale but kept. */
  parseErrors: ManifestError[];
  /** Objects this file defines but another file owns. */
  conflicts: Map<string, ManifestError>;
  /**
   * The text `defs`/`parseErrors` came from; undefined after a failure to read. The same text
   * parses the same way, so a second event for one write is not parsed again.
   */
  text?: string;
}

interface Stored<T> {
  identity: ObjectIdentity;
  file: string;
  /** The definition as read from the file, without server-set fields: compared on changes. */
  desired: Record<string, unknown>;
  object: T;
  uid: string;
  creationTimestamp: string;
  generation: number;
}

export class DirectorySource<T extends object = KubeObject> implements Source {
  readonly dir: string;
  private readonly validate: ValidateFn<T>;
  private readonly sink: SourceEventSink<T>;
  private readonly settleMs: number;
  private readonly maxFileBytes: number;
  private readonly now: () => Date;
  private readonly newUid: () => string;
  private readonly previous: Map<string, object>;

  private readonly files = new Map<string, FileState<T>>();
  /** Files defining each identity key, in claim order: the first one owns it. */
  private readonly claims = new Map<string, string[]>();
  private readonly objects = new Map<string, Stored<T>>();
  private readonly errors = new Map<string, ManifestError[]>();
  private readonly nextResourceVersion: () => string;

  private readonly disposables = new DisposableStore();
  private watcher: FSWatcher | undefined;
  private started = false;
  private stopped = false;
  /** The directory the watch is on, held open for health(). */
  private dirFd: number | undefined;
  /** Until the initial scan is done, dirty paths are collected and processed in sorted order. */
  private initialScan = true;
  private readonly dirty = new Set<string>();
  /** In-place writes seen per file: when the last one was, and how many (see the file doc). */
  private readonly writes = new Map<string, { at: number; count: number }>();
  /** Files read empty, since when: applied once empty for `settleMs` (see the file doc). */
  private readonly emptySince = new Map<string, number>();
  /** Files waiting out their settle time, with the timer that marks them dirty again. */
  private readonly settling = new Map<string, NodeJS.Timeout>();
  private worker: Promise<void> | undefined;
  private isSynced = false;
  private readonly syncedPromise: Promise<void>;
  private settleSynced!: (err?: Error) => void;

  constructor(options: DirectorySourceOptions<T>) {
    this.dir = resolve(options.dir);
    this.validate = options.validate;
    this.sink = options.sink;
    this.settleMs = Math.max(1, options.settleMs ?? 30);
    this.maxFileBytes = options.maxFileBytes ?? 3 * 1024 * 1024;
    this.now = options.now ?? (() => new Date());
    this.newUid = options.newUid ?? randomUUID;
    this.previous = new Map(options.previous ?? []);
    let resourceVersion = 0;
    this.nextResourceVersion =
      options.nextResourceVersion ?? ((): string => String((resourceVersion += 1)));
    this.syncedPromise = new Promise<void>((resolveFn, rejectFn) => {
      this.settleSynced = (err) => (err ? rejectFn(err) : resolveFn());
    });
    // Whoever never awaits synced() must not get an unhandled rejection from stop().
    this.syncedPromise.catch(() => undefined);
  }

  /** Creates the directory if it is missing and starts watching it. */
  async start(): Promise<void> {
    if (this.started || this.stopped) {
      throw new Error(`DirectorySource ${this.dir}: start() may be called once, before stop()`);
    }
    this.started = true;
    await mkdir(this.dir, { recursive: true });
    const dirFd = openSync(this.dir, constants.O_RDONLY | constants.O_DIRECTORY);
    this.dirFd = dirFd;
    this.disposables.defer(() => closeSync(dirFd));
    const watcher = watch(this.dir, {
      ignoreInitial: false,
      persistent: true,
      ignored: (path: string, stats?: Stats) => this.ignored(path, stats),
    });
    this.watcher = watcher;
    this.disposables.defer(() => watcher.close());
    this.disposables.defer(() => {
      for (const timer of this.settling.values()) clearTimeout(timer);
      this.settling.clear();
    });
    const onPath = (path: string): void => this.markDirty(path);
    watcher.on('add', onPath);
    watcher.on('change', onPath);
    watcher.on('unlink', onPath);
    // Unfiltered and unthrottled (chokidar drops a `change` within 50 ms of another): every
    // in-place write is seen here.
    watcher.on('raw', (event, path, details) => this.onRawEvent(event, path, details));
    // chokidar reports the files of a removed directory one by one; marking every file known
    // under it makes sure none is missed.
    watcher.on('unlinkDir', (path: string) => {
      const prefix = this.rel(path) + '/';
      for (const file of this.files.keys()) if (file.startsWith(prefix)) this.dirty.add(file);
      this.kick();
    });
    watcher.on('error', (err: unknown) => this.reportWatchError(err));
    watcher.on('ready', () => this.onReady());
  }

  /** Stops watching and processing; pending work is dropped. Objects stay readable. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.dirty.clear();
    if (!this.isSynced)
      this.settleSynced(new Error(`DirectorySource ${this.dir}: stopped before the initial sync`));
    await this.disposables.dispose();
    await this.worker;
  }

  synced(): Promise<void> {
    return this.syncedPromise;
  }

  hasSynced(): boolean {
    return this.isSynced;
  }

  health(): string | undefined {
    if (this.stopped) return `watching ${this.dir} stopped`;
    if (this.dirFd === undefined) return undefined;
    // The watch is on the directory that was there at the start, not on the path: held open, it
    // says whether it still has a name (a new directory at the path may even reuse its inode).
    const watched = fstatSync(this.dirFd);
    let now: Stats;
    try {
      now = statSync(this.dir);
    } catch (err) {
      return `the watch directory ${this.dir} is gone (${errCodeOf(err)}): nothing in it can be seen`;
    }
    if (watched.nlink === 0 || now.ino !== watched.ino || now.dev !== watched.dev)
      return `the watch directory ${this.dir} was replaced: the new one is not watched (restart the controller)`;
    return undefined;
  }

  /**
   * The current object for an identity. Objects are shared with the sink's events, as an
   * informer's cache objects are: read them, copy before changing.
   */
  get(identity: ObjectIdentity): SourcedObject<T> | undefined {
    const stored = this.objects.get(identityKey(identity));
    return stored && { identity: stored.identity, object: stored.object, file: stored.file };
  }

  list(): SourcedObject<T>[] {
    return [...this.objects.values()].map((s) => ({
      identity: s.identity,
      object: s.object,
      file: s.file,
    }));
  }

  /** Files (relative to `dir`) that currently have errors, with the errors. */
  fileErrors(): ReadonlyMap<string, readonly ManifestError[]> {
    return new Map(this.errors);
  }

  /** The absolute path of a file as events name it (relative to `dir`). */
  resolve(file: string): string {
    return join(this.dir, file);
  }

  private rel(path: string): string {
    return relative(this.dir, resolve(this.dir, path)).split(sep).join('/');
  }

  /**
   * chokidar's filter: directories are kept unless hidden or backup-named; files must also
   * have a manifest extension. stats is absent on chokidar's first call for a path.
   */
  private ignored(path: string, stats?: Stats): boolean {
    const rel = this.rel(path);
    if (rel === '' || rel.startsWith('..')) return false;
    if (rel.split('/').some(isIgnoredName)) return true;
    return stats?.isFile() === true && !hasManifestExtension(rel);
  }

  private markDirty(path: string): void {
    const rel = this.rel(path);
    if (!isManifestPath(rel)) return;
    this.dirty.add(rel);
    this.kick();
  }

  /**
   * fs.watch's events as chokidar got them. A directory's watch names the entry (`name`
   * relative to `watchedPath`); a file's own watch reports its old inode after a rename over
   * it, so only what resolves to an entry of a watched directory counts as a write to that name
   * (the file watch's events resolve below the file, to a path that is never a file).
   */
  private onRawEvent(event: string, name: string, details: unknown): void {
    if (!name || this.stopped) return;
    const watched = (details as { watchedPath?: unknown } | undefined)?.watchedPath;
    if (typeof watched !== 'string') return;
    const abs = join(watched, name);
    const rel = this.rel(abs);
    if (rel.startsWith('..') || !isManifestPath(rel)) return;
    if (event === 'rename') {
      // A name appeared (renamed or linked in, created) or went. Only an appearance is acted on
      // here: it may be a change chokidar throttled away. A removal waits for chokidar's
      // `unlink`, which it holds back a little so a delete-and-recreate save is not a delete.
      void stat(abs).then(
        () => this.markDirty(abs),
        () => undefined,
      );
      return;
    }
    if (event !== 'change') return;
    const previous = this.writes.get(rel);
    this.writes.set(rel, { at: performance.now(), count: (previous?.count ?? 0) + 1 });
    this.markDirty(rel);
  }

  /** How long `rel` must still stay quiet after its last in-place write (0: not written). */
  private settleLeft(rel: string): number {
    const write = this.writes.get(rel);
    if (!write) return 0;
    const left = write.at + this.settleMs - performance.now();
    if (left > 0) return left;
    this.writes.delete(rel);
    return 0;
  }

  /** Reads `rel` again once it has been quiet for its settle time (or after `delayMs`). */
  private settleThenRead(rel: string, delayMs = this.settleLeft(rel)): void {
    clearTimeout(this.settling.get(rel));
    const timer = setTimeout(
      () => {
        this.settling.delete(rel);
        this.dirty.add(rel);
        this.kick();
      },
      Math.max(1, delayMs),
    );
    this.settling.set(rel, timer);
  }

  private onReady(): void {
    if (this.stopped) return;
    // chokidar emits the initial adds before 'ready'; its own listing is added too, so the
    // initial sync covers every file it knows of whatever the order of its callbacks.
    const watched = this.watcher?.getWatched() ?? {};
    for (const [dir, names] of Object.entries(watched)) {
      for (const name of names) {
        const rel = this.rel(join(dir, name));
        if (isManifestPath(rel)) this.dirty.add(rel);
      }
    }
    this.initialScan = false;
    this.kick();
  }

  private kick(): void {
    if (this.stopped || this.initialScan || this.worker) return;
    this.worker = this.drain()
      .catch((err: unknown) => this.reportWatchError(err))
      .finally(() => {
        this.worker = undefined;
        if (this.dirty.size > 0) this.kick();
      });
  }

  private async drain(): Promise<void> {
    // Sorted during the initial sync, so ownership at startup does not depend on readdir order.
    const first = !this.isSynced;
    const batch = first ? [...this.dirty].sort() : [];
    while (!this.stopped) {
      const rel = first ? batch.shift() : this.dirty.values().next().value;
      if (rel === undefined) break;
      this.dirty.delete(rel);
      try {
        await this.syncFile(rel);
      } catch (err) {
        // A bug, not input: report it and keep the watcher alive.
        this.reportWatchError(err);
      }
    }
    if (first && !this.stopped) {
      this.isSynced = true;
      this.settleSynced();
    }
  }

  /** Brings the state of one file in line with what is on disk now. */
  private async syncFile(rel: string): Promise<void> {
    const abs = join(this.dir, rel);
    // The initial sync reads what is there (writers still busy are re-read when they finish).
    const settle = this.isSynced;
    if (settle && this.settleLeft(rel) > 0) return this.settleThenRead(rel);
    const writesBefore = this.writes.get(rel)?.count ?? 0;
    let text: string;
    try {
      const st = await stat(abs);
      if (!st.isFile()) return this.removeFile(rel);
      if (st.size > this.maxFileBytes) {
        return this.setParseErrors(rel, [
          {
            file: rel,
            message: `file is ${st.size} bytes, larger than the limit of ${this.maxFileBytes}`,
          },
        ]);
      }
      text = await readFile(abs, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return this.removeFile(rel);
      return this.setParseErrors(rel, [{ file: rel, message: `read: ${(err as Error).message}` }]);
    }
    if (this.stopped) return;
    if (settle) {
      // Two turns: the first may run before the poll phase that delivers what is queued.
      await loopTurns(2);
      if (this.stopped) return;
      if ((this.writes.get(rel)?.count ?? 0) !== writesBefore) return this.settleThenRead(rel);
      if (text === '') {
        const since = this.emptySince.get(rel) ?? performance.now();
        this.emptySince.set(rel, since);
        const left = since + this.settleMs - performance.now();
        if (left > 0) return this.settleThenRead(rel, left);
      }
    }
    this.emptySince.delete(rel);
    if (this.files.get(rel)?.text === text) return;
    const result = parseManifests(text, { file: rel, validate: this.validate });
    if (result.errors.length > 0) return this.setParseErrors(rel, result.errors, text);
    this.applyFile(rel, result.objects, text);
  }

  private fileState(rel: string): FileState<T> {
    let state = this.files.get(rel);
    if (!state) {
      state = { defs: new Map(), parseErrors: [], conflicts: new Map() };
      this.files.set(rel, state);
    }
    return state;
  }

  private setParseErrors(rel: string, errors: ManifestError[], text?: string): void {
    const state = this.fileState(rel);
    state.parseErrors = errors;
    state.text = text;
    this.publishErrors(rel);
  }

  private applyFile(rel: string, parsed: ParsedObject<T>[], text: string): void {
    const state = this.fileState(rel);
    state.parseErrors = [];
    state.text = text;
    const old = state.defs;
    state.defs = new Map(parsed.map((p) => [identityKey(p.identity), p]));
    for (const key of old.keys()) if (!state.defs.has(key)) this.release(key, rel);
    for (const key of state.defs.keys()) this.claim(key, rel);
    this.publishErrors(rel);
  }

  private removeFile(rel: string): void {
    this.emptySince.delete(rel);
    const state = this.files.get(rel);
    if (!state) return;
    for (const key of state.defs.keys()) this.release(key, rel);
    this.files.delete(rel);
    this.publishErrors(rel);
  }

  private claim(key: string, rel: string): void {
    let claimants = this.claims.get(key);
    if (!claimants) {
      claimants = [];
      this.claims.set(key, claimants);
    }
    if (!claimants.includes(rel)) claimants.push(rel);
    const owner = claimants[0];
    const state = this.fileState(rel);
    if (owner === rel) {
      state.conflicts.delete(key);
      this.materialize(key);
      return;
    }
    const mine = state.defs.get(key);
    const theirs = owner === undefined ? undefined : this.files.get(owner)?.defs.get(key);
    if (!mine || owner === undefined) return;
    state.conflicts.set(key, {
      file: rel,
      line: mine.line,
      message:
        `${describeIdentity(mine.identity)} is already defined in ${owner}${theirs ? `:${theirs.line}` : ''}; ` +
        `this definition is ignored while that file defines it`,
    });
  }

  private release(key: string, rel: string): void {
    const claimants = this.claims.get(key) ?? [];
    const index = claimants.indexOf(rel);
    if (index < 0) return;
    claimants.splice(index, 1);
    this.files.get(rel)?.conflicts.delete(key);
    if (index > 0) return; // a waiting claim withdrawn: nothing visible changes
    const next = claimants[0];
    if (next !== undefined) {
      // The earliest waiting file takes over: an update of the same object.
      this.files.get(next)?.conflicts.delete(key);
      this.materialize(key);
      this.publishErrors(next);
      return;
    }
    this.claims.delete(key);
    const stored = this.objects.get(key);
    if (!stored) return;
    this.objects.delete(key);
    this.emit(() => this.sink.onDelete(stored.identity, rel, stored.object));
  }

  /** An earlier run's object (used once): its server-set metadata and what it was defined as. */
  private fromPrevious(key: string):
    | {
        uid: string;
        creationTimestamp: string;
        generation: number;
        desired: Record<string, unknown>;
      }
    | undefined {
    const obj = this.previous.get(key);
    if (!obj) return undefined;
    this.previous.delete(key);
    const m = ((obj as { metadata?: unknown }).metadata ?? {}) as Record<string, unknown>;
    if (
      typeof m.uid !== 'string' ||
      typeof m.creationTimestamp !== 'string' ||
      typeof m.generation !== 'number' ||
      !Number.isSafeInteger(m.generation) ||
      m.generation < 1
    ) {
      return undefined;
    }
    return {
      uid: m.uid,
      creationTimestamp: m.creationTimestamp,
      generation: m.generation,
      desired: withoutServerFields(obj),
    };
  }

  /** Makes the stored object match its owner's definition, emitting an upsert if anything changed. */
  private materialize(key: string): void {
    const owner = this.claims.get(key)?.[0];
    const def = owner === undefined ? undefined : this.files.get(owner)?.defs.get(key);
    if (owner === undefined || !def) return;
    const desired = withoutServerFields(def.object);
    const stored = this.objects.get(key);
    if (stored && stored.file === owner && sameJson(stored.desired, desired)) return;

    let generation = 1;
    let uid = this.newUid();
    let creationTimestamp = rfc3339(this.now());
    const before = stored ?? this.fromPrevious(key);
    if (before) {
      ({ uid, creationTimestamp } = before);
      generation = sameJson(withoutMetadata(before.desired), withoutMetadata(desired))
        ? before.generation
        : before.generation + 1;
    }
    const metadata = {
      ...(desired.metadata as Record<string, unknown>),
      uid,
      creationTimestamp,
      generation,
      resourceVersion: this.nextResourceVersion(),
    };
    // desired came from a validated T and only server-set fields were added back.
    const object = { ...desired, metadata } as unknown as T;
    this.objects.set(key, {
      identity: def.identity,
      file: owner,
      desired,
      object,
      uid,
      creationTimestamp,
      generation,
    });
    this.emit(() => this.sink.onUpsert(object, owner));
  }

  private publishErrors(rel: string): void {
    const state = this.files.get(rel);
    const errors = state ? [...state.parseErrors, ...state.conflicts.values()] : [];
    const previous = this.errors.get(rel);
    if (errors.length === 0) {
      if (!previous) return;
      this.errors.delete(rel);
      this.emit(() => this.sink.onErrorResolved?.(rel));
      return;
    }
    if (previous && sameJson(previous, errors)) return;
    this.errors.set(rel, errors);
    this.emit(() => this.sink.onError(rel, errors));
  }

  /** A sink that throws is a bug in the sink; it must not stop the source. */
  private emit(call: () => void): void {
    try {
      call();
    } catch (err) {
      this.reportWatchError(err);
    }
  }

  private reportWatchError(err: unknown): void {
    const error = err instanceof Error ? err : new Error(String(err));
    try {
      if (this.sink.onWatchError) this.sink.onWatchError(error);
      else console.error(`DirectorySource ${this.dir}: ${error.message}`);
    } catch {
      console.error(`DirectorySource ${this.dir}: ${error.message}`);
    }
  }
}

const SERVER_METADATA = [
  'uid',
  'generation',
  'resourceVersion',
  'creationTimestamp',
  'managedFields',
  'selfLink',
];

/** The object as a user defines it: no status, no server-set metadata. */
function withoutServerFields(obj: object): Record<string, unknown> {
  const copy: Record<string, unknown> = { ...obj };
  delete copy.status;
  const metadata = Object.fromEntries(
    Object.entries((copy.metadata ?? {}) as Record<string, unknown>).filter(
      ([k]) => !SERVER_METADATA.includes(k),
    ),
  );
  return { ...copy, metadata };
}

/** What generation counts: everything but metadata (status is already gone). */
function withoutMetadata(obj: Record<string, unknown>): Record<string, unknown> {
  const copy = { ...obj };
  delete copy.metadata;
  return copy;
}

/** Kubernetes timestamps: RFC 3339 in UTC with second precision. */
function rfc3339(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

function errCodeOf(err: unknown): string {
  return (err as NodeJS.ErrnoException).code ?? String(err);
}
