/**
 * `conductor top` (alias `conductor stats`): the running Containers' resource usage, as `docker
 * stats` shows it — CPU % (of one core: two busy cores are 200 %), MEM USAGE / LIMIT (the
 * host's memory when unlimited), MEM %, NET I/O, PIDS. At a terminal the table is redrawn in
 * place every second until Ctrl-C; `--no-stream` prints one sample; `-o json` one JSON array
 * per sample.
 *
 * The containers are those the controller recorded in the state dir as running (their
 * status.containerID and pid) — or, for an agent in Kubernetes mode, which records its objects
 * in the API server, those its runtime core runs; their counters come from the runtime core (RuntimeCore.statsMany:
 * the cgroup, and the interfaces of the network namespace of their pid). CPU % needs two reads:
 * the CPU time used between them over the time between them. A container that is gone by the
 * next read is left out of it; one seen for the first time has no CPU % until the read after.
 */
import { totalmem } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';

import { COMMON_OPTIONS, NAMESPACE_OPTION, parseCommand } from './flags.js';
import { formatTable, humanSize, pluralResourceName } from './format.js';
import { CliError, UsageError, untilInterrupted, type CliIO } from './io.js';
import { checkController, StateDir, type StoredObject } from './state.js';
import {
  OWNER_ANNOTATION,
  RuntimeCore,
  type ContainerInfo,
  type ContainerStats,
} from '../../runtime-core/src/index.js';

export const TOP_USAGE = `Display a live stream of running Containers' resource usage, as docker stats does.

Usage:
  conductor top [NAME...] [-n NS | -A] [--no-stream] [-o json] [--state-dir DIR]
  conductor stats ...        (the same)

Columns: NAME, CPU % (of one core: a container keeping two cores busy shows 200%), MEM USAGE /
LIMIT (the working set, as docker shows it, and the memory limit, or the host's memory when it
has none), MEM %, NET I/O (bytes received / sent on its interfaces), PIDS (/ the pids limit).
At a terminal the table is redrawn every second until Ctrl-C. On the state dir of an agent in
Kubernetes mode (its objects are the API server's), the containers it runs on this node.

Options:
  -n, --namespace NS      namespace (default "default")
  -A, --all-namespaces    the Containers of every namespace
      --no-stream         print one sample and exit (it still reads twice, a second apart, for CPU %)
  -o, --output json       one JSON array per sample (numbers in bytes and percent)
      --state-dir DIR     state directory (default /var/lib/conductor)
`;

/** Between two reads: a sample's CPU % is over this long, and the table is redrawn this often. */
export const SAMPLE_MS = 1000;

/** A running Container, as the controller recorded it. */
export interface TopTarget {
  namespace: string;
  name: string;
  /** status.containerID: the runtime's id. */
  id: string;
  /** status.pid: its network namespace's interfaces are read through it. */
  pid: number;
}

/** One read of every target's counters, and when it was taken (ns, monotonic). */
export interface Reading {
  atNs: bigint;
  stats: ReadonlyMap<string, ContainerStats>;
}

/** A row of `top`, as `-o json` prints it. */
export interface TopRow {
  namespace: string;
  name: string;
  containerID: string;
  /** Of one core; null when this read is the container's first. */
  cpuPercent: number | null;
  /** The working set (usage minus inactive page cache), as docker stats shows usage. */
  memoryUsageBytes: number;
  /** The cgroup's limit, or the host's memory when it has none. */
  memoryLimitBytes: number;
  memoryPercent: number;
  networkRxBytes: number;
  networkTxBytes: number;
  pids: number;
  pidsLimit: number | null;
}

/**
 * CPU % between two reads: CPU time used over wall time passed, × 100 (one busy core is 100 %).
 * Undefined when it cannot be said: no time passed, or the counter went back (the cgroup was
 * made again: the container restarted in between).
 */
export function cpuPercent(
  before: { cpuNs: bigint; atNs: bigint },
  after: { cpuNs: bigint; atNs: bigint },
): number | undefined {
  const wall = after.atNs - before.atNs;
  const cpu = after.cpuNs - before.cpuNs;
  if (wall <= 0n || cpu < 0n) return undefined;
  return (Number(cpu) / Number(wall)) * 100;
}

