/**
 * `copy` build steps: files from the node into an image, as docker's COPY does it.
 *
 * The source must lie inside the manifest's directory (its real path: symlinks that lead out
 * are refused). The destination is resolved inside the image's root (resolveInRoot: symlinks in
 * the image, absolute ones included, stay inside it, e.g. /bin → usr/bin on a merged-/usr
 * distribution); below it nothing is ever followed: an existing symlink where a file or
 * directory goes is replaced, as docker's tar extraction does. Files are owned by root (or
 * `chown`), modes and modification times are kept, links inside the source are copied as links.
 */
import { createHash } from 'node:crypto';
import {
  chmod,
  copyFile,
  constants,
  lchown,
  lstat,
  lutimes,
  mkdir,
  readdir,
  readlink,
  realpath,
  rm,
  symlink,
  utimes,
} from 'node:fs/promises';
import { createReadStream, type Stats } from 'node:fs';
import { basename, isAbsolute, join, posix, relative, resolve, sep } from 'node:path';

import { resolveInRoot } from '../native.js';

export class CopyError extends Error {}

/** sha256 over a tree: names, types, modes, link targets and file contents, in sorted order. */
export async function treeDigest(path: string): Promise<string> {
  const hash = createHash('sha256');
  const walk = async (p: string, rel: string): Promise<void> => {
    const st = await lstat(p);
    hash.update(`${rel}\0${st.mode}\0`);
    if (st.isSymbolicLink()) hash.update(`link\0${await readlink(p)}\0`);
    else if (st.isFile()) {
      // Streamed: a copied file may be larger than memory.
      for await (const chunk of createReadStream(p)) hash.update(chunk as Buffer);
    } else if (st.isDirectory()) {
      for (const name of (await readdir(p)).sort()) await walk(join(p, name), `${rel}/${name}`);
    }
  };
  await walk(path, '');
  return hash.digest('hex');
}

/**
 * `src` (relative) inside `contextDir`, as a real path; refuses absolute paths, `..` that
 * leaves, and symlinks that lead out. `field` names the spec field in errors.
 */
export async function resolveInContext(
  contextDir: string,
  src: string,
  field: string,
): Promise<string> {
  if (isAbsolute(src)) {
    throw new CopyError(`${field}: "${src}" must be relative to the manifest's directory`);
  }
  const root = await realpath(contextDir);
  // `..` that leaves is refused before anything is looked up: no probing of the host's files.
  const lexical = relative(root, resolve(root, src));
  if (lexical === '..' || lexical.startsWith(`..${sep}`)) {
    throw new CopyError(`${field}: "${src}" resolves outside the manifest's directory`);
  }
  let real: string;
  try {
    real = await realpath(resolve(root, src));
  } catch {
    throw new CopyError(`${field}: "${src}" does not exist next to the manifest`);
  }
  const rel = relative(root, real);
  if (rel === '..' || rel.startsWith(`..${sep}`) || isAbsolute(rel)) {
    throw new CopyError(`${field}: "${src}" resolves outside the manifest's directory`);
  }
  return real;
}

export function checkDestination(dest: string, field: string): string {
  const norm = posix.normalize(dest);
  if (!norm.startsWith('/') || dest.split('/').includes('..') || dest.includes('\0')) {
    throw new CopyError(`${field}: "${dest}" must be an absolute path without ".."`);
  }
  return norm;
}

export interface CopyOptions {
  /** Image root (an empty layer directory, or the mounted image). */
  root: string;
  /** The real, confined source path (resolveInContext). */
  src: string;
  /** Absolute path inside the image; a trailing '/' means "into this directory". */
  dest: string;
  uid: number;
  gid: number;
}

/** Copies like COPY: a directory's contents into dest; a file to dest, or into it if it is a
 * directory or ends with '/'. */
export async function copyIntoImage(o: CopyOptions): Promise<void> {
  const srcStat = await lstat(o.src);
  let target = resolveInRoot(o.root, o.dest);
  if (srcStat.isDirectory()) {
    await mkdirInRoot(o.root, o.dest);
    target = resolveInRoot(o.root, o.dest);
    await copyChildren(o.src, target, o);
    return;
  }
  const existing = await lstat(target).catch(() => undefined);
  if (o.dest.endsWith('/') || existing?.isDirectory()) {
    await mkdirInRoot(o.root, o.dest);
    target = join(resolveInRoot(o.root, o.dest), basename(o.src));
  } else {
    const parent = posix.dirname(o.dest);
    await mkdirInRoot(o.root, parent);
    target = join(resolveInRoot(o.root, parent), posix.basename(o.dest));
  }
  await copyEntry(o.src, srcStat, target, o);
}

/** mkdir -p of an image path, each component resolved inside the root. */
async function mkdirInRoot(root: string, path: string): Promise<void> {
  let so = '/';
  for (const part of path.split('/').filter(Boolean)) {
    so = posix.join(so, part);
    const real = resolveInRoot(root, so);
    const st = await lstat(real).catch(() => undefined);
    if (st?.isDirectory()) continue;
    if (st) throw new CopyError(`${so} exists in the image and is not a directory`);
    await mkdir(real, { mode: 0o755 });
    await lchown(real, 0, 0);
  }
}

async function copyChildren(srcDir: string, destDir: string, o: CopyOptions): Promise<void> {
  for (const name of await readdir(srcDir)) {
    const src = join(srcDir, name);
    await copyEntry(src, await lstat(src), join(destDir, name), o);
  }
}

/** One entry at a real path whose parent is a real directory: nothing at `dest` is followed. */
async function copyEntry(src: string, st: Stats, dest: string, o: CopyOptions): Promise<void> {
  const existing = await lstat(dest).catch(() => undefined);
  if (st.isDirectory()) {
    if (existing && !existing.isDirectory()) await rm(dest, { force: true });
    if (!existing?.isDirectory()) await mkdir(dest, { mode: 0o700 });
    await copyChildren(src, dest, o);
    await lchown(dest, o.uid, o.gid);
    await chmod(dest, st.mode & 0o7777);
    await utimes(dest, st.atime, st.mtime);
    return;
  }
  if (existing) await rm(dest, { recursive: true, force: true });
  if (st.isSymbolicLink()) {
    await symlink(await readlink(src), dest);
    await lchown(dest, o.uid, o.gid);
    await lutimes(dest, st.atime, st.mtime);
  } else if (st.isFile()) {
    await copyFile(src, dest, constants.COPYFILE_EXCL);
    await lchown(dest, o.uid, o.gid);
    await chmod(dest, st.mode & 0o7777); // after chown, which clears setuid bits
    await utimes(dest, st.atime, st.mtime);
  } else {
    throw new CopyError(`${src}: only files, directories and symlinks can be copied`);
  }
}
