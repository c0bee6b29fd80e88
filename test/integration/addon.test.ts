/**
 * The native addon (runtime-core/src/native.ts) against the real kernel, as root: pidfd exit
 * waits, start times, overlay mounts, cgroup statistics (this host is v1/v2 hybrid), persistent
 * network namespaces.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import {
  mkdirSync,
  mkdtempSync,
  openSync,
  closeSync,
  readFileSync,
  readdirSync,
  rmSync,
  rmdirSync,
  statSync,
  writeFileSync,
  existsSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';

import {
  addonPath,
  cgroupStats,
  containerStats,
  mountOverlay,
  netnsCreate,
  netnsRemove,
  nsInodes,
  pidStartTime,
  unmount,
  waitForExit,
} from '../../runtime-core/src/native.js';
import {
  assertNoLeaks,
  hostSnapshot,
  listMounts,
  uniqueId,
  type HostSnapshot,
} from '../fixtures/index.js';

const PREFIX = uniqueId('addon');
let tmp: string;
let before: HostSnapshot;
const started: number[] = [];

function mountsUnder(dir: string): string[] {
  return listMounts().filter((m) => m === dir || m.startsWith(`${dir}/`));
}

function exited(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once('exit', () => resolve());
  });
}

/** A pid that no process has: a child that has exited and been reaped. */
async function deadPid(): Promise<number> {
  const c = spawn('true', { stdio: 'ignore' });
  await exited(c);
  return c.pid ?? 0;
}

/** A sleep that is not our child: started by a shell that exits, in its own session. */
function orphanSleep(): number {
  const r = spawnSync('sh', ['-c', 'setsid sleep 1000 </dev/null >/dev/null 2>&1 & echo $!'], {
    encoding: 'utf8',
  });
  const pid = Number(r.stdout.trim());
  expect(pid).toBeGreaterThan(0);
  started.push(pid);
  return pid;
}

function ppidOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
}

beforeAll(() => {
  before = hostSnapshot();
  tmp = mkdtempSync(join(tmpdir(), `${PREFIX}-`));
});

afterAll(() => {
  for (const pid of started) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  const leftover = mountsUnder(tmp);
  for (const m of leftover.reverse()) spawnSync('umount', ['-l', m]);
  expect(leftover).toEqual([]);
  rmSync(tmp, { recursive: true, force: true });
  assertNoLeaks(before, { idPrefix: PREFIX, pids: started, tempDirs: [tmp] });
});

describe('waitForExit', () => {
  it('resolves when a child is killed', async () => {
    const c = spawn('sleep', ['1000'], { stdio: 'ignore' });
    const pid = c.pid ?? 0;
    started.push(pid);
    const waited = waitForExit(pid);
    c.kill('SIGKILL');
    await expect(waited).resolves.toBeUndefined();
    await exited(c);
  });

  it('resolves for a child that exits by itself', async () => {
    const c = spawn('true', { stdio: 'ignore' });
    await waitForExit(c.pid ?? 0);
    await exited(c);
  });

  it('resolves for a process that is not our child', async () => {
    const pid = orphanSleep();
    expect(ppidOf(pid)).not.toBe(process.pid);
    const waited = waitForExit(pid);
    process.kill(pid, 'SIGKILL');
    await expect(waited).resolves.toBeUndefined();
  });

  it('waits for several processes at once, each resolving on its own exit', async () => {
    const pids = [orphanSleep(), orphanSleep(), orphanSleep()];
    const done = new Set<number>();
    const waits = pids.map((pid) => waitForExit(pid).then(() => done.add(pid)));
    process.kill(pids[1] ?? 0, 'SIGKILL');
    await waits[1];
    expect([...done]).toEqual([pids[1]]);
    for (const pid of pids) if (pid !== pids[1]) process.kill(pid, 'SIGKILL');
    await Promise.all(waits);
    expect(done.size).toBe(3);
  });

  it('rejects with ESRCH for a process that does not exist', async () => {
    const pid = await deadPid();
    await expect(waitForExit(pid)).rejects.toMatchObject({
      code: 'ESRCH',
      message: expect.stringMatching(new RegExp(`pidfd_open.*process ${pid} does not exist`)),
    });
  });

  it('rejects a pid that is not a positive integer', async () => {
    // The addon's TypeError comes from Node's realm, not the test's: match it by name.
    for (const pid of [0, -1, 1.5]) {
      await expect(waitForExit(pid)).rejects.toMatchObject({
        name: 'TypeError',
        message: 'waitForExit: pid must be a positive integer',
      });
    }
  });

  it('does not keep an idle process alive', () => {
    // A process that waited once must exit by itself: the watcher is unref'd when idle.
    const script = `
      const addon = require(${JSON.stringify(addonPath)});
      const c = require('node:child_process').spawn('true');
      addon.waitForExit(c.pid).exited.then(() => console.log('waited'));`;
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 30000 });
    expect(r.signal).toBeNull();
    expect(r.status).toBe(0);
    expect(r.stdout.trim()).toBe('waited');
  });
});

