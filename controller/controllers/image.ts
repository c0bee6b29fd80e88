/**
 * The Image reconciler, as far as the controller issue needs it: `from: scratch` with copy, env,
 * workdir and user steps. Each copy step is one content-addressed layer under
 * `<state>/layers/<key>`, its key derived from the parent's key, the step and the content of
 * what it copies, so an unchanged image rebuilds nothing and identical layers are stored once.
 * Registry pulls, debootstrap bases and run steps are the images issue.
 */
import { createHash } from 'node:crypto';
import {
  cp,
  lstat,
  mkdir,
  readFile,
  readdir,
  readlink,
  realpath,
  rename,
  rm,
  stat,
} from 'node:fs/promises';
import { dirname, isAbsolute, join, posix, relative, resolve, sep } from 'node:path';

import type { Image, ImageStatus } from '../api/types.generated.js';
import { done, terminal, type Reconciler, type Result } from '../reconcile/result.js';
import { event, setCondition, type ReconcileContext } from './context.js';

export class ImageBuildError extends Error {
  constructor(
    readonly step: number | undefined,
    message: string,
  ) {
    super(message);
  }
}

/** sha256 over a tree: names, types, modes, link targets and file contents, in sorted order. */
async function treeDigest(path: string): Promise<string> {
  const hash = createHash('sha256');
  const walk = async (p: string, rel: string): Promise<void> => {
    const st = await lstat(p);
    hash.update(`${rel}\0${st.mode}\0`);
    if (st.isSymbolicLink()) hash.update(`link\0${await readlink(p)}\0`);
    else if (st.isFile()) hash.update(await readFile(p));
    else if (st.isDirectory()) {
      for (const name of (await readdir(p)).sort()) await walk(join(p, name), `${rel}/${name}`);
    }
  };
  await walk(path, '');
  return hash.digest('hex');
}

async function treeSize(path: string): Promise<number> {
  const st = await lstat(path);
  if (!st.isDirectory()) return st.size;
  let total = 0;
  for (const name of await readdir(path)) total += await treeSize(join(path, name));
  return total;
}

/** `src` relative to the manifest's directory, refusing anything that escapes it (symlinks too). */
async function resolveSource(manifestDir: string, src: string, step: number): Promise<string> {
  if (isAbsolute(src)) {
    throw new ImageBuildError(
      step,
      `spec.steps[${step}].copy.src: "${src}" must be relative to the manifest's directory`,
    );
  }
  const root = await realpath(manifestDir);
  let real: string;
  try {
    real = await realpath(resolve(manifestDir, src));
  } catch {
    throw new ImageBuildError(
      step,
      `spec.steps[${step}].copy.src: "${src}" does not exist next to the manifest`,
    );
  }
  const rel = relative(root, real);
  if (rel === '..' || rel.startsWith(`..${sep}`) || isAbsolute(rel)) {
    throw new ImageBuildError(
      step,
      `spec.steps[${step}].copy.src: "${src}" resolves outside the manifest's directory`,
    );
  }
  return real;
}

function destination(dest: string, step: number): string {
  const norm = posix.normalize(dest);
  if (!norm.startsWith('/') || norm.split('/').includes('..')) {
    throw new ImageBuildError(
      step,
      `spec.steps[${step}].copy.dest: "${dest}" must be an absolute path without ".."`,
    );
  }
  return norm;
}

export class ImageReconciler implements Reconciler {
  constructor(private readonly ctx: ReconcileContext) {}

  layerDir(key: string): string {
    return join(this.ctx.stateDir, 'layers', key);
  }

  async reconcile(key: string): Promise<Result> {
    const ctx = this.ctx;
    const image = ctx.caches.Image.getByKey(key);
    if (!image) {
      // Layers stay for reuse (pruning them is the images issue); the object and status go.
      const [namespace = 'default', name = key] = key.split('/');
      await ctx.status.forget('Image', namespace, name);
      return done();
    }
    const generation = image.metadata.generation ?? 0;
    const old = ctx.status.get('Image', key);
    if (
      old?.phase === 'Ready' &&
      old.observedGeneration === generation &&
      (await this.layersPresent(old))
    ) {
      return done();
    }
    const started = Date.now();
    try {
      const layers = await this.build(image, key);
      const digest = createHash('sha256')
        .update(layers.map((l) => l.digest).join(','))
        .digest('hex');
      const status: ImageStatus = {
        phase: 'Ready',
        observedGeneration: generation,
        digest: `sha256:${digest}`,
        layers,
        size: layers.reduce((n, l) => n + (l.size ?? 0), 0),
        buildDurationSeconds: (Date.now() - started) / 1000,
        conditions: setCondition(
          old?.conditions,
          {
            type: 'Ready',
            status: 'True',
            reason: 'Built',
            message: `${layers.length} layer(s)`,
            observedGeneration: generation,
          },
          ctx.now(),
        ),
      };
      if (old?.digest !== status.digest)
        event(
          ctx,
          'Image',
          image,
          'Normal',
          'Built',
          `image ${image.metadata.name} built: ${status.digest}`,
        );
      await ctx.status.set('Image', key, status);
      return done();
    } catch (err) {
      const e =
        err instanceof ImageBuildError
          ? err
          : new ImageBuildError(undefined, (err as Error).message);
      const status: ImageStatus = {
        phase: 'Failed',
        observedGeneration: generation,
        message: e.message,
        ...(e.step !== undefined ? { failedStep: e.step } : {}),
        conditions: setCondition(
          old?.conditions,
          {
            type: 'Ready',
            status: 'False',
            reason: 'BuildFailed',
            message: e.message,
            observedGeneration: generation,
          },
          ctx.now(),
        ),
      };
      event(ctx, 'Image', image, 'Warning', 'BuildFailed', e.message);
      await ctx.status.set('Image', key, status);
      // The spec (or the files it copies) must change first: a file change re-enqueues it.
      return terminal(e);
    }
  }

