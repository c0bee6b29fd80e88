/**
 * The local files an Image is built from — its copy sources, and the archive or OCI layout its
 * `from` names — are part of its desired state as much as its manifest is: when one changes,
 * the Image is reconciled again (and rebuilt from the first step whose input changed), and the
 * Containers that use it are replaced once its digest changes. InputWatcher watches them, per
 * Image, and says which Image to reconcile.
 */
import { lstat } from 'node:fs/promises';
import { dirname, isAbsolute, relative, resolve } from 'node:path';

import { watch, type FSWatcher } from 'chokidar';

import type { ImageSpec } from '../api/types.generated.js';
import { parseSource } from '../../runtime-core/src/images/reference.js';

/**
 * The absolute paths of an Image's local inputs, inside its manifest's directory (the builder
 * refuses anything outside it, so nothing else is watched).
 */
export function localInputs(spec: ImageSpec, contextDir: string): string[] {
  const paths: string[] = [];
  try {
    const from = parseSource(spec.from);
    if (from.kind === 'oci-archive' || from.kind === 'docker-archive' || from.kind === 'oci')
      paths.push(from.path);
  } catch {
    // An invalid `from` fails the build; there is nothing to watch for it.
  }
  for (const step of spec.steps ?? []) if (step.copy) paths.push(step.copy.src);
  const inside = paths
    .map((p) => resolve(contextDir, p))
    .filter((p) => {
      const rel = relative(contextDir, p);
      return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel));
    });
  return [...new Set(inside)].sort();
}

interface Watched {
  targets: string;
  watchers: FSWatcher[];
  timer?: NodeJS.Timeout;
}

/**
 * What to watch for `paths`: those that exist, recursively; for one that does not (yet), its
 * nearest existing ancestor inside `root`, one level deep, so its creation is seen.
 */
async function targetsOf(
  paths: string[],
  root: string,
): Promise<{ present: string[]; parents: string[] }> {
  const exists = (p: string) =>
    lstat(p).then(
      () => true,
      () => false,
    );
  const present: string[] = [];
  const parents = new Set<string>();
  for (const path of paths) {
    if (await exists(path)) {
      present.push(path);
      continue;
    }
    let dir = dirname(path);
    while (dir !== root && dir.startsWith(`${root}/`) && !(await exists(dir))) dir = dirname(dir);
    parents.add(dir);
  }
  return { present, parents: [...parents].sort() };
}

export class InputWatcher {
  private readonly watched = new Map<string, Watched>();

  /**
   * `onChange(key)` runs once a burst of changes under one Image's inputs has been quiet for
   * `quietMs` (an editor's save, a `cp -r`, a tar extracting).
   */
  constructor(
    private readonly onChange: (key: string) => void,
    private readonly onError: (key: string, err: Error) => void,
    private readonly quietMs = 50,
  ) {}

  /**
   * Watches `paths` (inside `root`) for the Image `key`, replacing what it watched before unless
   * that is the same. Resolves once the watch is in place: a change after that is never missed.
   */
  async set(key: string, paths: string[], root: string): Promise<void> {
    const { present, parents } = await targetsOf(paths, root);
    const targets = JSON.stringify([present, parents]);
    const old = this.watched.get(key);
    if (old?.targets === targets) return;
    await this.delete(key);
    if (paths.length === 0) return;
    const w: Watched = { targets, watchers: [] };
    // Symlinks are not followed: a copy takes the link, not what it points to.
    const options = { ignoreInitial: true, followSymlinks: false };
    if (present.length > 0) w.watchers.push(watch(present, options));
    if (parents.length > 0) w.watchers.push(watch(parents, { ...options, depth: 0 }));
    this.watched.set(key, w);
    for (const watcher of w.watchers) {
      watcher.on('all', () => {
        clearTimeout(w.timer);
        w.timer = setTimeout(() => {
          if (this.watched.get(key) === w) this.onChange(key);
        }, this.quietMs);
      });
      watcher.on('error', (err) => this.onError(key, err as Error));
    }
    await Promise.all(
      w.watchers.map((watcher) => new Promise<void>((ready) => watcher.once('ready', ready))),
    );
  }

  async delete(key: string): Promise<void> {
    const w = this.watched.get(key);
    if (!w) return;
    this.watched.delete(key);
    clearTimeout(w.timer);
    await Promise.all(w.watchers.map((watcher) => watcher.close()));
  }

  async close(): Promise<void> {
    await Promise.all([...this.watched.keys()].map((key) => this.delete(key)));
  }
}
