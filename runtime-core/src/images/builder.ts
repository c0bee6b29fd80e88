/**
 * Builds an image: a base (scratch, a debootstrap distribution, an archive or OCI layout, a
 * registry reference, another image) and then its steps, each copy/run step one cached layer in
 * the LayerStore. A step's cache key is derived from its parent layer's key, the step, the
 * configuration it runs with and the content it copies, so an unchanged image rebuilds without
 * running anything and a changed step rebuilds from that step on.
 *
 * run steps execute `/bin/sh -c CMD` in a build container (the ContainerRuntime, overlay over
 * the layers so far) whose overlay upper directory becomes the new layer. Build containers share
 * the host's network (so `apt-get install` works) and get its /etc/resolv.conf.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { lstat, mkdir, readdir, readFile, rm, stat } from 'node:fs/promises';
import { join, posix, resolve } from 'node:path';

import { OWNER_ANNOTATION, type ContainerRuntime } from '../containers.js';
import { mountOverlay, unmount, unpackLayer } from '../native.js';
import { runCommand } from './command.js';
import { DEFAULT_PATH, fromOciConfig, mergeConfig, type ImageConfig } from './config.js';
import {
  checkDestination,
  copyIntoImage,
  CopyError,
  resolveInContext,
  treeDigest,
} from './copy.js';
import {
  alwaysPulled,
  formatReference,
  parseSource,
  SourceError,
  type ImageSource,
} from './reference.js';
import { OciCache, type PulledImage, type RegistryOptions } from './skopeo.js';
import { LayerStore, processAlive } from './store.js';
import { resolveUser, UserError, type ResolvedUser } from './users.js';

export interface ImageStep {
  copy?: { src: string; dest: string; chown?: string };
  run?: string;
  env?: Record<string, string>;
  workdir?: string;
  user?: string;
}

export interface BuildRequest {
  /** For messages and build container names: namespace/name. */
  name: string;
  from: string;
  steps?: ImageStep[];
  /** spec.config: applied over the base's and the steps' configuration. */
  config?: ImageConfig;
  registry?: RegistryOptions;
  /** Copy sources and archive paths are relative to (and confined to) this directory. */
  contextDir?: string;
  /** For `from: image:NAME`: the other image, once built (undefined: not ready yet). */
  resolveImage?: (name: string) => BuiltImage | undefined;
  onProgress?: (event: BuildProgress) => void;
  /** Our stdout is a person's terminal: pulls draw skopeo's progress bars (bytes per blob). */
  terminal?: boolean;
}

export interface BuiltLayer {
  /** The layer's key (64 hex digits): its directory is `<state>/layers/<key>`. */
  key: string;
  size: number;
  createdBy: string;
}

export interface BuiltImage {
  /** sha256 over the layers and the configuration. */
  digest: string;
  /** Bottom first. */
  layers: BuiltLayer[];
  config: ImageConfig;
  /** The pulled manifest's digest, for registry and archive bases. */
  baseDigest?: string;
  stepsRun: number;
  stepsCached: number;
}

export type BuildProgress =
  | { type: 'phase'; phase: 'Pulling' | 'Building' }
  | { type: 'base'; description: string }
  | { type: 'layer'; digest: string; size: number; state: 'unpacking' | 'unpacked' | 'present' }
  | { type: 'step'; index: number; total: number; description: string; cached: boolean }
  | { type: 'stepDone'; index: number; seconds: number }
  | { type: 'output'; line: string; step?: number };

export class BuildError extends Error {
  constructor(
    message: string,
    /** Index of the failing step; undefined for the base. */
    readonly step?: number,
    /** The last lines of a run step's output. */
    readonly output: string[] = [],
  ) {
    super(message);
    this.name = 'BuildError';
  }
}

/** The build was stopped by abort() (Ctrl-C, a controller shutting down): not the image's fault. */
export class BuildInterruptedError extends Error {
  constructor() {
    super('the build was interrupted');
    this.name = 'BuildInterruptedError';
  }
}

/** `from: image:NAME` whose image is not built yet: wait for it, this is not a failure. */
export class DependencyNotReadyError extends Error {
  constructor(readonly image: string) {
    super(`image ${image} is not Ready yet`);
    this.name = 'DependencyNotReadyError';
  }
}