  private async layersPresent(status: ImageStatus): Promise<boolean> {
    for (const l of status.layers ?? []) {
      const dir = this.layerDir(l.digest.replace(/^sha256:/, ''));
      if (!(await stat(dir).catch(() => undefined))) return false;
    }
    return true;
  }

  private async build(image: Image, key: string): Promise<{ digest: string; size: number }[]> {
    const { from, steps = [] } = image.spec;
    if (from !== 'scratch') {
      throw new ImageBuildError(
        undefined,
        `spec.from: "${from}" is not supported yet: only "scratch" (with copy steps) is built so far`,
      );
    }
    const file = this.ctx.fileOf('Image', key);
    if (!file)
      throw new ImageBuildError(undefined, 'the manifest that defines this image is not known');
    const manifestDir = dirname(file);
    const layers: { digest: string; size: number }[] = [];
    let parent = 'scratch';
    for (const [i, step] of steps.entries()) {
      if (step.run !== undefined) {
        throw new ImageBuildError(
          i,
          `spec.steps[${i}].run: run steps are not supported yet (they come with image builds)`,
        );
      }
      if (!step.copy) continue; // env, workdir, user: image config, no layer
      const src = await resolveSource(manifestDir, step.copy.src, i);
      const dest = destination(step.copy.dest, i);
      const layerKey = createHash('sha256')
        .update(`${parent}\n${JSON.stringify(step)}\n${await treeDigest(src)}`)
        .digest('hex');
      const dir = this.layerDir(layerKey);
      if (!(await stat(dir).catch(() => undefined)))
        await this.copyLayer(src, dest, dir, step.copy.chown, i);
      layers.push({ digest: `sha256:${layerKey}`, size: await treeSize(dir) });
      parent = layerKey;
    }
    return layers;
  }

  /** Copies into a temporary directory and renames it into place: a layer is whole or absent. */
  private async copyLayer(
    src: string,
    dest: string,
    dir: string,
    chown: string | undefined,
    step: number,
  ): Promise<void> {
    const tmp = `${dir}.tmp-${process.pid}-${Date.now()}`;
    await mkdir(tmp, { recursive: true, mode: 0o755 });
    try {
      const isDir = (await stat(src)).isDirectory();
      const target =
        isDir || dest.endsWith('/')
          ? join(tmp, dest, isDir ? '' : src.slice(src.lastIndexOf(sep) + 1))
          : join(tmp, dest);
      await mkdir(isDir ? target : dirname(target), { recursive: true, mode: 0o755 });
      // Links are copied as links (never followed): they point into the image, not the host.
      await cp(src, target, {
        recursive: true,
        verbatimSymlinks: true,
        preserveTimestamps: true,
        force: true,
      });
      if (chown) await this.chownTree(tmp, chown, step);
      await rename(tmp, dir);
    } catch (err) {
      await rm(tmp, { recursive: true, force: true });
      if (err instanceof ImageBuildError) throw err;
      throw new ImageBuildError(step, `spec.steps[${step}].copy: ${(err as Error).message}`);
    }
  }

  private async chownTree(root: string, chown: string, step: number): Promise<void> {
    const m = /^(\d+)(?::(\d+))?$/.exec(chown);
    if (!m)
      throw new ImageBuildError(
        step,
        `spec.steps[${step}].copy.chown: "${chown}" must be UID[:GID] (numbers)`,
      );
    const uid = Number(m[1]);
    const gid = Number(m[2] ?? m[1]);
    const { lchown } = await import('node:fs/promises');
    const walk = async (p: string): Promise<void> => {
      await lchown(p, uid, gid);
      if ((await lstat(p)).isDirectory()) for (const n of await readdir(p)) await walk(join(p, n));
    };
    for (const n of await readdir(root)) await walk(join(root, n));
  }
}
