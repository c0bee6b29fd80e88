/**
 * The watch directory, as `apply` and `delete` change it: reading manifest files given with -f,
 * and writing into the watched directory atomically. Every write is a hidden temporary file
 * (`.web.yaml.tmp-1a2b3c4d`, which the directory source never reads) renamed over the target,
 * so the controller sees the old file or the new one, never half of one.
 */
import { randomBytes } from 'node:crypto';
import { readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { basename, join, relative, resolve, sep } from 'node:path';

import { errCode } from '../../runtime-core/src/index.js';
import { isManifestPath } from '../source/manifests.js';
import {
  parseManifests,
  type KubeObject,
  type ParseResult,
  type ValidateFn,
} from '../source/manifests.js';
import { CliError } from './io.js';
import { noControllerMessage, type StateDir } from './state.js';

/** A manifest file named on the command line. */
export interface InputFile {
  /** Absolute path. */
  path: string;
  /** The name it gets in the watch dir. */
  name: string;
  text: string;
}

/**
 * The files `-f` names: a file as given, or a directory's manifest files (not recursive, as
 * kubectl without -R; hidden and backup files skipped, as the directory source skips them).
 */
export async function readInputFiles(args: readonly string[], cwd: string): Promise<InputFile[]> {
  const paths: string[] = [];
  for (const arg of args) {
    const path = resolve(cwd, arg);
    let info;
    try {
      info = await stat(path);
    } catch (err) {
      throw new CliError(
        errCode(err) === 'ENOENT'
          ? `the path ${JSON.stringify(arg)} does not exist`
          : `stat ${path}: ${err instanceof Error ? err.message : String(err)}`,
      );
    }
    if (info.isDirectory()) {
      const names = (await readdir(path)).sort().filter((n) => isManifestPath(n));
      for (const name of names) {
        if ((await stat(join(path, name))).isFile()) paths.push(join(path, name));
      }
    } else {
      paths.push(path);
    }
  }
  const files: InputFile[] = [];
  for (const path of paths) {
    files.push({ path, name: basename(path), text: await readFile(path, 'utf8') });
  }
  return files;
}

/** Only what identity needs: for files whose objects are found, not created (delete). */
export const identityOnly: ValidateFn<KubeObject> = (obj) => ({
  ok: true,
  object: obj as KubeObject,
});

export function parseFile<T>(text: string, file: string, validate: ValidateFn<T>): ParseResult<T> {
  return parseManifests(text, { file, validate });
}

/** Writes `content` to `dir/name` by a hidden temporary file and a rename. */
export async function writeAtomic(dir: string, name: string, content: string): Promise<void> {
  const tmp = join(dir, `.${name}.tmp-${randomBytes(4).toString('hex')}`);
  try {
    await writeFile(tmp, content, { mode: 0o644, flag: 'wx' });
    await rename(tmp, join(dir, name));
  } catch (err) {
    await rm(tmp, { force: true });
    throw new CliError(
      `write ${join(dir, name)}: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
}

/** The content of a file, or undefined if there is none. */
export async function readIfExists(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    if (errCode(err) === 'ENOENT') return undefined;
    throw err;
  }
}

/**
 * The watch dir of this state dir: the running controller's; for commands that may work while
 * it is stopped (`delete`), else the one sources.json recorded.
 */
export async function watchDirOf(state: StateDir, requireRunning: boolean): Promise<string> {
  const running = await state.runningController();
  if (running) return running.watchDir;
  if (!requireRunning) {
    const sources = await state.readSources();
    if (sources?.watchDir) return sources.watchDir;
  }
  throw new CliError(noControllerMessage(state.dir));
}

/** Every manifest file under `dir` (relative paths, '/'-separated), as the directory source reads them. */
export async function listManifestFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  let entries;
  try {
    entries = await readdir(dir, { recursive: true, withFileTypes: true });
  } catch (err) {
    if (errCode(err) === 'ENOENT') return [];
    throw err;
  }
  for (const e of entries) {
    if (!e.isFile()) continue;
    const rel = relative(dir, join(e.parentPath, e.name)).split(sep).join('/');
    if (isManifestPath(rel)) out.push(rel);
  }
  return out.sort();
}