/** The rows of one sample: the targets read both times (a first-time one without CPU %). */
export function sampleRows(
  targets: readonly TopTarget[],
  before: Reading | undefined,
  after: Reading,
  hostMemory: number,
): TopRow[] {
  const rows: TopRow[] = [];
  for (const t of targets) {
    const now = after.stats.get(t.id);
    if (!now) continue; // gone meanwhile
    const then = before?.stats.get(t.id);
    const cpu = then
      ? cpuPercent(
          { cpuNs: then.cgroup.cpuUsageNs, atNs: before?.atNs ?? 0n },
          { cpuNs: now.cgroup.cpuUsageNs, atNs: after.atNs },
        )
      : undefined;
    const g = now.cgroup;
    const limit = g.memoryLimit ?? hostMemory;
    const usage = g.memoryWorkingSet;
    const net = (now.interfaces ?? []).reduce(
      (n, i) => ({ rx: n.rx + i.rxBytes, tx: n.tx + i.txBytes }),
      { rx: 0, tx: 0 },
    );
    rows.push({
      namespace: t.namespace,
      name: t.name,
      containerID: t.id,
      cpuPercent: cpu ?? null,
      memoryUsageBytes: usage,
      memoryLimitBytes: limit,
      memoryPercent: limit > 0 ? (usage / limit) * 100 : 0,
      networkRxBytes: net.rx,
      networkTxBytes: net.tx,
      pids: g.pidsCurrent,
      pidsLimit: g.pidsLimit,
    });
  }
  return rows;
}

