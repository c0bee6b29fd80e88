/**
 * Builds an OCI runtime config.json from a Container-like spec, with the defaults Docker and
 * runc use (capabilities, masked/read-only paths, default mounts, seccomp, no_new_privs).
 * Pure apart from reading the seccomp profile and checking that bind sources exist.
 */
import { readFileSync, statSync } from 'node:fs';
import { posix } from 'node:path';

import type { OciConfig, OciMount, OciNamespace, OciResources, OciRlimit } from './oci-spec.js';
import { CONTAINER_ID_PATTERN, isValidContainerId } from './container-id.js';
import { DEFAULT_PATH } from './images/config.js';
import type { PortMapping } from './network/host-ports.js';
import { OCI_VERSION } from './oci-spec.js';
import { DEFAULT_SECCOMP_PROFILE, seccompForCapabilities, type SeccompHost } from './seccomp.js';

export type NetworkMode = 'none' | 'host' | 'bridge';

export interface ContainerMount {
  /** Absolute path inside the container. */
  containerPath: string;
  /**
   * `bind`: a host path (must exist); `tmpfs`: an emptyDir in memory; `volume`: the container's
   * own directory named `volume` (an emptyDir on disk), made by the runtime core under its state
   * dir and kept until removeVolumes().
   */
  type: 'bind' | 'tmpfs' | 'volume';
  hostPath?: string;
  /** `volume` only: a name, one path component (a Container's volume name). */
  volume?: string;
  readOnly?: boolean;
  /** tmpfs only. */
  sizeBytes?: number;
  /**
   * `bind` only: a path the runtime core makes itself before the container is created (its
   * network's /etc files), so it may not exist yet when the config is built.
   */
  madeByCore?: boolean;
}

/**
 * What the runtime core is asked to run: a process, its environment and limits, resolved by the
 * caller (the Container reconciler derives it from a Container and its Image; `conductor build`
 * from a run step). Not the API's ContainerSpec: no image names, no restart policy, no probes.
 */
export interface RunSpec {
  id: string;
  /** Human name (e.g. namespace/name of the resource); recorded as an annotation. */
  name?: string;
  /** Command and arguments, already resolved against the image's entrypoint/cmd. */
  args: string[];
  env?: Record<string, string>;
  workingDir?: string;
  hostname?: string;
  user?: { uid: number; gid: number; additionalGids?: number[] };
  resources?: {
    /** CPU limit in cores: 0.5 → quota 50000 per 100000 µs period. */
    cpu?: number;
    memoryBytes?: number;
    pids?: number;
  };
  mounts?: ContainerMount[];
  /**
   * `none` and `bridge` get a new network namespace (or join `netnsPath`); `host` shares the
   * host's. Through the RuntimeCore facade, `bridge` is a CNI attachment with an address and
   * `ports` published on the node (network/network.ts); the runtime alone gives it loopback.
   */
  network?: { mode: NetworkMode; netnsPath?: string; ports?: PortMapping[] };
  readonlyRootfs?: boolean;
  /** Names with or without the CAP_ prefix; `ALL` as in Docker's --cap-add/--cap-drop. */
  capabilities?: { add?: string[]; drop?: string[] };
  /** Not supported: present only so that asking for it is a clear error rather than ignored. */
  privileged?: boolean;
  annotations?: Record<string, string>;
}

export interface OciConfigOptions {
  /**
   * The cgroup containers are made under (an installation's, installation.ts): cgroupsPath is
   * `<cgroupParent>/<id>`. Default `/conductor`.
   */
  cgroupParent?: string;
  seccompProfilePath?: string;
  seccompHost?: SeccompHost;
  /** Hard RLIMIT_NOFILE the runtime can grant; default: this process's hard limit. */
  nofileHardLimit?: number;
  /** Where `volume` mounts live: `<volumesDir>/<name>` (StateLayout.volumes(id)). */
  volumesDir?: string;
}

export class InvalidSpecError extends Error {
  constructor(
    readonly field: string,
    detail: string,
  ) {
    super(`invalid container spec: ${field}: ${detail}`);
    this.name = 'InvalidSpecError';
  }
}

export const CPU_PERIOD_US = 100000;
export const ANNOTATION_ID = 'conductor.dev/id';
export const ANNOTATION_NAME = 'conductor.dev/name';

