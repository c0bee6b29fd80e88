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
import { parseSource } from '../../runtime-core/src/index.js';

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
  paths: string[];
  root: string;
  targets: string;
  watchers: FSWatcher[];
  timer?: NodeJS.Timeout;
  /** Bumped by every change seen: a build compares it before and after reading the inputs. */
  version: number;
  /** A quiet timer is running, or the watch is being moved closer: a burst is not over. */
  busy: boolean;
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
   * `quietMs` (an editor's save, a `cp -r`, a tar extracting, a script filling a directory). A
   * burst that creates a missing input is followed into it: its watch moves to what appeared
   * (recursively) and the quiet time starts again, so a tree being filled is built once, when
   * it is complete, not from each state it passes through.
   */
  constructor(
    private readonly onChange: (key: string) => void,
    private readonly onError: (key: string, err: Error) => void,
    private readonly quietMs = 100,
  ) {}

  /**
   * Watches `paths` (inside `root`) for the Image `key`, replacing what it watched before unless
   * that is the same. Resolves once the watch is in place: a change after that is never missed.
   */
  async set(key: string, paths: string[], root: string): Promise<void> {
    const { present, parents } = await targetsOf(paths, root);
    const targets = JSON.stringify([present, parents]);
    const old = this.watched.get(key);
    if (old?.targets === targets) {
      old.paths = paths;
      old.root = root;
      return;
    }
    await this.delete(key);
    if (paths.length === 0) return;
    const w: Watched = { paths, root, targets, watchers: [], version: 0, busy: false };
    this.watched.set(key, w);
    await this.watch(key, w, present, parents);
  }

  /**
   * Changes seen under `key`'s inputs so far. A build that read them is stale if this moved
   * while it ran (see settled()).
   */
  version(key: string): number {
    return this.watched.get(key)?.version ?? 0;
  }

  /** Whether a burst of changes under `key`'s inputs is still going on (onChange will follow). */
  busy(key: string): boolean {
    return this.watched.get(key)?.busy ?? false;
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

  private async watch(key: string, w: Watched, present: string[], parents: string[]) {
    // Symlinks are not followed: a copy takes the link, not what it points to.
    const options = { ignoreInitial: true, followSymlinks: false };
    const watchers: FSWatcher[] = [];
    if (present.length > 0) watchers.push(watch(present, options));
    if (parents.length > 0) watchers.push(watch(parents, { ...options, depth: 0 }));
    w.watchers.push(...watchers);
    const ready = watchers.map((watcher) => {
      // chokidar reports symlinks found by its initial scan as `add` despite ignoreInitial
      // (with followSymlinks off): what exists before the watch is ready is not a change.
      let scanned = false;
      watcher.on('all', () => {
        if (!scanned || this.watched.get(key) !== w) return;
        w.version += 1;
        this.quiet(key, w);
      });
      watcher.on('error', (err) => this.onError(key, err as Error));
      return new Promise<void>((resolve) =>
        watcher.once('ready', () => {
          scanned = true;
          resolve();
        }),
      );
    });
    await Promise.all(ready);
  }

  /** (Re)starts the quiet timer of a burst. */
  private quiet(key: string, w: Watched): void {
    w.busy = true;
    clearTimeout(w.timer);
    w.timer = setTimeout(() => void this.quietEnded(key, w), this.quietMs);
  }

  private async quietEnded(key: string, w: Watched): Promise<void> {
    const timer = w.timer;
    // Not the watch of key any more, or a new change restarted the quiet time meanwhile.
    const superseded = (): boolean => this.watched.get(key) !== w || w.timer !== timer;
    if (superseded()) return;
    try {
      const { present, parents } = await targetsOf(w.paths, w.root);
      const targets = JSON.stringify([present, parents]);
      if (superseded()) return;
      if (targets !== w.targets) {
        // A missing input (or a parent of one) appeared: watch it, recursively, before telling
        // anyone. What was written into it before its watch was ready went unseen, so the
        // quiet time starts again from now.
        const old = w.watchers.splice(0);
        w.targets = targets;
        await Promise.all(old.map((watcher) => watcher.close()));
        await this.watch(key, w, present, parents);
        if (this.watched.get(key) !== w) return;
        w.version += 1;
        this.quiet(key, w);
        return;
      }
    } catch (err) {
      this.onError(key, err as Error);
    }
    if (superseded()) return;
    w.busy = false;
    w.timer = undefined;
    this.onChange(key);
  }
}

/**
 * Resolves once the inotify events the kernel queued before the call have been delivered to
 * the watchers (each turn of the event loop has a poll phase), so a version() read afterwards
 * counts every change made before settled() was called.
 */
export async function settled(turns = 3): Promise<void> {
  for (let i = 0; i < turns; i++) await new Promise<void>((r) => setImmediate(r));
}
