/**
 * The layer store: `<state>/layers/<key>` is one layer, a plain directory used as an overlayfs
 * lowerdir as it is (whiteouts are overlayfs whiteouts). Keys are content addresses (64 hex
 * digits): a build step's key comes from its parent's key, the step and what it copies; a pulled
 * layer's from its parent chain and its diff_id. So a layer shared between images is stored once,
 * and an unchanged step finds its layer and does not run.
 *
 * A layer appears by rename of a complete temporary directory (`.tmp-*`), so it is whole or absent.
 * `<state>/layers/<key>.json` records its size, what made it and when it was last used (prune
 * keeps recently used layers: a build in progress may be about to reference them).
 *
 * Distribution bases may live in a separate cache directory (shared by several state dirs, as
 * the test suites do); then `<state>/layers/<key>` is a symlink to it.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { lstat, mkdir, readdir, rename, rm, symlink, utimes } from 'node:fs/promises';
import { join } from 'node:path';

import { errCode, isMounted, readJson, writeJsonAtomic } from '../files.js';
import { unmount } from '../native.js';

export const LAYER_KEY = /^[a-f0-9]{64}$/;

/** Whether a process with this pid exists (builds are owned by their process). */
export function processAlive(pid: number): boolean {
  return Number.isSafeInteger(pid) && pid > 0 && existsSync(`/proc/${pid}`);
}

export interface LayerMeta {
  key: string;
  /** Bytes of file content (apparent sizes), as `du --apparent-size` counts. */
  size: number;
  /** What made it: `copy SRC DEST`, `run CMD`, `pull sha256:…`, `debootstrap debian bookworm`. */
  createdBy: string;
  createdAt: string;
}

export class LayerStore {
  readonly dir: string;

  constructor(
    readonly stateDir: string,
    /** Where distribution bases are built (default: with the other layers). */
    readonly baseCacheDir?: string,
  ) {
    this.dir = join(stateDir, 'layers');
  }

  path(key: string): string {
    if (!LAYER_KEY.test(key)) throw new Error(`invalid layer key "${key}"`);
    return join(this.dir, key);
  }

  /** True when the layer is complete on disk; marks it used. */
  /** True when the layer is complete on disk (a base's through its symlink). */
  async exists(key: string): Promise<boolean> {
    return (await lstat(join(this.path(key), '.')).catch(() => undefined)) !== undefined;
  }

  async has(key: string): Promise<boolean> {
    if (!(await this.exists(key))) return false;
    const now = new Date();
    await utimes(`${this.path(key)}.json`, now, now).catch(() => undefined);
    return true;
  }

  async meta(key: string): Promise<LayerMeta | undefined> {
    return readJson<LayerMeta>(`${this.path(key)}.json`);
  }

  /** A fresh path for a layer being made (not created: callers mkdir or rename into it). */
  async tempPath(base = this.dir): Promise<string> {
    await mkdir(base, { recursive: true, mode: 0o700 });
    return join(base, `.tmp-${process.pid}-${randomBytes(6).toString('hex')}`);
  }

  /**
   * Moves a finished temporary directory into place as layer `key`. If another build made the
   * same layer meanwhile, that one is kept and `tmp` removed: same key, same content.
   */
  async commit(tmp: string, key: string, createdBy: string): Promise<LayerMeta> {
    return this.commitAt(tmp, this.path(key), key, createdBy);
  }

  /** A base built in baseCacheDir: linked into this store under its key. */
  async commitBase(tmp: string, key: string, createdBy: string): Promise<LayerMeta> {
    if (!this.baseCacheDir || this.baseCacheDir === this.dir)
      return this.commit(tmp, key, createdBy);
    if (!LAYER_KEY.test(key)) throw new Error(`invalid layer key "${key}"`);
    const meta = await this.commitAt(tmp, join(this.baseCacheDir, key), key, createdBy);
    await this.linkBase(key);
    return meta;
  }

  /** Links an already built base from baseCacheDir; false if there is none. */
  async linkBase(key: string): Promise<boolean> {
    if (!this.baseCacheDir || this.baseCacheDir === this.dir) return this.has(key);
    const cached = join(this.baseCacheDir, key);
    const meta = await readJson<LayerMeta>(`${cached}.json`);
    if (!meta) return false;
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    await symlink(cached, this.path(key)).catch((err: unknown) => {
      if (errCode(err) !== 'EEXIST') throw err;
    });
    await writeJsonAtomic(`${this.path(key)}.json`, meta);
    return true;
  }