/** Docker's default set (moby oci/caps/defaults.go). */
export const DEFAULT_CAPABILITIES: readonly string[] = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_FSETID',
  'CAP_FOWNER',
  'CAP_MKNOD',
  'CAP_NET_RAW',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETFCAP',
  'CAP_SETPCAP',
  'CAP_NET_BIND_SERVICE',
  'CAP_SYS_CHROOT',
  'CAP_KILL',
  'CAP_AUDIT_WRITE',
];

export const ALL_CAPABILITIES: readonly string[] = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_DAC_READ_SEARCH',
  'CAP_FOWNER',
  'CAP_FSETID',
  'CAP_KILL',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETPCAP',
  'CAP_LINUX_IMMUTABLE',
  'CAP_NET_BIND_SERVICE',
  'CAP_NET_BROADCAST',
  'CAP_NET_ADMIN',
  'CAP_NET_RAW',
  'CAP_IPC_LOCK',
  'CAP_IPC_OWNER',
  'CAP_SYS_MODULE',
  'CAP_SYS_RAWIO',
  'CAP_SYS_CHROOT',
  'CAP_SYS_PTRACE',
  'CAP_SYS_PACCT',
  'CAP_SYS_ADMIN',
  'CAP_SYS_BOOT',
  'CAP_SYS_NICE',
  'CAP_SYS_RESOURCE',
  'CAP_SYS_TIME',
  'CAP_SYS_TTY_CONFIG',
  'CAP_MKNOD',
  'CAP_LEASE',
  'CAP_AUDIT_WRITE',
  'CAP_AUDIT_CONTROL',
  'CAP_SETFCAP',
  'CAP_MAC_OVERRIDE',
  'CAP_MAC_ADMIN',
  'CAP_SYSLOG',
  'CAP_WAKE_ALARM',
  'CAP_BLOCK_SUSPEND',
  'CAP_AUDIT_READ',
  'CAP_PERFMON',
  'CAP_BPF',
  'CAP_CHECKPOINT_RESTORE',
];

/** runc's defaults (`runc spec`), plus /sys/devices/virtual/powercap as Docker masks it. */
export const DEFAULT_MASKED_PATHS: readonly string[] = [
  '/proc/acpi',
  '/proc/asound',
  '/proc/kcore',
  '/proc/keys',
  '/proc/latency_stats',
  '/proc/timer_list',
  '/proc/timer_stats',
  '/proc/sched_debug',
  '/sys/firmware',
  '/proc/scsi',
  '/sys/devices/virtual/powercap',
];

export const DEFAULT_READONLY_PATHS: readonly string[] = [
  '/proc/bus',
  '/proc/fs',
  '/proc/irq',
  '/proc/sys',
  '/proc/sysrq-trigger',
];

/**
 * The filesystems every container gets, as runc's and Docker's defaults: proc, /dev (tmpfs),
 * devpts, shm, mqueue, sysfs read-only. Tests and benchmarks build their bundles from it too.
 */
