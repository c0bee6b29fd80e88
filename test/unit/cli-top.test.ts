/** `conductor top`'s arithmetic and table, pure: readings in, rows and text out. */
import { describe, expect, it } from '@jest/globals';

import {
  binarySize,
  cpuPercent,
  runtimeTargets,
  sampleRows,
  topTable,
  type Reading,
  type TopTarget,
} from '../../controller/cli/top.js';
import { formatTable } from '../../controller/cli/format.js';
import type { CgroupStats, ContainerStats } from '../../runtime-core/src/index.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

function stats(over: Partial<CgroupStats> = {}, rxTx: [number, number][] = []): ContainerStats {
  return {
    cgroupsPath: '/conductor/test',
    cgroup: {
      cpuUsageNs: 0n,
      cpuUserNs: 0n,
      cpuSystemNs: 0n,
      cpuPeriods: 0,
      cpuThrottledPeriods: 0,
      cpuThrottledNs: 0n,
      cpuQuotaUs: null,
      cpuPeriodUs: 100_000,
      memoryUsage: 0,
      memoryWorkingSet: 0,
      memoryRss: 0,
      memoryCache: 0,
      memoryFailcnt: 0,
      memoryLimit: null,
      pidsCurrent: 1,
      pidsLimit: null,
      processes: 1,
      threads: 1,
      oomKills: 0,
      ...over,
    },
    interfaces: rxTx.map(([rx, tx], i) => ({
      name: `eth${i}`,
      rxBytes: rx,
      rxPackets: 0,
      rxErrors: 0,
      rxDropped: 0,
      txBytes: tx,
      txPackets: 0,
      txErrors: 0,
      txDropped: 0,
    })),
  };
}

const reading = (atMs: number, entries: [string, ContainerStats][]): Reading => ({
  atNs: BigInt(atMs) * 1_000_000n,
  stats: new Map(entries),
});

describe('cpuPercent', () => {
  it('is CPU time over wall time: one busy core is 100 %, half a core 50 %', () => {
    const at = (ms: number, cpuMs: number) => ({
      atNs: BigInt(ms) * 1_000_000n,
      cpuNs: BigInt(cpuMs) * 1_000_000n,
    });
    expect(cpuPercent(at(0, 0), at(1000, 1000))).toBe(100);
    expect(cpuPercent(at(0, 200), at(1000, 700))).toBe(50);
    expect(cpuPercent(at(0, 0), at(500, 1000))).toBe(200); // two cores
    expect(cpuPercent(at(0, 5), at(1000, 5))).toBe(0);
    // Past 2^53 ns of CPU (104 days) the counter is still exact.
    const big = 2n ** 60n;
    expect(
      cpuPercent({ atNs: 0n, cpuNs: big }, { atNs: 1_000_000_000n, cpuNs: big + 250_000_000n }),
    ).toBe(25);
  });

  it('says nothing when no time passed or the counter went back (a new cgroup)', () => {
    expect(cpuPercent({ atNs: 5n, cpuNs: 0n }, { atNs: 5n, cpuNs: 10n })).toBeUndefined();
    expect(cpuPercent({ atNs: 0n, cpuNs: 10n }, { atNs: 5n, cpuNs: 3n })).toBeUndefined();
  });
});

describe('binarySize (docker stats memory)', () => {
  it('uses binary units with four significant digits', () => {
    expect(binarySize(0)).toBe('0B');
    expect(binarySize(512)).toBe('512B');
    expect(binarySize(1536)).toBe('1.5KiB');
    expect(binarySize(1.5234 * MiB)).toBe('1.523MiB');
    expect(binarySize(64 * MiB)).toBe('64MiB');
    expect(binarySize(7.7751 * GiB)).toBe('7.775GiB');
  });
});