/** Bytes as docker prints memory: binary units, four significant digits (`1.523MiB`). */
export function binarySize(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${Number(value.toPrecision(4))}${units[unit]}`;
}

const percent = (p: number | null): string => (p === null ? '--' : `${p.toFixed(2)}%`);

/** The table of one sample, header included (NAMESPACE first with -A). */
export function topTable(rows: readonly TopRow[], allNamespaces: boolean): string[][] {
  const header = [
    ...(allNamespaces ? ['NAMESPACE'] : []),
    'NAME',
    'CPU %',
    'MEM USAGE / LIMIT',
    'MEM %',
    'NET I/O',
    'PIDS',
  ];
  return [
    header,
    ...rows.map((r) => [
      ...(allNamespaces ? [r.namespace] : []),
      r.name,
      percent(r.cpuPercent),
      `${binarySize(r.memoryUsageBytes)} / ${binarySize(r.memoryLimitBytes)}`,
      percent(r.memoryPercent),
      `${humanSize(r.networkRxBytes)} / ${humanSize(r.networkTxBytes)}`,
      r.pidsLimit === null ? String(r.pids) : `${r.pids} / ${r.pidsLimit}`,
    ]),
  ];
}

/** ESC[2J ESC[H: clear the screen, cursor home, as docker stats redraws. */
const CLEAR = '\x1b[2J\x1b[H';

const byName = (a: TopTarget, b: TopTarget): number =>
  a.namespace.localeCompare(b.namespace) || a.name.localeCompare(b.name);

/**
 * The running Containers as the runtime core knows them, by the owner annotation each carries
 * (`Container/<namespace>/<name>`): for a state dir whose controller records no objects there —
 * an agent in Kubernetes mode, whose objects are the API server's.
 */
export function runtimeTargets(
  infos: readonly ContainerInfo[],
  namespace: string | undefined,
): TopTarget[] {
  const out: TopTarget[] = [];
  for (const info of infos) {
    const owner = info.annotations?.[OWNER_ANNOTATION]?.split('/');
    if (owner?.length !== 3 || owner[0] !== 'Container') continue;
    const [, ns = '', name = ''] = owner;
    if (info.status !== 'running' || info.pid === undefined) continue;
    if (namespace !== undefined && ns !== namespace) continue;
    out.push({ namespace: ns, name, id: info.id, pid: info.pid });
  }
  return out.sort(byName);
}

/** What the running Containers of the state dir are, by namespace then name. */
function runningTargets(objects: readonly StoredObject[]): TopTarget[] {
  const out: TopTarget[] = [];
  for (const o of objects) {
    const st = o.status ?? {};
    if (st.phase !== 'Running' || typeof st.containerID !== 'string' || typeof st.pid !== 'number')
      continue;
    out.push({
      namespace: o.metadata.namespace,
      name: o.metadata.name,
      id: st.containerID,
      pid: st.pid,
    });
  }
  return out.sort(byName);
}

export async function top(argv: string[], io: CliIO): Promise<number> {
  const { values, positionals } = parseCommand('top', () =>
    parseArgs({
      args: argv,
      options: {
        ...COMMON_OPTIONS,
        ...NAMESPACE_OPTION,
        'all-namespaces': { type: 'boolean', short: 'A', default: false },
        'no-stream': { type: 'boolean', default: false },
        output: { type: 'string', short: 'o', default: '' },
      },
      allowPositionals: true,
      strict: true,
    }),
  );
  if (values.help) {
    io.stdout(TOP_USAGE);
    return 0;
  }
  const output = values.output;
  if (output !== '' && output !== 'json')
    throw new UsageError(`unknown output format ${JSON.stringify(output)}: only json`, 'top');
  const allNamespaces = values['all-namespaces'];
  const namespace = allNamespaces ? undefined : values.namespace;
  const names = positionals;
  const state = new StateDir(values['state-dir']);
  await checkController(state, io);

  const runtime = new RuntimeCore({ stateDir: state.dir });
  // A controller that records no objects here is an agent whose objects are an API server's:
  // its containers are found through the runtime core instead.
  const fromRuntime = !(await state.hasRecords());
  const named = (targets: TopTarget[]): TopTarget[] =>
    names.length === 0 ? targets : targets.filter((t) => names.includes(t.name));
  const listTargets = async (): Promise<TopTarget[]> =>
    named(
      fromRuntime
        ? runtimeTargets(await runtime.list(), namespace)
        : runningTargets(await state.listObjects('Container', namespace)),
    );
  // Named ones must exist; one that is not running is said once and left out.
  if (names.length > 0 && fromRuntime) {
    const running = await listTargets();
    for (const name of names)
      if (!running.some((t) => t.name === name))
        throw new CliError(
          `${pluralResourceName('Container')} ${JSON.stringify(name)} not found (not running on this node)`,
        );
  } else if (names.length > 0) {
    const objects = await state.listObjects('Container', namespace);
    for (const name of names) {
      const o = objects.find((x) => x.metadata.name === name);
      if (!o)
        throw new CliError(`${pluralResourceName('Container')} ${JSON.stringify(name)} not found`);
      if (runningTargets([o]).length === 0)
        io.stderr(
          `warning: container ${name} is not running (phase ${String(o.status?.phase ?? 'Pending')})\n`,
        );
    }
  }

  const read = async (targets: readonly TopTarget[]): Promise<Reading> => {
    const start = process.hrtime.bigint();
    const stats = await runtime.statsMany(targets.map((t) => ({ id: t.id, network: t.pid })));
    // Each counter was read somewhere in between: the midpoint is the best guess of when.
    return { atNs: (start + process.hrtime.bigint()) / 2n, stats };
  };
  const hostMemory = totalmem();
  const print = (rows: TopRow[]): void => {
    if (output === 'json') io.stdout(`${JSON.stringify(rows)}\n`);
    else
      io.stdout(
        (io.isTTY && !values['no-stream'] ? CLEAR : '') +
          formatTable(topTable(rows, allNamespaces)),
      );
  };

  return untilInterrupted(io, async (signal) => {
    let before = await read(await listTargets());
    for (;;) {
      await sleep(SAMPLE_MS, undefined, { signal });
      // Listed again each time: containers started since join, those gone leave.
      const targets = await listTargets();
      const after = await read(targets);
      print(sampleRows(targets, before, after, hostMemory));
      if (values['no-stream']) break;
      before = after;
    }
  });
}
