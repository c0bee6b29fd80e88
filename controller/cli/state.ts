/**
 * Reading the state directory, the CLI's only view of the controller (controller/README.md,
 * "On-disk contract"). The controller writes every file atomically, so a read sees a whole
 * file or none; a file that disappears between listing and reading is simply skipped.
 */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';

import { KIND_NAMES, KINDS, type Kind } from '../api/kinds.js';
import { errCode, procStartTime, readJson } from '../../runtime-core/src/index.js';

export { procStartTime };
import type { ManifestError, ObjectIdentity } from '../source/manifests.js';
import { CliError, type CliIO } from './io.js';
import type { StoredEvent } from '../store/state-store.js';

/** controller.json: who the running controller is and what it watches. */
export interface ControllerInfo {
  pid: number;
  /**
   * The process's start time, field 22 of /proc/PID/stat (clock ticks since boot), as a number
   * or a decimal string; with the pid it tells the controller from a process that reused its pid.
   */
  pidStartTime: number | string;
  watchDir: string;
  metricsAddr?: string;
  startedAt?: string;
  version?: string;
}

/** One file's entry in sources.json. */
export interface SourceFile {
  objects: ObjectIdentity[];
  errors: Omit<ManifestError, 'file'>[];
}

/** sources.json: what every file in the watch dir defines, and its errors. */
export interface SourcesState {
  watchDir: string;
  files: Record<string, SourceFile>;
}

/** One line of events/<plural>/<namespace>/<name>.jsonl (written by store/state-store.ts). */
export type EventRecord = StoredEvent;

/** An event with the object it is about: a row of `conductor get events`. */
export interface ListedEvent {
  /** Tells an event from every other of the listing, and the same event updated (a repeat). */
  key: string;
  namespace: string;
  /** The object's kind (Container, Image, Service) and name. */
  kind: string;
  name: string;
  event: EventRecord;
  /** Who recorded it (an API server's reportingController, reportingInstance). */
  source?: string;
  /** The events.k8s.io/v1 Event as the API server has it (--kubeconfig). */
  object?: unknown;
}

/** A stored object: `kubectl get -o json` shape. Only what the CLI relies on is typed. */
export interface StoredObject {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace: string;
    creationTimestamp?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    [field: string]: unknown;
  };
  spec?: Record<string, unknown>;
  status?: Record<string, unknown>;
}

async function listDir(path: string): Promise<string[]> {
  try {
    return (await readdir(path)).sort();
  } catch (err) {
    if (errCode(err) === 'ENOENT' || errCode(err) === 'ENOTDIR') return [];
    throw err;
  }
}

export class StateDir {
  constructor(readonly dir: string) {}

  get controllerFile(): string {
    return join(this.dir, 'controller.json');
  }

  readControllerInfo(): Promise<ControllerInfo | undefined> {
    return readJson<ControllerInfo>(this.controllerFile);
  }

  /**
   * controller.json if its process is still the controller that wrote it (same pid and start
   * time); a file left behind by a killed controller does not count.
   */
  async runningController(): Promise<ControllerInfo | undefined> {
    const info = await this.readControllerInfo();
    if (!info || !Number.isInteger(info.pid)) return undefined;
    const start = procStartTime(info.pid);
    return start !== undefined && start === String(info.pidStartTime) ? info : undefined;
  }

  /** Whether a controller has ever recorded anything here (objects or its sources). */
  async hasRecords(): Promise<boolean> {
    if ((await this.readSources()) !== undefined) return true;
    return (await listDir(join(this.dir, 'objects'))).length > 0;
  }

  async readSources(): Promise<SourcesState | undefined> {
    return readJson<SourcesState>(join(this.dir, 'sources.json'));
  }

  objectPath(kind: Kind, namespace: string, name: string): string {
    return join(this.dir, 'objects', KINDS[kind].plural, namespace, `${name}.json`);
  }

  getObject(kind: Kind, namespace: string, name: string): Promise<StoredObject | undefined> {
    return readJson<StoredObject>(this.objectPath(kind, namespace, name));
  }

  /** Objects of a kind in one namespace, or in all (`namespace` undefined), by namespace then name. */
  async listObjects(kind: Kind, namespace?: string): Promise<StoredObject[]> {
    const base = join(this.dir, 'objects', KINDS[kind].plural);
    const namespaces = namespace === undefined ? await listDir(base) : [namespace];
    const out: StoredObject[] = [];
    for (const ns of namespaces) {
      for (const file of await listDir(join(base, ns))) {
        if (!file.endsWith('.json') || file.startsWith('.')) continue;
        const obj = await readJson<StoredObject>(join(base, ns, file));
        if (obj) out.push(obj);
      }
    }
    return out;
  }

  /**
   * Every object's events in one namespace, or in all (`namespace` undefined), the objects that
   * are gone included (their events are kept for an hour); unsorted.
   */
  async listEvents(namespace?: string): Promise<ListedEvent[]> {
    const out: ListedEvent[] = [];
    for (const kind of KIND_NAMES) {
      const base = join(this.dir, 'events', KINDS[kind].plural);
      for (const ns of namespace === undefined ? await listDir(base) : [namespace]) {
        for (const file of await listDir(join(base, ns))) {
          if (!file.endsWith('.jsonl') || file.startsWith('.')) continue;
          const name = file.slice(0, -'.jsonl'.length);
          for (const event of await this.readEvents(kind, ns, name)) {
            const key = JSON.stringify([kind, ns, name, event.type, event.reason, event.message]);
            out.push({ key, namespace: ns, kind, name, event });
          }
        }
      }
    }
    return out;
  }

  /** Events of one object, oldest first; lines that do not parse are skipped. */
  async readEvents(kind: Kind, namespace: string, name: string): Promise<EventRecord[]> {
    const path = join(this.dir, 'events', KINDS[kind].plural, namespace, `${name}.jsonl`);
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (err) {
      if (errCode(err) === 'ENOENT') return [];
      throw err;
    }
    const events: EventRecord[] = [];
    for (const line of text.split('\n')) {
      if (line.trim() === '') continue;
      try {
        events.push(JSON.parse(line) as EventRecord);
      } catch {
        // A line cut short by a crash mid-append: the others are still worth showing.
      }
    }
    return events;
  }
}

/** The file (relative to the watch dir) that defines an object, according to sources.json. */
export function fileDefining(
  sources: SourcesState | undefined,
  id: ObjectIdentity,
): string | undefined {
  if (!sources) return undefined;
  for (const [file, entry] of Object.entries(sources.files)) {
    if (
      entry.objects.some(
        (o) => o.kind === id.kind && o.namespace === id.namespace && o.name === id.name,
      )
    ) {
      return file;
    }
  }
  return undefined;
}

/** What to say when no controller runs for `dir`: which, and how to start one. */
export function noControllerMessage(dir: string): string {
  return `no controller is running for state dir ${dir} (start one with \`conductor up --state-dir ${dir}\`)`;
}

/**
 * What the commands that read a controller's records (get, describe, images) make of a state
 * dir without a running controller, as kubectl does when it cannot reach its server: if none
 * has ever run there, an error (an empty listing would say "No resources found" of a cluster
 * that is not there); if one ran and stopped, its last records, with a warning that nothing
 * updates them meanwhile (containers keep running without it).
 */
export async function checkController(state: StateDir, io: CliIO): Promise<void> {
  if (await state.runningController()) return;
  if (!(await state.hasRecords())) throw new CliError(noControllerMessage(state.dir));
  io.stderr(`warning: ${noControllerMessage(state.dir)}; showing what it last recorded\n`);
}
