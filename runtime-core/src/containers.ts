/**
 * Containers: the part of the runtime core the Container reconciler calls.
 *
 * Each container is a directory under <state>/containers/<id> (runtime-core/README.md): an OCI
 * bundle whose rootfs is an overlay of the image layers, and a detached conductor-shim that
 * started it through the OCI runtime, copies its output into container.log and records its exit
 * in status.json. The disk is the source of truth, so a new ContainerRuntime (after a controller
 * restart) adopts running containers instead of restarting them; what this object keeps in
 * memory is only the exit watchers.
 */
import { execFile, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { chmod, mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';

import { readCriLog, type LogEntry } from './cri-log.js';
import * as addon from './native.js';
import { allSettled } from './promises.js';
import type { CgroupStats, InterfaceStats } from './native.js';
import { silentLogger, type Logger } from './logger.js';
import {
  buildOciConfig,
  cgroupsPathFor,
  InvalidSpecError,
  validateContainerId,
  type RunSpec,
  type OciConfigOptions,
} from './oci-config.js';
import { errCode, isMounted, procStatFields, readJson, writeJsonAtomic } from './files.js';
import { buildOutput, DEFAULT_STATE_DIR, StateLayout, type ContainerPaths } from './paths.js';
import { hostNames, installationOf, type HostNames } from './installation.js';
import { OciRuntimeCli, type ExecOptions } from './runtime-cli.js';
import { spawnChild } from './spawn.js';

export { InvalidSpecError, type RunSpec } from './oci-config.js';
export { RuntimeCommandError, type ExecOptions } from './runtime-cli.js';
export type { LogEntry } from './cri-log.js';
export type { Logger } from './logger.js';
export type { CgroupStats, InterfaceStats } from './native.js';

/** What the facade uses of the addon; tests may inject their own. */
export type NativeOps = Pick<
  typeof addon,
  'waitForExit' | 'pidStartTime' | 'mountOverlay' | 'unmount' | 'cgroupStats' | 'containerStats'
>;

export interface ContainerRuntimeOptions {
  stateDir?: string;
  /**
   * The installation's name (installation.ts), which scopes the host-level names its containers
   * get (cgroups under /<name>). Default: the one recorded in the state dir, else the default
   * for its path (`conductor` for /var/lib/conductor).
   */
  installation?: string;
  /** OCI runtime executable: default build/Release/conductor-runtime; runc or crun work too. */
  runtimePath?: string;
  shimPath?: string;
  /** Rotate container.log at this size (bytes); the shim's default is 10 MiB. */
  logMaxSize?: number;
  logMaxFiles?: number;
  logger?: Logger;
  /** Default: the addon. */
  native?: NativeOps;
  oci?: OciConfigOptions;
  /** How long the shim may take to report the container started. */
  startTimeoutMs?: number;
}

/** status.json as the shim writes it. */
export interface ShimStatus {
  status: 'running' | 'stopped';
  pid: number;
  startedAt: string;
  finishedAt?: string;
  exitCode?: number;
  signal?: string | null;
  oomKilled?: boolean;
}

export type ContainerState =
  /** The shim is starting it. */
  | 'creating'
  | 'running'
  | 'stopped'
  /** Its shim is gone without recording an exit (crashed, or killed with the host state). */
  | 'unknown';

export interface ContainerInfo {
  id: string;
  name?: string;
  /** As given to create(): owners record what they need to recognise their container. */
  annotations?: Record<string, string>;
  status: ContainerState;
  pid?: number;
  shimPid?: number;
  shimAlive: boolean;
  exitCode?: number;
  signal?: string | null;
  oomKilled?: boolean;
  startedAt?: string;
  finishedAt?: string;
  /** Its address on the container network (bridge mode, through the RuntimeCore facade). */
  ip?: string;
}

export interface CreatedContainer {
  id: string;
  pid: number;
  shimPid: number;
  startedAt: string;
  /** Its address on the container network (bridge mode, through the RuntimeCore facade). */
  ip?: string;
}

export interface StatsRequest {
  id: string;
  /** A pid in the container's network namespace: its interfaces are read too. */
  network?: number;
}

/** A container's statistics: its cgroup's counters and, when asked, its interfaces. */
export interface ContainerStats {
  /** linux.cgroupsPath of the container (`/conductor/<id>`). */
  cgroupsPath: string;
  cgroup: CgroupStats;
  interfaces?: InterfaceStats[];
}

export interface ExecResult {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** A failed step of a container operation; cleanup failures never hide the cause. */
/**
 * Who owns a container, `<Kind>/<namespace>/<name>` (`Container/…` for a Container's, `Build/…`
 * for an image build's), so a restarted controller knows what it finds.
 */
export const OWNER_ANNOTATION = 'conductor.dev/owner';

export class ContainerError extends Error {
  constructor(
    readonly id: string,
    readonly step: string,
    cause: unknown,
    readonly cleanupErrors: unknown[] = [],
  ) {
    const why = cause instanceof Error ? cause.message : String(cause);
    const extra = cleanupErrors.length
      ? `; cleanup also failed: ${cleanupErrors.map((e) => (e instanceof Error ? e.message : String(e))).join('; ')}`
      : '';
    super(`container ${id}: ${step}: ${why}${extra}`, { cause });
    this.name = 'ContainerError';
  }
}

export class ContainerNotFoundError extends Error {
  constructor(readonly id: string) {
    super(`container ${id}: not found`);
    this.name = 'ContainerNotFoundError';
  }
}

interface SpecRecord {
  spec: RunSpec;
  layers: string[];
  createdAt: string;
}

/** shim.json: who the shim is, so a reused pid is never taken for it. */
interface ShimRecord {
  shimPid: number;
  shimStartTime: string;
  pid: number;
  /** The container's init, for when its shim is gone. */
  startTime?: string;
}

interface Watch {
  shimPid: number;
  /**
   * Settles once the shim has exited: the container is gone and status.json is final. Rejects
   * with an AbortError when the wait was cancelled (nobody waits any more, or close()).
   */
  exited: Promise<ContainerInfo>;
  /** Cancels the native wait on the shim's pidfd. */
  cancel: AbortController;
  /** Callers of exitOf() still waiting. */
  waiters: number;
}

function abortError(): Error {
  return new DOMException('the wait for the exit was cancelled', 'AbortError');
}

function isZombie(pid: number): boolean {
  return procStatFields(pid)?.[0] === 'Z';
}

/** `promise`, or 'timeout' after `ms`; the timer never outlives the race. */
async function within<T>(promise: Promise<T>, ms: number): Promise<T | 'timeout'> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), ms))),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