export function standardMounts(): OciMount[] {
  return [
    { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
    {
      destination: '/dev',
      type: 'tmpfs',
      source: 'tmpfs',
      options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'],
    },
    {
      destination: '/dev/pts',
      type: 'devpts',
      source: 'devpts',
      options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'],
    },
    {
      destination: '/dev/shm',
      type: 'tmpfs',
      source: 'shm',
      options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'],
    },
    {
      destination: '/dev/mqueue',
      type: 'mqueue',
      source: 'mqueue',
      options: ['nosuid', 'noexec', 'nodev'],
    },
    {
      destination: '/sys',
      type: 'sysfs',
      source: 'sysfs',
      options: ['nosuid', 'noexec', 'nodev', 'ro'],
    },
  ];
}

function defaultMounts(): OciMount[] {
  return [
    ...standardMounts(),
    {
      destination: '/sys/fs/cgroup',
      type: 'cgroup',
      source: 'cgroup',
      options: ['nosuid', 'noexec', 'nodev', 'relatime', 'ro'],
    },
  ];
}

/**
 * RLIMIT_NOFILE: soft 1024 (what select() can handle, systemd's default soft limit too), hard as
 * high as the runtime may grant. Docker copies its daemon's limit (often 1048576), which cannot
 * work here: without CAP_SYS_RESOURCE no process can raise its hard limit above the host's
 * (20000 on these machines), so the hard limit is this process's own, capped at 1048576.
 */
export function defaultRlimits(nofileHard: number): OciRlimit[] {
  const hard = Math.min(nofileHard, 1048576);
  return [{ type: 'RLIMIT_NOFILE', soft: Math.min(1024, hard), hard }];
}

let cachedNofileHard: number | undefined;
function processNofileHard(): number {
  if (cachedNofileHard === undefined) {
    const m = /^Max open files\s+\S+\s+(\S+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    const v = m?.[1];
    cachedNofileHard = v === undefined || v === 'unlimited' ? 1048576 : Number(v);
  }
  return cachedNofileHard;
}

function normalizeCap(field: string, name: unknown): string {
  if (typeof name !== 'string') throw new InvalidSpecError(field, 'must be a string');
  const upper = name.toUpperCase();
  if (upper === 'ALL') return 'ALL';
  const cap = upper.startsWith('CAP_') ? upper : `CAP_${upper}`;
  if (!ALL_CAPABILITIES.includes(cap))
    throw new InvalidSpecError(field, `unknown capability "${name}"`);
  return cap;
}

/** Docker's TweakCapabilities: ALL in add wins, then ALL in drop, else defaults - drop + add. */
export function resolveCapabilities(
  add: readonly string[] = [],
  drop: readonly string[] = [],
): string[] {
  const adds = add.map((c, i) => normalizeCap(`capabilities.add[${i}]`, c));
  const drops = drop.map((c, i) => normalizeCap(`capabilities.drop[${i}]`, c));
  let caps: string[];
  if (adds.includes('ALL')) caps = ALL_CAPABILITIES.filter((c) => !drops.includes(c));
  else if (drops.includes('ALL')) caps = adds;
  else caps = [...DEFAULT_CAPABILITIES.filter((c) => !drops.includes(c)), ...adds];
  return [...new Set(caps)];
}

function isUint32Id(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v < 0xffffffff;
}

function checkContainerPath(field: string, p: unknown): string {
  if (typeof p !== 'string' || p === '')
    throw new InvalidSpecError(field, 'must be a non-empty string');
  if (!p.startsWith('/')) throw new InvalidSpecError(field, `must be an absolute path, got "${p}"`);
  if (p.split('/').includes('..'))
    throw new InvalidSpecError(field, `must not contain "..", got "${p}"`);
  if (p.includes('\0')) throw new InvalidSpecError(field, 'must not contain NUL');
  const normal = posix.normalize(p);
  return normal.length > 1 && normal.endsWith('/') ? normal.slice(0, -1) : normal;
}

function checkPositiveInt(field: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) {
    throw new InvalidSpecError(field, `must be a positive integer, got ${String(v)}`);
  }
  return v;
}

const HOSTNAME_PATTERN =
  /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

export function validateContainerId(id: unknown): string {
  if (!isValidContainerId(id)) {
    throw new InvalidSpecError(
      'id',
      `must match ${CONTAINER_ID_PATTERN.source}, got ${JSON.stringify(id)}`,
    );
  }
  return id;
}

function buildResources(r: RunSpec['resources']): OciResources {
  // Deny every device node; the runtime allows its default set (null, zero, tty, ...) as runc does.
  const res: OciResources = { devices: [{ allow: false, access: 'rwm' }] };
  if (!r) return res;
  if (r.cpu !== undefined) {
    if (typeof r.cpu !== 'number' || !Number.isFinite(r.cpu) || r.cpu <= 0) {
      throw new InvalidSpecError(
        'resources.cpu',
        `must be a positive number of cores, got ${String(r.cpu)}`,
      );
    }
    const quota = Math.round(r.cpu * CPU_PERIOD_US);
    // The kernel refuses quotas under 1 ms.
    if (quota < 1000)
      throw new InvalidSpecError('resources.cpu', `must be at least 0.01 cores, got ${r.cpu}`);
    // Shares as the kubelet derives them from milli-CPU (1 core = 1024, minimum 2).
    res.cpu = { quota, period: CPU_PERIOD_US, shares: Math.max(2, Math.round(r.cpu * 1024)) };
  }
  if (r.memoryBytes !== undefined) {
    res.memory = { limit: checkPositiveInt('resources.memoryBytes', r.memoryBytes) };
  }
  if (r.pids !== undefined) res.pids = { limit: checkPositiveInt('resources.pids', r.pids) };
  return res;
}

/** A volume's name: a directory under the container's volumes, so one safe path component. */
export const VOLUME_NAME_PATTERN = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

function buildUserMounts(mounts: ContainerMount[], volumesDir: string | undefined): OciMount[] {
  const seen = new Set<string>();
  return mounts.map((m, i) => {
    const field = `mounts[${i}]`;
    const dest = checkContainerPath(`${field}.containerPath`, m.containerPath);
    if (dest === '/') throw new InvalidSpecError(`${field}.containerPath`, 'must not be "/"');
    if (dest === '/proc' || dest.startsWith('/proc/')) {
      throw new InvalidSpecError(
        `${field}.containerPath`,
        `must not be under /proc, got "${dest}"`,
      );
    }
    if (seen.has(dest))
      throw new InvalidSpecError(`${field}.containerPath`, `duplicate mount at "${dest}"`);
    seen.add(dest);
    if (m.type === 'bind') {
      const src = m.hostPath;
      if (typeof src !== 'string' || !src.startsWith('/')) {
        throw new InvalidSpecError(
          `${field}.hostPath`,
          `must be an absolute path, got ${JSON.stringify(src)}`,
        );
      }
      try {
        if (!m.madeByCore) statSync(src);
      } catch (err) {
        throw new InvalidSpecError(
          `${field}.hostPath`,
          `${src}: ${(err as NodeJS.ErrnoException).code ?? 'cannot stat'}`,
        );
      }
      const options = ['rbind', m.readOnly ? 'ro' : 'rw', 'nosuid', 'nodev', 'rprivate'];
      return { destination: dest, type: 'bind', source: src, options };
    }
    if (m.type === 'volume') {
      if (typeof m.volume !== 'string' || !VOLUME_NAME_PATTERN.test(m.volume)) {
        throw new InvalidSpecError(
          `${field}.volume`,
          `must be a DNS label (lower-case letters, digits, '-'; at most 63), got ${JSON.stringify(m.volume)}`,
        );
      }
      if (volumesDir === undefined)
        throw new InvalidSpecError(`${field}.type`, 'volume mounts need the runtime core');
      const options = ['rbind', m.readOnly ? 'ro' : 'rw', 'nosuid', 'nodev', 'rprivate'];
      return { destination: dest, type: 'bind', source: `${volumesDir}/${m.volume}`, options };
    }
    if (m.type === 'tmpfs') {
      const options = ['nosuid', 'nodev', 'mode=1777'];
      if (m.sizeBytes !== undefined)
        options.push(`size=${checkPositiveInt(`${field}.sizeBytes`, m.sizeBytes)}`);
      if (m.readOnly) options.push('ro');
      return { destination: dest, type: 'tmpfs', source: 'tmpfs', options };
    }
    throw new InvalidSpecError(
      `${field}.type`,
      `must be "bind", "tmpfs" or "volume", got ${JSON.stringify(m.type)}`,
    );
  });
}

function buildNamespaces(network: RunSpec['network']): OciNamespace[] {
  const ns: OciNamespace[] = [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }];
  const mode = network?.mode ?? 'none';
  if (mode !== 'none' && mode !== 'host' && mode !== 'bridge') {
    throw new InvalidSpecError(
      'network.mode',
      `must be none, host or bridge, got ${JSON.stringify(mode)}`,
    );
  }
  if (network?.netnsPath !== undefined) {
    if (mode === 'host')
      throw new InvalidSpecError('network.netnsPath', 'cannot be used with mode "host"');
    checkContainerPath('network.netnsPath', network.netnsPath);
    ns.push({ type: 'network', path: network.netnsPath });
  } else if (mode !== 'host') {
    ns.push({ type: 'network' });
  }
  ns.push({ type: 'cgroup' });
  return ns;
}

