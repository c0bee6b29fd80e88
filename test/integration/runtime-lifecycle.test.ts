/**
 * conductor-runtime's command line as runc and crun define it: create → start → state → kill →
 * delete, run in the foreground and detached, exec, exit codes and signals, list.
 */
import { readlinkSync } from 'node:fs';

import { describe, expect, it } from '@jest/globals';

import { type Bundle } from '../fixtures/index.js';
import { finished, runtimeSuite } from '../fixtures/runtime.js';

const suite = runtimeSuite('rl');
const bundle = (args: string[]): Promise<Bundle> =>
  suite.bundle({ overrides: { process: { args } } });

describe('run in the foreground', () => {
  it('returns the exit code and leaves nothing behind', async () => {
    const b = await bundle(['/bin/sh', '-c', 'echo out; echo err >&2; exit 3']);
    const r = await suite.rt.run(['run', '--bundle', b.dir, b.id]);
    expect(r).toMatchObject({ code: 3, stdout: 'out\n', stderr: 'err\n' });
    const s = await suite.rt.run(['state', b.id]);
    expect(s.stderr).toContain(`container \`${b.id}\` does not exist`);
  });

  it('reports a signal as 128+N', async () => {
    // PID 1 of a namespace cannot be SIGKILLed from inside it: kill it from the host.
    const b = await bundle(['/bin/sh', '-c', 'echo ready; while :; do sleep 0.05; done']);
    const child = suite.rt.spawn(['run', '-b', b.dir, b.id]);
    const done = finished(child);
    await new Promise<void>((resolve) => child.stdout?.once('data', () => resolve()));
    await suite.rt.ok(['kill', b.id, 'KILL']);
    expect((await done).code).toBe(137);
  });

  it('forwards SIGTERM to the container', async () => {
    const b = await bundle([
      '/bin/sh',
      '-c',
      'trap "exit 42" TERM; echo ready; while :; do sleep 0.05; done',
    ]);
    const child = suite.rt.spawn(['run', '-b', b.dir, b.id]);
    const done = finished(child);
    await new Promise<void>((resolve) => child.stdout?.once('data', () => resolve()));
    child.kill('SIGTERM');
    expect((await done).code).toBe(42);
  });
});

describe('create, start, state, kill, delete', () => {
  it('walks through the OCI lifecycle', async () => {
    const b = await bundle(['/bin/sh', '-c', 'trap "exit 7" TERM; while :; do sleep 0.05; done']);
    // create returns once the init waits on exec.fifo; the container's stdio is create's.
    const create = await suite.rt.run([
      'create',
      '--bundle',
      b.dir,
      '--pid-file',
      `${b.dir}/pid`,
      b.id,
    ]);
    expect(create.code).toBe(0);
    const created = await suite.rt.state(b.id);
    expect(created).toMatchObject({ id: b.id, status: 'created', bundle: b.dir });
    expect(created.pid).toBeGreaterThan(1);
    const list = JSON.parse(await suite.rt.ok(['list', '--format', 'json'])) as { id: string }[];
    expect(list.map((c) => c.id)).toContain(b.id);

    await suite.rt.ok(['start', b.id]);
    await suite.rt.waitFor(b.id, 'running');
    const start2 = await suite.rt.run(['start', b.id]);
    expect(start2.stderr).toContain('cannot be started: it is running');

    const del = await suite.rt.run(['delete', b.id]);
    expect(del.code).toBe(1);
    expect(del.stderr).toContain('is running');

    await suite.rt.ok(['kill', b.id, 'TERM']);
    await suite.rt.waitFor(b.id, 'stopped');
    expect((await suite.rt.state(b.id)).pid).toBe(0);
    const kill2 = await suite.rt.run(['kill', b.id, 'KILL']);
    expect(kill2.stderr).toContain('is not running');
    await suite.rt.ok(['delete', b.id]);
    expect((await suite.rt.run(['state', b.id])).code).toBe(1);
  });

  it('kills with SIGKILL what ignores SIGTERM (stop after a grace period)', async () => {
    const b = await bundle(['/bin/sh', '-c', 'trap "" TERM; while :; do sleep 0.05; done']);
    await suite.rt.ok(['run', '--detach', '-b', b.dir, b.id]);
    await suite.rt.ok(['kill', b.id, 'SIGTERM']);
    await new Promise((r) => setTimeout(r, 300));
    expect((await suite.rt.state(b.id)).status).toBe('running');
    await suite.rt.ok(['kill', b.id, '9']);
    await suite.rt.waitFor(b.id, 'stopped');
    await suite.rt.ok(['delete', b.id]);
  });

  it('delete --force removes a running container and a created one', async () => {
    const running = await bundle(['/bin/sleep', '1000']);
    await suite.rt.ok(['run', '-d', '-b', running.dir, running.id]);
    await suite.rt.ok(['delete', '--force', running.id]);
    const created = await bundle(['/bin/sleep', '1000']);
    await suite.rt.ok(['create', '-b', created.dir, created.id]);
    await suite.rt.ok(['delete', created.id]);
    expect((await suite.rt.run(['state', created.id])).code).toBe(1);
  });

  it('refuses a second container with the same id', async () => {
    const b = await bundle(['/bin/sleep', '1000']);
    await suite.rt.ok(['create', '-b', b.dir, b.id]);
    const again = await suite.rt.run(['create', '-b', b.dir, b.id]);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain(`container \`${b.id}\` already exists`);
    await suite.rt.ok(['delete', '--force', b.id]);
  });
});

