/**
 * The native addon (build/Release/conductor_native.node, from runtime-core/native/addon/):
 * what Node cannot do in-process — wait for any process by pidfd, mount overlays, read cgroup
 * statistics, inspect namespaces. Nothing here blocks the event loop: mounts and cgroup reads
 * run on the libuv pool, exits are watched by one epoll thread.
 *
 * Errors from a failed syscall name the call and its argument, and carry `code` ('ESRCH',
 * 'EINVAL', ...) and `errno` as Node's own fs errors do.
 */
import { createRequire } from 'node:module';

import { buildOutput } from './paths.js';

export type NamespaceKind = 'pid' | 'uts' | 'ipc' | 'mnt' | 'net' | 'cgroup';

export interface OverlayOptions {
  /** Read-only layers, first = top (overlayfs's lowerdir order). Absolute, no ':' ',' '\'. */
  lower: readonly string[];
  /** The writable layer and overlayfs's work dir: absolute, on the same file system. */
  upper: string;
  work: string;
  /** Mount point (an existing directory). */
  target: string;
  /** Mount read-only (MS_RDONLY). */
  readonly?: boolean;
}

export interface UnmountOptions {
  /** MNT_DETACH: detach now, finish when the mount is no longer busy. */
  detach?: boolean;
}

/** A container's cgroup counters (runtime-core/native/cgroups/stats.cc), on v1, v2 and hybrid. */
export interface CgroupStats {
  /** Total CPU time in nanoseconds (a bigint: it passes 2^53 after 104 days). */
  cpuUsageNs: bigint;
  cpuUserNs: bigint;
  cpuSystemNs: bigint;
  /** CFS enforcement periods elapsed, and of those the ones where it was throttled. */
  cpuPeriods: number;
  cpuThrottledPeriods: number;
  cpuThrottledNs: bigint;
  /** µs of CPU per period; null = no quota. */
  cpuQuotaUs: number | null;
  /** µs; null = unknown (no cpu controller). */
  cpuPeriodUs: number | null;
  /** Bytes in use, page cache included. */
  memoryUsage: number;
  /** Usage minus inactive file cache, as the kubelet reports it. */
  memoryWorkingSet: number;
  /** Anonymous memory (v1 total_rss, v2 anon). */
  memoryRss: number;
  /** Page cache (v1 total_cache, v2 file). */
  memoryCache: number;
  /** Times usage hit the limit (v1 memory.failcnt, v2 memory.events max). */
  memoryFailcnt: number;
  /** Bytes; null = unlimited. */
  memoryLimit: number | null;
  pidsCurrent: number;
  /** null = unlimited. */
  pidsLimit: number | null;
  processes: number;
  threads: number;
  oomKills: number;
}

/** One interface of a container's network namespace (/proc/PID/net/dev), `lo` left out. */
export interface InterfaceStats {
  name: string;
  rxBytes: number;
  rxPackets: number;
  rxErrors: number;
  rxDropped: number;
  txBytes: number;
  txPackets: number;
  txErrors: number;
  txDropped: number;
}

export interface StatsTarget {
  /** linux.cgroupsPath. */
  cgroupsPath: string;
  /** A process in the container: its network namespace's interfaces are read too. */
  pid?: number;
}

/** One target's statistics, or why there are none (`code` ENOENT: gone meanwhile). */
export type StatsResult =
  { cgroup: CgroupStats; interfaces?: InterfaceStats[] } | { error: string; code?: string };

export type LayerCompression = 'auto' | 'gzip' | 'zstd' | 'none';

export interface UnpackLayerOptions {
  /** The layer tarball (absolute path to a regular file). */
  archive: string;
  /** An existing, empty directory (absolute path): becomes the layer, an overlayfs lowerdir. */
  target: string;
  /** Default 'auto': sniffs the magic bytes (gzip 1f 8b, zstd 28 b5 2f fd, else plain tar). */
  compression?: LayerCompression;
}

export interface UnpackLayerResult {
  /** Archive entries applied (pax and GNU long-name headers not counted). */
  entries: number;
  /** Bytes of regular-file data written. */
  bytes: number;
  /** `sha256:<hex>` of the uncompressed tar stream: the layer's diff_id, for the caller to check. */
  diffId: string;
}

export interface PackLayerOptions {
  /** The layer directory (absolute): a layer of the store, overlay whiteouts and all. */
  source: string;
  /** The tar to write (absolute): created, it must not exist. */
  target: string;
  /** Default 'gzip'. */
  compression?: 'gzip' | 'none';
  /** gzip level, 1 (fastest) to 9 (smallest); default 6, zlib's and docker's default. */
  level?: number;
}

export interface PackLayerResult {
  /** Tar entries written (pax headers not counted). */
  entries: number;
  /** Bytes of regular-file data written. */
  bytes: number;
  /** `sha256:<hex>` of the uncompressed tar: the layer's diff_id. */
  diffId: string;
  /** `sha256:<hex>` of the file written: the blob's digest (= diffId without compression). */
  digest: string;
  /** Bytes of the file written. */
  size: number;
}