function buildEnv(env: Record<string, string> | undefined, hostname: string): string[] {
  const out = new Map<string, string>([
    ['PATH', DEFAULT_PATH],
    ['HOSTNAME', hostname],
  ]);
  for (const [k, v] of Object.entries(env ?? {})) {
    if (k === '' || k.includes('=') || k.includes('\0')) {
      throw new InvalidSpecError(`env.${k}`, 'name must be non-empty and contain no "=" or NUL');
    }
    if (typeof v !== 'string' || v.includes('\0'))
      throw new InvalidSpecError(`env.${k}`, 'value must be a string without NUL');
    out.set(k, v);
  }
  return [...out].map(([k, v]) => `${k}=${v}`);
}

/** The id as a DNS label ("_" and "." are valid in ids, not in a one-label hostname). */
export function defaultHostname(id: string): string {
  const label = id
    .replace(/[^A-Za-z0-9-]/g, '-')
    .slice(0, 63)
    .replace(/-+$/, '');
  return label === '' ? 'container' : label;
}

export const DEFAULT_CGROUP_PARENT = '/conductor';

export function cgroupsPathFor(id: string, cgroupParent = DEFAULT_CGROUP_PARENT): string {
  return `${cgroupParent}/${id}`;
}

export function buildOciConfig(spec: RunSpec, opts: OciConfigOptions = {}): OciConfig {
  if (typeof spec !== 'object' || spec === null)
    throw new InvalidSpecError('spec', 'must be an object');
  const id = validateContainerId(spec.id);
  if (spec.privileged)
    throw new InvalidSpecError('privileged', 'privileged containers are not supported');

  if (!Array.isArray(spec.args) || spec.args.length === 0) {
    throw new InvalidSpecError('args', 'must be a non-empty array (the command to run)');
  }
  spec.args.forEach((a, i) => {
    if (typeof a !== 'string' || a.includes('\0'))
      throw new InvalidSpecError(`args[${i}]`, 'must be a string without NUL');
  });
  if (spec.args[0] === '') throw new InvalidSpecError('args[0]', 'must not be empty');

  const hostname = spec.hostname ?? defaultHostname(id);
  if (!HOSTNAME_PATTERN.test(hostname) || hostname.length > 64) {
    throw new InvalidSpecError(
      'hostname',
      `must be a valid DNS name of at most 64 characters, got "${hostname}"`,
    );
  }
  const cwd =
    spec.workingDir === undefined ? '/' : checkContainerPath('workingDir', spec.workingDir);

  const user = spec.user ?? { uid: 0, gid: 0 };
  if (!isUint32Id(user.uid))
    throw new InvalidSpecError('user.uid', `must be an integer id, got ${String(user.uid)}`);
  if (!isUint32Id(user.gid))
    throw new InvalidSpecError('user.gid', `must be an integer id, got ${String(user.gid)}`);
  (user.additionalGids ?? []).forEach((g, i) => {
    if (!isUint32Id(g))
      throw new InvalidSpecError(
        `user.additionalGids[${i}]`,
        `must be an integer id, got ${String(g)}`,
      );
  });

  const caps = resolveCapabilities(spec.capabilities?.add, spec.capabilities?.drop);
  const resources = buildResources(spec.resources);
  const namespaces = buildNamespaces(spec.network);
  const mounts = [...defaultMounts(), ...buildUserMounts(spec.mounts ?? [], opts.volumesDir)];

  const annotations: Record<string, string> = { ...(spec.annotations ?? {}), [ANNOTATION_ID]: id };
  if (spec.name !== undefined) annotations[ANNOTATION_NAME] = spec.name;

  return {
    ociVersion: OCI_VERSION,
    process: {
      terminal: false,
      user: {
        uid: user.uid,
        gid: user.gid,
        ...(user.additionalGids?.length ? { additionalGids: [...user.additionalGids] } : {}),
      },
      args: [...spec.args],
      env: buildEnv(spec.env, hostname),
      cwd,
      // Inheritable and ambient stay empty (Docker 25+): execve of a file never gains capabilities.
      capabilities: {
        bounding: caps,
        effective: [...caps],
        permitted: [...caps],
        inheritable: [],
        ambient: [],
      },
      rlimits: defaultRlimits(opts.nofileHardLimit ?? processNofileHard()),
      noNewPrivileges: true,
    },
    root: { path: 'rootfs', readonly: spec.readonlyRootfs === true },
    hostname,
    mounts,
    linux: {
      namespaces,
      resources,
      cgroupsPath: cgroupsPathFor(id, opts.cgroupParent),
      maskedPaths: [...DEFAULT_MASKED_PATHS],
      readonlyPaths: [...DEFAULT_READONLY_PATHS],
      seccomp: seccompForCapabilities(
        caps,
        opts.seccompProfilePath ?? DEFAULT_SECCOMP_PROFILE,
        opts.seccompHost,
      ),
    },
    annotations,
  };
}