  private async commitAt(
    tmp: string,
    target: string,
    key: string,
    createdBy: string,
  ): Promise<LayerMeta> {
    const meta: LayerMeta = {
      key,
      size: await treeSize(tmp),
      createdBy,
      createdAt: new Date().toISOString(),
    };
    try {
      await rename(tmp, target);
    } catch (err) {
      if (errCode(err) !== 'ENOTEMPTY' && errCode(err) !== 'EEXIST') throw err;
      await rm(tmp, { recursive: true, force: true });
      return (await readJson<LayerMeta>(`${target}.json`)) ?? meta;
    }
    await writeJsonAtomic(`${target}.json`, meta);
    return meta;
  }

  /** Every complete layer with its metadata (layers without metadata get a computed size). */
  async list(): Promise<LayerMeta[]> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (err) {
      if (errCode(err) === 'ENOENT') return [];
      throw err;
    }
    const out: LayerMeta[] = [];
    for (const name of names) {
      if (!LAYER_KEY.test(name)) continue;
      out.push(
        (await this.meta(name)) ?? {
          key: name,
          size: await treeSize(this.path(name)),
          createdBy: '',
          createdAt: '',
        },
      );
    }
    return out;
  }

  /**
   * Removes what builds of dead processes left (`.tmp-<pid>-*`: a layer being made, an image
   * mounted for a copy step), unmounting first. A live process's are its own business.
   */
  async removeStale(): Promise<string[]> {
    const stale: string[] = [];
    for (const base of new Set([this.dir, this.baseCacheDir ?? this.dir])) {
      for (const name of await readdir(base).catch(() => [] as string[])) {
        const m = /^\.tmp-(\d+)-/.exec(name);
        if (m && !processAlive(Number(m[1]))) stale.push(join(base, name));
      }
    }
    // Every mount first: an upper directory is removed only once no overlay uses it.
    for (const path of stale) if (isMounted(path)) await unmount(path, { detach: true });
    for (const path of stale) await rm(path, { recursive: true, force: true });
    return stale;
  }

  /** Removes a layer (a base's link only, not the shared cache entry). */
  async remove(key: string): Promise<void> {
    await rm(this.path(key), { recursive: true, force: true });
    await rm(`${this.path(key)}.json`, { force: true });
  }
}

/** Apparent size of a tree: file contents and link targets; each hard-linked inode once. */
export async function treeSize(root: string): Promise<number> {
  const seen = new Set<string>();
  let total = 0;
  const walk = async (p: string): Promise<void> => {
    const st = await lstat(p);
    if (st.isDirectory()) {
      for (const name of await readdir(p)) await walk(join(p, name));
      return;
    }
    if (st.nlink > 1) {
      const id = `${st.dev}:${st.ino}`;
      if (seen.has(id)) return;
      seen.add(id);
    }
    total += st.size;
  };
  await walk(root);
  return total;
}

export interface PruneResult {
  removed: LayerMeta[];
  /** Unreferenced layers kept because they were made or used within the grace period. */
  keptRecent: number;
  /** Bytes of the removed layers. */
  reclaimed: number;
}

/**
 * Removes every layer not in `keep` (and leftovers of builds whose process died), except those
 * made or used less than `graceMs` ago: a build in progress may be about to reference them (a
 * build marks each layer it reuses; see has()).
 */
export async function pruneLayers(
  store: LayerStore,
  keep: ReadonlySet<string>,
  graceMs: number,
  now = Date.now(),
): Promise<PruneResult> {
  const result: PruneResult = { removed: [], keptRecent: 0, reclaimed: 0 };
  const recent = async (path: string): Promise<boolean> => {
    const st = await lstat(path).catch(() => undefined);
    return st !== undefined && now - st.mtimeMs < graceMs;
  };
  for (const meta of await store.list()) {
    if (keep.has(meta.key)) continue;
    const path = store.path(meta.key);
    if ((await recent(`${path}.json`)) || (await recent(path))) {
      result.keptRecent++;
      continue;
    }
    await store.remove(meta.key);
    result.removed.push(meta);
    result.reclaimed += meta.size;
  }
  let names: string[] = [];
  try {
    names = await readdir(store.dir);
  } catch (err) {
    if (errCode(err) !== 'ENOENT') throw err;
  }
  // Leftovers of builds whose process is gone (a live build's are in use, however old).
  await store.removeStale();
  for (const name of names) {
    const path = join(store.dir, name);
    if (name.endsWith('.json') && LAYER_KEY.test(name.slice(0, -5))) {
      // Metadata whose layer is gone.
      if (!(await lstat(path.slice(0, -5)).catch(() => undefined))) await rm(path, { force: true });
    }
  }
  return result;
}
