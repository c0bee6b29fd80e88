/**
 * The controller's side of the on-disk contract (controller/README.md): the objects with their
 * status, the sources' outcome, events and controller.json, all under the state directory and
 * written atomically, so the CLI reads a consistent picture and a restarted controller finds
 * the status it wrote.
 */
import { readFile, readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';

import { KIND_NAMES, KINDS, type Kind } from '../api/kinds.js';
import { writeFileAtomic } from '../../runtime-core/src/index.js';
import type { ConductorObject } from '../api/types.generated.js';

export interface ControllerInfo {
  pid: number;
  pidStartTime: string;
  watchDir: string;
  metricsAddr: string;
  startedAt: string;
  version: string;
}

export interface FileOutcome {
  objects: { kind: string; namespace: string; name: string }[];
  errors: { line?: number; column?: number; path?: string; message: string }[];
}

/** One line of events/<plural>/<namespace>/<name>.jsonl. */
export interface StoredEvent {
  /** When it (last) happened. */
  time: string;
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
  /** How many times it happened (absent: once), the first time at firstTime. */
  count?: number;
  firstTime?: string;
}

/**
 * Adds `event` to an object's events as the Kubernetes event recorder does: one that repeats an
 * earlier one (same type, reason and message) is folded into it — its count goes up, its time
 * becomes the latest, and it moves to the end — so a crash loop's 18 identical Failed events
 * read as one (`x18 over 40s`). At most `kept` events are kept, the oldest dropped first.
 */
export function foldEvent(events: StoredEvent[], event: StoredEvent, kept: number): StoredEvent[] {
  const same = (e: StoredEvent): boolean =>
    e.type === event.type && e.reason === event.reason && e.message === event.message;
  const earlier = events.find(same);
  const next: StoredEvent = earlier
    ? {
        ...event,
        count: (earlier.count ?? 1) + (event.count ?? 1),
        firstTime: earlier.firstTime ?? earlier.time,
      }
    : event;
  return [...events.filter((e) => !same(e)), next].slice(-kept);
}

const EVENTS_KEPT = 50;
/**
 * How long the events of an object that is gone are kept: the API server's default --event-ttl
 * (1 h), so `conductor get events` still shows what happened to a deleted container (its
 * Killing), as kubectl does.
 */
export const EVENT_TTL_MS = 60 * 60 * 1000;

export class StateStore {
  /** Writes to one path are serialised: the last write always wins on disk. */
  private readonly chains = new Map<string, Promise<void>>();

  constructor(readonly dir: string) {}

  private serial(path: string, op: () => Promise<void>): Promise<void> {
    const next = (this.chains.get(path) ?? Promise.resolve()).then(op, op);
    this.chains.set(path, next);
    void next.finally(() => {
      if (this.chains.get(path) === next) this.chains.delete(path);
    });
    return next;
  }

  objectPath(kind: Kind, namespace: string, name: string): string {
    return join(this.dir, 'objects', KINDS[kind].plural, namespace, `${name}.json`);
  }

  writeObject(object: ConductorObject): Promise<void> {
    const { kind, metadata } = object;
    const path = this.objectPath(kind, metadata.namespace, metadata.name);
    return this.serial(path, () => writeFileAtomic(path, `${JSON.stringify(object, null, 2)}\n`));
  }

  /** The object's record goes; its events stay until pruneEvents() finds them expired. */
  removeObject(kind: Kind, namespace: string, name: string): Promise<void> {
    const path = this.objectPath(kind, namespace, name);
    return this.serial(path, () => rm(path, { force: true }));
  }

  /** What the last run persisted, for restoring status after a restart. */
  async readObjects(kind: Kind): Promise<ConductorObject[]> {
    const base = join(this.dir, 'objects', KINDS[kind].plural);
    const out: ConductorObject[] = [];
    for (const ns of await readdir(base).catch(() => [] as string[])) {
      for (const f of await readdir(join(base, ns)).catch(() => [] as string[])) {
        if (!f.endsWith('.json') || f.startsWith('.')) continue;
        try {
          out.push(JSON.parse(await readFile(join(base, ns, f), 'utf8')) as ConductorObject);
        } catch {
          // A damaged file only loses the old status; the object comes back from its manifest.
        }
      }
    }
    return out;
  }

  writeSources(watchDir: string, files: Record<string, FileOutcome>): Promise<void> {
    const path = join(this.dir, 'sources.json');
    return this.serial(path, () =>
      writeFileAtomic(path, `${JSON.stringify({ watchDir, files }, null, 2)}\n`),
    );
  }

  private eventsPath(kind: Kind, namespace: string, name: string): string {
    return join(this.dir, 'events', KINDS[kind].plural, namespace, `${name}.jsonl`);
  }

  recordEvent(kind: Kind, namespace: string, name: string, event: StoredEvent): Promise<void> {
    const path = this.eventsPath(kind, namespace, name);
    return this.serial(path, async () => {
      const old = await readFile(path, 'utf8').catch(() => '');
      const events: StoredEvent[] = [];
      for (const line of old.split('\n').filter(Boolean)) {
        try {
          events.push(JSON.parse(line) as StoredEvent);
        } catch {
          // A line cut short: dropped, the others kept.
        }
      }
      const lines = foldEvent(events, event, EVENTS_KEPT).map((e) => JSON.stringify(e));
      await writeFileAtomic(path, `${lines.join('\n')}\n`);
    });
  }

  /**
   * Removes the events of objects that are gone once nothing has been recorded about them for
   * `ttlMs` (the file's mtime is its last event). Returns the files removed.
   */
  async pruneEvents(now: Date, ttlMs = EVENT_TTL_MS): Promise<string[]> {
    const removed: string[] = [];
    for (const kind of KIND_NAMES) {
      const base = join(this.dir, 'events', KINDS[kind].plural);
      for (const ns of await readdir(base).catch(() => [] as string[])) {
        for (const f of await readdir(join(base, ns)).catch(() => [] as string[])) {
          if (!f.endsWith('.jsonl') || f.startsWith('.')) continue;
          const name = f.slice(0, -'.jsonl'.length);
          const path = join(base, ns, f);
          const [events, object] = await Promise.all([
            stat(path).catch(() => undefined),
            stat(this.objectPath(kind, ns, name)).catch(() => undefined),
          ]);
          if (object || !events || now.getTime() - events.mtimeMs < ttlMs) continue;
          // Serialised with recording, so an event being written now is not lost.
          await this.serial(path, async () => {
            const again = await stat(path).catch(() => undefined);
            if (again && now.getTime() - again.mtimeMs >= ttlMs) {
              await rm(path, { force: true });
              removed.push(path);
            }
          });
        }
      }
    }
    return removed;
  }

  async readControllerInfo(): Promise<ControllerInfo | undefined> {
    try {
      return JSON.parse(
        await readFile(join(this.dir, 'controller.json'), 'utf8'),
      ) as ControllerInfo;
    } catch {
      return undefined;
    }
  }

  writeControllerInfo(info: ControllerInfo): Promise<void> {
    const path = join(this.dir, 'controller.json');
    return this.serial(path, () => writeFileAtomic(path, `${JSON.stringify(info, null, 2)}\n`));
  }

  removeControllerInfo(): Promise<void> {
    const path = join(this.dir, 'controller.json');
    return this.serial(path, () => rm(path, { force: true }));
  }

  /** Waits for every pending write. */
  async flush(): Promise<void> {
    await Promise.allSettled([...this.chains.values()]);
  }
}