export class ContainerRuntime {
  readonly layout: StateLayout;
  /** The installation's name and the host-level names derived from it. */
  readonly installation: string;
  readonly hostNames: HostNames;
  readonly runtime: OciRuntimeCli;
  readonly shimPath: string;
  private readonly log: Logger;
  private readonly opts: ContainerRuntimeOptions;
  private readonly nativeOps: NativeOps;
  private readonly watches = new Map<string, Watch>();

  constructor(opts: ContainerRuntimeOptions = {}) {
    this.layout = new StateLayout(opts.stateDir ?? DEFAULT_STATE_DIR);
    this.installation = installationOf(this.layout.stateDir, opts.installation);
    this.hostNames = hostNames(this.installation);
    this.opts = { ...opts, oci: { cgroupParent: this.hostNames.cgroupParent, ...opts.oci } };
    this.runtime = new OciRuntimeCli(
      opts.runtimePath ?? buildOutput('conductor-runtime'),
      this.layout.runtimeRoot,
    );
    this.shimPath = opts.shimPath ?? buildOutput('conductor-shim');
    this.log = opts.logger ?? silentLogger;
    this.nativeOps = opts.native ?? addon;
  }

  private native(): NativeOps {
    return this.nativeOps;
  }

  private paths(id: string): ContainerPaths {
    return this.layout.container(validateContainerId(id));
  }

