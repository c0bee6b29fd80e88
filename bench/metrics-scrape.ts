/**
 * The cost of a /metrics scrape with many running containers (issue 12's target: 200 containers
 * in ≤ 100 ms), beside its floor: the same containers' cgroup and /proc/PID/net/dev files read
 * straight with readFileSync in the same process (no parsing, no rendering, no HTTP), which is
 * what any exporter has to do at least. Rounds alternate the two, so drift hits both.
 *
 * Set-up: an in-process controller (ControllerHarness) on temporary directories, with
 * --scrape-containers
 * busybox `sleep` containers on its bridge network (default 200: each with its own network
 * namespace, so every scrape reads 200 cgroups and 200 namespaces' interfaces), each with a CPU,
 * memory and pids limit (so the CFS and limit rows are there too). Then --rounds scrapes of
 * GET /metrics over HTTP (the whole exposition: controller-runtime's metrics, the cache-derived
 * ones and the containers'), each timed from request to last byte, and as many floor reads.
 * Also printed: where a scrape's time goes (the native read of every container, rendering).
 *
 * cAdvisor is not run beside it: its main package is the module github.com/google/cadvisor/cmd,
 * which the Go module proxy does not serve (404; the library module github.com/google/cadvisor
 * has no main package). README's "Observability" section says what cAdvisor does per scrape.
 *
 *   node build/bench/bench/metrics-scrape.js [--scrape-containers N] [--rounds N]
 */
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';

import type { Container } from '../controller/api/types.generated.js';
import { scrapeContainers } from '../controller/metrics/containers.js';
import { ControllerHarness, busyboxImage, containerManifest } from '../test/fixtures/controller.js';
import { findLeaks, hostSnapshot } from '../test/fixtures/leaks.js';
import { uniqueId } from '../test/fixtures/rootfs.js';
import { median, parseFlags, quantile, table } from './lib.js';

const flags = parseFlags(process.argv.slice(2));
const count = Number(flags.get('scrape-containers') ?? 200);
const rounds = Number(flags.get('rounds') ?? 30);
if (!Number.isInteger(count) || count < 1)
  throw new Error('--scrape-containers must be a positive integer');
if (!Number.isInteger(rounds) || rounds < 1) throw new Error('--rounds must be a positive integer');
/** The target for 200 containers. */
const TARGET_MS = 100;

const NS = uniqueId('scrape');
const V1 = '/sys/fs/cgroup';

/**
 * The files a scrape reads for one container, as runtime-core/native/cgroups/stats.cc reads them
 * on this host's layout (v1 hierarchies; on a v2 host, the unified directory's files).
 */
function filesOf(cgroupsPath: string, pid: number): string[] {
  const v2 = readFileSync('/proc/self/mountinfo', 'utf8').includes(' /sys/fs/cgroup cgroup2 ');
  if (v2) {
    const d = `${V1}${cgroupsPath}`;
    return [
      ...['cpu.stat', 'cpu.max', 'memory.current', 'memory.stat', 'memory.max', 'memory.events'],
      ...['pids.current', 'pids.max', 'cgroup.procs', 'cgroup.threads'],
    ]
      .map((f) => `${d}/${f}`)
      .concat(`/proc/${pid}/net/dev`);
  }
  const at = (c: string, f: string): string => `${V1}/${c}${cgroupsPath}/${f}`;
  return [
    at('cpuacct', 'cpuacct.usage'),
    at('cpuacct', 'cpuacct.usage_user'),
    at('cpuacct', 'cpuacct.usage_sys'),
    at('cpu', 'cpu.stat'),
    at('cpu', 'cpu.cfs_quota_us'),
    at('cpu', 'cpu.cfs_period_us'),
    at('memory', 'memory.usage_in_bytes'),
    at('memory', 'memory.stat'),
    at('memory', 'memory.failcnt'),
    at('memory', 'memory.limit_in_bytes'),
    at('memory', 'memory.oom_control'),
    at('pids', 'pids.current'),
    at('pids', 'pids.max'),
    at('memory', 'cgroup.procs'),
    at('memory', 'tasks'),
    `/proc/${pid}/net/dev`,
  ];
}

