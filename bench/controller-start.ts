/**
 * Manifest to Running: how long after a Container manifest lands in the watch directory the
 * container runs, for 1 container and for 100 (one file, 100 documents), against `podman kube
 * play` of the equivalent Pods (1 pod; one file with 100 Pod documents) on the same busybox
 * rootfs. Rounds alternate Conductor and podman (and which goes first), so drift on the machine
 * hits both alike; medians are compared.
 *
 * Conductor: each round is a fresh in-process controller (ControllerHarness) with the watch dir's
 * own DirectorySource settle time (30 ms, what `conductor up` uses; --settle-ms to change) and
 * default worker counts. The Image is built and Ready before the clock starts; the clock starts
 * just before the manifest is written (temp file + rename) and stops when the last container's
 * persisted status (<state>/objects/containers/<ns>/<name>.json) says phase Running, Ready. The
 * status files are watched with inotify (fs.watch on the namespace directory) and each one is
 * read back on every event; the time taken is after that read, so it is never earlier than the
 * write. A 100 ms poll backs the watch up in case an event is missed (counted and reported).
 *
 * podman: the wall time of `podman kube play` returning (it returns once the pods run), with
 * runc, a private store (--root/--runroot/--tmpdir in a temp dir), the cgroupfs manager and
 * `--network none` (a Conductor container today gets a new network namespace with nothing in
 * it, which is what podman's `none` is). podman also starts an infra (pause) container per pod:
 * that is its model of a Pod, and it is counted; `podman run -d` of one container (no pod) is
 * timed beside it as a reference. Its pause image is built in the untimed warm-up round.
 *
 * Everything made is removed at the end, also on failure or Ctrl-C (which stops after the
 * current round): harness dirs and containers each round, podman's pods by exact name, its
 * images and private store, and the empty libpod_parent cgroups podman leaves behind.
 *
 *   node build/bench/bench/controller-start.js [--rounds N] [--rounds-many N] [--many N]
 *     [--settle-ms MS] [--skip-podman]
 */
import { spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  readdirSync,
  rmSync,
  rmdirSync,
  watch,
  writeFileSync,
} from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';

import type { Container, Image } from '../controller/api/types.generated.js';
import { ControllerHarness, busyboxImage, containerManifest } from '../test/fixtures/controller.js';
import { CGROUP_ROOT, findLeaks, hostSnapshot, listMounts } from '../test/fixtures/leaks.js';
import { busyboxRootfs, uniqueId } from '../test/fixtures/rootfs.js';
import { firstLine, median, parseFlags, table, which } from './lib.js';