  /**
   * Creates and starts a container: overlay rootfs over `layers` (top first), config.json, and
   * a detached shim that runs it. On any failure everything made so far is undone and the
   * error names the step that failed.
   *
   * `beforeCreate`, `beforeStart`: what the caller makes meanwhile (the container's network: its
   * namespace and files, then its address). The bundle is made while both are pending, the
   * runtime's `create` runs once `beforeCreate` resolves, the program starts once `beforeStart`
   * does. When either rejects, whatever was created is deleted, the create undone, and that
   * error is the one reported.
   *
   * `upperDir` (image builds): the overlay's upper directory lives there instead of in the
   * container's state directory, so it outlives remove() and can become a layer. It must not
   * exist yet and must be on the state directory's filesystem (overlayfs needs upper and work
   * on one). A failed create removes it.
   */
  async create(
    spec: RunSpec,
    opts: {
      layers: string[];
      upperDir?: string;
      beforeCreate?: Promise<unknown>;
      beforeStart?: Promise<unknown>;
    },
  ): Promise<CreatedContainer> {
    const { id } = spec;
    const volumesDir = this.layout.volumes(validateContainerId(id));
    const config = buildOciConfig(spec, { ...this.opts.oci, volumesDir });
    // The container's volumes outlive it (a restart keeps their content): made once, removed
    // by removeVolumes() when their owner goes.
    for (const m of spec.mounts ?? [])
      if (m.type === 'volume' && m.volume !== undefined)
        await mkdir(join(volumesDir, m.volume), { recursive: true, mode: 0o755 });
    if (!Array.isArray(opts.layers) || opts.layers.length === 0) {
      throw new InvalidSpecError('layers', 'at least one image layer is needed');
    }
    // Independent steps run side by side (each fs call is a thread-pool round trip); all
    // settle before a failure is reported, so undo sees everything that was made.
    await allSettled([
      ...opts.layers.map(async (layer, i) => {
        const s = await stat(layer).catch((err: unknown) => {
          throw new InvalidSpecError(`layers[${i}]`, `${layer}: ${errCode(err) ?? String(err)}`);
        });
        if (!s.isDirectory())
          throw new InvalidSpecError(`layers[${i}]`, `${layer} is not a directory`);
      }),
      mkdir(this.layout.containersDir, { recursive: true, mode: 0o711 }),
      mkdir(this.layout.runtimeRoot, { recursive: true, mode: 0o700 }),
    ]);
    const native = this.native();
    const p = this.paths(id);

    try {
      await mkdir(p.dir, { mode: 0o711 });
    } catch (err) {
      if (errCode(err) === 'EEXIST')
        throw new ContainerError(id, 'create', new Error('already exists'));
      throw new ContainerError(id, 'create state directory', err);
    }

    const undo: Array<() => Promise<void>> = [() => rm(p.dir, { recursive: true, force: true })];
    let step = 'create state directory';
    try {
      const upper = opts.upperDir ?? p.upper;
      if (opts.upperDir !== undefined) {
        await mkdir(opts.upperDir, { mode: 0o755 });
        undo.push(() => rm(upper, { recursive: true, force: true }));
      }
      await allSettled([
        mkdir(p.upper, { mode: 0o755 }),
        mkdir(p.work, { mode: 0o755 }),
        mkdir(p.bundle, { mode: 0o755 }).then(() => mkdir(p.rootfs, { mode: 0o755 })),
      ]);
      // The overlay's root takes the upper dir's mode: keep it 0755 whatever the umask.
      await chmod(upper, 0o755);

      // The mount and the bundle's files are independent: made side by side.
      step = 'mount rootfs';
      const mounted = native
        .mountOverlay({ lower: opts.layers, upper, work: p.work, target: p.rootfs })
        .then(() => void undo.push(() => this.unmountRootfs(p)));
      const record: SpecRecord = { spec, layers: opts.layers, createdAt: new Date().toISOString() };
      const written = writeFile(p.config, JSON.stringify(config, null, 2)).then(() =>
        writeJsonAtomic(p.spec, record),
      );
      const [mount, files] = await Promise.allSettled([mounted, written]);
      if (mount.status === 'rejected') throw mount.reason;
      step = 'write config.json';
      if (files.status === 'rejected') throw files.reason;

      step = 'wait for the network';
      await opts.beforeCreate;

      step = 'start shim';
      // The shim undoes a failed start itself; this covers a shim that died half-way.
      undo.push(() => this.deleteRuntimeState(id));
      // What the container needs before it runs and the caller makes meanwhile (its network)
      // gates the shim's `start`: the runtime's `create` runs at the same time.
      const started = await this.startShim(id, p, opts.beforeStart);
      undo.push(() => this.killAndForget(id, started.shimPid));

      step = 'record shim';
      const shimRecord: ShimRecord = {
        shimPid: started.shimPid,
        shimStartTime: native.pidStartTime(started.shimPid)?.toString() ?? '',
        pid: started.pid,
        startTime: native.pidStartTime(started.pid)?.toString() ?? '',
      };
      const [, status] = await Promise.all([
        writeJsonAtomic(p.shim, shimRecord),
        readJson<ShimStatus>(p.status),
      ]);
      this.watch(id, started.shimPid);
      const created = {
        id,
        pid: started.pid,
        shimPid: started.shimPid,
        startedAt: status?.startedAt ?? record.createdAt,
      };
      this.log.debug('container started', { ...created });
      return created;
    } catch (err) {
      const cleanupErrors: unknown[] = [];
      for (const fn of undo.reverse()) {
        try {
          await fn();
        } catch (e) {
          cleanupErrors.push(e);
        }
      }
      this.log.warn('container create failed', { id, step, error: String(err) });
      throw new ContainerError(id, step, err, cleanupErrors);
    }
  }

