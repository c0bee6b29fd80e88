/**
 * The images of a state dir that are built: an Image the controller recorded Ready
 * (`objects/images/NS/NAME.json`), or one `conductor build` built there without a controller
 * (`builds/NS/NAME.json`, the same Image object with the status the controller would have
 * written). `conductor image export` and `from: image:NAME` in `conductor build` take the newer
 * of the two, by the time each became Ready.
 *
 * A build record does not keep its layers: `conductor images prune` removes layers no Image of
 * the controller uses, and an export of a record whose layers are gone says so.
 */
import { join } from 'node:path';

import type { ImageStatus } from '../api/types.generated.js';
import { readJson, writeFileAtomic } from '../../runtime-core/src/index.js';
import type { StateDir, StoredObject } from './state.js';

export interface BuiltImageRecord {
  object: StoredObject;
  status: ImageStatus;
  /** Who built it: the controller's Image, or `conductor build`. */
  builtBy: 'controller' | 'conductor build';
  /** When it became Ready (the Ready condition's lastTransitionTime), if recorded. */
  readyAt?: string;
}

export function buildRecordPath(state: StateDir, namespace: string, name: string): string {
  return join(state.dir, 'builds', namespace, `${name}.json`);
}

export async function writeBuildRecord(state: StateDir, object: StoredObject): Promise<void> {
  await writeFileAtomic(
    buildRecordPath(state, object.metadata.namespace, object.metadata.name),
    `${JSON.stringify(object, null, 2)}\n`,
  );
}

function readyAt(status: ImageStatus | undefined): string | undefined {
  return status?.conditions?.find((c) => c.type === 'Ready' && c.status === 'True')
    ?.lastTransitionTime;
}

function record(
  object: StoredObject | undefined,
  builtBy: BuiltImageRecord['builtBy'],
): BuiltImageRecord | undefined {
  const status = object?.status as ImageStatus | undefined;
  if (!object || status?.phase !== 'Ready' || !status.digest) return undefined;
  const at = readyAt(status);
  return { object, status, builtBy, ...(at ? { readyAt: at } : {}) };
}

/** The newer of two built records (the controller's on a tie, or when a time is missing). */
function newer(
  controller: BuiltImageRecord | undefined,
  build: BuiltImageRecord | undefined,
): BuiltImageRecord | undefined {
  if (!controller || !build) return controller ?? build;
  if (!controller.readyAt || !build.readyAt) return controller;
  return Date.parse(build.readyAt) > Date.parse(controller.readyAt) ? build : controller;
}

/** The newest built Image NAME of namespace NS, or undefined when none is Ready. */
export async function builtImage(
  state: StateDir,
  namespace: string,
  name: string,
): Promise<BuiltImageRecord | undefined> {
  return newer(
    record(await state.getObject('Image', namespace, name), 'controller'),
    record(
      await readJson<StoredObject>(buildRecordPath(state, namespace, name)),
      'conductor build',
    ),
  );
}
