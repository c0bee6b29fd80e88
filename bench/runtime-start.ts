/**
 * Start-to-exit of /bin/true on one busybox bundle: conductor-runtime run vs crun run vs runc run,
 * and the floor (unshare + chroot, no runtime at all). Runs alternate, one of each per round, so
 * drift on the machine hits every contender alike, and each round starts one contender later so
 * none always follows the same neighbour. Each sample is the wall time of one spawnSync from this
 * process, so all contenders pay the same process-spawn cost.
 *
 * crun 1.8 refuses this hybrid cgroup host unless the cgroup2 mount is hidden from it. We make
 * one mount namespace, once, with /sys/fs/cgroup/unified unmounted, and run crun through
 * `nsenter --mount=<that namespace>`. nsenter's own cost is measured in the same rotation
 * (`nsenter ... /bin/true` minus plain `/bin/true`) and subtracted from every crun sample.
 *
 *   hack/bench.sh [--iterations N] [--warmup N] [--only conductor-runtime,crun,runc,floor]
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, rmdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';

import { findLeaks, hostSnapshot } from '../test/fixtures/leaks.js';
import { makeBundle, uniqueId, type Bundle } from '../test/fixtures/rootfs.js';
import { firstLine, median, parseFlags, quantile, repoRoot, table, which } from './lib.js';

interface Contender {
  name: string;
  /** Argument vector for one run of container `id` from `bundle`. */
  argv: (id: string, bundle: Bundle) => string[];
  /** Its own bundle, and so its own cgroup path: runs of different runtimes never share one. */
  bundle: Bundle;
  /** Best-effort removal of what a failed run may have left. */
  cleanup?: (id: string) => void;
  samples: number[];
  failed?: string;
}

const flags = parseFlags(process.argv.slice(2));
const iterations = Number(flags.get('iterations') ?? '200');
const warmup = Number(flags.get('warmup') ?? '5');
/** --only crun,conductor-runtime: leave the others out (nsenter and /bin/true always run). */
const only = flags.get('only')?.split(',');
if (!Number.isInteger(iterations) || iterations < 1) {
  throw new Error('--iterations must be a positive integer');
}

const PREFIX = uniqueId('bench');
const WORK = `/run/${PREFIX}`; // tmpfs: runtime state never waits on a disk
const NS_FILE = join(WORK, 'ns', 'mnt');

function sh(cmd: string, args: string[]): { ok: boolean; out: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  const err = r.error ? String(r.error) : '';
  return { ok: r.status === 0, out: `${r.stderr ?? ''}${r.stdout ?? ''}${err}` };
}

/** A mount namespace where crun cannot see the cgroup2 mount, kept alive by a bind mount. */
function makeCrunNamespace(): string | undefined {
  const nsDir = join(WORK, 'ns');
  mkdirSync(nsDir, { recursive: true });
  // The namespace file must sit on a private mount, or binding it would create a loop.
  for (const args of [
    ['--bind', nsDir, nsDir],
    ['--make-private', nsDir],
  ]) {
    const r = sh('mount', args);
    if (!r.ok) return `mount ${args.join(' ')}: ${firstLine(r.out)}`;
  }
  writeFileSync(NS_FILE, '');
  const r = sh('unshare', [
    `--mount=${NS_FILE}`,
    '--propagation',
    'private',
    'sh',
    '-c',
    'if mountpoint -q /sys/fs/cgroup/unified; then umount /sys/fs/cgroup/unified; fi',
  ]);
  return r.ok ? undefined : `unshare: ${firstLine(r.out)}`;
}

function removeCrunNamespace(): void {
  sh('umount', [NS_FILE]);
  sh('umount', [join(WORK, 'ns')]);
}