describe('waitForExit cancelled', () => {
  it('an aborted signal rejects with AbortError and the process is not waited for', async () => {
    const pid = orphanSleep();
    const abort = new AbortController();
    const waited = waitForExit(pid, abort.signal);
    const other = waitForExit(pid);
    abort.abort();
    await expect(waited).rejects.toMatchObject({ name: 'AbortError' });
    await expect(waitForExit(pid, AbortSignal.abort())).rejects.toMatchObject({
      name: 'AbortError',
    });
    // Another wait on the same process is its own: it still resolves on the exit.
    process.kill(pid, 'SIGKILL');
    await expect(other).resolves.toBeUndefined();
  });

  it('many waits, some cancelled: the others resolve on their exits', async () => {
    const pids = [orphanSleep(), orphanSleep(), orphanSleep(), orphanSleep()];
    const aborts = pids.map(() => new AbortController());
    const waits = pids.map((pid, i) =>
      waitForExit(pid, aborts[i]?.signal).then(
        () => 'exited',
        (err: Error) => err.name,
      ),
    );
    aborts[0]?.abort();
    aborts[2]?.abort();
    for (const pid of pids) process.kill(pid, 'SIGKILL');
    expect(await Promise.all(waits)).toEqual(['AbortError', 'exited', 'AbortError', 'exited']);
  });

  it('a cancelled wait does not keep the process alive', () => {
    // The wait holds a reference on the event loop while pending; cancelWait drops it, so a
    // process whose only pending wait was cancelled exits by itself.
    const pid = orphanSleep();
    try {
      const script = `
        const addon = require(${JSON.stringify(addonPath)});
        const { id, exited } = addon.waitForExit(${pid});
        exited.catch((e) => console.log('rejected', e.code));
        setTimeout(() => addon.cancelWait(id), 50);`;
      const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 30000 });
      expect(r.signal).toBeNull();
      expect(r.status).toBe(0);
      expect(r.stdout.trim()).toBe('rejected ECANCELED');
    } finally {
      process.kill(pid, 'SIGKILL');
    }
  });
});

describe('pidStartTime', () => {
  it('reads field 22 of /proc/PID/stat', () => {
    const stat = readFileSync(`/proc/${process.pid}/stat`, 'utf8');
    const field22 = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
    expect(pidStartTime(process.pid)).toBe(BigInt(field22 ?? -1));
  });

  it('is null for a process that does not exist', async () => {
    expect(pidStartTime(await deadPid())).toBeNull();
  });
});

describe('nsInodes', () => {
  it('names every namespace of a process', () => {
    const ns = nsInodes(process.pid);
    for (const kind of ['pid', 'uts', 'ipc', 'mnt', 'net', 'cgroup'] as const) {
      expect(ns[kind]).toMatch(new RegExp(`^${kind}:\\[\\d+\\]$`));
    }
  });
});