describe('runtimeTargets (an agent in Kubernetes mode)', () => {
  it("takes the running Containers' containers by their owner annotation", () => {
    const info = (
      id: string,
      owner: string | undefined,
      status: 'running' | 'stopped',
      pid?: number,
    ) => ({
      id,
      status,
      shimAlive: status === 'running',
      ...(pid !== undefined ? { pid } : {}),
      ...(owner !== undefined ? { annotations: { 'conductor.dev/owner': owner } } : {}),
    });
    const infos = [
      info('b_web', 'Container/b/web', 'running', 12),
      info('a_db', 'Container/a/db', 'running', 11),
      info('a_old', 'Container/a/old', 'stopped'),
      info('build-1', 'Build/a/img', 'running', 13),
      info('loose', undefined, 'running', 14),
    ];
    expect(runtimeTargets(infos, undefined)).toEqual([
      { namespace: 'a', name: 'db', id: 'a_db', pid: 11 },
      { namespace: 'b', name: 'web', id: 'b_web', pid: 12 },
    ]);
    expect(runtimeTargets(infos, 'b').map((t) => t.name)).toEqual(['web']);
  });
});

describe('sampleRows and topTable', () => {
  const targets: TopTarget[] = [
    { namespace: 'ns', name: 'busy', id: 'ns_busy', pid: 10 },
    { namespace: 'ns', name: 'idle', id: 'ns_idle', pid: 20 },
    { namespace: 'ns', name: 'gone', id: 'ns_gone', pid: 30 },
    { namespace: 'ns', name: 'new', id: 'ns_new', pid: 40 },
  ];
  const before = reading(0, [
    ['ns_busy', stats({ cpuUsageNs: 1_000_000_000n })],
    ['ns_idle', stats({ cpuUsageNs: 7_000_000n })],
    ['ns_gone', stats()],
  ]);
  const after = reading(1000, [
    [
      'ns_busy',
      stats(
        {
          cpuUsageNs: 1_500_000_000n,
          memoryUsage: 3 * MiB,
          memoryWorkingSet: 2 * MiB,
          memoryLimit: 64 * MiB,
          pidsCurrent: 2,
          pidsLimit: 64,
        },
        [
          [1200, 648],
          [300, 0],
        ],
      ),
    ],
    ['ns_idle', stats({ cpuUsageNs: 7_000_000n, memoryWorkingSet: 512 * 1024 })],
    // ns_gone exited in between: not read; ns_new started: read once.
    ['ns_new', stats({ cpuUsageNs: 9n })],
  ]);

  it('computes each container from its two reads; one gone is left out, a new one has no CPU %', () => {
    const rows = sampleRows(targets, before, after, 8 * GiB);
    expect(rows).toEqual([
      {
        namespace: 'ns',
        name: 'busy',
        containerID: 'ns_busy',
        cpuPercent: 50,
        memoryUsageBytes: 2 * MiB,
        memoryLimitBytes: 64 * MiB,
        memoryPercent: 3.125,
        networkRxBytes: 1500,
        networkTxBytes: 648,
        pids: 2,
        pidsLimit: 64,
      },
      {
        namespace: 'ns',
        name: 'idle',
        containerID: 'ns_idle',
        cpuPercent: 0,
        memoryUsageBytes: 512 * 1024,
        memoryLimitBytes: 8 * GiB, // unlimited: the host's memory, as docker shows
        memoryPercent: (512 * 1024 * 100) / (8 * GiB),
        networkRxBytes: 0,
        networkTxBytes: 0,
        pids: 1,
        pidsLimit: null,
      },
      expect.objectContaining({ name: 'new', cpuPercent: null }),
    ]);
  });

  it('prints docker stats columns, NAMESPACE first with -A', () => {
    const rows = sampleRows(targets, before, after, 8 * GiB);
    expect(formatTable(topTable(rows, false))).toBe(
      'NAME   CPU %    MEM USAGE / LIMIT   MEM %   NET I/O        PIDS\n' +
        'busy   50.00%   2MiB / 64MiB        3.13%   1.5kB / 648B   2 / 64\n' +
        'idle   0.00%    512KiB / 8GiB       0.01%   0B / 0B        1\n' +
        'new    --       0B / 8GiB           0.00%   0B / 0B        1\n',
    );
    expect(topTable(rows, true)[0]?.[0]).toBe('NAMESPACE');
    expect(topTable(rows, true)[1]?.[0]).toBe('ns');
  });
});