async function main(): Promise<void> {
  const before = hostSnapshot();
  const h = await ControllerHarness.create(NS);
  try {
    const ctl = await h.start({ concurrency: { Container: 8 } });
    const names = Array.from({ length: count }, (_, i) => `c${i}`);
    await h.write('image.yaml', busyboxImage(NS));
    const spec = {
      command: ['/bin/sleep', '3600'],
      resources: { limits: { cpu: '100m', memory: '16Mi', pids: 16 } },
    };
    await h.write(
      'containers.yaml',
      names.map((n) => containerManifest(NS, n, spec)).join('\n---\n'),
    );
    console.log(`starting ${count} containers (bridge network)...`);
    const t0 = performance.now();
    const running: Container[] = [];
    for (const n of names) {
      const c = await h.waitFor<Container>(
        'Container',
        n,
        (o) => o?.status?.phase === 'Running',
        300_000,
      );
      if (c) running.push(c);
    }
    console.log(
      `${running.length} running after ${((performance.now() - t0) / 1000).toFixed(1)} s`,
    );

    const url = `http://${ctl.metricsAddress.host}:${ctl.metricsAddress.port}/metrics`;
    const files = running.flatMap((c) =>
      filesOf(`/${ctl.runtime.installation}/${c.status?.containerID ?? ''}`, c.status?.pid ?? 0),
    );
    const scrape = async (): Promise<{ ms: number; bytes: number; series: number }> => {
      const start = performance.now();
      const text = await (await fetch(url)).text();
      const ms = performance.now() - start;
      return {
        ms,
        bytes: text.length,
        series: text.split('\n').filter((l) => l.startsWith('container_')).length,
      };
    };
    const floor = (): number => {
      const start = performance.now();
      let bytes = 0;
      for (const f of files) bytes += readFileSync(f).length;
      if (bytes === 0) throw new Error('the floor read nothing');
      return performance.now() - start;
    };
    const nativeRead = async (): Promise<number> => {
      const start = performance.now();
      await scrapeContainers(
        () => running,
        ctl.runtime,
        (err) => {
          throw err;
        },
      );
      return performance.now() - start;
    };

    // Warm-up (first scrape compiles code paths, first reads fault in pages).
    const warm = await scrape();
    floor();
    const scrapes: number[] = [];
    const floors: number[] = [];
    const collector: number[] = [];
    for (let r = 0; r < rounds; r++) {
      if (r % 2 === 0) {
        scrapes.push((await scrape()).ms);
        floors.push(floor());
      } else {
        floors.push(floor());
        scrapes.push((await scrape()).ms);
      }
      collector.push(await nativeRead());
    }
    const fmt = (v: number): string => v.toFixed(1);
    console.log(
      `\n/metrics with ${running.length} running containers: ${warm.series} container_* series, ` +
        `${(warm.bytes / 1024).toFixed(0)} KiB; ${rounds} rounds, alternating; ${files.length} files in the floor`,
    );
    console.log(
      table([
        ['', 'median ms', 'p90 ms', 'vs floor'],
        [
          'GET /metrics (HTTP, whole exposition)',
          fmt(median(scrapes)),
          fmt(quantile(scrapes, 0.9)),
          `${(median(scrapes) / median(floors)).toFixed(1)}x`,
        ],
        [
          '  of which the containers (read + render)',
          fmt(median(collector)),
          fmt(quantile(collector, 0.9)),
          `${(median(collector) / median(floors)).toFixed(1)}x`,
        ],
        [
          'floor: readFileSync of the same files',
          fmt(median(floors)),
          fmt(quantile(floors, 0.9)),
          '1.0x',
        ],
      ]),
    );
    const verdict = median(scrapes) <= TARGET_MS ? 'met' : 'NOT met';
    console.log(`target: ${count} containers scraped in <= ${TARGET_MS} ms: ${verdict}`);
  } finally {
    await h.cleanup();
    const leaks = findLeaks(before, { idPrefix: NS, runtimeRoots: [] });
    const left = [...leaks.mounts, ...leaks.cgroups, ...leaks.processes, ...leaks.stateDirs];
    if (left.length > 0) console.error(`bench: left behind:\n  ${left.join('\n  ')}`);
  }
}

await main();