describe('mountOverlay', () => {
  let n = 0;
  /** Fresh lower (top, bottom), upper, work and target dirs. */
  function layout(): { top: string; bottom: string; upper: string; work: string; target: string } {
    n += 1;
    const base = join(tmp, `ov${n}`);
    const dirs = {
      top: join(base, 'top'),
      bottom: join(base, 'bottom'),
      upper: join(base, 'upper'),
      work: join(base, 'work'),
      target: join(base, 'merged'),
    };
    for (const d of Object.values(dirs)) mkdirSync(d, { recursive: true });
    writeFileSync(join(dirs.bottom, 'shared.txt'), 'bottom');
    writeFileSync(join(dirs.bottom, 'bottom-only.txt'), 'b');
    writeFileSync(join(dirs.bottom, 'doomed.txt'), 'd');
    writeFileSync(join(dirs.top, 'shared.txt'), 'top');
    writeFileSync(join(dirs.top, 'top-only.txt'), 't');
    return dirs;
  }

  it('merges two lower layers, top first, writes to upper, whiteouts deletions', async () => {
    const d = layout();
    await mountOverlay({
      lower: [d.top, d.bottom],
      upper: d.upper,
      work: d.work,
      target: d.target,
    });
    try {
      expect(mountsUnder(tmp)).toEqual([d.target]);
      expect(readdirSync(d.target).sort()).toEqual(
        ['bottom-only.txt', 'doomed.txt', 'shared.txt', 'top-only.txt'].sort(),
      );
      expect(readFileSync(join(d.target, 'shared.txt'), 'utf8')).toBe('top');

      writeFileSync(join(d.target, 'new.txt'), 'new');
      expect(readFileSync(join(d.upper, 'new.txt'), 'utf8')).toBe('new');
      expect(existsSync(join(d.top, 'new.txt'))).toBe(false);

      rmSync(join(d.target, 'doomed.txt'));
      expect(existsSync(join(d.target, 'doomed.txt'))).toBe(false);
      expect(existsSync(join(d.bottom, 'doomed.txt'))).toBe(true);
      const whiteout = statSync(join(d.upper, 'doomed.txt'));
      expect(whiteout.isCharacterDevice()).toBe(true);
      expect(whiteout.rdev).toBe(0);
    } finally {
      await unmount(d.target);
    }
    expect(mountsUnder(tmp)).toEqual([]);
    expect(readdirSync(d.target)).toEqual([]);
  });

  it('mounts read-only when asked', async () => {
    const d = layout();
    await mountOverlay({
      lower: [d.top, d.bottom],
      upper: d.upper,
      work: d.work,
      target: d.target,
      readonly: true,
    });
    try {
      expect(() => writeFileSync(join(d.target, 'x'), 'x')).toThrow(
        expect.objectContaining({ code: 'EROFS' }),
      );
    } finally {
      await unmount(d.target);
    }
  });

  it('mounts more layers than fit in one page of mount options (new mount API)', async () => {
    const d = layout();
    // 60 layers of ~100-byte paths: ~6 KiB of lowerdir, past mount(2)'s 4 KiB page.
    const layers: string[] = [];
    for (let i = 0; i < 60; i++) {
      const dir = join(tmp, `many${n}`, `layer-${String(i).padStart(2, '0')}-${'x'.repeat(80)}`);
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, `only-${i}.txt`), String(i));
      writeFileSync(join(dir, 'shared.txt'), String(i));
      layers.push(dir);
    }
    expect(layers.join(':').length).toBeGreaterThan(4096);
    await mountOverlay({ lower: layers, upper: d.upper, work: d.work, target: d.target });
    try {
      expect(readFileSync(join(d.target, 'shared.txt'), 'utf8')).toBe('0');
      expect(readFileSync(join(d.target, 'only-59.txt'), 'utf8')).toBe('59');
      expect(readdirSync(d.target)).toHaveLength(61);
    } finally {
      await unmount(d.target);
    }
  });

  it('refuses relative paths and paths with ":" or ",", naming the field, and mounts nothing', async () => {
    const d = layout();
    const base = { upper: d.upper, work: d.work, target: d.target };
    await expect(mountOverlay({ ...base, lower: [d.top, 'relative/dir'] })).rejects.toMatchObject({
      code: 'EINVAL',
      message: expect.stringContaining('lower[1] `relative/dir` is not an absolute path'),
    });
    await expect(mountOverlay({ ...base, lower: [`${d.top}:/etc`] })).rejects.toMatchObject({
      code: 'EINVAL',
      message: expect.stringContaining(`lower[0] \`${d.top}:/etc\` contains ':'`),
    });
    await expect(
      mountOverlay({ ...base, lower: [d.top], upper: `${d.upper},lowerdir=/` }),
    ).rejects.toMatchObject({ message: expect.stringContaining('upper `') });
    await expect(mountOverlay({ ...base, lower: [] })).rejects.toMatchObject({ code: 'EINVAL' });
    expect(mountsUnder(tmp)).toEqual([]);
  });

  it('reports the syscall and target when the kernel refuses', async () => {
    const d = layout();
    const missing = join(tmp, 'no-such-layer');
    await expect(
      mountOverlay({ lower: [missing], upper: d.upper, work: d.work, target: d.target }),
    ).rejects.toMatchObject({
      code: 'ENOENT',
      message: expect.stringContaining(`mount overlay on \`${d.target}\``),
    });
    expect(mountsUnder(tmp)).toEqual([]);
  });
  it('names the layer the kernel refuses in a long layer list', async () => {
    const d = layout();
    const layers = Array.from({ length: 50 }, (_, i) => join(tmp, `gone-${i}-${'y'.repeat(90)}`));
    await expect(
      mountOverlay({ lower: layers, upper: d.upper, work: d.work, target: d.target }),
    ).rejects.toMatchObject({
      code: 'ENOENT',
      message: expect.stringContaining(`fsconfig(lowerdir+, \`${layers[0]}\`)`),
    });
    expect(mountsUnder(tmp)).toEqual([]);
  });
});