export interface BuilderOptions {
  stateDir: string;
  /** Runs build containers for run steps. */
  runtime: ContainerRuntime;
  /** Where debootstrap bases are built and shared (default: `<state>/layers`). */
  baseCacheDir?: string;
  mirrors?: { debian?: string; ubuntu?: string };
  skopeo?: string;
  debootstrap?: string;
  /** Build containers are named `<prefix>-<random>` (default `build`). */
  buildIdPrefix?: string;
}

const MIRRORS = {
  debian: 'http://deb.debian.org/debian',
  ubuntu: 'http://archive.ubuntu.com/ubuntu',
};
const OUTPUT_TAIL = 20;

const sha256 = (...parts: string[]): string =>
  createHash('sha256').update(parts.join('\n')).digest('hex');

function describeStep(step: ImageStep): string {
  if (step.copy) return `copy ${step.copy.src} ${step.copy.dest}`;
  if (step.run !== undefined) return `run ${step.run}`;
  if (step.env) return `env ${Object.keys(step.env).join(' ')}`;
  if (step.workdir !== undefined) return `workdir ${step.workdir}`;
  return `user ${step.user ?? ''}`;
}

/** The pid of the process whose build runs in a build container. */
export const BUILDER_PID_ANNOTATION = 'conductor.dev/builder-pid';

/**
 * A build container whose build is gone: its builder process is dead (a killed controller or
 * `conductor build`), so nothing will ever make a layer of it. Other builds' are left alone.
 */
export function isOrphanedBuild(annotations: Record<string, string> | undefined): boolean {
  if (!annotations?.[OWNER_ANNOTATION]?.startsWith('Build/')) return false;
  const pid = Number(annotations[BUILDER_PID_ANNOTATION]);
  return !processAlive(pid);
}

export class ImageBuilder {
  readonly store: LayerStore;
  readonly oci: OciCache;
  /** Build containers running now. */
  private readonly running = new Set<string>();
  private aborted = false;
  /** Work that several builds may ask for at once (a base, a pull, a layer): done once. */
  private readonly inflight = new Map<string, Promise<unknown>>();

  private readonly opts: BuilderOptions;

  constructor(opts: BuilderOptions) {
    // Absolute: paths go to skopeo, the native unpacker and overlayfs.
    this.opts = {
      ...opts,
      stateDir: resolve(opts.stateDir),
      ...(opts.baseCacheDir !== undefined ? { baseCacheDir: resolve(opts.baseCacheDir) } : {}),
    };
    this.store = new LayerStore(this.opts.stateDir, this.opts.baseCacheDir);
    this.oci = new OciCache(this.opts.stateDir);
  }

  private once<T>(key: string, fn: () => Promise<T>): Promise<T> {
    let p = this.inflight.get(key) as Promise<T> | undefined;
    if (!p) {
      p = fn().finally(() => this.inflight.delete(key));
      this.inflight.set(key, p);
    }
    return p;
  }