  /**
   * Compiles what every create() needs and caches per state directory (the seccomp filter of
   * the default profile, about 15 ms) ahead of the first create(). Best effort: if it fails,
   * the first create() compiles it. Only conductor-runtime has the `prepare` command.
   */
  async prepare(): Promise<void> {
    if (basename(this.runtime.path) !== 'conductor-runtime') return;
    const bundle = join(this.layout.runtimeRoot, `.prepare-${process.pid}`);
    try {
      await mkdir(join(bundle, 'rootfs'), { recursive: true, mode: 0o700 });
      const config = buildOciConfig({ id: 'prepare', args: ['/bin/true'] }, this.opts.oci);
      await writeFile(join(bundle, 'config.json'), JSON.stringify(config));
      await new Promise<void>((resolve, reject) => {
        execFile(
          this.runtime.path,
          ['--root', this.layout.runtimeRoot, 'prepare', '--bundle', bundle],
          (err) => (err ? reject(err) : resolve()),
        );
      });
    } catch (err) {
      this.log.warn('preparing the runtime failed; the first create compiles its filter', {
        error: String(err),
      });
    } finally {
      await rm(bundle, { recursive: true, force: true });
    }
  }

  /**
   * Runs the shim and reads its one JSON line. With `gate`, the shim creates the container at
   * once and starts it when `gate` resolves (one byte on its stdin, `--start-gate`); when `gate`
   * rejects, stdin is closed unsaid, the shim deletes what it created, and this rejects with
   * `gate`'s error.
   */
  private async startShim(
    id: string,
    p: ContainerPaths,
    gate?: Promise<unknown>,
  ): Promise<{ pid: number; shimPid: number }> {
    const args = ['--id', id, '--bundle', p.bundle, '--dir', p.dir, '--runtime', this.runtime.path];
    if (gate) args.push('--start-gate');
    args.push('--runtime-root', this.layout.runtimeRoot);
    if (this.opts.logMaxSize !== undefined)
      args.push('--log-max-size', String(this.opts.logMaxSize));
    if (this.opts.logMaxFiles !== undefined)
      args.push('--log-max-files', String(this.opts.logMaxFiles));
    const child = await spawnChild(this.shimPath, args, {
      detached: true,
      stdio: [gate ? 'pipe' : 'ignore', 'pipe', 'ignore'],
    });
    return new Promise((resolve, reject) => {
      let gateError: unknown;
      gate?.then(
        () => child.stdin?.end('s'),
        (err: unknown) => {
          gateError = err;
          child.stdin?.end();
        },
      );
      let out = '';
      let settled = false;
      const finish = (err: Error | undefined, value?: { pid: number; shimPid: number }) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        child.stdout?.destroy();
        if (gateError !== undefined)
          reject(gateError instanceof Error ? gateError : new Error(String(gateError)));
        else if (err) reject(err);
        else if (value) resolve(value);
      };
      const timeoutMs = this.opts.startTimeoutMs ?? 60000;
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        finish(new Error(`${this.shimPath} reported nothing within ${timeoutMs} ms`));
      }, timeoutMs);
      const parse = (line: string) => {
        let msg: { ok?: boolean; pid?: number; shimPid?: number; error?: string };
        try {
          msg = JSON.parse(line) as typeof msg;
        } catch {
          finish(
            new Error(`${this.shimPath} printed ${JSON.stringify(line)}, expected a JSON line`),
          );
          return;
        }
        if (msg.ok === true && Number.isInteger(msg.pid) && Number.isInteger(msg.shimPid)) {
          finish(undefined, { pid: msg.pid as number, shimPid: msg.shimPid as number });
        } else {
          finish(new Error(msg.error ?? `shim said ${line}`));
        }
      };
      child.stdout?.setEncoding('utf8');
      child.stdout?.on('data', (chunk: string) => {
        out += chunk;
        const nl = out.indexOf('\n');
        if (nl >= 0) parse(out.slice(0, nl));
      });
      void child.exited.then(({ code, signal }) => {
        // Output written just before exit may still be in the pipe: give it a moment.
        setTimeout(() => {
          if (out.trim()) parse(out.trim());
          else
            finish(
              new Error(
                `${this.shimPath} exited (${signal ?? `code ${String(code)}`}) without a status line`,
              ),
            );
        }, 50).unref();
      });
    });
  }

  /** Undo for a started container: kill it, wait for its shim, drop the runtime's state. */
  private async killAndForget(id: string, shimPid: number): Promise<void> {
    const native = this.native();
    await this.runtime.kill(id, 'KILL').catch(() => undefined);
    const cancel = new AbortController();
    const waited = await within(
      native.waitForExit(shimPid, cancel.signal).catch(() => undefined),
      30000,
    );
    cancel.abort();
    if (waited === 'timeout')
      throw new Error(`shim ${shimPid} did not exit after SIGKILL to the container`);
    await this.deleteRuntimeState(id);
  }

  private async deleteRuntimeState(id: string): Promise<void> {
    try {
      await this.runtime.delete(id, true);
    } catch (err) {
      // Gone already (the shim deletes after the exit) is what we want; anything else is not.
      const left = await stat(`${this.layout.runtimeRoot}/${id}`).then(
        () => true,
        () => false,
      );
      if (left) throw err;
    }
  }

  private async unmountRootfs(p: ContainerPaths): Promise<void> {
    if (!isMounted(p.rootfs)) return;
    const native = this.native();
    try {
      await native.unmount(p.rootfs);
    } catch (err) {
      if (errCode(err) !== 'EBUSY') throw err;
      this.log.warn('rootfs busy, detaching', { rootfs: p.rootfs });
      await native.unmount(p.rootfs, { detach: true });
    }
  }

  /** Exit watcher on the shim: the shim exits after the container, once status.json is final. */
  private watch(id: string, shimPid: number): Watch {
    const existing = this.watches.get(id);
    if (existing && existing.shimPid === shimPid) return existing;
    const cancel = new AbortController();
    const exited = Promise.resolve()
      .then(() => this.native().waitForExit(shimPid, cancel.signal))
      .catch((err: unknown) => {
        if (cancel.signal.aborted) throw abortError();
        // ESRCH: it exited before we started watching.
        if (errCode(err) !== 'ESRCH')
          this.log.warn('waitForExit failed', { id, shimPid, error: String(err) });
      })
      .then(() => this.inspect(id))
      .then((info) => {
        if (this.watches.get(id) === w) this.watches.delete(id);
        this.log.debug('container exited', { ...info });
        return info;
      });
    // A cancelled wait is not an unhandled rejection: its waiters were told.
    exited.catch(() => undefined);
    const w: Watch = { shimPid, exited, cancel, waiters: 0 };
    this.watches.set(id, w);
    return w;
  }

  /**
   * The container's exit, shared by everyone waiting for it. `signal` ends this caller's wait
   * (rejecting with an AbortError); the last waiter to leave cancels the native wait, so an
   * abandoned wait keeps nothing alive.
   */
  private exitOf(id: string, shimPid: number, signal?: AbortSignal): Promise<ContainerInfo> {
    if (signal?.aborted) return Promise.reject(abortError());
    const w = this.watch(id, shimPid);
    w.waiters += 1;
    return new Promise<ContainerInfo>((resolve, reject) => {
      let left = false;
      const leave = (): void => {
        if (left) return;
        left = true;
        w.waiters -= 1;
        signal?.removeEventListener('abort', onAbort);
        w.cancel.signal.removeEventListener('abort', onCancel);
      };
      const onAbort = (): void => {
        leave();
        if (w.waiters === 0 && this.watches.get(id) === w) {
          this.watches.delete(id);
          w.cancel.abort();
        }
        reject(abortError());
      };
      // The watch itself was cancelled (close(), or the last other waiter left).
      const onCancel = (): void => {
        leave();
        reject(abortError());
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      w.cancel.signal.addEventListener('abort', onCancel, { once: true });
      w.exited.then(
        (info) => {
          leave();
          resolve(info);
        },
        (err: unknown) => {
          leave();
          reject(err instanceof Error ? err : new Error(String(err)));
        },
      );
    });
  }

  /**
   * Cancels every pending exit wait (their callers get an AbortError). Containers keep running;
   * a new ContainerRuntime adopts them. The runtime may be used again afterwards.
   */
  close(): void {
    const watches = [...this.watches.values()];
    this.watches.clear();
    for (const w of watches) w.cancel.abort();
  }

  private async shimAlive(
    p: ContainerPaths,
    shimPid: number | undefined,
    rec: ShimRecord | undefined,
  ): Promise<boolean> {
    if (!shimPid) return false;
    const native = this.native();
    const start = native.pidStartTime(shimPid);
    if (start === null || isZombie(shimPid)) return false;
    if (rec && rec.shimPid === shimPid && rec.shimStartTime !== '')
      return rec.shimStartTime === start.toString();
    // No record (the creator died between the shim's start and writing shim.json): accept the
    // process only if it is a shim for this very directory.
    try {
      return readFileSync(`/proc/${shimPid}/cmdline`, 'utf8').split('\0').includes(p.dir);
    } catch {
      return false;
    }
  }

  /** Whether the container's init still runs, though its shim is gone. */
  private async orphanAlive(id: string): Promise<boolean> {
    const rec = await readJson<ShimRecord>(this.paths(id).shim);
    if (!rec?.startTime || isZombie(rec.pid)) return false;
    return this.native().pidStartTime(rec.pid)?.toString() === rec.startTime;
  }

  /** The container as recorded on disk, with the shim's liveness checked. */
  async inspect(id: string): Promise<ContainerInfo> {
    const p = this.paths(id);
    const [rec, specRec, pidText] = await Promise.all([
      readJson<ShimRecord>(p.shim),
      readJson<SpecRecord>(p.spec),
      readFile(p.shimPid, 'utf8').catch(() => undefined),
    ]);
    const shimPid = rec?.shimPid ?? (pidText ? Number(pidText.trim()) : undefined);
    // Liveness before status.json: a shim that exits in between has written its final status
    // by then, so a dead shim is never paired with a status read before its exit (which read as
    // a container gone without an exit code).
    const alive = await this.shimAlive(p, shimPid, rec);
    const status = await readJson<ShimStatus>(p.status);
    if (!status && !rec && !specRec && !(await stat(p.dir).catch(() => undefined))) {
      throw new ContainerNotFoundError(id);
    }
    let state: ContainerState;
    if (status?.status === 'stopped') state = 'stopped';
    else if (alive) state = status ? 'running' : 'creating';
    else state = 'unknown';
    const info: ContainerInfo = { id, status: state, shimAlive: alive };
    if (specRec?.spec.name !== undefined) info.name = specRec.spec.name;
    if (specRec?.spec.annotations) info.annotations = specRec.spec.annotations;
    const pid = status?.pid ?? rec?.pid;
    if (pid !== undefined) info.pid = pid;
    if (shimPid !== undefined) info.shimPid = shimPid;
    if (status?.startedAt) info.startedAt = status.startedAt;
    if (status?.status === 'stopped') {
      if (status.exitCode !== undefined) info.exitCode = status.exitCode;
      info.signal = status.signal ?? null;
      info.oomKilled = status.oomKilled === true;
      if (status.finishedAt) info.finishedAt = status.finishedAt;
    }
    return info;
  }

  async list(): Promise<ContainerInfo[]> {
    let names: string[];
    try {
      names = await readdir(this.layout.containersDir);
    } catch (err) {
      if (errCode(err) === 'ENOENT') return [];
      throw err;
    }
    const out: ContainerInfo[] = [];
    for (const name of names.sort()) {
      try {
        out.push(await this.inspect(name));
      } catch (err) {
        if (!(err instanceof ContainerNotFoundError)) throw err; // removed while we looked
      }
    }
    return out;
  }

  /**
   * After a restart: watch every container whose shim still lives (it keeps running, and its
   * exit is reported as an 'exit' event); the rest report what their status.json recorded.
   */
  async adopt(): Promise<ContainerInfo[]> {
    const infos = await this.list();
    for (const info of infos) {
      if (info.shimAlive && info.shimPid !== undefined) this.watch(info.id, info.shimPid);
    }
    this.log.info('adopted containers', {
      running: infos.filter((i) => i.shimAlive).map((i) => i.id),
      total: infos.length,
    });
    return infos;
  }

  /**
   * Resolves when the container has exited (at once if it is not running). An abort of
   * `signal` rejects with an AbortError and cancels the wait.
   */
  async waitForExit(id: string, signal?: AbortSignal): Promise<ContainerInfo> {
    const info = await this.inspect(id);
    if (!info.shimAlive || info.shimPid === undefined) return info;
    return this.exitOf(id, info.shimPid, signal);
  }

  /**
   * SIGTERM, then SIGKILL once `gracePeriodSeconds` have passed (0: SIGKILL at once). Resolves
   * with the final status once the shim has recorded the exit.
   */
  async stop(id: string, opts: { gracePeriodSeconds?: number } = {}): Promise<ContainerInfo> {
    // Whatever it waited on, a stop that returns (or throws) leaves no wait behind.
    const cancel = new AbortController();
    try {
      return await this.stopUntil(id, opts.gracePeriodSeconds ?? 10, cancel.signal);
    } finally {
      cancel.abort();
    }
  }

  private async stopUntil(id: string, grace: number, cancel: AbortSignal): Promise<ContainerInfo> {
    const info = await this.inspect(id);
    let exited: Promise<ContainerInfo>;
    if (info.shimAlive && info.shimPid !== undefined) {
      exited = this.exitOf(id, info.shimPid, cancel);
      exited.catch(() => undefined); // cancelled once stop() is done with it
      if (info.status === 'stopped') {
        // Exited; the shim is only deleting the runtime's state.
        const r = await within(exited, 30000);
        if (r === 'timeout')
          throw new ContainerError(id, 'stop', new Error(`shim ${info.shimPid} did not exit`));
        return r;
      }
    } else if (
      info.status === 'unknown' &&
      info.pid !== undefined &&
      (await this.orphanAlive(id))
    ) {
      // The shim died and the container lives on: signal it all the same and wait on its pid.
      this.log.warn('stopping a container whose shim is gone', { id, pid: info.pid });
      const pid = info.pid;
      exited = this.native()
        .waitForExit(pid, cancel)
        .catch(() => undefined)
        .then(() => this.inspect(id));
    } else {
      return info;
    }
    const signal = async (sig: string) => {
      try {
        await this.runtime.kill(id, sig);
      } catch (err) {
        // The container may have exited meanwhile; only a live container makes this an error.
        if ((await within(exited, 200)) === 'timeout') {
          throw new ContainerError(id, `stop: kill ${sig}`, err);
        }
      }
    };
    if (grace > 0) {
      await signal('TERM');
      const r = await within(exited, grace * 1000);
      if (r !== 'timeout') return r;
      this.log.info('grace period over, killing', { id, gracePeriodSeconds: grace });
    }
    await signal('KILL');
    const r = await within(exited, 30000);
    if (r === 'timeout')
      throw new ContainerError(id, 'stop', new Error('still running 30 s after SIGKILL'));
    return r;
  }

  /**
   * Removes the container and everything it had on the host: process, runtime state, cgroup,
   * mount and directory. A running container needs `force` (it is killed). Removing a container
   * that does not exist is not an error.
   */
  async remove(id: string, opts: { force?: boolean } = {}): Promise<void> {
    const p = this.paths(id);
    let info: ContainerInfo | undefined;
    try {
      info = await this.inspect(id);
    } catch (err) {
      if (err instanceof ContainerNotFoundError) return;
      throw err;
    }
    const running = info.shimAlive
      ? info.status !== 'stopped'
      : info.status === 'unknown' && (await this.orphanAlive(id));
    if (running && !opts.force) {
      throw new ContainerError(id, 'remove', new Error('is running; stop it first or use force'));
    }
    if (running || info.shimAlive) await this.stop(id, { gracePeriodSeconds: 0 });
    let step = 'delete runtime state';
    try {
      await this.deleteRuntimeState(id);
      step = 'unmount rootfs';
      await this.unmountRootfs(p);
      step = 'remove state directory';
      await rm(p.dir, { recursive: true, force: true });
    } catch (err) {
      throw new ContainerError(id, `remove: ${step}`, err);
    }
    this.watches.delete(id);
    this.log.debug('container removed', { id });
  }

  /**
   * Removes the container's volumes (`volume` mounts): when their owner is gone, after the
   * container is removed. Nothing to remove is not an error.
   */
  async removeVolumes(id: string): Promise<void> {
    await rm(this.layout.volumes(validateContainerId(id)), { recursive: true, force: true });
  }

  /** Runs a process in the container's namespaces (`runtime exec`); stdio defaults to pipes. */
  exec(id: string, argv: string[], opts: ExecOptions = {}): ChildProcess {
    validateContainerId(id);
    if (argv.length === 0) throw new InvalidSpecError('argv', 'must name a command');
    return this.runtime.exec(id, argv, opts);
  }

  /** exec() for a command that needs no input: collects its output and exit status. */
  execOutput(
    id: string,
    argv: string[],
    opts: Omit<ExecOptions, 'stdio'> = {},
  ): Promise<ExecResult> {
    const child = this.exec(id, argv, { ...opts, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout?.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    return new Promise((resolve, reject) => {
      child.on('error', (err) => reject(new ContainerError(id, `exec ${argv[0] ?? ''}`, err)));
      child.on('close', (exitCode, signal) => resolve({ exitCode, signal, stdout, stderr }));
    });
  }

  /** Log lines from container.log (across rotation); `follow` keeps going until the container exits. */
  async *logs(
    id: string,
    opts: { follow?: boolean; tail?: number; signal?: AbortSignal } = {},
  ): AsyncGenerator<LogEntry> {
    const p = this.paths(id);
    let done: Promise<unknown> = Promise.resolve();
    const info = await this.inspect(id);
    // A reader that stops early (Ctrl-C, a consumer's break) leaves no wait behind.
    const cancel = new AbortController();
    try {
      if (opts.follow && info.shimAlive && info.shimPid !== undefined) {
        done = this.exitOf(id, info.shimPid, cancel.signal);
        done.catch(() => undefined);
      }
      yield* readCriLog(p.log, { ...opts, done });
    } finally {
      cancel.abort();
    }
  }

  /** Usage of the container's cgroup (the one its config.json names). */
  async stats(id: string): Promise<CgroupStats> {
    const config = await readJson<{ linux?: { cgroupsPath?: string } }>(this.paths(id).config);
    const path = config?.linux?.cgroupsPath ?? cgroupsPathFor(id, this.hostNames.cgroupParent);
    return this.native().cgroupStats(path);
  }

  /**
   * Statistics of many running containers in one read (a metrics scrape, `conductor top`): each
   * one's cgroup and, given its pid (`network`), its network namespace's interfaces. Containers
   * gone meanwhile are left out of the map.
   */
  async statsMany(targets: readonly StatsRequest[]): Promise<Map<string, ContainerStats>> {
    const paths = targets.map((t) =>
      cgroupsPathFor(validateContainerId(t.id), this.hostNames.cgroupParent),
    );
    const results = await this.native().containerStats(
      targets.map((t, i) => ({
        cgroupsPath: paths[i] ?? '',
        ...(t.network !== undefined ? { pid: t.network } : {}),
      })),
    );
    const out = new Map<string, ContainerStats>();
    results.forEach((r, i) => {
      const t = targets[i];
      if (t && 'cgroup' in r) out.set(t.id, { cgroupsPath: paths[i] ?? '', ...r });
      else if (t && 'error' in r && r.code !== 'ENOENT' && r.code !== 'ESRCH')
        this.log.warn('reading container statistics failed', { id: t.id, error: r.error });
    });
    return out;
  }
}