describe('unmount', () => {
  it('fails with EINVAL on a directory that is not a mount point', async () => {
    await expect(unmount(tmp)).rejects.toMatchObject({
      code: 'EINVAL',
      message: expect.stringContaining(`umount2 \`${tmp}\``),
    });
  });

  it('refuses a relative target', async () => {
    await expect(unmount('relative/dir')).rejects.toMatchObject({
      name: 'TypeError',
      message: expect.stringContaining('`relative/dir` is not absolute'),
    });
  });

  it('detaches a busy mount', async () => {
    const base = join(tmp, 'busy');
    const dirs = ['lower', 'upper', 'work', 'merged'].map((x) => join(base, x));
    for (const dir of dirs) mkdirSync(dir, { recursive: true });
    const [lower, upper, work, target] = dirs as [string, string, string, string];
    await mountOverlay({ lower: [lower], upper, work, target });
    const fd = openSync(join(target, 'held.txt'), 'w');
    try {
      await expect(unmount(target)).rejects.toMatchObject({ code: 'EBUSY' });
      await unmount(target, { detach: true });
      expect(mountsUnder(tmp)).toEqual([]);
    } finally {
      closeSync(fd);
    }
  });
});

describe('cgroupStats', () => {
  // Hybrid host: one directory per v1 hierarchy the statistics read.
  const HIERARCHIES = ['memory', 'cpu', 'cpuacct', 'pids'];
  const name = `${PREFIX}-cg`;
  const dirs = HIERARCHIES.map((h) => `/sys/fs/cgroup/${h}/${name}`);
  let child: ChildProcess | undefined;

  afterAll(async () => {
    if (child) {
      child.kill('SIGKILL');
      await exited(child);
    }
    for (const dir of dirs) if (existsSync(dir)) rmdirSync(dir);
  });

  it('reads usage and limits of a cgroup with a process in it', async () => {
    for (const dir of dirs) mkdirSync(dir);
    writeFileSync(`/sys/fs/cgroup/memory/${name}/memory.limit_in_bytes`, String(256 << 20));
    writeFileSync(`/sys/fs/cgroup/pids/${name}/pids.max`, '50');

    // The shell waits to be moved in, then allocates 2 MB (charged to the new cgroup: v1 does
    // not move earlier charges along with a task) and says so.
    child = spawn(
      'sh',
      ['-c', 'read go; x=$(head -c 2000000 /dev/zero | tr "\\0" a); echo ready; exec sleep 1000'],
      { stdio: ['pipe', 'pipe', 'ignore'] },
    );
    const pid = child.pid ?? 0;
    started.push(pid);
    for (const dir of dirs) writeFileSync(join(dir, 'cgroup.procs'), String(pid));
    const ready = new Promise<void>((resolve) => child?.stdout?.once('data', () => resolve()));
    child.stdin?.write('go\n');
    await ready;

    const s = await cgroupStats(`/${name}`);
    expect(typeof s.cpuUsageNs).toBe('bigint');
    expect(s.cpuUsageNs).toBeGreaterThan(0n);
    expect(s.memoryUsage).toBeGreaterThan(0);
    expect(s.memoryWorkingSet).toBeGreaterThanOrEqual(0);
    expect(s.memoryWorkingSet).toBeLessThanOrEqual(s.memoryUsage);
    expect(s.memoryLimit).toBe(256 << 20);
    expect(s.pidsCurrent).toBeGreaterThanOrEqual(1);
    expect(s.pidsLimit).toBe(50);
    expect(s.oomKills).toBe(0);
  });

  it('reads what cAdvisor reports: cpu split and throttling, rss and cache, processes, threads', async () => {
    // A CFS quota of 10 ms per 100 ms and a busy loop: throttled in every period it runs.
    writeFileSync(`/sys/fs/cgroup/cpu/${name}/cpu.cfs_period_us`, '100000');
    writeFileSync(`/sys/fs/cgroup/cpu/${name}/cpu.cfs_quota_us`, '10000');
    const busy = spawn('sh', ['-c', 'read go; while :; do :; done'], {
      stdio: ['pipe', 'ignore', 'ignore'],
    });
    const pid = busy.pid ?? 0;
    started.push(pid);
    try {
      for (const dir of dirs) writeFileSync(join(dir, 'cgroup.procs'), String(pid));
      busy.stdin?.write('go\n');
      let s = await cgroupStats(`/${name}`);
      for (let i = 0; i < 100 && s.cpuThrottledPeriods < 3; i++) {
        await new Promise((r) => setTimeout(r, 50));
        s = await cgroupStats(`/${name}`);
      }
      expect(s.cpuQuotaUs).toBe(10000);
      expect(s.cpuPeriodUs).toBe(100000);
      expect(s.cpuPeriods).toBeGreaterThanOrEqual(s.cpuThrottledPeriods);
      expect(s.cpuThrottledPeriods).toBeGreaterThanOrEqual(3);
      expect(s.cpuThrottledNs).toBeGreaterThan(0n);
      expect(s.cpuUserNs + s.cpuSystemNs).toBeGreaterThan(0n);
      // User and system are measured apart from the total (tick-based on some kernels): close.
      expect(Number(s.cpuUserNs + s.cpuSystemNs)).toBeLessThanOrEqual(
        Number(s.cpuUsageNs) * 1.5 + 1e8,
      );
      // The sleeping shell from the first case and the busy loop: two processes, two threads.
      expect(s.processes).toBe(2);
      expect(s.threads).toBe(2);
      expect(s.memoryRss).toBeGreaterThan(0);
      expect(s.memoryCache).toBeGreaterThanOrEqual(0);
      expect(s.memoryRss + s.memoryCache).toBeLessThanOrEqual(s.memoryUsage);
      expect(s.memoryFailcnt).toBe(0);
    } finally {
      busy.kill('SIGKILL');
      await exited(busy);
      writeFileSync(`/sys/fs/cgroup/cpu/${name}/cpu.cfs_quota_us`, '-1');
    }
    expect((await cgroupStats(`/${name}`)).cpuQuotaUs).toBeNull();
  });

  it('reads many containers at once, with their network counters, and names the ones it cannot read', async () => {
    const pid = child?.pid ?? 0;
    const [ok, gone] = await containerStats([
      { cgroupsPath: `/${name}`, pid },
      { cgroupsPath: `/${PREFIX}-missing` },
    ]);
    if (!ok || !('cgroup' in ok)) throw new Error(`no statistics: ${JSON.stringify(ok)}`);
    expect(ok.cgroup.processes).toBe(1);
    // The child shares our network namespace: its interfaces are the host's, lo left out.
    const names = (ok.interfaces ?? []).map((i) => i.name);
    expect(names).not.toContain('lo');
    const ours = readFileSync('/proc/net/dev', 'utf8')
      .split('\n')
      .slice(2)
      .map((l) => l.split(':')[0]?.trim() ?? '')
      .filter((n) => n !== '' && n !== 'lo');
    expect(names.sort()).toEqual(ours.sort());
    expect(gone).toMatchObject({
      code: 'ENOENT',
      error: expect.stringContaining(`/${PREFIX}-missing`),
    });
  });

  it('reads the cgroup v2 files (stand-in tree: this host has v1 controllers)', () => {
    const tree = mkdtempSync(join(tmpdir(), `${PREFIX}-v2-`));
    try {
      const dir = join(tree, 'conductor', 'c1');
      mkdirSync(dir, { recursive: true });
      const files: Record<string, string> = {
        'cpu.stat':
          'usage_usec 5000000\nuser_usec 3000000\nsystem_usec 2000000\nnr_periods 40\n' +
          'nr_throttled 12\nthrottled_usec 700000\n',
        'cpu.max': '50000 100000\n',
        'memory.current': '10485760\n',
        'memory.stat': 'anon 6291456\nfile 3145728\ninactive_file 1048576\nactive_file 2097152\n',
        'memory.events': 'low 0\nhigh 0\nmax 7\noom 2\noom_kill 1\n',
        'memory.max': '67108864\n',
        'pids.current': '5\n',
        'pids.max': 'max\n',
        'cgroup.procs': '100\n101\n',
        'cgroup.threads': '100\n101\n102\n103\n104\n',
      };
      for (const [f, text] of Object.entries(files)) writeFileSync(join(dir, f), text);
      // The addon reads the layout override from its process's environment: a child of its own.
      const read = (): unknown => {
        const r = spawnSync(
          process.execPath,
          [
            '-e',
            `require(${JSON.stringify(addonPath)}).cgroupStats('/conductor/c1').then(` +
              `(s) => console.log(JSON.stringify(s, (k, v) => typeof v === 'bigint' ? String(v) : v)),` +
              `(e) => { console.error(e.message); process.exit(1); })`,
          ],
          {
            env: { ...process.env, CONDUCTOR_CGROUP_ROOT: tree, CONDUCTOR_CGROUP_MODE: 'v2' },
            encoding: 'utf8',
          },
        );
        if (r.status !== 0) throw new Error(r.stderr);
        return JSON.parse(r.stdout) as unknown;
      };
      expect(read()).toEqual({
        cpuUsageNs: '5000000000',
        cpuUserNs: '3000000000',
        cpuSystemNs: '2000000000',
        cpuPeriods: 40,
        cpuThrottledPeriods: 12,
        cpuThrottledNs: '700000000',
        cpuQuotaUs: 50000,
        cpuPeriodUs: 100000,
        memoryUsage: 10485760,
        memoryWorkingSet: 10485760 - 1048576,
        memoryRss: 6291456,
        memoryCache: 3145728,
        memoryFailcnt: 7,
        memoryLimit: 67108864,
        pidsCurrent: 5,
        pidsLimit: null,
        processes: 2,
        threads: 5,
        oomKills: 1,
      });
      writeFileSync(join(dir, 'cpu.max'), 'max 100000\n');
      writeFileSync(join(dir, 'memory.max'), 'max\n');
      expect(read()).toMatchObject({ cpuQuotaUs: null, cpuPeriodUs: 100000, memoryLimit: null });
    } finally {
      rmSync(tree, { recursive: true, force: true });
    }
  });

  it('reports no limit as null', async () => {
    writeFileSync(`/sys/fs/cgroup/pids/${name}/pids.max`, 'max');
    writeFileSync(`/sys/fs/cgroup/memory/${name}/memory.limit_in_bytes`, '-1');
    const s = await cgroupStats(`/${name}`);
    expect(s.pidsLimit).toBeNull();
    expect(s.memoryLimit).toBeNull();
  });

  it('rejects with ENOENT for a cgroup that does not exist', async () => {
    await expect(cgroupStats(`/${PREFIX}-missing`)).rejects.toMatchObject({
      code: 'ENOENT',
      message: expect.stringContaining(`cgroupStats(/${PREFIX}-missing)`),
    });
  });

  it('rejects a path that is not absolute', async () => {
    await expect(cgroupStats('relative/path')).rejects.toThrow(/cgroupStats\(relative\/path\)/);
  });
});