  async build(req: BuildRequest): Promise<BuiltImage> {
    const progress = req.onProgress ?? ((): void => undefined);
    // Without a build context (an Image from an API server, no --build-context) a copy step can never be
    // built, nor found in the layer cache (its key includes the digest of what it copies):
    // refused before a base is fetched or a step runs, which would be minutes of debootstrap
    // and apt-get for nothing.
    const firstCopy = req.contextDir ? -1 : (req.steps ?? []).findIndex((s) => s.copy);
    if (firstCopy >= 0)
      throw new BuildError(
        `spec.steps[${firstCopy}].copy: copy steps need a build context (the manifest's directory; for an Image from an API server, the agent's --build-context), and this Image has none`,
        firstCopy,
      );
    let source: ImageSource;
    try {
      source = parseSource(req.from);
    } catch (err) {
      throw new BuildError((err as SourceError).message);
    }
    const base = await this.base(source, req, progress);
    const layers = [...base.layers];
    let config = base.config;
    let stepsRun = 0;
    let stepsCached = 0;
    const steps = req.steps ?? [];
    if (steps.some((s) => s.copy || s.run !== undefined))
      progress({ type: 'phase', phase: 'Building' });
    for (const [i, step] of steps.entries()) {
      const field = `spec.steps[${i}]`;
      if (step.env) {
        config = mergeConfig(config, { env: step.env });
        continue;
      }
      if (step.workdir !== undefined) {
        config = mergeConfig(config, {
          workingDir: posix.resolve(config.workingDir ?? '/', step.workdir),
        });
        continue;
      }
      if (step.user !== undefined) {
        config = mergeConfig(config, { user: step.user });
        continue;
      }
      const parent = layers.at(-1)?.key ?? 'scratch';
      let key: string;
      let make: (tmp: string) => Promise<void>;
      if (step.copy) {
        const copy = step.copy;
        if (!req.contextDir)
          throw new BuildError(`${field}.copy: copy steps need a build context`, i);
        const src = await this.guard(i, () =>
          resolveInContext(req.contextDir ?? '', copy.src, `${field}.copy.src`),
        );
        const dest = await this.guard(i, () => checkDestination(copy.dest, `${field}.copy.dest`));
        key = sha256(parent, JSON.stringify(step), await treeDigest(src));
        make = (tmp) =>
          this.copyStep(
            layers,
            tmp,
            src,
            dest + (copy.dest.endsWith('/') ? '/' : ''),
            copy.chown,
            i,
          );
      } else if (step.run !== undefined) {
        const cmd = step.run;
        key = sha256(parent, JSON.stringify(step), JSON.stringify(config));
        const cfg = config;
        make = (tmp) => this.runStep(req, layers, tmp, cmd, cfg, i, progress);
      } else {
        throw new BuildError(`${field}: names no step (copy, run, env, workdir or user)`, i);
      }
      const cached = await this.store.has(key);
      progress({
        type: 'step',
        index: i,
        total: steps.length,
        description: describeStep(step),
        cached,
      });
      const started = Date.now();
      if (cached) stepsCached++;
      else {
        stepsRun++;
        await this.once(`layer:${key}`, async () => {
          if (await this.store.has(key)) return;
          const tmp = await this.store.tempPath();
          try {
            await make(tmp);
            await this.store.commit(tmp, key, describeStep(step));
          } finally {
            await rm(tmp, { recursive: true, force: true });
          }
        });
      }
      progress({ type: 'stepDone', index: i, seconds: (Date.now() - started) / 1000 });
      const meta = await this.store.meta(key);
      layers.push({ key, size: meta?.size ?? 0, createdBy: describeStep(step) });
    }
    if (req.config) config = mergeConfig(config, req.config);
    const digest = `sha256:${sha256(JSON.stringify(layers.map((l) => l.key)), JSON.stringify(config))}`;
    return {
      digest,
      layers,
      config,
      ...(base.baseDigest ? { baseDigest: base.baseDigest } : {}),
      stepsRun,
      stepsCached,
    };
  }

