/**
 * conductor-shim against a real OCI runtime (runtime-core/README.md, "conductor-shim").
 *
 * The runtime is CONDUCTOR_TEST_RUNTIME if set (runc works: same command line), else
 * build/Release/conductor-runtime. Needs root and the real kernel.
 */
import { spawn, spawnSync } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import type { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';

import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';

import type { ShimStatus } from '../../runtime-core/src/containers.js';
import { standardMounts } from '../../runtime-core/src/oci-config.js';
import { RUNTIME } from '../fixtures/runtime.js';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const SHIM = join(REPO, 'build/Release/conductor-shim');

// ---- small local helpers (a shared fixture module is on its way; this file stands alone)

function buildRootfs(dir: string): void {
  mkdirSync(join(dir, 'bin'), { recursive: true });
  for (const d of ['proc', 'sys', 'dev', 'tmp', 'ctl']) mkdirSync(join(dir, d));
  chmodSync(join(dir, 'tmp'), 0o1777);
  copyFileSync('/bin/busybox', join(dir, 'bin/busybox'));
  chmodSync(join(dir, 'bin/busybox'), 0o755);
  const applets = spawnSync('/bin/busybox', ['--list'], { encoding: 'utf8' }).stdout.split('\n');
  for (const applet of applets) {
    if (applet !== '' && applet !== 'busybox') symlinkSync('busybox', join(dir, 'bin', applet));
  }
}

interface BundleOptions {
  args: string[];
  /** Host directory mounted at /ctl, to release a container from the test. */
  ctlDir?: string;
  memoryLimit?: number;
}

function writeBundle(bundle: string, rootfs: string, cgroup: string, o: BundleOptions): void {
  const caps = ['CAP_AUDIT_WRITE', 'CAP_KILL', 'CAP_NET_BIND_SERVICE'];
  const mounts: object[] = standardMounts();
  if (o.ctlDir) {
    mounts.push({ destination: '/ctl', type: 'bind', source: o.ctlDir, options: ['rbind', 'rw'] });
  }
  const config = {
    ociVersion: '1.0.2',
    process: {
      terminal: false,
      user: { uid: 0, gid: 0 },
      args: o.args,
      env: ['PATH=/bin'],
      cwd: '/',
      capabilities: { bounding: caps, effective: caps, permitted: caps },
      rlimits: [{ type: 'RLIMIT_NOFILE', hard: 1024, soft: 1024 }],
      noNewPrivileges: true,
    },
    root: { path: rootfs, readonly: true },
    hostname: 'shimtest',
    mounts,
    linux: {
      cgroupsPath: cgroup,
      resources: o.memoryLimit ? { memory: { limit: o.memoryLimit } } : {},
      namespaces: ['pid', 'network', 'ipc', 'uts', 'mount'].map((type) => ({ type })),
    },
  };
  mkdirSync(bundle, { recursive: true });
  writeFileSync(join(bundle, 'config.json'), JSON.stringify(config));
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls until fn returns a value (not undefined); fails with `what` after the deadline. */
async function waitFor<T>(what: string, fn: () => T | undefined, ms = 20000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

function readJson<T>(file: string): T | undefined {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as T;
  } catch {
    return undefined; // not written yet (the shim renames complete files into place)
  }
}

interface ProcStat {
  state: string;
  ppid: number;
  pgrp: number;
  session: number;
}

function procStat(pid: number | 'self'): ProcStat | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name may hold spaces and parentheses: the fields start after the last ')'.
  const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return { state: f[0] ?? '', ppid: Number(f[1]), pgrp: Number(f[2]), session: Number(f[3]) };
}

function cmdline(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  } catch {
    return [];
  }
}

/** Alive and not a zombie (an exited shim may linger unreaped under a non-reaping ancestor). */
function running(pid: number): boolean {
  const s = procStat(pid);
  return s !== undefined && s.state !== 'Z' && s.state !== 'X';
}

function inCgroup(pid: number, cgroup: string): boolean {
  try {
    return readFileSync(`/proc/${pid}/cgroup`, 'utf8')
      .split('\n')
      .some((l) => l.endsWith(`:${cgroup}`));
  } catch {
    return false;
  }
}