describe('netnsCreate / netnsRemove', () => {
  const name = `${PREFIX}-ns`;
  const path = `/run/netns/${name}`;
  afterAll(() => {
    // Whatever a failed case left: unbound and gone.
    spawnSync('umount', ['-l', path]);
    rmSync(path, { force: true });
  });

  it('makes a persistent network namespace that ip netns sees, with only lo (down)', async () => {
    const ours = nsInodes(process.pid).net;
    await netnsCreate(path);
    const ip = (...args: string[]): string =>
      spawnSync('ip', args, { encoding: 'utf8' }).stdout.trim();
    expect(ip('netns', 'list')).toContain(name);
    expect(ip('netns', 'exec', name, 'cat', '/proc/net/dev')).toMatch(/^\s*lo:/m);
    expect(ip('netns', 'exec', name, 'ip', '-o', 'link').split('\n')).toHaveLength(1);
    // A namespace of its own, not the host's (nor the thread's that made it: that one is gone).
    const inode = statSync(path).ino;
    expect(inode).not.toBe(statSync('/proc/self/ns/net').ino);
    expect(listMounts()).toContain(path);
    // This process and its threads are still in the host's namespace.
    expect(nsInodes(process.pid).net).toBe(ours);
    await expect(netnsCreate(path)).rejects.toMatchObject({ code: 'EEXIST' });
    await netnsRemove(path);
    expect(existsSync(path)).toBe(false);
    expect(listMounts()).not.toContain(path);
    await netnsRemove(path); // gone already is fine
  });

  it('refuses a path that is not absolute or climbs', async () => {
    for (const bad of ['relative/ns', '/run/netns/../x', '/run/netns/', '/run//netns/x', '']) {
      await expect(netnsCreate(bad)).rejects.toMatchObject({ code: 'EINVAL' });
    }
    expect(existsSync('/run/x')).toBe(false);
  });
});
