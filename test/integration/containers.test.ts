/**
 * The containers facade (runtime-core/src/containers.ts) against the real shim, addon and an OCI
 * runtime: CONDUCTOR_TEST_RUNTIME if set (runc works), else build/Release/conductor-runtime.
 * Needs root and the real kernel.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { spawn } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { transformFileSync } from '@swc/core';

import {
  ContainerError,
  ContainerRuntime,
  InvalidSpecError,
  type RunSpec,
  type LogEntry,
} from '../../runtime-core/src/containers.js';
import * as native from '../../runtime-core/src/native.js';
import {
  FIXTURE_ROOT,
  assertNoLeaks,
  busyboxRootfs,
  hostSnapshot,
  uniqueId,
  type HostSnapshot,
} from '../fixtures/index.js';
import { RUNTIME } from '../fixtures/runtime.js';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const PREFIX = 'ctrfac';

/** Polls until `fn` returns a value (no timing assertions: jest's timeout is the limit). */
async function eventually<T>(
  fn: () => T | undefined | Promise<T | undefined>,
  what: string,
): Promise<T> {
  for (let i = 0; ; i++) {
    const v = await fn();
    if (v !== undefined) return v;
    if (i > 600) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function collect(it: AsyncIterable<LogEntry>): Promise<LogEntry[]> {
  const out: LogEntry[] = [];
  for await (const e of it) out.push(e);
  return out;
}

function isMounted(path: string): boolean {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .some((l) => l.split(' ')[4] === path);
}

let before: HostSnapshot;
let stateDir: string;
let layer: string;
let rt: ContainerRuntime;
const runtimeRoot = () => join(stateDir, 'runtime');

function spec(args: string[], extra: Partial<RunSpec> = {}): RunSpec {
  return { id: uniqueId(PREFIX), args, ...extra };
}

beforeAll(async () => {
  before = hostSnapshot();
  layer = await busyboxRootfs();
  stateDir = mkdtempSync(join(FIXTURE_ROOT, `${PREFIX}-state-`));
  rt = new ContainerRuntime({ stateDir, runtimePath: RUNTIME });
});

afterAll(async () => {
  for (const c of await rt.list()) await rt.remove(c.id, { force: true });
  assertNoLeaks(before, { idPrefix: PREFIX, runtimeRoots: [runtimeRoot()] });
  rmSync(stateDir, { recursive: true, force: true });
});

describe(`ContainerRuntime with ${RUNTIME}`, () => {
  it('creates a running container whose output reaches the logs', async () => {
    const s = spec(['sh', '-c', 'echo hello; echo oops >&2; exec sleep 1000']);
    const created = await rt.create(s, { layers: [layer] });
    expect(created.pid).toBeGreaterThan(1);
    expect(created.shimPid).toBeGreaterThan(1);
    expect(Date.parse(created.startedAt)).not.toBeNaN();

    const info = await rt.inspect(s.id);
    expect(info).toMatchObject({ id: s.id, status: 'running', pid: created.pid, shimAlive: true });
    expect((await rt.list()).map((c) => c.id)).toContain(s.id);
    expect(isMounted(join(stateDir, 'containers', s.id, 'bundle', 'rootfs'))).toBe(true);

    const lines = await eventually(async () => {
      const l = await collect(rt.logs(s.id));
      return l.length >= 2 ? l : undefined;
    }, 'two log lines');
    expect(lines.map((l) => [l.stream, l.line]).sort()).toEqual([
      ['stderr', 'oops'],
      ['stdout', 'hello'],
    ]);
    expect(Date.parse(lines[0]?.time ?? '')).not.toBeNaN();
    expect((await collect(rt.logs(s.id, { tail: 1 }))).length).toBe(1);

    // exec joins every namespace of the container and honours env, cwd and user.
    const ns = native.nsInodes(created.pid);
    const r = await rt.execOutput(
      s.id,
      [
        'sh',
        '-c',
        'for n in pid uts ipc mnt net cgroup; do readlink /proc/self/ns/$n; done; echo $FOO; pwd; id -u; hostname',
      ],
      { env: { FOO: 'bar' }, cwd: '/tmp', user: { uid: 65534, gid: 65534 } },
    );
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
    expect(r.stdout.trim().split('\n')).toEqual([
      ns.pid,
      ns.uts,
      ns.ipc,
      ns.mnt,
      ns.net,
      ns.cgroup,
      'bar',
      '/tmp',
      '65534',
      s.id,
    ]);
    expect(native.nsInodes(process.pid).pid).not.toBe(ns.pid);
    expect((await rt.execOutput(s.id, ['sh', '-c', 'exit 5'])).exitCode).toBe(5);

    const stats = await rt.stats(s.id);
    expect(Number(stats.pidsCurrent)).toBeGreaterThanOrEqual(1);
    expect(Number(stats.memoryUsage)).toBeGreaterThan(0);

    // sleep as PID 1 has no TERM handler: only SIGKILL after the grace period stops it.
    const stopped = await rt.stop(s.id, { gracePeriodSeconds: 1 });
    expect(stopped).toMatchObject({
      status: 'stopped',
      exitCode: 137,
      signal: 'SIGKILL',
      oomKilled: false,
      shimAlive: false,
    });
    expect(Date.parse(stopped.finishedAt ?? '')).not.toBeNaN();

    await rt.remove(s.id);
    expect(existsSync(join(stateDir, 'containers', s.id))).toBe(false);
    expect(existsSync(join(runtimeRoot(), s.id))).toBe(false);
    expect(isMounted(join(stateDir, 'containers', s.id, 'bundle', 'rootfs'))).toBe(false);
    await expect(rt.inspect(s.id)).rejects.toThrow(/not found/);
  });

  it('applies the secure defaults, resources, mounts and read-only root of the spec', async () => {
    const data = mkdtempSync(join(FIXTURE_ROOT, `${PREFIX}-data-`));
    writeFileSync(join(data, 'hello.txt'), 'from the host\n');
    const s = spec(['sleep', '1000'], {
      hostname: 'facade-test',
      readonlyRootfs: true,
      resources: { cpu: 0.5, memoryBytes: 64 * 1024 * 1024, pids: 32 },
      mounts: [
        { type: 'bind', hostPath: data, containerPath: '/data', readOnly: true },
        { type: 'tmpfs', containerPath: '/scratch' },
      ],
    });
    try {
      await rt.create(s, { layers: [layer] });
      const sh = async (script: string) => rt.execOutput(s.id, ['sh', '-c', script]);
      const status = (
        await sh('grep -E "^(CapBnd|CapEff|CapInh|CapAmb|NoNewPrivs|Seccomp):" /proc/self/status')
      ).stdout;
      // Docker's default set: the same mask `docker run` shows.
      expect(status).toMatch(/CapBnd:\s+00000000a80425fb/);
      expect(status).toMatch(/CapEff:\s+00000000a80425fb/);
      expect(status).toMatch(/CapInh:\s+0000000000000000/);
      expect(status).toMatch(/CapAmb:\s+0000000000000000/);
      expect(status).toMatch(/NoNewPrivs:\s+1/);
      expect(status).toMatch(/Seccomp:\s+2/);
      expect((await sh('hostname')).stdout).toBe('facade-test\n');
      expect((await sh('cat /data/hello.txt')).stdout).toBe('from the host\n');
      expect((await sh('touch /data/x')).exitCode).not.toBe(0);
      expect((await sh('touch /etc/x')).exitCode).not.toBe(0);
      expect((await sh('touch /scratch/x && echo ok')).stdout).toBe('ok\n');
      const keys = await sh('wc -c < /proc/keys');
      expect([keys.stdout, keys.stderr]).toEqual(['0\n', '']); // masked (/dev/null)
      expect((await sh('echo 1 > /proc/sys/vm/drop_caches')).exitCode).not.toBe(0); // read-only
      expect((await sh('ulimit -n; ulimit -Hn')).stdout.split('\n').slice(0, 1)).toEqual(['1024']);

      const stats = await rt.stats(s.id);
      expect(Number(stats.memoryLimit)).toBe(64 * 1024 * 1024);
      expect(Number(stats.pidsLimit)).toBe(32);
      // Under the installation's cgroup parent (cnd-<hash> for this temporary state dir).
      expect(rt.hostNames.cgroupParent).toMatch(/^\/cnd-[0-9a-f]{8}$/);
      // The v1 cpu hierarchy (mounted alone or with cpuacct), else the unified one.
      const v1 = ['/sys/fs/cgroup/cpu,cpuacct', '/sys/fs/cgroup/cpu'].find((d) => existsSync(d));
      const cgroup = `${v1 ?? '/sys/fs/cgroup'}${rt.hostNames.cgroupParent}/${s.id}`;
      if (v1) expect(readFileSync(`${cgroup}/cpu.cfs_quota_us`, 'utf8').trim()).toBe('50000');
      else expect(readFileSync(`${cgroup}/cpu.max`, 'utf8').trim()).toBe('50000 100000');
    } finally {
      await rt.remove(s.id, { force: true });
      rmSync(data, { recursive: true, force: true });
    }
  });

  it('stops a container that handles SIGTERM within the grace period', async () => {
    const s = spec([
      'sh',
      '-c',
      "trap 'echo got TERM; exit 3' TERM; echo ready; while true; do sleep 0.1; done",
    ]);
    await rt.create(s, { layers: [layer] });
    await eventually(
      async () =>
        (await collect(rt.logs(s.id))).some((l) => l.line === 'ready') ? true : undefined,
      'ready',
    );
    const info = await rt.stop(s.id, { gracePeriodSeconds: 60 });
    expect(info).toMatchObject({ status: 'stopped', exitCode: 3, signal: null });
    expect((await collect(rt.logs(s.id))).map((l) => l.line)).toEqual(['ready', 'got TERM']);
    await rt.remove(s.id);
  });

  it('reports exit codes through waitForExit', async () => {
    const s = spec(['sh', '-c', 'exit 7']);
    await rt.create(s, { layers: [layer] });
    const info = await rt.waitForExit(s.id);
    expect(info).toMatchObject({ status: 'stopped', exitCode: 7, signal: null, oomKilled: false });
    // Stopping a stopped container is a no-op that reports the recorded exit.
    expect((await rt.stop(s.id)).exitCode).toBe(7);
    await rt.remove(s.id);
  });

  it('cancels exit waits: an aborted wait rejects and the container runs on; close() ends the rest', async () => {
    const s = spec(['sleep', '300']);
    await rt.create(s, { layers: [layer] });
    const abort = new AbortController();
    const waiting = rt.waitForExit(s.id, abort.signal);
    const other = rt.waitForExit(s.id);
    abort.abort();
    await expect(waiting).rejects.toMatchObject({ name: 'AbortError' });
    // Another caller's wait is not affected by the first one leaving.
    expect(await Promise.race([other.then(() => 'exited'), sleep(300).then(() => 'waiting')])).toBe(
      'waiting',
    );
    expect((await rt.inspect(s.id)).status).toBe('running');
    await expect(rt.waitForExit(s.id, AbortSignal.abort())).rejects.toMatchObject({
      name: 'AbortError',
    });
    // close() cancels what is still pending; the runtime can be used again afterwards.
    rt.close();
    await expect(other).rejects.toMatchObject({ name: 'AbortError' });
    expect((await rt.inspect(s.id)).status).toBe('running');
    expect((await rt.stop(s.id, { gracePeriodSeconds: 0 })).exitCode).toBe(137);
    await rt.remove(s.id);
  });

  it('follows logs until the container exits, across rotation', async () => {
    const small = new ContainerRuntime({
      stateDir,
      runtimePath: RUNTIME,
      logMaxSize: 400,
      logMaxFiles: 50,
    });
    const s = spec([
      'sh',
      '-c',
      'i=0; while [ $i -lt 60 ]; do echo line-$i; i=$((i+1)); done; sleep 0.3; echo last',
    ]);
    await small.create(s, { layers: [layer] });
    const lines = await collect(small.logs(s.id, { follow: true }));
    expect(lines.map((l) => l.line)).toEqual([
      ...Array.from({ length: 60 }, (_, i) => `line-${i}`),
      'last',
    ]);
    expect(
      readdirSync(join(stateDir, 'containers', s.id)).filter((n) => n.startsWith('container.log.'))
        .length,
    ).toBeGreaterThan(1);
    await small.remove(s.id);
  });

  it('reports an OOM kill under a memory limit', async () => {
    const s = spec(['sh', '-c', 'x=0123456789abcdef; while true; do x=$x$x; done'], {
      resources: { memoryBytes: 32 * 1024 * 1024 },
    });
    await rt.create(s, { layers: [layer] });
    const info = await rt.waitForExit(s.id);
    expect(info).toMatchObject({
      status: 'stopped',
      exitCode: 137,
      signal: 'SIGKILL',
      oomKilled: true,
    });
    await rt.remove(s.id);
  });

  it('is adopted by a new ContainerRuntime without being restarted', async () => {
    const s = spec(['sleep', '1000'], { name: 'default/sleeper' });
    const done = spec(['sh', '-c', 'exit 4']);
    const created = await rt.create(s, { layers: [layer] });
    await rt.create(done, { layers: [layer] });
    await rt.waitForExit(done.id);
    const restarted = new ContainerRuntime({ stateDir, runtimePath: RUNTIME });
    const adopted = await restarted.adopt();
    expect(adopted.find((c) => c.id === s.id)).toMatchObject({
      name: 'default/sleeper',
      status: 'running',
      pid: created.pid,
      shimPid: created.shimPid,
      shimAlive: true,
    });
    expect(adopted.find((c) => c.id === done.id)).toMatchObject({
      status: 'stopped',
      exitCode: 4,
      shimAlive: false,
    });
    expect(native.pidStartTime(created.pid)).not.toBeNull();
    await restarted.remove(done.id);
    const exited = restarted.waitForExit(s.id);
    const info = await restarted.stop(s.id, { gracePeriodSeconds: 0 });
    expect(info.exitCode).toBe(137);
    // The adopting runtime reports the exit to whoever waits for it.
    expect((await exited).exitCode).toBe(137);
    await restarted.remove(s.id);
  });

  it('keeps a container running after the process that created it is killed with SIGKILL', async () => {
    const id = uniqueId(PREFIX);
    const dir = mkdtempSync(join(FIXTURE_ROOT, `${PREFIX}-child-`));
    try {
      // A separate Node process runs the facade (transpiled here: Node 20 runs no TypeScript).
      const files = readdirSync(join(REPO, 'runtime-core/src'), {
        recursive: true,
        encoding: 'utf8',
      });
      for (const f of files.filter((n) => n.endsWith('.ts'))) {
        const out = transformFileSync(join(REPO, 'runtime-core/src', f), {
          jsc: { parser: { syntax: 'typescript' }, target: 'es2022' },
          module: { type: 'es6' },
        });
        mkdirSync(dirname(join(dir, 'src', f)), { recursive: true });
        writeFileSync(join(dir, 'src', f.replace(/\.ts$/, '.js')), out.code);
      }
      writeFileSync(join(dir, 'package.json'), '{"type":"module"}');
      symlinkSync(join(REPO, 'build'), join(dir, 'build')); // build/Release, found by walking up
      symlinkSync(join(REPO, 'node_modules'), join(dir, 'node_modules'));
      writeFileSync(
        join(dir, 'child.mjs'),
        `import { ContainerRuntime } from './src/containers.js';
         const rt = new ContainerRuntime(JSON.parse(process.argv[2]));
         const c = await rt.create(JSON.parse(process.argv[3]), { layers: [process.argv[4]] });
         process.stdout.write(JSON.stringify(c) + '\\n');
         setInterval(() => {}, 1000);`,
      );
      const child = spawn(
        process.execPath,
        [
          join(dir, 'child.mjs'),
          JSON.stringify({ stateDir, runtimePath: RUNTIME }),
          JSON.stringify({ id, args: ['sleep', '1000'] }),
          layer,
        ],
        { stdio: ['ignore', 'pipe', 'inherit'] },
      );
      const line = await new Promise<string>((res, rej) => {
        let out = '';
        child.stdout.setEncoding('utf8').on('data', (d: string) => {
          out += d;
          if (out.includes('\n')) res(out.trim());
        });
        child.on('exit', (code) =>
          rej(new Error(`child exited with ${String(code)} before creating: ${out}`)),
        );
      });
      const created = JSON.parse(line) as { pid: number; shimPid: number };
      const gone = new Promise((r) => child.on('exit', r));
      child.kill('SIGKILL');
      await gone;

      const restarted = new ContainerRuntime({ stateDir, runtimePath: RUNTIME });
      const adopted = (await restarted.adopt()).find((c) => c.id === id);
      expect(adopted).toMatchObject({
        status: 'running',
        pid: created.pid,
        shimPid: created.shimPid,
        shimAlive: true,
      });
      expect((await restarted.execOutput(id, ['echo', 'alive'])).stdout).toBe('alive\n');
      await restarted.remove(id, { force: true });
      expect(existsSync(join(stateDir, 'containers', id))).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('stops and removes a container whose shim was killed', async () => {
    const s = spec(['sleep', '1000']);
    const created = await rt.create(s, { layers: [layer] });
    const shimGone = native.waitForExit(created.shimPid);
    process.kill(created.shimPid, 'SIGKILL');
    await shimGone;
    expect(await rt.inspect(s.id)).toMatchObject({ status: 'unknown', shimAlive: false });
    await expect(rt.remove(s.id)).rejects.toThrow(/is running/);
    const containerGone = native.waitForExit(created.pid);
    await rt.stop(s.id, { gracePeriodSeconds: 0 });
    await containerGone;
    await rt.remove(s.id);
    expect(existsSync(join(stateDir, 'containers', s.id))).toBe(false);
    expect(existsSync(join(runtimeRoot(), s.id))).toBe(false);
  });

  it('does not take a reused shim pid for a live shim', async () => {
    const id = uniqueId(PREFIX);
    const dir = join(stateDir, 'containers', id);
    mkdirSync(dir, { recursive: true });
    // A live pid (ours) with another start time: the shim that had this pid is gone.
    const status = { status: 'running', pid: process.pid, startedAt: new Date().toISOString() };
    writeFileSync(join(dir, 'status.json'), JSON.stringify(status));
    writeFileSync(
      join(dir, 'shim.json'),
      JSON.stringify({ shimPid: process.pid, shimStartTime: '1', pid: process.pid }),
    );
    const restarted = new ContainerRuntime({ stateDir, runtimePath: RUNTIME });
    const info = (await restarted.adopt()).find((c) => c.id === id);
    expect(info).toMatchObject({ status: 'unknown', shimAlive: false });
    await restarted.remove(id);
    expect(existsSync(dir)).toBe(false);
  });

  it('refuses to remove a running container without force', async () => {
    const s = spec(['sleep', '1000']);
    await rt.create(s, { layers: [layer] });
    await expect(rt.remove(s.id)).rejects.toThrow(/is running; stop it first or use force/);
    await expect(rt.create(s, { layers: [layer] })).rejects.toThrow(/already exists/);
    await rt.remove(s.id, { force: true });
    expect(existsSync(join(stateDir, 'containers', s.id))).toBe(false);
  });

  it('rejects an invalid spec or a missing layer and leaves nothing behind', async () => {
    const bad = spec(['sh'], { workingDir: 'relative' });
    await expect(rt.create(bad, { layers: [layer] })).rejects.toThrow(InvalidSpecError);
    await expect(rt.create(bad, { layers: [layer] })).rejects.toThrow(
      /workingDir: must be an absolute path/,
    );
    expect(existsSync(join(stateDir, 'containers', bad.id))).toBe(false);

    const noLayer = spec(['sh']);
    await expect(rt.create(noLayer, { layers: ['/nonexistent/conductor-layer'] })).rejects.toThrow(
      /layers\[0\]: \/nonexistent\/conductor-layer: ENOENT/,
    );
    expect(existsSync(join(stateDir, 'containers', noLayer.id))).toBe(false);
  });

  it('undoes everything when the runtime cannot start the container', async () => {
    const s = spec(['/no/such/program']);
    const err = await rt.create(s, { layers: [layer] }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ContainerError);
    expect((err as ContainerError).step).toBe('start shim');
    expect((err as Error).message).toMatch(/no\/such\/program/);
    expect(existsSync(join(stateDir, 'containers', s.id))).toBe(false);
    expect(existsSync(join(runtimeRoot(), s.id))).toBe(false);
  });

  it('creates while `beforeStart` is pending and runs the program only once it resolves', async () => {
    const dir = mkdtempSync(join(FIXTURE_ROOT, `${PREFIX}-gate-`));
    try {
      const s = spec(['sh', '-c', 'touch /gate/ran; exec sleep 1000'], {
        mounts: [{ type: 'bind', hostPath: dir, containerPath: '/gate' }],
      });
      let open!: () => void;
      const gate = new Promise<void>((r) => (open = r));
      const created = rt.create(s, { layers: [layer], beforeStart: gate });
      // The runtime's create has run (its state says created) while the gate is shut.
      await eventually(async () => {
        const st = await rt.runtime.state(s.id).catch(() => undefined);
        return st?.status === 'created' ? true : undefined;
      }, 'the container created');
      await sleep(100);
      expect(existsSync(join(dir, 'ran'))).toBe(false);
      open();
      const c = await created;
      await eventually(() => (existsSync(join(dir, 'ran')) ? true : undefined), 'the program');
      expect((await rt.inspect(s.id)).status).toBe('running');
      expect(c.pid).toBeGreaterThan(1);
      await rt.remove(s.id, { force: true });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('undoes the created container and reports the error when `beforeStart` rejects', async () => {
    const s = spec(['sleep', '1000']);
    const err = await rt
      .create(s, {
        layers: [layer],
        beforeStart: sleep(200).then(() => {
          throw new Error('CNI ADD bridge: no address left');
        }),
      })
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(err).toBeInstanceOf(ContainerError);
    expect((err as ContainerError).step).toBe('start shim');
    expect((err as Error).message).toMatch(/CNI ADD bridge: no address left/);
    expect(existsSync(join(stateDir, 'containers', s.id))).toBe(false);
    expect(existsSync(join(runtimeRoot(), s.id))).toBe(false);
    await expect(rt.runtime.state(s.id)).rejects.toThrow();
  });
});