  /** A copy or user error of step `step` becomes that step's BuildError. */
  private async guard<T>(step: number, fn: () => T | Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof CopyError || err instanceof UserError)
        throw new BuildError(err.message, step);
      throw err;
    }
  }

  // ---- bases -------------------------------------------------------------------------------

  private async base(
    source: ImageSource,
    req: BuildRequest,
    progress: (e: BuildProgress) => void,
  ): Promise<{ layers: BuiltLayer[]; config: ImageConfig; baseDigest?: string }> {
    switch (source.kind) {
      case 'scratch':
        return { layers: [], config: {} };
      case 'image': {
        const other = req.resolveImage?.(source.name);
        if (!other) throw new DependencyNotReadyError(source.name);
        return { layers: other.layers, config: other.config };
      }
      case 'debootstrap':
        progress({ type: 'phase', phase: 'Pulling' });
        return {
          layers: [await this.debootstrap(source, progress)],
          config: { env: { PATH: DEFAULT_PATH } },
        };
      default: {
        progress({ type: 'phase', phase: 'Pulling' });
        const { transport, fingerprint } = await this.transport(source, req);
        progress({ type: 'base', description: transport });
        const pulled = await this.once(`pull:${transport}`, () =>
          this.oci
            .copy(transport, {
              ...(req.registry ?? {}),
              ...(fingerprint !== undefined ? { reuse: { fingerprint } } : {}),
              ...(req.terminal ? { terminal: true } : {}),
              onLine: (line) => progress({ type: 'output', line }),
              ...(this.opts.skopeo ? { skopeo: this.opts.skopeo } : {}),
            })
            .catch((err: unknown) => {
              throw new BuildError(`spec.from: ${(err as Error).message}`);
            }),
        );
        const layers = await this.unpackAll(pulled, progress);
        return {
          layers,
          config: fromOciConfig(pulled.config.config),
          baseDigest: pulled.manifestDigest,
        };
      }
    }
  }

  /**
   * The skopeo reference of a source, and when an earlier copy of it may be reused without
   * asking skopeo (the kubelet's IfNotPresent for pinned references: a digest, or a tag other
   * than latest; local archives and layouts while their size and mtime are unchanged).
   */
  private async transport(
    source: ImageSource,
    req: BuildRequest,
  ): Promise<{ transport: string; fingerprint?: string }> {
    const local = async (
      path: string,
      stamp = '',
    ): Promise<{ path: string; fingerprint: string }> => {
      if (!req.contextDir)
        throw new BuildError(
          `spec.from: a path needs a build context (the manifest's directory; for an Image from an API server, the agent's --build-context)`,
        );
      try {
        const real = await resolveInContext(req.contextDir, path, 'spec.from');
        const st = await stat(join(real, stamp));
        return { path: real, fingerprint: `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}` };
      } catch (err) {
        throw new BuildError((err as Error).message);
      }
    };
    const tag = (t: string | undefined): string => (t ? `:${t}` : '');
    switch (source.kind) {
      case 'oci-archive': {
        const l = await local(source.path);
        return { transport: `oci-archive:${l.path}${tag(source.tag)}`, fingerprint: l.fingerprint };
      }
      case 'docker-archive': {
        const l = await local(source.path);
        return { transport: `docker-archive:${l.path}`, fingerprint: l.fingerprint };
      }
      case 'oci': {
        const l = await local(source.path, 'index.json');
        return { transport: `oci:${l.path}${tag(source.tag)}`, fingerprint: l.fingerprint };
      }
      case 'registry': {
        // skopeo takes a tag or a digest, not both: the digest pins the content.
        const ref = formatReference(source.digest ? { ...source, tag: undefined } : source);
        if (alwaysPulled(source)) return { transport: `docker://${ref}` };
        // Reused only by a build that could pull it again: same TLS settings, same credentials.
        return {
          transport: `docker://${ref}`,
          fingerprint: await registryFingerprint(req.registry),
        };
      }
      default:
        throw new BuildError(`spec.from: "${req.from}" is not pulled`);
    }
  }

  /** The pulled layers in the store, keyed by chain id (containers/storage's): parent + diff_id. */
  private async unpackAll(
    pulled: PulledImage,
    progress: (e: BuildProgress) => void,
  ): Promise<BuiltLayer[]> {
    const diffIds = pulled.config.rootfs?.diff_ids ?? [];
    const out: BuiltLayer[] = [];
    let chain = '';
    for (const [i, desc] of pulled.manifest.layers.entries()) {
      const diffId = diffIds[i] ?? '';
      chain = chain
        ? `sha256:${createHash('sha256').update(`${chain} ${diffId}`).digest('hex')}`
        : diffId;
      const key = chain.slice('sha256:'.length);
      if (!/tar/.test(desc.mediaType)) {
        throw new BuildError(
          `spec.from: layer ${desc.digest} has media type ${desc.mediaType}, not a tar`,
        );
      }
      const createdBy = `pull ${desc.digest}`;
      if (await this.store.has(key)) {
        progress({ type: 'layer', digest: desc.digest, size: desc.size, state: 'present' });
      } else {
        await this.once(`layer:${key}`, async () => {
          if (await this.store.has(key)) return;
          progress({ type: 'layer', digest: desc.digest, size: desc.size, state: 'unpacking' });
          const tmp = await this.store.tempPath();
          try {
            await mkdir(tmp, { mode: 0o755 });
            const { diffId: actual } = await unpackLayer({
              archive: pulled.blobPath(desc.digest),
              target: tmp,
            });
            // Layers are stored by what the config claims: a layer whose content is not what it
            // claims must not become the layer another image with that diff_id would reuse.
            if (actual !== diffId) {
              throw new Error(
                `its content (diff_id ${actual}) is not the image config's diff_id ${diffId}`,
              );
            }
            await this.store.commit(tmp, key, createdBy);
          } catch (err) {
            throw new BuildError(`spec.from: layer ${desc.digest}: ${(err as Error).message}`);
          } finally {
            await rm(tmp, { recursive: true, force: true });
          }
          progress({ type: 'layer', digest: desc.digest, size: desc.size, state: 'unpacked' });
        });
      }
      const meta = await this.store.meta(key);
      out.push({ key, size: meta?.size ?? 0, createdBy });
    }
    return out;
  }

  /** A distribution's minbase, built once with debootstrap and shared by every image. */
  private async debootstrap(
    source: Extract<ImageSource, { kind: 'debootstrap' }>,
    progress: (e: BuildProgress) => void,
  ): Promise<BuiltLayer> {
    const mirror = this.opts.mirrors?.[source.distro] ?? MIRRORS[source.distro];
    // The recipe's version is part of the key: a changed recipe builds a new base.
    const key = sha256('debootstrap', 'minbase', 'slim-2', source.distro, source.suite, mirror);
    const createdBy = `debootstrap ${source.distro} ${source.suite}`;
    progress({ type: 'base', description: `${createdBy} (${mirror})` });
    await this.once(`layer:${key}`, async () => {
      if (await this.store.linkBase(key)) return;
      const tmp = await this.store.tempPath(this.store.baseCacheDir);
      try {
        await runCommand(
          this.opts.debootstrap ?? 'debootstrap',
          ['--variant=minbase', source.suite, tmp, mirror],
          { onLine: (line) => progress({ type: 'output', line }) },
        );
        // Like the distributions' own container images: no downloaded .debs, no package lists
        // (a run step starts with `apt-get update`); 206 MB → 118 MB.
        for (const dir of ['var/cache/apt/archives', 'var/lib/apt/lists']) {
          await rm(join(tmp, dir), { recursive: true, force: true });
          await mkdir(join(tmp, dir, 'partial'), { recursive: true, mode: 0o755 });
        }
        // And an empty /dev, as theirs: debootstrap makes device nodes (null, zero, tty, ...)
        // that no container sees (each gets a /dev of its own), that Conductor's layer import
        // refuses and that an exported layer could therefore not carry (slim-2).
        for (const name of await readdir(join(tmp, 'dev')).catch(() => [] as string[]))
          await rm(join(tmp, 'dev', name), { recursive: true, force: true });
        await this.store.commitBase(tmp, key, createdBy);
      } catch (err) {
        throw new BuildError(
          `spec.from: debootstrap ${source.distro} ${source.suite}: ${(err as Error).message}`,
        );
      } finally {
        await rm(tmp, { recursive: true, force: true });
      }
    });
    const meta = await this.store.meta(key);
    return { key, size: meta?.size ?? 0, createdBy };
  }

  // ---- steps -------------------------------------------------------------------------------

  /** Top layer first, as overlayfs wants them. */
  private lowerDirs(layers: BuiltLayer[]): string[] {
    return layers.map((l) => this.store.path(l.key)).reverse();
  }

  /** Reads a file of the image from its layers (top down), honouring whiteouts. */
  private async imageFile(layers: BuiltLayer[], path: string): Promise<string | undefined> {
    for (const dir of this.lowerDirs(layers)) {
      const p = join(dir, path);
      const st = await lstat(p).catch(() => undefined);
      if (!st) continue;
      if (st.isCharacterDevice() && st.rdev === 0) return undefined; // whiteout
      return st.isFile() ? readFile(p, 'utf8') : undefined;
    }
    return undefined;
  }

  private async user(layers: BuiltLayer[], spec: string): Promise<ResolvedUser> {
    return resolveUser(
      spec,
      await this.imageFile(layers, 'etc/passwd'),
      await this.imageFile(layers, 'etc/group'),
    );
  }

  /** An image's USER[:GROUP] as numeric ids, from its own /etc/passwd and /etc/group. */
  async resolveUser(image: Pick<BuiltImage, 'layers'>, spec: string): Promise<ResolvedUser> {
    try {
      return await this.user(image.layers, spec);
    } catch (err) {
      if (err instanceof UserError) throw new BuildError(`config.user: ${err.message}`);
      throw err;
    }
  }

  private async copyStep(
    layers: BuiltLayer[],
    tmp: string,
    src: string,
    dest: string,
    chown: string | undefined,
    step: number,
  ): Promise<void> {
    const owner = chown
      ? await this.guard(step, () => this.user(layers, chown))
      : { uid: 0, gid: 0 };
    await mkdir(tmp, { mode: 0o755 });
    const fail = (err: unknown): never => {
      if (err instanceof BuildError) throw err;
      throw new BuildError(`spec.steps[${step}].copy: ${(err as Error).message}`, step);
    };
    if (layers.length === 0) {
      // Nothing below: the layer directory is the image's root.
      await copyIntoImage({ root: tmp, src, dest, ...owner }).catch(fail);
      return;
    }
    // Over the image: mount it, so the destination resolves through the image's own symlinks;
    // what changes lands in `tmp`, the overlay's upper directory.
    const work = await this.store.tempPath();
    const merged = await this.store.tempPath();
    await mkdir(work, { mode: 0o700 });
    await mkdir(merged, { mode: 0o700 });
    try {
      await mountOverlay({ lower: this.lowerDirs(layers), upper: tmp, work, target: merged });
      try {
        await copyIntoImage({ root: merged, src, dest, ...owner }).catch(fail);
      } finally {
        await unmount(merged);
      }
    } finally {
      await rm(work, { recursive: true, force: true });
      await rm(merged, { recursive: true, force: true });
    }
  }

  private async runStep(
    req: BuildRequest,
    layers: BuiltLayer[],
    upperDir: string,
    cmd: string,
    config: ImageConfig,
    step: number,
    progress: (e: BuildProgress) => void,
  ): Promise<void> {
    const field = `spec.steps[${step}].run`;
    if (layers.length === 0) {
      throw new BuildError(`${field}: the image has no layers yet, so no /bin/sh to run it`, step);
    }
    const user = config.user
      ? await this.guard(step, () => this.user(layers, config.user ?? ''))
      : undefined;
    if (this.aborted) throw new BuildInterruptedError();
    const runtime = this.opts.runtime;
    const id = `${this.opts.buildIdPrefix ?? 'build'}-${randomBytes(6).toString('hex')}`;
    const env = { PATH: DEFAULT_PATH, ...(config.env ?? {}) };
    const resolv = '/etc/resolv.conf';
    try {
      await runtime.create(
        {
          id,
          name: `build ${req.name} step ${step}`,
          args: ['/bin/sh', '-c', cmd],
          env,
          workingDir: config.workingDir ?? '/',
          ...(user ? { user } : {}),
          network: { mode: 'host' },
          // A build container found by a restarted controller belongs to a dead build: removed.
          annotations: {
            [OWNER_ANNOTATION]: `Build/${req.name}`,
            [BUILDER_PID_ANNOTATION]: String(process.pid),
          },
          ...(existsSync(resolv)
            ? {
                mounts: [
                  {
                    containerPath: resolv,
                    type: 'bind' as const,
                    hostPath: resolv,
                    readOnly: true,
                  },
                ],
              }
            : {}),
        },
        { layers: this.lowerDirs(layers), upperDir },
      );
      this.running.add(id);
    } catch (err) {
      throw new BuildError(
        `${field}: cannot start the build container: ${(err as Error).message}`,
        step,
      );
    }
    const tail: string[] = [];
    try {
      for await (const entry of runtime.logs(id, { follow: true })) {
        tail.push(entry.line);
        if (tail.length > OUTPUT_TAIL) tail.shift();
        progress({ type: 'output', line: entry.line, step });
      }
      const info = await runtime.waitForExit(id);
      if (this.aborted) throw new BuildInterruptedError();
      if (info.exitCode !== 0) {
        const how = info.signal
          ? `was killed by ${info.signal}`
          : `exited with code ${info.exitCode ?? '?'}`;
        throw new BuildError(
          `${field}: "${cmd}" ${how}${tail.length ? `; last output:\n${tail.join('\n')}` : ''}`,
          step,
          tail,
        );
      }
    } finally {
      this.running.delete(id);
      await runtime.remove(id, { force: true });
    }
  }

  /**
   * Stops every build container this builder runs (Ctrl-C of `conductor build`, a controller
   * stopping): their builds end with BuildInterruptedError and nothing they made becomes a
   * layer. The builder takes no more run steps afterwards.
   */
  async abort(): Promise<void> {
    this.aborted = true;
    await Promise.allSettled(
      [...this.running].map((id) => this.opts.runtime.stop(id, { gracePeriodSeconds: 0 })),
    );
  }
}

/**
 * What decides whether a pull would succeed: TLS settings, certificates and credentials. A copy
 * made under one fingerprint is not reused under another, so a private image pulled with an
 * auth file is not handed to an Image that names it without one.
 */
async function registryFingerprint(opts: RegistryOptions | undefined): Promise<string> {
  const hash = createHash('sha256').update(`tls=${opts?.tlsVerify !== false}\n`);
  const add = async (label: string, file: string): Promise<void> => {
    const content = await readFile(file).catch(() => Buffer.from('<missing>'));
    hash.update(`${label}=${file}\n`).update(content).update('\n');
  };
  if (opts?.authFile) await add('auth', opts.authFile);
  if (opts?.certDir) {
    const names = (await readdir(opts.certDir).catch(() => [] as string[])).sort();
    for (const n of names) await add('cert', join(opts.certDir, n));
  }
  return `pinned:${hash.digest('hex')}`;
}
