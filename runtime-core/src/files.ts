/** Small file helpers shared by the facade, the controller and the CLI. */
import { readFileSync } from 'node:fs';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';

/** The errno name of a Node fs error (`ENOENT`, …), if it is one. */
export const errCode = (err: unknown): string | undefined =>
  (err as NodeJS.ErrnoException | undefined)?.code;

/** A JSON file's content; undefined when it does not exist. Other failures throw, naming it. */
export async function readJson<T>(path: string): Promise<T | undefined> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as T;
  } catch (err) {
    if (errCode(err) === 'ENOENT') return undefined;
    // Writers use writeFileAtomic: a torn read cannot happen; anything else is worth surfacing.
    throw new Error(`read ${path}: ${err instanceof Error ? err.message : String(err)}`, {
      cause: err,
    });
  }
}

let tmpCounter = 0;

/**
 * Writes `text` to a hidden temporary file beside `path` (unique per process and call, so
 * concurrent writers never share one) and renames it into place: readers see the old file or
 * the new one, never a part.
 */
export async function writeFileAtomic(path: string, text: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const tmp = join(dirname(path), `.${process.pid}.${(tmpCounter += 1)}.tmp`);
  try {
    await writeFile(tmp, text);
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

export function writeJsonAtomic(path: string, value: unknown): Promise<void> {
  return writeFileAtomic(path, `${JSON.stringify(value, null, 2)}\n`);
}

/** Whether `target` is a mount point in this process's mount namespace. */
export function isMounted(target: string): boolean {
  const escaped = target.replace(
    /[ \t\n\\]/g,
    (c) => `\\${c.charCodeAt(0).toString(8).padStart(3, '0')}`,
  );
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .some((line) => line.split(' ')[4] === escaped);
}

/**
 * The fields of /proc/PID/stat after the command name (which may hold spaces and parentheses,
 * so they are counted from the last ')'): index 0 is field 3 (state), index 19 field 22
 * (start time). Undefined when there is no such process.
 */
export function procStatFields(pid: number): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/**
 * The start time of process `pid` (field 22 of /proc/PID/stat, clock ticks since boot), or
 * undefined if there is no such process: with the pid, it tells a process from a later one
 * that reused its pid.
 */
export function procStartTime(pid: number): string | undefined {
  return procStatFields(pid)?.[19];
}