function runtimeContender(
  name: string,
  binary: string | undefined,
  bundle: Bundle,
  wrap: string[] = [],
): Contender {
  const root = join(WORK, 'root', name);
  mkdirSync(root, { recursive: true });
  const rt = binary ?? name;
  const c: Contender = {
    name,
    argv: (id, b) => [...wrap, rt, '--root', root, 'run', '--bundle', b.dir, id],
    bundle,
    cleanup: (id) => {
      const [cmd, ...args] = [...wrap, rt, '--root', root, 'delete', '--force', id];
      sh(cmd ?? rt, args);
    },
    samples: [],
  };
  if (!binary || !existsSync(binary)) c.failed = `${binary ?? name} not found`;
  return c;
}

/**
 * One real run before timing: a runtime that exits 0 without running the container (a stub, a
 * no-op) would otherwise win. The container must print its own pid, which is 1.
 */
function verify(c: Contender, check: Bundle): void {
  const id = `${check.id}-${c.bundle.id.slice(PREFIX.length + 1)}`;
  const [cmd, ...args] = c.argv(id, check);
  const r = spawnSync(cmd ?? 'false', args, {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  if (r.status !== 0 || r.stdout !== 'pid 1\n') {
    const why = r.error ? String(r.error) : `exit ${r.status ?? r.signal}`;
    const out = JSON.stringify(r.stdout ?? '');
    c.failed = `check run: ${why}, stdout ${out}, stderr: ${firstLine(r.stderr ?? '')}`;
    c.cleanup?.(id);
  }
}

function runOnce(c: Contender, i: number): void {
  const id = `${c.bundle.id}-${i}`;
  const [cmd, ...args] = c.argv(id, c.bundle);
  const t0 = process.hrtime.bigint();
  const r = spawnSync(cmd ?? 'false', args, {
    stdio: ['ignore', 'ignore', 'pipe'],
    encoding: 'utf8',
  });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.status === 0) {
    c.samples.push(ms);
    return;
  }
  const why = r.error ? String(r.error) : r.signal ? `killed by ${r.signal}` : `exit ${r.status}`;
  c.failed = `${why}: ${firstLine(r.stderr ?? '')}`;
  c.cleanup?.(id);
}

async function main(): Promise<void> {
  const repo = repoRoot();
  const before = hostSnapshot();
  mkdirSync(WORK, { recursive: true });
  const bundles: Bundle[] = [];
  let stop = false;
  process.on('SIGINT', () => (stop = true));
  try {
    const bundle = async (name: string, args = ['/bin/true']): Promise<Bundle> => {
      const b = await makeBundle({ id: `${PREFIX}-${name}`, overrides: { process: { args } } });
      bundles.push(b);
      return b;
    };
    const nsError = makeCrunNamespace();
    const nsenter = ['nsenter', `--mount=${NS_FILE}`];

    const conductor = runtimeContender(
      'conductor-runtime',
      join(repo, 'build/Release/conductor-runtime'),
      await bundle('cdr'),
    );
    // Like for like: crun can only run with the cgroup2 mount hidden, so conductor-runtime is
    // also timed in that same mount namespace (fewer cgroup hierarchies to manage), through the
    // same nsenter. The row above it is conductor-runtime on the host as it is (hybrid: it
    // also manages the unified hierarchy, which crun cannot).
    const conductorNs = runtimeContender(
      'conductor-runtime-ns',
      join(repo, 'build/Release/conductor-runtime'),
      await bundle('cdrns'),
      nsenter,
    );
    if (nsError && !conductorNs.failed) conductorNs.failed = nsError;
    const crun = runtimeContender('crun', which('crun'), await bundle('crun'), nsenter);
    if (nsError && !crun.failed) crun.failed = nsError;
    const runc = runtimeContender('runc', which('runc'), await bundle('runc'));
    const floorBundle = await bundle('floor');
    const floor: Contender = {
      name: 'floor: unshare+chroot',
      argv: (_id, b) => [
        ...['unshare', '--fork', '--pid', '--mount', '--uts', '--ipc', '--net'],
        ...['chroot', b.rootfs, ...b.config.process.args],
      ],
      bundle: floorBundle,
      samples: [],
    };
    const wrapper: Contender = {
      name: 'nsenter',
      argv: () => [...nsenter, '/bin/true'],
      bundle: floorBundle,
      samples: [],
    };
    const direct: Contender = {
      name: 'true',
      argv: () => ['/bin/true'],
      bundle: floorBundle,
      samples: [],
    };
    const picked = [conductor, conductorNs, crun, runc, floor].filter(
      (c) => !only || only.includes(c.name.replace(/^floor.*/, 'floor').replace(/-ns$/, '')),
    );
    const all = [...picked, wrapper, direct];

    const check = await bundle('check', ['/bin/sh', '-c', 'echo pid $$']);
    for (const c of picked) if (!c.failed) verify(c, check);

    console.log(
      `start-to-exit of /bin/true on one busybox bundle: ${iterations} alternating runs each ` +
        `(load average ${loadavg()[0]?.toFixed(2)} on ${cpus().length} cores)`,
    );
    for (let i = -warmup; i < iterations && !stop; i++) {
      // Each round starts one contender later (A B C D, B C D A, ...): whoever runs right after
      // a network namespace teardown or a cgroup removal changes, so no one always pays for it.
      const shift = (i + warmup) % all.length;
      for (const c of [...all.slice(shift), ...all.slice(0, shift)]) {
        if (c.failed) continue;
        runOnce(c, i + warmup);
        if (i < 0) c.samples.length = 0; // warm-up: page cache, dentries, cgroup parents
      }
    }

    const overhead = median(wrapper.samples) - median(direct.samples);
    const crunNet = crun.samples.map((s) => s - overhead);
    const ref = crun.failed || !picked.includes(crun) ? NaN : median(crunNet);
    const rows: string[][] = [['', 'median ms', 'p90 ms', 'vs crun']];
    const row = (name: string, c: Contender, samples = c.samples): void => {
      if (!picked.includes(c)) return;
      if (c.failed) {
        rows.push([`${name}: failed (${c.failed})`, '', '', '']);
        return;
      }
      const m = median(samples);
      rows.push([
        name,
        m.toFixed(2),
        quantile(samples, 0.9).toFixed(2),
        Number.isNaN(ref) ? '-' : (m / ref).toFixed(2),
      ]);
    };
    row('conductor-runtime run (host as it is: hybrid)', conductor);
    row(
      "conductor-runtime run (crun's namespace, nsenter subtracted)",
      conductorNs,
      conductorNs.samples.map((x) => x - overhead),
    );
    row('crun run (cgroup2 mount hidden, nsenter subtracted)', crun, crunNet);
    row('runc run', runc);
    row(floor.name, floor);
    console.log(table(rows));
    const ms = (samples: number[]): string => `${median(samples).toFixed(2)} ms`;
    const notes = ['ratio = median / crun median; below 1.0 is faster than crun.'];
    if (!Number.isNaN(ref)) {
      notes.push(
        `crun as measured, with nsenter: median ${ms(crun.samples)}; nsenter overhead ` +
          `subtracted: ${overhead.toFixed(2)} ms (nsenter /bin/true ${ms(wrapper.samples)} ` +
          `- /bin/true ${ms(direct.samples)}).`,
      );
    }
    notes.push(
      `every sample includes spawning from node: /bin/true alone takes ${ms(direct.samples)}.`,
      `load average after: ${loadavg()[0]?.toFixed(2)} (a busy machine slows every contender).`,
    );
    console.log(notes.join('\n'));
  } finally {
    removeCrunNamespace();
    for (const b of bundles) await b.remove().catch((err: unknown) => console.error(String(err)));
    rmSync(WORK, { recursive: true, force: true });
    // runc also joins the named name=systemd hierarchy and leaves the shared parent there.
    try {
      rmdirSync('/sys/fs/cgroup/systemd/conductor');
    } catch {
      // not there, or still used by someone else: leave it
    }
    const leaks = findLeaks(before, { idPrefix: PREFIX, runtimeRoots: [] });
    const left = [...leaks.mounts, ...leaks.cgroups, ...leaks.processes, ...leaks.stateDirs];
    if (left.length > 0) console.error(`bench: left behind:\n  ${left.join('\n  ')}`);
  }
}

await main();