export type NativeStdio = 'pipe' | 'ignore' | 'inherit';

export interface NativeSpawnOptions {
  /** The program: a path, or a bare name looked up in PATH. */
  file: string;
  /** argv, argv[0] included. */
  args: string[];
  /** `KEY=value` entries; default: this process's environment. */
  env?: string[];
  cwd?: string;
  /** stdin, stdout, stderr; default all 'ignore' (/dev/null). */
  stdio?: [NativeStdio, NativeStdio, NativeStdio];
  /** Run the child in a session of its own (setsid). */
  setsid?: boolean;
}

export interface NativeExit {
  /** The exit code, or null when a signal ended it. */
  code: number | null;
  /** The signal number that ended it, or null. */
  signal: number | null;
}

export interface NativeSpawned {
  pid: number;
  /** For killChild(). */
  id: number;
  /** Our ends of the pipes (file descriptors), null where stdio was not 'pipe'. */
  stdin: number | null;
  stdout: number | null;
  stderr: number | null;
  /** Settles once the child has exited and been reaped. */
  exited: Promise<NativeExit>;
}

/** An error from the addon: `code`/`errno` are set when a syscall failed. */
export interface NativeError extends Error {
  code?: string;
  errno?: number;
}

interface Addon {
  /** `exited` settles when the process exits; cancelWait(id) rejects it (ECANCELED). */
  waitForExit(pid: number): { id: number; exited: Promise<void> };
  cancelWait(id: number): void;
  spawn(opts: NativeSpawnOptions): Promise<NativeSpawned>;
  killChild(id: number, signal: number): boolean;
  pidStartTime(pid: number): bigint | null;
  mountOverlay(opts: OverlayOptions): Promise<void>;
  unmount(target: string, opts?: UnmountOptions): Promise<void>;
  cgroupStats(cgroupsPath: string): Promise<CgroupStats>;
  containerStats(targets: readonly StatsTarget[]): Promise<StatsResult[]>;
  nsInodes(pid: number): Record<NamespaceKind, string>;
  unpackLayer(opts: UnpackLayerOptions): Promise<UnpackLayerResult>;
  packLayer(opts: PackLayerOptions): Promise<PackLayerResult>;
  resolveInRoot(root: string, path: string): string;
  netnsCreate(path: string): Promise<void>;
  netnsRemove(path: string): Promise<void>;
}

/** Path of the addon, found from this module's location (works from src/ and dist/). */
export const addonPath: string = buildOutput('conductor_native.node');

let loaded: Addon | undefined;

// Loaded on first use, so importing this module (for types, or in unit tests that inject a
// fake) does not need a native build.
function addon(): Addon {
  loaded ??= createRequire(import.meta.url)(addonPath) as Addon;
  return loaded;
}

/**
 * Resolves when process `pid` exits — any process, not only our children (a pidfd is readable
 * once its process has exited, whoever reaps it). Rejects with code ESRCH when it does not
 * exist. A pending wait keeps the process alive; an idle addon does not. Aborting `signal`
 * cancels the wait (its pidfd is closed) and rejects with an AbortError.
 */
export async function waitForExit(pid: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) throw abortError(pid, signal);
  const native = addon();
  const { id, exited } = native.waitForExit(pid);
  if (!signal) return exited;
  const cancel = (): void => native.cancelWait(id);
  signal.addEventListener('abort', cancel, { once: true });
  try {
    await exited;
  } catch (err) {
    if (signal.aborted) throw abortError(pid, signal);
    throw err;
  } finally {
    signal.removeEventListener('abort', cancel);
  }
}

/** Shaped as Node's own (fs, timers/promises): name AbortError, code ABORT_ERR, the reason as cause. */
function abortError(pid: number, signal: AbortSignal): Error {
  return Object.assign(new Error(`waitForExit(${pid}): aborted`, { cause: signal.reason }), {
    name: 'AbortError',
    code: 'ABORT_ERR',
  });
}

/**
 * Starts a program with posix_spawn on the libuv pool, without forking this process
 * (runtime-core/native/addon/spawn.cc): the JS thread never waits for it, where Node's
 * child_process blocks it while the controller's page tables are copied. Rejects (code ENOENT,
 * EACCES, ...) when the program cannot be run. Use it through spawn.ts.
 */
export function spawnNative(opts: NativeSpawnOptions): Promise<NativeSpawned> {
  return addon().spawn(opts);
}

/** Sends `signal` to a spawnNative() child through its pidfd; false once it has been reaped. */
export function killChild(id: number, signal: number): boolean {
  return addon().killChild(id, signal);
}

/**
 * The process's start time (field 22 of /proc/PID/stat, clock ticks since boot), or null when
 * it does not exist. Compare it with a recorded value to tell a reused PID from the original.
 */
export function pidStartTime(pid: number): bigint | null {
  return addon().pidStartTime(pid);
}

/**
 * Mounts an overlay of `lower` (first = top) under `upper` on `target`. Invalid paths reject
 * with EINVAL naming the field; layer lists too long for mount(2)'s one page of options use
 * the new mount API (fsconfig lowerdir+, Linux 6.8+).
 */
