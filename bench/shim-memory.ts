/**
 * Memory of the per-container monitor while its container sleeps: conductor-shim vs podman's
 * conmon. Several containers of each run at once (--containers N, default 3), as on a node that
 * runs many: RSS is what one monitor has resident, PSS (smaps_rollup) splits pages shared among
 * the monitors and everything else mapping them, so PSS is "what one more container costs".
 * Figures are means over the N monitors of a kind.
 *
 *   node build/bench/bench/shim-memory.js [--containers N]     (hack/bench.sh runs it)
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { findLeaks, hostSnapshot } from '../test/fixtures/leaks.js';
import { makeBundle, uniqueId, type Bundle } from '../test/fixtures/rootfs.js';
import { firstLine, parseFlags, repoRoot, table, which } from './lib.js';

const flags = parseFlags(process.argv.slice(2));
const containers = Number(flags.get('containers') ?? '3');
if (!Number.isInteger(containers) || containers < 1) {
  throw new Error('--containers must be a positive integer');
}

const PREFIX = uniqueId('shimb');
const WORK = `/run/${PREFIX}`;
/** podman's conmon as measured on a machine like this one (issue 2), for comparison. */
const CONMON_REFERENCE = { rssKiB: 2048, pssKiB: 460 };

interface Memory {
  rssKiB: number;
  pssKiB: number;
}

/** A started monitor: its pid, and how to stop its container and make sure it exited. */
interface Monitor {
  pid: number;
  stop: () => Promise<void>;
}

function readMemory(pid: number): Memory {
  const field = (text: string, name: string): number => {
    const m = new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text);
    if (!m?.[1]) throw new Error(`no ${name} for pid ${pid}`);
    return Number(m[1]);
  };
  return {
    rssKiB: field(readFileSync(`/proc/${pid}/status`, 'utf8'), 'VmRSS'),
    pssKiB: field(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'), 'Pss'),
  };
}

const alive = (pid: number): boolean => {
  try {
    return !readFileSync(`/proc/${pid}/stat`, 'utf8').includes(') Z ');
  } catch {
    return false;
  }
};

async function waitGone(pid: number, ms: number): Promise<boolean> {
  for (let t = 0; t < ms && alive(pid); t += 20) await sleep(20);
  return !alive(pid);
}

function run(cmd: string, args: string[]): { ok: boolean; out: string } {
  const r = spawnSync(cmd, args, {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: 30000,
  });
  const err = r.error ? String(r.error) : '';
  return { ok: r.status === 0, out: `${r.stdout ?? ''}${r.stderr ?? ''}${err}` };
}

/** Kills the container through its runtime, waits for the monitor to exit, then makes sure. */
async function stopContainer(
  runtime: string,
  root: string,
  id: string,
  monitorPid: number | undefined,
): Promise<void> {
  run(runtime, ['--root', root, 'kill', id, 'KILL']);
  if (monitorPid !== undefined && !(await waitGone(monitorPid, 10000))) {
    process.kill(monitorPid, 'SIGKILL');
    await waitGone(monitorPid, 5000);
  }
  run(runtime, ['--root', root, 'delete', '--force', id]);
}

/** conductor-shim as the facade starts it (runtime-core/README.md). */
async function startShim(shim: string, runtime: string, bundle: Bundle): Promise<Monitor> {
  const dir = join(WORK, `shim-${bundle.id}`);
  const root = join(WORK, 'root-shim');
  mkdirSync(dir, { recursive: true });
  mkdirSync(root, { recursive: true });
  const args = ['--id', bundle.id, '--bundle', bundle.dir, '--dir', dir];
  const r = run(shim, [...args, '--runtime', runtime, '--runtime-root', root]);
  const line = r.out.split('\n').find((l) => l.startsWith('{'));
  let reply: { ok?: boolean; shimPid?: number; error?: string } | undefined;
  try {
    reply = line ? (JSON.parse(line) as typeof reply) : undefined;
  } catch {
    reply = undefined;
  }
  const pid = reply?.shimPid;
  const stop = (): Promise<void> => stopContainer(runtime, root, bundle.id, pid);
  if (!r.ok || !reply?.ok || pid === undefined) {
    await stop();
    throw new Error(reply?.error ?? firstLine(r.out));
  }
  return { pid, stop };
}