/** Processes whose command line carries this container id (the shim passes --id ID). */
function processesFor(id: string): number[] {
  return readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .map(Number)
    .filter((pid) => pid !== process.pid && running(pid) && cmdline(pid).includes(id));
}

interface CriRecord {
  time: string;
  stream: 'stdout' | 'stderr';
  tag: 'F' | 'P';
  text: string;
}

const CRI_LINE = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z) (stdout|stderr) ([FP]) (.*)$/s;
const RFC3339_NANO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$/;

function readCriLog(file: string): CriRecord[] {
  const text = readFileSync(file, 'utf8');
  expect(text.endsWith('\n') || text === '').toBe(true);
  return text
    .split('\n')
    .slice(0, -1)
    .map((line) => {
      const m = CRI_LINE.exec(line);
      if (!m) throw new Error(`not a CRI log line: ${JSON.stringify(line.slice(0, 200))}`);
      return { time: m[1], stream: m[2], tag: m[3], text: m[4] } as CriRecord;
    });
}

interface ShimReport {
  ok: boolean;
  pid?: number;
  shimPid?: number;
  error?: string;
}

interface ShimRun {
  code: number | null;
  stdout: string;
  stderr: string;
  report: ShimReport;
}

// ---- the suite

let tmp: string;
let rootfs: string;
let runtimeRoot: string;
let seq = 0;

interface Started {
  id: string;
  dir: string;
  cgroup: string;
  containerPid?: number;
  shimPid?: number;
}
let started: Started[] = [];

beforeAll(() => {
  tmp = mkdtempSync('/tmp/conductor-shimtest-');
  rootfs = join(tmp, 'rootfs');
  runtimeRoot = join(tmp, 'runtime-root');
  mkdirSync(runtimeRoot);
  buildRootfs(rootfs);
});

afterEach(async () => {
  // Kill only what this file started: the container (the shim then cleans up and exits), and the
  // shim itself if it does not. Pids are checked against the id before any signal.
  for (const s of started) {
    if (s.containerPid && inCgroup(s.containerPid, s.cgroup))
      process.kill(s.containerPid, 'SIGKILL');
    if (s.shimPid) {
      const pid = s.shimPid;
      const gone = await waitFor('shim exit', () => (running(pid) ? undefined : true), 10000).catch(
        () => false,
      );
      if (!gone && cmdline(pid).includes(s.id)) process.kill(pid, 'SIGKILL');
    }
    spawnSync(RUNTIME, ['--root', runtimeRoot, 'delete', '--force', s.id]);
  }
  started = [];
});