describe('exec', () => {
  it('joins every namespace of the container and its cgroup', async () => {
    const b = await bundle(['/bin/sleep', '1000']);
    await suite.rt.ok(['run', '-d', '-b', b.dir, b.id]);
    const { pid } = await suite.rt.state(b.id);
    const types = ['pid', 'uts', 'ipc', 'mnt', 'net', 'cgroup'];
    const script = types.map((t) => `readlink /proc/self/ns/${t}`).join('; ');
    const out = await suite.rt.ok([
      'exec',
      b.id,
      '--',
      '/bin/sh',
      '-c',
      `${script}; cat /proc/self/cgroup`,
    ]);
    const lines = out.trim().split('\n');
    types.forEach((t, i) => expect(lines[i]).toBe(readlinkSync(`/proc/${pid}/ns/${t}`)));
    expect(lines.slice(types.length).join('\n')).toContain(`/conductor/${b.id}`);
    // The process sees the container's pid numbering: init is 1, and it is not.
    const ps = await suite.rt.ok([
      'exec',
      b.id,
      '--',
      '/bin/sh',
      '-c',
      'echo $$; cat /proc/1/cmdline',
    ]);
    expect(ps).toMatch(/^\d+\n\/bin\/sleep/);
    expect(ps.startsWith('1\n')).toBe(false);
    await suite.rt.ok(['delete', '--force', b.id]);
  });

  it('passes exit codes, env, cwd and user', async () => {
    const b = await bundle(['/bin/sleep', '1000']);
    await suite.rt.ok(['run', '-d', '-b', b.dir, b.id]);
    expect((await suite.rt.run(['exec', b.id, '--', '/bin/sh', '-c', 'exit 5'])).code).toBe(5);
    const out = await suite.rt.ok([
      'exec',
      '--env',
      'GREETING=hi',
      '--cwd',
      '/tmp',
      '--user',
      '65534:65534',
      b.id,
      '/bin/sh',
      '-c',
      'echo $GREETING $(pwd) $(id -u):$(id -g)',
    ]);
    expect(out).toBe('hi /tmp 65534:65534\n');
    const missing = await suite.rt.run(['exec', b.id, '--', 'no-such-program']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('exec `no-such-program`: executable file not found in $PATH');
    await suite.rt.ok(['delete', '--force', b.id]);
    const gone = await suite.rt.run(['exec', b.id, '--', '/bin/true']);
    expect(gone.stderr).toContain('does not exist');
  });
});