export async function mountOverlay(opts: OverlayOptions): Promise<void> {
  return addon().mountOverlay(opts);
}

/** umount2(target, UMOUNT_NOFOLLOW [| MNT_DETACH]). `target` must be absolute. */
export async function unmount(target: string, opts?: UnmountOptions): Promise<void> {
  return addon().unmount(target, opts ?? {});
}

/**
 * Usage of the cgroup at `cgroupsPath` (linux.cgroupsPath, e.g. "/conductor/abc") on whatever
 * layout the host has (v1, v2, hybrid). Rejects with ENOENT when the cgroup does not exist.
 */
export async function cgroupStats(cgroupsPath: string): Promise<CgroupStats> {
  return addon().cgroupStats(cgroupsPath);
}

/**
 * Statistics of many containers in one job on the libuv pool (a scrape): each target's cgroup,
 * and with a pid the interfaces of its network namespace. A target that cannot be read (its
 * cgroup or process gone) gets an error in its place; the others are unaffected.
 */
export async function containerStats(targets: readonly StatsTarget[]): Promise<StatsResult[]> {
  return addon().containerStats(targets);
}

/**
 * The namespaces process `pid` is in, as /proc/PID/ns/* links ("pid:[4026531836]"): two
 * processes share a namespace exactly when their links are equal.
 */
export function nsInodes(pid: number): Record<NamespaceKind, string> {
  return addon().nsInodes(pid);
}

/**
 * Unpacks one OCI layer tarball (ustar, pax, GNU long names; gzip, zstd or none) into
 * `target`, streaming, on the libuv pool. Modes (setuid/setgid/sticky too), numeric owners and
 * mtimes are kept exactly; directories get their times after their contents. OCI whiteouts
 * become overlayfs ones: `d/.wh.NAME` a 0/0 character device `d/NAME`, `d/.wh..wh..opq` the
 * xattr `trusted.overlay.opaque=y` on `d`. Of pax `SCHILY.xattr.*` only `user.*` and
 * `security.capability` are applied (a layer must not forge `trusted.overlay.*`).
 *
 * Hostile archives are refused, never rewritten: absolute names or names with a `..`
 * component, any entry below a symlink (parents are opened with openat2 RESOLVE_IN_ROOT |
 * RESOLVE_NO_SYMLINKS), hardlinks to anything but a non-directory entry already in the layer,
 * device nodes, unsupported types, truncated or corrupt data. The promise rejects on the first
 * such entry with a message naming it (`layer entry "a/../x": path leaves the layer`).
 *
 * On rejection what was written so far is left in `target`: the caller must delete `target`.
 */
export async function unpackLayer(opts: UnpackLayerOptions): Promise<UnpackLayerResult> {
  return addon().unpackLayer(opts);
}

/**
 * Writes the layer directory `source` as an OCI layer tar at `target` (runtime-core/native/image/
 * pack.h), on the libuv pool: the reverse of unpackLayer. Overlayfs whiteouts (0/0 character
 * devices) become `.wh.NAME`, an opaque directory (`trusted.overlay.opaque=y`) gets
 * `DIR/.wh..wh..opq`; modes, numeric owners, mtimes (with nanoseconds), symlinks, fifos,
 * hardlinks between the layer's own entries, and `user.*` / `security.capability` xattrs are
 * kept. Nothing is followed: every entry is opened by one name below its parent's fd with
 * O_NOFOLLOW, and a mount point inside the layer is refused.
 *
 * Rejects, naming the entry, on anything a layer cannot carry: device nodes, sockets, names
 * starting with `.wh.`, overlayfs redirects and metacopy, xattrs other than those above (ACLs,
 * trusted.*), a file changing while it is read. What was written is left in `target`: the
 * caller removes it.
 */
export async function packLayer(opts: PackLayerOptions): Promise<PackLayerResult> {
  return addon().packLayer(opts);
}

/**
 * Resolves `path` as if `root` were `/` (openat2 RESOLVE_IN_ROOT: symlinks followed but kept
 * inside `root`, `..` stops at `root`) and returns the real host path. Missing trailing
 * components are allowed: the longest existing prefix is resolved and the rest appended; the
 * rest must not contain `..` and must not begin at a dangling symlink (EINVAL / ELOOP).
 * The answer holds while nothing else changes `root` (for copying into an image being built).
 */
export function resolveInRoot(root: string, path: string): string {
  return addon().resolveInRoot(root, path);
}

/**
 * A persistent network namespace bound at `path` (as `ip netns add`: the directory made a shared
 * mount point, an empty file, a new namespace bind-mounted on it). Rejects with EEXIST when the
 * path exists, EINVAL when it is not absolute or has an empty, "." or ".." component.
 */
export function netnsCreate(path: string): Promise<void> {
  return addon().netnsCreate(path);
}

/** Unbinds and removes a namespace netnsCreate made (`ip netns del`); gone already is fine. */
export function netnsRemove(path: string): Promise<void> {
  return addon().netnsRemove(path);
}