afterAll(() => {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

function newContainer(o: BundleOptions): Started & { bundle: string } {
  const id = `shimtest-${process.pid}-${++seq}`;
  const dir = join(tmp, id);
  const bundle = join(dir, 'bundle');
  const cgroup = `/conductor-shimtest-${process.pid}-${seq}`;
  mkdirSync(dir);
  writeBundle(bundle, rootfs, cgroup, o);
  const s = { id, dir, bundle, cgroup };
  started.push(s);
  return s;
}

/**
 * Runs the shim; with `gate`, its stdin is a pipe handed to `gate` (for --start-gate), else
 * /dev/null.
 */
function runShim(
  c: { id: string; dir: string; bundle: string },
  extra: string[] = [],
  runtime = RUNTIME,
  gate?: (stdin: Writable) => void,
): Promise<ShimRun> {
  const args = ['--id', c.id, '--bundle', c.bundle, '--dir', c.dir, '--runtime', runtime];
  args.push('--runtime-root', runtimeRoot, ...extra);
  return new Promise((res, rej) => {
    const child = spawn(SHIM, args, { stdio: [gate ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
    if (gate && child.stdin) gate(child.stdin);
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', rej);
    // 'close' waits for every holder of the stdio pipes: it only comes if the detached shim
    // let go of them.
    child.on('close', (code) => {
      try {
        res({ code, stdout, stderr, report: JSON.parse(stdout) as ShimReport });
      } catch (e) {
        rej(new Error(`shim printed ${JSON.stringify(stdout)} (stderr ${stderr}): ${String(e)}`));
      }
    });
  });
}

async function startOk(c: Started & { bundle: string }, extra: string[] = []): Promise<number> {
  const r = await runShim(c, extra);
  expect(r.report).toEqual({ ok: true, pid: expect.any(Number), shimPid: expect.any(Number) });
  expect(r.code).toBe(0);
  expect(r.stdout.endsWith('}\n')).toBe(true);
  expect(r.stdout.split('\n')).toHaveLength(2); // exactly one line
  c.containerPid = r.report.pid;
  c.shimPid = r.report.shimPid;
  return r.report.pid as number;
}

async function waitStopped(dir: string): Promise<ShimStatus> {
  return waitFor('status stopped', () => {
    const s = readJson<ShimStatus>(join(dir, 'status.json'));
    return s?.status === 'stopped' ? s : undefined;
  });
}

/** The shim has exited and the runtime no longer knows the container. */
async function expectCleanedUp(c: Started): Promise<void> {
  const shimPid = c.shimPid as number;
  await waitFor('shim exit', () => (running(shimPid) ? undefined : true));
  const state = spawnSync(RUNTIME, ['--root', runtimeRoot, 'state', c.id], { encoding: 'utf8' });
  expect(state.status).not.toBe(0);
  expect(existsSync(join(runtimeRoot, c.id))).toBe(false);
  expect(existsSync(`/sys/fs/cgroup/memory${c.cgroup}`)).toBe(false);
  expect(processesFor(c.id)).toEqual([]);
}

describe(`conductor-shim (runtime: ${RUNTIME})`, () => {
  it('detaches, logs stdout and stderr in CRI format and records the exit code', async () => {
    const ctl = mkdtempSync(join(tmp, 'ctl-'));
    const c = newContainer({
      ctlDir: ctl,
      args: [
        'sh',
        '-c',
        'echo out; echo err >&2; while [ ! -e /ctl/go ]; do sleep 0.05; done; exit 3',
      ],
    });
    const pid = await startOk(c);
    const shimPid = c.shimPid as number;

    // Detached: not our child, not in our session or process group, stdio on /dev/null.
    const me = procStat('self') as ProcStat;
    const shim = procStat(shimPid) as ProcStat;
    expect(shim.ppid).not.toBe(process.pid);
    expect(shim.session).not.toBe(me.session);
    expect(shim.pgrp).not.toBe(me.pgrp);
    for (const fd of [0, 1, 2]) {
      expect(
        spawnSync('readlink', [`/proc/${shimPid}/fd/${fd}`], { encoding: 'utf8' }).stdout.trim(),
      ).toBe('/dev/null');
    }
    expect(readFileSync(join(c.dir, 'shim.pid'), 'utf8').trim()).toBe(String(shimPid));
    expect(readFileSync(join(c.dir, 'container.pid'), 'utf8').trim()).toBe(String(pid));

    const status = readJson<ShimStatus>(join(c.dir, 'status.json'));
    expect(status).toEqual({
      status: 'running',
      pid,
      startedAt: expect.stringMatching(RFC3339_NANO),
    });

    // A stray signal to the shim must not take it (and the container's log) down.
    for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.kill(shimPid, sig);

    await waitFor('output', () => {
      const recs = readCriLog(join(c.dir, 'container.log'));
      return recs.length >= 2 ? recs : undefined;
    });
    writeFileSync(join(ctl, 'go'), '');

    const stopped = await waitStopped(c.dir);
    expect(stopped).toEqual({
      status: 'stopped',
      pid,
      startedAt: status?.startedAt,
      finishedAt: expect.stringMatching(RFC3339_NANO),
      exitCode: 3,
      signal: null,
      oomKilled: false,
    });
    expect(Date.parse(stopped.finishedAt as string)).toBeGreaterThanOrEqual(
      Date.parse(stopped.startedAt),
    );

    const records = readCriLog(join(c.dir, 'container.log'));
    expect(records.map(({ stream, tag, text }) => ({ stream, tag, text }))).toEqual(
      expect.arrayContaining([
        { stream: 'stdout', tag: 'F', text: 'out' },
        { stream: 'stderr', tag: 'F', text: 'err' },
      ]),
    );
    expect(records).toHaveLength(2);
    await expectCleanedUp(c);
  });

  it('reports a signal as 128+N with its name', async () => {
    const c = newContainer({ args: ['sleep', '1000'] });
    const pid = await startOk(c);
    process.kill(pid, 'SIGKILL');
    const s = await waitStopped(c.dir);
    expect(s).toMatchObject({
      status: 'stopped',
      pid,
      exitCode: 137,
      signal: 'SIGKILL',
      oomKilled: false,
    });
    await expectCleanedUp(c);
  });

  it('reports an OOM kill from the memory cgroup counter', async () => {
    // busybox tail buffers a "line" of /dev/zero that never ends: it grows until the limit.
    const c = newContainer({ args: ['tail', '/dev/zero'], memoryLimit: 16 << 20 });
    await startOk(c);
    const s = await waitStopped(c.dir);
    expect(s).toMatchObject({ exitCode: 137, signal: 'SIGKILL', oomKilled: true });
    await expectCleanedUp(c);
  });

  it('writes lines longer than its buffer and an unterminated last line as partial records', async () => {
    const script = 'printf "%040000d\\n" 0; printf tail';
    const c = newContainer({ args: ['sh', '-c', script] });
    await startOk(c);
    await waitStopped(c.dir);
    await expectCleanedUp(c);
    const records = readCriLog(join(c.dir, 'container.log'));
    const last = records.pop();
    expect(last).toMatchObject({ stream: 'stdout', tag: 'P', text: 'tail' });
    // The long line: one or more P records closed by an F; together the original line.
    expect(records.length).toBeGreaterThan(1);
    expect(records.slice(0, -1).every((r) => r.tag === 'P')).toBe(true);
    expect(records.at(-1)?.tag).toBe('F');
    expect(records.map((r) => r.text).join('')).toBe('0'.repeat(40000));
  });

  it('gives the container /dev/null as stdin and keeps all output written just before exit', async () => {
    // `cat` would block on any other stdin; the burst right before exit must all reach the log.
    const c = newContainer({ args: ['sh', '-c', 'cat; yes abcdefgh | head -n 50000'] });
    await startOk(c);
    expect((await waitStopped(c.dir)).exitCode).toBe(0);
    await expectCleanedUp(c);
    const records = readCriLog(join(c.dir, 'container.log'));
    expect(records).toHaveLength(50000);
    expect(
      records.every((r) => r.stream === 'stdout' && r.tag === 'F' && r.text === 'abcdefgh'),
    ).toBe(true);
  });

  it('rotates the log at --log-max-size and keeps --log-max-files rotated files', async () => {
    const c = newContainer({ args: ['sh', '-c', 'yes line | head -n 3000'] });
    await startOk(c, ['--log-max-size', '4096', '--log-max-files', '2']);
    await waitStopped(c.dir);
    await expectCleanedUp(c);
    const log = join(c.dir, 'container.log');
    const files = [`${log}.2`, `${log}.1`, log]; // oldest first
    for (const f of files) expect(statSync(f).size).toBeLessThanOrEqual(4096);
    expect(existsSync(`${log}.3`)).toBe(false);
    const records = files.flatMap((f) => readCriLog(f));
    expect(records.every((r) => r.stream === 'stdout' && r.tag === 'F' && r.text === 'line')).toBe(
      true,
    );
    // The oldest output was dropped; what is left is in order across the files.
    expect(records.length).toBeLessThan(3000);
    const times = records.map((r) => r.time);
    expect([...times].sort()).toEqual(times);
  });

  it('reports a failed create with the runtime error and leaves nothing behind', async () => {
    const c = newContainer({ args: ['true'] });
    rmSync(join(c.bundle, 'config.json'));
    const r = await runShim(c);
    expect(r.code).toBe(1);
    expect(r.report).toEqual({ ok: false, error: expect.stringMatching(/config\.json/) });
    expect(existsSync(join(c.dir, 'shim.pid'))).toBe(false);
    expect(existsSync(join(c.dir, 'status.json'))).toBe(false);
    const state = spawnSync(RUNTIME, ['--root', runtimeRoot, 'state', c.id]);
    expect(state.status).not.toBe(0);
    expect(existsSync(join(runtimeRoot, c.id))).toBe(false);
    await waitFor('no processes', () => (processesFor(c.id).length === 0 ? true : undefined));
  });

  it('reports a container process that cannot be executed', async () => {
    const c = newContainer({ args: ['/no/such/program'] });
    const r = await runShim(c);
    expect(r.code).toBe(1);
    expect(r.report).toEqual({ ok: false, error: expect.stringMatching(/\/no\/such\/program/) });
    expect(existsSync(join(runtimeRoot, c.id))).toBe(false);
    expect(existsSync(`/sys/fs/cgroup/memory${c.cgroup}`)).toBe(false);
    await waitFor('no processes', () => (processesFor(c.id).length === 0 ? true : undefined));
  });

  it('reports a failed start and deletes the created container', async () => {
    // The runtime, except that `start` fails the way a runtime does: a message and status 1.
    const wrapper = join(tmp, 'start-fails.sh');
    writeFileSync(
      wrapper,
      `#!/bin/sh\nfor a; do [ "$a" = start ] && { echo "start refused by test" >&2; exit 1; }; done\n` +
        `exec '${RUNTIME}' "$@"\n`,
      { mode: 0o755 },
    );
    const c = newContainer({ args: ['sleep', '1000'] });
    const r = await runShim(c, [], wrapper);
    expect(r.code).toBe(1);
    expect(r.report).toEqual({ ok: false, error: 'start: start refused by test' });
    expect(existsSync(join(c.dir, 'status.json'))).toBe(false);
    // `create` ran: its init waited for `start`; `delete --force` must have removed it.
    const initPid = Number(readFileSync(join(c.dir, 'container.pid'), 'utf8'));
    await waitFor('container init gone', () => (running(initPid) ? undefined : true));
    expect(spawnSync(RUNTIME, ['--root', runtimeRoot, 'state', c.id]).status).not.toBe(0);
    expect(existsSync(`/sys/fs/cgroup/memory${c.cgroup}`)).toBe(false);
  });

  /** The runtime's view of a container: its status, or undefined when it does not know it. */
  function runtimeStatus(id: string): string | undefined {
    const r = spawnSync(RUNTIME, ['--root', runtimeRoot, 'state', id], { encoding: 'utf8' });
    return r.status === 0 ? (JSON.parse(r.stdout) as { status: string }).status : undefined;
  }

  it('--start-gate: creates the container at once and starts it when the caller writes "s"', async () => {
    const ctl = mkdtempSync(join(tmp, 'ctl-'));
    const c = newContainer({ args: ['sh', '-c', 'touch /ctl/ran; exec sleep 1000'], ctlDir: ctl });
    let stdin: Writable | undefined;
    const report = runShim(c, ['--start-gate'], RUNTIME, (s) => (stdin = s));
    // Created: its init waits in the container for `start`, and nothing of the program has run.
    await waitFor('created', () => (runtimeStatus(c.id) === 'created' ? true : undefined));
    await sleep(200);
    expect(runtimeStatus(c.id)).toBe('created');
    expect(existsSync(join(ctl, 'ran'))).toBe(false);
    stdin?.end('s');
    const r = await report;
    expect(r.report).toEqual({ ok: true, pid: expect.any(Number), shimPid: expect.any(Number) });
    c.containerPid = r.report.pid;
    c.shimPid = r.report.shimPid;
    await waitFor('the program ran', () => (existsSync(join(ctl, 'ran')) ? true : undefined));
    expect(runtimeStatus(c.id)).toBe('running');
  });

  it('--start-gate: end of input instead of "s" cancels, and the created container is deleted', async () => {
    const ctl = mkdtempSync(join(tmp, 'ctl-'));
    const c = newContainer({ args: ['sh', '-c', 'touch /ctl/ran; exec sleep 1000'], ctlDir: ctl });
    let stdin: Writable | undefined;
    const report = runShim(c, ['--start-gate'], RUNTIME, (s) => (stdin = s));
    await waitFor('created', () => (runtimeStatus(c.id) === 'created' ? true : undefined));
    const initPid = Number(readFileSync(join(c.dir, 'container.pid'), 'utf8'));
    stdin?.end(); // the caller went away, or its network failed
    const r = await report;
    expect(r.code).toBe(1);
    expect(r.report).toEqual({ ok: false, error: 'start cancelled by the caller' });
    await waitFor('container init gone', () => (running(initPid) ? undefined : true));
    expect(runtimeStatus(c.id)).toBeUndefined();
    expect(existsSync(join(runtimeRoot, c.id))).toBe(false);
    expect(existsSync(`/sys/fs/cgroup/memory${c.cgroup}`)).toBe(false);
    expect(existsSync(join(ctl, 'ran'))).toBe(false);
    expect(existsSync(join(c.dir, 'status.json'))).toBe(false);
    await waitFor('no processes', () => (processesFor(c.id).length === 0 ? true : undefined));
  });

  it('rejects bad arguments without starting anything', async () => {
    const c = newContainer({ args: ['true'] });
    const r = await runShim({ ...c, id: '../escape' });
    expect(r.code).toBe(1);
    expect(r.report).toEqual({ ok: false, error: expect.stringMatching(/invalid container id/) });
  });

  // The exact texts: the facade passes them on as the container's error.
  it('names what is wrong with its flags', async () => {
    const c = newContainer({ args: ['true'] });
    const base = ['--id', c.id, '--bundle', c.bundle, '--dir', c.dir, '--runtime', RUNTIME];
    const cases: [string[], string][] = [
      [[...base, '--runtime-root', runtimeRoot, '--bogus', 'x'], 'unknown flag --bogus'],
      [[...base, '--runtime-root'], 'flag --runtime-root needs a value'],
      [
        [...base, '--runtime-root', runtimeRoot, '--log-max-size', '12k'],
        '--log-max-size: not a size: 12k',
      ],
      [
        [...base, '--runtime-root', runtimeRoot, '--log-max-files=1001'],
        '--log-max-files: not 0..1000: 1001',
      ],
      [
        base,
        'usage: conductor-shim --id ID --bundle DIR --dir CTRDIR --runtime PATH ' +
          '--runtime-root DIR [--log-max-size BYTES] [--log-max-files N] [--start-gate]',
      ],
      [
        ['--id', 'a b', '--bundle', c.bundle, '--dir', c.dir, '--runtime', RUNTIME],
        'usage: conductor-shim --id ID --bundle DIR --dir CTRDIR --runtime PATH ' +
          '--runtime-root DIR [--log-max-size BYTES] [--log-max-files N] [--start-gate]',
      ],
      [
        [...base.slice(0, 6), '--runtime', RUNTIME, '--runtime-root', runtimeRoot, '--id', 'a b'],
        'invalid container id `a b`',
      ],
      [
        [
          '--id',
          c.id,
          '--bundle',
          c.bundle,
          '--dir',
          join(c.dir, 'nope'),
          '--runtime',
          RUNTIME,
          '--runtime-root',
          runtimeRoot,
        ],
        `stat \`${join(c.dir, 'nope')}\`: ENOENT`,
      ],
      [
        [
          '--id',
          c.id,
          '--bundle',
          c.bundle,
          '--dir',
          join(c.bundle, 'config.json'),
          '--runtime',
          RUNTIME,
          '--runtime-root',
          runtimeRoot,
        ],
        `--dir \`${join(c.bundle, 'config.json')}\`: not a directory`,
      ],
    ];
    for (const [args, error] of cases) {
      const r = spawnSync(SHIM, args, { encoding: 'utf8' });
      expect({ args, code: r.status, stdout: r.stdout }).toEqual({
        args,
        code: 1,
        stdout: `${JSON.stringify({ ok: false, error })}\n`,
      });
    }
    expect(existsSync(join(c.dir, 'shim.pid'))).toBe(false);
  });

  it('reports a runtime that cannot be executed', async () => {
    const c = newContainer({ args: ['true'] });
    const r = await runShim(c, [], join(tmp, 'no-such-runtime'));
    expect(r.code).toBe(1);
    expect(r.report).toEqual({
      ok: false,
      error: `execvp \`${join(tmp, 'no-such-runtime')}\`: ENOENT`,
    });
  });
});