const flags = parseFlags(process.argv.slice(2));
function positive(name: string, fallback: number): number {
  const n = Number(flags.get(name) ?? fallback);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer`);
  return n;
}
const rounds = positive('rounds', 5);
const roundsMany = positive('rounds-many', 2);
const many = positive('many', 100);
const settleMs = flags.has('settle-ms') ? Number(flags.get('settle-ms')) : undefined;
const skipPodman = flags.get('skip-podman') === 'true';
/** The target: Conductor at least this many times faster than podman. */
const TARGET = 5;
const COMMAND = ['/bin/sleep', '3600'];

const PREFIX = uniqueId('cbench');
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
let stop = false;
process.once('SIGINT', () => {
  stop = true;
  console.error('bench: stopping after this round, then cleaning up');
});

interface Sample {
  /** Manifest written → the last container Running. */
  total: number;
  /** Manifest written → the last object persisted (read, validated, cached: the source's part). */
  observed?: number;
  /**
   * Manifest written → the last container process started (its status.startedAt, from the shim;
   * wall clock, so good to about a millisecond).
   */
  started?: number;
}

// ---------------------------------------------------------------------------------------------
// Conductor

/** Resolves when every named Container's persisted status is Running with condition Ready. */
class RunningWatcher {
  private readonly observed = new Map<string, number>();
  private readonly running = new Map<string, number>();
  private readonly startedAt = new Map<string, number>();
  /** The last status read of a container not yet Running, for the timeout's message. */
  private last: { name: string; status: unknown } | undefined;
  private readonly watcher;
  private readonly poll: NodeJS.Timeout;
  /** Containers only the backup poll saw Running (the watch missed their last write). */
  polled = 0;
  private finish: ((err?: Error) => void) | undefined;
  t0 = 0;
  /** t0 on the wall clock, for status.startedAt. */
  t0Wall = 0;

  constructor(
    private readonly dir: string,
    private readonly names: string[],
  ) {
    this.watcher = watch(dir, (_event, file) => {
      if (file?.endsWith('.json') && !file.startsWith('.')) void this.check(file.slice(0, -5));
    });
    this.poll = setInterval(() => {
      for (const n of this.names) if (!this.running.has(n)) void this.check(n, true);
    }, 100);
  }

  private async check(name: string, fromPoll = false): Promise<void> {
    if (this.t0 === 0 || this.running.has(name)) return;
    let obj: Container;
    try {
      obj = JSON.parse(await readFile(join(this.dir, `${name}.json`), 'utf8')) as Container;
    } catch {
      return; // not there yet, or replaced while we read: the rename brings another event
    }
    const at = performance.now() - this.t0;
    if (!this.observed.has(name)) this.observed.set(name, at);
    const s = obj.status;
    if (s?.phase === 'Failed' || s?.reason === 'CrashLoopBackOff') {
      this.finish?.(new Error(`${name}: ${s.phase} ${s.reason ?? ''} ${s.message ?? ''}`));
    }
    this.last = { name, status: s };
    const ready = s?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True');
    if (s?.phase !== 'Running' || !ready || this.running.has(name)) return;
    this.running.set(name, at);
    if (s.startedAt) this.startedAt.set(name, Date.parse(s.startedAt) - this.t0Wall);
    if (fromPoll) this.polled++;
    if (this.running.size === this.names.length) this.finish?.();
  }

  wait(timeoutMs: number): Promise<Sample> {
    return new Promise<Sample>((resolve, reject) => {
      const timer = setTimeout(
        () =>
          this.finish?.(
            new Error(
              `${this.running.size}/${this.names.length} Running after ${timeoutMs} ms; last ` +
                `read: ${this.last?.name ?? 'none'} ${JSON.stringify(this.last?.status)}`,
            ),
          ),
        timeoutMs,
      );
      this.finish = (err) => {
        this.finish = undefined;
        clearTimeout(timer);
        if (err) return reject(err);
        resolve({
          total: Math.max(...this.running.values()),
          observed: Math.max(...this.observed.values()),
          started: Math.max(...this.startedAt.values()),
        });
      };
      if (this.running.size === this.names.length) this.finish();
    });
  }

  close(): void {
    this.watcher.close();
    clearInterval(this.poll);
  }
}

let missedByWatch = 0;

async function conductorRound(namespace: string, n: number): Promise<Sample> {
  const h = await ControllerHarness.create(namespace);
  try {
    await h.start({ settleMs });
    await h.write('image.yaml', busyboxImage(namespace));
    await h.waitFor<Image>('Image', 'busybox', (o) => o?.status?.phase === 'Ready', 60_000);
    // Let the controller go idle (sources.json, events) before the clock starts.
    await sleep(200);
    const names = Array.from({ length: n }, (_, i) => `c${i}`);
    const dir = join(h.stateDir, 'objects', 'containers', namespace);
    await mkdir(dir, { recursive: true });
    const watcher = new RunningWatcher(dir, names);
    try {
      const text = names
        .map((name) => containerManifest(namespace, name, { command: COMMAND }))
        .join('\n---\n');
      watcher.t0Wall = Date.now();
      watcher.t0 = performance.now();
      await h.write('containers.yaml', text);
      const sample = await watcher.wait(30_000 + n * 1000);
      missedByWatch += watcher.polled;
      // A "Running" that runs nothing would win: the first container's process must exist.
      const first = await h.object<Container>('Container', 'c0');
      const pid = first?.status?.pid;
      if (pid === undefined || !existsSync(`/proc/${pid}`)) {
        throw new Error(`c0 is Running but its pid ${String(pid)} does not exist`);
      }
      return sample;
    } finally {
      watcher.close();
    }
  } finally {
    await h.cleanup();
  }
}

// ---------------------------------------------------------------------------------------------
// podman

/** Every cgroup directory at or below libpod_parent, in every hierarchy, parents first. */
function podmanCgroups(): string[] {
  const out: string[] = [];
  const walk = (dir: string): void => {
    out.push(dir);
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      if (e.isDirectory()) walk(join(dir, e.name));
    }
  };
  for (const h of readdirSync(CGROUP_ROOT)) {
    const top = join(CGROUP_ROOT, h, 'libpod_parent');
    if (existsSync(top)) walk(top);
  }
  return out;
}

class Podman {
  /** Short: podman refuses a runroot path longer than 50 characters. */
  readonly dir = `/tmp/${PREFIX}-pm`;
  readonly image = `localhost/conductor-bench-busybox:${PREFIX}`;
  private readonly env: NodeJS.ProcessEnv;
  private readonly base: string[];
  /** Pods made and not yet removed: removed by exact name, even after a failure. */
  private readonly pods = new Set<string>();
  private readonly containers = new Set<string>();
  /**
   * podman (cgroupfs manager) puts pods under libpod_parent/ in every hierarchy, and on this
   * hybrid host leaves one empty cgroup per pod behind in the named `systemd` and `unified`
   * hierarchies. What was there before we started is not ours; the rest is removed at the end.
   */
  private readonly cgroupsBefore = new Set(podmanCgroups());

  constructor(readonly binary: string) {
    mkdirSync(this.dir, { recursive: true });
    const conf = join(this.dir, 'containers.conf');
    // The host's hard nofile limit is 20000: podman's root defaults exceed it.
    writeFileSync(
      conf,
      '[containers]\ndefault_ulimits = ["nofile=20000:20000","nproc=32768:32768"]\n',
    );
    this.env = { ...process.env, CONTAINERS_CONF: conf };
    this.base = [
      ...['--root', join(this.dir, 'root'), '--runroot', join(this.dir, 'run')],
      ...['--tmpdir', join(this.dir, 'tmp'), '--storage-driver', 'overlay'],
      ...['--cgroup-manager', 'cgroupfs', '--events-backend', 'file', '--runtime', 'runc'],
    ];
  }

  run(args: string[], input?: Buffer): string {
    const r = spawnSync(this.binary, [...this.base, ...args], {
      env: this.env,
      encoding: 'utf8',
      stdio: [input ? 'pipe' : 'ignore', 'pipe', 'pipe'],
      ...(input ? { input } : {}),
      maxBuffer: 64 << 20,
    });
    if (r.status !== 0) {
      const why = r.error ? String(r.error) : `exit ${r.status ?? r.signal}`;
      throw new Error(`podman ${args.slice(0, 2).join(' ')}: ${why}: ${firstLine(r.stderr)}`);
    }
    return r.stdout;
  }

  importRootfs(rootfs: string): void {
    const tar = spawnSync('tar', ['-C', rootfs, '-c', '.'], { maxBuffer: 256 << 20 });
    if (tar.status !== 0) throw new Error(`tar: ${firstLine(String(tar.stderr))}`);
    this.run(['import', '-', this.image], tar.stdout);
  }

  /** `kube play` of `pods` Pod documents in one file: its wall time, in ms. */
  play(pods: string[]): Sample {
    const file = join(this.dir, `${pods[0] ?? 'pods'}.yaml`);
    writeFileSync(
      file,
      pods
        .map(
          (name) => `apiVersion: v1
kind: Pod
metadata: {name: ${name}}
spec:
  containers:
  - name: c
    image: ${this.image}
    command: ${JSON.stringify(COMMAND)}
`,
        )
        .join('---\n'),
    );
    for (const p of pods) this.pods.add(p);
    const t0 = performance.now();
    this.run(['kube', 'play', '--network', 'none', file]);
    const total = performance.now() - t0;
    // Every container must be running (as Conductor's must): not timed.
    const running = new Set(
      this.run(['ps', '--filter', 'status=running', '--format', '{{.Names}}']).split('\n'),
    );
    const missing = pods.filter((p) => !running.has(`${p}-c`));
    if (missing.length > 0) {
      throw new Error(`podman: not running after kube play: ${missing.join(' ')}`);
    }
    return { total };
  }

  /** `podman run -d` of one container, no pod and so no infra container: a reference. */
  runContainer(name: string): Sample {
    this.containers.add(name);
    const t0 = performance.now();
    this.run(['run', '-d', '--network', 'none', '--name', name, this.image, ...COMMAND]);
    return { total: performance.now() - t0 };
  }

  removeContainers(): void {
    if (this.containers.size === 0) return;
    this.run(['rm', '--force', '--time', '0', ...this.containers]);
    this.containers.clear();
  }

  removePods(): void {
    if (this.pods.size === 0) return;
    this.run(['pod', 'rm', '--force', '--time', '0', ...this.pods]);
    this.pods.clear();
  }

  /** Pods, images, the private store (and its mounts), libpod_parent cgroups we made. */
  destroy(): void {
    const errors: string[] = [];
    const attempt = (f: () => void): void => {
      try {
        f();
      } catch (err) {
        errors.push(String(err));
      }
    };
    attempt(() => this.removePods());
    attempt(() => this.removeContainers());
    attempt(() => this.run(['rmi', '--force', this.image]));
    // The private store holds only what this run made: the image above and podman's pause image.
    attempt(() => {
      const ids = this.run(['images', '--quiet']).split('\n').filter(Boolean);
      if (ids.length > 0) this.run(['rmi', '--force', ...new Set(ids)]);
    });
    for (const m of listMounts()
      .filter((m) => m.startsWith(`${this.dir}/`))
      .reverse()) {
      attempt(() => {
        const r = spawnSync('umount', [m], { encoding: 'utf8' });
        if (r.status !== 0) throw new Error(`umount ${m}: ${firstLine(r.stderr)}`);
      });
    }
    attempt(() => rmSync(this.dir, { recursive: true, force: true }));
    // Deepest first; rmdir fails on a cgroup with processes or children: then it is in use.
    for (const cg of podmanCgroups().reverse()) {
      if (this.cgroupsBefore.has(cg)) continue;
      try {
        rmdirSync(cg);
      } catch {
        // not ours to force
      }
    }
    if (errors.length > 0) console.error(`bench: podman cleanup:\n  ${errors.join('\n  ')}`);
  }
}

// ---------------------------------------------------------------------------------------------

interface Series {
  conductor: Sample[];
  podman: Sample[];
  /** `podman run -d` (1-container series only). */
  podmanRun: Sample[];
  podmanFailed?: string;
}

async function series(
  label: string,
  n: number,
  count: number,
  podman: Podman | undefined,
  warmup: boolean,
): Promise<Series> {
  const out: Series = { conductor: [], podman: [], podmanRun: [] };
  for (let r = warmup ? -1 : 0; r < count && !stop; r++) {
    const tag = r < 0 ? 'w' : String(r);
    const round = `${label}${tag}`;
    const conductor = async (): Promise<void> => {
      const s = await conductorRound(`${PREFIX}-${round}`, n);
      if (r >= 0) out.conductor.push(s);
      console.log(
        `  round ${tag} conductor: ${s.total.toFixed(1)} ms (objects persisted at ` +
          `${s.observed?.toFixed(1) ?? '?'} ms, last process started at ` +
          `${s.started?.toFixed(0) ?? '?'} ms)`,
      );
    };
    const pod = (): void => {
      if (!podman || out.podmanFailed) return;
      try {
        const names = Array.from({ length: n }, (_, i) => `${PREFIX}-${round}-p${i}`);
        const s = podman.play(names);
        if (r >= 0) out.podman.push(s);
        console.log(`  round ${tag} podman:    ${s.total.toFixed(1)} ms`);
        if (n === 1) {
          const one = podman.runContainer(`${PREFIX}-${round}-run`);
          if (r >= 0) out.podmanRun.push(one);
          console.log(`  round ${tag} podman run -d (reference): ${one.total.toFixed(1)} ms`);
        }
      } catch (err) {
        out.podmanFailed = String(err);
        console.log(`  round ${tag} podman failed: ${out.podmanFailed}`);
      } finally {
        podman.removePods();
        podman.removeContainers();
      }
    };
    // Alternate who goes first: whoever follows the other's teardown pays for it.
    if ((r + 1) % 2 === 0) {
      await conductor();
      pod();
    } else {
      pod();
      await conductor();
    }
  }
  return out;
}

async function main(): Promise<void> {
  const before = hostSnapshot();
  const rootfs = await busyboxRootfs();
  const podmanBinary = skipPodman ? undefined : which('podman');
  let podman: Podman | undefined;
  let podmanError: string | undefined = skipPodman ? 'skipped (--skip-podman)' : undefined;
  try {
    if (podmanBinary) {
      try {
        podman = new Podman(podmanBinary);
        podman.importRootfs(rootfs);
      } catch (err) {
        podmanError = String(err);
      }
    } else podmanError ??= 'podman not found';

    console.log(
      `manifest → Running: Conductor (in-process controller, settle ` +
        `${settleMs ?? 30} ms) vs podman kube play (runc, --network none); ` +
        `load average ${loadavg()[0]?.toFixed(2)} on ${cpus().length} cores`,
    );
    console.log(`1 container, ${rounds} rounds (+1 warm-up):`);
    const one = await series('a', 1, rounds, podmanError ? undefined : podman, true);
    console.log(`${many} containers in one file, ${roundsMany} rounds:`);
    const lots = await series('b', many, roundsMany, podmanError ? undefined : podman, false);

    const rows: string[][] = [
      ['', 'conductor ms', '(persisted', 'started)', 'podman ms', 'podman / conductor', 'target'],
    ];
    for (const [name, s] of [
      ['1 container', one],
      [`${many} containers`, lots],
    ] as const) {
      const c = median(s.conductor.map((x) => x.total));
      const o = median(s.conductor.map((x) => x.observed ?? NaN));
      const st = median(s.conductor.map((x) => x.started ?? NaN));
      const p = median(s.podman.map((x) => x.total));
      const failed = podmanError ?? s.podmanFailed;
      const ratio = p / c;
      rows.push([
        name,
        c.toFixed(1),
        o.toFixed(1),
        st.toFixed(0),
        failed ? 'failed' : p.toFixed(1),
        failed ? '-' : `${ratio.toFixed(1)}x`,
        failed ? '-' : `${TARGET}x ${ratio >= TARGET ? 'met' : 'NOT met'}`,
      ]);
    }
    console.log(`medians:\n${table(rows)}`);
    const notes = [
      'podman / conductor: how many times faster Conductor is (higher is better for Conductor).',
      'persisted: when the last object file appeared (inotify, settle, parse, validate, write);',
      'started: when the last container process started (status.startedAt, from the shim);',
      'conductor ms: when the last status file said Running (what the CLI and Services see).',
    ];
    if (one.podmanRun.length > 0) {
      const pr = median(one.podmanRun.map((x) => x.total));
      const c = median(one.conductor.map((x) => x.total));
      notes.push(
        `reference: podman run -d of 1 container (no pod, no infra container): median ` +
          `${pr.toFixed(1)} ms, ${(pr / c).toFixed(1)}x Conductor's time.`,
      );
    }
    if (podmanError) notes.push(`podman: ${podmanError}`);
    for (const s of [one, lots]) if (s.podmanFailed) notes.push(`podman: ${s.podmanFailed}`);
    if (missedByWatch > 0) {
      notes.push(
        `${missedByWatch} Running status(es) were read first by the 100 ms backup poll ` +
          '(at worst 100 ms late; usually a watch-triggered read was in flight too).',
      );
    }
    notes.push(`load average after: ${loadavg()[0]?.toFixed(2)}.`);
    console.log(notes.join('\n'));
  } finally {
    podman?.destroy();
    const leaks = findLeaks(before, { idPrefix: PREFIX, runtimeRoots: [] });
    const left = [...leaks.mounts, ...leaks.cgroups, ...leaks.processes, ...leaks.stateDirs];
    if (left.length > 0) console.error(`bench: left behind:\n  ${left.join('\n  ')}`);
  }
}

await main();