/** conmon as podman starts it: conmon runs `runc create` and daemonizes; the caller starts. */
async function startConmon(conmon: string, runc: string, bundle: Bundle): Promise<Monitor> {
  const dir = join(WORK, `conmon-${bundle.id}`);
  const root = join(WORK, 'root-conmon');
  for (const sub of ['exits', 'sockets']) mkdirSync(join(dir, sub), { recursive: true });
  mkdirSync(root, { recursive: true });
  const pidFile = join(dir, 'conmon.pid');
  const r = run(conmon, [
    '--api-version', '1',
    '--cid', bundle.id, '--cuuid', bundle.id, '--name', bundle.id,
    '--runtime', runc, '--runtime-arg', '--root', '--runtime-arg', root,
    '--bundle', bundle.dir,
    '--container-pidfile', join(dir, 'container.pid'), '--conmon-pidfile', pidFile,
    '--log-path', `k8s-file:${join(dir, 'container.log')}`,
    '--exit-dir', join(dir, 'exits'), '--socket-dir-path', join(dir, 'sockets'),
  ]); // prettier-ignore
  const pid = existsSync(pidFile) ? Number(readFileSync(pidFile, 'utf8').trim()) : undefined;
  const stop = (): Promise<void> => stopContainer(runc, root, bundle.id, pid);
  try {
    if (!r.ok || pid === undefined) throw new Error(firstLine(r.out));
    // conmon has daemonized before `runc create` finishes; podman waits on a sync pipe, we poll.
    for (let t = 0; t < 10000 && !existsSync(join(dir, 'container.pid')); t += 20) await sleep(20);
    const started = run(runc, ['--root', root, 'start', bundle.id]);
    if (!started.ok) throw new Error(`runc start: ${firstLine(started.out)}`);
    return { pid, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Starts `containers` monitors, measures them together, stops them all; mean RSS and PSS. */
async function measure(start: (b: Bundle) => Promise<Monitor>, bundles: Bundle[]): Promise<Memory> {
  const monitors: Monitor[] = [];
  try {
    for (const b of bundles) monitors.push(await start(b));
    await sleep(500); // settled: containers started, log pipes set up
    const ms = monitors.map((m) => readMemory(m.pid));
    const mean = (f: (m: Memory) => number): number =>
      Math.round(ms.reduce((sum, m) => sum + f(m), 0) / ms.length);
    return { rssKiB: mean((m) => m.rssKiB), pssKiB: mean((m) => m.pssKiB) };
  } finally {
    for (const m of monitors) await m.stop();
  }
}

/** The mounted cgroup hierarchies (/sys/fs/cgroup/memory, .../systemd, .../unified, ...). */
function v1Hierarchies(): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter((l) => / - cgroup2? /.test(l))
    .map((l) => l.split(' ')[4] ?? '')
    .filter((m) => m !== '');
}

async function main(): Promise<void> {
  const repo = repoRoot();
  const before = hostSnapshot();
  // runc (the conmon row) makes the bundles' cgroup parent in every hierarchy, named ones
  // (name=systemd) included, and leaves it when its container goes: removed at the end if it
  // was not there before and is empty.
  const runcParents = v1Hierarchies()
    .map((h) => join(h, 'conductor'))
    .filter((d) => !existsSync(d));
  const shim = join(repo, 'build/Release/conductor-shim');
  const runtime = join(repo, 'build/Release/conductor-runtime');
  const runc = which('runc');
  const conmon = [
    '/usr/bin/conmon',
    '/usr/libexec/podman/conmon',
    '/usr/local/libexec/podman/conmon',
  ].find(existsSync);
  const allBundles: Bundle[] = [];
  const bundles = async (name: string): Promise<Bundle[]> => {
    const out: Bundle[] = [];
    for (let i = 0; i < containers; i++) {
      const b = await makeBundle({
        id: `${PREFIX}-${name}${i}`,
        overrides: { process: { args: ['/bin/sleep', '1000'] } },
      });
      allBundles.push(b);
      out.push(b);
    }
    return out;
  };
  const rows: string[][] = [
    [`monitor, ${containers} sleeping container(s) each (mean)`, 'RSS KiB', 'PSS KiB'],
  ];
  const attempt = async (name: string, fn: () => Promise<Memory>): Promise<boolean> => {
    try {
      const m = await fn();
      rows.push([name, String(m.rssKiB), String(m.pssKiB)]);
      return true;
    } catch (err) {
      rows.push([`${name}: failed (${(err as Error).message})`, '', '']);
      return false;
    }
  };
  mkdirSync(WORK, { recursive: true });
  try {
    const ok = await attempt('conductor-shim (runtime: conductor-runtime)', async () =>
      measure((b) => startShim(shim, runtime, b), await bundles('cdr')),
    );
    // The shim drives any OCI runtime CLI, so runc can stand in while conductor-runtime cannot.
    if (!ok && runc) {
      await attempt('conductor-shim (runtime: runc)', async () =>
        measure((b) => startShim(shim, runc, b), await bundles('srunc')),
      );
    }
    if (conmon && runc) {
      const version = firstLine(run(conmon, ['--version']).out).replace('conmon version ', '');
      await attempt(`conmon ${version} (runtime: runc)`, async () =>
        measure((b) => startConmon(conmon, runc, b), await bundles('conmon')),
      );
    } else {
      rows.push([`conmon: not measured (${conmon ? 'runc' : 'conmon'} not found)`, '', '']);
    }
    rows.push([
      'conmon, reference figure (constant, not measured)',
      String(CONMON_REFERENCE.rssKiB),
      String(CONMON_REFERENCE.pssKiB),
    ]);
    console.log(table(rows));
  } finally {
    for (const b of allBundles)
      await b.remove().catch((err: unknown) => console.error(String(err)));
    rmSync(WORK, { recursive: true, force: true });
    for (const d of runcParents) if (existsSync(d)) rmdirSync(d); // EBUSY if not empty: a leak
    const leaks = findLeaks(before, { idPrefix: PREFIX, runtimeRoots: [] });
    const left = [...leaks.mounts, ...leaks.cgroups, ...leaks.processes, ...leaks.stateDirs];
    if (left.length > 0) console.error(`bench: left behind:\n  ${left.join('\n  ')}`);
  }
}

await main();
